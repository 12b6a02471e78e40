/*
 * Unit tests for server/events/processor.c over a real RocksDB log (WAL
 * synced) in a directory the test makes and removes: sequence numbers
 * contiguous in posting order across threads; nothing published and no
 * after-commit callback run before its batch is in the log; after-commit
 * callbacks that emit get a commit of their own; max_batch_events splits
 * batches; stop runs what was posted and drops what comes later;
 * snapshots and checkpoints are written with their events, atomically
 * (also across kill -9 of a process in the middle of writing), and alone
 * when put after their events' commit; a busy processor's batches go to
 * the writer while durable and commit callbacks keep their guarantees.
 *
 * The processor's callbacks run on its thread, where cmocka's assertions
 * must not be used (they longjmp to the test's thread): they record the
 * first violation in `problem`, and the test asserts on it. Every wait is
 * on a condition variable (or poll) with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "eventlog.h"
#include "processor.h"
#include "testdir.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_S 60

typedef struct fx {
    char *dir;
    ao_log_t *log;
    ao_proc_t *p;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Recorded by the publish callback. */
    uint64_t published_last;
    size_t published_events;
    size_t batches;
    size_t batch_sizes[4096];
    /* The first violation seen on the processor thread. */
    char problem[512];
    /* Counters of callbacks, by the tests that use them. */
    size_t ran, afters, drops, ticks;
    /* Ticks still to emit an event each and report more to do. */
    size_t busy_ticks;
    uint64_t tick_at_publish;
} fx_t;

static void problem(fx_t *f, const char *fmt, ...)
{
    pthread_mutex_lock(&f->lock);
    if (!f->problem[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->problem, sizeof f->problem, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&f->lock);
}

static void assert_no_problem(fx_t *f)
{
    pthread_mutex_lock(&f->lock);
    char msg[512];
    memcpy(msg, f->problem, sizeof msg);
    pthread_mutex_unlock(&f->lock);
    if (msg[0]) fail_msg("%s", msg);
}

/* Waits until *counter >= want (counter read under f->lock); fails the
 * test past the deadline. */
static void wait_count(fx_t *f, const size_t *counter, size_t want, const char *what)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_S;
    pthread_mutex_lock(&f->lock);
    int rc = 0;
    while (*counter < want && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cond, &f->lock, &until);
    size_t got = *counter;
    pthread_mutex_unlock(&f->lock);
    if (got < want)
        fail_msg("timed out after %d s waiting for %s: %zu of %zu", WAIT_S, what, got, want);
}

