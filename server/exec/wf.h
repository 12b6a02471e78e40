/*
 * A workflow's state and the one function that changes it: ao_wf_apply,
 * which applies an event. The state is an agentos.v1.Workflow message (what
 * snapshots store and GetWorkflow returns) plus indexes derived from it
 * (task ids, dependencies, dependents, counters), rebuilt on load.
 *
 * Applying is deterministic: the same events give the same state, live, at
 * recovery and when a past state is rebuilt for debugging. Applying also
 * notes what the scheduler should look at next (tasks that became ready,
 * tasks to skip, refinement stages that finished); those work lists are
 * hints, checked again when used.
 *
 * Threads: a workflow belongs to one thread at a time (the processor's, or
 * the thread rebuilding a past state).
 */
#ifndef AO_WF_H
#define AO_WF_H

#include "agentos/v1/event.pb-c.h"
#include "agentos/v1/state.pb-c.h"
#include "err.h"

#include <jansson.h>
#include <stdint.h>

struct ao_attempt;

typedef struct ao_task {
    /* Points into wf->pb->tasks[i]. */
    Agentos__V1__TaskState *st;
    uint32_t *deps;
    uint32_t n_deps;
    uint32_t *dependents;
    uint32_t n_dependents, cap_dependents;
    /* Dependencies not yet settled. */
    uint32_t unmet;
    /* Generated subtasks (planner, refinement) not yet settled. */
    uint32_t open_children;
    /* Index of the parent task, or -1. */
    int32_t parent;
    /* Settled: terminal, and for a success with its subtasks settled. */
    uint8_t settled;
    /* Runtime, not state (processor thread only): the attempt in flight and
     * the pending retry timer. */
    struct ao_attempt *inflight;
    uint64_t timer;
    /* The task state packed (NULL: not yet, or changed since): snapshots
     * and checkpoints reuse it, so that a task that no longer changes is
     * packed once, not at every checkpoint. ao_wf_apply drops it whenever
     * an event changes the task. */
    uint8_t *packed;
    size_t packed_len;
    /* Its spec packed: specs do not change while the index lives (a resume
     * changes them before it rebuilds the index), so the task state is
     * packed around these bytes. */
    uint8_t *spec_packed;
    size_t spec_packed_len;
} ao_task_t;

/* A list of task indexes. */
typedef struct ao_idxlist {
    uint32_t *v;
    size_t n, cap;
} ao_idxlist_t;

typedef struct ao_wf {
    Agentos__V1__Workflow *pb;
    ao_task_t *tasks;
    size_t cap_tasks;
    /* task id -> index: open addressing with linear probing, at most half
     * full. A slot holds the id's hash and the task's index + 1 (0: an
     * empty slot); the ids are the tasks' own (tasks[i].st->spec->id). */
    struct ao_task_slot {
        uint32_t hash, task;
    } * index;
    uint32_t index_cap; /* slots: a power of two, or 0 */
    uint32_t index_n;
    uint32_t n_terminal;
    uint32_t n_running;
    /* Work lists for the scheduler. */
    ao_idxlist_t ready;
    ao_idxlist_t to_skip;
    ao_idxlist_t stage_done;
    /* Whether the scheduler should look at this workflow. */
    int dirty;
    /* Runtime, owned by the scheduler. */
    void *rt;
    /* If set, told of every change to the workflow's usage after it (the
     * engine's sums by tenant): u added for `agent`, or u NULL: one API
     * call of `agent` taken back (an attempt that made none). */
    void (*usage_sink)(void *ud, const char *agent, const Agentos__V1__Usage *u);
    void *usage_ud;
    /* Frozen (ao_wf_freeze): pb holds only its summary, tasks and indexes
     * are gone; frozen_tasks is its task count. */
    int frozen;
    uint32_t frozen_tasks;
} ao_wf_t;

struct ao_pool;

/* Builds a workflow from its WORKFLOW_SUBMITTED event. AO_EINVAL if the
 * event is not one. The caller owns the result (ao_wf_free). */
int ao_wf_create(const Agentos__V1__Event *submitted, ao_wf_t **out, ao_status_t *st);
/* ao_wf_create in two steps, the first on any thread: the workflow of a
 * spec (copied, a large one with the help of pool's threads if pool is
 * not NULL; id may be "" until bound), then bound to its
 * WORKFLOW_SUBMITTED event (id, tenant, times, sequence number). */
int ao_wf_new(const Agentos__V1__WorkflowSpec *spec, const char *id, const char *request_id,
              struct ao_pool *pool, ao_wf_t **out, ao_status_t *st);
void ao_wf_bind(ao_wf_t *wf, const Agentos__V1__Event *submitted);
/* Records the digest of the workflow's WORKFLOW_SUBMITTED payload (packed)
 * if it has a request_id: a later submission with that request_id must
 * carry the same bytes. */
