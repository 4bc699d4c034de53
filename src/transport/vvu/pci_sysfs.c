/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The VVU device from Linux userspace inside the backend VM (root): config space through
 * /sys/bus/pci/devices/BDF/config, BARs through resourceN mmaps, DMA memory from 2 MiB
 * hugepages whose guest-physical addresses come from /proc/self/pagemap. No interrupts (QEMU's
 * proxy delivers none under TCG, and a userspace driver without vfio has no way to take them):
 * the driver polls. No IOMMU: the addresses handed to the device are physical, so this is for a
 * dedicated backend VM only.
 *
 * "pci:BDF,shm=BDF2": the shared-memory window is not read through the VVU device's BAR but
 * through BAR 2 of another PCI function that maps the frontend's memory file itself, byte for
 * byte from offset 0 as the window does (QEMU's ivshmem-plain on that file). QEMU 7.2's
 * x-pci-proxy-dev can only forward each load and store of a BAR over its socket (~15 us each);
 * with the mirror the backend VM reaches the frontend's memory at RAM speed while rings,
 * messages and doorbells still go through the VVU device. The mirror must be at least as large
 * as the window.
 *
 * DMA allocations are carved from hugepages (each physically contiguous) at 4 KiB granularity;
 * one allocation never spans two pages, so the largest is 2 MiB (-E2BIG beyond). A page is
 * returned to the kernel when its last allocation is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/vvu/pci.h"
#include "vhu/log.h"
#include "vhu/util.h"

#define SYSFS_PCI "/sys/bus/pci/devices/"
#define HUGE_SZ (2u << 20)
#define DMA_ALIGN 4096u
#define NUM_BARS 6
#define MAX_HUGE_CHUNKS 64
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2u
#define PCI_COMMAND_MASTER 0x4u
#define IORESOURCE_MEM 0x200ull
#define SHM_MIRROR_BAR 2   /* the VVU window's BAR, and ivshmem-plain's memory BAR */

struct huge_chunk {
    uint8_t *host;      /* NULL: slot free */
    uint64_t phys;
    size_t used;        /* bump offset */
    unsigned live;      /* allocations not yet freed */
};

struct sysfs_pci {
    struct vhu_pci pci;
    char dir[sizeof(SYSFS_PCI) + 16];
    int cfg_fd;
    uint32_t cfg_size;
    uint64_t bar_len[NUM_BARS];
    bool bar_mem[NUM_BARS];
    volatile uint8_t *bar_map[NUM_BARS];   /* whole BAR, mapped on first use */
    size_t bar_map_len[NUM_BARS];
    /* ",shm=BDF": BAR 2 of that function serves bar_map (the window); else shm == NULL */
    struct sysfs_pci *shm;
    struct huge_chunk chunks[MAX_HUGE_CHUNKS];
};

static struct sysfs_pci *to_sp(struct vhu_pci *p)
{
    return VHU_CONTAINER_OF(p, struct sysfs_pci, pci);
}

/* "DDDD:BB:DD.F", lower-case hex as sysfs names it: nothing else reaches a path. */
static bool bdf_valid(const char *s)
{
    static const char pat[] = "xxxx:xx:xx.x";

    if (strlen(s) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; pat[i]; i++) {
        bool hex = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');

        if (pat[i] == 'x' ? !hex : s[i] != pat[i])
            return false;
    }
    return true;
}

/* ---- config space --------------------------------------------------------------------------- */

/* One pread/pwrite of the config file: the kernel turns it into one access of that width. */
static int cfg_rw(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len, bool write)
{
    struct sysfs_pci *sp = to_sp(p);
    ssize_t n;

    if ((len != 1 && len != 2 && len != 4) || off > sp->cfg_size - len)
        return -EINVAL;
    errno = 0;
    n = write ? pwrite(sp->cfg_fd, buf, len, off) : pread(sp->cfg_fd, buf, len, off);
    if (n != (ssize_t)len)
        return errno ? -errno : -EIO;
    return 0;
}

static int sp_cfg_read(struct vhu_pci *p, uint32_t off, void *buf, uint32_t len)
{
    return cfg_rw(p, off, buf, len, false);
}

static int sp_cfg_write(struct vhu_pci *p, uint32_t off, const void *buf, uint32_t len)
{
    return cfg_rw(p, off, (void *)(uintptr_t)buf, len, true);
}

/* ---- BARs ----------------------------------------------------------------------------------- */

static int bar_get(struct sysfs_pci *sp, unsigned bar, volatile uint8_t **base)
{
    char path[sizeof(sp->dir) + 16];
    void *m;
    size_t len;
    int fd;

    if (bar >= NUM_BARS || !sp->bar_len[bar] || !sp->bar_mem[bar])
        return -ENOENT;
    if (!sp->bar_map[bar]) {
        len = VHU_ALIGN_UP((size_t)sp->bar_len[bar], (size_t)sysconf(_SC_PAGESIZE));
        snprintf(path, sizeof(path), "%s/resource%u", sp->dir, bar);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            vhu_err("%s: open %s: %s", sp->pci.name, path, strerror(errno));
            return -errno;
        }
        m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED) {
            vhu_err("%s: mmap BAR%u (%zu bytes): %s", sp->pci.name, bar, len, strerror(errno));
            return -errno;
        }
        sp->bar_map[bar] = m;
        sp->bar_map_len[bar] = len;
    }
    *base = sp->bar_map[bar];
    return 0;
}

