/* wsbench: a closed-loop WebSocket load generator (loopback only), for bench_server.py.
 *
 *   wsbench HOST PORT PATH CONNECTIONS DURATION_S MESSAGE [MAX_REQUESTS]
 *
 * Opens CONNECTIONS WebSockets to ws://HOST:PORT/PATH, then on each one sends MESSAGE as a
 * masked text frame, waits for one data frame back, records the round trip and sends again,
 * until DURATION_S is over. One thread, epoll. Prints one JSON line with the same fields as
 * loadgen.py's Python client. loadgen.py compiles it on demand (cc -O2) and falls back to the
 * Python client when no C compiler is available.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

typedef struct {
    int fd;
    int live;
    uint64_t t0;
    size_t len;
    unsigned char buf[BUF];
} conn_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile index (ceil(q * n) - 1), as loadgen.percentile(). */
static size_t rank(double q, size_t n) {
    size_t k = (size_t)(q * (double)n);
    if ((double)k < q * (double)n) k++;
    if (k) k--;
    return k < n ? k : n - 1;
}

static uint64_t *lat;
static size_t nlat, caplat;
static long errors;
static char first_reply[512];
static int have_first;

static void record(uint64_t v) {
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof *lat);
        if (!lat) { perror("realloc"); exit(2); }
    }
    lat[nlat++] = v;
}

static int send_all(int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { usleep(10); continue; }
            return -1;
        }
        p += k; n -= (size_t)k;
    }
    return 0;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT PATH CONNECTIONS DURATION_S MESSAGE [MAX_REQUESTS]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *path = argv[3], *msg = argv[6];
    int port = atoi(argv[2]), nconn = atoi(argv[4]);
    double duration = atof(argv[5]);
    long max_requests = argc > 7 ? atol(argv[7]) : 0;

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || (ntohl(addr.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "wsbench: only 127.0.0.0/8 addresses are allowed, not %s\n", host);
        return 2;
    }

    /* The one frame we send: FIN + text, masked, constant. */
    size_t mlen = strlen(msg), flen = 0;
    unsigned char *frame = malloc(mlen + 14);
    const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    frame[flen++] = 0x81;
    if (mlen < 126) frame[flen++] = 0x80 | (unsigned char)mlen;
    else if (mlen < 65536) { frame[flen++] = 0x80 | 126; frame[flen++] = (unsigned char)(mlen >> 8); frame[flen++] = (unsigned char)mlen; }
    else { fprintf(stderr, "message too long\n"); return 2; }
    memcpy(frame + flen, mask, 4); flen += 4;
    for (size_t i = 0; i < mlen; i++) frame[flen++] = (unsigned char)msg[i] ^ mask[i % 4];

    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    char req[1024];
    int rlen = snprintf(req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                        path, host, port);
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
        if (send_all(c->fd, (unsigned char *)req, (size_t)rlen) < 0) { perror("send"); return 1; }
        /* Blocking read of the 101 answer; anything after the headers stays in the buffer. */
        for (;;) {
            ssize_t k = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
            if (k <= 0) { fprintf(stderr, "wsbench: handshake failed\n"); return 1; }
            c->len += (size_t)k;
            unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end) {
                if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0) {
                    fprintf(stderr, "wsbench: handshake answered %.12s\n", c->buf);
                    return 1;
                }
                size_t hl = (size_t)(end - c->buf) + 4;
                memmove(c->buf, c->buf + hl, c->len - hl);
                c->len -= hl;
                break;
            }
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns(), deadline = start + (uint64_t)(duration * 1e9), last = start;
    uint64_t hard_stop = deadline + 30000000000ull;
    int active = nconn;
    for (int i = 0; i < nconn; i++) {
        conns[i].live = 1;
        conns[i].t0 = now_ns();
        if (send_all(conns[i].fd, frame, flen) < 0) { errors++; conns[i].live = 0; active--; }
    }
    struct epoll_event evs[256];
    while (active > 0) {
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); break; }
        if (now_ns() > hard_stop) { errors++; break; }
        for (int e = 0; e < n; e++) {
            conn_t *c = evs[e].data.ptr;
            ssize_t k = recv(c->fd, c->buf + c->len, BUF - c->len, 0);
            if (k <= 0) {
                if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (c->live) { errors++; c->live = 0; active--; }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->len += (size_t)k;
            size_t off = 0;
            for (;;) {
                size_t avail = c->len - off;
                if (avail < 2) break;
                unsigned char *p = c->buf + off;
                uint64_t plen = p[1] & 0x7f;
                size_t hl = 2;
                if (plen == 126) { if (avail < 4) break; plen = ((uint64_t)p[2] << 8) | p[3]; hl = 4; }
                else if (plen == 127) {
                    if (avail < 10) break;
                    plen = 0;
                    for (int b = 0; b < 8; b++) plen = (plen << 8) | p[2 + b];
                    hl = 10;
                }
                if (hl + plen > BUF) { fprintf(stderr, "wsbench: reply larger than %d bytes\n", BUF); return 1; }
                if (avail < hl + plen) break;
                int opcode = p[0] & 0x0f;
                off += hl + plen;
                if (opcode == 8) { if (c->live) { errors++; c->live = 0; active--; } continue; }
                if (opcode != 1 && opcode != 2) continue;
                uint64_t t = now_ns();
                if (!have_first) {
                    size_t m = plen < sizeof first_reply - 1 ? (size_t)plen : sizeof first_reply - 1;
                    memcpy(first_reply, p + hl, m);
                    first_reply[m] = 0;
                    have_first = 1;
                }
                if (!c->live) continue;
                record(t - c->t0);
                last = t;
                if (t < deadline && (!max_requests || (long)nlat < max_requests)) {
                    c->t0 = t;
                    if (send_all(c->fd, frame, flen) < 0) { errors++; c->live = 0; active--; }
                } else {
                    c->live = 0;
                    active--;
                }
            }
            memmove(c->buf, c->buf + off, c->len - off);
            c->len -= off;
        }
    }
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    for (int i = 0; i < nconn; i++) close(conns[i].fd);

    double seconds = (double)(last - start) / 1e9, sum = 0;
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    for (size_t i = 0; i < nlat; i++) sum += (double)lat[i];
    printf("{\"client\": \"wsbench (C, epoll, 1 thread, WebSocket)\", \"requests\": %zu, \"seconds\": %.6f, "
           "\"rps\": %.3f, ", nlat, seconds, seconds > 0 ? nlat / seconds : 0.0);
    if (nlat) {
        size_t k50 = rank(0.50, nlat), k99 = rank(0.99, nlat);
        printf("\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, ", lat[k50] / 1e3, lat[k99] / 1e3, sum / nlat / 1e3);
    } else {
        printf("\"p50_us\": null, \"p99_us\": null, \"mean_us\": null, ");
    }
    printf("\"errors\": %ld, \"first_reply\": ", errors);
    if (have_first) json_str(stdout, first_reply); else printf("null");
    printf(", \"client_cpu_s\": %.6f}\n", cpu);
    return 0;
}
