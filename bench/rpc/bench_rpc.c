/*
 * bench_rpc: agentosd's RPC transport against a C++ gRPC server serving the
 * same method, driven by this one load client in the same run.
 *
 * What: unary grpc.health.v1.Health/Check, the cheapest method agentosd
 * serves, so what is measured is the RPC layer (server/rpc/rpc.c, health.c)
 * and gRPC core under it, not a handler. Per server: calls/s, p50 and p99
 * latency, server CPU per call (the scheduler's runtime of every thread,
 * /proc/PID/task/TID/schedstat) and the share of its core the server used,
 * and the
 * client's own CPU share (near 100%: the client, not the server, set the
 * pace, and CPU per call is the figure to read).
 *
 * How: one connection per server, N calls in flight (default 16) on one
 * C-core completion queue; each call is one batch, and a finished call
 * starts the next at once. A round gives each server a warm-up (default
 * 0.5 s) and a measured window (default 3 s), servers taking turns in an
 * order that rotates every round. The machine is shared, so the calls/s
 * ratio is the median of the per-round ratios (a round's figures are
 * seconds apart, under the same load); pooled figures are printed too.
 * The target is judged on that ratio when both servers had their core
 * (>= 80% of it); when others' work took part of it, calls/s measured the
 * scheduler, and the verdict uses calls per CPU-second (1 / CPU per call)
 * instead, saying so.
 * bench/rpc/run.sh pins each server to CPU 0 and this client to CPU 1, as
 * the measurements in ../shared/notes/grpc-core-c.md did.
 *
 * Baseline: bench_rpc_cpp_server, gRPC C++'s callback API with code that
 * grpc_cpp_plugin generates at build time. Target: agentosd at least as
 * fast (calls/s ratio >= 1.00); the notes measured a C-core server at
 * about 1.1x of it on this machine.
 *
 * usage: bench_rpc --subject NAME=HOST:PORT[@PID] [--subject ...]
 *                  --baseline NAME=HOST:PORT[@PID]
 *                  [--inflight N] [--warmup-ms MS] [--duration-ms MS]
 *                  [--rounds N] [--quick]
 * (PID, when given, is the server's process, for its CPU figures.)
 * Exit: 0 when every call succeeded, whether or not the target is met; 1
 * when a call failed or a server stopped answering; 2 on usage errors.
 */
#include "grpc/health/v1/health.pb-c.h"
#include "mem.h"

#include <dirent.h>
#include <getopt.h>
#include <grpc/byte_buffer_reader.h>
#include "../common/unary.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PATH "/grpc.health.v1.Health/Check"
/* A call slower than this is a failure (a stuck server), not a figure. */
#define CALL_DEADLINE_S 10
#define READY_TIMEOUT_S 20

typedef struct target {
    const char *name;
    char *addr;
    int pid; /* 0: unknown, no CPU figures */
    grpc_channel *ch;
    void *check;
    /* Pooled over the rounds. */
    uint64_t calls;
    double secs;
    double srv_cpu_s;
    double cli_cpu_s;
    int cpu_ok;
    uint32_t *lat_ns;
    size_t n_lat, cap_lat;
} target_t;

typedef struct slot {
    target_t *t;
    grpc_call *call;
    uint64_t start_ns;
    grpc_byte_buffer *req;
    grpc_byte_buffer *resp;
    grpc_metadata_array md;
    grpc_metadata_array trailing;
    grpc_status_code status;
    grpc_slice details;
} slot_t;

typedef struct window {
    uint64_t calls;
    double secs, srv_cpu_s, cli_cpu_s;
    int cpu_ok;
    uint32_t *lat_ns; /* this round's latencies (a view into the target's pool) */
    size_t n_lat;
} window_t;

static grpc_completion_queue *cq;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU seconds a process has run: the sum over its threads of the
 * scheduler's own runtime (/proc/PID/task/TID/schedstat, in ns: exact,
 * where utime + stime in /proc/PID/stat are sampled at the 100 Hz tick).
 * The servers' threads live as long as the servers; a thread that ended
 * between two readings would be missed, which /proc/PID/stat covers: it is
 * the fallback. -1 when neither can be read. */
