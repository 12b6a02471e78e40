/* Unit tests for server/agents/backends.c and builtin.c: concurrency limits
 * with fair queues, the shared breaker through real calls, attempt
 * timeouts, cancellation, builtin behaviour and health figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentos/v1/event.pb-c.h"
#include "backends.h"
#include "config.h"
#include "mem.h"
#include "pbjson.h"
#include "pbutil.h"
#include "pool.h"
#include "timer.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x
#define BS(x) AGENTOS__V1__BREAKER_STATE__BREAKER_STATE_##x

typedef struct env {
    Agentos__V1__ServerConfig *cfg;
    ao_timers_t *timers;
    ao_pool_t *pool;
    ao_backends_t *bs;
} env_t;

/* One attempt and what came of it. */
typedef struct call {
    ao_dispatch_t d;
    Agentos__V1__AgentTask task;
    char task_id[32];
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    int done;
    int cls;
    char error[512];
    char output[256];
    uint64_t tokens;
    int order;
    ao_breaker_change_t changes[2];
    size_t n_changes;
    Agentos__V1__AgentResult *result;
} call_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int finished;

static void on_done(ao_dispatch_t *d, ao_agent_outcome_t *o, const ao_breaker_change_t *ch, size_t n)
{
    call_t *c = (call_t *)d;
    pthread_mutex_lock(&lock);
    c->done = 1;
    c->cls = o->error_class;
    snprintf(c->error, sizeof c->error, "%s", o->error);
    if (o->result) {
        snprintf(c->output, sizeof c->output, "%s", o->result->output);
        c->tokens = o->result->usage ? o->result->usage->total_tokens : 0;
        c->result = o->result;
    }
    c->n_changes = n;
    memcpy(c->changes, ch, n * sizeof *ch);
    c->order = ++finished;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static env_t *env_new(const char *agents_json)
{
    env_t *e = calloc(1, sizeof *e);
    char *text = ao_xasprintf("{\"agents\":%s}", agents_json);
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, text, strlen(text), &m, &st))
        fail_msg("%s", st.msg);
    free(text);
    e->cfg = (Agentos__V1__ServerConfig *)m;
    ao_config_defaults(e->cfg);
    e->timers = ao_timers_create();
    e->pool = ao_pool_create(2);
    if (ao_backends_create(e->cfg, e->timers, e->pool, &e->bs, &st)) fail_msg("%s", st.msg);
    finished = 0;
    return e;
}

static void env_free(env_t *e)
{
    ao_backends_destroy(e->bs);
    ao_pool_destroy(e->pool);
    ao_timers_destroy(e->timers);
    ao_config_free(e->cfg);
    free(e);
}

static Agentos__V1__AgentTask__ParamsEntry *param(const char *k, const char *v)
{
    Agentos__V1__AgentTask__ParamsEntry *p = malloc(sizeof *p);
    agentos__v1__agent_task__params_entry__init(p);
    p->key = (char *)k;
    p->value = (char *)v;
    return p;
}

static call_t *call_new(const char *agent, const char *wf, int n, uint32_t attempt,
                        Agentos__V1__AgentTask__ParamsEntry **params, size_t n_params)
{
    call_t *c = calloc(1, sizeof *c);
    agentos__v1__agent_task__init(&c->task);
    snprintf(c->task_id, sizeof c->task_id, "t%d", n);
    c->task.task_id = c->task_id;
    c->task.workflow_id = (char *)wf;
    c->task.attempt = attempt;
    c->task.attempt_id = "id";
    c->task.input = "hello";
    c->task.params = params;
    c->task.n_params = n_params;
    c->d.call.task = &c->task;
    c->d.agent = agent;
    c->d.fair_key = wf;
    c->d.done = on_done;
    return c;
}

static void call_free(call_t *c)
{
    ao_dispatch_fini(&c->d);
    ao_pb_free(c->result);
    free(c);
}

static void wait_done(call_t **cs, size_t n, int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n; i++)
        while (!cs[i]->done)
            if (pthread_cond_timedwait(&cond, &lock, &until)) {
                pthread_mutex_unlock(&lock);
                fail_msg("call %zu did not finish in %d s", i, seconds);
            }
    pthread_mutex_unlock(&lock);
}

