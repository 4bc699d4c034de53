/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Frontend files mapped shared, and what happens when the frontend shrinks one afterwards.
 *
 * A MAP_SHARED mapping of a file raises SIGBUS on a touch past the file's end, and the size
 * checked at map time means nothing once the frontend calls ftruncate(). Two defences:
 *
 *  - A file that can carry seals (a memfd made with MFD_ALLOW_SEALING) must carry F_SEAL_SHRINK:
 *    its size can then never drop below what we checked. QEMU's memory-backend-memfd seals its
 *    memfds so by default, vhu's frontend does (src/frontend/fe.c), so does vhu's own inflight
 *    buffer. Such a file without the seal is refused: adding it is the frontend's one line.
 *  - A file that cannot be sealed is accepted, because that is what most frontends use: QEMU's
 *    memory-backend-file (hugetlbfs, /dev/shm or any other file: their seals are fixed to
 *    F_SEAL_SEAL, or the file system has none), QEMU's memfd with seal=off, and DPDK virtio-user
 *    (its hugepage memfds and its --no-huge memfd are created without MFD_ALLOW_SEALING; without
 *    --in-memory it maps hugetlbfs files). Its mapping is registered here, and a SIGBUS handler
 *    recovers a fault inside a registered mapping: it maps anonymous memory over the mapping
 *    from the faulting page to its end (everything there is past the file's new end), and the
 *    faulting access runs again against zeroes. The guest of that frontend sees zeroes where its
 *    memory was cut off, which is what it asked for; vhud and every other device go on. A fault
 *    outside every registered mapping goes to the handler installed before ours, or kills the
 *    process as it would have without us.
 *
 * The handler is installed once, the first time a mapping needs it. The registry is a fixed
 * array the handler scans with atomic loads (no lock, no allocation: async-signal-safe);
 * registration and removal run on control paths under a mutex. A mapping is removed from the
 * registry before it is unmapped; no thread touches a mapping while it is being unmapped (the
 * core stops or re-translates rings before a memory table is freed), so the handler never maps
 * over an address range that was handed out again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/mem.h"
#include "vhu/util.h"

#define GUARD_SLOTS 4096

struct guard_slot {
    uintptr_t start; /* 0: free (atomic) */
    uintptr_t end;   /* rounded up to align */
    uintptr_t align; /* the file's page size (huge pages for hugetlbfs) */
    unsigned long hits; /* faults recovered (atomic) */
    bool used;       /* taken (under guard_lock) */
};

static struct guard_slot guard_slots[GUARD_SLOTS];
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static bool guard_installed; /* under guard_lock */
static struct sigaction guard_prev;

static bool guard_recover(uintptr_t addr)
{
    for (unsigned i = 0; i < GUARD_SLOTS; i++) {
        struct guard_slot *g = &guard_slots[i];
        uintptr_t start = __atomic_load_n(&g->start, __ATOMIC_ACQUIRE);

        if (!start || addr < start || addr >= g->end)
            continue;
        uintptr_t from = addr & ~(g->align - 1);
        if (from < start)
            from = start;
        if (mmap((void *)from, g->end - from, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == MAP_FAILED)
            return false;
        __atomic_add_fetch(&g->hits, 1, __ATOMIC_RELAXED);
        return true;
    }
    return false;
}

static void guard_handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;

    if (si->si_code > 0 && guard_recover((uintptr_t)si->si_addr)) {
        errno = saved;
        return; /* the access runs again, on anonymous memory */
    }
    errno = saved;
    if (guard_prev.sa_flags & SA_SIGINFO) {
        guard_prev.sa_sigaction(sig, si, uc);
    } else if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN) {
        guard_prev.sa_handler(sig);
    } else {
        /* Not ours: die of it as before (the access faults again with the default action). */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGBUS, &dfl, NULL);
    }
}