void ao_wf_set_submission(ao_wf_t *wf, const void *payload, size_t len);

/* Builds a workflow from a snapshot (takes ownership of pb). AO_ECORRUPT if
 * its tasks are inconsistent. */
int ao_wf_from_snapshot(Agentos__V1__Workflow *pb, ao_wf_t **out, ao_status_t *st);

void ao_wf_free(ao_wf_t *wf);

/* Applies one event of this workflow. AO_ECORRUPT if the event does not fit
 * the state (unknown task, wrong workflow). */
int ao_wf_apply(ao_wf_t *wf, const Agentos__V1__Event *ev, ao_status_t *st);
/* The same, for an event already packed whose parts the caller gives up:
 * the state takes them rather than copies (WORKFLOW_COMPLETED's result,
 * which is then NULL in ev). */
int ao_wf_apply_taking(ao_wf_t *wf, Agentos__V1__Event *ev, ao_status_t *st);

/* Task i's state packed (agentos.v1.TaskState), cached until the task
 * changes; borrowed, valid until the next ao_wf_apply. */
const uint8_t *ao_wf_task_packed(ao_wf_t *wf, uint32_t i, size_t *len);

/* Packs into the cache the states of tasks idx[0..n) (idx NULL: tasks
 * 0..n) that are not there yet, with pool jobs packing chunks of them
 * beside the caller, and returns once all are packed: a large final
 * checkpoint no longer packs every task on the processor alone. Few tasks
 * (or no pool): nothing; ao_wf_pack_with_tasks packs them inline. The
 * caller owns wf and changes nothing of it meanwhile; the jobs touch only
 * the tasks they claim. */
void ao_wf_pack_tasks_shared(ao_wf_t *wf, const uint32_t *idx, size_t n, struct ao_pool *pool);

/* m (a message that holds task states in its repeated field `field`)
 * packed with that field's entries taken from the cache: tasks idx[0..n)
 * of wf (idx NULL: tasks 0..n-1), whatever the field holds in m. Returns
 * malloc'd bytes (caller frees) and their length in *len. */
uint8_t *ao_wf_pack_with_tasks(ao_wf_t *wf, ProtobufCMessage *m, const char *field,
                               const uint32_t *idx, size_t n, size_t *len);

/* The workflow packed as an agentos.v1.Workflow (what snapshots hold),
 * with its tasks from the cache (see ao_wf_pack_with_tasks). */
uint8_t *ao_wf_pack(ao_wf_t *wf, size_t *len);

/* The tasks a resume from checkpoint c keeps: those completed in it whose
 * dependencies are all kept too (a task whose input is made again runs
 * again). A map of task id -> const Agentos__V1__TaskState * (the
 * checkpoint's, as a json integer); the caller json_decref's it. */
json_t *ao_wf_resume_kept(const Agentos__V1__Checkpoint *c);

/* The index of a task, or -1. */
int32_t ao_wf_find(const ao_wf_t *wf, const char *task_id);
static inline size_t ao_wf_ntasks(const ao_wf_t *wf)
{
    return wf->pb->n_tasks;
}

/* Whether a status is terminal (SUCCEEDED, FAILED, SKIPPED, CANCELLED). */
int ao_task_terminal(int status);
/* Whether a workflow status is terminal. */
int ao_wf_status_terminal(int status);

/* The task's authority weight (spec.authority, 1.0 when unset). */
double ao_task_authority(const Agentos__V1__TaskState *t);
/* The task's budget role (spec.role, else by kind). */
int ao_task_role(const Agentos__V1__TaskState *t);

/* Adds u to *acc. */
void ao_usage_add(Agentos__V1__Usage **acc, const Agentos__V1__Usage *u);
/* Takes back one API call counted in u (an attempt that made none). */
void ao_usage_take_back_call(Agentos__V1__Usage *u);

/* Rebuilds every index from wf->pb (after a snapshot load or a reset). */
int ao_wf_rebuild(ao_wf_t *wf, ao_status_t *st);

/* A finished workflow reduced to its summary: id, tenant, request id and
 * submission digest, status, times, last_seq, usage, the spec's name and
 * labels, the task count and how many are done. Its whole state is its
 * snapshot in the log; ao_wf_thaw puts it back from there. */
void ao_wf_freeze(ao_wf_t *wf);
/* Makes a frozen workflow whole again from its snapshot's state (takes
 * pb). AO_ECORRUPT if it is not this workflow's, or inconsistent; wf stays
 * frozen then. */
int ao_wf_thaw(ao_wf_t *wf, Agentos__V1__Workflow *pb, ao_status_t *st);
/* The task count, frozen or not. */
static inline size_t ao_wf_tasks_total(const ao_wf_t *wf)
{
    return wf->frozen ? wf->frozen_tasks : wf->pb->n_tasks;
}

void ao_idxlist_push(ao_idxlist_t *l, uint32_t v);

#endif
