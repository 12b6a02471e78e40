/*
 * The ordered event processor. See processor.h.
 *
 * Threads: the processor thread owns the batch, the after-commit list and
 * everything posted work touches. The input queue is the only shared
 * structure (guarded by `lock`); durable_seq is an atomic.
 */
#include "processor.h"

#include "log.h"
#include "metrics.h"
#include "mem.h"
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

struct ao_proc {
    ao_log_t *log;
    unsigned max_batch;
    ao_proc_publish_fn publish;
    void *publish_ud;
    ao_proc_tick_fn tick;
    void *tick_ud;

    pthread_t thread;
    int running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    work_t *head, *tail;
    int stopping;
    int stopped;

    atomic_uint_fast64_t durable_seq;
    uint64_t next_seq;
    uint64_t batches;
    /* Snapshots and checkpoints put since the last commit (a batch of
     * those alone is written too). */
    size_t n_puts;

    /* The current batch: its log writes and its events for subscribers. */
    ao_log_batch_t *batch;
    ao_evref_t **evs;
    size_t n_evs, cap_evs;
    after_t *afters;
    size_t n_afters, cap_afters;
};

ao_proc_t *ao_proc_create(const ao_proc_options_t *opt)
{
    ao_proc_t *p = ao_xcalloc(1, sizeof *p);
    p->log = opt->log;
    p->max_batch = opt->max_batch_events ? opt->max_batch_events : 4096;
    p->publish = opt->publish;
    p->publish_ud = opt->publish_ud;
    p->tick = opt->tick;
    p->tick_ud = opt->tick_ud;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    uint64_t last = ao_log_last_seq(p->log);
    atomic_init(&p->durable_seq, last);
    p->next_seq = last + 1;
    p->batch = ao_log_batch_new(p->log);
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

uint64_t ao_proc_emit(ao_proc_t *p, Agentos__V1__Event *ev)
{
    ev->seq = p->next_seq++;
    if (!ev->time_unix_ms) ev->time_unix_ms = ao_now_ms();
    size_t len = protobuf_c_message_get_packed_size(&ev->base);
    grpc_slice bytes = grpc_slice_malloc(len);
    protobuf_c_message_pack(&ev->base, GRPC_SLICE_START_PTR(bytes));
    ao_log_batch_put_event(p->batch, ev->seq, ev->workflow_id, GRPC_SLICE_START_PTR(bytes), len);
    if (p->n_evs == p->cap_evs) {
        p->cap_evs = p->cap_evs ? p->cap_evs * 2 : 256;
        p->evs = ao_xrealloc(p->evs, p->cap_evs * sizeof *p->evs);
    }
    p->evs[p->n_evs++] = ao_evref_take(ev->seq, ev->type, ev->tenant, ev->workflow_id, ev->task_id, bytes);
    return ev->seq;
}

void ao_proc_put_snapshot(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                          size_t len)
{
    ao_log_batch_put_snapshot(p->batch, workflow_id, seq, data, len);
    p->n_puts++;
}

void ao_proc_put_checkpoint(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                            size_t len)
{
    ao_log_batch_put_checkpoint(p->batch, workflow_id, seq, data, len);
    p->n_puts++;
}

void ao_proc_after_commit(ao_proc_t *p, ao_proc_after_fn fn, void *ud)
{
    if (p->n_afters == p->cap_afters) {
        p->cap_afters = p->cap_afters ? p->cap_afters * 2 : 64;
        p->afters = ao_xrealloc(p->afters, p->cap_afters * sizeof *p->afters);
    }
    p->afters[p->n_afters++] = (after_t){fn, ud};
}

/* Makes the batch durable, then lets its effects out: subscribers first
 * (they only take references), then the after-commit callbacks, which may
 * emit into the next batch. */
static void commit(ao_proc_t *p)
{
    if (p->n_evs || p->n_puts) {
        ao_status_t st;
        ao_status_clear(&st);
        int64_t t0 = ao_mono_us();
        if (ao_log_write(p->log, p->batch, &st))
            ao_fatal("the event log write failed, stopping to recover from what is durable: %s",
                     st.msg);
        AO_METRIC_ADD(commit_micros, (uint64_t)(ao_mono_us() - t0));
        AO_METRIC_INC(batches_committed);
        AO_METRIC_ADD(events_appended, p->n_evs);
        ao_log_batch_clear(p->batch);
        p->n_puts = 0;
        p->batches++;
    }
    if (p->n_evs) {
        uint64_t durable = p->evs[p->n_evs - 1]->seq;
        atomic_store(&p->durable_seq, durable);
        if (p->publish) p->publish(p->publish_ud, p->evs, p->n_evs, durable);
        for (size_t i = 0; i < p->n_evs; i++) ao_evref_unref(p->evs[i]);
        p->n_evs = 0;
    }
    /* Callbacks may add callbacks: run them against a detached list. One
     * that emits (or puts a snapshot or checkpoint) makes the state ahead
     * of the log again: the rest wait for the next commit (ahead of
     * callbacks added since), so that none of them sees a write that is
     * not durable. */
    while (p->n_afters) {
        after_t *list = p->afters;
        size_t n = p->n_afters;
        p->afters = NULL;
        p->n_afters = p->cap_afters = 0;
        size_t i = 0;
        while (i < n && !p->n_evs && !p->n_puts) {
            list[i].fn(p, list[i].ud);
            i++;
        }
        if (i < n) {
            size_t rest = n - i, added = p->n_afters;
            after_t *merged = ao_xmalloc((rest + added) * sizeof *merged);
            memcpy(merged, list + i, rest * sizeof *merged);
            if (added) memcpy(merged + rest, p->afters, added * sizeof *merged);
            free(p->afters);
            p->afters = merged;
            p->n_afters = p->cap_afters = rest + added;
        }
        free(list);
        if (p->n_evs || p->n_puts) break; /* they wrote: that needs its own commit first */
    }
}

static void *proc_main(void *arg)
{
    ao_proc_t *p = arg;
    pthread_setname_np(pthread_self(), "ao-processor");
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping && !p->n_evs && !p->n_puts && !p->n_afters)
            pthread_cond_wait(&p->cond, &p->lock);
        work_t *list = p->head;
        p->head = p->tail = NULL;
        int stopping = p->stopping;
        pthread_mutex_unlock(&p->lock);

        while (list) {
            work_t *w = list;
            list = w->next;
            w->fn(p, w->ud);
            free(w);
            if (p->n_evs >= p->max_batch) {
                if (p->tick) p->tick(p->tick_ud, p);
                commit(p);
            }
        }
        if (p->tick) p->tick(p->tick_ud, p);
        commit(p);
        if (stopping && !p->n_evs && !p->n_puts && !p->n_afters) {
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
    for (size_t i = 0; i < p->n_evs; i++) ao_evref_unref(p->evs[i]);
    free(p->evs);
    free(p->afters);
    ao_log_batch_free(p->batch);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
