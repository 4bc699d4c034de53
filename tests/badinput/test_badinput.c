/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Hostile frontend against a real vhud process: every malformed message must produce a logged
 * error and the end of that connection, while vhud keeps serving the next one and leaks no fd.
 * Usage: test_badinput PATH/TO/vhud
 */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/fe_msg.h"
#include "proto/vhost_user.h"
#include "vhu/frontend.h"
#include "vhu/util.h"
#include "vhu_test.h"

static const char *vhud_path;
static char dir[64], sock_path[128], log_path[128];
static pid_t vhud_pid = -1;
static int baseline_fds = -1;

static int count_fds(pid_t pid)
{
    char p[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(p, sizeof(p), "/proc/%d/fd", (int)pid);
    d = opendir(p);
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static off_t log_size(void)
{
    struct stat st;

    return stat(log_path, &st) == 0 ? st.st_size : 0;
}

/* The log text written since `from`. */
static void log_since(off_t from, char *buf, size_t len)
{
    int fd = open(log_path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, buf, len - 1, from) : -1;

    buf[n > 0 ? n : 0] = '\0';
    if (fd >= 0)
        close(fd);
}

static int start_vhud(void)
{
    snprintf(dir, sizeof(dir), "/tmp/vhu-badinput-XXXXXX");
    if (!vhu_test_mkdtemp(dir))
        return -errno;
    snprintf(sock_path, sizeof(sock_path), "%s/rng.sock", dir);
    snprintf(log_path, sizeof(log_path), "%s/vhud.log", dir);
    vhud_pid = fork();
    if (vhud_pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(vhud_path, vhud_path, "rng", "--socket-path", sock_path, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (access(sock_path, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

static int raw_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    strcpy(sa.sun_path, sock_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send raw bytes with optional fds. */
static int raw_send(int sock, const void *buf, size_t len, const int *fds, unsigned nfds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (nfds) {
        memset(cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -errno;
}

static int send_msg(int sock, uint32_t req, uint32_t flags, const void *pl, uint32_t size,
                    const int *fds, unsigned nfds)
{
    uint8_t buf[sizeof(struct vhost_user_hdr) + 4096];
    struct vhost_user_hdr h = {.request = req, .flags = flags, .size = size};

    /* A size above 4096 is a lie told by the header: only the header goes out. */
    uint32_t body = size > 4096 ? 0 : size;

    memcpy(buf, &h, sizeof(h));
    if (body)
        memcpy(buf + sizeof(h), pl, body);
    return raw_send(sock, buf, sizeof(h) + body, fds, nfds);
}

/* True when the peer closes the connection within 3 s (replies are read and discarded). */
static bool dropped(int sock)
{
    uint64_t deadline = vhu_now_ns() + 3000000000ULL;
    char buf[512];

    while (vhu_now_ns() < deadline) {
        struct pollfd p = {.fd = sock, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
    }
    return false;
}

/* A complete, well-behaved session through the frontend library must still work. */
static int good_session(void)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .event_idx = true,
                            .mem_size = 1 << 20};
    struct vhu_fe *fe;
    uint64_t gpa;
    int r = vhu_fe_connect(sock_path, &fe);

    if (r < 0)
        return r;
    r = vhu_fe_start(fe, &o);
    void *buf = r == 0 ? vhu_fe_alloc(fe, 64, 64, &gpa) : NULL;
    if (buf) {
        struct vhu_vqd_seg seg = {gpa, 64};
        r = vhu_fe_request(fe, 0, &seg, 0, 1, 3000);
        r = r == 64 ? 0 : (r < 0 ? r : -EIO);
    }
    vhu_fe_free(fe);
    return r;
}

/* vhud's fd count returns to the baseline once it has processed the disconnects. */
static bool fds_back_to_baseline(void)
{
    for (int i = 0; i < 300; i++) {
        if (count_fds(vhud_pid) == baseline_fds)
            return true;
        usleep(10000);
    }
    fprintf(stderr, "  vhud has %d fds, baseline %d\n", count_fds(vhud_pid), baseline_fds);
    return false;
}

static void negotiate_basics(int s)
{
    uint64_t pf = VHU_BIT(VHOST_USER_PROTOCOL_F_MQ) | VHU_BIT(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
                  VHU_BIT(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS);
    char buf[256];

    send_msg(s, VHOST_USER_GET_FEATURES, 1, NULL, 0, NULL, 0);
    recv(s, buf, sizeof(buf), 0);
    send_msg(s, VHOST_USER_SET_PROTOCOL_FEATURES, 1, &pf, 8, NULL, 0);
    send_msg(s, VHOST_USER_SET_OWNER, 1, NULL, 0, NULL, 0);
}

struct bad_case {
    const char *name;
    const char *expect; /* text the log must show */
    bool negotiate;
    void (*send)(int s);
};

static void bad_short_header(int s)
{
    uint32_t partial = VHOST_USER_GET_FEATURES;
    raw_send(s, &partial, sizeof(partial), NULL, 0);
    shutdown(s, SHUT_WR);
}

static void bad_short_payload(int s)
{
    uint8_t buf[16];
    struct vhost_user_hdr h = {VHOST_USER_SET_FEATURES, 1, 8};
    memcpy(buf, &h, sizeof(h));
    memset(buf + 12, 0, 4);
    raw_send(s, buf, 16, NULL, 0); /* 4 of 8 payload bytes */
    shutdown(s, SHUT_WR);
}

static void bad_oversized(int s)
{
    send_msg(s, VHOST_USER_SET_FEATURES, 1, NULL, 0x100000, NULL, 0);
}

static void bad_unknown(int s) { send_msg(s, 999, 1, NULL, 0, NULL, 0); }

static void bad_version(int s) { send_msg(s, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0); }

static void bad_size(int s)
{
    uint32_t v = 0;
    send_msg(s, VHOST_USER_SET_FEATURES, 1, &v, 4, NULL, 0);
}

static void bad_fd_where_none(int s)
{
    int fd = vhu_eventfd_new();
    send_msg(s, VHOST_USER_GET_FEATURES, 1, NULL, 0, &fd, 1);
    close(fd);
}

static void bad_missing_fd(int s)
{
    uint64_t idx = 0; /* no NOFD bit: an fd must come */
    send_msg(s, VHOST_USER_SET_VRING_KICK, 1, &idx, 8, NULL, 0);
}

static void bad_too_many_fds(int s)
{
    int fds[12];
    for (int i = 0; i < 12; i++)
        fds[i] = vhu_eventfd_new();
    uint64_t idx = 0;
    send_msg(s, VHOST_USER_SET_VRING_CALL, 1, &idx, 8, fds, 12);
    for (int i = 0; i < 12; i++)
        close(fds[i]);
}

static void bad_queue_index(int s)
{
    struct vhost_vring_state st = {.index = 5, .num = 64};
    send_msg(s, VHOST_USER_SET_VRING_NUM, 1, &st, sizeof(st), NULL, 0);
}

static void bad_kick_index(int s)
{
    int fd = vhu_eventfd_new();
    uint64_t idx = 200;
    send_msg(s, VHOST_USER_SET_VRING_KICK, 1, &idx, 8, &fd, 1);
    close(fd);
}

static void bad_unnegotiated(int s)
{
    char buf[64];

    /* A handshake that acks no protocol feature, then GET_QUEUE_NUM, which needs MQ. */
    uint64_t none = 0;
    send_msg(s, VHOST_USER_GET_FEATURES, 1, NULL, 0, NULL, 0);
    recv(s, buf, sizeof(buf), 0);
    send_msg(s, VHOST_USER_SET_PROTOCOL_FEATURES, 1, &none, 8, NULL, 0);
    send_msg(s, VHOST_USER_GET_QUEUE_NUM, 1, NULL, 0, NULL, 0);
}

static void bad_overlap(int s)
{
    int mfd = memfd_create("bad", MFD_CLOEXEC);
    struct vhost_user_memory mt = {.nregions = 2};
    int fds[2] = {mfd, mfd};

    ftruncate(mfd, 0x20000);
    mt.regions[0] = (struct vhost_user_memory_region){0x0, 0x10000, 0x7f0000000000, 0};
    mt.regions[1] = (struct vhost_user_memory_region){0x8000, 0x10000, 0x7f0000100000, 0};
    send_msg(s, VHOST_USER_SET_MEM_TABLE, 1, &mt, 8 + 2 * 32, fds, 2);
    close(mfd);
}

static void bad_region_past_file(int s)
{
    int mfd = memfd_create("bad", MFD_CLOEXEC);
    struct vhost_user_mem_reg reg = {
        .region = {0x0, 0x100000, 0x7f0000000000, 0x1000},
    };

    ftruncate(mfd, 0x10000);
    send_msg(s, VHOST_USER_ADD_MEM_REG, 1 | VHOST_USER_NEED_REPLY_MASK, &reg, sizeof(reg), &mfd,
             1);
    close(mfd);
}

static void bad_memtable_fd_count(int s)
{
    int mfd = memfd_create("bad", MFD_CLOEXEC);
    struct vhost_user_memory mt = {.nregions = 2};

    ftruncate(mfd, 0x20000);
    mt.regions[0] = (struct vhost_user_memory_region){0x0, 0x10000, 0x7f0000000000, 0};
    mt.regions[1] = (struct vhost_user_memory_region){0x10000, 0x10000, 0x7f0000010000, 0x10000};
    send_msg(s, VHOST_USER_SET_MEM_TABLE, 1, &mt, 8 + 2 * 32, &mfd, 1);
    close(mfd);
}

static void bad_ring_outside_memory(int s)
{
    int mfd = memfd_create("bad", MFD_CLOEXEC), kfd = vhu_eventfd_new();
    struct vhost_user_mem_reg reg = {.region = {0x0, 0x10000, 0x7f0000000000, 0}};
    struct vhost_vring_state num = {.index = 0, .num = 64};
    struct vhost_vring_addr addr = {.index = 0, .desc_user_addr = 0x7f000000f000,
                                    .avail_user_addr = 0x1234, .used_user_addr = 0x7f0000002000};
    uint64_t idx = 0;
    char buf[64];

    ftruncate(mfd, 0x10000);
    send_msg(s, VHOST_USER_ADD_MEM_REG, 1, &reg, sizeof(reg), &mfd, 1);
    send_msg(s, VHOST_USER_SET_VRING_NUM, 1, &num, sizeof(num), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_ADDR, 1, &addr, sizeof(addr), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_KICK, 1, &idx, 8, &kfd, 1);
    (void)buf;
    close(mfd);
    close(kfd);
}

/* Call, kick and error fds must be eventfds: vhud writes call/err on a ring's thread, and a
 * pipe nobody reads blocks a writer. */
static void bad_call_pipe(int s)
{
    int p[2];
    uint64_t idx = 0;

    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    send_msg(s, VHOST_USER_SET_VRING_CALL, 1, &idx, 8, &p[1], 1);
    close(p[0]);
    close(p[1]);
}

static void bad_err_socket(int s)
{
    int sv[2];
    uint64_t idx = 0;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return;
    send_msg(s, VHOST_USER_SET_VRING_ERR, 1, &idx, 8, &sv[0], 1);
    close(sv[0]);
    close(sv[1]);
}

static void bad_kick_memfd(int s)
{
    int fd = memfd_create("kick", MFD_CLOEXEC);
    uint64_t idx = 0;

    send_msg(s, VHOST_USER_SET_VRING_KICK, 1, &idx, 8, &fd, 1);
    close(fd);
}

/* A memfd that can be sealed but is not sealed against shrinking is refused. */
static void bad_region_unsealed(int s)
{
    int mfd = memfd_create("bad", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    struct vhost_user_mem_reg reg = {.region = {0x0, 0x10000, 0x7f0000000000, 0}};

    ftruncate(mfd, 0x10000);
    send_msg(s, VHOST_USER_ADD_MEM_REG, 1, &reg, sizeof(reg), &mfd, 1);
    close(mfd);
}

static void bad_config_size(int s)
{
    struct vhost_user_config c = {.offset = 0, .size = 300};
    send_msg(s, VHOST_USER_GET_CONFIG, 1, &c, 12 + 256, NULL, 0);
}

static const struct bad_case cases[] = {
    {"short header then EOF", "cannot read a message", false, bad_short_header},
    {"short payload then EOF", "cannot read a message", false, bad_short_payload},
    {"oversized payload", "cannot read a message", false, bad_oversized},
    {"unknown request", "dropping connection", false, bad_unknown},
    {"bad version", "dropping connection", false, bad_version},
    {"wrong payload size", "SET_FEATURES", false, bad_size},
    {"fd where none belongs", "GET_FEATURES", false, bad_fd_where_none},
    {"missing fd", "SET_VRING_KICK", false, bad_missing_fd},
    {"more than 8 fds", "cannot read a message", false, bad_too_many_fds},
    {"queue index out of range", "SET_VRING_NUM", true, bad_queue_index},
    {"kick queue index out of range", "SET_VRING_KICK", true, bad_kick_index},
    {"request without its protocol feature", "GET_QUEUE_NUM", false, bad_unnegotiated},
    {"overlapping regions", "overlap", true, bad_overlap},
    {"region past the end of its file", "cannot map region", true, bad_region_past_file},
    {"memory table fd count", "SET_MEM_TABLE", true, bad_memtable_fd_count},
    {"ring outside memory", "outside the memory table", true, bad_ring_outside_memory},
    {"config size over 256", "GET_CONFIG", true, bad_config_size},
    {"call fd is a pipe", "pipe:[", true, bad_call_pipe},
    {"error fd is a socket", "not an eventfd", true, bad_err_socket},
    {"kick fd is a memfd", "SET_VRING_KICK: queue 0: the fd is /memfd:kick", true, bad_kick_memfd},
    {"sealable memfd not sealed against shrinking", "F_SEAL_SHRINK", true, bad_region_unsealed},
};

TEST(setup)
{
    if (!vhud_path)
        SKIP("no vhud path given");
    ASSERT_OK(start_vhud());
    ASSERT_OK(good_session()); /* warm up: first session allocations happen once */
    usleep(100000);
    baseline_fds = count_fds(vhud_pid);
    ASSERT(baseline_fds > 0);
}

TEST(malformed_messages)
{
    char logbuf[8192];

    if (vhud_pid < 0)
        SKIP("vhud not running");
    for (size_t i = 0; i < VHU_ARRAY_SIZE(cases); i++) {
        const struct bad_case *c = &cases[i];
        off_t at = log_size();
        int s = raw_connect();

        if (s < 0)
            FAIL_AT("%s: cannot connect", c->name);
        if (c->negotiate)
            negotiate_basics(s);
        c->send(s);
        if (!dropped(s)) {
            close(s);
            FAIL_AT("%s: connection was not dropped", c->name);
        }
        close(s);
        usleep(20000);
        log_since(at, logbuf, sizeof(logbuf));
        if (!strstr(logbuf, "error") || !strstr(logbuf, c->expect))
            FAIL_AT("%s: log does not show the error (want '%s'):\n%s", c->name, c->expect,
                    logbuf);
        if (good_session() < 0)
            FAIL_AT("%s: vhud does not serve the next connection", c->name);
        if (!fds_back_to_baseline())
            FAIL_AT("%s: fd leak", c->name);
        if (kill(vhud_pid, 0) != 0)
            FAIL_AT("%s: vhud died", c->name);
        printf("  ok: %s\n", c->name);
    }
}

TEST(second_connection_refused_first_unharmed)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20};
    struct vhu_fe *fe;
    uint64_t gpa;

    if (vhud_pid < 0)
        SKIP("vhud not running");
    ASSERT_OK(vhu_fe_connect(sock_path, &fe));
    ASSERT_OK(vhu_fe_start(fe, &o));
    int s = raw_connect();
    ASSERT(s >= 0);
    ASSERT(dropped(s));
    close(s);
    void *buf = vhu_fe_alloc(fe, 32, 32, &gpa);
    struct vhu_vqd_seg seg = {gpa, 32};
    ASSERT(buf);
    ASSERT_EQ(vhu_fe_request(fe, 0, &seg, 0, 1, 3000), 32);
    vhu_fe_free(fe);
    ASSERT(fds_back_to_baseline());
}

/* vhud's loop still turns: it refuses a second connection while a frontend is connected. */
static bool vhud_responsive(void)
{
    int s = raw_connect();
    bool ok = s >= 0 && dropped(s);

    if (s >= 0)
        close(s);
    return ok;
}

/* A test that found vhud stuck ends it, so the tests after it skip instead of hanging. */
static void vhud_give_up(void)
{
    kill(vhud_pid, SIGKILL);
    waitpid(vhud_pid, NULL, 0);
    vhud_pid = -1;
}

static bool vhud_alive(void)
{
    return vhud_pid > 0 && waitpid(vhud_pid, NULL, WNOHANG) == 0;
}

/* A blocking eventfd whose counter is at its maximum as call fd: vhud's writes must not block
 * the ring's thread (with no workers: the control thread, which also serves the socket). */
TEST(call_fd_blocking_and_full)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20};
    uint64_t full = 0xfffffffffffffffeULL, gpa;
    struct vhu_msg m;
    struct vhu_fe *fe;
    int efd;

    if (vhud_pid < 0)
        SKIP("vhud not running");
    efd = eventfd(0, EFD_CLOEXEC); /* blocking */
    ASSERT(efd >= 0);
    ASSERT_EQ(write(efd, &full, sizeof(full)), 8);
    ASSERT_OK(vhu_fe_connect(sock_path, &fe));
    ASSERT_OK(vhu_fe_start(fe, &o));
    /* no NEED_REPLY: a stuck vhud must not hang the test; vhud_responsive() finds it */
    vhu_msg_init(&m, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, 8);
    m.payload.u64 = 0;
    m.fds[0] = efd;
    m.nfds = 1;
    ASSERT_OK(vhu_fe_raw(fe, &m, NULL));
    uint8_t *buf = vhu_fe_alloc(fe, 64, 64, &gpa);
    struct vhu_vqd_seg seg = {gpa, 64};
    ASSERT(buf);
    for (int i = 0; i < 4; i++) { /* every completion signals the full eventfd */
        if (!vhud_responsive()) {
            vhu_fe_free(fe);
            close(efd);
            vhud_give_up();
            FAIL_AT("round %d: vhud's thread is stuck on the call fd", i);
        }
        ASSERT_EQ(vhu_fe_request(fe, 0, &seg, 0, 1, 3000), 64);
    }
    /* vhud made the (shared) file description non-blocking */
    ASSERT(fcntl(efd, F_GETFL) & O_NONBLOCK);
    vhu_fe_free(fe);
    close(efd);
    ASSERT_OK(good_session());
    ASSERT(fds_back_to_baseline());
}

/* A raw session whose guest memory is mfd (0x10000 bytes, mapped here at mem): ring 0 of 16 at
 * gpa 0 (desc), 0x1000 (avail), 0x2000 (used), started. Returns the kick eventfd. */
static int raw_ring_on(int s, int mfd, uint8_t *mem)
{
    uint64_t uva = (uint64_t)(uintptr_t)mem, idx = 0;
    struct vhost_user_mem_reg reg = {.region = {0x0, 0x10000, uva, 0}};
    struct vhost_vring_state num = {.index = 0, .num = 16}, base = {.index = 0, .num = 0},
                             on = {.index = 0, .num = 1};
    struct vhost_vring_addr addr = {.index = 0, .desc_user_addr = uva,
                                    .avail_user_addr = uva + 0x1000,
                                    .used_user_addr = uva + 0x2000};
    int call = vhu_eventfd_new(), kick = vhu_eventfd_new();
    char ack[64];

    negotiate_basics(s);
    send_msg(s, VHOST_USER_ADD_MEM_REG, 1, &reg, sizeof(reg), &mfd, 1);
    send_msg(s, VHOST_USER_SET_VRING_NUM, 1, &num, sizeof(num), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_ADDR, 1, &addr, sizeof(addr), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_BASE, 1, &base, sizeof(base), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_CALL, 1, &idx, 8, &call, 1);
    send_msg(s, VHOST_USER_SET_VRING_ENABLE, 1, &on, sizeof(on), NULL, 0);
    send_msg(s, VHOST_USER_SET_VRING_KICK, 1 | VHOST_USER_NEED_REPLY_MASK, &idx, 8, &kick, 1);
    close(call);
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 3000) != 1 || recv(s, ack, sizeof(ack), 0) != 20) {
        close(kick);
        return -EPROTO;
    }
    return kick;
}

/* The frontend shrinks its memory file after SET_MEM_TABLE/ADD_MEM_REG and kicks: a sealed
 * memfd cannot shrink and keeps working; a memfd that cannot be sealed does shrink, and vhud
 * must survive touching it. */
TEST(memory_shrunk_after_mapping)
{
    if (vhud_pid < 0)
        SKIP("vhud not running");
    for (int sealed = 1; sealed >= 0; sealed--) {
        int mfd = memfd_create("shrink", MFD_CLOEXEC | (sealed ? MFD_ALLOW_SEALING : 0));
        off_t at = log_size();
        char logbuf[4096];
        uint8_t *mem;
        int s, kick;

        ASSERT(mfd >= 0);
        ASSERT_OK(ftruncate(mfd, 0x10000));
        if (sealed)
            ASSERT_OK(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK));
        mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        ASSERT(mem != MAP_FAILED);
        s = raw_connect();
        ASSERT(s >= 0);
        kick = raw_ring_on(s, mfd, mem);
        ASSERT(kick >= 0);
        if (sealed) {
            ASSERT(ftruncate(mfd, 0x1000) < 0 && errno == EPERM);
            /* one rng request: desc 0 = 64 device-writable bytes at 0x3000 */
            uint64_t d[2] = {0x3000, 64ULL | (2ULL << 32)};
            memcpy(mem, d, sizeof(d));
            uint16_t avail[3] = {0, 1, 0};
            memcpy(mem + 0x1000, avail, sizeof(avail));
            vhu_eventfd_signal(kick);
            uint16_t used = 0;
            for (int i = 0; i < 300 && used != 1; i++, usleep(10000))
                used = __atomic_load_n((uint16_t *)(mem + 0x2002), __ATOMIC_ACQUIRE);
            ASSERT_EQ(used, 1);
        } else {
            ASSERT_OK(ftruncate(mfd, 0)); /* every page vhud mapped is gone */
            vhu_eventfd_signal(kick);  /* vhud reads the avail ring: past the file's end */
            usleep(200000);
            if (!vhud_alive()) {
                vhud_pid = -1;
                FAIL_AT("vhud died touching memory its frontend shrank");
            }
        }
        close(kick);
        close(s);
        munmap(mem, 0x10000);
        close(mfd);
        if (good_session() < 0)
            FAIL_AT("sealed=%d: vhud does not serve the next connection", sealed);
        ASSERT(fds_back_to_baseline());
        log_since(at, logbuf, sizeof(logbuf));
        if (!sealed && !strstr(logbuf, "shrank its file"))
            FAIL_AT("the log does not tell of the shrunk file:\n%s", logbuf);
    }
}

/* One rng request over an established frontend. */
static int rng_once(struct vhu_fe *fe)
{
    struct vhu_fe_opts o = {.num_queues = 1, .queue_size = 16, .mem_size = 1 << 20};
    uint64_t gpa;
    int r = vhu_fe_start(fe, &o);
    void *buf = r == 0 ? vhu_fe_alloc(fe, 64, 64, &gpa) : NULL;

    if (!buf)
        return r < 0 ? r : -ENOMEM;
    struct vhu_vqd_seg seg = {gpa, 64};
    r = vhu_fe_request(fe, 0, &seg, 0, 1, 3000);
    return r == 64 ? 0 : (r < 0 ? r : -EIO);
}

/* Every process spawn() started, killed at exit if a failed test left it running. */
static pid_t spawned[16];
static unsigned nspawned;

static pid_t spawn(char *const argv[], int keep_fd)
{
    pid_t pid = fork();

    if (pid > 0 && nspawned < VHU_ARRAY_SIZE(spawned))
        spawned[nspawned++] = pid;

    if (pid == 0) {
        if (keep_fd >= 0) {
            dup2(keep_fd, 3); /* clears CLOEXEC on the copy */
        }
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    int status;

    for (int i = 0; i < timeout_ms / 10; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -ETIMEDOUT;
}

/* --fd with a connected socket: serve that one frontend, exit 0 when it leaves. */
TEST(fd_connected_socket)
{
    int sv[2];
    struct vhu_fe *fe;

    if (!vhud_path)
        SKIP("no vhud path given");
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    char *argv[] = {(char *)vhud_path, "rng", "--fd", "3", NULL};
    pid_t pid = spawn(argv, sv[1]);
    close(sv[1]);
    ASSERT_OK(vhu_fe_connect_fd(sv[0], &fe));
    ASSERT_OK(rng_once(fe));
    vhu_fe_free(fe);
    ASSERT_EQ(wait_exit(pid, 3000), 0);
}

/* --client: vhud connects to a listening frontend and reconnects after it goes away. */
TEST(client_mode_reconnects)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[160];
    struct vhu_fe *fe;
    int l, c;

    if (!vhud_path || !dir[0])
        SKIP("no vhud path given");
    snprintf(path, sizeof(path), "%s/client.sock", dir);
    strcpy(sa.sun_path, path);
    l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof(sa)));
    ASSERT_OK(listen(l, 1));
    char *argv[] = {(char *)vhud_path, "rng", "--client", "--socket-path", path,
                    "--reconnect-ms", "50", NULL};
    pid_t pid = spawn(argv, -1);
    for (int round = 0; round < 2; round++) {
        struct pollfd p = {.fd = l, .events = POLLIN};
        if (poll(&p, 1, 3000) != 1)
            FAIL_AT("round %d: vhud did not connect", round);
        c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        ASSERT(c >= 0);
        ASSERT_OK(vhu_fe_connect_fd(c, &fe));
        ASSERT_OK(rng_once(fe));
        vhu_fe_free(fe); /* vhud sees the hang-up and comes back */
    }
    kill(pid, SIGTERM);
    ASSERT_EQ(wait_exit(pid, 3000), 0);
    close(l);
    unlink(path);
}

/* ---- A slow or stalled sender holds no one but itself (issue #11 item 5) ---- */

static int connect_path(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool wait_path(const char *path, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            return true;
        usleep(10000);
    }
    return false;
}

/* Milliseconds until GET_FEATURES on a fresh connection to path is answered (-1: never, 3 s). */
static int features_latency_ms(const char *path)
{
    uint64_t t0 = vhu_now_ns();
    int s = connect_path(path), ms = -1;
    char buf[64];

    if (s < 0)
        return -1;
    if (send_msg(s, VHOST_USER_GET_FEATURES, 1, NULL, 0, NULL, 0) == 0) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 3000) == 1 && recv(s, buf, sizeof(buf), 0) == 12 + 8)
            ms = (int)((vhu_now_ns() - t0) / 1000000);
    }
    close(s);
    return ms;
}