static double proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d) {
        unsigned long long sum = 0;
        int any = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char tpath[320];
            snprintf(tpath, sizeof tpath, "/proc/%d/task/%s/schedstat", pid, e->d_name);
            FILE *f = fopen(tpath, "r");
            if (!f) continue;
            unsigned long long ns;
            if (fscanf(f, "%llu", &ns) == 1) {
                sum += ns;
                any = 1;
            }
            fclose(f);
        }
        closedir(d);
        if (any) return (double)sum / 1e9;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields are counted
     * from the last ')'. utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut, st;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---- one call -------------------------------------------------------- */

static void call_start(slot_t *s, uint32_t md_flags)
{
    target_t *t = s->t;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(CALL_DEADLINE_S, GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(t->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                  t->check, deadline, NULL);
    /* HealthCheckRequest{service: ""} packs to zero bytes. */
    grpc_slice empty = grpc_empty_slice();
    s->req = grpc_raw_byte_buffer_create(&empty, 1);
    s->start_ns = now_ns();
    grpc_call_error e = ao_bench_unary_start(s->call, md_flags, s->req, &s->resp, &s->md, &s->trailing,
                                             &s->status, &s->details, s);
    if (e != GRPC_CALL_OK) ao_fatal("grpc_call_start_batch failed (%d)", e);
}

/* Ends a completed call; returns 1 if it answered OK with SERVING. */
static int call_end(slot_t *s, int success, int report)
{
    int ok = success && s->status == GRPC_STATUS_OK && s->resp;
    if (ok) {
        grpc_byte_buffer_reader r;
        ok = grpc_byte_buffer_reader_init(&r, s->resp);
        if (ok) {
            grpc_slice body = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            Grpc__Health__V1__HealthCheckResponse *resp =
                grpc__health__v1__health_check_response__unpack(NULL, GRPC_SLICE_LENGTH(body),
                                                                GRPC_SLICE_START_PTR(body));
            grpc_slice_unref(body);
            ok = resp &&
                 resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
            if (resp) grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
        }
    }
    if (!ok && report)
        fprintf(stderr, "bench_rpc: %s: Check failed: status %d %.*s\n", s->t->name, s->status,
                (int)GRPC_SLICE_LENGTH(s->details), (const char *)GRPC_SLICE_START_PTR(s->details));
    grpc_byte_buffer_destroy(s->req);
    if (s->resp) grpc_byte_buffer_destroy(s->resp);
    grpc_metadata_array_destroy(&s->md);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    s->call = NULL;
    return ok;
}

static grpc_event next_event(int ms)
{
    return grpc_completion_queue_next(
        cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN)),
        NULL);
}

/* Waits until the server answers a Check (the channel connects meanwhile). */
static int wait_ready(target_t *t)
{
    uint64_t until = now_ns() + (uint64_t)READY_TIMEOUT_S * 1000000000u;
    while (now_ns() < until) {
        slot_t s = {.t = t};
        call_start(&s, GRPC_INITIAL_METADATA_WAIT_FOR_READY);
        grpc_event ev;
        do
            ev = next_event(100);
        while (ev.type == GRPC_QUEUE_TIMEOUT);
        if (call_end(&s, ev.success, 0)) return 0;
        usleep(50 * 1000);
    }
    fprintf(stderr, "bench_rpc: %s (%s) did not answer Check within %d s\n", t->name, t->addr,
            READY_TIMEOUT_S);
    return -1;
}

/* ---- one round on one server ---------------------------------------- */

