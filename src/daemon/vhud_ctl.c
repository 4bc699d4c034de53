/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhud's JSON-RPC 2.0 server (vhud_ctl.h): line framing, the envelope, limits. Every byte comes
 * from a client we do not trust: a line is bounded before it is parsed, json-c parses it with
 * a nesting limit and UTF-8 validation, every member is type-checked before use, and a client's
 * memory is its input buffer (VHUD_CTL_MAX_LINE) plus the replies it has not read yet, which
 * stop us reading from it past VHUD_CTL_OUT_HIGH.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sock.h"
#include "vhu/log.h"
#include "vhu/util.h"
#include "vhud_ctl.h"

/* Unread replies past this: the client is not read from until it catches up. */
#define VHUD_CTL_OUT_HIGH (256u * 1024)

struct ctl_client {
    struct vhud_ctl *ctl;
    int fd;
    bool reading;  /* EPOLLIN is on */
    bool skipping; /* inside an overlong line: drop bytes up to its newline */
    char *in;      /* VHUD_CTL_MAX_LINE + 1 bytes */
    size_t in_len;
    char *out;
    size_t out_len, out_off, out_cap;
    struct json_tokener *tok;
    struct ctl_client *next;
};

struct vhud_ctl {
    struct vhu_loop *loop;
    int fd;
    struct vhu_sock_path own;
    const struct vhud_ctl_method *methods;
    void *opaque;
    struct ctl_client *clients;
    unsigned nclients;
};

int vhud_ctl_fail(struct vhud_ctl_error *e, int code, int err, const char *fmt, ...)
{
    va_list ap;

    e->code = code;
    e->err = err;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- parameters ---- */

static int param_get(struct json_object *params, const char *name, bool required,
                     struct json_object **o, struct vhud_ctl_error *e)
{
    if (json_object_object_get_ex(params, name, o))
        return 1;
    if (required)
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "missing parameter '%s'", name);
    return 0;
}

int vhud_ctl_param_string(struct json_object *params, const char *name, bool required,
                          const char **out, struct vhud_ctl_error *e)
{
    struct json_object *o;
    int r = param_get(params, name, required, &o, e);

    if (r <= 0)
        return r;
    if (!json_object_is_type(o, json_type_string))
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "parameter '%s' must be a string",
                             name);
    *out = json_object_get_string(o);
    return 0;
}

int vhud_ctl_param_u64(struct json_object *params, const char *name, bool required,
                       uint64_t max, uint64_t *out, struct vhud_ctl_error *e)
{
    struct json_object *o;
    int r = param_get(params, name, required, &o, e);

    if (r <= 0)
        return r;
    /* json-c saturates integers it cannot hold (to INT64_MIN / UINT64_MAX): both fail here,
     * since every max is below UINT64_MAX */
    if (!json_object_is_type(o, json_type_int) || json_object_get_int64(o) < 0 ||
        json_object_get_uint64(o) > max)
        return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL,
                             "parameter '%s' must be an integer from 0 to %llu", name,
                             (unsigned long long)max);
    *out = json_object_get_uint64(o);
    return 0;
}

int vhud_ctl_param_only(struct json_object *params, const char *const *names,
                        struct vhud_ctl_error *e)
{
    json_object_object_foreach(params, key, val) {
        const char *const *n = names;

        (void)val;
        while (*n && strcmp(*n, key) != 0)
            n++;
        if (!*n)
            return vhud_ctl_fail(e, VHUD_CTL_EPARAMS, EINVAL, "unknown parameter '%.64s'", key);
    }
    return 0;
}

/* ---- clients ---- */

static void client_free(struct ctl_client *cl)
{
    struct vhud_ctl *c = cl->ctl;

    for (struct ctl_client **p = &c->clients; *p; p = &(*p)->next) {
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    }
    c->nclients--;
    vhu_loop_del(c->loop, cl->fd);
    vhu_fd_close(&cl->fd);
    if (cl->tok)
        json_tokener_free(cl->tok);
    free(cl->in);
    free(cl->out);
    free(cl);
}

static void client_watch(struct ctl_client *cl)
{
    uint32_t ev = 0;

    cl->reading = cl->out_len - cl->out_off < VHUD_CTL_OUT_HIGH;
    if (cl->reading)
        ev |= VHU_LOOP_IN;
    if (cl->out_len > cl->out_off)
        ev |= VHU_LOOP_OUT;
    vhu_loop_mod(cl->ctl->loop, cl->fd, ev);
}

/* Queue one reply line; false: no memory (the client is dropped). */
static bool client_queue(struct ctl_client *cl, const char *s, size_t len)
{
    if (cl->out_off == cl->out_len)
        cl->out_off = cl->out_len = 0;
    if (cl->out_len + len + 1 > cl->out_cap) {
        size_t cap = (cl->out_len - cl->out_off) + len + 1;
        char *n;

        if (cl->out_off) {
            memmove(cl->out, cl->out + cl->out_off, cl->out_len - cl->out_off);
            cl->out_len -= cl->out_off;
            cl->out_off = 0;
        }
        if (cap > cl->out_cap) {
            cap = cap < 4096 ? 4096 : cap + cap / 2;
            n = realloc(cl->out, cap);
            if (!n)
                return false;
            cl->out = n;
            cl->out_cap = cap;
        }
    }
    memcpy(cl->out + cl->out_len, s, len);
    cl->out_len += len;
    cl->out[cl->out_len++] = '\n';
    return true;
}

