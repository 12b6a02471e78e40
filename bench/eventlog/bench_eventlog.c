/*
 * bench_eventlog: the in-process half of bench/eventlog (bench_stream does
 * the gRPC half). Figures and ratios against baselines measured in the same
 * run:
 *
 * 1. Durable append throughput: events/s of 200-byte events (a packed
 *    agentos.v1.Event of exactly 200 bytes), WAL synced, group commit.
 *
 *    Subject: N publisher threads, each with one append outstanding (post
 *    work to the processor that emits the event, wait for its after-commit
 *    callback: the event is durable), as N clients calling PublishEvent
 *    would. The processor makes one WriteBatch and one synced write of
 *    whatever is queued when it loops.
 *
 *    Baseline (the ratio's): N threads, each with one append outstanding
 *    too, doing WriteBatch (the same two records: the 200 bytes under the
 *    events key, the workflow index key) + synced rocksdb_write, on a
 *    RocksDB opened with the options storage/eventlog.c uses. RocksDB's
 *    write path joins concurrent writers into one write group with one WAL
 *    write and one fsync (its leader/follower group commit), so both sides
 *    have the same writers and the same batching opportunity (at most N
 *    events per sync).
 *    Second baseline, informative: the best group commit I could write by
 *    hand on raw RocksDB, the processor's design without its generality
 *    (writers queue themselves, one leader thread writes everything queued
 *    in one WriteBatch + synced write and wakes them): the ratio against it
 *    is the processor's own overhead (packing, evrefs, callbacks).
 *    The baselines write bytes packed once; the subject packs each event.
 *    Fairness in time: the disk is shared with the rest of the machine and
 *    fsync latency drifts by several times within seconds, so the three
 *    sides run in short windows (200 ms; 150 ms with --quick) in rotation,
 *    30 rounds, each on its own database opened for the thread count, and
 *    the windows are pooled; the median of the per-round ratios is printed
 *    too. Also printed: events per fsync on each side (the processor's
 *    commits; RocksDB's rocksdb.wal.synced ticker).
 *    Target: subject >= 0.8x the RocksDB baseline at every N.
 *
 * 2. Recovery of a log of 1,000,000 events written by the real engine (no
 *    RPC), with its snapshots and checkpoints as the engine writes them:
 *    mostly finished workflows (20 no-op tasks each) and some still running
 *    (a task that hangs, plus custom events published into them; automatic
 *    checkpoints every storage.checkpoint_every_events = 1,000 events).
 *    Timed: ao_log_open + ao_engine_create + ao_engine_recover (what
 *    agentosd does before serving), best and median of 3, each on a fresh
 *    copy of the database as the builder left it (RocksDB's write-ahead
 *    log not yet flushed, as after kill -9), with ao_log_open's share
 *    (RocksDB's own WAL replay) printed apart. Baseline: a full
 *    replay of every workflow from its first event (ao_engine_state_at), what
 *    recovery would cost without snapshots and checkpoints.
 *    Target: recovery under 2 s.
 *
 * usage: bench_eventlog --dir DIR [--quick] [--only append|recovery]
 *                       [--events N] [--keep-log]
 * --keep-log leaves the recovery log in DIR/recovery-log (for agentosd's
 * start-to-serving measurement in run.sh).
 */
#include "backends.h"
#include "config.h"
#include "engine.h"
#include "eventlog.h"
#include "log.h"
#include "mem.h"
#include "pbjson.h"
#include "pool.h"
#include "processor.h"
#include "timer.h"
#include "util.h"

#include <getopt.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVENT_BYTES 200
#define APPEND_WF "bench-append-workflow"