static void bump(fx_t *f, size_t *counter)
{
    pthread_mutex_lock(&f->lock);
    (*counter)++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* ---- reading the log from the processor thread -------------------------- */

typedef struct find {
    uint64_t seq;
    const void *want;
    size_t want_len;
    int found, same;
    size_t n;
} find_t;

static int find_one(void *ud, uint64_t seq, const void *data, size_t len)
{
    find_t *c = ud;
    c->n++;
    if (seq == c->seq) {
        c->found = 1;
        c->same = c->want && len == c->want_len && !memcmp(data, c->want, len);
    }
    return 0;
}

/* 1 if event seq is in the log (with these bytes, if want is given). */
static int in_log(ao_log_t *log, uint64_t seq, const void *want, size_t len)
{
    find_t c = {seq, want, len, 0, 0, 0};
    ao_status_t st;
    if (ao_log_read_range(log, seq, seq, 0, find_one, &c, &st)) return -1;
    return want ? c.found && c.same : c.found;
}

/* ---- the publish callback ------------------------------------------------ */

static void on_publish(void *ud, ao_evref_t *const *evs, size_t n, uint64_t durable)
{
    fx_t *f = ud;
    if (!n) {
        problem(f, "an empty batch was published");
        return;
    }
    uint64_t first = evs[0]->seq, last = evs[n - 1]->seq;
    /* In the log, with the published bytes, before anyone sees them. */
    if (ao_log_last_seq(f->log) < last)
        problem(f, "batch %llu..%llu published while the log's last is %llu",
                (unsigned long long)first, (unsigned long long)last,
                (unsigned long long)ao_log_last_seq(f->log));
    if (durable != last || ao_proc_durable_seq(f->p) < last)
        problem(f, "durable_seq %llu / %llu for a batch ending at %llu",
                (unsigned long long)durable, (unsigned long long)ao_proc_durable_seq(f->p),
                (unsigned long long)last);
    for (size_t i = 0; i < n; i++) {
        if (i && evs[i]->seq != evs[i - 1]->seq + 1) problem(f, "a gap inside a published batch");
        if (in_log(f->log, evs[i]->seq, GRPC_SLICE_START_PTR(evs[i]->bytes),
                   GRPC_SLICE_LENGTH(evs[i]->bytes)) != 1)
            problem(f, "published event %llu is not in the log as published",
                    (unsigned long long)evs[i]->seq);
    }
    pthread_mutex_lock(&f->lock);
    uint64_t before = f->published_last;
    f->published_last = last;
    f->published_events += n;
    if (f->batches < sizeof f->batch_sizes / sizeof f->batch_sizes[0])
        f->batch_sizes[f->batches] = n;
    f->batches++;
    f->tick_at_publish = f->ticks;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    /* Batches come in order, each right after the one before. */
    if (first != before + 1)
        problem(f, "batch %llu..%llu published after %llu", (unsigned long long)first,
                (unsigned long long)last, (unsigned long long)before);
}

static uint64_t emit_text(ao_proc_t *p, const char *wf, const char *text);
static void tick_durable(ao_proc_t *p, void *ud);
static void tick_commit(ao_proc_t *p, void *ud);

typedef struct tick_item {
    fx_t *f;
    uint64_t seq;
    int left; /* callbacks still to run */
} tick_item_t;

static int on_tick(void *ud, ao_proc_t *p)
{
    fx_t *f = ud;
    pthread_mutex_lock(&f->lock);
    f->ticks++;
    int busy = f->busy_ticks > 0;
    if (busy) f->busy_ticks--;
    int more = f->busy_ticks > 0;
    pthread_mutex_unlock(&f->lock);
    if (busy) {
        /* Every 50th also has a commit callback (which makes the processor
         * write what is pending first). */
        tick_item_t *it = calloc(1, sizeof *it);
        it->f = f;
        it->seq = emit_text(p, "wf", "from-a-busy-tick");
        it->left = it->seq % 50 ? 1 : 2;
        ao_proc_after_durable(p, tick_durable, it);
        if (it->left == 2) ao_proc_after_commit(p, tick_commit, it);
    }
    return more;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->dir = ao_test_mkdtemp("test-processor");
    ao_log_options_t o = {.dir = f->dir, .sync = 1};
    ao_status_t st;
    if (ao_log_open(&o, &f->log, &st)) {
        fprintf(stderr, "%s\n", st.msg);
        return -1;
    }
    *state = f;
    return 0;
}

/* Creates the processor (not started) with max_batch_events. */
static void make_proc(fx_t *f, unsigned max_batch)
{
    ao_proc_options_t po = {.log = f->log,
                            .max_batch_events = max_batch,
                            .publish = on_publish,
                            .publish_ud = f,
                            .tick = on_tick,
                            .tick_ud = f};
    f->p = ao_proc_create(&po);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->p) {
        ao_proc_stop(f->p);
        ao_proc_destroy(f->p);
    }
    ao_log_close(f->log);
    ao_test_rm_rf(f->dir);
    free(f->dir);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
    return 0;
}

/* Emits a CUSTOM event of workflow wf carrying text. */
static uint64_t emit_text(ao_proc_t *p, const char *wf, const char *text)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__CustomPayload c = AGENTOS__V1__CUSTOM_PAYLOAD__INIT;
    c.name = "test";
    c.data = (char *)text;
    ev.workflow_id = (char *)wf;
    ev.tenant = "t";
    ev.type = AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_CUSTOM;
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_CUSTOM;
    ev.custom = &c;
    return ao_proc_emit(p, &ev);
}

/* The text of a stored event, decoded (for checks after the fact). */
typedef struct texts {
    char (*v)[32];
    uint64_t *seqs;
    size_t n, cap;
    int bad;
} texts_t;

static int collect_text(void *ud, uint64_t seq, const void *data, size_t len)
{
    texts_t *t = ud;
    Agentos__V1__Event *ev = agentos__v1__event__unpack(NULL, len, data);
    if (!ev || ev->seq != seq || ev->payload_case != AGENTOS__V1__EVENT__PAYLOAD_CUSTOM ||
        t->n == t->cap) {
        t->bad = 1;
        if (ev) agentos__v1__event__free_unpacked(ev, NULL);
        return 1;
    }
    snprintf(t->v[t->n], 32, "%s", ev->custom->data);
    t->seqs[t->n++] = seq;
    agentos__v1__event__free_unpacked(ev, NULL);
    return 0;
}

/* ---- sequence numbers --------------------------------------------------- */

#define THREADS 4
#define PER_THREAD 300

typedef struct order_ctx {
    fx_t *f;
    pthread_mutex_t ticket_lock;
    size_t next_ticket;
    uint64_t seq_of[THREADS * PER_THREAD];
} order_ctx_t;

typedef struct order_item {
    order_ctx_t *c;
    size_t ticket;
} order_item_t;

static void order_work(ao_proc_t *p, void *ud)
{
    order_item_t *it = ud;
    char text[32];
    snprintf(text, sizeof text, "%zu", it->ticket);
    it->c->seq_of[it->ticket] = emit_text(p, "wf", text);
    free(it);
}

