/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * vhuctl --control PATH COMMAND: the client of vhud's control socket (JSON-RPC 2.0, one JSON
 * object per line; src/daemon/vhud_ctl.h). Each command is one request; the reply is printed
 * as a table, or as JSON with --json.
 */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "vhu/util.h"
#include "vhuctl_common.h"
#include "vhuctl_control.h"

#define REPLY_MAX (16u << 20) /* the largest reply we take */
#define REPLY_TIMEOUT_MS 10000

void vhuctl_control_usage(FILE *f)
{
    fprintf(f,
            "control: a running `vhud --control PATH` (JSON-RPC 2.0 over a unix socket)\n"
            "  vhuctl --control PATH device-add TYPE ID [--OPTION [VALUE]]...\n"
            "                 add a device: TYPE blk|net|rng|switch with the options of\n"
            "                 `vhud TYPE` (but --fd); a flag takes no value; --port again\n"
            "                 for each port of a switch\n"
            "  vhuctl --control PATH device-remove ID\n"
            "  vhuctl --control PATH list [ID] [--json]\n"
            "                 devices, their sessions, negotiated features and queues\n"
            "  vhuctl --control PATH stats [ID] [--watch SECS [--count N]] [--json]\n"
            "                 per-queue requests, bytes, kicks, calls, polling share, errors;\n"
            "                 --watch: again every SECS with the rates in between\n"
            "  vhuctl --control PATH log-level [error|warn|info|debug]\n"
            "  vhuctl --control PATH blk-resize ID SIZE\n"
            "                 grow a blk device live (K/M/G/T suffixes); the guest is told\n"
            "  vhuctl --control PATH call METHOD [PARAMS-JSON]\n"
            "                 any method, the reply's result as JSON\n");
}

/* ---- the connection ---- */

struct rpc {
    int fd;
    unsigned next_id;
    char *buf; /* received bytes not yet consumed */
    size_t len, cap;
    size_t consumed; /* the line rpc_read_line() returned last */
};

static int rpc_connect(const char *path, struct rpc *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "vhuctl: --control %s: path too long\n", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;

        fprintf(stderr, "vhuctl: --control %s: %s\n", path, strerror(-r));
        vhu_fd_close(&c->fd);
        return r;
    }
    return 0;
}

static void rpc_close(struct rpc *c)
{
    vhu_fd_close(&c->fd);
    free(c->buf);
}

