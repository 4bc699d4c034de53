/* SPDX-License-Identifier: BSD-3-Clause */
/* JSON reports of served devices (vhud_report.h). */
#include <stdio.h>

#include "vhu/dev/net.h"
#include "vhu/virtio.h"
#include "vhud_report.h"

struct json_object *vhud_report_hex(uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "0x%016llx", (unsigned long long)v);
    return json_object_new_string(buf);
}

static void add_u64(struct json_object *o, const char *name, uint64_t v)
{
    json_object_object_add(o, name, json_object_new_uint64(v));
}

static void add_bool(struct json_object *o, const char *name, bool v)
{
    json_object_object_add(o, name, json_object_new_boolean(v));
}

/* One queue: its state in the session, and with stats its counters (a net device's too). */
static struct json_object *queue_report(const struct vhu_backend *b, unsigned q, bool stats)
{
    const struct vhu_device *dev = vhu_backend_device(b);
    struct json_object *o = json_object_new_object();
    struct vhu_queue_stats st;
    struct vhu_net_stats ns;

    if (!o || vhu_backend_get_queue_stats(b, q, &st) < 0)
        return o;
    add_u64(o, "index", q);
    add_u64(o, "size", st.num);
    add_bool(o, "started", st.started);
    add_bool(o, "enabled", st.enabled);
    add_bool(o, "broken", st.broken);
    add_bool(o, "polled", st.polled);
    if (!stats)
        return o;
    add_u64(o, "requests", st.requests);
    add_u64(o, "out_bytes", st.out_bytes);
    add_u64(o, "in_bytes", st.in_bytes);
    add_u64(o, "kicks", st.kicks);
    add_u64(o, "calls", st.calls);
    add_u64(o, "poll_runs", st.poll_runs);
    json_object_object_add(o, "polling_share",
                           json_object_new_double(st.poll_runs + st.kicks
                                                      ? (double)st.poll_runs /
                                                            (double)(st.poll_runs + st.kicks)
                                                      : 0.0));
    add_u64(o, "errors", st.errors);
    add_u64(o, "breaks", st.breaks);
    if (dev->virtio_id == VHU_VIRTIO_ID_NET && vhu_net_get_stats(dev, q, &ns) == 0) {
        struct json_object *n = json_object_new_object();

        add_u64(n, "packets", ns.packets);
        add_u64(n, "bytes", ns.bytes);
        add_u64(n, "drops", ns.drops);
        add_u64(n, "errors", ns.errors);
        add_u64(n, "gso", ns.gso);
        json_object_object_add(o, "net", n);
    }
    return o;
}

/* The data-plane threads' polling (shared workers: the owner's, reported again). */
static struct json_object *workers_report(const struct vhu_backend *b)
{
    struct json_object *a = json_object_new_array();
    struct vhu_worker_stats ws;

    for (unsigned i = 0; a && vhu_backend_get_worker_stats(b, i, &ws) == 0; i++) {
        struct json_object *w = json_object_new_object();

        add_u64(w, "index", i);
        add_u64(w, "poll_window_ns", ws.poll_window_ns);
        add_u64(w, "poll_hits", ws.poll_hits);
        add_u64(w, "poll_misses", ws.poll_misses);
        add_u64(w, "poll_probes", ws.poll_probes);
        add_u64(w, "sleeps", ws.sleeps);
        json_object_array_add(a, w);
    }
    return a;
}

struct json_object *vhud_report_port(const char *endpoint, bool connected,
                                     const struct vhu_backend *b, bool stats)
{
    struct json_object *o = json_object_new_object();
    struct vhu_backend_session s;
    struct json_object *sess, *queues;

    if (!o)
        return NULL;
    json_object_object_add(o, "endpoint", json_object_new_string(endpoint));
    add_bool(o, "connected", connected);
    if (stats) {
        struct vhu_backend_stats bs;

        vhu_backend_get_stats(b, &bs);
        add_u64(o, "sessions", bs.sessions);
        add_u64(o, "sessions_failed", bs.sessions_failed);
        add_u64(o, "messages", bs.messages);
        add_u64(o, "kicks", bs.kicks);
        json_object_object_add(o, "workers", workers_report(b));
    }
    vhu_backend_get_session(b, &s);
    queues = json_object_new_array();
    for (unsigned q = 0; q < s.num_queues; q++)
        json_object_array_add(queues, queue_report(b, q, stats));
    json_object_object_add(o, "queues", queues);
    if (!s.active) {
        json_object_object_add(o, "session", NULL);
        return o;
    }
    sess = json_object_new_object();
    json_object_object_add(sess, "features", vhud_report_hex(s.features));
    json_object_object_add(sess, "protocol_features", vhud_report_hex(s.transport_features));
    add_u64(sess, "status", s.status);
    json_object_object_add(o, "session", sess);
    return o;
}