/* Write what the socket takes; false: the client is gone. */
static bool client_flush(struct ctl_client *cl)
{
    while (cl->out_off < cl->out_len) {
        ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return false;
        cl->out_off += (size_t)n;
    }
    if (cl->out_off == cl->out_len && cl->out_cap > 65536) {
        /* a big reply went out: give its buffer back */
        free(cl->out);
        cl->out = NULL;
        cl->out_cap = cl->out_len = cl->out_off = 0;
    }
    return true;
}

/* Reply with result (taken) or error; id may be NULL (JSON null). */
static bool client_reply(struct ctl_client *cl, struct json_object *id, struct json_object *result,
                         const struct vhud_ctl_error *e)
{
    struct json_object *r = json_object_new_object();
    const char *s;
    size_t len;
    bool ok;

    if (!r) {
        json_object_put(result);
        return false;
    }
    json_object_object_add(r, "jsonrpc", json_object_new_string("2.0"));
    if (e) {
        struct json_object *err = json_object_new_object();

        json_object_object_add(err, "code", json_object_new_int(e->code));
        json_object_object_add(err, "message", json_object_new_string(e->msg));
        if (e->err) {
            struct json_object *data = json_object_new_object();

            json_object_object_add(data, "errno", json_object_new_int(e->err));
            json_object_object_add(data, "error", json_object_new_string(strerror(e->err)));
            json_object_object_add(err, "data", data);
        }
        json_object_object_add(r, "error", err);
    } else {
        json_object_object_add(r, "result", result);
    }
    json_object_object_add(r, "id", id ? json_object_get(id) : NULL);
    s = json_object_to_json_string_length(
        r, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    ok = s && client_queue(cl, s, len);
    json_object_put(r);
    return ok;
}

static bool reply_error(struct ctl_client *cl, struct json_object *id, int code, const char *msg)
{
    struct vhud_ctl_error e;

    vhud_ctl_fail(&e, code, 0, "%s", msg);
    return client_reply(cl, id, NULL, &e);
}

static const struct vhud_ctl_method *method_find(const struct vhud_ctl *c, const char *name)
{
    for (const struct vhud_ctl_method *m = c->methods; m->name; m++) {
        if (strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

/* One parsed request. */
static bool handle_request(struct ctl_client *cl, struct json_object *req)
{
    struct json_object *ver, *meth, *params = NULL, *id = NULL, *result = NULL;
    const struct vhud_ctl_method *m;
    struct vhud_ctl_error e = {0};
    bool has_id;
    bool ok;

    if (json_object_is_type(req, json_type_array))
        return reply_error(cl, NULL, VHUD_CTL_EREQUEST, "batch requests are not supported");
    if (!json_object_is_type(req, json_type_object))
        return reply_error(cl, NULL, VHUD_CTL_EREQUEST, "a request is a JSON object");
    has_id = json_object_object_get_ex(req, "id", &id);
    if (has_id && id && !json_object_is_type(id, json_type_string) &&
        !json_object_is_type(id, json_type_int))
        return reply_error(cl, NULL, VHUD_CTL_EREQUEST, "id must be a string, integer or null");
    if (!json_object_object_get_ex(req, "jsonrpc", &ver) ||
        !json_object_is_type(ver, json_type_string) ||
        strcmp(json_object_get_string(ver), "2.0") != 0)
        return reply_error(cl, id, VHUD_CTL_EREQUEST, "jsonrpc must be \"2.0\"");
    if (!json_object_object_get_ex(req, "method", &meth) ||
        !json_object_is_type(meth, json_type_string))
        return reply_error(cl, id, VHUD_CTL_EREQUEST, "method must be a string");
    if (json_object_object_get_ex(req, "params", &params) &&
        !json_object_is_type(params, json_type_object))
        return reply_error(cl, id, VHUD_CTL_EPARAMS, "params must be an object (by name)");
    m = method_find(cl->ctl, json_object_get_string(meth));
    if (!m) {
        vhud_ctl_fail(&e, VHUD_CTL_EMETHOD, 0, "unknown method '%.64s'",
                      json_object_get_string(meth));
        return has_id ? client_reply(cl, id, NULL, &e) : true;
    }
    if (params) {
        json_object_get(params);
    } else {
        params = json_object_new_object();
        if (!params)
            return false;
    }
    if (m->fn(cl->ctl->opaque, params, &result, &e) < 0) {
        json_object_put(params);
        if (!has_id)
            return true;
        return client_reply(cl, id, NULL, &e);
    }
    json_object_put(params);
    if (!has_id) { /* a notification: no reply (JSON-RPC 2.0, section 4.1) */
        json_object_put(result);
        return true;
    }
    ok = client_reply(cl, id, result, NULL);
    return ok;
}

/* One complete line (newline removed). */
static bool handle_line(struct ctl_client *cl, char *line, size_t len)
{
    struct json_object *req;
    enum json_tokener_error err;
    bool ok;

    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return true; /* blank lines are ignored */
    json_tokener_reset(cl->tok);
    req = json_tokener_parse_ex(cl->tok, line, (int)len);
    err = json_tokener_get_error(cl->tok);
    if (!req || err != json_tokener_success || json_tokener_get_parse_end(cl->tok) != len) {
        char msg[96];

        json_object_put(req);
        snprintf(msg, sizeof(msg), "parse error: %s",
                 err == json_tokener_success || err == json_tokener_continue
                     ? "trailing or incomplete data"
                     : json_tokener_error_desc(err));
        return reply_error(cl, NULL, VHUD_CTL_EPARSE, msg);
    }
    ok = handle_request(cl, req);
    json_object_put(req);
    return ok;
}

/* Handle the complete lines in the buffer while the client reads its replies. */
static bool client_process(struct ctl_client *cl)
{
    size_t start = 0;

    while (start < cl->in_len && cl->out_len - cl->out_off < VHUD_CTL_OUT_HIGH) {
        char *nl = memchr(cl->in + start, '\n', cl->in_len - start);
        size_t len;

        if (!nl)
            break;
        len = (size_t)(nl - (cl->in + start));
        if (cl->skipping)
            cl->skipping = false; /* the end of an overlong line */
        else if (!handle_line(cl, cl->in + start, len))
            return false;
        start += len + 1;
    }
    memmove(cl->in, cl->in + start, cl->in_len - start);
    cl->in_len -= start;
    if (cl->in_len == VHUD_CTL_MAX_LINE && !memchr(cl->in, '\n', cl->in_len)) {
        /* no newline in a full buffer: answer once, then skip the rest of that line */
        if (!cl->skipping && !reply_error(cl, NULL, VHUD_CTL_EREQUEST, "line too long"))
            return false;
        cl->skipping = true;
        cl->in_len = 0;
    }
    return true;
}

static void client_cb(int fd, uint32_t events, void *opaque)
{
    struct ctl_client *cl = opaque;

    if ((events & VHU_LOOP_IN) && cl->reading) {
        ssize_t n = recv(fd, cl->in + cl->in_len, VHUD_CTL_MAX_LINE - cl->in_len, MSG_DONTWAIT);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
            client_free(cl);
            return;
        }
        if (n > 0)
            cl->in_len += (size_t)n;
    } else if (events & (VHU_LOOP_HUP | VHU_LOOP_ERR) && !(events & VHU_LOOP_OUT)) {
        client_free(cl);
        return;
    }
    /* replies first, then what they made room for */
    if (!client_flush(cl) || !client_process(cl) || !client_flush(cl)) {
        client_free(cl);
        return;
    }
    client_watch(cl);
}

static void accept_cb(int fd, uint32_t events, void *opaque)
{
    struct vhud_ctl *c = opaque;
    struct ctl_client *cl;
    int cfd;

    (void)events;
    cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0)
        return;
    if (c->nclients >= VHUD_CTL_MAX_CLIENTS) {
        vhu_err_rl("control: more than %u clients; connection refused", VHUD_CTL_MAX_CLIENTS);
        close(cfd);
        return;
    }
    cl = calloc(1, sizeof(*cl));
    if (cl)
        cl->in = malloc(VHUD_CTL_MAX_LINE + 1);
    if (cl && cl->in) {
        cl->tok = json_tokener_new_ex(VHUD_CTL_MAX_DEPTH);
        if (cl->tok)
            json_tokener_set_flags(cl->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    }
    if (!cl || !cl->in || !cl->tok ||
        vhu_loop_add(c->loop, cfd, VHU_LOOP_IN, client_cb, cl) < 0) {
        if (cl) {
            if (cl->tok)
                json_tokener_free(cl->tok);
            free(cl->in);
            free(cl);
        }
        close(cfd);
        return;
    }
    cl->ctl = c;
    cl->fd = cfd;
    cl->reading = true;
    cl->next = c->clients;
    c->clients = cl;
    c->nclients++;
}

int vhud_ctl_new(struct vhu_loop *loop, const char *path, const struct vhud_ctl_method *methods,
                 void *opaque, struct vhud_ctl **out)
{
    struct vhud_ctl *c = calloc(1, sizeof(*c));
    int r;

    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->methods = methods;
    c->opaque = opaque;
    c->fd = -1;
    r = vhu_sock_listen_path(path, 16, &c->fd, &c->own);
    if (r == 0)
        r = vhu_loop_add(loop, c->fd, VHU_LOOP_IN, accept_cb, c);
    if (r < 0) {
        vhud_ctl_free(c);
        return r;
    }
    *out = c;
    return 0;
}

void vhud_ctl_free(struct vhud_ctl *c)
{
    if (!c)
        return;
    while (c->clients)
        client_free(c->clients);
    if (c->fd >= 0)
        vhu_loop_del(c->loop, c->fd);
    vhu_fd_close(&c->fd);
    vhu_sock_path_release(&c->own);
    free(c);
}