static int bar_access_check(struct sysfs_pci *sp, unsigned bar, uint64_t off, uint32_t len,
                            volatile uint8_t **base)
{
    int r;

    if (len != 1 && len != 2 && len != 4 && len != 8)
        return -EINVAL;
    if (off & (len - 1))
        return -EINVAL; /* natural alignment: one bus access of exactly len bytes */
    r = bar_get(sp, bar, base);
    if (r < 0)
        return r;
    if (off > sp->bar_len[bar] - len)
        return -ERANGE;
    return 0;
}

/* Register accesses: one volatile load or store of exactly the asked width (a device register
 * may act on the access itself). Values are little-endian on the bus and on x86 alike. */
static int bar_rw(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len,
                  bool write)
{
    volatile uint8_t *b;
    int r = bar_access_check(to_sp(p), bar, off, len, &b);
    union {
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
    } v;

    if (r < 0)
        return r;
    b += off;
    if (write)
        memcpy(&v, buf, len);
    switch (len) {
    case 1: if (write) *(volatile uint8_t *)b = v.u8; else v.u8 = *(volatile uint8_t *)b; break;
    case 2: if (write) *(volatile uint16_t *)b = v.u16; else v.u16 = *(volatile uint16_t *)b; break;
    case 4: if (write) *(volatile uint32_t *)b = v.u32; else v.u32 = *(volatile uint32_t *)b; break;
    default: if (write) *(volatile uint64_t *)b = v.u64; else v.u64 = *(volatile uint64_t *)b; break;
    }
    if (!write)
        memcpy(buf, &v, len);
    return 0;
}

static int sp_bar_read(struct vhu_pci *p, unsigned bar, uint64_t off, void *buf, uint32_t len)
{
    return bar_rw(p, bar, off, buf, len, false);
}

static int sp_bar_write(struct vhu_pci *p, unsigned bar, uint64_t off, const void *buf,
                        uint32_t len)
{
    return bar_rw(p, bar, off, (void *)(uintptr_t)buf, len, true);
}

static uint64_t sp_bar_size(struct vhu_pci *p, unsigned bar)
{
    struct sysfs_pci *sp = to_sp(p);

    return bar < NUM_BARS ? sp->bar_len[bar] : 0;
}

/* A slice of the whole-BAR mapping, which lives until free: the BAR's pages are the device's
 * own, so they cannot go stale under us. */
