/*
 * The engine: every workflow's state and the decisions made on it, on the
 * processor thread. A task starts the moment its last dependency settles
 * (no level-by-level barriers); retries, fallbacks, timeouts, budgets,
 * breakers, plans, sync points, syntheses, refinement stages, strategy,
 * cancellation, checkpoints and recovery are all decided here, each
 * decision an event through the processor.
 *
 * Threads: ao_engine_create/recover/start/stop/destroy on the main thread;
 * functions marked (P) on the processor thread only (inside work posted
 * with ao_proc_post); the rest from any thread.
 */
#ifndef AO_ENGINE_H
#define AO_ENGINE_H

#include "agentos/v1/config.pb-c.h"
#include "agentos/v1/orchestrator.pb-c.h"
#include "err.h"
#include "processor.h"
#include "wf.h"

struct ao_backends;
struct ao_pool;
struct ao_timers;

typedef struct ao_engine ao_engine_t;

typedef struct ao_engine_options {
    const Agentos__V1__ServerConfig *cfg;
    ao_log_t *log;
    struct ao_backends *backends;
    struct ao_timers *timers;
    /* Helps pack the task states of large checkpoints (NULL: the processor
     * packs alone). */
    struct ao_pool *pool;
    /* Receives committed batches (the hub), after the engine's own use. */
    ao_proc_publish_fn publish;
    void *publish_ud;
    /* Told of every workflow at recovery (the hub's ownership map). */
    void (*workflow_loaded)(void *ud, const char *workflow_id, const char *tenant);
    void *loaded_ud;
} ao_engine_options_t;

/* Creates the engine and its processor (not yet running). */
ao_engine_t *ao_engine_create(const ao_engine_options_t *opt);

/* Loads every workflow from the log: snapshots, then the tail of each
 * unfinished one. A finished workflow whose final checkpoint is missing
 * (the process stopped between its result and that checkpoint, which is
 * taken in the processor's next turn) gets it in the first turn.
 * AO_ECORRUPT (naming the event) if something does not decode or apply.
 * Before ao_engine_start. */
int ao_engine_recover(ao_engine_t *e, ao_status_t *st);

/* Starts the processor; unfinished workflows continue (a task that was
 * running at the crash runs again with a new attempt id). */
void ao_engine_start(ao_engine_t *e);

/* Answers every client waiting for a workflow to finish (ao_engine_watch)
 * now, before the RPC server shuts down: they get UNAVAILABLE and the
 * workflows continue at the next start. Main thread. */
void ao_engine_release_waiters(ao_engine_t *e);

/* Stops: in-flight agent calls are abandoned without events (their tasks
 * run again at the next start), the processor commits what it has and
 * stops. Waiters still registered are failed UNAVAILABLE. */
void ao_engine_stop(ao_engine_t *e);
void ao_engine_destroy(ao_engine_t *e);

ao_proc_t *ao_engine_proc(ao_engine_t *e);
/* Workflows not yet finished. Any thread. */
unsigned ao_engine_active(ao_engine_t *e);
const Agentos__V1__ServerConfig *ao_engine_config(ao_engine_t *e);
struct ao_backends *ao_engine_backends(ao_engine_t *e);

/* The part of a submission that needs only the spec and the config, done
 * on the caller's thread so that the processor only gives the workflow its
 * place in the log: the workflow's id made, the backends' default roles
 * filled in, the WORKFLOW_SUBMITTED payload packed, the workflow's state
 * built with its tasks' specs packed. spec must have passed
 * ao_dag_validate; it is copied, not kept. Any thread; free with
 * ao_submission_free unless submitted. */
typedef struct ao_submission ao_submission_t;
ao_submission_t *ao_engine_prepare(ao_engine_t *e, const Agentos__V1__WorkflowSpec *spec,
                                   const char *request_id);
void ao_submission_free(ao_submission_t *s);

/* ---- on the processor thread (P) ------------------------------------ */

/* (P) The workflow, if it exists and belongs to tenant; else NULL with st
 * NOT_FOUND. */
ao_wf_t *ao_engine_find(ao_engine_t *e, const char *id, const char *tenant, ao_status_t *st);

