/*
 * Unit tests for the engine's final checkpoint (server/exec/engine.c), in
 * process over a real RocksDB log (WAL synced) and builtin agents:
 *
 *   the result is let out before the final checkpoint is taken (its
 *   packing and write do not hold the result up), and the checkpoint is
 *   in the log before any later commit callback runs;
 *   a process that stops between the two (here: exits in the callback that
 *   gets the result) leaves a log whose next start takes the missing final
 *   checkpoint.
 *
 *   a request_id holds the spec it was submitted with, also across a
 *   restart: the same spec is the same workflow, another is refused;
 *   a tenant's workflows page newest first, each once, also when many
 *   were created in one millisecond;
 *   automatic checkpoints come at most once per four events a task: none
 *   in a chain whose tasks run once, several in a workflow that retries;
 *   finished workflows past storage.maxFinishedInMemory keep only their
 *   summary and are loaded whole, as they were, when looked up;
 *
 *   the events in the log are the bytes protobuf-c packs for them, also
 *   a TASK_SUCCEEDED whose reply was packed on the agent's thread.
 *
 * Engine callbacks run on the processor thread, where cmocka's assertions
 * must not be used: they record what they saw, and the test asserts on it.
 * Every wait is on a condition variable with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "engine.h"
#include "engine_stack.h"
#include "eventlog.h"
#include "log.h"
#include "metrics.h"
#include "pbjson.h"
#include "pool.h"
#include "testdir.h"
#include "testgate.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_S 60

typedef struct rig {
    char *dir;
    Agentos__V1__ServerConfig *cfg;
    ao_engine_stack_t s;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;    /* the watch fired */
    int checked; /* the after-commit check ran */
    char wf_id[64];
    /* Seen when the result was let out. */
    int result_durable;
    int final_at_result;
    /* Seen by a commit callback after that. */
    int final_after;
    int exit_at_result; /* the child: _exit(0) when the result is let out */
    size_t n_tasks;     /* 0: 3 tasks on noop; else on noop and flaky in turn */
} rig_t;

static const char *const plain_config =
    "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\"}],"
    "\"storage\":{\"durability\":\"DURABILITY_SYNC\"}}";

static void rig_open_with(rig_t *r, const char *dir, const char *json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, json, strlen(json), &m, &st))
        fail_msg("%s", st.msg);
    r->cfg = (Agentos__V1__ServerConfig *)m;
    ao_config_defaults(r->cfg);
    if (ao_engine_stack_open(r->cfg, dir, 1, 1, &r->s, &st)) fail_msg("%s", st.msg);
    ao_engine_start(r->s.engine);
}

static void rig_open(rig_t *r, const char *dir)
{
    rig_open_with(r, dir, plain_config);
}

static void rig_close(rig_t *r)
{
    ao_engine_stack_close(&r->s, 1);
    ao_config_free(r->cfg);
}

/* Whether the log holds a checkpoint of the workflow with reason "final". */
static int has_final_ckpt(void *ud, uint64_t seq, const void *data, size_t len)
{
    (void)seq;
    int *found = ud;
    Agentos__V1__Checkpoint *c = agentos__v1__checkpoint__unpack(NULL, len, data);
    if (c && !strcmp(c->reason, "final")) *found = 1;
    if (c) agentos__v1__checkpoint__free_unpacked(c, NULL);
    return 0;
}

static int final_in_log(ao_log_t *log, const char *wf_id)
{
    int found = 0;
    ao_status_t st;
    if (ao_log_list_checkpoints(log, wf_id, has_final_ckpt, &found, &st)) return -1;
    return found;
}

static void signal_rig(rig_t *r, int *flag)
{
    pthread_mutex_lock(&r->lock);
    *flag = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static void wait_flag(rig_t *r, const int *flag, const char *what)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_S;
    pthread_mutex_lock(&r->lock);
    while (!*flag)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &until)) {
            pthread_mutex_unlock(&r->lock);
            fail_msg("no %s within %d s", what, WAIT_S);
        }
    pthread_mutex_unlock(&r->lock);
}

static void on_done(void *ud, ao_wf_t *wf)
{
    rig_t *r = ud;
    if (r->exit_at_result) _exit(wf->pb->status == AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_SUCCESS ? 0 : 3);
    r->result_durable = ao_log_last_seq(r->s.log) >= wf->pb->last_seq;
    r->final_at_result = final_in_log(r->s.log, wf->pb->id);
    signal_rig(r, &r->done);
}

static void submit_work(ao_proc_t *p, void *ud)
{
    (void)p;
    rig_t *r = ud;
    Agentos__V1__WorkflowSpec s = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    enum { MAX_TASKS = 64 };
    Agentos__V1__TaskSpec t[MAX_TASKS], *tp[MAX_TASKS];
    char ids[MAX_TASKS][8];
    size_t n = r->n_tasks ? r->n_tasks : 3;
    for (size_t i = 0; i < n && i < MAX_TASKS; i++) {
        agentos__v1__task_spec__init(&t[i]);
        snprintf(ids[i], sizeof ids[i], "%c%zu", 'a' + (char)(i % 26), i);
        t[i].id = ids[i];
        t[i].agent = r->n_tasks && i % 2 ? "flaky" : "noop";
        tp[i] = &t[i];
    }
    s.tasks = tp;
    s.n_tasks = n < MAX_TASKS ? n : MAX_TASKS;
    ao_wf_t *wf;
    uint64_t seq;
    int dedup;
    ao_status_t st;
    if (ao_engine_submit(r->s.engine, "t", &s, "", &wf, &seq, &dedup, &st)) {
        fprintf(stderr, "submit: %s\n", st.msg);
        _exit(4);
    }
    snprintf(r->wf_id, sizeof r->wf_id, "%s", wf->pb->id);
    if (r->exit_at_result) {
        /* The parent learns the id before the child exits. */
        if (write(1, r->wf_id, strlen(r->wf_id)) < 0 || write(1, "\n", 1) < 0) _exit(5);
    }
    ao_engine_watch(r->s.engine, wf, on_done, r);
}