static int sp_bar_map(struct vhu_pci *p, unsigned bar, uint64_t off, uint64_t len, void **host)
{
    struct sysfs_pci *sp = to_sp(p);
    volatile uint8_t *b;
    int r;

    if (sp->shm) { /* only the window is ever mapped: it comes from its mirror */
        sp = sp->shm;
        bar = SHM_MIRROR_BAR;
    }
    r = bar_get(sp, bar, &b);
    if (r < 0)
        return r;
    if (!len || off > sp->bar_len[bar] || len > sp->bar_len[bar] - off)
        return -ERANGE;
    *host = (void *)(uintptr_t)(b + off);
    return 0;
}

static void sp_bar_unmap(struct vhu_pci *p, void *host, uint64_t len)
{
    (void)p, (void)host, (void)len; /* slices of the BAR mapping: nothing to undo */
}

static int sp_io_fd(struct vhu_pci *p, unsigned bar, uint64_t off, uint32_t size, int *fd)
{
    (void)p, (void)bar, (void)off, (void)size, (void)fd;
    return -ENOTSUP;
}

static int sp_irq_fds(struct vhu_pci *p, unsigned n, int *fds)
{
    (void)p, (void)n, (void)fds;
    return -ENOTSUP;
}

/* ---- DMA memory ----------------------------------------------------------------------------- */

/* The physical address of a mapped, present page (root only: others read PFN 0). */
static int virt_to_phys(const void *addr, uint64_t *phys)
{
    uint64_t ent, pfn;
    long psz = sysconf(_SC_PAGESIZE);
    off_t at = (off_t)((uintptr_t)addr / (uintptr_t)psz * sizeof(ent));
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = pread(fd, &ent, sizeof(ent), at);
    close(fd);
    if (n != (ssize_t)sizeof(ent))
        return -EIO;
    pfn = ent & ((1ull << 55) - 1);
    if (!(ent & (1ull << 63)))
        return -EFAULT; /* not present */
    if (!pfn)
        return -EPERM;  /* PFNs hidden: not root */
    *phys = pfn * (uint64_t)psz + (uintptr_t)addr % (uintptr_t)psz;
    return 0;
}