static void rm_rf(const char *path)
{
    char *cmd = ao_xasprintf("rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "bench_eventlog: could not remove %s\n", path);
    free(cmd);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts)) {
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the 200-byte event ---------------------------------------------------- */

/* A CUSTOM event as PublishEvent would make it, its data padded so that
 * the packed event (with seq and time filled in as the processor does) is
 * exactly EVENT_BYTES. The caller frees data. */
static void event_init(Agentos__V1__Event *ev, Agentos__V1__CustomPayload *c, char **data)
{
    agentos__v1__event__init(ev);
    agentos__v1__custom_payload__init(c);
    ev->workflow_id = APPEND_WF;
    ev->tenant = "bench";
    ev->type = AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_CUSTOM;
    ev->payload_case = AGENTOS__V1__EVENT__PAYLOAD_CUSTOM;
    ev->custom = c;
    c->name = "load";
    /* Typical values: a 3-byte seq varint, a current time. */
    ev->seq = 100000;
    ev->time_unix_ms = ao_now_ms();
    size_t len = 0;
    *data = ao_xcalloc(1, EVENT_BYTES + 1);
    c->data = *data;
    for (int i = 0; i < 3; i++) {
        size_t have = protobuf_c_message_get_packed_size(&ev->base);
        len = len + EVENT_BYTES - have;
        memset(*data, 'd', len);
        (*data)[len] = '\0';
    }
    if (protobuf_c_message_get_packed_size(&ev->base) != EVENT_BYTES)
        ao_fatal("cannot size the event to %d bytes", EVENT_BYTES);
    ev->seq = 0;
    ev->time_unix_ms = 0;
}

/* ---- 1. appends -------------------------------------------------------------- */

enum { SUBJECT, RAW_GROUP, RAW_LEADER, N_SIDES };

typedef struct publisher publisher_t;

/* One side of the comparison, open for a whole thread count. */
typedef struct side {
    int kind;
    int subject; /* kind == SUBJECT */
    char *dir;
    /* Acknowledged appends (durable), all threads. */
    atomic_uint_fast64_t acked;
    atomic_int stop;
    /* Subject */
    ao_log_t *log;
    ao_proc_t *proc;
    atomic_uint_fast64_t commits;
    /* Baseline */
    rocksdb_options_t *opts;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[3];
    rocksdb_writeoptions_t *wo;
    atomic_uint_fast64_t next_seq;
    unsigned char value[EVENT_BYTES];
    /* RAW_LEADER: the queue of waiting writers and the leader thread. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    publisher_t *queue;
    int leader_stop;
    pthread_t leader;
} side_t;

struct publisher {
    side_t *side;
    publisher_t *next_queued;
    pthread_t th;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    Agentos__V1__Event ev;
    Agentos__V1__CustomPayload c;
    char *data;
};

static void count_commit(void *ud, ao_evref_t *const *evs, size_t n, uint64_t durable)
{
    (void)evs;
    (void)n;
    (void)durable;
    side_t *sd = ud;
    atomic_fetch_add_explicit(&sd->commits, 1, memory_order_relaxed);
}

static void acked(ao_proc_t *p, void *ud)
{
    (void)p;
    publisher_t *pub = ud;
    pthread_mutex_lock(&pub->lock);
    pub->done = 1;
    pthread_cond_signal(&pub->cond);
    pthread_mutex_unlock(&pub->lock);
}

static void append_work(ao_proc_t *p, void *ud)
{
    publisher_t *pub = ud;
    pub->ev.time_unix_ms = 0;
    ao_proc_emit(p, &pub->ev);
    ao_proc_after_commit(p, acked, pub);
}

static void *subject_thread(void *arg)
{
    publisher_t *pub = arg;
    side_t *sd = pub->side;
    while (!atomic_load_explicit(&sd->stop, memory_order_relaxed)) {
        pub->done = 0;
        ao_proc_post(sd->proc, append_work, NULL, pub);
        pthread_mutex_lock(&pub->lock);
        while (!pub->done)
            pthread_cond_wait(&pub->cond, &pub->lock);
        pthread_mutex_unlock(&pub->lock);
        atomic_fetch_add_explicit(&sd->acked, 1, memory_order_relaxed);
    }
    return NULL;
}

static void be64(uint64_t v, unsigned char k[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        k[i] = (unsigned char)v;
}

static void *baseline_thread(void *arg)
{
    publisher_t *pub = arg;
    side_t *sd = pub->side;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    size_t wl = strlen(APPEND_WF);
    unsigned char ik[64];
    memcpy(ik, APPEND_WF, wl);
    ik[wl] = 0;
    while (!atomic_load_explicit(&sd->stop, memory_order_relaxed)) {
        uint64_t seq = atomic_fetch_add(&sd->next_seq, 1);
        unsigned char k[8];
        be64(seq, k);
        be64(seq, ik + wl + 1);
        rocksdb_writebatch_clear(wb);
        rocksdb_writebatch_put_cf(wb, sd->cf[1], (const char *)k, 8, (const char *)sd->value,
                                  EVENT_BYTES);
        rocksdb_writebatch_put_cf(wb, sd->cf[2], (const char *)ik, wl + 9, "", 0);
        char *err = NULL;
        rocksdb_write(sd->db, sd->wo, wb, &err);
        if (err) ao_fatal("raw RocksDB write: %s", err);
        atomic_fetch_add_explicit(&sd->acked, 1, memory_order_relaxed);
    }
    rocksdb_writebatch_destroy(wb);
    return NULL;
}

/* RAW_LEADER: the best group commit written by hand on raw RocksDB, the
 * processor's design without its generality: writers queue themselves and
 * wait; one leader thread takes everything queued, writes one WriteBatch
 * with one synced write, and wakes them. */
static void *leader_thread(void *arg)
{
    side_t *sd = arg;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    size_t wl = strlen(APPEND_WF);
    unsigned char ik[64];
    memcpy(ik, APPEND_WF, wl);
    ik[wl] = 0;
    uint64_t seq = 1;
    for (;;) {
        pthread_mutex_lock(&sd->qlock);
        while (!sd->queue && !sd->leader_stop)
            pthread_cond_wait(&sd->qcond, &sd->qlock);
        publisher_t *list = sd->queue;
        sd->queue = NULL;
        int stop = sd->leader_stop;
        pthread_mutex_unlock(&sd->qlock);
        if (!list && stop) break;
        rocksdb_writebatch_clear(wb);
        for (publisher_t *p = list; p; p = p->next_queued) {
            unsigned char k[8];
            be64(seq, k);
            be64(seq, ik + wl + 1);
            seq++;
            rocksdb_writebatch_put_cf(wb, sd->cf[1], (const char *)k, 8, (const char *)sd->value,
                                      EVENT_BYTES);
            rocksdb_writebatch_put_cf(wb, sd->cf[2], (const char *)ik, wl + 9, "", 0);
        }
        char *err = NULL;
        rocksdb_write(sd->db, sd->wo, wb, &err);
        if (err) ao_fatal("raw RocksDB write: %s", err);
        while (list) {
            publisher_t *p = list;
            list = p->next_queued;
            pthread_mutex_lock(&p->lock);
            p->done = 1;
            pthread_cond_signal(&p->cond);
            pthread_mutex_unlock(&p->lock);
        }
    }
    rocksdb_writebatch_destroy(wb);
    return NULL;
}

static void *leader_client_thread(void *arg)
{
    publisher_t *pub = arg;
    side_t *sd = pub->side;
    while (!atomic_load_explicit(&sd->stop, memory_order_relaxed)) {
        pub->done = 0;
        pthread_mutex_lock(&sd->qlock);
        pub->next_queued = sd->queue;
        sd->queue = pub;
        pthread_cond_signal(&sd->qcond);
        pthread_mutex_unlock(&sd->qlock);
        pthread_mutex_lock(&pub->lock);
        while (!pub->done)
            pthread_cond_wait(&pub->cond, &pub->lock);
        pthread_mutex_unlock(&pub->lock);
        atomic_fetch_add_explicit(&sd->acked, 1, memory_order_relaxed);
    }
    return NULL;
}

/* The options storage/eventlog.c opens its database with, plus statistics
 * (for the fsync count). */
static rocksdb_options_t *raw_options(void)
{
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    rocksdb_options_increase_parallelism(o, 2);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(o, 32 << 20);
    rocksdb_options_set_max_open_files(o, 512);
    rocksdb_options_set_keep_log_file_num(o, 4);
    rocksdb_options_enable_statistics(o);
    return o;
}

/* A ticker's count from RocksDB's statistics text ("NAME COUNT : N"). */
static uint64_t ticker(const char *stats, const char *name)
{
    const char *p = stats;
    size_t n = strlen(name);
    while ((p = strstr(p, name))) {
        if (p[n] == ' ') {
            const char *c = strstr(p, "COUNT : ");
            if (c) return strtoull(c + 8, NULL, 10);
        }
        p += n;
    }
    return 0;
}

/* Fsyncs so far: the processor's commits, or RocksDB's WAL syncs. */
static uint64_t syncs_of(side_t *sd)
{
    if (sd->subject) return atomic_load(&sd->commits);
    char *stats = rocksdb_options_statistics_get_string(sd->opts);
    uint64_t n = ticker(stats, "rocksdb.wal.synced");
    rocksdb_free(stats);
    return n;
}

/* Opens a side on a fresh, empty database. */
static void side_open(side_t *sd, const char *base, int kind)
{
    static int serial;
    memset(sd, 0, sizeof *sd);
    sd->kind = kind;
    int subject = sd->subject = kind == SUBJECT;
    sd->dir = ao_xasprintf("%s/append-%d", base, serial++);
    rm_rf(sd->dir);
    if (subject) {
        ao_log_options_t lo = {.dir = sd->dir, .sync = 1};
        ao_status_t st;
        if (ao_log_open(&lo, &sd->log, &st)) ao_fatal("%s", st.msg);
        ao_proc_options_t po = {.log = sd->log, .publish = count_commit, .publish_ud = sd};
        sd->proc = ao_proc_create(&po);
        ao_proc_start(sd->proc);
        return;
    }
    sd->opts = raw_options();
    const char *names[3] = {"default", "events", "wf_index"};
    const rocksdb_options_t *cfo[3] = {sd->opts, sd->opts, sd->opts};
    char *err = NULL;
    sd->db = rocksdb_open_column_families(sd->opts, sd->dir, 3, names, cfo, sd->cf, &err);
    if (err) ao_fatal("raw RocksDB open %s: %s", sd->dir, err);
    sd->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(sd->wo, 1);
    atomic_init(&sd->next_seq, 1);
    /* The same bytes the subject stores: a packed 200-byte event. */
    Agentos__V1__Event ev;
    Agentos__V1__CustomPayload c;
    char *data;
    event_init(&ev, &c, &data);
    ev.seq = 100000;
    ev.time_unix_ms = ao_now_ms();
    protobuf_c_message_pack(&ev.base, sd->value);
    free(data);
    if (kind == RAW_LEADER) {
        pthread_mutex_init(&sd->qlock, NULL);
        pthread_cond_init(&sd->qcond, NULL);
        if (pthread_create(&sd->leader, NULL, leader_thread, sd)) ao_fatal("pthread_create");
    }
}

static void side_close(side_t *sd)
{
    if (sd->subject) {
        ao_proc_stop(sd->proc);
        ao_proc_destroy(sd->proc);
        ao_log_close(sd->log);
    } else {
        if (sd->kind == RAW_LEADER) {
            pthread_mutex_lock(&sd->qlock);
            sd->leader_stop = 1;
            pthread_cond_signal(&sd->qcond);
            pthread_mutex_unlock(&sd->qlock);
            pthread_join(sd->leader, NULL);
            pthread_mutex_destroy(&sd->qlock);
            pthread_cond_destroy(&sd->qcond);
        }
        for (int i = 0; i < 3; i++)
            rocksdb_column_family_handle_destroy(sd->cf[i]);
        rocksdb_close(sd->db);
        rocksdb_writeoptions_destroy(sd->wo);
        rocksdb_options_destroy(sd->opts);
    }
    rm_rf(sd->dir);
    free(sd->dir);
}

typedef struct window {
    uint64_t events, syncs;
    double secs;
} window_t;

/* One window: `threads` writers, warm-up then a measured part. */
static window_t append_window(side_t *sd, unsigned threads, unsigned warmup_ms,
                              unsigned duration_ms)
{
    atomic_store(&sd->stop, 0);
    publisher_t *pubs = ao_xcalloc(threads, sizeof *pubs);
    for (unsigned i = 0; i < threads; i++) {
        publisher_t *p = &pubs[i];
        p->side = sd;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        event_init(&p->ev, &p->c, &p->data);
        void *(*fn)(void *) = sd->kind == SUBJECT     ? subject_thread
                              : sd->kind == RAW_GROUP ? baseline_thread
                                                      : leader_client_thread;
        if (pthread_create(&p->th, NULL, fn, p)) ao_fatal("pthread_create");
    }
    sleep_ms(warmup_ms);
    uint64_t a0 = atomic_load(&sd->acked), s0 = syncs_of(sd);
    int64_t t0 = ao_mono_us();
    sleep_ms(duration_ms);
    uint64_t a1 = atomic_load(&sd->acked), s1 = syncs_of(sd);
    int64_t t1 = ao_mono_us();
    atomic_store(&sd->stop, 1);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(pubs[i].th, NULL);
        pthread_mutex_destroy(&pubs[i].lock);
        pthread_cond_destroy(&pubs[i].cond);
        free(pubs[i].data);
    }
    free(pubs);
    window_t w = {a1 - a0, s1 - s0, (double)(t1 - t0) / 1e6};
    return w;
}

static int bench_append(const char *base, int quick)
{
    unsigned counts_full[] = {1, 8, 64};
    unsigned counts_quick[] = {1, 16};
    unsigned *counts = quick ? counts_quick : counts_full;
    size_t n_counts = quick ? 2 : 3;
    /* Many short windows, alternating between the sides: the disk is
     * shared with whatever else runs on the machine and fsync times drift
     * by several times within seconds; alternating every 200 ms exposes
     * both sides to the same drift. */
    unsigned rounds = quick ? 6 : 30, warmup = 30, duration = quick ? 150 : 200;
    printf("== durable appends: %d-byte events, WAL synced, group commit; %u alternating windows "
           "of %.2f s per side and thread count\n",
           EVENT_BYTES, rounds, duration / 1000.0);
    printf("   processor:   N threads posting to the processor, one append outstanding each "
           "(acked by its after-commit callback)\n");
    printf(
        "   raw RocksDB: N threads doing WriteBatch + synced rocksdb_write, one outstanding each "
        "(RocksDB's own group commit)\n");
    printf("   raw leader:  N threads queueing to one hand-written leader thread that writes all "
           "queued in one WriteBatch + synced write\n");
    printf("%8s %12s %12s %12s %9s %9s %13s %22s\n", "threads", "processor", "raw RocksDB",
           "raw leader", "vs RocksDB", "vs leader", "median round", "events/fsync p/R/L");
    int met = 1;
    double *ratios = ao_xcalloc(rounds, sizeof *ratios);
    for (size_t k = 0; k < n_counts; k++) {
        side_t sides[N_SIDES];
        for (int i = 0; i < N_SIDES; i++)
            side_open(&sides[i], base, i);
        window_t tot[N_SIDES];
        memset(tot, 0, sizeof tot);
        for (unsigned r = 0; r < rounds; r++) {
            double rate[N_SIDES];
            for (int i = 0; i < N_SIDES; i++) {
                /* Rotated every round: no side always goes first. */
                int which = (i + (int)r) % N_SIDES;
                window_t w = append_window(&sides[which], counts[k], warmup, duration);
                tot[which].events += w.events;
                tot[which].syncs += w.syncs;
                tot[which].secs += w.secs;
                rate[which] = w.secs > 0 ? (double)w.events / w.secs : 0;
            }
            ratios[r] = rate[RAW_GROUP] > 0 ? rate[SUBJECT] / rate[RAW_GROUP] : 0;
        }
        for (int i = 0; i < N_SIDES; i++)
            side_close(&sides[i]);
        qsort(ratios, rounds, sizeof *ratios, cmp_double);
        double rate[N_SIDES], per_sync[N_SIDES];
        for (int i = 0; i < N_SIDES; i++) {
            rate[i] = (double)tot[i].events / tot[i].secs;
            per_sync[i] = tot[i].syncs ? (double)tot[i].events / (double)tot[i].syncs : 0;
        }
        double ratio = rate[RAW_GROUP] > 0 ? rate[SUBJECT] / rate[RAW_GROUP] : 0;
        double ratio_l = rate[RAW_LEADER] > 0 ? rate[SUBJECT] / rate[RAW_LEADER] : 0;
        if (ratio < 0.8) met = 0;
        char ps[40];
        snprintf(ps, sizeof ps, "%.1f/%.1f/%.1f", per_sync[0], per_sync[1], per_sync[2]);
        printf("%8u %12.0f %12.0f %12.0f %8.2fx %8.2fx %12.2fx %22s\n", counts[k], rate[0], rate[1],
               rate[2], ratio, ratio_l, ratios[rounds / 2], ps);
        fflush(stdout);
    }
    free(ratios);
    printf(
        "target: durable appends >= 0.80x raw RocksDB WriteBatch+sync at every thread count: %s\n",
        met ? "met" : "NOT met");
    printf("(vs leader: against the minimal hand-written group commit of the same design, "
           "informative)\n\n");
    return 0;
}

/* ---- 2. recovery ----------------------------------------------------------------- */

typedef struct rig {
    Agentos__V1__ServerConfig *cfg;
    ao_log_t *log;
    ao_timers_t *timers;
    ao_pool_t *pool;
    ao_backends_t *bs;
    ao_engine_t *engine;
} rig_t;

static Agentos__V1__ServerConfig *recovery_config(int sync)
{
    char *json = ao_xasprintf(
        "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":"
        "100000},"
        "{\"name\":\"hold\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":100000,"
        "\"builtin\":{\"hang\":true}}],"
        "\"storage\":{\"durability\":\"%s\"},\"limits\":{\"maxActiveWorkflows\":100000}}",
        sync ? "DURABILITY_SYNC" : "DURABILITY_ASYNC");
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, json, strlen(json), &m, &st))
        ao_fatal("%s", st.msg);
    free(json);
    Agentos__V1__ServerConfig *cfg = (Agentos__V1__ServerConfig *)m;
    ao_config_defaults(cfg);
    return cfg;
}

