/* SPDX-License-Identifier: BSD-3-Clause */
/* Memory table: translation, overlap and wrap refusal, 509 slots, add/remove, refcounts. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vhu/mem.h"
#include "vhu/util.h"
#include "vhu_test.h"

static uint8_t backing[1 << 16];

static struct vhu_mem_region *region(uint64_t gpa, uint64_t size, uint64_t uva, void *host)
{
    struct vhu_mem_region_desc d = {.gpa = gpa, .size = size, .uva = uva, .fd = -1, .host = host};
    struct vhu_mem_region *r = NULL;

    if (vhu_mem_region_map(&d, &r) < 0)
        return NULL;
    return r;
}

TEST(translate_binary_search)
{
    struct vhu_mem_region *rs[3] = {
        region(0x30000, 0x1000, 0x7000, backing + 0x2000),
        region(0x10000, 0x1000, 0x5000, backing),
        region(0x20000, 0x1000, 0x6000, backing + 0x1000),
    };
    struct vhu_mem_table *t;
    uint64_t len;

    ASSERT_OK(vhu_mem_table_new(rs, 3, &t));
    len = 0x10;
    ASSERT(vhu_mem_gpa_to_host(t, 0x20010, &len) == backing + 0x1010);
    ASSERT_EQ(len, 0x10);
    len = 0x2000; /* clipped to the region's end */
    ASSERT(vhu_mem_gpa_to_host(t, 0x30ff0, &len) == backing + 0x2ff0);
    ASSERT_EQ(len, 0x10);
    len = 1;
    ASSERT(vhu_mem_gpa_to_host(t, 0x31000, &len) == NULL); /* one past the end */
    ASSERT(vhu_mem_gpa_to_host(t, 0xffff, &len) == NULL);
    ASSERT(vhu_mem_uva_to_host(t, 0x6004, &len) == backing + 0x1004);
    ASSERT(vhu_mem_gpa_range(t, 0x10000, 0x1000) == backing);
    ASSERT(vhu_mem_gpa_range(t, 0x10000, 0x1001) == NULL); /* crosses into a gap */
    ASSERT(vhu_mem_gpa_range(t, UINT64_MAX - 1, 4) == NULL); /* wraps */
    ASSERT(vhu_mem_gpa_range(t, 0x10000, 0) == NULL);
    vhu_mem_table_put(t);
}

TEST(adjacent_regions_split)
{
    struct vhu_mem_region *rs[2] = {
        region(0x0, 0x1000, 0x10000, backing),
        region(0x1000, 0x1000, 0x11000, backing + 0x4000),
    };
    struct vhu_mem_table *t;
    uint64_t len = 0x20;

    ASSERT_OK(vhu_mem_table_new(rs, 2, &t));
    ASSERT(vhu_mem_gpa_to_host(t, 0xff0, &len) == backing + 0xff0);
    ASSERT_EQ(len, 0x10); /* the rest lives in the other region */
    ASSERT(vhu_mem_gpa_range(t, 0xff0, 0x20) == NULL);
    vhu_mem_table_put(t);
}

TEST(overlap_refused)
{
    struct vhu_mem_region *gpa_ov[2] = {region(0x0, 0x2000, 0x10000, backing),
                                        region(0x1fff, 0x1000, 0x20000, backing)};
    struct vhu_mem_region *uva_ov[2] = {region(0x0, 0x1000, 0x10000, backing),
                                        region(0x8000, 0x1000, 0x10fff, backing)};
    struct vhu_mem_table *t = NULL;

    ASSERT_ERR(-EINVAL, vhu_mem_table_new(gpa_ov, 2, &t));
    ASSERT_ERR(-EINVAL, vhu_mem_table_new(uva_ov, 2, &t));
    /* The caller still owns refused regions. */
    for (int i = 0; i < 2; i++) {
        vhu_mem_region_free(gpa_ov[i]);
        vhu_mem_region_free(uva_ov[i]);
    }
}