static void *order_poster(void *arg)
{
    order_ctx_t *c = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        order_item_t *it = malloc(sizeof *it);
        it->c = c;
        /* The ticket is taken with the post under one lock: ticket order is
         * posting order, across threads. */
        pthread_mutex_lock(&c->ticket_lock);
        it->ticket = c->next_ticket++;
        ao_proc_post(c->f->p, order_work, free, it);
        pthread_mutex_unlock(&c->ticket_lock);
    }
    return NULL;
}

static void test_contiguous_seqs_in_posting_order(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    order_ctx_t *c = calloc(1, sizeof *c);
    c->f = f;
    pthread_mutex_init(&c->ticket_lock, NULL);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, order_poster, c), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    const size_t n = THREADS * PER_THREAD;
    wait_count(f, &f->published_events, n, "every event to be published");
    assert_no_problem(f);
    ao_proc_stop(f->p);
    /* Ticket k (the k-th post) got seq k + 1: from 1, no gaps, in order. */
    for (size_t k = 0; k < n; k++)
        if (c->seq_of[k] != k + 1)
            fail_msg("post %zu got seq %llu", k, (unsigned long long)c->seq_of[k]);
    assert_int_equal(ao_log_last_seq(f->log), n);
    assert_int_equal(ao_proc_durable_seq(f->p), n);
    assert_int_equal(ao_proc_next_seq(f->p), n + 1);
    /* And so they are in the log. */
    texts_t t = {calloc(n, 32), calloc(n, sizeof(uint64_t)), 0, n, 0};
    ao_status_t st;
    assert_int_equal(ao_log_read_range(f->log, 1, UINT64_MAX, 0, collect_text, &t, &st), 0);
    assert_false(t.bad);
    assert_int_equal(t.n, n);
    for (size_t k = 0; k < n; k++) {
        char want[32];
        snprintf(want, sizeof want, "%zu", k);
        assert_int_equal(t.seqs[k], k + 1);
        assert_string_equal(t.v[k], want);
    }
    /* A processor over the same log continues the numbering. */
    ao_proc_destroy(f->p);
    f->p = NULL;
    make_proc(f, 0);
    assert_int_equal(ao_proc_next_seq(f->p), n + 1);
    free(t.v);
    free(t.seqs);
    pthread_mutex_destroy(&c->ticket_lock);
    free(c);
}

/* ---- nothing out before it is durable -------------------------------------- */

typedef struct dur_item {
    fx_t *f;
    int emits;
    uint64_t seq;
} dur_item_t;

static void dur_after(ao_proc_t *p, void *ud)
{
    dur_item_t *it = ud;
    fx_t *f = it->f;
    if (it->emits) {
        if (ao_log_last_seq(f->log) < it->seq || in_log(f->log, it->seq, NULL, 0) != 1)
            problem(f, "the after-commit callback of event %llu ran before it was in the log",
                    (unsigned long long)it->seq);
        if (ao_proc_durable_seq(p) < it->seq) problem(f, "after-commit before durable_seq moved");
        pthread_mutex_lock(&f->lock);
        uint64_t pub = f->published_last;
        pthread_mutex_unlock(&f->lock);
        if (pub < it->seq)
            problem(f, "after-commit of event %llu ran before its batch was published",
                    (unsigned long long)it->seq);
    }
    bump(f, &f->afters);
    free(it);
}

static void dur_work(ao_proc_t *p, void *ud)
{
    dur_item_t *it = ud;
    fx_t *f = it->f;
    if (it->emits) {
        it->seq = emit_text(p, "wf", "x");
        /* Emitted is not written: the batch is still the processor's. */
        if (ao_log_last_seq(f->log) >= it->seq || in_log(f->log, it->seq, NULL, 0) != 0)
            problem(f, "event %llu was in the log before the commit", (unsigned long long)it->seq);
        if (ao_proc_durable_seq(p) >= it->seq) problem(f, "durable_seq moved before the commit");
    }
    ao_proc_after_commit(p, dur_after, it);
    bump(f, &f->ran);
}

static void test_nothing_out_before_durable(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    const size_t n = 300;
    for (size_t i = 0; i < n; i++) {
        dur_item_t *it = calloc(1, sizeof *it);
        it->f = f;
        /* Every fifth emits nothing: its callback still runs (after the
         * loop it was posted in). */
        it->emits = i % 5 != 4;
        ao_proc_post(f->p, dur_work, free, it);
    }
    wait_count(f, &f->afters, n, "every after-commit callback");
    assert_no_problem(f);
    assert_int_equal(ao_log_last_seq(f->log), n - n / 5);
}

/* ---- after-commit callbacks that emit ------------------------------------------ */

