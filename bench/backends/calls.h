/*
 * What bench_backends and its bare libcurl baseline (bare_curl.c) share, so
 * that both make the same calls and measure them the same way: the request
 * body of call i (byte for byte the AgentTask that agentos's https backend
 * encodes; bench_backends checks this against ao_pbjson_encode at start),
 * the figures of a batch, and the line the baseline reports them on.
 */
#ifndef AO_BENCH_BACKENDS_CALLS_H
#define AO_BENCH_BACKENDS_CALLS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* The task of call i: workflow "bench", task "t<i>", attempt id
 * "bench/t<i>/1-bench" (sent as the Idempotency-Key), agent "mock". A
 * barrier of N (the fill batch) adds the param mock.barrier=N: the mock
 * holds each such request until N are held at once. */
#define AO_BENCH_INPUT_FMT "Review the quarterly filing of company %u."
#define AO_BENCH_ATTEMPT_FMT "bench/t%u/1-bench"

static inline int ao_bench_body(char *buf, size_t cap, unsigned i, unsigned barrier)
{
    char params[64] = "";
    if (barrier) snprintf(params, sizeof params, ",\"params\":{\"mock.barrier\":\"%u\"}", barrier);
    return snprintf(
        buf, cap,
        "{\"workflowId\":\"bench\",\"taskId\":\"t%u\",\"attemptId\":\"" AO_BENCH_ATTEMPT_FMT
        "\",\"attempt\":1,\"agent\":\"mock\",\"input\":\"" AO_BENCH_INPUT_FMT "\"%s}",
        i, i, i, params);
}

/* The three batches of a run, in order, on one client (one multi handle, or
 * one rig): cold, on no connection; fill, held at the mock's barrier until
 * all N are in flight, so that N connections are open when it ends; warm,
 * the measured 10,000 in flight, on those connections. */
enum { AO_BENCH_COLD, AO_BENCH_FILL, AO_BENCH_WARM, AO_BENCH_PHASES };
static const char *const ao_bench_phase[AO_BENCH_PHASES] = {"cold", "fill", "warm"};

/* One batch's figures. */
typedef struct ao_bench_figures {
    unsigned calls, ok;
    long long wall_us;       /* first call started .. last call done */
    long long cpu_us;        /* user + system CPU of the whole process over that span */
    unsigned peak_in_flight; /* started and not yet done, at most, on the client */
    unsigned peak_at_mock;   /* requests the mock held at once (see ao_bench_summarise) */
    long threads;            /* the process's threads, at most, while the batch ran */
    long rss_kb;             /* the process's resident memory, at most, while it ran */
    long long lat_mean_us, lat_p50_us, lat_p99_us;
} ao_bench_figures_t;

/* The baseline's one line of figures on stdout. */
#define AO_BENCH_FIGURES_FMT                                                                       \
    "figures calls=%u ok=%u wall_us=%lld cpu_us=%lld peak_in_flight=%u peak_at_mock=%u "           \
    "threads=%ld rss_kb=%ld lat_mean_us=%lld lat_p50_us=%lld lat_p99_us=%lld\n"
#define AO_BENCH_FIGURES_ARGS(f)                                                                   \
    (f).calls, (f).ok, (f).wall_us, (f).cpu_us, (f).peak_in_flight, (f).peak_at_mock, (f).threads, \
        (f).rss_kb, (f).lat_mean_us, (f).lat_p50_us, (f).lat_p99_us
#define AO_BENCH_FIGURES_PTRS(f)                                                                   \
    &(f).calls, &(f).ok, &(f).wall_us, &(f).cpu_us, &(f).peak_in_flight, &(f).peak_at_mock,        \
        &(f).threads, &(f).rss_kb, &(f).lat_mean_us, &(f).lat_p50_us, &(f).lat_p99_us
#define AO_BENCH_FIGURES_N 11

static inline int64_t ao_bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CPU time of the whole process (every thread), in microseconds. */
static inline long long ao_bench_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* Samples the process's thread count and resident memory into the peaks
 * (every 10 ms while a batch runs: libcurl's resolver threads come and go;
 * VmRSS, as ru_maxrss would carry the parent's peak into a spawned child). */
static inline void ao_bench_sample(long *peak_threads, long *peak_rss_kb)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        long *peak = !strncmp(line, "Threads:", 8) ? peak_threads
                     : !strncmp(line, "VmRSS:", 6) ? peak_rss_kb
                                                   : NULL;
        long v = peak ? atol(strchr(line, ':') + 1) : 0;
        if (peak && v > *peak) *peak = v;
    }
    if (f) fclose(f);
}

/* Lets the process open `need` descriptors (one socket per call in flight):
 * raises the soft limit, and the hard one if it is lower (root may). */
static inline int ao_bench_raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return -1;
    if (rl.rlim_cur >= need) return 0;
    if (rl.rlim_max < need) rl.rlim_max = need;
    rl.rlim_cur = need;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* Profiling aid: with AO_BENCH_PERF_CTL naming the control FIFO of
 * `perf record --control fifo:FIFO -D -1 ...`, each side's warm batch alone
 * is recorded (cmd "enable" before it, "disable" after). */
static inline void ao_bench_perf_ctl(const char *cmd)
{
    const char *path = getenv("AO_BENCH_PERF_CTL");
    FILE *f = path && *path ? fopen(path, "w") : NULL;
    if (!f) return;
    fprintf(f, "%s\n", cmd);
    fclose(f);
}

static inline int ao_bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Latency figures from each call's start and end (both arrays are sorted in
 * place, n >= 1), and how many requests the mock held at once: it holds
 * each for the last hold_us of the call, so that is the most call ends
 * that fall within any hold_us long window. */
static inline void ao_bench_summarise(int64_t *start_us, int64_t *end_us, unsigned n,
                                      int64_t hold_us, ao_bench_figures_t *f)
{
    long long sum = 0;
    for (unsigned i = 0; i < n; i++) {
        start_us[i] = end_us[i] - start_us[i]; /* now the latency */
        sum += start_us[i];
    }
    qsort(start_us, n, sizeof *start_us, ao_bench_cmp_i64);
    f->lat_mean_us = sum / n;
    f->lat_p50_us = start_us[(n - 1) / 2];
    f->lat_p99_us = start_us[(unsigned)((double)(n - 1) * 0.99)];
    qsort(end_us, n, sizeof *end_us, ao_bench_cmp_i64);
    unsigned peak = 0;
    for (unsigned lo = 0, hi = 0; hi < n; hi++) {
        while (end_us[hi] - end_us[lo] > hold_us)
            lo++;
        if (hi - lo + 1 > peak) peak = hi - lo + 1;
    }
    f->peak_at_mock = peak;
}

#endif
