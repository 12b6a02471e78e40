/*
 * The ordered event processor. See processor.h.
 *
 * Threads: the processor thread owns the current stage (the batch being
 * filled, its events and callbacks), the stage in flight once the writer
 * has written it, the waiting list and everything posted work touches.
 * The writer thread only writes the stage in flight to the log. `lock`
 * guards the input queue and the hand-over between the two (flight_ready,
 * flight_done); durable_seq is an atomic.
 *
 * Pipelining: while the processor has more to do (posted work queued, or
 * the tick has more to start), a full stage goes to the writer and the
 * processor fills the next one meanwhile; at most one stage is in flight.
 * When it has nothing else to do, or a callback that must see the state
 * equal to the log is waiting, it writes on its own thread, as a single
 * writer would: no hand-over costs a chain's step anything.
 */
#include "processor.h"

#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "pbutil.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct work {
    struct work *next;
    ao_proc_work_fn fn;
    ao_proc_drop_fn drop;
    void *ud;
} work_t;

typedef struct after {
    ao_proc_after_fn fn;
    void *ud;
} after_t;

typedef struct after_list {
    after_t *v;
    size_t n, cap;
} after_list_t;

/* A batch with what waits for it. */
typedef struct stage {
    ao_log_batch_t *batch;
    ao_evref_t **evs;
    size_t n_evs, cap_evs;
    size_t n_puts;             /* snapshots and checkpoints */
    after_list_t durables;     /* ao_proc_after_durable */
    after_list_t commits;      /* ao_proc_after_commit */
} stage_t;

struct ao_proc {
    ao_log_t *log;
    unsigned max_batch;
    ao_proc_publish_fn publish;
    void *publish_ud;
    ao_proc_tick_fn tick;
    void *tick_ud;

    pthread_t thread, writer;
    int running;
    pthread_mutex_t lock;
    pthread_cond_t cond;  /* to the processor: work, a written flight, stop */
    pthread_cond_t wcond; /* to the writer: a flight, stop */
    work_t *head, *tail;
    int stopping;
    int stopped;
    int writer_stop;
    int flight_ready; /* the writer has a stage to write */
    int flight_done;  /* it has written it */

    atomic_uint_fast64_t durable_seq;
    uint64_t next_seq;
    ao_pb_narrow_t *packer; /* events, without the unset payload members */
    uint64_t batches;
    int more; /* the tick has more to do */

    stage_t cur;
    stage_t flight;
    int in_flight;
    /* ao_proc_after_commit callbacks whose batch is durable, waiting for
     * the state to be the log's (no write pending). */
    after_list_t waiting;
};

static void push_after(after_list_t *l, ao_proc_after_fn fn, void *ud)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = ao_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (after_t){fn, ud};
}

static void append_afters(after_list_t *to, after_list_t *from)
{
    for (size_t i = 0; i < from->n; i++) push_after(to, from->v[i].fn, from->v[i].ud);
    from->n = 0;
}

static int has_writes(const stage_t *s)
{
    return s->n_evs || s->n_puts;
}

static void stage_init(ao_proc_t *p, stage_t *s)
{
    memset(s, 0, sizeof *s);
    s->batch = ao_log_batch_new(p->log);
}

static void stage_fini(stage_t *s)
{
    for (size_t i = 0; i < s->n_evs; i++) ao_evref_unref(s->evs[i]);
    free(s->evs);
    free(s->durables.v);
    free(s->commits.v);
    ao_log_batch_free(s->batch);
}

static void *writer_main(void *arg);

ao_proc_t *ao_proc_create(const ao_proc_options_t *opt)
{
    ao_proc_t *p = ao_xcalloc(1, sizeof *p);
    p->log = opt->log;
    p->max_batch = opt->max_batch_events ? opt->max_batch_events : 4096;
    p->publish = opt->publish;
    p->publish_ud = opt->publish_ud;
    p->tick = opt->tick;
    p->tick_ud = opt->tick_ud;
    p->packer = ao_pb_narrow_create(&agentos__v1__event__descriptor);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_cond_init(&p->wcond, NULL);
    uint64_t last = ao_log_last_seq(p->log);
    atomic_init(&p->durable_seq, last);
    p->next_seq = last + 1;
    stage_init(p, &p->cur);
    stage_init(p, &p->flight);
    return p;
}