/* Opens the log and makes the engine; recovers if `recover`. Returns the
 * microseconds open + create + recover took; *open_us (if not NULL) gets
 * the ao_log_open part (RocksDB's own recovery: the write-ahead log). */
static int64_t rig_open(rig_t *r, const char *dir, int sync, int recover, int start,
                        int64_t *open_us)
{
    memset(r, 0, sizeof *r);
    r->cfg = recovery_config(sync);
    int64_t t0 = ao_mono_us();
    ao_log_options_t lo = {.dir = dir, .sync = sync};
    ao_status_t st;
    if (ao_log_open(&lo, &r->log, &st)) ao_fatal("%s", st.msg);
    if (open_us) *open_us = ao_mono_us() - t0;
    r->timers = ao_timers_create();
    r->pool = ao_pool_create(0);
    if (ao_backends_create(r->cfg, r->timers, r->pool, &r->bs, &st)) ao_fatal("%s", st.msg);
    ao_engine_options_t eo = {.cfg = r->cfg, .log = r->log, .backends = r->bs, .timers = r->timers};
    r->engine = ao_engine_create(&eo);
    if (recover && ao_engine_recover(r->engine, &st)) ao_fatal("recovery: %s", st.msg);
    int64_t us = ao_mono_us() - t0;
    if (start) ao_engine_start(r->engine);
    return us;
}