static int measure(target_t *t, unsigned inflight, unsigned warmup_ms, unsigned duration_ms,
                   window_t *w)
{
    memset(w, 0, sizeof *w);
    slot_t *slots = ao_xcalloc(inflight, sizeof *slots);
    uint64_t t_start = now_ns();
    uint64_t t_warm = t_start + (uint64_t)warmup_ms * 1000000u;
    uint64_t t_end = t_warm + (uint64_t)duration_ms * 1000000u;
    uint64_t t0 = 0, t1 = 0;
    double srv0 = -1, srv1 = -1, cli0 = 0, cli1 = 0;
    size_t lat_first = t->n_lat;
    int measuring = 0, done = 0, failed = 0;
    unsigned active = inflight;

    for (unsigned i = 0; i < inflight; i++) {
        slots[i].t = t;
        call_start(&slots[i], 0);
    }
    while (active) {
        grpc_event ev = next_event(100);
        uint64_t now = now_ns();
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            /* Calls have deadlines; this only guards against a lost event. */
            if (now > t_end + (uint64_t)(CALL_DEADLINE_S + 5) * 1000000000u)
                ao_fatal("bench_rpc: %s: calls never completed", t->name);
            continue;
        }
        if (ev.type != GRPC_OP_COMPLETE) ao_fatal("bench_rpc: unexpected queue event %d", ev.type);
        slot_t *s = ev.tag;
        uint64_t lat = now - s->start_ns;
        if (!call_end(s, ev.success, !failed)) failed = 1;
        /* The window opens and closes at a completion: the boundary calls
         * are not counted, every call in between is. */
        if (!measuring && !done && now >= t_warm) {
            measuring = 1;
            t0 = now;
            cli0 = self_cpu_s();
            if (t->pid) srv0 = proc_cpu_s(t->pid);
        } else if (measuring && now >= t_end) {
            measuring = 0;
            done = 1;
            t1 = now;
            cli1 = self_cpu_s();
            if (t->pid) srv1 = proc_cpu_s(t->pid);
        } else if (measuring) {
            w->calls++;
            if (t->n_lat == t->cap_lat) {
                t->cap_lat = t->cap_lat ? 2 * t->cap_lat : 1u << 16;
                t->lat_ns = ao_xrealloc(t->lat_ns, t->cap_lat * sizeof *t->lat_ns);
            }
            t->lat_ns[t->n_lat++] = lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
        }
        /* After a failure: stop, the figures would be meaningless. */
        if (!done && !failed)
            call_start(s, 0);
        else
            active--;
    }
    free(slots);
    if (failed) return -1;
    w->secs = (double)(t1 - t0) / 1e9;
    w->cli_cpu_s = cli1 - cli0;
    w->cpu_ok = srv0 >= 0 && srv1 >= 0;
    w->srv_cpu_s = w->cpu_ok ? srv1 - srv0 : 0;
    w->lat_ns = t->lat_ns + lat_first;
    w->n_lat = t->n_lat - lat_first;
    t->calls += w->calls;
    t->secs += w->secs;
    t->srv_cpu_s += w->srv_cpu_s;
    t->cli_cpu_s += w->cli_cpu_s;
    t->cpu_ok = t->cpu_ok && w->cpu_ok;
    return 0;
}

/* ---- figures ---------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct_us(const uint32_t *v, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    return v[i] / 1000.0;
}

typedef struct figures {
    double rate, p50, p99, srv_us_per_call, srv_share, cli_share;
    int cpu_ok;
} figures_t;

/* Sorts lat in place. */
static figures_t figures_of(uint64_t calls, double secs, double srv_cpu_s, double cli_cpu_s,
                            int cpu_ok, uint32_t *lat, size_t n)
{
    qsort(lat, n, sizeof *lat, cmp_u32);
    figures_t f = {0};
    f.rate = secs > 0 ? (double)calls / secs : 0;
    f.p50 = pct_us(lat, n, 0.50);
    f.p99 = pct_us(lat, n, 0.99);
    f.cpu_ok = cpu_ok;
    f.srv_us_per_call = cpu_ok && calls ? srv_cpu_s * 1e6 / (double)calls : 0;
    f.srv_share = cpu_ok && secs > 0 ? 100.0 * srv_cpu_s / secs : 0;
    f.cli_share = secs > 0 ? 100.0 * cli_cpu_s / secs : 0;
    return f;
}

static void print_row(const char *label, const char *name, const figures_t *f)
{
    printf("%-7s %-14s %10.0f %8.1f %8.1f", label, name, f->rate, f->p50, f->p99);
    if (f->cpu_ok)
        printf(" %10.2f %8.0f%%", f->srv_us_per_call, f->srv_share);
    else
        printf(" %10s %9s", "-", "-");
    printf(" %8.0f%%\n", f->cli_share);
}

/* ---- main -------------------------------------------------------------- */

static int parse_target(const char *arg, target_t *t)
{
    /* NAME=HOST:PORT[@PID] */
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) return -1;
    t->name = ao_xstrndup(arg, (size_t)(eq - arg));
    const char *at = strchr(eq + 1, '@');
    t->addr = at ? ao_xstrndup(eq + 1, (size_t)(at - eq - 1)) : ao_xstrdup(eq + 1);
    t->pid = at ? atoi(at + 1) : 0;
    return at && t->pid <= 0 ? -1 : 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_rpc --subject NAME=HOST:PORT[@PID] [--subject ...] "
            "--baseline NAME=HOST:PORT[@PID]\n"
            "                 [--inflight N] [--warmup-ms MS] [--duration-ms MS] [--rounds N]\n"
            "                 [--quick]\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_TARGETS 4