/* Sends a header announcing 4 KiB, then one payload byte every 300 ms until told to stop. */
struct dribbler {
    int sock;
    volatile bool stop;
    unsigned sent;
};

static void *dribble_main(void *opaque)
{
    struct dribbler *d = opaque;
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_CONFIG, .flags = 1, .size = 4096};

    if (raw_send(d->sock, &h, sizeof(h), NULL, 0) < 0)
        return NULL;
    while (!d->stop && d->sent < 20) {
        usleep(300000);
        if (d->stop || raw_send(d->sock, "x", 1, NULL, 0) < 0)
            break;
        d->sent++;
    }
    return NULL;
}

/* vhud switch: port A dribbles; port B answers at once, and SIGTERM is served at once. */
TEST(slow_sender_holds_only_its_port)
{
    char a[160], b[160];
    struct dribbler dr = {0};
    pthread_t t;
    int lat, code;

    if (!vhud_path || !dir[0])
        SKIP("no vhud path given");
    snprintf(a, sizeof(a), "%s/port-a.sock", dir);
    snprintf(b, sizeof(b), "%s/port-b.sock", dir);
    char *argv[] = {(char *)vhud_path, "switch", "--port", a, "--port", b, NULL};
    pid_t pid = spawn(argv, -1);
    if (!wait_path(a, 3000) || !wait_path(b, 3000)) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        FAIL_AT("vhud switch did not start");
    }
    dr.sock = connect_path(a);
    ASSERT(dr.sock >= 0);
    ASSERT_EQ(pthread_create(&t, NULL, dribble_main, &dr), 0);
    usleep(500000); /* the message is started and dribbling */
    lat = features_latency_ms(b);
    kill(pid, SIGTERM);
    code = wait_exit(pid, 1000);
    dr.stop = true;
    pthread_join(t, NULL);
    close(dr.sock);
    if (lat < 0 || lat > 500)
        FAIL_AT("port B answered after %d ms while port A dribbled (want < 500)", lat);
    if (code != 0)
        FAIL_AT("vhud did not exit promptly on SIGTERM while port A dribbled (%d)", code);
    unlink(a);
    unlink(b);
}