static void rig_close(rig_t *r, int started)
{
    if (started) ao_engine_stop(r->engine);
    ao_engine_destroy(r->engine);
    ao_backends_destroy(r->bs);
    ao_pool_destroy(r->pool);
    ao_timers_destroy(r->timers);
    ao_log_close(r->log);
    ao_config_free(r->cfg);
}

/* Work posted to the processor while the log is built. */
typedef struct builder {
    rig_t *r;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t pending; /* submitted workflows not yet finished, publish rounds not done */
    Agentos__V1__WorkflowSpec *finished_spec, *running_spec;
    char **running_ids;
    size_t n_running;
    size_t n_finished;
} builder_t;

static void builder_done(builder_t *b)
{
    pthread_mutex_lock(&b->lock);
    b->pending--;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void builder_wait(builder_t *b)
{
    pthread_mutex_lock(&b->lock);
    while (b->pending)
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

static void on_finished(void *ud, ao_wf_t *wf)
{
    (void)wf;
    builder_done(ud);
}

static void submit_finished(ao_proc_t *p, void *ud)
{
    (void)p;
    builder_t *b = ud;
    ao_wf_t *wf;
    uint64_t seq;
    int dedup;
    ao_status_t st;
    if (ao_engine_submit(b->r->engine, "bench", b->finished_spec, "", &wf, &seq, &dedup, &st))
        ao_fatal("submit: %s", st.msg);
    ao_engine_watch(b->r->engine, wf, on_finished, b);
}

static void submit_running(ao_proc_t *p, void *ud)
{
    (void)p;
    builder_t *b = ud;
    ao_wf_t *wf;
    uint64_t seq;
    int dedup;
    ao_status_t st;
    if (ao_engine_submit(b->r->engine, "bench", b->running_spec, "", &wf, &seq, &dedup, &st))
        ao_fatal("submit: %s", st.msg);
    b->running_ids[b->n_running++] = ao_xstrdup(wf->pb->id);
    builder_done(b);
}

typedef struct publish_round {
    builder_t *b;
    size_t first, count; /* workflows [first, first + count) */
    unsigned per_wf;
} publish_round_t;

static void publish_work(ao_proc_t *p, void *ud)
{
    (void)p;
    publish_round_t *pr = ud;
    builder_t *b = pr->b;
    char data[101];
    memset(data, 'f', 100);
    data[100] = '\0';
    Agentos__V1__CustomPayload c = AGENTOS__V1__CUSTOM_PAYLOAD__INIT;
    c.name = "progress";
    c.data = data;
    Agentos__V1__PublishEventRequest req = AGENTOS__V1__PUBLISH_EVENT_REQUEST__INIT;
    req.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_CUSTOM;
    req.custom = &c;
    for (size_t i = pr->first; i < pr->first + pr->count; i++) {
        ao_status_t st;
        ao_wf_t *wf = ao_engine_find(b->r->engine, b->running_ids[i], "bench", &st);
        if (!wf) ao_fatal("%s", st.msg);
        req.workflow_id = b->running_ids[i];
        for (unsigned k = 0; k < pr->per_wf; k++) {
            uint64_t seq;
            if (ao_engine_publish(b->r->engine, wf, &req, &seq, &st))
                ao_fatal("publish: %s", st.msg);
        }
    }
    free(pr);
    builder_done(b);
}

static Agentos__V1__WorkflowSpec *spec_of(const char *json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, json, strlen(json), &m, &st))
        ao_fatal("%s", st.msg);
    return (Agentos__V1__WorkflowSpec *)m;
}