static void test_builtin_behaviour(void **state)
{
    (void)state;
    env_t *e = env_new("[{\"name\":\"fin\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{"
                       "\"output\":\"{{agent}} on {{task.id}}: {{input}}\",\"score\":0.7,"
                       "\"promptTokens\":10,\"completionTokens\":5,\"failFirst\":1,"
                       "\"findings\":[\"risk=high\"]}},"
                       "{\"name\":\"plain\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{"
                       "\"score\":1234.5,\"confidence\":0.333}}]");
    call_t *first = call_new("fin", "w", 1, 1, NULL, 0);
    call_t *second = call_new("fin", "w", 1, 2, NULL, 0);
    assert_int_equal(ao_backends_submit(e->bs, &first->d), 0);
    assert_int_equal(ao_backends_submit(e->bs, &second->d), 0);
    call_t *both[] = {first, second};
    wait_done(both, 2, 10);
    /* fail_first=1: attempt 1 fails (retryable), attempt 2 succeeds. */
    assert_int_equal(first->cls, EC(AGENT_ERROR));
    assert_non_null(strstr(first->error, "fail_first=1"));
    assert_int_equal(second->cls, 0);
    assert_string_equal(second->output, "fin on t1: hello");
    assert_int_equal(second->tokens, 15);
    assert_int_equal(second->result->n_findings, 1);
    assert_string_equal(second->result->findings[0]->key, "risk");
    assert_true(second->result->score == 0.7);
    assert_int_equal(second->result->n_decisions, 1);
    assert_string_equal(second->result->decisions[0], "fin: score 0.70 with confidence 0.90");
    /* Params override the config per task. */
    Agentos__V1__AgentTask__ParamsEntry *ps[] = {param("output", "custom"), param("fail_first", "0"),
                                                 param("score", "0.25")};
    call_t *third = call_new("fin", "w", 3, 1, ps, 3);
    ao_backends_submit(e->bs, &third->d);
    wait_done(&third, 1, 10);
    assert_int_equal(third->cls, 0);
    assert_string_equal(third->output, "custom");
    assert_true(third->result->score == 0.25);
    assert_string_equal(third->result->decisions[0], "fin: score 0.25 with confidence 0.90");
    for (int i = 0; i < 3; i++) free(ps[i]);
    /* Without a template: the default output; a score past the usual range. */
    Agentos__V1__AgentTask__ParamsEntry *neg[] = {param("score", "-2.5")};
    call_t *fourth = call_new("plain", "w", 5, 1, NULL, 0);
    call_t *fifth = call_new("plain", "w", 6, 1, neg, 1);
    ao_backends_submit(e->bs, &fourth->d);
    ao_backends_submit(e->bs, &fifth->d);
    call_t *plain[] = {fourth, fifth};
    wait_done(plain, 2, 10);
    assert_string_equal(fourth->output, "plain processed t5");
    assert_string_equal(fourth->result->decisions[0], "plain: score 1234.50 with confidence 0.33");
    assert_string_equal(fifth->result->decisions[0], "plain: score -2.50 with confidence 0.33");
    free(neg[0]);
    call_free(fourth);
    call_free(fifth);
    /* An unknown agent is refused at submit. */
    call_t *bad = call_new("nobody", "w", 4, 1, NULL, 0);
    assert_int_equal(ao_backends_submit(e->bs, &bad->d), AO_ENOTFOUND);
    free(bad);
    call_free(first);
    call_free(second);
    call_free(third);
    env_free(e);
}

static void test_concurrency_limit_is_fair(void **state)
{
    (void)state;
    /* One slot; a big workflow queues 20 calls, then a small one queues 2:
     * the small workflow's calls are served within the next few slots. */
    env_t *e = env_new("[{\"name\":\"slow\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":1,"
                       "\"builtin\":{\"latencyMs\":5}}]");
    call_t *big[20], *small[2];
    for (int i = 0; i < 20; i++) {
        big[i] = call_new("slow", "big", i, 1, NULL, 0);
        ao_backends_submit(e->bs, &big[i]->d);
    }
    for (int i = 0; i < 2; i++) {
        small[i] = call_new("slow", "small", 100 + i, 1, NULL, 0);
        ao_backends_submit(e->bs, &small[i]->d);
    }
    Agentos__V1__GetAgentHealthResponse h = AGENTOS__V1__GET_AGENT_HEALTH_RESPONSE__INIT;
    ao_status_t st;
    assert_int_equal(ao_backends_health(e->bs, "slow", NULL, &h, &st), 0);
    assert_int_equal(h.agents[0]->in_flight, 1);
    assert_true(h.agents[0]->queued >= 19);
    assert_int_equal(h.agents[0]->max_concurrency, 1);
    ao_pb_free(h.agents[0]);
    free(h.agents);
    wait_done(big, 20, 30);
    wait_done(small, 2, 30);
    /* Round-robin: small's calls finish 3rd..6th, not after all of big's. */
    assert_true(small[0]->order <= 4);
    assert_true(small[1]->order <= 6);
    for (int i = 0; i < 20; i++) call_free(big[i]);
    for (int i = 0; i < 2; i++) call_free(small[i]);
    env_free(e);
}