static int chunk_new(struct vhu_pci *p, struct huge_chunk *c)
{
    void *m = mmap(NULL, HUGE_SZ, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
    int r;

    if (m == MAP_FAILED) {
        r = -errno;
        vhu_err("%s: no 2 MiB hugepage for DMA memory (%s): echo N > "
                "/proc/sys/vm/nr_hugepages", p->name, strerror(errno));
        return r;
    }
    /* MAP_LOCKED is best effort; the page must not move while the device uses its address.
     * Hugetlb pages are never swapped or migrated by reclaim, mlock makes it explicit. */
    if (mlock(m, HUGE_SZ) < 0 && errno != EPERM)
        vhu_warn("%s: mlock of DMA memory: %s", p->name, strerror(errno));
    r = virt_to_phys(m, &c->phys);
    if (r < 0) {
        vhu_err("%s: physical address of DMA memory: %s (root needed)", p->name, strerror(-r));
        munmap(m, HUGE_SZ);
        return r;
    }
    c->host = m;
    c->used = 0;
    c->live = 0;
    return 0;
}

static int sp_dma_alloc(struct vhu_pci *p, size_t len, void **host, uint64_t *iova)
{
    struct sysfs_pci *sp = to_sp(p);
    struct huge_chunk *c = NULL;
    size_t need;
    int r;

    if (!len)
        return -EINVAL;
    if (len > HUGE_SZ) {
        vhu_err("%s: DMA allocation of %zu bytes: at most one 2 MiB hugepage", p->name, len);
        return -E2BIG;
    }
    need = VHU_ALIGN_UP(len, (size_t)DMA_ALIGN);
    for (unsigned i = 0; i < MAX_HUGE_CHUNKS && !c; i++)
        if (sp->chunks[i].host && HUGE_SZ - sp->chunks[i].used >= need)
            c = &sp->chunks[i];
    for (unsigned i = 0; i < MAX_HUGE_CHUNKS && !c; i++) {
        if (!sp->chunks[i].host) {
            r = chunk_new(p, &sp->chunks[i]);
            if (r < 0)
                return r;
            c = &sp->chunks[i];
        }
    }
    if (!c)
        return -ENOMEM;
    memset(c->host + c->used, 0, need);
    *host = c->host + c->used;
    *iova = c->phys + c->used;
    c->used += need;
    c->live++;
    return 0;
}

static void sp_dma_free(struct vhu_pci *p, void *host, size_t len)
{
    struct sysfs_pci *sp = to_sp(p);

    (void)len;
    for (unsigned i = 0; i < MAX_HUGE_CHUNKS; i++) {
        struct huge_chunk *c = &sp->chunks[i];

        if (!c->host || (uint8_t *)host < c->host || (uint8_t *)host >= c->host + HUGE_SZ)
            continue;
        if (c->live && --c->live == 0) {
            munmap(c->host, HUGE_SZ);
            c->host = NULL;
        }
        return;
    }
}

/* ---- lifetime ------------------------------------------------------------------------------- */

static int command_update(struct sysfs_pci *sp, uint16_t set, uint16_t clear)
{
    uint16_t cmd;
    int r = sp_cfg_read(&sp->pci, PCI_COMMAND, &cmd, 2);

    if (r < 0)
        return r;
    cmd = (uint16_t)((cmd | set) & ~clear);
    return sp_cfg_write(&sp->pci, PCI_COMMAND, &cmd, 2);
}

static int sp_reset(struct vhu_pci *p)
{
    struct sysfs_pci *sp = to_sp(p);
    char path[sizeof(sp->dir) + 8];
    int fd, r = 0;

    snprintf(path, sizeof(path), "%s/reset", sp->dir);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno; /* no reset method: the driver resets by status */
    if (write(fd, "1", 1) != 1)
        r = -errno;
    close(fd);
    if (r == 0) /* a function reset clears the command register */
        r = command_update(sp, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 0);
    return r;
}

static void sp_free(struct vhu_pci *p)
{
    struct sysfs_pci *sp = to_sp(p);

    if (sp->shm)
        sp_free(&sp->shm->pci);

    /* No more DMA into pages we give back. */
    if (sp->cfg_fd >= 0)
        command_update(sp, 0, PCI_COMMAND_MASTER);
    for (unsigned i = 0; i < NUM_BARS; i++)
        if (sp->bar_map[i])
            munmap((void *)(uintptr_t)sp->bar_map[i], sp->bar_map_len[i]);
    for (unsigned i = 0; i < MAX_HUGE_CHUNKS; i++)
        if (sp->chunks[i].host)
            munmap(sp->chunks[i].host, HUGE_SZ);
    vhu_fd_close(&sp->cfg_fd);
    free(sp);
}

static const struct vhu_pci_ops sysfs_ops = {
    .cfg_read = sp_cfg_read, .cfg_write = sp_cfg_write,
    .bar_read = sp_bar_read, .bar_write = sp_bar_write, .bar_size = sp_bar_size,
    .bar_map = sp_bar_map, .bar_unmap = sp_bar_unmap,
    .io_fd = sp_io_fd, .irq_fds = sp_irq_fds,
    .dma_alloc = sp_dma_alloc, .dma_free = sp_dma_free,
    .reset = sp_reset, .free = sp_free,
};

/* BAR sizes and kinds from the `resource` file: one "start end flags" line per resource. */
static int read_resources(struct sysfs_pci *sp)
{
    char path[sizeof(sp->dir) + 16];
    FILE *f;

    snprintf(path, sizeof(path), "%s/resource", sp->dir);
    f = fopen(path, "re");
    if (!f)
        return -errno;
    for (unsigned i = 0; i < NUM_BARS; i++) {
        unsigned long long start, end, flags;

        if (fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3) {
            fclose(f);
            return -EIO;
        }
        if (end > start) {
            sp->bar_len[i] = end - start + 1;
            sp->bar_mem[i] = flags & IORESOURCE_MEM;
        }
    }
    fclose(f);
    return 0;
}

static int sysfs_open_one(const char *bdf, struct vhu_pci **out)
{
    struct sysfs_pci *sp;
    char path[sizeof(sp->dir) + 16];
    struct stat st;
    int r;

    *out = NULL;
    if (!bdf || !bdf_valid(bdf)) {
        vhu_err("pci: '%s' is not a PCI address (DDDD:BB:DD.F)", bdf ? bdf : "(null)");
        return -EINVAL;
    }
    sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    sp->pci.ops = &sysfs_ops;
    snprintf(sp->pci.name, sizeof(sp->pci.name), "pci:%s", bdf);
    snprintf(sp->dir, sizeof(sp->dir), SYSFS_PCI "%s", bdf);
    snprintf(path, sizeof(path), "%s/config", sp->dir);
    sp->cfg_fd = open(path, O_RDWR | O_CLOEXEC);
    if (sp->cfg_fd < 0) {
        r = -errno;
        vhu_err("%s: open %s: %s", sp->pci.name, path, strerror(errno));
        free(sp);
        return r;
    }
    /* 256 (conventional) or 4096 (extended) readable bytes for root */
    r = fstat(sp->cfg_fd, &st) < 0 ? -errno : 0;
    sp->cfg_size = r == 0 && st.st_size >= 4096 ? 4096 : 256;
    if (r == 0)
        r = read_resources(sp);
    if (r == 0)
        r = command_update(sp, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 0);
    if (r < 0) {
        vhu_err("%s: %s", sp->pci.name, strerror(-r));
        vhu_fd_close(&sp->cfg_fd);
        free(sp);
        return r;
    }
    *out = &sp->pci;
    return 0;
}

/* "BDF" or "BDF,shm=BDF2" (see the top of this file). */
int vhu_pci_sysfs_open(const char *spec, struct vhu_pci **out)
{
    static const char opt[] = ",shm=";
    char bdf[sizeof("xxxx:xx:xx.x")];
    const char *comma = spec ? strchr(spec, ',') : NULL;
    struct vhu_pci *dev, *mirror;
    size_t n;
    int r;

    *out = NULL;
    if (!comma)
        return sysfs_open_one(spec, out);
    n = (size_t)(comma - spec);
    if (n >= sizeof(bdf) || strncmp(comma, opt, sizeof(opt) - 1) != 0) {
        vhu_err("pci:%s: expected DDDD:BB:DD.F or DDDD:BB:DD.F,shm=DDDD:BB:DD.F", spec);
        return -EINVAL;
    }
    memcpy(bdf, spec, n);
    bdf[n] = '\0';
    r = sysfs_open_one(bdf, &dev);
    if (r < 0)
        return r;
    r = sysfs_open_one(comma + sizeof(opt) - 1, &mirror);
    if (r == 0 && !to_sp(mirror)->bar_mem[SHM_MIRROR_BAR]) {
        vhu_err("%s: no memory BAR %u to mirror the shared-memory window", mirror->name,
                SHM_MIRROR_BAR);
        sp_free(mirror);
        r = -ENOENT;
    } else if (r == 0 && to_sp(mirror)->bar_len[SHM_MIRROR_BAR] <
                             to_sp(dev)->bar_len[SHM_MIRROR_BAR]) {
        vhu_err("%s: BAR %u (%" PRIu64 " bytes) is smaller than the window of %s (%" PRIu64
                " bytes)", mirror->name, SHM_MIRROR_BAR, to_sp(mirror)->bar_len[SHM_MIRROR_BAR],
                dev->name, to_sp(dev)->bar_len[SHM_MIRROR_BAR]);
        sp_free(mirror);
        r = -ERANGE;
    }
    if (r < 0) {
        sp_free(dev);
        return r;
    }
    to_sp(dev)->shm = to_sp(mirror);
    snprintf(dev->name + strlen(dev->name), sizeof(dev->name) - strlen(dev->name), ",shm=%s",
             comma + sizeof(opt) - 1);
    vhu_info("%s: the shared-memory window is read through %s BAR %u", dev->name, mirror->name,
             SHM_MIRROR_BAR);
    *out = dev;
    return 0;
}