/* A message stopped mid-way forever keeps its fds only until its sender disconnects. */
TEST(stalled_message_fds_closed_on_disconnect)
{
    struct vhost_user_memory mt = {.nregions = 2};
    int mfd = memfd_create("stall", MFD_CLOEXEC), efd = vhu_eventfd_new();
    int fds[2] = {mfd, efd};
    uint8_t buf[12 + 20];
    struct vhost_user_hdr h = {.request = VHOST_USER_SET_MEM_TABLE, .flags = 1, .size = 8 + 64};

    if (vhud_pid < 0)
        SKIP("vhud not running");
    ASSERT(mfd >= 0 && efd >= 0);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + 12, &mt, 20);
    int s = raw_connect();
    ASSERT(s >= 0);
    ASSERT_OK(raw_send(s, buf, sizeof(buf), fds, 2)); /* 20 of 72 payload bytes */
    close(mfd);
    close(efd);
    usleep(1500000);
    /* vhud waits for the rest without blocking: the connection and both fds are kept... */
    int held = count_fds(vhud_pid);
    close(s);
    if (held != baseline_fds + 3)
        FAIL_AT("vhud holds %d fds while the message is stalled, want %d", held, baseline_fds + 3);
    /* Once the sender is gone, the fds it sent are gone too. */
    ASSERT(fds_back_to_baseline());
    ASSERT_OK(good_session());
    ASSERT(fds_back_to_baseline());
}

