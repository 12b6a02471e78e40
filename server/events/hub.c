/*
 * The subscriber hub. See hub.h.
 *
 * Each subscriber reads in one of two modes:
 *   BACKLOG  its next events come from the log (read in chunks of at most
 *            CHUNK events, never past the durable sequence number);
 *   LIVE     its next events come from its ring buffer, which the fan-out
 *            fills with published events.
 *
 * The switch from BACKLOG to LIVE is made under the hub lock, which the
 * fan-out also holds while it advances `durable` and fills rings. A
 * subscriber whose next sequence number is past `durable` has read
 * everything durable from the log; once LIVE (under the same lock), every
 * event with a higher sequence number is pushed to its ring by the fan-out,
 * which handles events in order after updating `durable`. So nothing is
 * missed (events <= durable came from the log, the rest from the ring) and
 * nothing repeats (the ring only gets events > next at the switch).
 *
 * A full ring drops the subscriber back to BACKLOG: the fan-out stops
 * filling it, it drains what the ring holds (contiguous), then reads the
 * log from where it is. The processor never waits for a subscriber: it
 * only hands references to the fan-out thread's queue.
 *
 * Threads: the processor thread (ao_hub_publish), one fan-out thread, RPC
 * threads (handlers, stream writes and cancellation), the main thread
 * (shutdown). `lock` guards the subscriber list, the rings, modes and
 * `durable`; the publish queue has its own lock.
 */
#include "hub.h"

#include "agentos/v1/event.pb-c.h"
#include "log.h"
#include "mem.h"
#include "util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 256

enum { BACKLOG = 0, LIVE = 1 };

typedef struct sub {
    struct sub *prev, *next;
    ao_hub_t *hub;
    ao_rpc_call_t *call;
    char *tenant;
    char *workflow_id;
    char **task_ids;
    size_t n_task_ids;
    int *types;
    size_t n_types;

    int mode;
    uint64_t next_seq; /* the next sequence number this subscriber needs */
    uint64_t to_seq;   /* 0: no end */
    struct sub *next_ending;
    /* The ring of live events (LIVE), or of events read from the log. */
    ao_evref_t **ring;
    size_t cap, head, count;
    int listed;
    int finishing;
} sub_t;

typedef struct pub {
    ao_evref_t **evs;
    size_t n;
    uint64_t durable;
} pub_t;

struct ao_hub {
    ao_log_t *log;
    unsigned buffer;
    unsigned max_subs;

    pthread_mutex_t lock;
    uint64_t durable;
    sub_t *subs;
    unsigned n_subs;
    int shutting_down;

    /* workflow id -> tenant */
    pthread_mutex_t owners_lock;
    json_t *owners;

    /* Batches from the processor to the fan-out thread. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    pub_t *q;
    size_t qn, qcap;
    int stop;
    pthread_t fanout;
    /* Bounded streams that have delivered everything, to be finished by the
     * fan-out thread (a stream cannot finish itself from next()). */
    sub_t *ending;
    atomic_int ending_pending;
};

/* ---- filters ------------------------------------------------------------ */

static int wanted(const sub_t *s, const char *tenant, const char *wf, const char *task, int type)
{
    if (strcmp(s->tenant, tenant)) return 0;
    if (s->workflow_id && strcmp(s->workflow_id, wf)) return 0;
    if (s->n_task_ids) {
        int ok = 0;
        for (size_t i = 0; i < s->n_task_ids && !ok; i++) ok = !strcmp(s->task_ids[i], task);
        if (!ok) return 0;
    }
    if (s->n_types) {
        int ok = 0;
        for (size_t i = 0; i < s->n_types && !ok; i++) ok = s->types[i] == type;
        if (!ok) return 0;
    }
    return 1;
}

/* ---- rings ---------------------------------------------------------------- */

static int ring_full(const sub_t *s)
{
    return s->count == s->cap;
}

static void ring_push(sub_t *s, ao_evref_t *e)
{
    s->ring[(s->head + s->count) % s->cap] = e;
    s->count++;
}

static ao_evref_t *ring_pop(sub_t *s)
{
    if (!s->count) return NULL;
    ao_evref_t *e = s->ring[s->head];
    s->head = (s->head + 1) % s->cap;
    s->count--;
    return e;
}

static void ring_clear(sub_t *s)
{
    ao_evref_t *e;
    while ((e = ring_pop(s))) ao_evref_unref(e);
}

/* ---- reading the log ------------------------------------------------------- */

/* Decoding an event only to filter it allocates its strings and payload
 * and frees them right after: from a bump arena instead of malloc, reset
 * per event (what does not fit falls back to malloc and is freed). A
 * backlog read decodes every event it passes, per subscriber, so this is
 * most of its cost after the transport. */