static void test_breaker_opens_and_probe_closes(void **state)
{
    (void)state;
    env_t *e = env_new("[{\"name\":\"flaky\",\"kind\":\"BACKEND_KIND_BUILTIN\","
                       "\"breaker\":{\"failureThreshold\":2,\"resetTimeoutMs\":200}}]");
    Agentos__V1__AgentTask__ParamsEntry *fail[] = {param("fail_always", "true")};
    call_t *c[5];
    for (int i = 0; i < 2; i++) {
        c[i] = call_new("flaky", "w", i, 1, fail, 1);
        ao_backends_submit(e->bs, &c[i]->d);
        wait_done(&c[i], 1, 10);
    }
    assert_int_equal(c[1]->n_changes, 1);
    assert_int_equal(c[1]->changes[0].to, BS(OPEN));
    /* Open: the next call fails at once without reaching the agent. */
    c[2] = call_new("flaky", "w", 2, 1, NULL, 0);
    ao_backends_submit(e->bs, &c[2]->d);
    wait_done(&c[2], 1, 10);
    assert_int_equal(c[2]->cls, EC(CIRCUIT_OPEN));
    assert_non_null(strstr(c[2]->error, "circuit breaker of agent flaky is open"));
    /* After the reset timeout a successful probe closes it. Wait for the
     * timeout by polling the health (not a fixed sleep). */
    int64_t deadline = ao_mono_us() + 10 * 1000000;
    Agentos__V1__GetAgentHealthResponse h = AGENTOS__V1__GET_AGENT_HEALTH_RESPONSE__INIT;
    ao_status_t st;
    ao_backends_health(e->bs, "flaky", NULL, &h, &st);
    int64_t opened = h.agents[0]->opened_unix_ms;
    assert_true(opened > 0);
    assert_int_equal(h.agents[0]->breaker, BS(OPEN));
    assert_true(h.agents[0]->error_rate > 0.5);
    ao_pb_free(h.agents[0]);
    free(h.agents);
    while (ao_now_ms() < opened + 210 && ao_mono_us() < deadline) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling the clock for the breaker's own timeout */
    }
    c[3] = call_new("flaky", "w", 3, 1, NULL, 0);
    ao_backends_submit(e->bs, &c[3]->d);
    wait_done(&c[3], 1, 10);
    assert_int_equal(c[3]->cls, 0);
    assert_int_equal(c[3]->n_changes, 2);
    assert_int_equal(c[3]->changes[0].to, BS(HALF_OPEN));
    assert_int_equal(c[3]->changes[1].to, BS(CLOSED));
    for (int i = 0; i < 4; i++) call_free(c[i]);
    free(fail[0]);
    env_free(e);
}

static void test_timeout_and_cancel(void **state)
{
    (void)state;
    env_t *e = env_new("[{\"name\":\"stuck\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"hang\":true},"
                       "\"breaker\":{\"failureThreshold\":100}}]");
    /* A hanging agent hits the attempt timeout: TIMEOUT, retryable. */
    call_t *t = call_new("stuck", "w", 1, 1, NULL, 0);
    t->d.timeout_ms = 50;
    int64_t t0 = ao_mono_us();
    ao_backends_submit(e->bs, &t->d);
    wait_done(&t, 1, 10);
    assert_true(ao_mono_us() - t0 >= 50000);
    assert_int_equal(t->cls, EC(TIMEOUT));
    assert_non_null(strstr(t->error, "attempt timed out after 50 ms"));
    /* Our own cancellation: CANCELLED, and it does not count for the
     * breaker (many cancels never open it). */
    for (int i = 0; i < 5; i++) {
        call_t *c = call_new("stuck", "w", 10 + i, 1, NULL, 0);
        c->d.timeout_ms = 60000;
        ao_backends_submit(e->bs, &c->d);
        /* Cancel while in flight or still starting: both end CANCELLED. */
        ao_backends_cancel(e->bs, &c->d);
        wait_done(&c, 1, 10);
        assert_int_equal(c->cls, EC(CANCELLED));
        assert_int_equal(c->n_changes, 0);
        call_free(c);
    }
    Agentos__V1__GetAgentHealthResponse h = AGENTOS__V1__GET_AGENT_HEALTH_RESPONSE__INIT;
    ao_status_t st;
    ao_backends_health(e->bs, NULL, NULL, &h, &st);
    assert_int_equal(h.n_agents, 1);
    assert_int_equal(h.agents[0]->breaker, BS(CLOSED));
    assert_int_equal(h.agents[0]->in_flight, 0);
    assert_int_equal(h.agents[0]->calls_total, 1); /* the timeout; cancels are not calls */
    ao_pb_free(h.agents[0]);
    free(h.agents);
    call_free(t);
    env_free(e);
}