/* ---- vhud destroys no file at its socket path (issue #11 item 9) ---- */

static bool log_has(off_t from, const char *what)
{
    char buf[8192];

    log_since(from, buf, sizeof(buf));
    return strstr(buf, what) != NULL;
}

TEST(socket_path_regular_file_survives)
{
    char path[160], data[16] = {0};
    off_t at = log_size();
    int fd, code;

    if (!vhud_path || !dir[0])
        SKIP("no vhud path given");
    snprintf(path, sizeof(path), "%s/important.img", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "precious", 8), 8);
    close(fd);
    char *argv[] = {(char *)vhud_path, "rng", "--socket-path", path, NULL};
    code = wait_exit(spawn(argv, -1), 3000);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0);
    ASSERT_EQ(read(fd, data, sizeof(data) - 1), 8);
    close(fd);
    ASSERT(strcmp(data, "precious") == 0);
    ASSERT(code > 0);
    if (!log_has(at, "not a socket"))
        FAIL_AT("no clear message in the log");
    unlink(path);
}

TEST(socket_path_in_use_refused)
{
    off_t at = log_size();
    struct stat before, after;
    int code;

    if (vhud_pid < 0)
        SKIP("vhud not running");
    ASSERT_OK(stat(sock_path, &before));
    char *argv[] = {(char *)vhud_path, "rng", "--socket-path", sock_path, NULL};
    code = wait_exit(spawn(argv, -1), 3000);
    ASSERT(code > 0);
    if (!log_has(at, "in use"))
        FAIL_AT("no clear message in the log");
    ASSERT_OK(stat(sock_path, &after));
    ASSERT(before.st_ino == after.st_ino); /* the first vhud's socket, untouched */
    ASSERT_OK(good_session());
}