int main(int argc, char **argv)
{
    /* Subjects first, in the order given; the baseline last. */
    target_t tg[MAX_TARGETS], base;
    memset(tg, 0, sizeof tg);
    memset(&base, 0, sizeof base);
    int n = 0, have_base = 0;
    unsigned inflight = 16, warmup_ms = 500, duration_ms = 3000, rounds = 5;
    static const struct option longopts[] = {
        {"subject", required_argument, NULL, 's'},
        {"baseline", required_argument, NULL, 'b'},
        {"inflight", required_argument, NULL, 'n'},
        {"warmup-ms", required_argument, NULL, 'w'},
        {"duration-ms", required_argument, NULL, 'd'},
        {"rounds", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
        case 'b': {
            if (c == 's' && n == MAX_TARGETS - 1) {
                fprintf(stderr, "bench_rpc: at most %d subjects\n", MAX_TARGETS - 1);
                return 2;
            }
            target_t *t = c == 'b' ? &base : &tg[n++];
            if (parse_target(optarg, t)) {
                fprintf(stderr, "bench_rpc: bad target \"%s\"\n", optarg);
                return 2;
            }
            t->cpu_ok = t->pid > 0;
            if (c == 'b') have_base = 1;
            break;
        }
        case 'n':
            inflight = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            warmup_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            duration_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            warmup_ms = 300;
            duration_ms = 1000;
            rounds = 1;
            break;
        case 'h':
            usage();
            return 0;
        default:
            usage();
            return 2;
        }
    }
    if (!n || !have_base || !inflight || !duration_ms || !rounds || optind != argc) {
        usage();
        return 2;
    }
    tg[n++] = base;
    const target_t *b = &tg[n - 1];
    /* rate[r * n + i]: calls/s of target i in round r. */
    double *rate = ao_xcalloc((size_t)rounds * (size_t)n, sizeof *rate);

    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        /* Its own subchannel pool: the servers never share anything.
         * No retries: the retry layer copies every call's metadata, the
         * client's largest avoidable cost (perf), and a benchmark call
         * that fails must fail, not be retried. The cheaper the client,
         * the more the servers, not the client, set the pace. */
        grpc_arg arg[2] = {
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
             .value.integer = 1},
            {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0},
        };
        grpc_channel_args args = {2, arg};
        tg[i].ch = grpc_channel_create(tg[i].addr, creds, &args);
        grpc_channel_credentials_release(creds);
        tg[i].check = grpc_channel_register_call(tg[i].ch, CHECK_PATH, NULL, NULL);
        if (wait_ready(&tg[i])) rc = 1;
    }

    if (!rc) {
        printf("bench/rpc: unary %s, %u calls in flight on one connection per server, %u "
               "round(s) of %.1f s per server after %.1f s warm-up each, servers taking turns\n",
               CHECK_PATH, inflight, rounds, duration_ms / 1000.0, warmup_ms / 1000.0);
        printf("%-7s %-14s %10s %8s %8s %10s %9s %9s\n", "round", "server", "calls/s", "p50 us",
               "p99 us", "srv us/call", "srv CPU", "cli CPU");
        fflush(stdout);
    }
    for (unsigned r = 0; r < rounds && !rc; r++) {
        for (int k = 0; k < n && !rc; k++) {
            /* Rotate the order each round: no server always runs first. */
            int i = (int)((r + (unsigned)k) % (unsigned)n);
            target_t *t = &tg[i];
            window_t w;
            if (measure(t, inflight, warmup_ms, duration_ms, &w)) {
                fprintf(stderr, "bench_rpc: %s failed in round %u\n", t->name, r + 1);
                rc = 1;
                break;
            }
            /* Sorting the round's slice of the pool is harmless: the pooled
             * figures sort it all again. */
            figures_t f =
                figures_of(w.calls, w.secs, w.srv_cpu_s, w.cli_cpu_s, w.cpu_ok, w.lat_ns, w.n_lat);
            rate[r * (unsigned)n + (unsigned)i] = f.rate;
            char label[16];
            snprintf(label, sizeof label, "%u", r + 1);
            print_row(label, t->name, &f);
            fflush(stdout);
        }
    }

    if (!rc) {
        figures_t f[MAX_TARGETS];
        for (int i = 0; i < n; i++)
            f[i] = figures_of(tg[i].calls, tg[i].secs, tg[i].srv_cpu_s, tg[i].cli_cpu_s,
                              tg[i].cpu_ok, tg[i].lat_ns, tg[i].n_lat);
        const figures_t *fb = &f[n - 1];
        printf("\n");
        for (int i = 0; i < n; i++)
            print_row("all", tg[i].name, &f[i]);
        printf("\n");
        for (int i = 0; i < n - 1; i++) {
            /* The machine is shared: a round's two figures were measured
             * seconds apart, under the same load, so the median of the
             * per-round ratios is steadier than the ratio of the pooled
             * figures. Both are printed; the target is judged on the
             * median. */
            double *rr = ao_xcalloc(rounds, sizeof *rr);
            for (unsigned r = 0; r < rounds; r++) {
                double rb = rate[r * (unsigned)n + (unsigned)(n - 1)];
                rr[r] = rb > 0 ? rate[r * (unsigned)n + (unsigned)i] / rb : 0;
            }
            qsort(rr, rounds, sizeof *rr, cmp_double);
            double med = rounds % 2 ? rr[rounds / 2] : (rr[rounds / 2 - 1] + rr[rounds / 2]) / 2;
            printf("ratio %s/%s: calls/s %.2fx (median of %u round(s); range %.2f-%.2f; pooled "
                   "%.2fx), p50 %.2fx, p99 %.2fx",
                   tg[i].name, b->name, med, rounds, rr[0], rr[rounds - 1],
                   fb->rate > 0 ? f[i].rate / fb->rate : 0, fb->p50 > 0 ? f[i].p50 / fb->p50 : 0,
                   fb->p99 > 0 ? f[i].p99 / fb->p99 : 0);
            if (f[i].cpu_ok && fb->cpu_ok && fb->srv_us_per_call > 0)
                printf(", server CPU per call %.2fx", f[i].srv_us_per_call / fb->srv_us_per_call);
            printf("\n");
            if (i == 0) {
                /* calls/s is the verdict when both servers had their core
                 * (>= 80% of it). When they did not, other processes had
                 * the rest and calls/s measured the scheduler (a server
                 * with more runnable threads gets a larger share); the
                 * speed a server would reach with its core to itself is
                 * then 1 / CPU per call, and that decides. */
                int saturated =
                    f[i].cpu_ok && fb->cpu_ok && f[i].srv_share >= 80 && fb->srv_share >= 80;
                if (saturated || !f[i].cpu_ok || !fb->cpu_ok || fb->srv_us_per_call <= 0) {
                    printf("target: %s at least as fast as %s (calls/s ratio >= 1.00): %s\n",
                           tg[i].name, b->name, med >= 1.0 ? "met" : "NOT met");
                } else {
                    double eff =
                        f[i].srv_us_per_call > 0 ? fb->srv_us_per_call / f[i].srv_us_per_call : 0;
                    printf("target: %s at least as fast as %s: the servers used %.0f%% and %.0f%% "
                           "of their core (busy machine), so judged on calls per CPU-second: "
                           "%.2fx, %s (calls/s ratio %.2fx)\n",
                           tg[i].name, b->name, f[i].srv_share, fb->srv_share, eff,
                           eff >= 1.0 ? "met" : "NOT met", med);
                }
            }
            free(rr);
        }
        /* When the client's core is saturated the client sets the pace and
         * the calls/s ratio understates the difference. When a server got
         * well under its core, other processes had the rest: calls/s then
         * says more about the scheduler than about the server (a server
         * with more runnable threads gets a larger share). CPU per call is
         * the figure to read in both cases. */
        int busy = 0;
        for (int i = 0; i < n; i++) {
            if (f[i].cli_share > 90)
                printf("note: the client used %.0f%% of its core against %s; server CPU per call "
                       "is the fairer figure\n",
                       f[i].cli_share, tg[i].name);
            if (f[i].cpu_ok && f[i].srv_share < 80 && f[i].cli_share < 80) busy = 1;
        }
        if (busy)
            printf("note: servers and client got well under their cores (see srv CPU, cli "
                   "CPU): the machine was busy; server CPU per call is the fairer figure\n");
    }

    for (int i = 0; i < n; i++) {
        if (tg[i].ch) grpc_channel_destroy(tg[i].ch);
        free(tg[i].lat_ns);
        free(tg[i].addr);
        free((char *)tg[i].name);
    }
    free(rate);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    return rc;
}