uint64_t ao_proc_durable_seq(ao_proc_t *p)
{
    return atomic_load(&p->durable_seq);
}

uint64_t ao_proc_batches(ao_proc_t *p)
{
    return p->batches;
}

uint64_t ao_proc_next_seq(ao_proc_t *p)
{
    return p->next_seq;
}

ao_log_t *ao_proc_log(ao_proc_t *p)
{
    return p->log;
}

void ao_proc_post(ao_proc_t *p, ao_proc_work_fn fn, ao_proc_drop_fn drop, void *ud)
{
    work_t *w = ao_xmalloc(sizeof *w);
    w->next = NULL;
    w->fn = fn;
    w->drop = drop;
    w->ud = ud;
    pthread_mutex_lock(&p->lock);
    if (p->stopped) {
        pthread_mutex_unlock(&p->lock);
        if (drop) drop(ud);
        free(w);
        return;
    }
    if (p->tail) p->tail->next = w;
    else p->head = w;
    p->tail = w;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static uint64_t stage_event(ao_proc_t *p, Agentos__V1__Event *ev, grpc_slice bytes)
{
    stage_t *s = &p->cur;
    if (s->n_evs == s->cap_evs) {
        s->cap_evs = s->cap_evs ? s->cap_evs * 2 : 256;
        s->evs = ao_xrealloc(s->evs, s->cap_evs * sizeof *s->evs);
    }
    s->evs[s->n_evs++] = ao_evref_take(ev->seq, ev->type, ev->tenant, ev->workflow_id, ev->task_id, bytes);
    return ev->seq;
}

/* The processor this thread runs, if it is a processor thread. */
static _Thread_local const ao_proc_t *this_proc;

int ao_proc_on_thread(const ao_proc_t *p)
{
    return this_proc == p;
}

uint64_t ao_proc_emit(ao_proc_t *p, Agentos__V1__Event *ev)
{
    ev->seq = p->next_seq++;
    if (!ev->time_unix_ms) ev->time_unix_ms = ao_now_ms();
    size_t len = ao_pb_narrow_size(p->packer, &ev->base);
    grpc_slice bytes = grpc_slice_malloc(len);
    ao_pb_narrow_pack(p->packer, &ev->base, GRPC_SLICE_START_PTR(bytes));
    return stage_event(p, ev, bytes);
}

uint64_t ao_proc_emit_packed(ao_proc_t *p, Agentos__V1__Event *ev, const void *payload, size_t len)
{
    if (ev->base.n_unknown_fields || !ev->payload_case)
        ao_fatal("ao_proc_emit_packed: an event with unknown fields or no payload");
    ev->seq = p->next_seq++;
    if (!ev->time_unix_ms) ev->time_unix_ms = ao_now_ms();
    uint32_t field = (uint32_t)ev->payload_case;
    ev->payload_case = AGENTOS__V1__EVENT__PAYLOAD__NOT_SET;
    size_t head = ao_pb_narrow_size(p->packer, &ev->base);
    grpc_slice bytes = grpc_slice_malloc(head + ao_pb_field_size(field, len));
    uint8_t *out = GRPC_SLICE_START_PTR(bytes);
    ao_pb_narrow_pack(p->packer, &ev->base, out);
    ev->payload_case = (Agentos__V1__Event__PayloadCase)field;
    ao_pb_put_field(out + head, field, payload, len);
    return stage_event(p, ev, bytes);
}

void ao_proc_put_snapshot(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                          size_t len)
{
    ao_log_batch_put_snapshot(p->cur.batch, workflow_id, seq, data, len);
    p->cur.n_puts++;
}

void ao_proc_put_checkpoint(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                            size_t len)
{
    ao_log_batch_put_checkpoint(p->cur.batch, workflow_id, seq, data, len);
    p->cur.n_puts++;
}

void ao_proc_after_commit(ao_proc_t *p, ao_proc_after_fn fn, void *ud)
{
    push_after(&p->cur.commits, fn, ud);
}

void ao_proc_after_durable(ao_proc_t *p, ao_proc_after_fn fn, void *ud)
{
    push_after(&p->cur.durables, fn, ud);
}

/* ---- writing ------------------------------------------------------------------ */

/* Writes a stage's batch (processor or writer thread). Its events go into
 * the batch here, so that a pipelined stage's copying and indexing is the
 * writer's work, not the processor's (puts went in when they were made).
 * A failed write is fatal: recovery starts from what is durable. */
static void write_stage(ao_proc_t *p, stage_t *s)
{
    ao_status_t st;
    ao_status_clear(&st);
    int64_t t0 = ao_mono_us();
    for (size_t i = 0; i < s->n_evs; i++) {
        const ao_evref_t *e = s->evs[i];
        ao_log_batch_put_event(s->batch, e->seq, e->workflow_id, GRPC_SLICE_START_PTR(e->bytes),
                               GRPC_SLICE_LENGTH(e->bytes));
    }
    if (ao_log_write(p->log, s->batch, &st))
        ao_fatal("the event log write failed, stopping to recover from what is durable: %s", st.msg);
    AO_METRIC_ADD(commit_micros, (uint64_t)(ao_mono_us() - t0));
    AO_METRIC_INC(batches_committed);
    AO_METRIC_ADD(events_appended, s->n_evs);
    ao_log_batch_clear(s->batch);
}

static void *writer_main(void *arg)
{
    ao_proc_t *p = arg;
    pthread_setname_np(pthread_self(), "ao-writer");
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->flight_ready && !p->writer_stop) pthread_cond_wait(&p->wcond, &p->lock);
        if (!p->flight_ready) break;
        pthread_mutex_unlock(&p->lock);
        write_stage(p, &p->flight);
        pthread_mutex_lock(&p->lock);
        p->flight_ready = 0;
        p->flight_done = 1;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* A stage is in the log: its events go out (durable_seq, subscribers),
 * then its durable callbacks run; its commit callbacks join the waiting
 * list. */
static void stage_written(ao_proc_t *p, stage_t *s)
{
    s->n_puts = 0;
    if (s->n_evs) {
        uint64_t durable = s->evs[s->n_evs - 1]->seq;
        atomic_store(&p->durable_seq, durable);
        if (p->publish) p->publish(p->publish_ud, s->evs, s->n_evs, durable);
        for (size_t i = 0; i < s->n_evs; i++) ao_evref_unref(s->evs[i]);
        s->n_evs = 0;
    }
    /* Detached: a callback may register more (they go to the current
     * stage). */
    after_list_t l = s->durables;
    memset(&s->durables, 0, sizeof s->durables);
    for (size_t i = 0; i < l.n; i++) l.v[i].fn(p, l.v[i].ud);
    free(l.v);
    append_afters(&p->waiting, &s->commits);
}

/* The flight is written: take it back. */
static void finish_flight(ao_proc_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->flight_done = 0;
    pthread_mutex_unlock(&p->lock);
    p->in_flight = 0;
    stage_written(p, &p->flight);
}

static void wait_flight(ao_proc_t *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->flight_done) pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
    finish_flight(p);
}