typedef struct chain {
    fx_t *f;
    uint64_t s1, s2;
    size_t batch_of_s1, batch_of_s2;
    int done;
} chain_t;

static size_t current_batches(fx_t *f)
{
    pthread_mutex_lock(&f->lock);
    size_t b = f->batches;
    pthread_mutex_unlock(&f->lock);
    return b;
}

static void chain_a2(ao_proc_t *p, void *ud)
{
    (void)p;
    chain_t *c = ud;
    if (ao_log_last_seq(c->f->log) < c->s2 || in_log(c->f->log, c->s2, NULL, 0) != 1)
        problem(c->f, "the second callback ran before event %llu was durable",
                (unsigned long long)c->s2);
    c->batch_of_s2 = current_batches(c->f);
    c->done = 1;
    bump(c->f, &c->f->afters);
}

static void chain_a1(ao_proc_t *p, void *ud)
{
    chain_t *c = ud;
    if (ao_log_last_seq(c->f->log) < c->s1)
        problem(c->f, "the first callback ran before its event was durable");
    c->batch_of_s1 = current_batches(c->f);
    c->s2 = emit_text(p, "wf", "from-after-commit");
    if (ao_log_last_seq(c->f->log) >= c->s2)
        problem(c->f, "an event emitted by a callback was written at once");
    ao_proc_after_commit(p, chain_a2, c);
}

static void chain_work(ao_proc_t *p, void *ud)
{
    chain_t *c = ud;
    c->s1 = emit_text(p, "wf", "from-work");
    ao_proc_after_commit(p, chain_a1, c);
}

static void test_after_commit_emits_get_own_commit(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    chain_t c = {f, 0, 0, 0, 0, 0};
    ao_proc_post(f->p, chain_work, NULL, &c);
    wait_count(f, &f->afters, 1, "the second callback");
    assert_no_problem(f);
    assert_int_equal(c.s1, 1);
    assert_int_equal(c.s2, 2);
    /* Two commits: the work's event, then the callback's. */
    assert_int_equal(c.batch_of_s1, 1);
    assert_int_equal(c.batch_of_s2, 2);
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->batch_sizes[0], 1);
    assert_int_equal(f->batch_sizes[1], 1);
    pthread_mutex_unlock(&f->lock);
}

/* Callbacks of one commit, the first of which emits: the ones after it must
 * not see its event before it is durable (they wait for the next commit),
 * and they still run in order, ahead of callbacks registered later. */
typedef struct behind {
    fx_t *f;
    uint64_t emitted;
    int order[4];
    int n;
} behind_t;

static void behind_later(ao_proc_t *p, void *ud)
{
    (void)p;
    behind_t *b = ud;
    b->order[b->n++] = 3;
    bump(b->f, &b->f->afters);
}

static void behind_second(ao_proc_t *p, void *ud)
{
    (void)p;
    behind_t *b = ud;
    if (ao_log_last_seq(b->f->log) < b->emitted)
        problem(b->f, "a callback behind one that emitted ran before event %llu was durable",
                (unsigned long long)b->emitted);
    b->order[b->n++] = 2;
    bump(b->f, &b->f->afters);
}

static void behind_first(ao_proc_t *p, void *ud)
{
    behind_t *b = ud;
    b->order[b->n++] = 1;
    b->emitted = emit_text(p, "wf", "from-first-callback");
    ao_proc_after_commit(p, behind_later, b);
    bump(b->f, &b->f->afters);
}

static void behind_work(ao_proc_t *p, void *ud)
{
    emit_text(p, "wf", "from-work");
    ao_proc_after_commit(p, behind_first, ud);
    ao_proc_after_commit(p, behind_second, ud);
}

static void test_callbacks_behind_an_emitting_one_wait(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    behind_t b = {f, 0, {0}, 0};
    ao_proc_post(f->p, behind_work, NULL, &b);
    wait_count(f, &f->afters, 3, "the three callbacks");
    assert_no_problem(f);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.order[0], 1);
    assert_int_equal(b.order[1], 2);
    assert_int_equal(b.order[2], 3);
}

/* ---- batch size -------------------------------------------------------------- */

static void one_event(ao_proc_t *p, void *ud)
{
    fx_t *f = ud;
    emit_text(p, "wf", "b");
    f->ran++; /* processor thread only until stop */
}