/* (P) Submits a validated spec. If tenant+request_id matches an earlier
 * submission, returns that workflow with *dedup = 1. AO_ELIMIT past
 * Limits.max_active_workflows. *seq is the WORKFLOW_SUBMITTED event. */
int ao_engine_submit(ao_engine_t *e, const char *tenant, const Agentos__V1__WorkflowSpec *spec,
                     const char *request_id, ao_wf_t **wf, uint64_t *seq, int *dedup,
                     ao_status_t *st);
/* (P) The same for a prepared submission, which it takes (submitted or
 * not). */
int ao_engine_submit_prepared(ao_engine_t *e, const char *tenant, ao_submission_t *sub, ao_wf_t **wf,
                              uint64_t *seq, int *dedup, ao_status_t *st);

/* (P) Requests cancellation (CANCEL_REQUESTED). AO_ESTATE if finished. */
int ao_engine_cancel(ao_engine_t *e, ao_wf_t *wf, const char *reason, ao_status_t *st);

/* (P) Resumes a finished, non-successful workflow from a checkpoint (NULL:
 * its latest state). Overrides name tasks and agents that must exist.
 * Called once the state is the log's (from an ao_proc_after_commit
 * callback): clients waiting for the result it replaces are answered. */
int ao_engine_resume(ao_engine_t *e, ao_wf_t *wf, const Agentos__V1__Checkpoint *from,
                     Agentos__V1__TaskOverride *const *overrides, size_t n_overrides,
                     const Agentos__V1__Budget *budget, uint64_t *seq, ao_status_t *st);

/* (P) Takes a checkpoint now (reason "manual", "auto" or "final"), stored
 * with the current batch. *out (optional) receives a copy the caller
 * frees. */
int ao_engine_checkpoint(ao_engine_t *e, ao_wf_t *wf, const char *reason, const char *note,
                         Agentos__V1__Checkpoint **out, ao_status_t *st);

/* (P) Publishes an application event into a running workflow. */
int ao_engine_publish(ao_engine_t *e, ao_wf_t *wf, const Agentos__V1__PublishEventRequest *req,
                      uint64_t *seq, ao_status_t *st);

/* (P) Calls fn(ud, wf) once the workflow has finished (at once, after the
 * current commit, if it already has). Returns a handle for
 * ao_engine_unwatch. */
typedef void (*ao_engine_watch_fn)(void *ud, ao_wf_t *wf);
void *ao_engine_watch(ao_engine_t *e, ao_wf_t *wf, ao_engine_watch_fn fn, void *ud);
/* (P) Removes a watch that has not fired; returns 1 if removed. */
int ao_engine_unwatch(ao_engine_t *e, ao_wf_t *wf, void *handle);

/* (P) The usage of all the tenant's workflows, summed as it changes
 * (borrowed: valid until the processor's next event; NULL and 0 when the
 * tenant has none): the total and the split by agent. */
void ao_engine_tenant_usage(ao_engine_t *e, const char *tenant, const Agentos__V1__Usage **total,
                            Agentos__V1__AgentUsage *const **agents, size_t *n_agents);
/* (P) Makes a frozen workflow whole again from its snapshot (finished
 * workflows past storage.max_finished_in_memory are frozen when unused):
 * whoever holds a workflow across a processor turn calls it before reading
 * the state. ao_engine_find does. AO_ECORRUPT (or the log's error) if the
 * snapshot cannot be read. */
int ao_engine_whole(ao_engine_t *e, ao_wf_t *wf, ao_status_t *st);
/* (P) Iterates the workflows of a tenant, newest first, from after the one
 * named `after` (NULL: from the newest). fn returns nonzero to stop. */
void ao_engine_list(ao_engine_t *e, const char *tenant, const char *after,
                    int (*fn)(void *ud, ao_wf_t *wf), void *ud);

/* Rebuilds a workflow's state as it was after event at_seq (event replay
 * for debugging), reading the log. Any thread (reads only durable
 * events). The caller frees *out with ao_wf_free. */
int ao_engine_state_at(ao_log_t *log, const char *workflow_id, uint64_t at_seq, ao_wf_t **out,
                       ao_status_t *st);

#endif
