/*
 * The asynchronous agent interface: how the executor runs one attempt of a
 * task on an agent backend without holding a thread while the agent works.
 *
 * A backend (builtin, https, openai, grpc) is an ao_agent_t made by its
 * kind's create function from an agentos.v1.AgentBackend config. The
 * executor fills an ao_agent_call_t and calls ops->start; the backend calls
 * call->done exactly once, from any thread (possibly before start returns),
 * with the outcome. ops->cancel asks an in-flight call to stop early; done
 * still follows exactly once (with ERROR_CLASS_CANCELLED unless the call
 * had already finished).
 *
 * Concurrency limits, circuit breakers, attempt timeouts and health
 * figures are the executor's (server/agents/backends.c), common to all
 * kinds; a backend also applies call->timeout_ms with its own transport's
 * deadline so that nothing outlives its attempt.
 */
#ifndef AO_AGENT_H
#define AO_AGENT_H

#include "agentos/v1/agent.pb-c.h"
#include "agentos/v1/config.pb-c.h"
#include "err.h"

#include <stdint.h>

typedef struct ao_agent ao_agent_t;
typedef struct ao_agent_call ao_agent_call_t;

/* What came of one attempt. */
typedef struct ao_agent_outcome {
    /* The agent's reply when the attempt succeeded at the transport level
     * and the reply parsed; NULL otherwise. Ownership passes to the done
     * callback (free with protobuf_c_message_free_unpacked(r, NULL)). A
     * reply whose `error` is set is a failure reported by the agent: the
     * backend sets error_class AGENT_ERROR and copies the error. */
    Agentos__V1__AgentResult *result;
    /* ERROR_CLASS_UNSPECIFIED on success. */
    Agentos__V1__ErrorClass error_class;
    /* The cause, for the task's error and the logs, e.g. "HTTP 503 from
     * https://host/agent", "certificate verify failed: unable to get local
     * issuer certificate", "reply is not JSON: ...". Never contains a
     * secret. */
    char error[512];
    /* Whether another attempt may succeed (decided by the backend from the
     * error: 429/5xx/timeouts/connection/TLS yes, other 4xx no; for
     * AGENT_ERROR, the agent's `retryable`). */
    int retryable;
    /* From a Retry-After header (or gRPC retry hint), 0 if none. */
    uint32_t retry_after_ms;
    /* HTTP status or gRPC status code of the reply, 0 if none. */
    int transport_status;
    /* Set by the executor's backend layer when the call never reached the
     * agent (its queue was full, its breaker open, or it was cancelled
     * before it started): nothing to pay, no API call made. */
    int not_made;
} ao_agent_outcome_t;

typedef void (*ao_agent_done_fn)(ao_agent_call_t *call, ao_agent_outcome_t *outcome);

/* One attempt. Owned by the caller, which keeps it (and task) alive until
 * done has returned. */
struct ao_agent_call {
    /* The request. Its attempt_id is sent as the idempotency key
     * (`Idempotency-Key` header, `idempotency-key` gRPC metadata). */
    const Agentos__V1__AgentTask *task;
    /* Per-attempt timeout in ms (0: none). */
    uint32_t timeout_ms;
    ao_agent_done_fn done;
    void *ud;
    /* Private to the backend while the call is in flight. */
    void *backend_data;
};

typedef struct ao_agent_ops {
    /* Starts the call. Must not block on the network. */
    void (*start)(ao_agent_t *agent, ao_agent_call_t *call);
    /* Asks an in-flight call to finish early (done follows). The executor
     * calls it at most once, never after done has returned, and holds the
     * call's lock across it; done takes that lock. So a backend may call
     * done from inside cancel (same thread), but must never call done
     * while holding a lock that its cancel takes. */
    void (*cancel)(ao_agent_t *agent, ao_agent_call_t *call);
    /* Frees the backend. Every call has completed. */
    void (*destroy)(ao_agent_t *agent);
    /* Optional (NULL: never). Whether start, for this call, is cheap and
     * never blocks: it costs microseconds and at most sets a timer (a
     * builtin agent, which computes its reply in process). The executor
     * then runs start on the submitting thread: handing that much work to
     * the pool and back costs more than the work. */
    int (*cheap_start)(const ao_agent_t *agent, const ao_agent_call_t *call);
} ao_agent_ops_t;

struct ao_agent {
    const ao_agent_ops_t *ops;
    /* The backend's configuration; owned by the server config, which
     * outlives the agent. */
    const Agentos__V1__AgentBackend *cfg;
    /* Private to the kind. */
    void *impl;
};

/* Reads a secret (AgentBackend.api_key): the first line of `file` (trailing
 * whitespace trimmed) or the environment variable `env`. *out is NULL when
 * neither is set; otherwise malloc'd, the caller frees it. Errors name the
 * file or variable, never the value. */
int ao_secret_load(const Agentos__V1__Secret *secret, char **out, ao_status_t *st);

#endif