TEST(wrap_and_zero_refused)
{
    struct vhu_mem_region_desc d = {.gpa = UINT64_MAX - 0xfff, .size = 0x2000, .uva = 0,
                                    .fd = -1, .host = backing};
    struct vhu_mem_region *r;

    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    d.gpa = 0;
    d.uva = UINT64_MAX;
    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    d.uva = 0;
    d.size = 0;
    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    d.size = 0x1000;
    d.host = NULL; /* no fd and no memory */
    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    /* A region that reaches the very last byte is fine. */
    d.gpa = UINT64_MAX - 0xfff;
    d.host = backing;
    ASSERT_OK(vhu_mem_region_map(&d, &r));
    vhu_mem_region_free(r);
}

TEST(fd_mapping_bounds)
{
    int fd = memfd_create("t", MFD_CLOEXEC);
    struct vhu_mem_region_desc d = {.gpa = 0, .size = 0x2000, .uva = 0, .fd = fd,
                                    .mmap_offset = 0x1000};
    struct vhu_mem_region *r;

    ASSERT(fd >= 0);
    ASSERT_OK(ftruncate(fd, 0x3000));
    ASSERT_OK(vhu_mem_region_map(&d, &r));
    r->host[0x1fff] = 7; /* the last byte is mapped */
    vhu_mem_region_free(r);
    d.mmap_offset = 0x1001; /* runs past the end of the file: would SIGBUS */
    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    d.mmap_offset = UINT64_MAX - 0x100;
    ASSERT_ERR(-EINVAL, vhu_mem_region_map(&d, &r));
    close(fd);
}

/* A region of 0x2000 bytes at offset 0x1000 of fd (0x3000 bytes long). */
static int map_3_pages(int fd, struct vhu_mem_region **r)
{
    struct vhu_mem_region_desc d = {.gpa = 0, .size = 0x2000, .uva = 0, .fd = fd,
                                    .mmap_offset = 0x1000};

    if (ftruncate(fd, 0x3000) < 0)
        return -errno;
    return vhu_mem_region_map(&d, r);
}

/* The frontend shrinks the file after we mapped it: a file that can be sealed must be sealed
 * against shrinking; one that cannot is guarded, and touching the cut-off part reads zeroes
 * instead of killing the process. */
TEST(fd_shrunk_after_mapping)
{
    int fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    struct vhu_mem_region *r;
    char path[64];

    /* sealable, not sealed: refused */
    ASSERT(fd >= 0);
    ASSERT_ERR(-EPERM, map_3_pages(fd, &r));
    /* sealed: mapped unguarded, and the frontend cannot shrink it any more */
    ASSERT_OK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
    ASSERT_OK(map_3_pages(fd, &r));
    ASSERT_EQ(r->map.guard, -1);
    ASSERT(ftruncate(fd, 0x1000) < 0 && errno == EPERM);
    r->host[0x1fff] = 1;
    vhu_mem_region_free(r);
    close(fd);

    /* cannot be sealed (no MFD_ALLOW_SEALING, as DPDK and QEMU's seal=off make them; a tmpfs
     * file as QEMU's memory-backend-file makes on /dev/shm): guarded */
    snprintf(path, sizeof(path), "/dev/shm/vhu-test-mem-%d", (int)getpid());
    for (int kind = 0; kind < 2; kind++) {
        fd = kind == 0 ? memfd_create("t", MFD_CLOEXEC)
                       : open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && kind == 1)
            break; /* no /dev/shm here */
        if (kind == 1)
            unlink(path);
        ASSERT(fd >= 0);
        for (int round = 0; round < 2; round++) { /* the guard slot is given back and reused */
            ASSERT_OK(map_3_pages(fd, &r));
            ASSERT(r->map.guard >= 0);
            memset(r->host, 0xab, 0x2000);
            ASSERT_OK(ftruncate(fd, 0x1800)); /* cuts the region after its first 0x800 bytes */
            ASSERT_EQ(r->host[0x7ff], 0xab);   /* still in the file */
            ASSERT_EQ(r->host[0x1000], 0);     /* past the end: zeroes, no SIGBUS */
            r->host[0x1fff] = 9;               /* and writable */
            ASSERT_EQ(r->host[0x1fff], 9);
            vhu_mem_region_free(r);
        }
        close(fd);
    }

    /* a SIGBUS outside every guarded mapping still kills */
    pid_t pid = fork();
    if (pid == 0) {
        int f = memfd_create("t", MFD_CLOEXEC);
        uint8_t *p;
        if (f < 0 || ftruncate(f, 0x2000) < 0 ||
            (p = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)) == MAP_FAILED ||
            ftruncate(f, 0) < 0)
            _exit(2);
        p[0x1000] = 1;
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    /* SIGBUS itself, or (under a sanitizer, whose handler was there before ours and gets the
     * fault) its report: an abort or a failure exit, never the 0 of a survived touch */
    ASSERT(WIFSIGNALED(status) ? (WTERMSIG(status) == SIGBUS || WTERMSIG(status) == SIGABRT)
                               : (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 2));
}