/* With nothing in flight and nothing unwritten the state is the log's:
 * the commit callbacks run, in order. Callbacks may add callbacks; one
 * that emits makes the state ahead of the log again: the rest wait for
 * the next commit (ahead of callbacks added since), so that none of them
 * sees an event that is not durable. A snapshot or checkpoint put changes
 * no state: the callbacks already due still run, and those added after it
 * wait for its write. */
static void run_quiet(ao_proc_t *p)
{
    while (!p->in_flight && !has_writes(&p->cur)) {
        if (p->cur.durables.n) {
            after_list_t l = p->cur.durables;
            memset(&p->cur.durables, 0, sizeof p->cur.durables);
            for (size_t i = 0; i < l.n; i++) l.v[i].fn(p, l.v[i].ud);
            free(l.v);
            continue;
        }
        append_afters(&p->waiting, &p->cur.commits);
        if (!p->waiting.n) return;
        after_list_t l = p->waiting;
        memset(&p->waiting, 0, sizeof p->waiting);
        size_t i = 0;
        while (i < l.n && !p->cur.n_evs) {
            l.v[i].fn(p, l.v[i].ud);
            i++;
        }
        if (i < l.n) {
            /* The rest go first, before the callbacks added meanwhile. */
            after_list_t rest = {0};
            for (size_t k = i; k < l.n; k++) push_after(&rest, l.v[k].fn, l.v[k].ud);
            append_afters(&rest, &p->cur.commits);
            free(p->cur.commits.v);
            p->cur.commits = rest;
        }
        free(l.v);
    }
}

