/*
 * redis-pingpong: the smallest event-loop Redis client we could write, as a floor for the latency benchmark in
 * Benchmarks/RedisBenchmarks. One connection, one `GET key` at a time: write, epoll_wait, read until the whole
 * bulk reply is in, repeat. No parser, no library. Each round trip is timed from before the write to after the
 * last read, like the Swift clients in the benchmark.
 *
 *   cc -O2 -o .build-bench/release/redis-pingpong Benchmarks/peers/redis-pingpong.c     (scripts/redis-bench does this)
 *   .build-bench/release/redis-pingpong HOST PORT KEY VALUE_BYTES REQUESTS
 *
 * Prints one line: p50_us=... p99_us=... per_request_us=... (per request: wall-clock time of the timed requests
 * divided by their number). The key must hold a string of VALUE_BYTES bytes (the benchmark sets it).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT KEY VALUE_BYTES REQUESTS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *key = argv[3];
    int port = atoi(argv[2]), value_bytes = atoi(argv[4]), requests = atoi(argv[5]), warmup = 1000;
    if (port <= 0 || value_bytes < 0 || requests <= 0) {
        fprintf(stderr, "redis-pingpong: bad arguments\n");
        return 2;
    }

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "redis-pingpong: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);

    char request[512];
    int request_len = snprintf(request, sizeof request, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);
    char header[32];
    int reply_len = snprintf(header, sizeof header, "$%d\r\n", value_bytes) + value_bytes + 2;
    char buffer[65536];
    long long *samples = malloc(sizeof(long long) * (size_t)requests);
    long long started = 0;

    for (int i = 0; i < warmup + requests; i++) {
        long long t0 = now_ns();
        if (i == warmup) started = t0;
        if (write(fd, request, (size_t)request_len) != request_len) {
            fprintf(stderr, "redis-pingpong: write failed\n");
            return 1;
        }
        int got = 0;
        while (got < reply_len) {
            struct epoll_event e;
            if (epoll_wait(ep, &e, 1, -1) < 0) continue;
            ssize_t n = read(fd, buffer, sizeof buffer);
            if (n <= 0) {
                fprintf(stderr, "redis-pingpong: the server closed the connection\n");
                return 1;
            }
            if (got == 0 && buffer[0] != '$') {
                fprintf(stderr, "redis-pingpong: unexpected reply (is the key set to a %d-byte string?)\n", value_bytes);
                return 1;
            }
            got += (int)n;
        }
        if (i >= warmup) samples[i - warmup] = now_ns() - t0;
    }
    double per_request = (double)(now_ns() - started) / 1000.0 / requests;
    qsort(samples, (size_t)requests, sizeof(long long), by_value);
    printf("p50_us=%.1f p99_us=%.1f per_request_us=%.1f\n", samples[requests / 2] / 1000.0,
           samples[(long long)requests * 99 / 100] / 1000.0, per_request);
    return 0;
}
