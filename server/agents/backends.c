/*
 * Backends: concurrency limits, fair queues, breakers, timeouts, health.
 *
 * Threads: submit/cancel from the processor thread; starts on pool
 * threads; completions on backend threads (timer, curl loop, gRPC client
 * queue); health from RPC threads. A backend's counters, queue and breaker
 * are guarded by its `lock`; a dispatch's state by its own recursive lock,
 * which is held across the backend's start and cancel so that neither runs
 * after done. done is delivered after the last touch of the dispatch by
 * this layer (see finish_and_unlock): its callee may free it.
 */
#include "backends.h"

#include "fairq.h"
#include "log.h"
#include "mem.h"
#include "pbutil.h"
#include "pool.h"
#include "timer.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x
#define BS(x) AGENTOS__V1__BREAKER_STATE__BREAKER_STATE_##x

enum { D_NEW = 0, D_QUEUED, D_STARTING, D_IN_FLIGHT, D_DONE };

#define ERR_WINDOW 100
#define LAT_WINDOW 1000

int ao_agent_factory(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                     ao_agent_t **out, ao_status_t *st);
void ao_agent_factory_shutdown(void);

typedef struct backend {
    const Agentos__V1__AgentBackend *cfg;
    ao_agent_t *agent;
    ao_backends_t *bs;
    pthread_mutex_t lock;
    ao_breaker_t breaker;
    ao_fairq_t *queue;
    uint32_t in_flight;
    uint64_t calls, failures;
    uint8_t recent_fail[ERR_WINDOW];
    size_t n_recent, recent_pos;
    double latency_ms[LAT_WINDOW];
    size_t n_lat, lat_pos;
    int64_t cost_micros;
    uint64_t tokens;
    /* The same per tenant (tenant -> [cost_micros, tokens]): a tenant is
     * shown only its own spend. */
    json_t *by_tenant;
    int64_t opened_unix_ms;
} backend_t;

struct ao_backends {
    backend_t *v;
    size_t n;
    ao_timers_t *timers;
    ao_pool_t *pool;
};

int64_t ao_price_cost(const Agentos__V1__Price *p, const Agentos__V1__Usage *u)
{
    if (!p) return 0;
    double cost = (double)p->per_call_micros;
    if (u) {
        cost += (double)u->prompt_tokens * (double)p->per_1k_prompt_tokens_micros / 1000.0;
        cost += (double)u->completion_tokens * (double)p->per_1k_completion_tokens_micros / 1000.0;
    }
    /* Whatever the agent reports, a call's cost stays a number that sums:
     * at most AO_COST_MAX_MICROS (and not below 0). */
    if (!(cost > 0)) return 0;
    return cost >= (double)AO_COST_MAX_MICROS ? AO_COST_MAX_MICROS : (int64_t)llround(cost);
}

static backend_t *find(ao_backends_t *bs, const char *name)
{
    for (size_t i = 0; i < bs->n; i++)
        if (!strcmp(bs->v[i].cfg->name, name)) return &bs->v[i];
    return NULL;
}

int ao_backends_create(const Agentos__V1__ServerConfig *cfg, ao_timers_t *timers, ao_pool_t *pool,
                       ao_backends_t **out, ao_status_t *st)
{
    ao_backends_t *bs = ao_xcalloc(1, sizeof *bs);
    bs->timers = timers;
    bs->pool = pool;
    bs->v = ao_xcalloc(cfg->n_agents ? cfg->n_agents : 1, sizeof *bs->v);
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const Agentos__V1__AgentBackend *a = cfg->agents[i];
        backend_t *b = &bs->v[i];
        b->cfg = a;
        b->bs = bs;
        pthread_mutex_init(&b->lock, NULL);
        b->by_tenant = json_object();
        ao_breaker_init(&b->breaker, a->breaker ? a->breaker->failure_threshold : 0,
                        a->breaker ? a->breaker->reset_timeout_ms : 0);
        b->queue = ao_fairq_create();
        bs->n = i + 1;
        int rc = ao_agent_factory(a, timers, &b->agent, st);
        if (rc) {
            ao_status_t inner = *st;
            ao_status_set(st, rc, "agents[%zu] (%s): %s", i, a->name, inner.msg);
            ao_backends_destroy(bs);
            return rc;
        }
    }
    *out = bs;
    return 0;
}

