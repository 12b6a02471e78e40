/*
 * bench_backends_bare: the baselines of bench/backends. A bare libcurl multi
 * program, as short as such a program gets, making the same calls as
 * agentos's https backend makes in the benchmark: the same URL, the same
 * TLS verification (peer and host, against the given CA), the same request
 * bodies and Idempotency-Key headers (calls.h), the same attempt timeout,
 * all the calls of a batch added at once to one multi handle, on one
 * thread. Nothing else: the reply's bytes are counted, not parsed; no
 * limits, breakers, pool or timers of its own. What agentos spends beyond
 * this is its per-call overhead.
 *
 * It drives the multi handle one of two ways:
 *   (default)  curl_multi_perform + curl_multi_poll: libcurl's basic multi
 *              loop, what a minimal program writes;
 *   --socket   curl_multi_socket_action over epoll: libcurl's way for many
 *              connections (as its hiper/ephiperfifo examples do), the way
 *              agentos's loop drives it; the stricter baseline.
 *
 * It runs the three batches of calls.h on one multi handle, and keeps every
 * connection between them (CURLMOPT_MAXCONNECTS).
 *
 * usage: bench_backends_bare [--socket] URL CA_FILE CALLS HOLD_MS
 * Prints one line of figures per batch ("cold figures ...", AO_BENCH_FIGURES_FMT)
 * on stdout; exits 1 if a call failed (the first failure on stderr).
 */
#include "calls.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <unistd.h>

typedef struct bare_call {
    struct curl_slist *headers;
    char body[256];
    size_t reply_bytes;
} bare_call_t;

static const char *url, *ca;

/* Samples threads and memory every 10 ms (as bench_backends' main thread
 * does), from a thread of its own so that the transfer loop keeps a long
 * poll timeout, as agentos's loop does; this thread is left out of the
 * count. The main thread zeroes the peaks before a batch. */
static atomic_int sampling = 1;
static atomic_long peak_threads, peak_rss_kb;

static void atomic_max(atomic_long *a, long v)
{
    long cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v)) {
    }
}

static void *sampler(void *arg)
{
    (void)arg;
    while (atomic_load(&sampling)) {
        long th = 0, rss = 0;
        ao_bench_sample(&th, &rss);
        atomic_max(&peak_threads, th - 1);
        atomic_max(&peak_rss_kb, rss);
        usleep(10000);
    }
    return NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    ((bare_call_t *)ud)->reply_bytes += size * n;
    return size * n;
}

/* ---- --socket: libcurl's sockets and timer on epoll -------------------------------- */

static int epfd = -1;
static int64_t deadline_us = -1;