static void check_batches(fx_t *f, unsigned max_batch, size_t n)
{
    make_proc(f, max_batch);
    /* Posted before the start: the first loop finds all of them at once,
     * so batches are as large as the limit allows. */
    for (size_t i = 0; i < n; i++)
        ao_proc_post(f->p, one_event, NULL, f);
    ao_proc_start(f->p);
    wait_count(f, &f->published_events, n, "every event");
    ao_proc_stop(f->p);
    assert_no_problem(f);
    size_t limit = max_batch ? max_batch : 4096;
    size_t full = n / limit, rest = n % limit;
    pthread_mutex_lock(&f->lock);
    assert_int_equal(f->batches, full + (rest != 0));
    for (size_t i = 0; i < full; i++)
        assert_int_equal(f->batch_sizes[i], limit);
    if (rest) assert_int_equal(f->batch_sizes[full], rest);
    /* The tick (the scheduler) ran before each commit. */
    assert_true(f->ticks >= f->batches);
    assert_true(f->tick_at_publish >= 1);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(f->ran, n);
    assert_int_equal(ao_log_last_seq(f->log), n);
}

static void test_max_batch_events_splits(void **state)
{
    check_batches(*state, 10, 95);
}

static void test_default_batch_limit(void **state)
{
    check_batches(*state, 0, 5000);
}

/* ---- stop ------------------------------------------------------------------------ */

typedef struct stop_item {
    fx_t *f;
    int chain; /* >0: posts another item with chain - 1 */
    pthread_t poster;
} stop_item_t;

static void stop_after(ao_proc_t *p, void *ud)
{
    (void)p;
    fx_t *f = ud;
    bump(f, &f->afters);
}

static void stop_drop(void *ud)
{
    stop_item_t *it = ud;
    if (!pthread_equal(pthread_self(), it->poster)) problem(it->f, "drop ran on another thread");
    bump(it->f, &it->f->drops);
    free(it);
}

static void stop_work(ao_proc_t *p, void *ud)
{
    stop_item_t *it = ud;
    emit_text(p, "wf", "s");
    ao_proc_after_commit(p, stop_after, it->f);
    if (it->chain > 0) {
        stop_item_t *next = calloc(1, sizeof *next);
        next->f = it->f;
        next->chain = it->chain - 1;
        next->poster = pthread_self();
        ao_proc_post(p, stop_work, stop_drop, next);
    }
    bump(it->f, &it->f->ran);
    free(it);
}

static void post_stop_item(fx_t *f, int chain)
{
    stop_item_t *it = calloc(1, sizeof *it);
    it->f = f;
    it->chain = chain;
    it->poster = pthread_self();
    ao_proc_post(f->p, stop_work, stop_drop, it);
}

static void test_stop_runs_posted_drops_later(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    const size_t n = 200;
    /* One item posts a chain of 3 more as it runs: posted before the stop
     * completes, they run too. */
    post_stop_item(f, 3);
    for (size_t i = 1; i < n; i++)
        post_stop_item(f, 0);
    ao_proc_stop(f->p);
    /* Everything posted ran, was committed and its callbacks ran, before
     * stop returned. */
    pthread_mutex_lock(&f->lock);
    size_t ran = f->ran, afters = f->afters, drops = f->drops, published = f->published_events;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(ran, n + 3);
    assert_int_equal(afters, n + 3);
    assert_int_equal(drops, 0);
    assert_int_equal(published, n + 3);
    assert_int_equal(ao_log_last_seq(f->log), n + 3);
    /* Posted after: dropped at once, on the posting thread, never run. */
    for (int i = 0; i < 5; i++)
        post_stop_item(f, 0);
    pthread_mutex_lock(&f->lock);
    ran = f->ran;
    drops = f->drops;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(drops, 5);
    assert_int_equal(ran, n + 3);
    assert_int_equal(ao_log_last_seq(f->log), n + 3);
    assert_no_problem(f);
}

static void test_stop_before_start_drops_everything(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    for (int i = 0; i < 3; i++)
        post_stop_item(f, 0);
    ao_proc_stop(f->p);
    post_stop_item(f, 0);
    assert_int_equal(f->drops, 1);
    /* What was queued is dropped when the processor is destroyed. */
    ao_proc_destroy(f->p);
    f->p = NULL;
    assert_int_equal(f->drops, 4);
    assert_int_equal(f->ran, 0);
    assert_int_equal(ao_log_last_seq(f->log), 0);
    assert_no_problem(f);
}

/* ---- snapshots and checkpoints with their events ------------------------------- */

typedef struct snap_item {
    fx_t *f;
    uint64_t seq;
    size_t pad;
} snap_item_t;

/* The snapshot and checkpoint messages: opaque bytes to the log; a
 * Checkpoint message for both, with seq set and a note as padding. */
static void put_both(ao_proc_t *p, const char *wf, uint64_t seq, size_t pad)
{
    Agentos__V1__Checkpoint c = AGENTOS__V1__CHECKPOINT__INIT;
    char *note = malloc(pad + 1);
    memset(note, 'n', pad);
    note[pad] = '\0';
    c.workflow_id = (char *)wf;
    c.seq = seq;
    c.note = note;
    size_t len = protobuf_c_message_get_packed_size(&c.base);
    uint8_t *bytes = malloc(len ? len : 1);
    protobuf_c_message_pack(&c.base, bytes);
    ao_proc_put_snapshot(p, wf, seq, bytes, len);
    ao_proc_put_checkpoint(p, wf, seq, bytes, len);
    free(bytes);
    free(note);
}

