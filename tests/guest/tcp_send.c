/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tcp_send IPV4 PORT FILE: sends FILE over TCP in 256 KiB writes, half-closes, and waits for the
 * peer to close. For the guests' initramfs (static, libc only): busybox nc writes about 1 KiB at
 * a time, so the guest's TCP builds GSO frames only when writes happen to pile up, and the
 * transmit-offload check of net.sh saw as few as 0 of them. Large writes let TCP build frames
 * up to its size goal from the first round trip on. Exit 0 when everything was sent and the
 * peer closed, 1 otherwise (with a message on stderr).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (256u << 10)

/* read(2), again after a signal */
static ssize_t read_retry(int fd, void *buf, size_t n)
{
    ssize_t r;

    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static int die(const char *what)
{
    fprintf(stderr, "tcp_send: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    static char buf[CHUNK];
    unsigned long long sent = 0;
    char *end;
    long port;
    int s, f;

    if (argc != 4) {
        fprintf(stderr, "usage: tcp_send IPV4 PORT FILE\n");
        return 2;
    }
    port = strtol(argv[2], &end, 10);
    if (*end || port <= 0 || port > 65535 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "tcp_send: bad address %s:%s\n", argv[1], argv[2]);
        return 2;
    }
    sa.sin_port = htons((unsigned short)port);
    f = open(argv[3], O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return die(argv[3]);
    s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return die("socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return die("connect");
    for (;;) {
        ssize_t n = read_retry(f, buf, sizeof(buf)), off = 0;

        if (n < 0)
            return die("read");
        if (n == 0)
            break;
        while (off < n) {
            ssize_t w = write(s, buf + off, (size_t)(n - off));

            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return die("write");
            off += w;
        }
        sent += (unsigned long long)n;
    }
    if (shutdown(s, SHUT_WR) < 0)
        return die("shutdown");
    /* the peer closes once it has read everything */
    for (;;) {
        ssize_t n = read_retry(s, buf, sizeof(buf));

        if (n < 0)
            return die("read from the peer");
        if (n == 0)
            break;
    }
    close(s);
    close(f);
    printf("tcp_send: %llu bytes\n", sent);
    return 0;
}