static void check_after(ao_proc_t *p, void *ud)
{
    (void)p;
    rig_t *r = ud;
    r->final_after = final_in_log(r->s.log, r->wf_id);
    signal_rig(r, &r->checked);
}

static void check_work(ao_proc_t *p, void *ud)
{
    ao_proc_after_commit(p, check_after, ud);
}

static int setup(void **state)
{
    rig_t *r = calloc(1, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->dir = ao_test_mkdtemp("test-engine");
    *state = r;
    ao_log_configure("warn", "text");
    return 0;
}

static int teardown(void **state)
{
    rig_t *r = *state;
    ao_test_rm_rf(r->dir);
    free(r->dir);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
    return 0;
}

static void test_result_before_final_checkpoint(void **state)
{
    rig_t *r = *state;
    rig_open(r, r->dir);
    ao_proc_post(ao_engine_proc(r->s.engine), submit_work, NULL, r);
    wait_flag(r, &r->done, "result");
    assert_true(r->result_durable);
    /* Let out before its final checkpoint was taken... */
    assert_int_equal(r->final_at_result, 0);
    /* ...which is in the log before any later commit callback runs. */
    ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
    wait_flag(r, &r->checked, "check after the result");
    assert_int_equal(r->final_after, 1);
    rig_close(r);
}

typedef struct repack {
    size_t n, succeeded, differ;
    uint64_t first_differ;
} repack_t;

static int repack_event(void *ud, uint64_t seq, const void *data, size_t len)
{
    repack_t *c = ud;
    c->n++;
    Agentos__V1__Event *ev = agentos__v1__event__unpack(NULL, len, data);
    if (!ev) {
        c->differ++;
        return 0;
    }
    size_t l2 = protobuf_c_message_get_packed_size(&ev->base);
    uint8_t *b = malloc(l2 + 1);
    protobuf_c_message_pack(&ev->base, b);
    if (l2 != len || memcmp(b, data, len)) {
        if (!c->differ++) c->first_differ = seq;
    }
    if (ev->payload_case == AGENTOS__V1__EVENT__PAYLOAD_TASK_SUCCEEDED && ev->task_succeeded->result &&
        *ev->task_succeeded->result->output && ev->task_succeeded->result->n_findings == 1 &&
        ev->task_succeeded->result->n_decisions == 1 && ev->task_succeeded->usage &&
        ev->task_succeeded->usage->total_tokens == 15)
        c->succeeded++;
    free(b);
    agentos__v1__event__free_unpacked(ev, NULL);
    return 0;
}

/* The log's events are what protobuf-c packs for them: unpacked and packed
 * again, each gives its own bytes. TASK_SUCCEEDED's reply is packed on the
 * thread that completed the call (the pool's, or the processor's for the
 * first call of a batch) and put around the payload's other fields. */
static void test_events_packed_as_protobuf_c_packs_them(void **state)
{
    rig_t *r = *state;
    r->n_tasks = 40;
    rig_open_with(r, r->dir,
                  "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{"
                  "\"output\":\"{{agent}} on {{task.id}}: \\u00e9t\\u00e9\",\"score\":0.4,\"confidence\":0.8,"
                  "\"promptTokens\":10,\"completionTokens\":5,\"findings\":[\"risk=low\"]}},"
                  "{\"name\":\"flaky\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"breaker\":{\"failureThreshold\":1000},"
                  "\"builtin\":{\"failFirst\":1,"
                  "\"promptTokens\":10,\"completionTokens\":5,\"findings\":[\"risk=high\"]}}],"
                  "\"limits\":{\"defaultMaxAttempts\":2},\"storage\":{\"durability\":\"DURABILITY_SYNC\"}}");
    ao_proc_post(ao_engine_proc(r->s.engine), submit_work, NULL, r);
    wait_flag(r, &r->done, "result");
    rig_close(r);
    ao_log_t *log;
    ao_status_t st;
    ao_log_options_t lo = {.dir = r->dir, .read_only = 1};
    assert_int_equal(ao_log_open(&lo, &log, &st), 0);
    repack_t c = {0};
    assert_int_equal(ao_log_read_range(log, 1, UINT64_MAX, 0, repack_event, &c, &st), 0);
    ao_log_close(log);
    if (c.differ) fail_msg("%zu of %zu events differ from protobuf-c's packing, the first at seq %llu", c.differ,
                           c.n, (unsigned long long)c.first_differ);
    /* 40 successes (20 after a failed first attempt), each with its reply. */
    assert_int_equal(c.succeeded, 40);
    assert_true(c.n > 100);
}

/* Prepared submissions: two with one request_id give one workflow (the
 * second, a duplicate, is freed by the submit), and one never submitted is
 * freed by its owner. ASan checks that nothing leaks. */
typedef struct dedup_run {
    rig_t *r;
    ao_submission_t *first, *second;
    char first_id[64], second_id[64];
    int dedup1, dedup2, rc1, rc2;
    int done;
} dedup_run_t;

static void dedup_work(ao_proc_t *p, void *ud)
{
    (void)p;
    dedup_run_t *d = ud;
    ao_wf_t *wf;
    uint64_t seq;
    ao_status_t st;
    d->rc1 = ao_engine_submit_prepared(d->r->s.engine, "t", d->first, &wf, &seq, &d->dedup1, &st);
    if (!d->rc1) snprintf(d->first_id, sizeof d->first_id, "%s", wf->pb->id);
    d->rc2 = ao_engine_submit_prepared(d->r->s.engine, "t", d->second, &wf, &seq, &d->dedup2, &st);
    if (!d->rc2) snprintf(d->second_id, sizeof d->second_id, "%s", wf->pb->id);
    signal_rig(d->r, &d->done);
}

static void test_prepared_submissions(void **state)
{
    rig_t *r = *state;
    rig_open(r, r->dir);
    Agentos__V1__WorkflowSpec s = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec t = AGENTOS__V1__TASK_SPEC__INIT, *tp = &t;
    t.id = "only";
    t.agent = "noop";
    s.tasks = &tp;
    s.n_tasks = 1;
    dedup_run_t d = {r, NULL, NULL, "", "", 0, 0, 0, 0, 0};
    d.first = ao_engine_prepare(r->s.engine, &s, "req-1");
    d.second = ao_engine_prepare(r->s.engine, &s, "req-1");
    ao_submission_free(ao_engine_prepare(r->s.engine, &s, "req-2")); /* never submitted */
    ao_proc_post(ao_engine_proc(r->s.engine), dedup_work, NULL, &d);
    wait_flag(r, &d.done, "the two submissions");
    assert_int_equal(d.rc1, 0);
    assert_int_equal(d.rc2, 0);
    assert_int_equal(d.dedup1, 0);
    assert_int_equal(d.dedup2, 1);
    assert_string_equal(d.first_id, d.second_id);
    assert_int_equal(strncmp(d.first_id, "wf-", 3), 0);
    rig_close(r);
}


typedef struct big_run {
    rig_t *r;
    ao_submission_t *sub;
    int rc;
} big_run_t;

static void big_submit_work(ao_proc_t *p, void *ud)
{
    (void)p;
    big_run_t *b = ud;
    ao_wf_t *wf;
    uint64_t seq;
    int dedup;
    ao_status_t st;
    b->rc = ao_engine_submit_prepared(b->r->s.engine, "t", b->sub, &wf, &seq, &dedup, &st);
    if (!b->rc) ao_engine_watch(b->r->s.engine, wf, on_done, b->r);
}

/* A large submission's payload is packed by a pool job beside the
 * preparing thread, or by that thread when every worker is busy; either
 * way the WORKFLOW_SUBMITTED in the log is what protobuf-c packs, and the
 * workflow runs. */
static void test_large_submission_packed_beside(void **state)
{
    rig_t *r = *state;
    enum { N = 300 };
    Agentos__V1__WorkflowSpec s = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec t[N], *tp[N];
    char ids[N][8];
    for (size_t i = 0; i < N; i++) {
        agentos__v1__task_spec__init(&t[i]);
        snprintf(ids[i], sizeof ids[i], "t%zu", i);
        t[i].id = ids[i];
        t[i].agent = "noop";
        tp[i] = &t[i];
    }
    s.tasks = tp;
    s.n_tasks = N;
    for (int busy = 0; busy < 2; busy++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/run%d", r->dir, busy);
        r->done = 0;
        rig_open(r, dir);
        ao_test_gate_t g = AO_TEST_GATE_INIT;
        unsigned workers = ao_pool_threads(r->s.pool);
        if (busy) {
            for (unsigned k = 0; k < workers; k++) ao_pool_submit(r->s.pool, "busy", ao_test_gate_hold, &g);
            assert_int_equal(ao_test_gate_wait_held(&g, (int)workers), 0);
        }
        big_run_t b = {r, ao_engine_prepare(r->s.engine, &s, "big"), 0};
        if (busy) ao_test_gate_open(&g); /* prepared with no worker free: the caller packed it */
        ao_proc_post(ao_engine_proc(r->s.engine), big_submit_work, NULL, &b);
        wait_flag(r, &r->done, "the large workflow's result");
        assert_int_equal(b.rc, 0);
        rig_close(r);
        ao_log_t *log;
        ao_status_t st;
        ao_log_options_t lo = {.dir = dir, .read_only = 1};
        assert_int_equal(ao_log_open(&lo, &log, &st), 0);
        repack_t c = {0};
        assert_int_equal(ao_log_read_range(log, 1, UINT64_MAX, 0, repack_event, &c, &st), 0);
        ao_log_close(log);
        if (c.differ) fail_msg("%zu events differ from protobuf-c's packing, the first at seq %llu", c.differ,
                               (unsigned long long)c.first_differ);
        assert_true(c.n >= 2 * N + 2);
    }
}

/* Submissions with request ids, in order on the processor thread; the
 * watch, if asked, on the workflow of `watch`. */
enum { MAX_SUBS = 4 };
typedef struct sub_batch {
    rig_t *r;
    size_t n;
    ao_submission_t *subs[MAX_SUBS];
    int rc[MAX_SUBS], dedup[MAX_SUBS];
    char ids[MAX_SUBS][64], msg[MAX_SUBS][512];
    int watch; /* index + 1, or 0 */
    int done;
} sub_batch_t;

static void sub_batch_work(ao_proc_t *p, void *ud)
{
    (void)p;
    sub_batch_t *b = ud;
    for (size_t k = 0; k < b->n; k++) {
        ao_wf_t *wf = NULL;
        uint64_t seq;
        ao_status_t st = {0};
        b->rc[k] = ao_engine_submit_prepared(b->r->s.engine, "t", b->subs[k], &wf, &seq,
                                             &b->dedup[k], &st);
        snprintf(b->ids[k], sizeof b->ids[k], "%s", b->rc[k] ? "" : wf->pb->id);
        snprintf(b->msg[k], sizeof b->msg[k], "%s", b->rc[k] ? st.msg : "");
        if (!b->rc[k] && b->watch == (int)k + 1) ao_engine_watch(b->r->s.engine, wf, on_done, b->r);
    }
    signal_rig(b->r, &b->done);
}

static void submit_batch(rig_t *r, sub_batch_t *b, size_t n,
                         const Agentos__V1__WorkflowSpec *const *specs, const char *const *rids)
{
    memset(b, 0, sizeof *b);
    b->r = r;
    b->n = n;
    for (size_t k = 0; k < n; k++)
        b->subs[k] = ao_engine_prepare(r->s.engine, specs[k], rids[k]);
}

static void run_batch(rig_t *r, sub_batch_t *b)
{
    ao_proc_post(ao_engine_proc(r->s.engine), sub_batch_work, NULL, b);
    wait_flag(r, &b->done, "the submissions");
}

static void assert_refused(const sub_batch_t *b, size_t k, const char *rid, const char *holder)
{
    assert_int_equal(b->rc[k], AO_EEXIST);
    char want[200];
    snprintf(want, sizeof want,
             "request_id \"%s\" was used for workflow %s, with another workflow spec", rid, holder);
    if (!strstr(b->msg[k], want))
        fail_msg("submission %zu: \"%s\" lacks \"%s\"", k, b->msg[k], want);
}

static void assert_same(const sub_batch_t *b, size_t k, const char *holder)
{
    if (b->rc[k]) fail_msg("submission %zu: %s", k, b->msg[k]);
    assert_int_equal(b->dedup[k], 1);
    assert_string_equal(b->ids[k], holder);
}

/* A request_id holds the spec it came with: the same spec again is the
 * same workflow, another is ALREADY_EXISTS naming the workflow, and a
 * request_id is not used up by a refusal. So after a restart too, for a
 * workflow rebuilt from its WORKFLOW_SUBMITTED (still running: its
 * snapshot is the empty one of its submission) and for one rebuilt from
 * its final snapshot. */
static void test_request_id_holds_its_spec(void **state)
{
    rig_t *r = *state;
    static const char *const config =
        "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\"},"
        "{\"name\":\"stuck\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"hang\":true}}],"
        "\"storage\":{\"durability\":\"DURABILITY_SYNC\"}}";
    Agentos__V1__TaskSpec ts[3], *tp[3];
    Agentos__V1__WorkflowSpec specs[3];
    static const char *const ids[3] = {"only", "only", "other"};
    static const char *const agents[3] = {"stuck", "noop", "noop"};
    for (int k = 0; k < 3; k++) {
        agentos__v1__task_spec__init(&ts[k]);
        ts[k].id = (char *)ids[k];
        ts[k].agent = (char *)agents[k];
        tp[k] = &ts[k];
        agentos__v1__workflow_spec__init(&specs[k]);
        specs[k].tasks = &tp[k];
        specs[k].n_tasks = 1;
    }
    const Agentos__V1__WorkflowSpec *running = &specs[0], *done = &specs[1], *other = &specs[2];
    sub_batch_t b;
    char running_id[64], done_id[64];

    rig_open_with(r, r->dir, config);
    submit_batch(r, &b, 4, (const Agentos__V1__WorkflowSpec *[]){running, done, other, running},
                 (const char *[]){"held-running", "held-done", "held-running", "held-running"});
    b.watch = 2;
    run_batch(r, &b);
    assert_int_equal(b.rc[0], 0);
    assert_int_equal(b.dedup[0], 0);
    assert_int_equal(b.rc[1], 0);
    assert_int_equal(b.dedup[1], 0);
    snprintf(running_id, sizeof running_id, "%s", b.ids[0]);
    snprintf(done_id, sizeof done_id, "%s", b.ids[1]);
    assert_refused(&b, 2, "held-running", running_id);
    assert_same(&b, 3, running_id);
    /* The finished one's final snapshot is in the log before the restart. */
    wait_flag(r, &r->done, "the finished workflow's result");
    snprintf(r->wf_id, sizeof r->wf_id, "%s", done_id);
    ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
    wait_flag(r, &r->checked, "its final checkpoint");
    assert_int_equal(r->final_after, 1);
    rig_close(r);

    rig_open_with(r, r->dir, config);
    submit_batch(r, &b, 4, (const Agentos__V1__WorkflowSpec *[]){other, running, other, done},
                 (const char *[]){"held-running", "held-running", "held-done", "held-done"});
    run_batch(r, &b);
    assert_refused(&b, 0, "held-running", running_id);
    assert_same(&b, 1, running_id);
    assert_refused(&b, 2, "held-done", done_id);
    assert_same(&b, 3, done_id);
    rig_close(r);
}

/* Pages of a tenant's workflows, newest first: many created in the same
 * millisecond, each page from after the last of the one before. */
enum { PAGED = 40, PAGE = 3 };
typedef struct paging {
    rig_t *r;
    char made[PAGED][64]; /* in submission order */
    char listed[PAGED + 1][64];
    size_t n_listed, pages, in_other_tenant, after_foreign_token;
    int rc;
    int done;
} paging_t;

typedef struct page_ctx {
    paging_t *pg;
    size_t n;
    char last[64];
} page_ctx_t;

static int take_one(void *ud, ao_wf_t *wf)
{
    page_ctx_t *c = ud;
    if (c->pg->n_listed <= PAGED) snprintf(c->pg->listed[c->pg->n_listed++], 64, "%s", wf->pb->id);
    snprintf(c->last, sizeof c->last, "%s", wf->pb->id);
    return ++c->n == PAGE;
}

static int count_one(void *ud, ao_wf_t *wf)
{
    (void)wf;
    ++*(size_t *)ud;
    return 0;
}

static void paging_work(ao_proc_t *p, void *ud)
{
    (void)p;
    paging_t *pg = ud;
    ao_engine_t *e = pg->r->s.engine;
    Agentos__V1__TaskSpec t = AGENTOS__V1__TASK_SPEC__INIT, *tp = &t;
    t.id = "only";
    t.agent = "noop";
    Agentos__V1__WorkflowSpec s = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    s.tasks = &tp;
    s.n_tasks = 1;
    for (size_t k = 0; k < PAGED && !pg->rc; k++) {
        ao_wf_t *wf;
        uint64_t seq;
        int dedup;
        ao_status_t st;
        pg->rc = ao_engine_submit(e, k % 5 == 4 ? "other" : "t", &s, "", &wf, &seq, &dedup, &st);
        if (!pg->rc) snprintf(pg->made[k], 64, "%s", wf->pb->id);
    }
    page_ctx_t c = {pg, 0, ""};
    do {
        c.n = 0;
        char after[64];
        snprintf(after, sizeof after, "%s", c.last);
        ao_engine_list(e, "t", after, take_one, &c);
        pg->pages++;
    } while (c.n == PAGE && pg->pages <= PAGED);
    ao_engine_list(e, "other", NULL, count_one, &pg->in_other_tenant);
    /* A page token of another tenant's workflow lists nothing. */
    ao_engine_list(e, "other", pg->made[PAGED - 2], count_one, &pg->after_foreign_token);
    signal_rig(pg->r, &pg->done);
}

static void test_list_pages_in_creation_order(void **state)
{
    rig_t *r = *state;
    rig_open(r, r->dir);
    paging_t *pg = calloc(1, sizeof *pg);
    pg->r = r;
    ao_proc_post(ao_engine_proc(r->s.engine), paging_work, NULL, pg);
    wait_flag(r, &pg->done, "the pages");
    assert_int_equal(pg->rc, 0);
    assert_int_equal(pg->in_other_tenant, PAGED / 5);
    assert_int_equal(pg->after_foreign_token, 0);
    /* Tenant t's, newest first, each once. */
    size_t want = 0;
    for (size_t k = PAGED; k-- > 0;) {
        if (k % 5 == 4) continue;
        if (want >= pg->n_listed) fail_msg("%zu listed, %s missing", pg->n_listed, pg->made[k]);
        if (strcmp(pg->listed[want], pg->made[k]))
            fail_msg("page entry %zu is %s, not %s", want, pg->listed[want], pg->made[k]);
        want++;
    }
    assert_int_equal(pg->n_listed, want);
    assert_true(pg->pages >= want / PAGE);
    free(pg);
    rig_close(r);
}

/* The checkpoints of a workflow in the log, by reason, with the seqs of
 * the automatic ones. */
typedef struct ckpt_count {
    size_t autos, finals, manuals;
    uint64_t auto_seq[64];
} ckpt_count_t;

static int count_ckpt(void *ud, uint64_t seq, const void *data, size_t len)
{
    ckpt_count_t *c = ud;
    Agentos__V1__Checkpoint *k = agentos__v1__checkpoint__unpack(NULL, len, data);
    if (!k) return -1;
    if (!strcmp(k->reason, "auto")) {
        if (c->autos < 64) c->auto_seq[c->autos] = seq;
        c->autos++;
    } else if (!strcmp(k->reason, "final")) {
        c->finals++;
    } else {
        c->manuals++;
    }
    agentos__v1__checkpoint__free_unpacked(k, NULL);
    return 0;
}

static int count_event(void *ud, uint64_t seq, const void *data, size_t len)
{
    (void)seq;
    (void)data;
    (void)len;
    ++*(uint64_t *)ud;
    return 0;
}

/* Automatic checkpoints: at most one per four events a task, whatever
 * checkpoint_every_events asks for below that. A chain whose tasks run
 * once takes none before its final checkpoint; a workflow whose tasks
 * retry many times takes them, as often as the bound allows. */
static void test_automatic_checkpoints_bounded_by_size(void **state)
{
    rig_t *r = *state;
    static const char *const config =
        "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\"},"
        "{\"name\":\"retrying\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{},"
        "\"breaker\":{\"failureThreshold\":100000}}],"
        "\"storage\":{\"durability\":\"DURABILITY_SYNC\",\"checkpointEveryEvents\":1}}";
    enum { CHAIN = 10, RETRIED = 2, FAILS = 12 };
    rig_open_with(r, r->dir, config);
    Agentos__V1__TaskSpec ct[CHAIN], *ctp[CHAIN], rt[RETRIED], *rtp[RETRIED];
    char cid[CHAIN][8], rid[RETRIED][8], dep[CHAIN][8];
    char *deps[CHAIN];
    Agentos__V1__RetryPolicy retry = AGENTOS__V1__RETRY_POLICY__INIT;
    retry.max_attempts = FAILS + 1;
    retry.initial_backoff_ms = 1;
    retry.max_backoff_ms = 2;
    Agentos__V1__TaskSpec__ParamsEntry fail = AGENTOS__V1__TASK_SPEC__PARAMS_ENTRY__INIT,
                                       *failp = &fail;
    fail.key = "fail_first";
    fail.value = "12";
    for (size_t i = 0; i < CHAIN; i++) {
        agentos__v1__task_spec__init(&ct[i]);
        snprintf(cid[i], sizeof cid[i], "c%zu", i);
        ct[i].id = cid[i];
        ct[i].agent = "noop";
        if (i) {
            snprintf(dep[i], sizeof dep[i], "c%zu", i - 1);
            deps[i] = dep[i];
            ct[i].depends_on = &deps[i];
            ct[i].n_depends_on = 1;
        }
        ctp[i] = &ct[i];
    }
    for (size_t i = 0; i < RETRIED; i++) {
        agentos__v1__task_spec__init(&rt[i]);
        snprintf(rid[i], sizeof rid[i], "r%zu", i);
        rt[i].id = rid[i];
        rt[i].agent = "retrying";
        rt[i].retry = &retry;
        rt[i].params = &failp;
        rt[i].n_params = 1;
        rtp[i] = &rt[i];
    }
    Agentos__V1__WorkflowSpec chain = AGENTOS__V1__WORKFLOW_SPEC__INIT,
                              retried = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    chain.tasks = ctp;
    chain.n_tasks = CHAIN;
    retried.tasks = rtp;
    retried.n_tasks = RETRIED;

    char ids[2][64];
    const Agentos__V1__WorkflowSpec *specs[2] = {&chain, &retried};
    for (int k = 0; k < 2; k++) {
        sub_batch_t b;
        submit_batch(r, &b, 1, &specs[k], (const char *[]){""});
        b.watch = 1;
        r->done = r->checked = 0;
        run_batch(r, &b);
        if (b.rc[0]) fail_msg("%s", b.msg[0]);
        snprintf(ids[k], sizeof ids[k], "%s", b.ids[0]);
        wait_flag(r, &r->done, "the workflow's result");
        snprintf(r->wf_id, sizeof r->wf_id, "%.63s", ids[k]);
        ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
        wait_flag(r, &r->checked, "its final checkpoint");
        assert_int_equal(r->final_after, 1);
    }
    ckpt_count_t c[2];
    uint64_t events[2];
    for (int k = 0; k < 2; k++) {
        memset(&c[k], 0, sizeof c[k]);
        ao_status_t st;
        assert_int_equal(ao_log_list_checkpoints(r->s.log, ids[k], count_ckpt, &c[k], &st), 0);
        events[k] = 0;
        assert_int_equal(
            ao_log_read_workflow(r->s.log, ids[k], 0, UINT64_MAX, 0, count_event, &events[k], &st),
            0);
    }
    rig_close(r);

    /* The chain: two events a task and a few of its own, under four a task. */
    assert_true(events[0] >= 2 * CHAIN && events[0] < 4 * CHAIN);
    assert_int_equal(c[0].autos, 0);
    assert_int_equal(c[0].finals, 1);
    /* The retried: far more than four events a task, so automatic
     * checkpoints, at least four a task's events apart. */
    assert_true(events[1] >= 3 * 4 * RETRIED);
    if (c[1].autos < 2)
        fail_msg("%zu automatic checkpoints in %llu events", c[1].autos,
                 (unsigned long long)events[1]);
    assert_true(c[1].autos <= events[1] / (4 * RETRIED));
    for (size_t k = 1; k < c[1].autos && k < 64; k++)
        if (c[1].auto_seq[k] - c[1].auto_seq[k - 1] < 4 * RETRIED)
            fail_msg("automatic checkpoints at seqs %llu and %llu",
                     (unsigned long long)c[1].auto_seq[k - 1],
                     (unsigned long long)c[1].auto_seq[k]);
    assert_int_equal(c[1].finals, 1);
}

/* ---- finished workflows frozen and thawed ---- */

enum { COLD = 5 };
typedef struct cold_run {
    rig_t *r;
    char ids[COLD][64];
    uint8_t *packed[COLD]; /* each one's whole state before it was frozen */
    size_t packed_len[COLD];
    int frozen[COLD];
    uint32_t listed_total[COLD], listed_done[COLD];
    int listed_status[COLD];
    int rc, differ, resumed_rc;
    char msg[512];
    int done;
} cold_run_t;

static int index_of(cold_run_t *c, const char *id)
{
    for (int k = 0; k < COLD; k++)
        if (!strcmp(c->ids[k], id)) return k;
    return -1;
}

/* Workflow k, found (made whole if frozen); NULL with c->rc and c->msg
 * set if it could not be. */
static ao_wf_t *find_cold(cold_run_t *c, int k)
{
    ao_status_t st;
    ao_wf_t *wf = ao_engine_find(c->r->s.engine, c->ids[k], "t", &st);
    if (!wf && !c->rc) {
        c->rc = -1;
        snprintf(c->msg, sizeof c->msg, "%s", st.msg);
    }
    return wf;
}

static void pack_all_work(ao_proc_t *p, void *ud)
{
    (void)p;
    cold_run_t *c = ud;
    ao_wf_t *wf;
    for (int k = 0; k < COLD && (wf = find_cold(c, k)); k++)
        c->packed[k] = ao_wf_pack(wf, &c->packed_len[k]);
    signal_rig(c->r, &c->done);
}

static int list_cold(void *ud, ao_wf_t *wf)
{
    cold_run_t *c = ud;
    int k = index_of(c, wf->pb->id);
    if (k < 0) return 0;
    c->frozen[k] = wf->frozen;
    c->listed_total[k] = (uint32_t)ao_wf_tasks_total(wf);
    c->listed_done[k] = wf->n_terminal;
    c->listed_status[k] = wf->pb->status;
    return 0;
}

static void list_cold_work(ao_proc_t *p, void *ud)
{
    (void)p;
    cold_run_t *c = ud;
    ao_engine_list(c->r->s.engine, "t", NULL, list_cold, c);
    signal_rig(c->r, &c->done);
}

/* Each found (thawed if frozen) and packed again: the same bytes. */
static void thaw_all_work(ao_proc_t *p, void *ud)
{
    (void)p;
    cold_run_t *c = ud;
    ao_wf_t *wf;
    for (int k = 0; k < COLD && (wf = find_cold(c, k)); k++) {
        size_t len;
        uint8_t *b = ao_wf_pack(wf, &len);
        if (len != c->packed_len[k] || memcmp(b, c->packed[k], len)) c->differ |= 1 << k;
        free(b);
    }
    signal_rig(c->r, &c->done);
}

/* A workflow held across a turn and frozen meanwhile: ao_engine_whole
 * makes it whole again, the same bytes. */
static void held_frozen_work(ao_proc_t *p, void *ud)
{
    (void)p;
    cold_run_t *c = ud;
    ao_status_t st;
    ao_wf_t *wf = find_cold(c, COLD - 1);
    if (!wf) {
        signal_rig(c->r, &c->done);
        return;
    }
    size_t before_len, after_len;
    uint8_t *before = ao_wf_pack(wf, &before_len);
    ao_wf_freeze(wf);
    c->rc = ao_engine_whole(c->r->s.engine, wf, &st);
    if (c->rc) snprintf(c->msg, sizeof c->msg, "%s", st.msg);
    uint8_t *after = c->rc ? NULL : ao_wf_pack(wf, &after_len);
    c->differ = !after || after_len != before_len || memcmp(after, before, after_len);
    free(before);
    free(after);
    signal_rig(c->r, &c->done);
}

static void resume_cold_work(ao_proc_t *p, void *ud)
{
    (void)p;
    cold_run_t *c = ud;
    ao_status_t st = {0};
    ao_wf_t *wf = find_cold(c, 0);
    Agentos__V1__TaskOverride o = AGENTOS__V1__TASK_OVERRIDE__INIT, *op = &o;
    o.task_id = "only";
    o.agent = "noop";
    uint64_t seq;
    if (!wf)
        c->resumed_rc = -1;
    else if ((c->resumed_rc = ao_engine_resume(c->r->s.engine, wf, NULL, &op, 1, NULL, &seq, &st)))
        snprintf(c->msg, sizeof c->msg, "%s", st.msg);
    else
        ao_engine_watch(c->r->s.engine, wf, on_done, c->r);
    signal_rig(c->r, &c->done);
}

static void run_cold(rig_t *r, cold_run_t *c, ao_proc_work_fn fn)
{
    c->done = 0;
    ao_proc_post(ao_engine_proc(r->s.engine), fn, NULL, c);
    wait_flag(r, &c->done, "the processor's turn");
}

static uint64_t frozen_count(void)
{
    return atomic_load(&ao_metrics.workflows_frozen);
}

/* Past storage.maxFinishedInMemory, finished workflows unused for a second
 * keep only their summary (ListWorkflows shows it), and the next lookup
 * loads them whole from their snapshot, as they were: the same state
 * bytes; a frozen failed workflow resumes. A restart freezes them as it
 * loads them. */
static void test_finished_workflows_frozen_and_thawed(void **state)
{
    rig_t *r = *state;
    static const char *const config =
        "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\"},"
        "{\"name\":\"broken\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"failAlways\":true}}]"
        ","
        "\"storage\":{\"durability\":\"DURABILITY_SYNC\",\"maxFinishedInMemory\":2}}";
    rig_open_with(r, r->dir, config);
    cold_run_t *c = calloc(1, sizeof *c);
    c->r = r;
    Agentos__V1__TaskSpec t = AGENTOS__V1__TASK_SPEC__INIT, u = AGENTOS__V1__TASK_SPEC__INIT,
                          *tp[2] = {&t, &u};
    t.id = "only";
    u.id = "after";
    char *dep = "only";
    u.depends_on = &dep;
    u.n_depends_on = 1;
    u.agent = "noop";
    Agentos__V1__WorkflowSpec s = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    s.tasks = tp;
    s.n_tasks = 2;
    for (int k = 0; k < COLD; k++) {
        t.agent = k == 0 ? "broken" : "noop"; /* the first fails */
        const Agentos__V1__WorkflowSpec *sp = &s;
        sub_batch_t b;
        submit_batch(r, &b, 1, &sp, (const char *[]){""});
        b.watch = 1;
        r->done = r->checked = 0;
        run_batch(r, &b);
        if (b.rc[0]) fail_msg("%s", b.msg[0]);
        snprintf(c->ids[k], sizeof c->ids[k], "%.63s", b.ids[0]);
        wait_flag(r, &r->done, "a result");
        snprintf(r->wf_id, sizeof r->wf_id, "%.63s", c->ids[k]);
        ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
        wait_flag(r, &r->checked, "its final checkpoint");
    }
    run_cold(r, c, pack_all_work);
    if (c->rc) fail_msg("%s", c->msg);

    /* Three of the five frozen once unused a second (each processor turn
     * looks, at most once a second). */
    uint64_t f0 = frozen_count();
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += WAIT_S;
    for (;;) {
        run_cold(r, c, list_cold_work);
        int n = 0;
        for (int k = 0; k < COLD; k++)
            n += c->frozen[k];
        if (n == 3) break;
        if (n > 3) fail_msg("%d frozen, past the limit of 2 kept whole", n);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > until.tv_sec) fail_msg("not frozen within %d s", WAIT_S);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    assert_int_equal(frozen_count() - f0, 3);
    /* The oldest three, unused the longest; their summaries as they were. */
    for (int k = 0; k < COLD; k++) {
        assert_int_equal(c->frozen[k], k < 3);
        assert_int_equal(c->listed_total[k], 2);
        assert_int_equal(c->listed_done[k], 2);
        assert_int_equal(c->listed_status[k],
                         k == 0 ? AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_FAILED
                                : AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_SUCCESS);
    }
    uint64_t t0 = atomic_load(&ao_metrics.workflows_thawed);
    run_cold(r, c, thaw_all_work);
    if (c->rc) fail_msg("%s", c->msg);
    assert_int_equal(c->differ, 0);
    assert_int_equal(atomic_load(&ao_metrics.workflows_thawed) - t0, 3);

    run_cold(r, c, held_frozen_work);
    if (c->rc) fail_msg("%s", c->msg);
    assert_int_equal(c->differ, 0);

    /* A failed one frozen again, then resumed: it runs and succeeds. */
    for (;;) {
        run_cold(r, c, list_cold_work);
        if (c->frozen[0]) break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > until.tv_sec) fail_msg("not frozen again within %d s", WAIT_S);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    r->done = 0;
    run_cold(r, c, resume_cold_work);
    if (c->resumed_rc) fail_msg("resume: %s", c->msg);
    wait_flag(r, &r->done, "the resumed workflow's result");
    /* Its final checkpoint in the log before the restart (a start takes a
     * missing one before the workflow can be frozen). */
    snprintf(r->wf_id, sizeof r->wf_id, "%.63s", c->ids[0]);
    r->checked = 0;
    ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
    wait_flag(r, &r->checked, "its final checkpoint");
    assert_int_equal(r->final_after, 1);
    rig_close(r);

    /* A restart: as it loads them, the two created last stay whole, the
     * rest are frozen (a start never holds more than the limit). */
    f0 = frozen_count();
    rig_open_with(r, r->dir, config);
    assert_int_equal(frozen_count() - f0, 3);
    run_cold(r, c, list_cold_work);
    int n = 0;
    for (int k = 0; k < COLD; k++)
        n += c->frozen[k];
    assert_int_equal(n, 3);
    assert_int_equal(c->frozen[COLD - 1], 0);
    assert_int_equal(c->frozen[COLD - 2], 0);
    rig_close(r);
    for (int k = 0; k < COLD; k++)
        free(c->packed[k]);
    free(c);
}

/* The child (this binary run as `--child DIR`): runs the workflow and
 * exits when its result is let out, before the final checkpoint. */
static _Noreturn void child(const char *dir)
{
    rig_t c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    c.exit_at_result = 1;
    ao_log_configure("warn", "text");
    rig_open(&c, dir);
    ao_proc_post(ao_engine_proc(c.s.engine), submit_work, NULL, &c);
    for (;;)
        pause(); /* the watch ends the process */
}

static void test_restart_takes_a_missing_final_checkpoint(void **state)
{
    rig_t *r = *state;
    char id[64];
    assert_int_equal(ao_test_run_self("test_engine", "--child", r->dir, id, sizeof id), 0);
    char *nl = strchr(id, '\n');
    assert_non_null(nl);
    *nl = '\0';
    snprintf(r->wf_id, sizeof r->wf_id, "%s", id);

    /* The result is in the log, the final checkpoint is not. */
    ao_log_t *log;
    ao_status_t st;
    ao_log_options_t lo = {.dir = r->dir, .read_only = 1};
    assert_int_equal(ao_log_open(&lo, &log, &st), 0);
    assert_int_equal(final_in_log(log, id), 0);
    ao_log_close(log);

    /* The next start takes it in its first turn. */
    rig_open(r, r->dir);
    ao_proc_post(ao_engine_proc(r->s.engine), check_work, NULL, r);
    wait_flag(r, &r->checked, "check after the restart");
    assert_int_equal(r->final_after, 1);
    rig_close(r);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child")) child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_result_before_final_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_takes_a_missing_final_checkpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_events_packed_as_protobuf_c_packs_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prepared_submissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id_holds_its_spec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_in_creation_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finished_workflows_frozen_and_thawed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_automatic_checkpoints_bounded_by_size, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_submission_packed_beside, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