static uint64_t decoded_seq(const void *data, size_t len)
{
    Agentos__V1__Checkpoint *c = agentos__v1__checkpoint__unpack(NULL, len, data);
    if (!c) return 0;
    uint64_t s = c->seq;
    agentos__v1__checkpoint__free_unpacked(c, NULL);
    return s;
}

static void snap_after(ao_proc_t *p, void *ud)
{
    (void)p;
    snap_item_t *it = ud;
    fx_t *f = it->f;
    ao_status_t st;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    /* Committed with its event: both are there (the snapshot may already
     * be a later one of the same batch). */
    if (ao_log_get_snapshot(f->log, "wf", &seq, &data, &len, &st))
        problem(f, "no snapshot after commit: %s", st.msg);
    else {
        if (seq < it->seq || decoded_seq(data, len) != seq)
            problem(f, "snapshot %llu for event %llu", (unsigned long long)seq,
                    (unsigned long long)it->seq);
        free(data);
    }
    if (ao_log_get_checkpoint(f->log, "wf", it->seq, &seq, &data, &len, &st))
        problem(f, "checkpoint %llu missing after commit: %s", (unsigned long long)it->seq, st.msg);
    else {
        if (decoded_seq(data, len) != it->seq)
            problem(f, "checkpoint %llu holds something else", (unsigned long long)it->seq);
        free(data);
    }
    bump(f, &f->afters);
    free(it);
}

static void snap_work(ao_proc_t *p, void *ud)
{
    snap_item_t *it = ud;
    fx_t *f = it->f;
    it->seq = emit_text(p, "wf", "with-snapshot");
    put_both(p, "wf", it->seq, it->pad);
    /* Put is not written: they go with the batch. */
    ao_status_t st;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    int rc = ao_log_get_snapshot(f->log, "wf", &seq, &data, &len, &st);
    if (rc == 0) {
        free(data);
        if (seq >= it->seq)
            problem(f, "snapshot %llu in the log before its commit", (unsigned long long)seq);
    }
    if (ao_log_get_checkpoint(f->log, "wf", it->seq, &seq, &data, &len, &st) != AO_ENOTFOUND)
        problem(f, "checkpoint %llu in the log before its commit", (unsigned long long)it->seq);
    ao_proc_after_commit(p, snap_after, it);
}

static void test_snapshot_checkpoint_with_events(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    const size_t n = 40;
    for (size_t i = 0; i < n; i++) {
        snap_item_t *it = calloc(1, sizeof *it);
        it->f = f;
        it->pad = 100 + i * 50;
        ao_proc_post(f->p, snap_work, free, it);
    }
    wait_count(f, &f->afters, n, "every commit");
    assert_no_problem(f);
    /* The snapshot is the last one put. */
    ao_status_t st;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(ao_log_get_snapshot(f->log, "wf", &seq, &data, &len, &st), 0);
    assert_int_equal(seq, n);
    free(data);
}

/* Callbacks behind one that puts a snapshot still run at once (a put
 * changes no state): ten workflows finishing in one batch, each with a
 * reply and a snapshot callback, cost one write more, not ten. */
typedef struct many_snaps {
    fx_t *f;
    uint64_t seq;
    size_t replies_late; /* replies run after more than the event's batch */
} many_snaps_t;

static void many_reply(ao_proc_t *p, void *ud)
{
    many_snaps_t *m = ud;
    if (ao_proc_batches(p) != 1) m->replies_late++;
    bump(m->f, &m->f->ran);
}

static void many_snap(ao_proc_t *p, void *ud)
{
    many_snaps_t *m = ud;
    put_both(p, "wf", m->seq, 32);
}

static void many_check(ao_proc_t *p, void *ud)
{
    many_snaps_t *m = ud;
    if (ao_proc_batches(p) != 2)
        problem(m->f, "%llu batches for one event and ten snapshots, want 2",
                (unsigned long long)ao_proc_batches(p));
    bump(m->f, &m->f->afters);
}

static void many_last(ao_proc_t *p, void *ud);

static void many_work(ao_proc_t *p, void *ud)
{
    many_snaps_t *m = ud;
    m->seq = emit_text(p, "wf", "ten workflows end here");
    for (int k = 0; k < 10; k++) {
        ao_proc_after_commit(p, many_reply, m);
        ao_proc_after_commit(p, many_snap, m);
    }
    ao_proc_after_commit(p, many_last, m);
}

static void many_last(ao_proc_t *p, void *ud)
{
    /* Runs behind the snapshots in the same pass; what it registers is
     * added after their puts and waits for their write. */
    ao_proc_after_commit(p, many_check, ud);
}