static int flight_written(ao_proc_t *p)
{
    pthread_mutex_lock(&p->lock);
    int done = p->flight_done;
    pthread_mutex_unlock(&p->lock);
    return done;
}

/* Ends the current stage: hands it to the writer when the processor is
 * busy (has more to do) and nothing needs the state to be the log's;
 * otherwise writes it here. */
static void close_stage(ao_proc_t *p, int busy)
{
    /* First take back a written flight: its commit callbacks may be
     * waiting. */
    if (p->in_flight && flight_written(p)) finish_flight(p);
    if (p->waiting.n || p->cur.commits.n) busy = 0;
    int writes = has_writes(&p->cur);
    if (p->in_flight) {
        /* Keep filling while the writer writes, up to the batch limit. */
        if (busy && (!writes || p->cur.n_evs < p->max_batch)) return;
        wait_flight(p);
    }
    if (!writes) {
        run_quiet(p);
        return;
    }
    p->batches++;
    if (busy) {
        stage_t next = p->flight; /* written and empty: its batch is reused */
        p->flight = p->cur;
        p->cur = next;
        p->in_flight = 1;
        pthread_mutex_lock(&p->lock);
        p->flight_ready = 1;
        pthread_cond_signal(&p->wcond);
        pthread_mutex_unlock(&p->lock);
        return;
    }
    write_stage(p, &p->cur);
    stage_written(p, &p->cur);
    run_quiet(p);
}

static int queue_empty(ao_proc_t *p)
{
    pthread_mutex_lock(&p->lock);
    int empty = p->head == NULL;
    pthread_mutex_unlock(&p->lock);
    return empty;
}

static int tick(ao_proc_t *p)
{
    return p->tick ? p->tick(p->tick_ud, p) : 0;
}

static void *proc_main(void *arg)
{
    ao_proc_t *p = arg;
    pthread_setname_np(pthread_self(), "ao-processor");
    this_proc = p;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping && !p->flight_done && !p->more &&
               (p->in_flight || (!has_writes(&p->cur) && !p->cur.durables.n && !p->cur.commits.n &&
                                 !p->waiting.n)))
            pthread_cond_wait(&p->cond, &p->lock);
        work_t *list = p->head;
        p->head = p->tail = NULL;
        int stopping = p->stopping;
        int done = p->flight_done;
        pthread_mutex_unlock(&p->lock);
        if (done) finish_flight(p);

        while (list) {
            work_t *w = list;
            list = w->next;
            w->fn(p, w->ud);
            free(w);
            if (p->in_flight && flight_written(p)) finish_flight(p);
            if (p->cur.n_evs >= p->max_batch) {
                p->more = tick(p);
                close_stage(p, 1);
            }
        }
        p->more = tick(p);
        close_stage(p, p->more || !queue_empty(p));
        if (stopping && !p->more && !p->in_flight && !has_writes(&p->cur) && !p->cur.durables.n &&
            !p->cur.commits.n && !p->waiting.n) {
            pthread_mutex_lock(&p->lock);
            int more = p->head != NULL;
            if (!more) p->stopped = 1;
            pthread_mutex_unlock(&p->lock);
            if (!more) break;
        }
    }
    return NULL;
}

void ao_proc_start(ao_proc_t *p)
{
    if (pthread_create(&p->writer, NULL, writer_main, p)) ao_fatal("cannot start the log writer thread");
    if (pthread_create(&p->thread, NULL, proc_main, p)) ao_fatal("cannot start the processor thread");
    p->running = 1;
}

void ao_proc_stop(ao_proc_t *p)
{
    if (!p->running) {
        pthread_mutex_lock(&p->lock);
        p->stopped = 1;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_mutex_lock(&p->lock);
    p->writer_stop = 1;
    pthread_cond_signal(&p->wcond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->writer, NULL);
    p->running = 0;
}

void ao_proc_destroy(ao_proc_t *p)
{
    if (!p) return;
    work_t *w = p->head;
    while (w) {
        work_t *next = w->next;
        if (w->drop) w->drop(w->ud);
        free(w);
        w = next;
    }
    stage_fini(&p->cur);
    stage_fini(&p->flight);
    ao_pb_narrow_destroy(p->packer);
    free(p->waiting.v);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    pthread_cond_destroy(&p->wcond);
    free(p);
}
