/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef VHUD_CTL_H
#define VHUD_CTL_H
/*
 * vhud's control socket: JSON-RPC 2.0 over AF_UNIX, one JSON object per line (newline-
 * delimited, VHUD_CTL_MAX_LINE bytes at most), parsed by json-c. This file is the server: the
 * framing, the envelope and its errors, per-client limits. The methods are vhud's (vhud.c).
 *
 * Every request gets one reply line (a notification, without "id", gets none), also a bad one:
 * a line that is not JSON (-32700), not a request (-32600: a batch too), an unknown method
 * (-32601), bad params (-32602), a method that failed (VHUD_CTL_EFAIL, with data.errno). A line
 * longer than VHUD_CTL_MAX_LINE gets -32600 and is skipped up to its newline. A client whose
 * replies pile up unread is not read from until it reads them; past VHUD_CTL_MAX_CLIENTS
 * connections a new one is closed at once.
 */
#include <json-c/json.h>

#include "vhu/loop.h"

#define VHUD_CTL_MAX_LINE (64u * 1024)
#define VHUD_CTL_MAX_DEPTH 16
#define VHUD_CTL_MAX_CLIENTS 32

/* JSON-RPC 2.0 error codes (section 5.1) and vhud's own. */
#define VHUD_CTL_EPARSE (-32700)
#define VHUD_CTL_EREQUEST (-32600)
#define VHUD_CTL_EMETHOD (-32601)
#define VHUD_CTL_EPARAMS (-32602)
#define VHUD_CTL_EINTERNAL (-32603)
#define VHUD_CTL_EFAIL (-32000) /* the method ran and failed: data.errno names why */

/* A method's failure: code (one of the above), a message, and for VHUD_CTL_EFAIL the errno. */
struct vhud_ctl_error {
    int code;
    int err; /* positive errno, or 0 */
    char msg[256];
};

/* Sets e and returns -1 (for `return vhud_ctl_fail(...)`). */
int vhud_ctl_fail(struct vhud_ctl_error *e, int code, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * A method: params is the request's "params" object (an empty one when absent; never NULL).
 * Returns 0 with *result set (a new reference the server puts in the reply), or -1 with e set.
 */
typedef int vhud_ctl_method_fn(void *opaque, struct json_object *params,
                               struct json_object **result, struct vhud_ctl_error *e);

struct vhud_ctl_method {
    const char *name;
    vhud_ctl_method_fn *fn;
};

struct vhud_ctl;

/* Listen on path (a stale socket there is replaced; anything else is refused); methods ends
 * with a NULL name. */
int vhud_ctl_new(struct vhu_loop *loop, const char *path, const struct vhud_ctl_method *methods,
                 void *opaque, struct vhud_ctl **out);
/* Closes every client and the socket, removes the socket file (if still ours). */
void vhud_ctl_free(struct vhud_ctl *c);

/* Parameter helpers for methods: 0, or -1 with e set (-32602 naming the member). A missing
 * member: -1 when required, else 0 with *out untouched. */
int vhud_ctl_param_string(struct json_object *params, const char *name, bool required,
                          const char **out, struct vhud_ctl_error *e);
int vhud_ctl_param_u64(struct json_object *params, const char *name, bool required,
                       uint64_t max, uint64_t *out, struct vhud_ctl_error *e);
/* Fails on a member not in the NULL-ended list names. */
int vhud_ctl_param_only(struct json_object *params, const char *const *names,
                        struct vhud_ctl_error *e);

#endif