void ao_backends_destroy(ao_backends_t *bs)
{
    if (!bs) return;
    for (size_t i = 0; i < bs->n; i++) {
        backend_t *b = &bs->v[i];
        if (b->agent) b->agent->ops->destroy(b->agent);
        ao_fairq_destroy(b->queue);
        json_decref(b->by_tenant);
        pthread_mutex_destroy(&b->lock);
    }
    ao_agent_factory_shutdown();
    free(bs->v);
    free(bs);
}

/* ---- completion ------------------------------------------------------------ */

static int counts_for_breaker(int cls)
{
    switch (cls) {
    case EC(TIMEOUT):
    case EC(UNAVAILABLE):
    case EC(RATE_LIMITED):
    case EC(TLS):
    case EC(INVALID_RESPONSE):
    case EC(AGENT_ERROR):
    case EC(INTERNAL):
        return 1;
    default:
        return 0;
    }
}

static void start_dispatch(backend_t *b, ao_dispatch_t *d, int may_inline);

static void add_change(ao_dispatch_t *d, const ao_breaker_change_t *ch)
{
    if ((ch->from || ch->to) && d->n_changes < 2) d->changes[d->n_changes++] = *ch;
}

static uint64_t at_most_reported(uint64_t n)
{
    return n > AO_USAGE_REPORT_MAX ? AO_USAGE_REPORT_MAX : n;
}

/* The usage an agent reported, as everything after takes it: each count
 * at most AO_USAGE_REPORT_MAX, the total (0: not reported) their sum. */
static void hold_usage(Agentos__V1__Usage *u)
{
    u->prompt_tokens = at_most_reported(u->prompt_tokens);
    u->completion_tokens = at_most_reported(u->completion_tokens);
    u->total_tokens = u->total_tokens ? at_most_reported(u->total_tokens)
                                      : u->prompt_tokens + u->completion_tokens;
    u->documents = at_most_reported(u->documents);
}

