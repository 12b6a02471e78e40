/*
 * Threads: one thread accepts and answers scrapes, one connection at a
 * time (scrapes are rare and small), each within SCRAPE_MS. Counters are
 * relaxed atomics.
 */
#include "metrics.h"

#include "log.h"
#include "mem.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

ao_metrics_counters_t ao_metrics;

struct ao_metrics_server {
    int fd;
    int port;
    int wake[2];
    pthread_t thread;
    ao_metrics_gauge_fn *gauges;
    void **uds;
    size_t n;
};

char *ao_metrics_render(ao_metrics_gauge_fn *gauges, void **uds, size_t n)
{
    ao_sb_t sb = {0};
#define AO__METRIC_TEXT(name, help)                                                                \
    ao_sb_printf(&sb, "# HELP agentos_%s_total %s\n# TYPE agentos_%s_total counter\nagentos_%s_total %llu\n", \
                 #name, help, #name, #name,                                                        \
                 (unsigned long long)atomic_load_explicit(&ao_metrics.name, memory_order_relaxed));
    AO_METRIC_COUNTERS(AO__METRIC_TEXT)
#undef AO__METRIC_TEXT
    for (size_t i = 0; i < n; i++) gauges[i](uds[i], &sb);
    return ao_sb_take(&sb);
}

/* A scrape has this long to send its request head and take the reply:
 * one connection is served at a time, and a client that trickles bytes
 * must not hold the others off. */
enum { SCRAPE_MS = 2000 };

static void answer(ao_metrics_server_t *m, int c)
{
    char req[2048];
    size_t got = 0;
    int64_t deadline = ao_mono_us() + SCRAPE_MS * 1000;
    struct timeval tv = {SCRAPE_MS / 1000, (SCRAPE_MS % 1000) * 1000};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* Read the request head (bounded in size and in time). */
    while (got < sizeof req - 1) {
        int64_t left_ms = (deadline - ao_mono_us()) / 1000;
        struct pollfd p = {c, POLLIN, 0};
        if (left_ms <= 0 || poll(&p, 1, (int)left_ms) <= 0) return;
        ssize_t r = read(c, req + got, sizeof req - 1 - got);
        if (r <= 0) return;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    const char *status = "200 OK";
    char *body;
    if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET /metrics?", 13)) {
        body = ao_metrics_render(m->gauges, m->uds, m->n);
    } else if (!strncmp(req, "GET ", 4)) {
        status = "404 Not Found";
        body = ao_xstrdup("not found: the metrics are at /metrics\n");
    } else {
        status = "405 Method Not Allowed";
        body = ao_xstrdup("only GET /metrics\n");
    }
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, strlen(body));
    if (write(c, head, (size_t)hl) == hl) {
        size_t off = 0, len = strlen(body);
        while (off < len) {
            ssize_t w = write(c, body + off, len - off);
            if (w <= 0) break;
            off += (size_t)w;
        }
    }
    free(body);
}

static void *serve(void *arg)
{
    ao_metrics_server_t *m = arg;
    pthread_setname_np(pthread_self(), "ao-metrics");
    for (;;) {
        struct pollfd p[2] = {{m->fd, POLLIN, 0}, {m->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR) break;
        if (p[1].revents) break;
        if (!(p[0].revents & POLLIN)) continue;
        int c = accept(m->fd, NULL, NULL);
        if (c < 0) continue;
        answer(m, c);
        close(c);
    }
    return NULL;
}

int ao_metrics_start(const char *addr, ao_metrics_gauge_fn *gauges, void **uds, size_t n,
                     ao_metrics_server_t **out, ao_status_t *st)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        return ao_status_set(st, AO_EINVAL, "metrics_listen: expected HOST:PORT, got \"%s\"", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int e = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
    if (e) return ao_status_set(st, AO_EINVAL, "metrics_listen %s: %s", addr, gai_strerror(e));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16)) {
        int err = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return ao_status_set(st, err == EADDRINUSE ? AO_EBUSY : AO_EINVAL,
                             "metrics_listen %s: %s", addr, strerror(err));
    }
    freeaddrinfo(ai);
    ao_metrics_server_t *m = ao_xcalloc(1, sizeof *m);
    m->fd = fd;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    m->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    if (pipe(m->wake)) ao_fatal("pipe: %s", strerror(errno));
    m->gauges = gauges;
    m->uds = uds;
    m->n = n;
    if (pthread_create(&m->thread, NULL, serve, m)) ao_fatal("cannot start the metrics thread");
    AO_INFO("metrics", "serving addr=%s port=%d path=/metrics", addr, m->port);
    *out = m;
    return 0;
}

int ao_metrics_port(const ao_metrics_server_t *m)
{
    return m->port;
}

void ao_metrics_stop(ao_metrics_server_t *m)
{
    if (!m) return;
    if (write(m->wake[1], "x", 1) != 1) ao_fatal("cannot stop the metrics thread");
    pthread_join(m->thread, NULL);
    close(m->fd);
    close(m->wake[0]);
    close(m->wake[1]);
    free(m);
}
