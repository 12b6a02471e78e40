/*
 * The agent backends as the executor sees them: every configured backend,
 * each with a concurrency limit and a fair queue, a circuit breaker shared
 * by all workflows, attempt timeouts, and health figures.
 *
 * A dispatch goes: queued (if the backend is at its limit; round-robin by
 * workflow) -> breaker check (fails at once with CIRCUIT_OPEN while open)
 * -> started on the worker pool (a call whose start is cheap, at once on
 * the submitting thread) -> in flight (no thread held) -> done,
 * exactly once, on whichever thread finished it.
 *
 * Thread-safe.
 */
#ifndef AO_BACKENDS_H
#define AO_BACKENDS_H

#include "agent.h"
#include "agentos/v1/orchestrator.pb-c.h"
#include "breaker.h"
#include "err.h"

#include <pthread.h>
#include <stdint.h>

struct ao_timers;
struct ao_pool;
typedef struct ao_backends ao_backends_t;
typedef struct ao_dispatch ao_dispatch_t;

/* The end of a dispatch. `changes` lists breaker state changes it caused
 * (0 to 2), for BREAKER_STATE_CHANGED events. The callee owns
 * outcome->result. */
typedef void (*ao_dispatch_done_fn)(ao_dispatch_t *d, ao_agent_outcome_t *outcome,
                                    const ao_breaker_change_t *changes, size_t n_changes);

struct ao_dispatch {
    /* Set by the caller. call.task is the request; the rest of `call` is
     * the layer's. */
    ao_agent_call_t call;
    const char *agent;    /* backend name */
    const char *fair_key; /* workflow id */
    uint32_t timeout_ms;  /* per attempt; 0: the backend's default */
    ao_dispatch_done_fn done;
    void *ud;
    /* Start on the pool even when the backend's start is cheap enough to run
     * on the submitting thread: the submitter has more to do (it starts
     * many calls at once). */
    int no_inline;

    /* Private. */
    pthread_mutex_t lock; /* recursive: a backend may finish inside start/cancel */
    struct backend *b;
    int state;
    int cancel_issued;
    int cancel_class;
    int is_probe;
    uint64_t timer;
    int64_t started_us;
    ao_breaker_change_t changes[2];
    size_t n_changes;
    /* done may free the dispatch, so it is delivered only when nothing else
     * can touch it: not while the layer is inside the backend's start or
     * cancel (in_backend), and not while the timeout callback has fired
     * but not yet taken the lock (timer_owes). Until then the outcome
     * waits in deferred_outcome (allocated apart: a dispatch is embedded
     * in its caller's per-attempt struct, which stays small). */
    int in_backend;
    int timer_owes;
    int deferred;
    ao_agent_outcome_t *deferred_outcome;
};

int ao_backends_create(const Agentos__V1__ServerConfig *cfg, struct ao_timers *timers,
                       struct ao_pool *pool, ao_backends_t **out, ao_status_t *st);
/* Frees the backends. Every dispatch has completed. */
void ao_backends_destroy(ao_backends_t *bs);

/* Submits an attempt (d must live until done returns). AO_ENOTFOUND if the
 * agent is unknown (done is not called then). */
int ao_backends_submit(ao_backends_t *bs, ao_dispatch_t *d);

/* Releases what submit set up in d, after its done has returned. */
void ao_dispatch_fini(ao_dispatch_t *d);

/* Asks an attempt to stop (our own cancellation: never counted against the
 * backend). done follows with ERROR_CLASS_CANCELLED unless it finished
 * first. Safe at any time before done has returned. */
void ao_backends_cancel(ao_backends_t *bs, ao_dispatch_t *d);

/* Health of one backend (name) or all (NULL/""), appended to out->agents.
 * Spend and tokens are those of `tenant`'s calls (NULL: every tenant's, for
 * the operator's metrics); the rest (breaker, load, errors, latency) is the
 * backend's, shared by all. AO_ENOTFOUND for an unknown name. */
int ao_backends_health(ao_backends_t *bs, const char *name, const char *tenant,
                       Agentos__V1__GetAgentHealthResponse *out, ao_status_t *st);

/* Calls in flight over all backends. */
unsigned ao_backends_in_flight(ao_backends_t *bs);

/* The most one call may report or cost: token and document counts above
 * AO_USAGE_REPORT_MAX are taken as that many (a trillion), a cost above
 * AO_COST_MAX_MICROS (a billion USD) as that much, so that sums over
 * workflows and tenants stay exact numbers. A dispatch's outcome carries
 * its result's usage so held, with total_tokens filled in. */
#define AO_USAGE_REPORT_MAX 1000000000000ull
#define AO_COST_MAX_MICROS 1000000000000000ll

/* What a call cost, in micro-USD, from the backend's price and the usage
 * the agent reported (0 to AO_COST_MAX_MICROS). */
int64_t ao_price_cost(const Agentos__V1__Price *price, const Agentos__V1__Usage *usage);

#endif