#define ARENA_BYTES (16 * 1024)

typedef struct arena {
    size_t used;
    _Alignas(max_align_t) unsigned char buf[ARENA_BYTES];
} arena_t;

static void *arena_alloc(void *ud, size_t n)
{
    arena_t *a = ud;
    size_t need = (n + _Alignof(max_align_t) - 1) & ~(size_t)(_Alignof(max_align_t) - 1);
    if (need <= ARENA_BYTES - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    return ao_xmalloc(n ? n : 1);
}

static void arena_free(void *ud, void *p)
{
    arena_t *a = ud;
    unsigned char *c = p;
    if (c >= a->buf && c < a->buf + ARENA_BYTES) return;
    free(p);
}

typedef struct read_ctx {
    sub_t *s;
    uint64_t last_read;
    size_t room;
    size_t visited; /* events the read passed, wanted or not */
    arena_t *arena;
    ProtobufCAllocator alloc;
} read_ctx_t;

static int read_one(void *ud, uint64_t seq, const void *data, size_t len)
{
    read_ctx_t *c = ud;
    c->last_read = seq;
    c->visited++;
    c->arena->used = 0;
    Agentos__V1__Event *ev = agentos__v1__event__unpack(&c->alloc, len, data);
    if (!ev) {
        AO_ERROR("hub", "event does not decode seq=%llu: skipped in a stream", (unsigned long long)seq);
        return 0;
    }
    if (wanted(c->s, ev->tenant, ev->workflow_id, ev->task_id, ev->type)) {
        ring_push(c->s, ao_evref_new(seq, ev->type, ev->tenant, ev->workflow_id, ev->task_id, data, len));
        c->room--;
    }
    /* Frees only what overflowed the arena. */
    agentos__v1__event__free_unpacked(ev, &c->alloc);
    return c->room == 0;
}

/* Fills the (empty) ring from the log, from next_seq up to `durable`; at
 * most CHUNK events are read. Called with the hub lock NOT held (reads may
 * take time); the subscriber is BACKLOG, so the fan-out leaves its ring
 * alone. Returns the new next_seq. */
static uint64_t read_backlog(sub_t *s, uint64_t durable)
{
    arena_t *arena = ao_xmalloc(sizeof *arena);
    read_ctx_t c = {.s = s,
                    .room = s->cap < CHUNK ? s->cap : CHUNK,
                    .arena = arena,
                    .alloc = {arena_alloc, arena_free, arena}};
    uint64_t to = s->to_seq && s->to_seq < durable ? s->to_seq : durable;
    /* At most this many events are passed per read (the workflow index
     * holds only the workflow's events; the whole log, everyone's). */
    size_t max = s->workflow_id ? c.room : c.room * 4;
    ao_status_t st;
    int rc;
    if (s->workflow_id)
        rc = ao_log_read_workflow(s->hub->log, s->workflow_id, s->next_seq, to, max, read_one, &c,
                                  &st);
    else
        rc = ao_log_read_range(s->hub->log, s->next_seq, to, max, read_one, &c, &st);
    free(arena);
    if (rc) {
        AO_ERROR("hub", "reading the log for a stream failed: %s", st.msg);
        return s->next_seq;
    }
    if (!c.last_read) return to + 1; /* nothing more up to durable */
    /* Stopped early (the ring's room filled, or `max` events passed, most
     * of them filtered out): continue after the last one passed. Else the
     * read reached `to`. */
    return c.room == 0 || c.visited == max ? c.last_read + 1 : to + 1;
}

/* ---- the stream ------------------------------------------------------------------- */

static void unlink_sub_locked(ao_hub_t *h, sub_t *s);

/* next(): called with the call's lock held (never concurrently per call). */
static int sub_next(ao_rpc_call_t *call, void *ud, grpc_slice *out)
{
    (void)call;
    sub_t *s = ud;
    ao_hub_t *h = s->hub;
    for (int round = 0; round < 64; round++) {
        pthread_mutex_lock(&h->lock);
        if (s->finishing) {
            pthread_mutex_unlock(&h->lock);
            return 0;
        }
        ao_evref_t *e = ring_pop(s);
        if (e) {
            s->next_seq = e->seq + 1 > s->next_seq ? e->seq + 1 : s->next_seq;
            pthread_mutex_unlock(&h->lock);
            *out = grpc_slice_ref(e->bytes);
            ao_evref_unref(e);
            return 1;
        }
        /* A bounded stream is done when nothing is buffered and nothing
         * more can come: it has read past to_seq, or (live) everything up to
         * to_seq is durable and was fanned out. */
        if (s->to_seq && s->count == 0 &&
            (s->next_seq > s->to_seq || (s->mode == LIVE && h->durable >= s->to_seq))) {
            /* A bounded stream with nothing left: hand it to the fan-out
             * thread to finish (with a ref so the call stays). */
            if (s->listed) {
                unlink_sub_locked(h, s);
                ao_rpc_call_ref(s->call);
                s->next_ending = h->ending;
                h->ending = s;
                atomic_store(&h->ending_pending, 1);
                pthread_mutex_lock(&h->qlock);
                pthread_cond_signal(&h->qcond);
                pthread_mutex_unlock(&h->qlock);
            }
            pthread_mutex_unlock(&h->lock);
            return 0;
        }
        if (s->mode == LIVE) {
            /* Nothing buffered: the fan-out kicks us when there is. */
            pthread_mutex_unlock(&h->lock);
            return 0;
        }
        uint64_t durable = h->durable;
        if (s->next_seq > durable) {
            /* Caught up with everything durable: go live (see the top). */
            s->mode = LIVE;
            pthread_mutex_unlock(&h->lock);
            return 0;
        }
        pthread_mutex_unlock(&h->lock);
        uint64_t next = read_backlog(s, durable);
        pthread_mutex_lock(&h->lock);
        /* Events read are all <= durable and >= the old next_seq: the ring
         * holds them in order; next_seq moves past what was read. */
        if (s->count == 0) s->next_seq = next;
        else s->next_seq = next; /* popping advances it no further than this */
        pthread_mutex_unlock(&h->lock);
    }
    return 0;
}

static void sub_free(sub_t *s)
{
    ring_clear(s);
    free(s->ring);
    free(s->tenant);
    free(s->workflow_id);
    for (size_t i = 0; i < s->n_task_ids; i++) free(s->task_ids[i]);
    free(s->task_ids);
    free(s->types);
    free(s);
}

static void unlink_sub_locked(ao_hub_t *h, sub_t *s)
{
    if (!s->listed) return;
    if (s->prev) s->prev->next = s->next;
    else h->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    s->listed = 0;
    s->finishing = 1;
    h->n_subs--;
}

static void sub_cancelled(ao_rpc_call_t *call, void *ud)
{
    sub_t *s = ud;
    ao_hub_t *h = s->hub;
    pthread_mutex_lock(&h->lock);
    int mine = s->listed;
    unlink_sub_locked(h, s);
    pthread_mutex_unlock(&h->lock);
    if (mine) ao_rpc_stream_finish(call, AO_ECANCELLED, "the stream was cancelled");
}

static void sub_destroy(void *ud)
{
    sub_free(ud);
}

static const ao_rpc_stream_ops_t sub_ops = {sub_next, sub_cancelled, sub_destroy};

/* ---- fan-out ------------------------------------------------------------------------ */

static void fan(ao_hub_t *h, pub_t *p)
{
    sub_t **kick = NULL;
    size_t nk = 0, ck = 0;
    pthread_mutex_lock(&h->lock);
    h->durable = p->durable;
    for (size_t i = 0; i < p->n; i++) {
        ao_evref_t *e = p->evs[i];
        for (sub_t *s = h->subs; s; s = s->next) {
            if (s->mode != LIVE || e->seq < s->next_seq) continue;
            if (s->to_seq && e->seq > s->to_seq) continue;
            if (!wanted(s, e->tenant, e->workflow_id, e->task_id, e->type)) continue;
            if (ring_full(s)) {
                /* Too slow: back to the log from after what the ring
                 * holds (the ring's events are contiguous up to here). */
                s->mode = BACKLOG;
                continue;
            }
            ring_push(s, ao_evref_ref(e));
            if (nk == ck) {
                ck = ck ? ck * 2 : 16;
                kick = ao_xrealloc(kick, ck * sizeof *kick);
            }
            int listed = 0;
            for (size_t k = 0; k < nk && !listed; k++) listed = kick[k] == s;
            if (!listed) {
                kick[nk++] = s;
                ao_rpc_call_ref(s->call);
            }
        }
    }
    /* Subscribers reading the log may have more to read now, and bounded
     * live streams may be done. */
    for (sub_t *s = h->subs; s; s = s->next) {
        int done = s->to_seq && s->mode == LIVE && h->durable >= s->to_seq && !s->count;
        if ((s->mode != BACKLOG || s->count) && !done) continue;
        int listed = 0;
        for (size_t k = 0; k < nk && !listed; k++) listed = kick[k] == s;
        if (listed) continue;
        if (nk == ck) {
            ck = ck ? ck * 2 : 16;
            kick = ao_xrealloc(kick, ck * sizeof *kick);
        }
        kick[nk++] = s;
        ao_rpc_call_ref(s->call);
    }
    pthread_mutex_unlock(&h->lock);
    /* Kick outside the lock (next() takes it); the refs keep each call and
     * its subscriber alive even if it is finished meanwhile. */
    for (size_t k = 0; k < nk; k++) {
        ao_rpc_call_t *call = kick[k]->call;
        ao_rpc_stream_kick(call);
        ao_rpc_call_unref(call);
    }
    free(kick);
    for (size_t i = 0; i < p->n; i++) ao_evref_unref(p->evs[i]);
    free(p->evs);
}

static void finish_ending(ao_hub_t *h)
{
    if (!atomic_exchange(&h->ending_pending, 0)) return;
    pthread_mutex_lock(&h->lock);
    sub_t *list = h->ending;
    h->ending = NULL;
    pthread_mutex_unlock(&h->lock);
    while (list) {
        sub_t *next = list->next_ending;
        ao_rpc_call_t *call = list->call;
        ao_rpc_stream_finish(call, 0, NULL);
        ao_rpc_call_unref(call);
        list = next;
    }
}

static void *fanout_main(void *arg)
{
    ao_hub_t *h = arg;
    pthread_setname_np(pthread_self(), "ao-fanout");
    for (;;) {
        finish_ending(h);
        pthread_mutex_lock(&h->qlock);
        while (!h->qn && !h->stop && !atomic_load(&h->ending_pending)) pthread_cond_wait(&h->qcond, &h->qlock);
        if (!h->qn && h->stop) {
            pthread_mutex_unlock(&h->qlock);
            finish_ending(h);
            break;
        }
        if (!h->qn) {
            pthread_mutex_unlock(&h->qlock);
            continue; /* only endings to finish */
        }
        pub_t *batch = h->q;
        size_t n = h->qn;
        h->q = NULL;
        h->qn = h->qcap = 0;
        pthread_mutex_unlock(&h->qlock);
        for (size_t i = 0; i < n; i++) fan(h, &batch[i]);
        free(batch);
    }
    return NULL;
}

void ao_hub_publish(void *ud, ao_evref_t *const *evs, size_t n, uint64_t durable)
{
    ao_hub_t *h = ud;
    /* Ownership of new workflows, before anyone can ask for them. */
    for (size_t i = 0; i < n; i++)
        if (evs[i]->type == AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_SUBMITTED)
            ao_hub_add_workflow(h, evs[i]->workflow_id, evs[i]->tenant);
    pub_t p = {ao_xmalloc(n * sizeof *p.evs), n, durable};
    for (size_t i = 0; i < n; i++) p.evs[i] = ao_evref_ref(evs[i]);
    pthread_mutex_lock(&h->qlock);
    if (h->qn == h->qcap) {
        h->qcap = h->qcap ? h->qcap * 2 : 16;
        h->q = ao_xrealloc(h->q, h->qcap * sizeof *h->q);
    }
    h->q[h->qn++] = p;
    pthread_cond_signal(&h->qcond);
    pthread_mutex_unlock(&h->qlock);
}

/* ---- the handler ------------------------------------------------------------------------ */

void ao_hub_stream_events(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    ao_hub_t *h = ud;
    const Agentos__V1__StreamEventsRequest *req = (const void *)m;
    const char *tenant = ao_rpc_call_tenant(call);
    if (req->n_task_ids > 1000 || req->n_types > 100) {
        ao_rpc_fail(call, AO_EINVAL, "task_ids: at most 1000; types: at most 100");
        return;
    }
    for (size_t i = 0; i < req->n_types; i++) {
        if (!protobuf_c_enum_descriptor_get_value(&agentos__v1__event_type__descriptor, req->types[i]) ||
            req->types[i] == 0) {
            char msg[100];
            snprintf(msg, sizeof msg, "types[%zu]: %d is not an event type", i, req->types[i]);
            ao_rpc_fail(call, AO_EINVAL, msg);
            return;
        }
    }
    if (*req->workflow_id) {
        pthread_mutex_lock(&h->owners_lock);
        json_t *owner = json_object_get(h->owners, req->workflow_id);
        int ok = owner && !strcmp(json_string_value(owner), tenant);
        pthread_mutex_unlock(&h->owners_lock);
        if (!ok) {
            char msg[200];
            snprintf(msg, sizeof msg, "workflow \"%.100s\" not found", req->workflow_id);
            ao_rpc_fail(call, AO_ENOTFOUND, msg);
            return;
        }
    }
    sub_t *s = ao_xcalloc(1, sizeof *s);
    s->hub = h;
    s->call = call;
    s->tenant = ao_xstrdup(tenant);
    s->workflow_id = *req->workflow_id ? ao_xstrdup(req->workflow_id) : NULL;
    s->task_ids = ao_xcalloc(req->n_task_ids ? req->n_task_ids : 1, sizeof *s->task_ids);
    for (size_t i = 0; i < req->n_task_ids; i++) s->task_ids[s->n_task_ids++] = ao_xstrdup(req->task_ids[i]);
    s->types = ao_xcalloc(req->n_types ? req->n_types : 1, sizeof *s->types);
    for (size_t i = 0; i < req->n_types; i++) s->types[s->n_types++] = req->types[i];
    s->cap = h->buffer;
    s->ring = ao_xcalloc(s->cap, sizeof *s->ring);

    /* Held until the stream is started: shutdown may finish the stream as
     * soon as it is listed. */
    ao_rpc_call_ref(call);
    pthread_mutex_lock(&h->lock);
    if (h->shutting_down || h->n_subs >= h->max_subs) {
        int down = h->shutting_down;
        unsigned n = h->n_subs;
        pthread_mutex_unlock(&h->lock);
        sub_free(s);
        char msg[200];
        if (down) snprintf(msg, sizeof msg, "agentosd is shutting down");
        else snprintf(msg, sizeof msg, "%u streams are open, the limit (limits.max_subscribers)", n);
        ao_rpc_fail(call, down ? AO_EUNAVAIL : AO_ELIMIT, msg);
        ao_rpc_call_unref(call);
        return;
    }
    s->next_seq = req->from_now ? h->durable + 1 : (req->from_seq ? req->from_seq : 1);
    s->to_seq = req->to_seq;
    s->mode = BACKLOG;
    s->next = h->subs;
    if (h->subs) h->subs->prev = s;
    h->subs = s;
    s->listed = 1;
    h->n_subs++;
    pthread_mutex_unlock(&h->lock);
    /* From here the subscriber is the stream's: it is freed by destroy. */
    ao_rpc_stream_start(call, &sub_ops, s);
    ao_rpc_call_unref(call);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

ao_hub_t *ao_hub_create(const ao_hub_options_t *opt)
{
    ao_hub_t *h = ao_xcalloc(1, sizeof *h);
    h->log = opt->log;
    h->durable = opt->durable_seq;
    h->buffer = opt->buffer_events ? opt->buffer_events : 1024;
    h->max_subs = opt->max_subscribers ? opt->max_subscribers : 1000;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->owners_lock, NULL);
    pthread_mutex_init(&h->qlock, NULL);
    pthread_cond_init(&h->qcond, NULL);
    h->owners = json_object();
    if (pthread_create(&h->fanout, NULL, fanout_main, h)) ao_fatal("cannot start the fan-out thread");
    return h;
}

void ao_hub_add_workflow(ao_hub_t *h, const char *workflow_id, const char *tenant)
{
    pthread_mutex_lock(&h->owners_lock);
    json_object_set_new(h->owners, workflow_id, json_string(tenant));
    pthread_mutex_unlock(&h->owners_lock);
}

unsigned ao_hub_subscribers(ao_hub_t *h)
{
    pthread_mutex_lock(&h->lock);
    unsigned n = h->n_subs;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void ao_hub_shutdown(ao_hub_t *h)
{
    pthread_mutex_lock(&h->lock);
    h->shutting_down = 1;
    sub_t *list = h->subs;
    for (sub_t *s = list; s; s = s->next) {
        s->listed = 0;
        s->finishing = 1;
    }
    h->subs = NULL;
    h->n_subs = 0;
    pthread_mutex_unlock(&h->lock);
    while (list) {
        sub_t *next = list->next;
        /* The call may free the subscriber as soon as it is finished. */
        ao_rpc_stream_finish(list->call, AO_EUNAVAIL, "agentosd is shutting down");
        list = next;
    }
}

void ao_hub_destroy(ao_hub_t *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->qlock);
    h->stop = 1;
    pthread_cond_signal(&h->qcond);
    pthread_mutex_unlock(&h->qlock);
    pthread_join(h->fanout, NULL);
    for (size_t i = 0; i < h->qn; i++) {
        for (size_t k = 0; k < h->q[i].n; k++) ao_evref_unref(h->q[i].evs[k]);
        free(h->q[i].evs);
    }
    free(h->q);
    json_decref(h->owners);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->owners_lock);
    pthread_mutex_destroy(&h->qlock);
    pthread_cond_destroy(&h->qcond);
    free(h);
}