static void test_puts_do_not_hold_up_callbacks(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    many_snaps_t m = {f, 0, 0};
    ao_proc_post(f->p, many_work, NULL, &m);
    wait_count(f, &f->afters, 1, "the check after the snapshots' write");
    assert_no_problem(f);
    ao_proc_stop(f->p);
    assert_int_equal(f->ran, 10);
    assert_int_equal(m.replies_late, 0);
}

/* A tick with more to do keeps the processor busy: its batches go to the
 * writer while it fills the next. A durable callback runs only once its
 * event is in the log; a commit callback only when no write is pending
 * (the state it could show is the log's). */
static void tick_item_done(tick_item_t *it)
{
    if (--it->left == 0) free(it);
}

static void tick_durable(ao_proc_t *p, void *ud)
{
    (void)p;
    tick_item_t *it = ud;
    fx_t *f = it->f;
    if (ao_log_last_seq(f->log) < it->seq)
        problem(f, "a durable callback ran before event %llu was in the log", (unsigned long long)it->seq);
    tick_item_done(it);
    bump(f, &f->ran);
}

static void tick_commit(ao_proc_t *p, void *ud)
{
    tick_item_t *it = ud;
    fx_t *f = it->f;
    if (ao_log_last_seq(f->log) != ao_proc_next_seq(p) - 1)
        problem(f, "a commit callback ran with events %llu..%llu not yet in the log",
                (unsigned long long)ao_log_last_seq(f->log) + 1, (unsigned long long)ao_proc_next_seq(p) - 1);
    tick_item_done(it);
    bump(f, &f->afters);
}

static void wake_work(ao_proc_t *p, void *ud)
{
    (void)p;
    (void)ud;
}

static void test_busy_tick_pipelines(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    const size_t n = 2000;
    f->busy_ticks = n;
    ao_proc_start(f->p);
    ao_proc_post(f->p, wake_work, NULL, NULL);
    wait_count(f, &f->ran, n, "every durable callback");
    wait_count(f, &f->afters, n / 50, "every commit callback");
    assert_no_problem(f);
    pthread_mutex_lock(&f->lock);
    size_t events = f->published_events;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(events, n);
    assert_int_equal(ao_log_last_seq(f->log), n);
    ao_proc_stop(f->p);
}

/* A snapshot put after its events' commit, in a batch of its own (what
 * the engine does with a finished workflow's snapshot): written although
 * the batch holds no event, before the callbacks registered with it run,
 * and counted as a batch. */
static void late_snap_check(ao_proc_t *p, void *ud)
{
    snap_item_t *it = ud;
    fx_t *f = it->f;
    ao_status_t st;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    if (ao_log_get_snapshot(f->log, "wf", &seq, &data, &len, &st))
        problem(f, "the snapshot put alone was not written: %s", st.msg);
    else {
        if (seq != it->seq || decoded_seq(data, len) != it->seq)
            problem(f, "snapshot %llu, want %llu", (unsigned long long)seq, (unsigned long long)it->seq);
        free(data);
    }
    if (ao_proc_batches(p) != 2)
        problem(f, "%llu batches committed, want 2 (the event's, the snapshot's)",
                (unsigned long long)ao_proc_batches(p));
    bump(f, &f->afters);
}

static void late_snap_put(ao_proc_t *p, void *ud)
{
    snap_item_t *it = ud;
    if (ao_proc_batches(p) != 1) problem(it->f, "the event's batch is not committed");
    put_both(p, "wf", it->seq, 64);
    ao_proc_after_commit(p, late_snap_check, it);
}

static void late_snap_work(ao_proc_t *p, void *ud)
{
    snap_item_t *it = ud;
    it->seq = emit_text(p, "wf", "the workflow's last event");
    ao_proc_after_commit(p, late_snap_put, it);
}

static void test_snapshot_alone_in_a_batch(void **state)
{
    fx_t *f = *state;
    make_proc(f, 0);
    ao_proc_start(f->p);
    snap_item_t it = {f, 0, 0};
    ao_proc_post(f->p, late_snap_work, NULL, &it);
    wait_count(f, &f->afters, 1, "the snapshot's own commit");
    assert_no_problem(f);
    /* Subscribers saw the one event, nothing for the snapshot's batch. */
    pthread_mutex_lock(&f->lock);
    size_t events = f->published_events;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(events, 1);
    ao_proc_stop(f->p);
}

/* kill -9 in the middle of writing: a child process (this binary, run as
 * `--crash-child DIR`) writes batches of events with a large snapshot and
 * checkpoint at the batch's last event, and reports each batch once its
 * after-commit callback runs. After the kill, the log must hold every
 * reported batch, and its snapshot and latest checkpoint must be at its
 * last event: none written without the other. */