/* One line from the socket (newline removed, NUL-terminated, valid until the next call). */
static int rpc_read_line(struct rpc *c, char **line)
{
    if (c->consumed) {
        memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
        c->len -= c->consumed;
        c->consumed = 0;
    }
    for (;;) {
        char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        ssize_t n;

        if (nl) {
            *nl = '\0';
            *line = c->buf;
            c->consumed = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        if (c->len + 65536 > c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *b;

            if (cap > REPLY_MAX)
                return -EMSGSIZE;
            b = realloc(c->buf, cap);
            if (!b)
                return -ENOMEM;
            c->buf = b;
            c->cap = cap;
        }
        n = poll(&p, 1, REPLY_TIMEOUT_MS);
        if (n == 0)
            return -ETIMEDOUT;
        if (n < 0 && errno == EINTR)
            return -EINTR;
        n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            c->len += (size_t)n;
    }
}

/*
 * method(params) (params taken); *result: the reply's result (the caller puts it). 0, or 1
 * after printing the failure.
 */
static int rpc_call(struct rpc *c, const char *method, struct json_object *params,
                    struct json_object **result)
{
    struct json_object *req = json_object_new_object(), *reply, *err, *res;
    unsigned id = ++c->next_id;
    const char *s;
    size_t len;
    char *line = NULL;
    int r;

    json_object_object_add(req, "jsonrpc", json_object_new_string("2.0"));
    json_object_object_add(req, "method", json_object_new_string(method));
    json_object_object_add(req, "params", params ? params : json_object_new_object());
    json_object_object_add(req, "id", json_object_new_int((int)id));
    s = json_object_to_json_string_length(req, JSON_C_TO_STRING_PLAIN, &len);
    r = 0;
    for (size_t off = 0; r == 0 && off <= len;) {
        /* the line and its newline */
        ssize_t n = off < len ? send(c->fd, s + off, len - off, MSG_NOSIGNAL)
                              : send(c->fd, "\n", 1, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n > 0)
            off += (size_t)n;
    }
    json_object_put(req);
    if (r == 0)
        r = rpc_read_line(c, &line);
    if (r < 0) {
        fprintf(stderr, "vhuctl: %s: %s\n", method, strerror(-r));
        return 1;
    }
    reply = json_tokener_parse(line);
    if (!reply || !json_object_is_type(reply, json_type_object)) {
        fprintf(stderr, "vhuctl: %s: the reply is not JSON-RPC\n", method);
        json_object_put(reply);
        return 1;
    }
    if (json_object_object_get_ex(reply, "error", &err)) {
        struct json_object *msg;

        fprintf(stderr, "vhuctl: %s: %s\n", method,
                json_object_object_get_ex(err, "message", &msg) ? json_object_get_string(msg)
                                                                 : "error");
        json_object_put(reply);
        return 1;
    }
    if (!json_object_object_get_ex(reply, "result", &res)) {
        fprintf(stderr, "vhuctl: %s: no result in the reply\n", method);
        json_object_put(reply);
        return 1;
    }
    *result = json_object_get(res);
    json_object_put(reply);
    return 0;
}

/* ---- reading a reply ---- */

static struct json_object *member(struct json_object *o, const char *name)
{
    struct json_object *v = NULL;

    return json_object_object_get_ex(o, name, &v) ? v : NULL;
}

static uint64_t u64_of(struct json_object *o, const char *name)
{
    struct json_object *v = member(o, name);

    return v && json_object_is_type(v, json_type_int) ? json_object_get_uint64(v) : 0;
}

static const char *str_of(struct json_object *o, const char *name)
{
    struct json_object *v = member(o, name);

    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "-";
}

static size_t len_of(struct json_object *a)
{
    return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

static void print_json(struct json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                         JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* list: a line per port, one per queue under it. */
static void print_list(struct json_object *res)
{
    struct json_object *devs = member(res, "devices");

    printf("%-16s %-7s %-8s %-18s %-18s %s\n", "ID", "TYPE", "SESSION", "FEATURES", "PROTOCOL",
           "ENDPOINT");
    for (size_t i = 0; i < len_of(devs); i++) {
        struct json_object *d = json_object_array_get_idx(devs, i), *ports = member(d, "ports");

        for (size_t p = 0; p < len_of(ports); p++) {
            struct json_object *po = json_object_array_get_idx(ports, p);
            struct json_object *s = member(po, "session"), *qs = s ? member(po, "queues") : NULL;
            bool conn = json_object_get_boolean(member(po, "connected"));

            printf("%-16s %-7s %-8s %-18s %-18s %s\n", str_of(d, "id"), str_of(d, "type"),
                   s ? "active" : conn ? "connected" : "-", s ? str_of(s, "features") : "-",
                   s ? str_of(s, "protocol_features") : "-", str_of(po, "endpoint"));
            for (size_t q = 0; q < len_of(qs); q++) {
                struct json_object *qo = json_object_array_get_idx(qs, q);

                printf("    queue %-3" PRIu64 " size %-5" PRIu64 " %s%s%s\n",
                       u64_of(qo, "index"), u64_of(qo, "size"),
                       json_object_get_boolean(member(qo, "started")) ? "started" : "stopped",
                       json_object_get_boolean(member(qo, "enabled")) ? " enabled" : "",
                       json_object_get_boolean(member(qo, "broken")) ? " BROKEN" : "");
            }
        }
    }
}

/* The previous sample of a queue, for the rates of --watch. */
struct sample {
    char key[160];
    uint64_t requests, bytes;
};

struct samples {
    struct sample *v;
    size_t n, cap;
};

static struct sample *sample_find(struct samples *ss, const char *key)
{
    for (size_t i = 0; i < ss->n; i++) {
        if (strcmp(ss->v[i].key, key) == 0)
            return &ss->v[i];
    }
    if (ss->n == ss->cap) {
        size_t cap = ss->cap ? ss->cap * 2 : 16;
        struct sample *v = realloc(ss->v, cap * sizeof(*v));

        if (!v)
            return NULL;
        ss->v = v;
        ss->cap = cap;
    }
    memset(&ss->v[ss->n], 0, sizeof(ss->v[0]));
    snprintf(ss->v[ss->n].key, sizeof(ss->v[0].key), "%s", key);
    ss->v[ss->n].requests = UINT64_MAX; /* no previous sample */
    return &ss->v[ss->n++];
}

static void print_queue_stats(struct json_object *q, const char *key, struct samples *ss,
                              double secs)
{
    uint64_t reqs = u64_of(q, "requests");
    uint64_t bytes = u64_of(q, "out_bytes") + u64_of(q, "in_bytes");
    struct json_object *share = member(q, "polling_share");
    struct sample *prev = secs > 0 ? sample_find(ss, key) : NULL;

    printf("    queue %-3" PRIu64 " %12" PRIu64 " %14" PRIu64 " %14" PRIu64 " %10" PRIu64
           " %10" PRIu64 " %5.1f%% %6" PRIu64 " %6" PRIu64,
           u64_of(q, "index"), reqs, u64_of(q, "out_bytes"), u64_of(q, "in_bytes"),
           u64_of(q, "kicks"), u64_of(q, "calls"),
           share ? json_object_get_double(share) * 100.0 : 0.0, u64_of(q, "errors"),
           u64_of(q, "breaks"));
    if (prev && prev->requests != UINT64_MAX && reqs >= prev->requests && bytes >= prev->bytes)
        printf("  %10.0f req/s %9.2f MB/s", (double)(reqs - prev->requests) / secs,
               (double)(bytes - prev->bytes) / secs / 1e6);
    if (prev) {
        prev->requests = reqs;
        prev->bytes = bytes;
    }
    printf("\n");
}

static void print_stats(struct json_object *res, struct samples *ss, double secs)
{
    struct json_object *devs = member(res, "devices");

    for (size_t i = 0; i < len_of(devs); i++) {
        struct json_object *d = json_object_array_get_idx(devs, i), *ports = member(d, "ports");

        for (size_t p = 0; p < len_of(ports); p++) {
            struct json_object *po = json_object_array_get_idx(ports, p);
            struct json_object *qs = member(po, "queues");

            printf("%s (%s) %s: sessions %" PRIu64 " failed %" PRIu64 " messages %" PRIu64
                   " %s\n",
                   str_of(d, "id"), str_of(d, "type"), str_of(po, "endpoint"),
                   u64_of(po, "sessions"), u64_of(po, "sessions_failed"),
                   u64_of(po, "messages"), member(po, "session") ? "" : "(no session)");
            if (len_of(qs))
                printf("    %-9s %12s %14s %14s %10s %10s %6s %6s %6s\n", "", "requests",
                       "out_bytes", "in_bytes", "kicks", "calls", "poll", "errors", "breaks");
            for (size_t q = 0; q < len_of(qs); q++) {
                char key[160];

                snprintf(key, sizeof(key), "%s/%zu/%zu", str_of(d, "id"), p, q);
                print_queue_stats(json_object_array_get_idx(qs, q), key, ss, secs);
            }
        }
    }
}

/* ---- commands ---- */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vhuctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (vhuctl --control PATH --help)\n");
    return 2;
}

/* device-add TYPE ID --OPTION [VALUE]...: options become members of the params object; a
 * repeated one an array. */
static int build_add(int argc, char **argv, struct json_object *p)
{
    if (argc < 2)
        return usage_error("device-add: give TYPE and ID");
    json_object_object_add(p, "type", json_object_new_string(argv[0]));
    json_object_object_add(p, "id", json_object_new_string(argv[1]));
    for (int i = 2; i < argc; i++) {
        char name[64];
        const char *eq, *a = argv[i];
        struct json_object *v, *old;

        if (strncmp(a, "--", 2) != 0 || !a[2])
            return usage_error("device-add: '%s' is not an --OPTION", a);
        a += 2;
        eq = strchr(a, '=');
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq)
            v = json_object_new_string(eq + 1);
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            v = json_object_new_string(argv[++i]);
        else
            v = json_object_new_boolean(1);
        if (strcmp(name, "id") == 0 || strcmp(name, "type") == 0) {
            json_object_put(v);
            return usage_error("device-add: --%s: give it as TYPE or ID", name);
        }
        if (!json_object_object_get_ex(p, name, &old)) {
            json_object_object_add(p, name, v);
        } else if (json_object_is_type(old, json_type_array)) {
            json_object_array_add(old, v);
        } else {
            struct json_object *arr = json_object_new_array();

            json_object_array_add(arr, json_object_get(old));
            json_object_array_add(arr, v);
            json_object_object_add(p, name, arr);
        }
    }
    return 0;
}

static volatile sig_atomic_t stop;

static void on_sigint(int sig)
{
    (void)sig;
    stop = 1;
}

/* stats [ID] [--watch SECS [--count N]] [--json] / list [ID] [--json] */
static int cmd_report(struct rpc *c, const char *cmd, int argc, char **argv)
{
    bool json = false, list = strcmp(cmd, "list") == 0;
    double watch = 0;
    uint64_t count = 0;
    const char *id = NULL;
    struct samples ss = {0};
    int r = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (!list && strcmp(argv[i], "--watch") == 0 && i + 1 < argc) {
            if (vhuctl_arg_seconds(argv[++i], &watch) < 0)
                return usage_error("stats: bad --watch '%s' (seconds)", argv[i]);
        } else if (!list && strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            if (vhu_arg_uint(argv[++i], UINT32_MAX, &count) < 0 || count == 0)
                return usage_error("stats: bad --count '%s'", argv[i]);
        } else if (argv[i][0] != '-' && !id) {
            id = argv[i];
        } else {
            return usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
        }
    }
    if (count && !watch)
        return usage_error("stats: --count goes with --watch");
    signal(SIGINT, on_sigint);
    for (uint64_t n = 0; !stop; n++) {
        struct json_object *p = json_object_new_object(), *res = NULL;

        if (id)
            json_object_object_add(p, "id", json_object_new_string(id));
        r = rpc_call(c, list ? "device-list" : "stats", p, &res);
        if (r)
            break;
        if (json)
            print_json(res);
        else if (list)
            print_list(res);
        else
            print_stats(res, &ss, n ? watch : 0);
        json_object_put(res);
        fflush(stdout);
        if (!watch || (count && n + 1 >= count))
            break;
        if (!json)
            printf("\n");
        struct timespec ts = {.tv_sec = (time_t)watch,
                              .tv_nsec = (long)((watch - (double)(time_t)watch) * 1e9)};
        nanosleep(&ts, NULL);
    }
    free(ss.v);
    return r;
}