typedef struct log_stats {
    uint64_t events;
    size_t workflows, unfinished, snapshots, checkpoints;
    char **ids;
    size_t n_ids, cap_ids;
    ao_log_t *log;
} log_stats_t;

static int count_ckpt(void *ud, uint64_t seq, const void *data, size_t len)
{
    (void)seq;
    (void)data;
    (void)len;
    (*(size_t *)ud)++;
    return 0;
}

static int stat_snapshot(void *ud, const char *wf, uint64_t seq, const void *data, size_t len)
{
    (void)seq;
    log_stats_t *s = ud;
    Agentos__V1__Workflow *pb = agentos__v1__workflow__unpack(NULL, len, data);
    if (!pb) ao_fatal("snapshot of %s does not decode", wf);
    if (!ao_wf_status_terminal(pb->status)) s->unfinished++;
    agentos__v1__workflow__free_unpacked(pb, NULL);
    s->snapshots++;
    ao_status_t st;
    if (ao_log_list_checkpoints(s->log, wf, count_ckpt, &s->checkpoints, &st))
        ao_fatal("%s", st.msg);
    if (s->n_ids == s->cap_ids) {
        s->cap_ids = s->cap_ids ? 2 * s->cap_ids : 1024;
        s->ids = ao_xrealloc(s->ids, s->cap_ids * sizeof *s->ids);
    }
    s->ids[s->n_ids++] = ao_xstrdup(wf);
    return 0;
}