/* The vhud rng pid on path serves one request, exits 0 on SIGTERM and removes its socket. */
static int serve_then_stop(const char *path, pid_t pid)
{
    struct vhu_fe *fe;
    int r = vhu_fe_connect(path, &fe);

    if (r == 0) {
        r = rng_once(fe);
        vhu_fe_free(fe);
    }
    kill(pid, SIGTERM);
    if (wait_exit(pid, 3000) != 0)
        return -EIO;
    return r < 0 ? r : access(path, F_OK) != 0 ? 0 : -EEXIST;
}

TEST(socket_path_stale_socket_replaced)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[160];

    if (!vhud_path || !dir[0])
        SKIP("no vhud path given");
    snprintf(path, sizeof(path), "%s/stale.sock", dir);
    strcpy(sa.sun_path, path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_OK(bind(l, (struct sockaddr *)&sa, sizeof(sa)));
    close(l); /* the file stays, nobody listens */
    char *argv[] = {(char *)vhud_path, "rng", "--socket-path", path, NULL};
    pid_t pid = spawn(argv, -1);
    bool up = false;
    for (int i = 0; i < 300 && !up; i++) {
        int c = connect_path(path);
        up = c >= 0;
        if (c >= 0)
            close(c);
        else
            usleep(10000);
    }
    ASSERT(up);
    usleep(50000); /* vhud saw the probe connection go */
    ASSERT_OK(serve_then_stop(path, pid));
}