TEST(slots_509_add_remove)
{
    struct vhu_mem_table *t, *n;
    struct vhu_mem_region *r;

    ASSERT_OK(vhu_mem_table_new_empty(&t));
    for (unsigned i = 0; i < VHU_MEM_MAX_SLOTS; i++) {
        /* insert in a scrambled order so the sort matters */
        unsigned k = (i * 7919u) % VHU_MEM_MAX_SLOTS;
        r = region((uint64_t)k << 20, 0x100, (uint64_t)k << 24, backing + k);
        ASSERT(r);
        ASSERT_OK(vhu_mem_table_add(t, r, &n));
        vhu_mem_table_put(t);
        t = n;
    }
    ASSERT_EQ(t->nregions, 509);
    r = region(0xffff00000000ULL, 0x100, 0xffff00000000ULL, backing);
    ASSERT_ERR(-ENOSPC, vhu_mem_table_add(t, r, &n));
    vhu_mem_region_free(r);
    for (unsigned k = 0; k < VHU_MEM_MAX_SLOTS; k++) {
        uint64_t len = 1;
        if (vhu_mem_gpa_to_host(t, ((uint64_t)k << 20) + 0x80, &len) != backing + k + 0x80)
            FAIL_AT("slot %u translates wrong", k);
    }
    /* remove needs an exact match */
    ASSERT_ERR(-ENOENT, vhu_mem_table_remove(t, 5ULL << 20, 0x1000, 5ULL << 24, &n));
    ASSERT_OK(vhu_mem_table_remove(t, 5ULL << 20, 0x100, 5ULL << 24, &n));
    ASSERT_EQ(n->nregions, 508);
    uint64_t len = 1;
    ASSERT(vhu_mem_gpa_to_host(n, 5ULL << 20, &len) == NULL);
    ASSERT(vhu_mem_gpa_to_host(t, 5ULL << 20, &len) != NULL); /* the old table is unchanged */
    vhu_mem_table_put(t);
    vhu_mem_table_put(n);
}

TEST(region_shared_between_tables)
{
    int fd = memfd_create("t", MFD_CLOEXEC);
    struct vhu_mem_region_desc d = {.gpa = 0, .size = 0x1000, .uva = 0x1000, .fd = fd};
    struct vhu_mem_table *a, *b;
    struct vhu_mem_region *r;
    uint64_t len = 1;

    ASSERT_OK(ftruncate(fd, 0x1000));
    ASSERT_OK(vhu_mem_region_map(&d, &r));
    ASSERT_OK(vhu_mem_table_new(&r, 1, &a));
    ASSERT_OK(vhu_mem_table_add(a, region(0x1000, 0x1000, 0x2000, backing), &b));
    vhu_mem_table_put(a); /* the region stays mapped through b */
    uint8_t *p = vhu_mem_gpa_to_host(b, 0x10, &len);
    ASSERT(p);
    p[0] = 0x5a;
    ASSERT_EQ(p[0], 0x5a);
    vhu_mem_table_put(b);
    close(fd);
}