#define CRASH_EVENTS 50
#define CRASH_PAD (48 * 1024)

static void crash_after(ao_proc_t *p, void *ud);

static void crash_work(ao_proc_t *p, void *ud)
{
    uint64_t last = 0;
    for (int i = 0; i < CRASH_EVENTS; i++)
        last = emit_text(p, "wf", "crash-test-event-with-some-bytes");
    put_both(p, "wf", last, CRASH_PAD);
    ao_proc_after_commit(p, crash_after, ud);
}

static void crash_after(ao_proc_t *p, void *ud)
{
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)ao_proc_durable_seq(p));
    if (write(1, line, (size_t)n) != n) _exit(3);
    ao_proc_post(p, crash_work, NULL, ud);
}

static int crash_child(const char *dir)
{
    ao_log_options_t o = {.dir = dir, .sync = 1};
    ao_log_t *log;
    ao_status_t st;
    if (ao_log_open(&o, &log, &st)) {
        fprintf(stderr, "%s\n", st.msg);
        return 2;
    }
    ao_proc_options_t po = {.log = log};
    ao_proc_t *p = ao_proc_create(&po);
    ao_proc_start(p);
    ao_proc_post(p, crash_work, NULL, NULL);
    for (;;)
        pause(); /* until killed */
}

/* Reads reported seqs from fd until `lines` more have come; returns the
 * last. Fails past the deadline. */
static uint64_t read_reports(int fd, int lines)
{
    char buf[4096];
    size_t have = 0;
    uint64_t last = 0;
    int got = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (got < lines) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int left_ms = WAIT_S * 1000 -
                      (int)((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left_ms <= 0)
            fail_msg("the crash child reported %d of %d batches in %d s", got, lines, WAIT_S);
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, left_ms) <= 0) continue;
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r <= 0) fail_msg("the crash child exited early");
        have += (size_t)r;
        buf[have] = '\0';
        char *nl, *s = buf;
        while ((nl = strchr(s, '\n'))) {
            *nl = '\0';
            last = strtoull(s, NULL, 10);
            got++;
            s = nl + 1;
        }
        have = strlen(s);
        memmove(buf, s, have + 1);
    }
    return last;
}

static void test_snapshot_atomic_across_kill9(void **state)
{
    fx_t *f = *state;
    /* The child opens the directory itself. */
    ao_log_close(f->log);
    f->log = NULL;
    uint64_t acked = 0;
    for (int round = 0; round < 5; round++) {
        int out = -1;
        pid_t pid = ao_test_spawn_self("test_processor", "--crash-child", f->dir, &out);
        assert_true(pid > 0);
        /* A varying number of batches per round, then kill -9 whatever
         * it is doing. */
        uint64_t last = read_reports(out, 3 + round * 4);
        assert_true(last > acked);
        acked = last;
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(out);

        ao_log_options_t o = {.dir = f->dir, .sync = 1};
        ao_status_t st;
        ao_log_t *log;
        if (ao_log_open(&o, &log, &st)) fail_msg("reopen after kill -9: %s", st.msg);
        uint64_t l = ao_log_last_seq(log);
        /* No acknowledged batch lost, and only whole batches. */
        if (l < acked || l % CRASH_EVENTS)
            fail_msg("round %d: last_seq %llu after acknowledging %llu", round,
                     (unsigned long long)l, (unsigned long long)acked);
        uint64_t seq;
        void *data;
        size_t len;
        assert_int_equal(ao_log_get_snapshot(log, "wf", &seq, &data, &len, &st), 0);
        if (seq != l || decoded_seq(data, len) != l)
            fail_msg("round %d: snapshot at %llu, last event %llu", round, (unsigned long long)seq,
                     (unsigned long long)l);
        free(data);
        assert_int_equal(ao_log_get_checkpoint(log, "wf", 0, &seq, &data, &len, &st), 0);
        if (seq != l)
            fail_msg("round %d: latest checkpoint %llu, last event %llu", round,
                     (unsigned long long)seq, (unsigned long long)l);
        free(data);
        texts_t t = {calloc(l, 32), calloc(l, sizeof(uint64_t)), 0, l, 0};
        assert_int_equal(ao_log_read_range(log, 1, UINT64_MAX, 0, collect_text, &t, &st), 0);
        assert_false(t.bad);
        assert_int_equal(t.n, l);
        free(t.v);
        free(t.seqs);
        ao_log_close(log);
        acked = l;
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--crash-child")) return crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_contiguous_seqs_in_posting_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_out_before_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_commit_emits_get_own_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_behind_an_emitting_one_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_batch_events_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_batch_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_runs_posted_drops_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_before_start_drops_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_checkpoint_with_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_atomic_across_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_alone_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_tick_pipelines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_puts_do_not_hold_up_callbacks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