static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *socketp)
{
    (void)e;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
                                       (what & CURL_POLL_OUT ? EPOLLOUT : 0),
                             .data.fd = s};
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd, op, s, &ev) && errno == (op == EPOLL_CTL_ADD ? EEXIST : ENOENT))
        epoll_ctl(epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (!socketp) curl_multi_assign(ud, s, &epfd);
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
    (void)m;
    (void)ud;
    deadline_us = timeout_ms < 0 ? -1 : ao_bench_now_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

/* Waits for what libcurl waits for, and lets it act on it. */
static void socket_step(CURLM *multi)
{
    struct epoll_event evs[512];
    int running, wait = -1;
    if (deadline_us >= 0) {
        int64_t d = deadline_us - ao_bench_now_us();
        wait = d <= 0 ? 0 : (int)((d + 999) / 1000);
    }
    int n = epoll_wait(epfd, evs, 512, wait);
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        curl_multi_socket_action(multi, evs[i].data.fd,
                                 (e & EPOLLIN ? CURL_CSELECT_IN : 0) |
                                     (e & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                                     (e & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0),
                                 &running);
    }
    if (deadline_us >= 0 && ao_bench_now_us() >= deadline_us) {
        deadline_us = -1;
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

/* ---- a batch ---------------------------------------------------------------------- */

/* All n calls added at once, driven to their end. */
static void batch(CURLM *multi, int use_socket, bare_call_t *calls, int64_t *start, int64_t *end,
                  unsigned n, unsigned barrier, ao_bench_figures_t *f)
{
    long long cpu0 = ao_bench_cpu_us();
    int64_t t0 = ao_bench_now_us();
    for (unsigned i = 0; i < n; i++) {
        bare_call_t *c = &calls[i];
        char h[128];
        ao_bench_body(c->body, sizeof c->body, i, barrier);
        c->reply_bytes = 0;
        c->headers = curl_slist_append(NULL, "Content-Type: application/json");
        c->headers = curl_slist_append(c->headers, "Accept: application/json");
        snprintf(h, sizeof h, "Idempotency-Key: " AO_BENCH_ATTEMPT_FMT, i);
        c->headers = curl_slist_append(c->headers, h);
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L); /* bounded, as agentos's attempts are */
        start[i] = ao_bench_now_us();
        curl_multi_add_handle(multi, e);
    }
    f->peak_in_flight = n;
    unsigned done = 0, failed = 0;
    while (done < n) {
        int running;
        if (use_socket)
            socket_step(multi);
        else
            curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            bare_call_t *c;
            long status = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            unsigned i = (unsigned)(c - calls);
            end[i] = ao_bench_now_us();
            if (m->data.result == CURLE_OK && status == 200 && c->reply_bytes)
                f->ok++;
            else if (!failed++)
                fprintf(stderr, "bench_backends_bare: call %u: %s (HTTP %ld)\n", i,
                        curl_easy_strerror(m->data.result), status);
            done++;
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            curl_slist_free_all(c->headers);
        }
        if (!use_socket && done < n) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    f->wall_us = ao_bench_now_us() - t0;
    f->cpu_us = ao_bench_cpu_us() - cpu0;
}

int main(int argc, char **argv)
{
    int use_socket = argc > 1 && !strcmp(argv[1], "--socket");
    argv += use_socket;
    argc -= use_socket;
    if (argc != 5) {
        fprintf(stderr, "usage: bench_backends_bare [--socket] URL CA_FILE CALLS HOLD_MS\n");
        return 2;
    }
    url = argv[1];
    ca = argv[2];
    unsigned n = (unsigned)strtoul(argv[3], NULL, 10);
    int64_t hold_us = strtoll(argv[4], NULL, 10) * 1000;
    if (!n) return 2;
    if (ao_bench_raise_nofile(n + 256)) {
        fprintf(stderr, "bench_backends_bare: cannot allow %u open files\n", n + 256);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    /* Keep every connection for the next batch (the default cache is sized
     * by the handles currently added, and shrinks as a batch ends); agentos
     * keeps 20,000. */
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)n);
    if (use_socket) {
        epfd = epoll_create1(EPOLL_CLOEXEC);
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, multi);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
    }
    bare_call_t *calls = calloc(n, sizeof *calls);
    int64_t *start = calloc(n, sizeof *start), *end = calloc(n, sizeof *end);
    int all_ok = 1;
    pthread_t th;
    if (pthread_create(&th, NULL, sampler, NULL)) return 2;
    for (int phase = 0; phase < AO_BENCH_PHASES; phase++) {
        ao_bench_figures_t f = {.calls = n};
        atomic_store(&peak_threads, 0);
        atomic_store(&peak_rss_kb, 0);
        if (phase == AO_BENCH_WARM) ao_bench_perf_ctl("enable");
        batch(multi, use_socket, calls, start, end, n, phase == AO_BENCH_FILL ? n : 0, &f);
        if (phase == AO_BENCH_WARM) ao_bench_perf_ctl("disable");
        f.threads = atomic_load(&peak_threads);
        f.rss_kb = atomic_load(&peak_rss_kb);
        ao_bench_summarise(start, end, n, hold_us, &f);
        printf("%s " AO_BENCH_FIGURES_FMT, ao_bench_phase[phase], AO_BENCH_FIGURES_ARGS(f));
        fflush(stdout);
        all_ok &= f.ok == n;
    }
    atomic_store(&sampling, 0);
    pthread_join(th, NULL);
    curl_multi_cleanup(multi);
    if (epfd >= 0) close(epfd);
    curl_global_cleanup();
    free(calls);
    free(start);
    free(end);
    return all_ok ? 0 : 1;
}