TEST(socket_path_exit_keeps_anothers_socket)
{
    char path[160];

    if (!vhud_path || !dir[0])
        SKIP("no vhud path given");
    snprintf(path, sizeof(path), "%s/shared.sock", dir);
    char *argv[] = {(char *)vhud_path, "rng", "--socket-path", path, NULL};
    pid_t first = spawn(argv, -1);
    ASSERT(wait_path(path, 3000));
    ASSERT_OK(unlink(path)); /* someone removes it; a second vhud takes the path */
    pid_t second = spawn(argv, -1);
    ASSERT(wait_path(path, 3000));
    kill(first, SIGTERM);
    ASSERT_EQ(wait_exit(first, 3000), 0);
    ASSERT(access(path, F_OK) == 0); /* the second's socket is still there */
    ASSERT_OK(serve_then_stop(path, second));
}

/* Last of the tests on the shared vhud. */
TEST(sigterm_clean_exit)
{
    if (vhud_pid < 0)
        SKIP("vhud not running");
    ASSERT_OK(kill(vhud_pid, SIGTERM));
    ASSERT_EQ(wait_exit(vhud_pid, 3000), 0); /* promptly: no thread is stuck on a peer */
    vhud_pid = -1;
    ASSERT(access(sock_path, F_OK) != 0); /* socket file removed */
}

__attribute__((constructor)) static void get_args(void)
{
    /* The harness owns main(); the vhud path comes from the environment set by meson. */
    vhud_path = getenv("VHUD");
    signal(SIGPIPE, SIG_IGN);
}

__attribute__((destructor)) static void cleanup(void)
{
    if (vhud_pid > 0)
        kill(vhud_pid, SIGKILL);
    for (unsigned i = 0; i < nspawned; i++) {
        if (waitpid(spawned[i], NULL, WNOHANG) == 0)
            kill(spawned[i], SIGKILL);
    }
}