/* Builds a log of at least `target` events with the engine (durability
 * async while building: the stored bytes are the same). */
static void build_recovery_log(const char *dir, uint64_t target)
{
    rig_t r;
    rig_open(&r, dir, 0, 1, 1, NULL);
    builder_t b = {.r = &r};
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    /* 20 independent no-op tasks; and one task that hangs (the workflow
     * stays running) with two no-op tasks that finish. */
    char json[2048];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"tasks\":[");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"id\":\"t%d\",\"agent\":\"noop\"}",
                              i ? "," : "", i);
    snprintf(json + n, sizeof json - n, "]}");
    b.finished_spec = spec_of(json);
    b.running_spec =
        spec_of("{\"tasks\":[{\"id\":\"hold\",\"agent\":\"hold\",\"attemptTimeoutMs\":86400000},"
                "{\"id\":\"a\",\"agent\":\"noop\"},{\"id\":\"b\",\"agent\":\"noop\"}]}");
    ao_proc_t *p = ao_engine_proc(r.engine);
    /* 60% of the events from finished workflows, in waves. */
    while (ao_log_last_seq(r.log) < target * 6 / 10) {
        const size_t wave = 200;
        pthread_mutex_lock(&b.lock);
        b.pending += wave;
        pthread_mutex_unlock(&b.lock);
        for (size_t i = 0; i < wave; i++)
            ao_proc_post(p, submit_finished, NULL, &b);
        builder_wait(&b);
        b.n_finished += wave;
    }
    /* The rest: custom events into running workflows, so that each has a
     * tail after its last automatic checkpoint. */
    size_t running = target >= 1000000 ? 200 : 40;
    b.running_ids = ao_xcalloc(running, sizeof *b.running_ids);
    pthread_mutex_lock(&b.lock);
    b.pending += running;
    pthread_mutex_unlock(&b.lock);
    for (size_t i = 0; i < running; i++)
        ao_proc_post(p, submit_running, NULL, &b);
    builder_wait(&b);
    /* Uneven amounts per workflow (tails of all lengths): rounds of 37
     * events into a sliding half of them. */
    size_t round = 0;
    while (ao_log_last_seq(r.log) < target) {
        for (size_t g = 0; g < running; g += 20) {
            publish_round_t *pr = ao_xcalloc(1, sizeof *pr);
            pr->b = &b;
            pr->first = g;
            pr->count = g + 20 <= running ? 20 : running - g;
            pr->per_wf = 37 + (unsigned)((g / 20 + round) % 5) * 11;
            pthread_mutex_lock(&b.lock);
            b.pending++;
            pthread_mutex_unlock(&b.lock);
            ao_proc_post(p, publish_work, NULL, pr);
        }
        builder_wait(&b);
        round++;
    }
    rig_close(&r, 1);
    for (size_t i = 0; i < b.n_running; i++)
        free(b.running_ids[i]);
    free(b.running_ids);
    protobuf_c_message_free_unpacked(&b.finished_spec->base, NULL);
    protobuf_c_message_free_unpacked(&b.running_spec->base, NULL);
    pthread_mutex_destroy(&b.lock);
    pthread_cond_destroy(&b.cond);
}