/* Records the outcome in the backend and starts the next queued call. */
static void account(backend_t *b, ao_dispatch_t *d, ao_agent_outcome_t *o, int started)
{
    int success = o->error_class == EC(UNSPECIFIED);
    int64_t now = ao_now_ms();
    ao_dispatch_t *next = NULL;
    pthread_mutex_lock(&b->lock);
    if (started) {
        b->in_flight--;
        ao_breaker_change_t ch;
        ao_breaker_record(&b->breaker, success, success || counts_for_breaker(o->error_class),
                          d->is_probe, now, &ch);
        add_change(d, &ch);
        if (ch.to == BS(OPEN)) b->opened_unix_ms = now;
        if (o->error_class != EC(CANCELLED)) {
            b->calls++;
            if (!success) b->failures++;
            b->recent_fail[b->recent_pos] = (uint8_t)!success;
            b->recent_pos = (b->recent_pos + 1) % ERR_WINDOW;
            if (b->n_recent < ERR_WINDOW) b->n_recent++;
            b->latency_ms[b->lat_pos] = (double)(ao_mono_us() - d->started_us) / 1000.0;
            b->lat_pos = (b->lat_pos + 1) % LAT_WINDOW;
            if (b->n_lat < LAT_WINDOW) b->n_lat++;
        }
        int64_t cost = 0;
        uint64_t tokens = 0;
        if (o->result && o->result->usage) {
            const Agentos__V1__Usage *u = o->result->usage;
            tokens = u->total_tokens;
            cost = ao_price_cost(b->cfg->price, u);
        } else if (o->error_class != EC(CANCELLED)) {
            cost = ao_price_cost(b->cfg->price, NULL);
        }
        b->tokens += tokens;
        b->cost_micros += cost;
        const char *tenant = d->call.task && d->call.task->tenant ? d->call.task->tenant : "";
        json_t *t = json_object_get(b->by_tenant, tenant);
        if (!t) {
            t = json_pack("[II]", (json_int_t)0, (json_int_t)0);
            json_object_set_new(b->by_tenant, tenant, t);
        }
        json_integer_set(json_array_get(t, 0), json_integer_value(json_array_get(t, 0)) + cost);
        json_integer_set(json_array_get(t, 1),
                         json_integer_value(json_array_get(t, 1)) + (json_int_t)tokens);
        if (b->in_flight < b->cfg->max_concurrency) {
            next = ao_fairq_pop(b->queue);
            if (next) b->in_flight++;
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (next) start_dispatch(b, next, 0);
}

/* Under d->lock: whether the kept outcome may be delivered now (and if so
 * takes it). */
static int take_deferred(ao_dispatch_t *d)
{
    if (!d->deferred || d->in_backend || d->timer_owes) return 0;
    d->deferred = 0;
    return 1;
}

/* done may free d: the outcome is taken first, and freed after. */
static void deliver(ao_dispatch_t *d)
{
    ao_agent_outcome_t *o = d->deferred_outcome;
    d->deferred_outcome = NULL;
    d->done(d, o, d->changes, d->n_changes); /* which owns o->result */
    free(o);
}

/* Finishes a dispatch once, then lets go of d->lock (held by the caller)
 * and delivers done if nothing else still holds on to d. */
static void finish_and_unlock(ao_dispatch_t *d, ao_agent_outcome_t *o, int started)
{
    d->state = D_DONE;
    /* A timeout that has fired but not yet run its locked part will deliver. */
    if (d->timer && !ao_timer_cancel(d->b->bs->timers, d->timer, NULL)) d->timer_owes = 1;
    d->timer = 0;
    if (d->cancel_issued && o->error_class == EC(CANCELLED)) {
        if (d->cancel_class == EC(TIMEOUT)) {
            o->error_class = EC(TIMEOUT);
            o->retryable = 1;
            snprintf(o->error, sizeof o->error, "attempt timed out after %u ms (agent %s)",
                     d->timeout_ms, d->agent);
        } else {
            snprintf(o->error, sizeof o->error, "cancelled");
        }
    }
    if (o->result && o->result->usage) hold_usage(o->result->usage);
    account(d->b, d, o, started);
    d->deferred_outcome = ao_xmalloc(sizeof *o);
    *d->deferred_outcome = *o; /* ownership of o->result moves with it */
    d->deferred = 1;
    int fire = take_deferred(d);
    pthread_mutex_unlock(&d->lock);
    if (fire) deliver(d);
}

static void on_agent_done(ao_agent_call_t *call, ao_agent_outcome_t *o)
{
    ao_dispatch_t *d = (ao_dispatch_t *)call;
    pthread_mutex_lock(&d->lock);
    if (d->state == D_DONE) {
        pthread_mutex_unlock(&d->lock);
        ao_fatal("agent %s completed attempt %s twice", d->agent,
                 call->task ? call->task->attempt_id : "(done)");
    }
    finish_and_unlock(d, o, 1);
}

static void complete_now(ao_dispatch_t *d, int cls, int retryable, const char *msg, int started)
{
    ao_agent_outcome_t o;
    memset(&o, 0, sizeof o);
    o.error_class = cls;
    o.retryable = retryable;
    o.not_made = 1; /* every caller completes a call the agent never saw */
    snprintf(o.error, sizeof o.error, "%s", msg);
    pthread_mutex_lock(&d->lock);
    finish_and_unlock(d, &o, started);
}

static void on_timeout(void *ud);

/* Calls the backend's start or cancel under d->lock (held by the caller),
 * then lets go of the lock. A backend may complete the call inside (same
 * thread, the lock is recursive): that completion is delivered only here,
 * after the layer's last touch of d. */
static void call_backend_and_unlock(ao_dispatch_t *d, int start)
{
    backend_t *b = d->b;
    d->in_backend++;
    if (start) b->agent->ops->start(b->agent, &d->call);
    else b->agent->ops->cancel(b->agent, &d->call);
    d->in_backend--;
    /* The timeout is armed once start has returned, and only if the call
     * still runs: one that completed inside start (a builtin) costs no
     * timer. Nothing completes it in between: d->lock is held throughout. */
    if (start && d->state == D_IN_FLIGHT && d->timeout_ms) {
        uint64_t spent_ms = (uint64_t)(ao_mono_us() - d->started_us) / 1000;
        uint32_t left = spent_ms < d->timeout_ms ? d->timeout_ms - (uint32_t)spent_ms : 1;
        d->timer = ao_timer_add(b->bs->timers, left, on_timeout, d);
    }
    int fire = take_deferred(d);
    pthread_mutex_unlock(&d->lock);
    if (fire) deliver(d);
}

/* ---- starting ---------------------------------------------------------------- */

static void on_timeout(void *ud)
{
    ao_dispatch_t *d = ud;
    pthread_mutex_lock(&d->lock);
    d->timer = 0;
    if (d->timer_owes) {
        /* The call finished after this timer fired: deliver its outcome. */
        d->timer_owes = 0;
        int fire = take_deferred(d);
        pthread_mutex_unlock(&d->lock);
        if (fire) deliver(d);
        return;
    }
    if (d->state == D_IN_FLIGHT && !d->cancel_issued) {
        d->cancel_issued = 1;
        d->cancel_class = EC(TIMEOUT);
        call_backend_and_unlock(d, 0);
        return;
    }
    pthread_mutex_unlock(&d->lock);
}

static void start_job(void *ud)
{
    ao_dispatch_t *d = ud;
    pthread_mutex_lock(&d->lock);
    if (d->cancel_issued) {
        pthread_mutex_unlock(&d->lock);
        complete_now(d, EC(CANCELLED), 0, "cancelled", 1);
        return;
    }
    d->state = D_IN_FLIGHT;
    d->started_us = ao_mono_us();
    d->call.timeout_ms = d->timeout_ms;
    d->call.done = on_agent_done;
    call_backend_and_unlock(d, 1);
}

/* A slot is reserved (in_flight counted): check the breaker, then start,
 * on the pool, or here when its start is cheap and this is its submitter
 * (may_inline; never from a completion, which would recurse through the
 * queue). */
static void start_dispatch(backend_t *b, ao_dispatch_t *d, int may_inline)
{
    int is_probe = 0;
    ao_breaker_change_t ch;
    pthread_mutex_lock(&b->lock);
    int allowed = ao_breaker_allow(&b->breaker, ao_now_ms(), &is_probe, &ch);
    uint32_t failures = b->breaker.failures;
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_lock(&d->lock);
    add_change(d, &ch);
    d->is_probe = is_probe;
    if (!allowed) {
        pthread_mutex_unlock(&d->lock);
        pthread_mutex_lock(&b->lock);
        b->in_flight--;
        ao_dispatch_t *next = b->in_flight < b->cfg->max_concurrency ? ao_fairq_pop(b->queue) : NULL;
        if (next) b->in_flight++;
        pthread_mutex_unlock(&b->lock);
        char msg[200];
        snprintf(msg, sizeof msg,
                 "circuit breaker of agent %s is open after %u consecutive failures", b->cfg->name,
                 failures);
        complete_now(d, EC(CIRCUIT_OPEN), 1, msg, 0);
        if (next) start_dispatch(b, next, 0);
        return;
    }
    d->state = D_STARTING;
    int now = may_inline && !d->no_inline && b->agent->ops->cheap_start && b->agent->ops->cheap_start(b->agent, &d->call);
    pthread_mutex_unlock(&d->lock);
    if (now) start_job(d);
    else ao_pool_submit(b->bs->pool, d->fair_key, start_job, d);
}

int ao_backends_submit(ao_backends_t *bs, ao_dispatch_t *d)
{
    backend_t *b = find(bs, d->agent);
    if (!b) return AO_ENOTFOUND;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&d->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    d->b = b;
    d->state = D_NEW;
    d->cancel_issued = 0;
    d->is_probe = 0;
    d->timer = 0;
    d->n_changes = 0;
    d->in_backend = 0;
    d->timer_owes = 0;
    d->deferred = 0;
    d->deferred_outcome = NULL;
    if (!d->timeout_ms) d->timeout_ms = b->cfg->default_timeout_ms;

    pthread_mutex_lock(&b->lock);
    if (b->in_flight < b->cfg->max_concurrency) {
        b->in_flight++;
        pthread_mutex_unlock(&b->lock);
        start_dispatch(b, d, 1);
        return 0;
    }
    if (ao_fairq_len(b->queue) >= b->cfg->max_queue) {
        pthread_mutex_unlock(&b->lock);
        char msg[200];
        snprintf(msg, sizeof msg, "agent %s: %u calls are already queued (max_queue)",
                 b->cfg->name, b->cfg->max_queue);
        complete_now(d, EC(UNAVAILABLE), 1, msg, 0);
        return 0;
    }
    d->state = D_QUEUED;
    ao_fairq_push(b->queue, d->fair_key, d);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

void ao_dispatch_fini(ao_dispatch_t *d)
{
    if (d->deferred_outcome) { /* never delivered */
        ao_pb_free(d->deferred_outcome->result);
        free(d->deferred_outcome);
        d->deferred_outcome = NULL;
    }
    pthread_mutex_destroy(&d->lock);
}

void ao_backends_cancel(ao_backends_t *bs, ao_dispatch_t *d)
{
    (void)bs;
    backend_t *b = d->b;
    /* Queued: take it out (under the backend's lock, which guards the
     * queue and the QUEUED state). */
    pthread_mutex_lock(&b->lock);
    int was_queued = d->state == D_QUEUED && ao_fairq_remove(b->queue, d->fair_key, d);
    pthread_mutex_unlock(&b->lock);
    if (was_queued) {
        complete_now(d, EC(CANCELLED), 0, "cancelled", 0);
        return;
    }
    pthread_mutex_lock(&d->lock);
    if (d->state != D_DONE && !d->cancel_issued) {
        d->cancel_issued = 1;
        d->cancel_class = EC(CANCELLED);
        if (d->state == D_IN_FLIGHT) {
            call_backend_and_unlock(d, 0);
            return;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---- health ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *sorted, size_t n, double p)
{
    if (!n) return 0;
    size_t i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n) i = n - 1;
    return sorted[i];
}

static Agentos__V1__AgentHealth *health_of(backend_t *b, const char *tenant)
{
    Agentos__V1__AgentHealth *h = ao_xmalloc(sizeof *h);
    agentos__v1__agent_health__init(h);
    ao_pb_set_str(&h->agent, b->cfg->name);
    h->kind = b->cfg->kind;
    double lat[LAT_WINDOW];
    pthread_mutex_lock(&b->lock);
    /* An open breaker past its reset timeout admits a probe: report it as
     * HALF_OPEN only once it has. */
    h->breaker = b->breaker.state;
    h->consecutive_failures = b->breaker.failures;
    h->in_flight = b->in_flight;
    h->queued = (uint32_t)ao_fairq_len(b->queue);
    h->max_concurrency = b->cfg->max_concurrency;
    h->calls_total = b->calls;
    h->failures_total = b->failures;
    size_t fails = 0;
    for (size_t i = 0; i < b->n_recent; i++) fails += b->recent_fail[i];
    h->error_rate = b->n_recent ? (double)fails / (double)b->n_recent : 0;
    size_t nl = b->n_lat;
    memcpy(lat, b->latency_ms, nl * sizeof *lat);
    if (tenant) {
        json_t *t = json_object_get(b->by_tenant, tenant);
        h->cost_micros = t ? json_integer_value(json_array_get(t, 0)) : 0;
        h->tokens = t ? (uint64_t)json_integer_value(json_array_get(t, 1)) : 0;
    } else {
        h->cost_micros = b->cost_micros;
        h->tokens = b->tokens;
    }
    h->opened_unix_ms = b->opened_unix_ms;
    pthread_mutex_unlock(&b->lock);
    qsort(lat, nl, sizeof *lat, cmp_double);
    h->latency_p50_ms = percentile(lat, nl, 0.50);
    h->latency_p99_ms = percentile(lat, nl, 0.99);
    return h;
}

int ao_backends_health(ao_backends_t *bs, const char *name, const char *tenant,
                       Agentos__V1__GetAgentHealthResponse *out, ao_status_t *st)
{
    if (name && *name) {
        backend_t *b = find(bs, name);
        if (!b) return ao_status_set(st, AO_ENOTFOUND, "no agent backend named \"%s\"", name);
        Agentos__V1__AgentHealth **slot = ao_pb_push(&out->agents, &out->n_agents, sizeof *slot);
        *slot = health_of(b, tenant);
        return 0;
    }
    for (size_t i = 0; i < bs->n; i++) {
        Agentos__V1__AgentHealth **slot = ao_pb_push(&out->agents, &out->n_agents, sizeof *slot);
        *slot = health_of(&bs->v[i], tenant);
    }
    return 0;
}

unsigned ao_backends_in_flight(ao_backends_t *bs)
{
    unsigned n = 0;
    for (size_t i = 0; i < bs->n; i++) {
        pthread_mutex_lock(&bs->v[i].lock);
        n += bs->v[i].in_flight;
        pthread_mutex_unlock(&bs->v[i].lock);
    }
    return n;
}