static void test_price(void **state)
{
    (void)state;
    Agentos__V1__Price p = AGENTOS__V1__PRICE__INIT;
    p.per_call_micros = 100;
    p.per_1k_prompt_tokens_micros = 1500;
    p.per_1k_completion_tokens_micros = 2000;
    Agentos__V1__Usage u = AGENTOS__V1__USAGE__INIT;
    u.prompt_tokens = 2000;
    u.completion_tokens = 500;
    assert_int_equal(ao_price_cost(&p, &u), 100 + 3000 + 1000);
    assert_int_equal(ao_price_cost(&p, NULL), 100);
    assert_int_equal(ao_price_cost(NULL, &u), 0);
}

/* What a freeing done callback saw (the call itself is gone). */
static int freed_calls, freed_ok, freed_timeouts, freed_cancelled, held_at_done;

static void on_done_free(ao_dispatch_t *d, ao_agent_outcome_t *o, const ao_breaker_change_t *ch, size_t n)
{
    (void)ch;
    (void)n;
    call_t *c = (call_t *)d;
    pthread_mutex_lock(&lock);
    freed_calls++;
    if (!o->error_class) freed_ok++;
    if (o->error_class == EC(TIMEOUT)) freed_timeouts++;
    if (o->error_class == EC(CANCELLED)) freed_cancelled++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    /* As the engine does: done is the dispatch's last moment. Nobody may
     * hold its lock any more (glibc refuses to destroy a held mutex: EBUSY;
     * the layer would unlock it after the free). */
    ao_pb_free(o->result);
    if (pthread_mutex_destroy(&c->d.lock)) {
        pthread_mutex_lock(&lock);
        held_at_done++;
        pthread_mutex_unlock(&lock);
        return; /* leaked on purpose: the layer still touches it */
    }
    free(c);
}

static void wait_freed(int n, int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&lock);
    while (freed_calls < n)
        if (pthread_cond_timedwait(&cond, &lock, &until)) {
            pthread_mutex_unlock(&lock);
            fail_msg("%d of %d calls finished in %d s", freed_calls, n, seconds);
        }
    pthread_mutex_unlock(&lock);
}

/* Regression: a backend that completes inside start (a builtin agent with
 * no latency) or inside cancel, or a call that finishes while its timeout
 * fires, must not see the layer touch the dispatch after done, which may
 * free it (the executor does). Under ASan a touch is a use-after-free. */
static void test_done_may_free_the_dispatch(void **state)
{
    (void)state;
    env_t *e = env_new("[{\"name\":\"now\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":64},"
                       "{\"name\":\"stuck\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"hang\":true}},"
                       "{\"name\":\"racy\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":1000,"
                       "\"builtin\":{\"latencyMs\":2},\"breaker\":{\"failureThreshold\":100000}}]");
    freed_calls = freed_ok = freed_timeouts = freed_cancelled = held_at_done = 0;
    /* Completes inside start. */
    for (int i = 0; i < 500; i++) {
        call_t *c = call_new("now", "w", i, 1, NULL, 0);
        c->d.done = on_done_free;
        assert_int_equal(ao_backends_submit(e->bs, &c->d), 0);
    }
    wait_freed(500, 30);
    assert_int_equal(held_at_done, 0);
    assert_int_equal(freed_ok, 500);
    /* Completes inside cancel. */
    for (int i = 0; i < 50; i++) {
        call_t *c = call_new("stuck", "w", i, 1, NULL, 0);
        c->d.done = on_done_free;
        c->d.timeout_ms = 60000;
        assert_int_equal(ao_backends_submit(e->bs, &c->d), 0);
        ao_backends_cancel(e->bs, &c->d);
        wait_freed(501 + i, 10);
    }
    assert_int_equal(held_at_done, 0);
    assert_int_equal(freed_cancelled, 50);
    /* Finishes as its timeout fires: the agent's 2 ms against a 2 ms
     * timeout, both on the timer thread, in every order. */
    for (int i = 0; i < 2000; i++) {
        call_t *c = call_new("racy", "w", i, 1, NULL, 0);
        c->d.done = on_done_free;
        c->d.timeout_ms = 2;
        assert_int_equal(ao_backends_submit(e->bs, &c->d), 0);
    }
    wait_freed(2550, 60);
    assert_int_equal(held_at_done, 0);
    assert_int_equal(freed_ok + freed_timeouts, 2500);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_behaviour),
        cmocka_unit_test(test_concurrency_limit_is_fair),
        cmocka_unit_test(test_breaker_opens_and_probe_closes),
        cmocka_unit_test(test_timeout_and_cancel),
        cmocka_unit_test(test_price),
        cmocka_unit_test(test_done_may_free_the_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