static int bench_recovery(const char *base, int quick, uint64_t events, int keep)
{
    if (!events) events = quick ? 100000 : 1000000;
    char *dir = ao_xasprintf("%s/recovery-log", base);
    rm_rf(dir);
    printf("== recovery: building a log of %llu events with the engine (finished and running "
           "workflows, automatic checkpoints)...\n",
           (unsigned long long)events);
    fflush(stdout);
    int64_t tb = ao_mono_us();
    build_recovery_log(dir, events);
    double build_s = (double)(ao_mono_us() - tb) / 1e6;

    log_stats_t s = {0};
    ao_log_options_t lo = {.dir = dir, .read_only = 1};
    ao_status_t st;
    if (ao_log_open(&lo, &s.log, &st)) ao_fatal("%s", st.msg);
    s.events = ao_log_last_seq(s.log);
    if (ao_log_scan_snapshots(s.log, stat_snapshot, &s, &st)) ao_fatal("%s", st.msg);
    ao_log_close(s.log);
    s.workflows = s.n_ids;
    printf("   built in %.1f s: %llu events, %zu workflows (%zu running), %zu snapshots, %zu "
           "checkpoints\n",
           build_s, (unsigned long long)s.events, s.workflows, s.unfinished, s.snapshots,
           s.checkpoints);

    /* Recovery as agentosd does it before it serves: open, create, recover.
     * Each run starts from a copy of the database as the builder left it:
     * RocksDB does not flush memtables at close when the WAL is on, so the
     * first open replays the write-ahead log (as after kill -9) and later
     * opens of the same directory would not. */
    const int runs = 3;
    double ms[3], open_ms[3];
    char *run_dir = ao_xasprintf("%s/recovery-run", base);
    for (int i = 0; i < runs; i++) {
        rm_rf(run_dir);
        char *cmd = ao_xasprintf("cp -a '%s' '%s'", dir, run_dir);
        if (system(cmd) != 0) ao_fatal("%s failed", cmd);
        free(cmd);
        rig_t r;
        int64_t open_us;
        ms[i] = (double)rig_open(&r, run_dir, 1, 1, 0, &open_us) / 1000.0;
        open_ms[i] = (double)open_us / 1000.0;
        if (ao_engine_active(r.engine) != s.unfinished)
            ao_fatal("recovered %u running workflows, the log has %zu", ao_engine_active(r.engine),
                     s.unfinished);
        rig_close(&r, 0);
    }
    qsort(ms, runs, sizeof ms[0], cmp_double);
    qsort(open_ms, runs, sizeof open_ms[0], cmp_double);

    /* Baseline: the same open of a fresh copy (its write-ahead log
     * replayed too), then every workflow replayed from its first event. */
    rm_rf(run_dir);
    char *cmd = ao_xasprintf("cp -a '%s' '%s'", dir, run_dir);
    if (system(cmd) != 0) ao_fatal("%s failed", cmd);
    free(cmd);
    int64_t t0 = ao_mono_us();
    ao_log_options_t wo = {.dir = run_dir, .sync = 1};
    if (ao_log_open(&wo, &s.log, &st)) ao_fatal("%s", st.msg);
    double full_open_ms = (double)(ao_mono_us() - t0) / 1000.0;
    for (size_t i = 0; i < s.n_ids; i++) {
        ao_wf_t *wf;
        if (ao_engine_state_at(s.log, s.ids[i], UINT64_MAX, &wf, &st))
            ao_fatal("replay: %s", st.msg);
        ao_wf_free(wf);
    }
    double full_ms = (double)(ao_mono_us() - t0) / 1000.0;
    ao_log_close(s.log);
    rm_rf(run_dir);
    free(run_dir);

    printf("   recovery (open + engine create + ao_engine_recover, WAL replay included, warm page "
           "cache): best %.0f ms, "
           "median %.0f ms, worst %.0f ms\n",
           ms[0], ms[1], ms[2]);
    printf("   of which ao_log_open (RocksDB replaying its write-ahead log): median %.0f ms; the "
           "engine (snapshots, tails, create): about %.0f ms\n",
           open_ms[1], ms[1] - open_ms[1]);
    printf("   baseline: the same open, then every workflow replayed from its first event (no "
           "snapshots or checkpoints): %.0f ms (open %.0f ms)\n",
           full_ms, full_open_ms);
    printf("   ratio full replay / recovery: %.1fx\n", ms[1] > 0 ? full_ms / ms[1] : 0);
    printf("target: recovery of %llu events under 2 s with checkpoints: %s (median %.2f s)\n\n",
           (unsigned long long)s.events, ms[1] < 2000 ? "met" : "NOT met", ms[1] / 1000.0);
    for (size_t i = 0; i < s.n_ids; i++)
        free(s.ids[i]);
    free(s.ids);
    if (!keep) rm_rf(dir);
    free(dir);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *only = NULL;
    int quick = 0, keep = 0;
    uint64_t events = 0;
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'}, {"only", required_argument, NULL, 'o'},
        {"quick", no_argument, NULL, 'q'},     {"events", required_argument, NULL, 'e'},
        {"keep-log", no_argument, NULL, 'k'},  {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'o':
            only = optarg;
            break;
        case 'q':
            quick = 1;
            break;
        case 'e':
            events = strtoull(optarg, NULL, 10);
            break;
        case 'k':
            keep = 1;
            break;
        default:
            fprintf(stderr, "usage: bench_eventlog --dir DIR [--quick] [--only append|recovery] "
                            "[--events N] [--keep-log]\n");
            return 2;
        }
    }
    if (!dir || (only && strcmp(only, "append") && strcmp(only, "recovery"))) {
        fprintf(stderr, "usage: bench_eventlog --dir DIR [--quick] [--only append|recovery] "
                        "[--events N] [--keep-log]\n");
        return 2;
    }
    /* The engine's INFO lines (one per recovery) would interleave with the
     * figures. */
    ao_log_configure("warn", NULL);
    if (!only || !strcmp(only, "append")) bench_append(dir, quick);
    if (!only || !strcmp(only, "recovery")) bench_recovery(dir, quick, events, keep);
    return 0;
}
