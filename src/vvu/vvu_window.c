/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The shared-memory window (BAR2): the frontend's memory regions, all backed by one file, each
 * at its file offset (so a region's mmap_offset is already its window offset and the relayed
 * message needs no rewriting). The bus peer maps the file (bar_mmap) or, when it cannot, reads
 * and writes through the device's own mapping of the regions (bar_read/bar_write).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhu/log.h"
#include "vhu/util.h"
#include "vvu_internal.h"

void vvu_window_init(struct vvu_window *w)
{
    memset(w, 0, sizeof(*w));
    w->fd = -1;
}

static void region_drop(struct vvu_win_region *r)
{
    vhu_mem_unmap_fd(&r->map);
}

static void window_drop(struct vvu_window *w)
{
    for (unsigned i = 0; i < w->n; i++)
        region_drop(&w->r[i]);
    w->n = 0;
    vhu_fd_close(&w->fd);
}

void vvu_window_clear(struct vvu_dev *d)
{
    bool had = d->win.fd >= 0;

    window_drop(&d->win);
    if (had)
        vvu_layout_changed(d);
}

static uint64_t file_align(const struct stat *st)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

    /* hugetlbfs maps in huge pages */
    if ((uint64_t)st->st_blksize > page && !(st->st_blksize & (st->st_blksize - 1)))
        return (uint64_t)st->st_blksize;
    return page;
}

/* Check region r (backed by the file st describes) against the window w and map its extent. */
static int region_make(struct vvu_dev *d, const struct vvu_window *w,
                       const struct vhost_user_memory_region *m, int fd, const struct stat *st,
                       struct vvu_win_region *out)
{
    uint64_t a = file_align(st), end;

    if (m->memory_size == 0 || m->mmap_offset > d->opts.shm_size ||
        m->memory_size > d->opts.shm_size - m->mmap_offset) {
        vhu_err("vvu: frontend region [0x%llx, +0x%llx) of its file does not fit the %llu-byte "
                "window",
                (unsigned long long)m->mmap_offset, (unsigned long long)m->memory_size,
                (unsigned long long)d->opts.shm_size);
        return -ERANGE;
    }
    end = m->mmap_offset + m->memory_size;
    for (unsigned i = 0; i < w->n; i++) {
        const struct vvu_win_region *o = &w->r[i];

        if (m->mmap_offset < o->off + o->size && o->off < end) {
            vhu_err("vvu: frontend regions overlap in their file");
            return -EINVAL;
        }
    }
    memset(out, 0, sizeof(*out));
    out->gpa = m->guest_phys_addr;
    out->size = m->memory_size;
    out->uva = m->userspace_addr;
    out->off = m->mmap_offset;
    out->map_off = m->mmap_offset & ~(a - 1);
    out->map_len = VHU_ALIGN_UP(end, a) - out->map_off;
    if (out->map_off + out->map_len > d->opts.shm_size) {
        vhu_err("vvu: frontend region's pages do not fit the window");
        return -ERANGE;
    }
    return vhu_mem_map_fd(fd, out->map_off, out->map_len, &out->map);
}

static int file_of(int fd, struct stat *st)
{
    if (fstat(fd, st) < 0)
        return -errno;
    if (!S_ISREG(st->st_mode)) {
        vhu_err("vvu: frontend memory fd is not a regular file");
        return -EINVAL;
    }
    return 0;
}

static bool same_file(const struct stat *a, dev_t dev, ino_t ino)
{
    return a->st_dev == dev && a->st_ino == ino;
}

int vvu_window_set(struct vvu_dev *d, const struct vhost_user_memory_region *r, const int *fds,
                   unsigned n)
{
    struct vvu_window *w = malloc(sizeof(*w));
    struct stat st0 = {0}, st;
    int err = 0;

    if (!w)
        return -ENOMEM;
    vvu_window_init(w);
    for (unsigned i = 0; i < n && err == 0; i++) {
        err = file_of(fds[i], &st);
        if (err == 0 && i == 0)
            st0 = st;
        if (err == 0 && !same_file(&st, st0.st_dev, st0.st_ino)) {
            vhu_err("vvu: frontend memory regions come from more than one file: the window "
                    "can show only one");
            err = -EINVAL;
        }
        if (err == 0)
            err = region_make(d, w, &r[i], fds[i], &st, &w->r[w->n]);
        if (err == 0)
            w->n++;
    }
    if (err == 0 && n > 0) {
        w->fd = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
        w->st_dev = st0.st_dev;
        w->st_ino = st0.st_ino;
        if (w->fd < 0)
            err = -errno;
    }
    if (err < 0) {
        window_drop(w);
        free(w);
        return err;
    }
    window_drop(&d->win);
    d->win = *w;
    free(w);
    vvu_layout_changed(d);
    return 0;
}

int vvu_window_add(struct vvu_dev *d, const struct vhost_user_memory_region *r, int fd)
{
    struct vvu_window *w = &d->win;
    struct stat st;
    int err;

    if (w->n >= VVU_MAX_MEM_SLOTS) {
        vhu_err("vvu: frontend adds more than %u memory regions", VVU_MAX_MEM_SLOTS);
        return -ENOSPC;
    }
    err = file_of(fd, &st);
    if (err < 0)
        return err;
    if (w->fd >= 0 && !same_file(&st, w->st_dev, w->st_ino)) {
        vhu_err("vvu: frontend adds a memory region from another file: the window can show "
                "only one");
        return -EINVAL;
    }
    err = region_make(d, w, r, fd, &st, &w->r[w->n]);
    if (err < 0)
        return err;
    if (w->fd < 0) {
        w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (w->fd < 0) {
            err = -errno;
            region_drop(&w->r[w->n]);
            return err;
        }
        w->st_dev = st.st_dev;
        w->st_ino = st.st_ino;
    }
    w->n++;
    vvu_layout_changed(d);
    return 0;
}

void vvu_window_remove(struct vvu_dev *d, const struct vhost_user_memory_region *r)
{
    struct vvu_window *w = &d->win;

    for (unsigned i = 0; i < w->n; i++) {
        struct vvu_win_region *x = &w->r[i];

        if (x->gpa != r->guest_phys_addr || x->size != r->memory_size ||
            x->uva != r->userspace_addr)
            continue;
        region_drop(x);
        w->r[i] = w->r[--w->n];
        if (w->n == 0)
            vhu_fd_close(&w->fd);
        vvu_layout_changed(d);
        return;
    }
    /* not ours: the backend answers the frontend (REPLY_ACK) */
}

int vvu_window_mmap(struct vvu_dev *d, uint64_t *file_off, struct vhu_pcidev_area *areas,
                    unsigned max, unsigned *n)
{
    const struct vvu_window *w = &d->win;
    int fd;

    if (w->fd < 0 || w->n == 0)
        return -ENOENT;
    fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    *file_off = 0;
    *n = 0;
    for (unsigned i = 0; i < w->n && *n < max; i++)
        areas[(*n)++] = (struct vhu_pcidev_area){w->r[i].map_off, w->r[i].map_len};
    return fd;
}

void *vvu_window_host(struct vvu_dev *d, uint64_t off, uint32_t len)
{
    const struct vvu_window *w = &d->win;

    for (unsigned i = 0; i < w->n; i++) {
        const struct vvu_win_region *r = &w->r[i];

        if (off >= r->map_off && off - r->map_off < r->map_len &&
            len <= r->map_len - (off - r->map_off))
            return (uint8_t *)r->map.base + (off - r->map_off);
    }
    return NULL;
}
