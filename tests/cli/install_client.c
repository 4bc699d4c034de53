/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A program from outside the tree (tests/cli/install.sh): built only against an installed
 * libvhu (pkg-config --cflags --libs libvhu, installed headers, libvhu.so.0), it reads entropy
 * from a virtio-rng backend through the public frontend API and prints it in hex.
 *
 *   install_client SOCKET
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vhu/frontend.h>
#include <vhu/virtio.h>

#define READ_BYTES 64u

int main(int argc, char **argv)
{
    const struct vhu_fe_opts fo = {
        .features = 1ULL << VHU_VIRTIO_F_VERSION_1,
        .num_queues = 1,
        .queue_size = 64,
        .mem_size = (size_t)1 << 20,
        .mem_regions = 1,
    };
    struct vhu_vqd_seg seg;
    struct vhu_fe *fe;
    unsigned nonzero = 0;
    uint8_t *buf;
    uint64_t gpa;
    int r;

    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
        return 2;
    }
    r = vhu_fe_connect(argv[1], &fe);
    if (r < 0) {
        fprintf(stderr, "install_client: connect %s: %s\n", argv[1], strerror(-r));
        return 1;
    }
    r = vhu_fe_start(fe, &fo);
    if (r < 0) {
        fprintf(stderr, "install_client: negotiation failed: %s\n", strerror(-r));
        goto out;
    }
    buf = vhu_fe_alloc(fe, READ_BYTES, 64, &gpa);
    if (!buf) {
        r = -ENOMEM;
        fprintf(stderr, "install_client: no room for %u bytes in the shared memory\n", READ_BYTES);
        goto out;
    }
    seg = (struct vhu_vqd_seg){.addr = gpa, .len = READ_BYTES};
    r = vhu_fe_request(fe, 0, &seg, 0, 1, 5000);
    if (r < 0) {
        fprintf(stderr, "install_client: request failed: %s\n", strerror(-r));
        goto out;
    }
    if (r == 0 || r > (int)READ_BYTES) {
        fprintf(stderr, "install_client: device wrote %d bytes into a %u-byte buffer\n", r,
                READ_BYTES);
        r = -EPROTO;
        goto out;
    }
    printf("install_client: %d bytes, features 0x%llx:", r,
           (unsigned long long)vhu_fe_features(fe));
    for (int i = 0; i < r; i++) {
        printf("%02x", buf[i]);
        nonzero += buf[i] != 0;
    }
    printf("\n");
    if (r >= 16 && nonzero == 0) {
        fprintf(stderr, "install_client: %d zero bytes: not entropy\n", r);
        r = -EPROTO;
    }
out:
    vhu_fe_free(fe);
    return r < 0 ? 1 : 0;
}