/* The reply's result, or a short line for the commands that change something. */
static int cmd_simple(struct rpc *c, const char *method, struct json_object *p, bool raw)
{
    struct json_object *res = NULL;
    int r = rpc_call(c, method, p, &res);

    if (r)
        return r;
    if (raw) {
        print_json(res);
    } else if (strcmp(method, "log-level") == 0) {
        printf("log level %s\n", str_of(res, "level"));
    } else if (strcmp(method, "blk-resize") == 0) {
        struct json_object *why = member(res, "reason");

        printf("%s: %" PRIu64 " bytes; the driver %s%s%s\n", str_of(res, "id"),
               u64_of(res, "size"),
               json_object_get_boolean(member(res, "notified")) ? "was told" : "was not told",
               why ? ": " : "", why ? json_object_get_string(why) : "");
    } else {
        printf("%s: %s\n", method, str_of(res, "id"));
    }
    json_object_put(res);
    return 0;
}

int vhuctl_control_main(const char *path, int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL;
    struct json_object *p = NULL;
    struct rpc c = {.fd = -1};
    int r;

    if (!cmd || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        vhuctl_control_usage(cmd ? stdout : stderr);
        return cmd ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(cmd, "list") == 0 || strcmp(cmd, "stats") == 0) {
        if (rpc_connect(path, &c) < 0)
            return 1;
        r = cmd_report(&c, cmd, argc - 1, argv + 1);
        rpc_close(&c);
        return r;
    }
    p = json_object_new_object();
    r = 0;
    if (strcmp(cmd, "device-add") == 0) {
        r = build_add(argc - 1, argv + 1, p);
    } else if (strcmp(cmd, "device-remove") == 0) {
        if (argc != 2)
            r = usage_error("device-remove: give one ID");
        else
            json_object_object_add(p, "id", json_object_new_string(argv[1]));
    } else if (strcmp(cmd, "log-level") == 0) {
        if (argc > 2)
            r = usage_error("log-level: at most one LEVEL");
        else if (argc == 2)
            json_object_object_add(p, "level", json_object_new_string(argv[1]));
    } else if (strcmp(cmd, "blk-resize") == 0) {
        if (argc != 3) {
            r = usage_error("blk-resize: give ID and SIZE");
        } else {
            json_object_object_add(p, "id", json_object_new_string(argv[1]));
            json_object_object_add(p, "size", json_object_new_string(argv[2]));
        }
    } else if (strcmp(cmd, "call") == 0) {
        if (argc < 2 || argc > 3) {
            r = usage_error("call: give METHOD [PARAMS-JSON]");
        } else if (argc == 3) {
            json_object_put(p);
            p = json_tokener_parse(argv[2]);
            if (!p || !json_object_is_type(p, json_type_object))
                r = usage_error("call: PARAMS-JSON must be a JSON object: '%s'", argv[2]);
        }
    } else {
        r = usage_error("unknown control command '%s'", cmd);
    }
    if (r) {
        json_object_put(p);
        return r;
    }
    if (rpc_connect(path, &c) < 0) {
        json_object_put(p);
        return 1;
    }
    if (strcmp(cmd, "call") == 0)
        r = cmd_simple(&c, argv[1], p, true);
    else
        r = cmd_simple(&c, cmd, p, false);
    rpc_close(&c);
    return r;
}