static int guard_install(void)
{
    struct sigaction sa = {.sa_sigaction = guard_handler, .sa_flags = SA_SIGINFO | SA_RESTART};

    if (guard_installed)
        return 0;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &guard_prev) < 0)
        return -errno;
    guard_installed = true;
    return 0;
}

static int guard_add(void *base, uint64_t len, uint64_t align)
{
    int slot = -ENOSPC, r;

    pthread_mutex_lock(&guard_lock);
    r = guard_install();
    for (unsigned i = 0; r == 0 && i < GUARD_SLOTS; i++) {
        struct guard_slot *g = &guard_slots[i];

        if (g->used)
            continue;
        g->used = true;
        g->align = align;
        g->end = (uintptr_t)base + VHU_ALIGN_UP(len, align);
        __atomic_store_n(&g->hits, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&g->start, (uintptr_t)base, __ATOMIC_RELEASE);
        slot = (int)i;
        break;
    }
    pthread_mutex_unlock(&guard_lock);
    return r < 0 ? r : slot;
}

static unsigned long guard_remove(int slot)
{
    struct guard_slot *g = &guard_slots[slot];
    unsigned long hits;

    pthread_mutex_lock(&guard_lock);
    __atomic_store_n(&g->start, 0, __ATOMIC_RELEASE);
    hits = __atomic_load_n(&g->hits, __ATOMIC_RELAXED);
    g->used = false;
    pthread_mutex_unlock(&guard_lock);
    return hits;
}

/* 1: sealed against shrinking; 0: cannot be sealed (guard it); -EPERM: could be, is not. */
static int fd_shrink_sealed(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);

    if (seals < 0)
        return 0; /* no seals on this file system (EINVAL) */
    if (seals & F_SEAL_SHRINK)
        return 1;
    return (seals & F_SEAL_SEAL) ? 0 : -EPERM;
}

VHU_EXPORT int vhu_mem_map_fd(int fd, uint64_t offset, uint64_t len, struct vhu_mem_mapping *m)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t align;
    struct stat st;
    void *p;
    int sealed, slot = -1;

    m->base = NULL;
    m->len = 0;
    m->guard = -1;
    if (len == 0 || offset > UINT64_MAX - len || offset + len > (uint64_t)INT64_MAX ||
        (offset & (uint64_t)(page - 1)))
        return -EINVAL;
    /* Seals first: once F_SEAL_SHRINK is on, the size read next can only grow. */
    sealed = fd_shrink_sealed(fd);
    if (sealed < 0) {
        vhu_err("memory fd allows sealing but is not sealed against shrinking: the frontend "
                "must add F_SEAL_SHRINK");
        return sealed;
    }
    if (fstat(fd, &st) < 0)
        return -errno;
    /* The mapping must lie inside the file: a short file would SIGBUS on first touch. */
    if (S_ISREG(st.st_mode) && offset + len > (uint64_t)st.st_size)
        return -EINVAL;
    align = (uint64_t)page;
    if (st.st_blksize > page && !(st.st_blksize & (st.st_blksize - 1)))
        align = (uint64_t)st.st_blksize; /* hugetlbfs: the huge page size */
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return -errno;
    if (!sealed) {
        slot = guard_add(p, len, align);
        if (slot < 0) {
            vhu_err("cannot guard the mapping of an unsealed memory fd: %s", strerror(-slot));
            munmap(p, len);
            return slot;
        }
    }
    m->base = p;
    m->len = len;
    m->guard = slot;
    return 0;
}

VHU_EXPORT void vhu_mem_unmap_fd(struct vhu_mem_mapping *m)
{
    if (!m->base)
        return;
    if (m->guard >= 0) {
        unsigned long hits = guard_remove(m->guard);
        if (hits)
            vhu_err("memory mapping at %p (%llu bytes): the frontend shrank its file under it; "
                    "%lu faults were absorbed with zeroed memory",
                    m->base, (unsigned long long)m->len, hits);
    }
    munmap(m->base, m->len);
    m->base = NULL;
    m->len = 0;
    m->guard = -1;
}
