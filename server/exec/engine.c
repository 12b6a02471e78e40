/*
 * The engine. See engine.h.
 *
 * Threads: everything here runs on the processor thread, except the
 * backend completion callback (which keeps the outcome, checks and packs a
 * good reply, and posts it back), timer callbacks (which only post),
 * ao_engine_prepare (the submitter's thread: it reads only the config),
 * the pool jobs that free retired attempts, create/recover/start/stop/
 * destroy (main thread, before the processor runs or after it stopped), and
 * ao_engine_state_at (any thread, reading the log).
 */
#include "engine.h"

#include "backends.h"
#include "budget.h"
#include "dag.h"
#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "pbutil.h"
#include "pool.h"
#include "result.h"
#include "strategy.h"
#include "synthesis.h"
#include "template.h"
#include "timer.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x
#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define ET(x) AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_##x
#define KIND(x) AGENTOS__V1__TASK_KIND__TASK_KIND_##x
#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x
#define PAY(x) AGENTOS__V1__EVENT__PAYLOAD_##x
#define BP(x) AGENTOS__V1__BUDGET_POLICY__BUDGET_POLICY_##x
#define DIM(x) AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_##x

typedef struct watch {
    struct watch *next;
    ao_engine_watch_fn fn;
    void *ud;
} watch_t;

/* Per-workflow runtime (not state). */
typedef struct wf_rt {
    watch_t *watches;
    int final_due;
    int in_deferred;
    uint64_t wall_timer[2];
    int in_dirty;
    int any_findings;
    /* Attempts made whose completion the processor has not taken. */
    uint32_t live_attempts;
    /* Last looked up or finished (ms): finished workflows unused the
     * longest are frozen first. */
    int64_t last_used_ms;
    /* Its place in e->done + 1, or 0. */
    size_t done_pos;
} wf_rt_t;

/* What the engine keeps per tenant, so that ListWorkflows walks neither
 * other tenants' workflows nor every workflow the tenant ever ran: its
 * workflows in creation order; its usage, summed as its workflows' usage
 * changes (each workflow tells it through its usage sink); and how many
 * of its workflows are unfinished (limits.max_active_workflows).
 * Processor thread (and recovery, before it starts). */
typedef struct tenant {
    ao_wf_t **order;
    size_t n_order, cap_order;
    Agentos__V1__Usage *total;
    Agentos__V1__AgentUsage **agents;
    size_t n_agents;
    size_t active;
} tenant_t;

struct ao_engine {
    const Agentos__V1__ServerConfig *cfg;
    ao_dag_env_t env;
    ao_proc_t *proc;
    ao_log_t *log;
    ao_backends_t *backends;
    ao_timers_t *timers;
    ao_pool_t *pool;
    ao_proc_publish_fn publish;
    void *publish_ud;
    void (*workflow_loaded)(void *ud, const char *id, const char *tenant);
    void *loaded_ud;

    json_t *wfs;      /* id -> ao_wf_t* */
    json_t *requests; /* tenant 0x1f request_id -> workflow id */
    json_t *tenants;  /* tenant -> tenant_t*: its workflows in order, their usage summed */
    ao_wf_t **order;  /* creation order */
    size_t n_order, cap_order;
    ao_wf_t **dirty;
    size_t n_dirty, cap_dirty;
    /* Attempts started in the current batch (of batch dispatch_batch): the
     * first may start on the processor thread when its start is cheap
     * (a chain's next step, at no hand-off), the others go to the pool
     * (a fan-out's builtins run beside the processor, not on it). */
    uint64_t dispatch_batch;
    unsigned dispatch_n;
    /* Tasks a tick may still start: a workflow with more ready tasks than
     * that goes on in the next tick, after the processor has handed this
     * batch to the log writer (its dispatches then start while the rest
     * are being started). */
    unsigned starts_left;
    ao_wf_t **deferred;
    size_t n_deferred, cap_deferred;
    /* Those paused in the last tick: stepped first in the next. */
    ao_wf_t **paused;
    size_t n_paused, cap_paused;
    /* Finished workflows whose final checkpoint is due (final_due). */
    ao_wf_t **finals;
    size_t n_finals, cap_finals;
    /* When finished workflows were last looked at for freezing (ms). */
    int64_t last_freeze_ms;
    /* Finished workflows that may be whole (some resumed or frozen since:
     * the freezing pass drops those), so that the pass need not walk every
     * workflow. */
    ao_wf_t **done;
    size_t n_done, cap_done;
    /* Finished attempts, freed after the tick (retire). */
    struct attempt **retired;
    size_t n_retired, cap_retired;
    int stopping;

    atomic_uint inflight;
    atomic_uint active;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

/* One attempt of a task on an agent backend. */
typedef struct attempt {
    ao_dispatch_t d; /* first: the dispatch's done gets the attempt */
    ao_engine_t *e;
    ao_wf_t *wf;
    uint32_t task;
    const char *attempt_id; /* the request's */
    const char *agent;      /* the request's */
    Agentos__V1__AgentTask *req;
    int submitted;
    int abandoned;
    int64_t start_us;
    ao_agent_outcome_t *outcome; /* set when the call ends (apart: attempts stay small) */
    ao_breaker_change_t changes[2];
    size_t n_changes;
    /* A good reply, checked (check_output) and packed on the thread that
     * completed the call, for TASK_SUCCEEDED's payload: the processor does
     * not pack it again. Not for planners, whose plan the processor
     * changes. */
    int checked;
    uint8_t *result_packed;
    size_t result_len;
} attempt_t;

/* A pending timer's context: a retry, or a wall-time budget check. */
typedef struct tctx {
    ao_engine_t *e;
    ao_wf_t *wf;
    uint32_t task;
    uint32_t attempts; /* the task's attempts when the retry was scheduled */
    int kind;          /* 0: retry, 1: wall-time check */
    int slot;
} tctx_t;

static wf_rt_t *rt(ao_wf_t *wf)
{
    if (!wf->rt) wf->rt = ao_xcalloc(1, sizeof(wf_rt_t));
    return wf->rt;
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, size_t strip)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name + strip : "?";
}

static void done_add(ao_engine_t *e, ao_wf_t *wf);
static tenant_t *tenant_of(ao_engine_t *e, const char *tenant);

/* Appends wf to a list of workflows (v, n, cap). */
static void push_wf(ao_wf_t ***v, size_t *n, size_t *cap, ao_wf_t *wf)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = ao_xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = wf;
}

static void mark_dirty(ao_engine_t *e, ao_wf_t *wf)
{
    wf_rt_t *r = rt(wf);
    if (r->in_dirty) return;
    r->in_dirty = 1;
    push_wf(&e->dirty, &e->n_dirty, &e->cap_dirty, wf);
}

/* Emits an event of wf (filling workflow, tenant) and applies it. Events
 * the engine makes always apply: a failure is a bug. */
/* take: the state may take ev's parts (ao_wf_apply_taking). payload: its
 * payload packed already (ao_proc_emit_packed), or NULL. */
static uint64_t emit_event(ao_engine_t *e, ao_wf_t *wf, Agentos__V1__Event *ev, int take,
                           const uint8_t *payload, size_t len)
{
    ev->workflow_id = wf->pb->id;
    ev->tenant = wf->pb->tenant;
    uint64_t seq = payload ? ao_proc_emit_packed(e->proc, ev, payload, len) : ao_proc_emit(e->proc, ev);
    ao_status_t st;
    if ((take ? ao_wf_apply_taking(wf, ev, &st) : ao_wf_apply(wf, ev, &st))) ao_fatal("applying event %llu failed: %s", (unsigned long long)seq, st.msg);
    if (ev->type == ET(TASK_SUCCEEDED) && ev->task_succeeded && ev->task_succeeded->result &&
        ev->task_succeeded->result->n_findings)
        rt(wf)->any_findings = 1;
    if (ev->type == ET(FINDING_PUBLISHED) || ev->type == ET(SYNC_POINT_REACHED)) rt(wf)->any_findings = 1;
    if (ev->type == ET(TASK_SUCCEEDED)) AO_METRIC_INC(tasks_succeeded);
    mark_dirty(e, wf);
    return seq;
}

static uint64_t emit(ao_engine_t *e, ao_wf_t *wf, Agentos__V1__Event *ev)
{
    return emit_event(e, wf, ev, 0, NULL, 0);
}

#define EVENT(name, t, task_)                                                                      \
    Agentos__V1__Event name = AGENTOS__V1__EVENT__INIT;                                            \
    name.type = (t);                                                                               \
    name.task_id = (char *)((task_) ? (task_) : "")

static void set_parent(Agentos__V1__Event *ev, const Agentos__V1__TaskState *t)
{
    ev->parent_task_id = t->parent_task_id;
    ev->agent_id = t->agent;
}

/* ---- lookups ---------------------------------------------------------------- */

static const Agentos__V1__AgentBackend *backend_cfg(ao_engine_t *e, const char *name)
{
    for (size_t i = 0; i < e->cfg->n_agents; i++)
        if (!strcmp(e->cfg->agents[i]->name, name)) return e->cfg->agents[i];
    return NULL;
}

/* The budget role a task is counted under, fixed when the task enters the
 * workflow (so that replaying its events never depends on the config of
 * the day): its own, else its kind's (synthesis, planner), else its
 * backend's default (AgentBackend.role), else analysis at apply time. */
static int default_role(ao_engine_t *e, const Agentos__V1__TaskSpec *t)
{
    if (t->role || t->kind == KIND(SYNTHESIS) || t->kind == KIND(PLANNER)) return t->role;
    const Agentos__V1__AgentBackend *b = *t->agent ? backend_cfg(e, t->agent) : NULL;
    return b ? b->role : 0;
}

static const char *context_value(const ao_wf_t *wf, const char *key)
{
    const Agentos__V1__WorkflowSpec *s = wf->pb->spec;
    for (size_t i = 0; s && i < s->n_context; i++)
        if (!strcmp(s->context[i]->key, key)) return s->context[i]->value;
    return NULL;
}

/* Findings visible to task i: those of its settled ancestors (through
 * dependencies and parents) and the workflow's, merged (conflicts resolved
 * by confidence x authority). Returns borrowed pointers; *n set. */
static const Agentos__V1__Finding **visible_findings(ao_wf_t *wf, uint32_t i, size_t *n)
{
    *n = 0;
    if (!rt(wf)->any_findings && wf->pb->n_findings == 0) return NULL;
    size_t nt = ao_wf_ntasks(wf);
    uint8_t *seen = ao_xcalloc(nt, 1);
    uint32_t *stack = ao_xmalloc(nt * sizeof *stack);
    size_t sp = 0, total = wf->pb->n_findings;
    const ao_task_t *self = &wf->tasks[i];
    for (uint32_t k = 0; k < self->n_deps; k++) stack[sp++] = self->deps[k];
    if (self->parent >= 0) stack[sp++] = (uint32_t)self->parent;
    for (size_t k = 0; k < sp; k++) seen[stack[k]] = 1;
    /* Collect ancestor indexes first (DFS), then their findings. */
    uint32_t *anc = ao_xmalloc(nt * sizeof *anc);
    size_t na = 0;
    while (sp) {
        uint32_t v = stack[--sp];
        anc[na++] = v;
        const ao_task_t *t = &wf->tasks[v];
        total += t->st->n_findings;
        for (uint32_t k = 0; k < t->n_deps; k++)
            if (!seen[t->deps[k]]) {
                seen[t->deps[k]] = 1;
                stack[sp++] = t->deps[k];
            }
        if (t->parent >= 0 && !seen[t->parent]) {
            seen[t->parent] = 1;
            stack[sp++] = (uint32_t)t->parent;
        }
    }
    const Agentos__V1__Finding **all = ao_xcalloc(total ? total : 1, sizeof *all);
    size_t m = 0;
    for (size_t k = 0; k < wf->pb->n_findings; k++) all[m++] = wf->pb->findings[k];
    for (size_t k = 0; k < na; k++) {
        const Agentos__V1__TaskState *t = wf->tasks[anc[k]].st;
        if (t->status != TS(SUCCEEDED)) continue;
        for (size_t j = 0; j < t->n_findings; j++) all[m++] = t->findings[j];
    }
    const Agentos__V1__Finding **merged = ao_xcalloc(m ? m : 1, sizeof *merged);
    *n = ao_findings_merge(all, m, merged, NULL, NULL);
    free(all);
    free(anc);
    free(stack);
    free(seen);
    return merged;
}

/* ---- templates ----------------------------------------------------------------- */

typedef struct render {
    ao_wf_t *wf;
    uint32_t task;
    char num[64];
    char *tmp;
} render_t;

static const char *render_lookup(void *ud, const char *key, ao_status_t *st)
{
    render_t *r = ud;
    ao_wf_t *wf = r->wf;
    const Agentos__V1__TaskState *t = wf->tasks[r->task].st;
    free(r->tmp);
    r->tmp = NULL;
    if (!strncmp(key, "deps.", 5)) {
        const char *last = strrchr(key, '.');
        char id[201];
        size_t len = (size_t)(last - (key + 5));
        memcpy(id, key + 5, len);
        id[len] = '\0';
        int32_t d = ao_wf_find(wf, id);
        if (d < 0) {
            ao_status_set(st, AO_EINVAL, "task %s input: {{%s}}: no task %s", t->spec->id, key, id);
            return NULL;
        }
        const Agentos__V1__TaskState *dt = wf->tasks[d].st;
        if (dt->status != TS(SUCCEEDED)) {
            r->tmp = ao_xasprintf("[missing: %s %s: %s]", id,
                                  dt->status == TS(FAILED) ? "failed" : "did not run", dt->error);
            return !strcmp(last, ".output") ? r->tmp : "0";
        }
        if (!strcmp(last, ".output")) return dt->output;
        snprintf(r->num, sizeof r->num, "%.4g", !strcmp(last, ".score") ? dt->score : dt->confidence);
        return r->num;
    }
    if (!strncmp(key, "context.", 8)) {
        const char *v = context_value(wf, key + 8);
        return v ? v : "";
    }
    if (!strncmp(key, "findings.", 9)) {
        size_t n;
        const Agentos__V1__Finding **f = visible_findings(wf, r->task, &n);
        const char *v = NULL;
        for (size_t k = 0; k < n && !v; k++)
            if (!strcmp(f[k]->key, key + 9)) v = f[k]->value;
        r->tmp = v ? ao_xstrdup(v) : ao_xasprintf("[no finding %s]", key + 9);
        free(f);
        return r->tmp;
    }
    if (!strcmp(key, "workflow.name")) return wf->pb->spec ? wf->pb->spec->name : "";
    if (!strcmp(key, "workflow.id")) return wf->pb->id;
    if (!strcmp(key, "task.id")) return t->spec->id;
    if (!strcmp(key, "area")) return t->area;
    if (!strcmp(key, "prev.output")) {
        if (t->stage == 0 || !*t->parent_task_id) return "";
        char *prev = ao_xasprintf("%s/%u/%s", t->parent_task_id, t->stage - 1, t->area);
        int32_t p = ao_wf_find(wf, prev);
        free(prev);
        return p >= 0 ? wf->tasks[p].st->output : "";
    }
    ao_status_set(st, AO_EINVAL, "task %s input: unknown placeholder {{%s}}", t->spec->id, key);
    return NULL;
}

/* ---- events of tasks ---------------------------------------------------------- */

static void emit_task_failed(ao_engine_t *e, ao_wf_t *wf, uint32_t i, int cls, const char *error)
{
    AO_METRIC_INC(tasks_failed);
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    EVENT(ev, ET(TASK_FAILED), t->spec->id);
    set_parent(&ev, t);
    ev.attempt = t->attempts;
    ev.attempt_id = t->attempt_id;
    Agentos__V1__TaskFailed f = AGENTOS__V1__TASK_FAILED__INIT;
    f.error = (char *)error;
    f.error_class = cls;
    f.attempts = t->attempts;
    f.impact = t->spec->impact;
    f.required = !t->spec->optional;
    ev.payload_case = PAY(TASK_FAILED);
    ev.task_failed = &f;
    emit(e, wf, &ev);
}

static void emit_breaker_changes(ao_engine_t *e, ao_wf_t *wf, const Agentos__V1__TaskState *t,
                                 const char *agent, const ao_breaker_change_t *ch, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        AO_METRIC_INC(breaker_changes);
        EVENT(ev, ET(BREAKER_STATE_CHANGED), t->spec->id);
        ev.agent_id = (char *)agent;
        Agentos__V1__BreakerChange b = AGENTOS__V1__BREAKER_CHANGE__INIT;
        b.agent = (char *)agent;
        b.from = ch[k].from;
        b.to = ch[k].to;
        b.reason = (char *)ch[k].reason;
        b.consecutive_failures = ch[k].failures;
        ev.payload_case = PAY(BREAKER);
        ev.breaker = &b;
        emit(e, wf, &ev);
    }
}

/* ---- budgets ---------------------------------------------------------------------- */

typedef struct alerted_ctx {
    ao_wf_t *wf;
    const Agentos__V1__TaskState *task; /* NULL: the workflow's budget */
} alerted_ctx_t;

static int alerted(void *ud, int role, int dim, int exceeded)
{
    alerted_ctx_t *c = ud;
    if (c->task) {
        Agentos__V1__BudgetDimension *list = exceeded ? c->task->exceeded : c->task->warned;
        size_t n = exceeded ? c->task->n_exceeded : c->task->n_warned;
        for (size_t k = 0; k < n; k++)
            if ((int)list[k] == dim) return 1;
        return 0;
    }
    const Agentos__V1__Workflow *pb = c->wf->pb;
    for (size_t k = 0; k < pb->n_alerts; k++)
        if ((int)pb->alerts[k]->role == role && (int)pb->alerts[k]->dimension == dim &&
            (!exceeded || pb->alerts[k]->exceeded))
            return 1;
    return 0;
}

static void emit_budget(ao_engine_t *e, ao_wf_t *wf, const ao_budget_hit_t *h,
                        const Agentos__V1__TaskState *t, int policy)
{
    if (!h->exceeded) AO_METRIC_INC(budget_warnings);
    EVENT(ev, h->exceeded ? ET(BUDGET_EXCEEDED) : ET(BUDGET_WARNING), t ? t->spec->id : NULL);
    Agentos__V1__BudgetEvent b = AGENTOS__V1__BUDGET_EVENT__INIT;
    b.dimension = h->dimension;
    b.role = h->role;
    b.task_id = (char *)(t ? t->spec->id : "");
    b.used = h->used;
    b.limit = h->limit;
    b.fraction = h->fraction;
    b.policy = policy ? policy : BP(HALT_WORKFLOW);
    ev.payload_case = PAY(BUDGET);
    ev.budget = &b;
    emit(e, wf, &ev);
}

/* Checks the workflow's budget, and task i's own (i < 0: none), emitting
 * warnings and exceeded events. Returns 1 if task i must stop (its budget
 * or the workflow's exceeded under STOP_TASK). A HALT_WORKFLOW excess sets
 * the workflow stopping (in apply). */
static int check_budgets(ao_engine_t *e, ao_wf_t *wf, int32_t i)
{
    int stop_task = 0;
    ao_budget_hit_t hits[16];
    const Agentos__V1__Workflow *pb = wf->pb;
    const Agentos__V1__Budget *wb = pb->spec ? pb->spec->budget : NULL;
    if (wb) {
        ao_budget_usage_t u = {pb->usage,
                               pb->started_unix_ms ? (uint64_t)(ao_now_ms() - pb->started_unix_ms) : 0,
                               (uint32_t)pb->n_tasks, pb->role_usage, pb->n_role_usage};
        alerted_ctx_t c = {wf, NULL};
        size_t n = ao_budget_check(wb, &u, alerted, &c, hits, 16);
        for (size_t k = 0; k < n; k++) {
            emit_budget(e, wf, &hits[k], NULL, wb->on_exceeded);
            if (hits[k].exceeded && wb->on_exceeded == BP(STOP_TASK)) stop_task = 1;
        }
    }
    if (i >= 0) {
        const Agentos__V1__TaskState *t = wf->tasks[i].st;
        const Agentos__V1__Budget *tb = t->spec->budget;
        if (tb) {
            ao_budget_usage_t u = {t->usage,
                                   t->started_unix_ms ? (uint64_t)(ao_now_ms() - t->started_unix_ms) : 0,
                                   0, NULL, 0};
            alerted_ctx_t c = {wf, t};
            size_t n = ao_budget_check(tb, &u, alerted, &c, hits, 16);
            for (size_t k = 0; k < n; k++) {
                int policy = tb->on_exceeded ? tb->on_exceeded : BP(HALT_WORKFLOW);
                emit_budget(e, wf, &hits[k], t, policy);
                /* HALT_WORKFLOW: applying the event sets the workflow
                 * stopping. */
                if (hits[k].exceeded && policy == BP(STOP_TASK)) stop_task = 1;
            }
        }
    }
    return stop_task;
}

/* Whether the workflow's budget was exceeded under STOP_TASK (new tasks
 * fail at once). */
static int budget_blocks_new_tasks(const ao_wf_t *wf)
{
    const Agentos__V1__Budget *wb = wf->pb->spec ? wf->pb->spec->budget : NULL;
    if (!wb || wb->on_exceeded != BP(STOP_TASK)) return 0;
    for (size_t k = 0; k < wf->pb->n_alerts; k++)
        if (wf->pb->alerts[k]->exceeded) return 1;
    return 0;
}

/* ---- attempts -------------------------------------------------------------------- */

static void request_free(Agentos__V1__AgentTask *r)
{
    if (!r) return;
    r->workflow_id = r->tenant = (char *)protobuf_c_empty_string; /* borrowed */
    ao_pb_free(r);
}

static void attempt_free(attempt_t *a)
{
    if (a->submitted) ao_dispatch_fini(&a->d);
    if (a->outcome) {
        ao_pb_free(a->outcome->result);
        free(a->outcome);
    }
    free(a->result_packed);
    request_free(a->req); /* with the attempt id and agent */
    free(a);
}

/* A finished attempt is freed after the tick, with the tick's others, and
 * on the pool when there are many: freeing requests and replies was a
 * fourteenth of the processor's time on a fan-out, and the pool's threads
 * have time. Nothing refers to a retired attempt. */
enum { RETIRE_ON_POOL = 32 };

typedef struct retired {
    attempt_t **v;
    size_t n;
} retired_t;

static void retire(ao_engine_t *e, attempt_t *a)
{
    if (e->n_retired == e->cap_retired) {
        e->cap_retired = e->cap_retired ? e->cap_retired * 2 : 64;
        e->retired = ao_xrealloc(e->retired, e->cap_retired * sizeof *e->retired);
    }
    e->retired[e->n_retired++] = a;
}

static void free_retired(void *ud)
{
    retired_t *r = ud;
    for (size_t k = 0; k < r->n; k++) attempt_free(r->v[k]);
    free(r->v);
    free(r);
}

/* inline: free them here (few, or the engine is going away). */
static void flush_retired(ao_engine_t *e, int inline_)
{
    if (!e->n_retired) return;
    if (inline_ || !e->pool || e->n_retired < RETIRE_ON_POOL) {
        for (size_t k = 0; k < e->n_retired; k++) attempt_free(e->retired[k]);
        e->n_retired = 0;
        return;
    }
    retired_t *r = ao_xmalloc(sizeof *r);
    r->v = e->retired;
    r->n = e->n_retired;
    e->retired = NULL;
    e->n_retired = e->cap_retired = 0;
    ao_pool_submit(e->pool, "", free_retired, r);
}

static void attempt_finished(ao_engine_t *e)
{
    pthread_mutex_lock(&e->lock);
    atomic_fetch_sub(&e->inflight, 1);
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void attempt_drop(void *ud)
{
    attempt_t *a = ud;
    ao_engine_t *e = a->e;
    attempt_free(a);
    attempt_finished(e);
}

static void attempt_done_work(ao_proc_t *p, void *ud);

static const char *check_output(ao_engine_t *e, Agentos__V1__AgentResult *r, char *buf, size_t len);

/* Backend thread: keep the outcome (a good reply checked and packed here,
 * beside the processor), hand the rest to the processor. */
static void on_dispatch_done(ao_dispatch_t *d, ao_agent_outcome_t *o,
                             const ao_breaker_change_t *changes, size_t n)
{
    attempt_t *a = (attempt_t *)d;
    a->outcome = ao_xmalloc(sizeof *a->outcome);
    *a->outcome = *o;
    o->result = NULL;
    /* It may quote what the agent sent, cut at any byte. */
    ao_utf8_fix(a->outcome->error);
    Agentos__V1__AgentResult *r = a->outcome->result;
    char why[300];
    /* On the processor (a call that completed inline), packing apart
     * would only add work. */
    if (r && !a->outcome->error_class && a->req->kind != KIND(PLANNER) && !ao_proc_on_thread(a->e->proc) &&
        !check_output(a->e, r, why, sizeof why)) {
        a->checked = 1;
        a->result_len = protobuf_c_message_get_packed_size(&r->base);
        a->result_packed = ao_xmalloc(a->result_len ? a->result_len : 1);
        protobuf_c_message_pack(&r->base, a->result_packed);
    }
    a->n_changes = n < 2 ? n : 2;
    memcpy(a->changes, changes, a->n_changes * sizeof *changes);
    ao_proc_post(a->e->proc, attempt_done_work, attempt_drop, a);
}

static void dispatch_after_commit(ao_proc_t *p, void *ud)
{
    (void)p;
    attempt_t *a = ud;
    ao_engine_t *e = a->e;
    if (a->abandoned) {
        attempt_free(a);
        attempt_finished(e);
        return;
    }
    a->submitted = 1;
    a->start_us = ao_mono_us();
    if (ao_backends_submit(e->backends, &a->d)) {
        /* The agent vanished from the config: cannot happen (validated). */
        ao_agent_outcome_t o;
        memset(&o, 0, sizeof o);
        o.error_class = EC(INTERNAL);
        snprintf(o.error, sizeof o.error, "no agent backend named %s", a->agent);
        a->submitted = 0;
        on_dispatch_done(&a->d, &o, NULL, 0);
    }
}

static void copy_map(void *dst_arr, size_t *dst_n, void *const *src, size_t n,
                     const ProtobufCMessageDescriptor *desc)
{
    (void)desc;
    /* Map entries are messages: clone each. */
    ProtobufCMessage ***arr = dst_arr;
    *dst_n = 0;
    if (!n) return; /* most tasks have no params, most workflows no context */
    *arr = ao_xcalloc(n, sizeof **arr);
    for (size_t k = 0; k < n; k++) (*arr)[k] = ao_pb_clone(src[k]);
    *dst_n = n;
}

/* The request of an attempt. It takes input, attempt_id and agent, and
 * borrows the workflow's id and tenant, which never change while the
 * workflow lives (request_free gives them back). */
static Agentos__V1__AgentTask *build_request(ao_wf_t *wf, uint32_t i, char *input, char *attempt_id,
                                             uint32_t attempt, char *agent, int64_t deadline,
                                             char **missing, size_t n_missing)
{
    const Agentos__V1__TaskState *t = wf->tasks[i].st;
    Agentos__V1__AgentTask *r = ao_xmalloc(sizeof *r);
    agentos__v1__agent_task__init(r);
    r->workflow_id = wf->pb->id;
    ao_pb_set_str(&r->task_id, t->spec->id);
    r->attempt_id = attempt_id;
    r->attempt = attempt;
    r->agent = agent;
    r->input = input;
    if (wf->pb->spec)
        copy_map(&r->context, &r->n_context, (void *const *)wf->pb->spec->context,
                 wf->pb->spec->n_context, NULL);
    copy_map(&r->params, &r->n_params, (void *const *)t->spec->params, t->spec->n_params, NULL);
    size_t nf;
    const Agentos__V1__Finding **f = visible_findings(wf, i, &nf);
    if (nf) {
        r->findings = ao_xcalloc(nf, sizeof *r->findings);
        for (size_t k = 0; k < nf; k++) r->findings[r->n_findings++] = AO_PB_CLONE(Agentos__V1__Finding, f[k]);
    }
    free(f);
    r->kind = t->spec->kind ? t->spec->kind : KIND(AGENT);
    r->role = ao_task_role(t);
    ao_pb_set_str(&r->area, t->area);
    r->stage = t->stage;
    for (size_t k = 0; k < n_missing; k++)
        ao_pb_push_str(&r->missing_dependencies, &r->n_missing_dependencies, missing[k]);
    r->deadline_unix_ms = deadline;
    r->tenant = wf->pb->tenant;
    if (t->spec->kind == KIND(SYNTHESIS)) {
        const ao_task_t *tt = &wf->tasks[i];
        for (uint32_t k = 0; k < tt->n_deps; k++) {
            const Agentos__V1__TaskState *d = wf->tasks[tt->deps[k]].st;
            if (d->status != TS(SUCCEEDED)) continue;
            Agentos__V1__TaskOutput **o = ao_pb_push(&r->dependency_results, &r->n_dependency_results, sizeof *o);
            *o = ao_xmalloc(sizeof **o);
            agentos__v1__task_output__init(*o);
            ao_pb_set_str(&(*o)->task_id, d->spec->id);
            ao_pb_set_str(&(*o)->agent, d->agent);
            ao_pb_set_str(&(*o)->output, d->output);
            (*o)->score = d->score;
            (*o)->confidence = d->confidence;
            (*o)->authority = ao_task_authority(d);
        }
    }
    return r;
}

static uint32_t max_attempts(ao_engine_t *e, const Agentos__V1__TaskState *t)
{
    uint32_t m = t->spec->retry ? t->spec->retry->max_attempts : 0;
    return m ? m : e->cfg->limits->default_max_attempts;
}

/* The deadline of all attempts (0: none). */
static int64_t total_deadline(const Agentos__V1__TaskState *t)
{
    if (!t->spec->total_timeout_ms || !t->started_unix_ms) return 0;
    return t->started_unix_ms + t->spec->total_timeout_ms;
}

/* "<workflow>/<task>/<attempt>-<seq in hex>", without printf (one per
 * attempt, on the processor thread). */
static char *attempt_id_new(const char *wf_id, const char *task_id, uint32_t attempt, uint64_t seq)
{
    size_t lw = strlen(wf_id), lt = strlen(task_id);
    char *s = ao_xmalloc(lw + lt + 2 + 10 + 1 + 16 + 1);
    char *p = s;
    memcpy(p, wf_id, lw);
    p += lw;
    *p++ = '/';
    memcpy(p, task_id, lt);
    p += lt;
    *p++ = '/';
    char digits[20];
    int n = 0;
    do digits[n++] = (char)('0' + attempt % 10);
    while (attempt /= 10);
    while (n) *p++ = digits[--n];
    *p++ = '-';
    do digits[n++] = "0123456789abcdef"[seq & 15];
    while (seq >>= 4);
    while (n) *p++ = digits[--n];
    *p = 0;
    return s;
}

/* Starts the next attempt of task i on its current agent. */
static void start_attempt(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    ao_task_t *tt = &wf->tasks[i];
    Agentos__V1__TaskState *t = tt->st;
    const Agentos__V1__Budget *wb = wf->pb->spec ? wf->pb->spec->budget : NULL;
    uint64_t calls = wf->pb->usage ? wf->pb->usage->api_calls : 0;
    if (budget_blocks_new_tasks(wf)) {
        emit_task_failed(e, wf, i, EC(BUDGET), "the workflow's budget is exhausted (STOP_TASK)");
        return;
    }
    if (!ao_budget_call_allowed(wb, calls)) {
        ao_budget_hit_t h = {DIM(API_CALLS), 0, (double)calls + 1, (double)wb->max_api_calls,
                             ((double)calls + 1) / (double)wb->max_api_calls, 1};
        alerted_ctx_t c = {wf, NULL};
        if (!alerted(&c, 0, DIM(API_CALLS), 1)) emit_budget(e, wf, &h, NULL, wb->on_exceeded);
        if (wb->on_exceeded != BP(WARN_ONLY)) {
            if (wb->on_exceeded == BP(STOP_TASK))
                emit_task_failed(e, wf, i, EC(BUDGET), "the workflow's api_calls budget is used up");
            return; /* HALT: the workflow is stopping */
        }
    }
    const Agentos__V1__Budget *tb = t->spec->budget;
    uint64_t tcalls = t->usage ? t->usage->api_calls : 0;
    if (!ao_budget_call_allowed(tb, tcalls)) {
        emit_task_failed(e, wf, i, EC(BUDGET), "the task's api_calls budget is used up");
        return;
    }

    /* The input. */
    const char *tpl = t->spec->input;
    render_t r = {wf, i, {0}, NULL};
    ao_status_t st;
    char *input = ao_template_render(tpl, render_lookup, &r, e->cfg->limits->max_input_bytes, &st);
    free(r.tmp);
    if (!input) {
        emit_task_failed(e, wf, i, EC(REJECTED), st.msg);
        return;
    }
    char **missing = ao_xcalloc(tt->n_deps ? tt->n_deps : 1, sizeof *missing);
    size_t n_missing = 0;
    for (uint32_t k = 0; k < tt->n_deps; k++)
        if (wf->tasks[tt->deps[k]].st->status != TS(SUCCEEDED))
            missing[n_missing++] = wf->tasks[tt->deps[k]].st->spec->id;

    uint32_t attempt = t->attempts + 1;
    /* The sequence number of this TASK_STARTED makes the id unique for
     * good, also across restarts (a re-run after a crash gets a new one). */
    char *attempt_id = attempt_id_new(wf->pb->id, t->spec->id, attempt, ao_proc_next_seq(e->proc));
    /* A copy: applying TASK_STARTED replaces t->agent. */
    char *agent = ao_xstrdup(*t->agent ? t->agent : t->spec->agent);
    const Agentos__V1__AgentBackend *bc = backend_cfg(e, agent);
    uint32_t timeout = t->spec->attempt_timeout_ms ? t->spec->attempt_timeout_ms
                                                   : (bc ? bc->default_timeout_ms : 60000);
    int64_t now = ao_now_ms();
    int64_t total = total_deadline(t);
    if (total && total - now < (int64_t)timeout) timeout = total > now ? (uint32_t)(total - now) : 1;

    EVENT(ev, ET(TASK_STARTED), t->spec->id);
    set_parent(&ev, t);
    ev.agent_id = (char *)agent;
    ev.attempt = attempt;
    ev.attempt_id = attempt_id;
    Agentos__V1__TaskStarted ts = AGENTOS__V1__TASK_STARTED__INIT;
    ts.agent = (char *)agent;
    ts.input_bytes = (uint32_t)strlen(input);
    ts.missing_dependencies = missing;
    ts.n_missing_dependencies = n_missing;
    ts.deadline_unix_ms = now + timeout;
    ev.payload_case = PAY(TASK_STARTED);
    ev.task_started = &ts;
    emit(e, wf, &ev);

    AO_METRIC_INC(attempts_started);
    attempt_t *a = ao_xcalloc(1, sizeof *a);
    a->e = e;
    a->wf = wf;
    rt(wf)->live_attempts++;
    a->task = i;
    a->req = build_request(wf, i, input, attempt_id, attempt, agent, now + timeout, missing, n_missing);
    a->attempt_id = a->req->attempt_id;
    a->agent = a->req->agent;
    a->d.call.task = a->req;
    a->d.agent = a->agent;
    a->d.fair_key = wf->pb->id;
    a->d.timeout_ms = timeout;
    a->d.done = on_dispatch_done;
    a->d.ud = a;
    uint64_t batch = ao_proc_batches(e->proc);
    if (batch != e->dispatch_batch) {
        e->dispatch_batch = batch;
        e->dispatch_n = 0;
    }
    a->d.no_inline = e->dispatch_n++ > 0;
    tt->inflight = (struct ao_attempt *)a;
    atomic_fetch_add(&e->inflight, 1);
    /* The request is built: the dispatch needs TASK_STARTED durable, not
     * the state. */
    ao_proc_after_durable(e->proc, dispatch_after_commit, a);
    free(missing);
}

static void retry_timer_fired(void *ud);

static uint32_t backoff_ms(const Agentos__V1__TaskState *t, uint32_t attempt)
{
    const Agentos__V1__RetryPolicy *r = t->spec->retry;
    double initial = r && r->initial_backoff_ms ? r->initial_backoff_ms : 100;
    double mult = r && r->multiplier > 0 ? r->multiplier : 2.0;
    double cap = r && r->max_backoff_ms ? r->max_backoff_ms : 10000;
    double jitter = r ? r->jitter : 0;
    double b = initial * pow(mult, attempt > 1 ? attempt - 1 : 0);
    if (b > cap) b = cap;
    if (jitter > 0) {
        char hex[9];
        ao_random_hex(hex, 4);
        double u = (double)strtoul(hex, NULL, 16) / 4294967295.0;
        b *= 1.0 - jitter + 2.0 * jitter * u;
    }
    /* The cap holds after the jitter too: max_backoff_ms is the longest
     * wait, and a wait past UINT32_MAX ms would not convert. */
    if (b > cap) b = cap;
    return b < 0 ? 0 : (uint32_t)b;
}

static int class_retried(const Agentos__V1__TaskState *t, int cls)
{
    const Agentos__V1__RetryPolicy *r = t->spec->retry;
    if (r && r->n_retry_on) {
        for (size_t k = 0; k < r->n_retry_on; k++)
            if ((int)r->retry_on[k] == cls) return 1;
        return 0;
    }
    return cls == EC(TIMEOUT) || cls == EC(UNAVAILABLE) || cls == EC(RATE_LIMITED) ||
           cls == EC(TLS) || cls == EC(AGENT_ERROR) || cls == EC(INVALID_RESPONSE) ||
           cls == EC(CIRCUIT_OPEN);
}

/* The attempt failed: retry, fall back, or fail the task. */
static void attempt_failed(ao_engine_t *e, ao_wf_t *wf, uint32_t i, attempt_t *a,
                           Agentos__V1__Usage *usage)
{
    ao_task_t *tt = &wf->tasks[i];
    Agentos__V1__TaskState *t = tt->st;
    ao_agent_outcome_t *o = a->outcome;
    int cls = o->error_class ? o->error_class : EC(INTERNAL);
    uint32_t on_agent = t->fell_back ? t->attempts - t->primary_attempts : t->attempts;
    int64_t now = ao_now_ms();
    uint32_t delay = backoff_ms(t, on_agent);
    if (o->retry_after_ms > delay) delay = o->retry_after_ms;
    int64_t total = total_deadline(t);
    int in_time = !total || now + delay < total;
    int retry = o->retryable && class_retried(t, cls) && on_agent < max_attempts(e, t) && in_time &&
                !wf->pb->stopping && !(cls == EC(CIRCUIT_OPEN) && *t->spec->fallback_agent && !t->fell_back);

    AO_METRIC_INC(attempts_failed);
    EVENT(ev, ET(ATTEMPT_FAILED), t->spec->id);
    set_parent(&ev, t);
    ev.attempt = t->attempts;
    ev.attempt_id = t->attempt_id;
    Agentos__V1__AttemptFailed af = AGENTOS__V1__ATTEMPT_FAILED__INIT;
    af.error = o->error;
    af.error_class = cls;
    af.will_retry = retry;
    af.retry_in_ms = retry ? delay : 0;
    af.usage = usage;
    af.call_not_made = o->not_made;
    ev.payload_case = PAY(ATTEMPT_FAILED);
    ev.attempt_failed = &af;
    emit(e, wf, &ev);
    int stop_task = check_budgets(e, wf, (int32_t)i);

    if (retry && !stop_task) {
        tctx_t *c = ao_xcalloc(1, sizeof *c);
        c->e = e;
        c->wf = wf;
        c->task = i;
        c->attempts = t->attempts;
        tt->timer = ao_timer_add(e->timers, delay, retry_timer_fired, c);
        return;
    }
    if (stop_task) {
        emit_task_failed(e, wf, i, EC(BUDGET), "the task's budget is exceeded");
        return;
    }
    if (*t->spec->fallback_agent && !t->fell_back && !wf->pb->stopping) {
        EVENT(fb, ET(TASK_FALLBACK), t->spec->id);
        set_parent(&fb, t);
        Agentos__V1__TaskFallback f = AGENTOS__V1__TASK_FALLBACK__INIT;
        f.from_agent = t->agent;
        f.to_agent = t->spec->fallback_agent;
        char reason[600];
        snprintf(reason, sizeof reason, "%s after %u attempt%s: %s",
                 ao_result_class_name(cls), on_agent, on_agent == 1 ? "" : "s", o->error);
        f.reason = reason;
        fb.payload_case = PAY(TASK_FALLBACK);
        fb.task_fallback = &f;
        emit(e, wf, &fb);
        start_attempt(e, wf, i);
        return;
    }
    char error[700];
    snprintf(error, sizeof error, "%s after %u attempt%s: %s", ao_result_class_name(cls),
             t->attempts, t->attempts == 1 ? "" : "s", o->error);
    emit_task_failed(e, wf, i, cls, error);
}

static double unit_interval(double v)
{
    if (!isfinite(v) || v < 0) return 0;
    return v > 1 ? 1 : v;
}

/* Holds a good reply to the contract (agent.proto, workflow.proto's
 * Finding): output and findings within limits, a finding's key 1 to 128
 * bytes; confidences in [0, 1] and scores finite (clamped); a finding's
 * source_task and authority are the server's to fill, whatever the agent
 * sent (an agent does not choose its own weight in synthesis); strings
 * valid UTF-8 (clients in other languages reject invalid strings; bytes
 * that are not become '?'). Returns an error message or NULL. */
static const char *check_output(ao_engine_t *e, Agentos__V1__AgentResult *r, char *buf, size_t len)
{
    unsigned max = e->cfg->limits->max_output_bytes;
    size_t n = strlen(r->output);
    if (n > max) {
        snprintf(buf, len, "output of %zu bytes is over limits.max_output_bytes (%u)", n, max);
        return buf;
    }
    for (size_t k = 0; k < r->n_findings; k++) {
        Agentos__V1__Finding *f = r->findings[k];
        size_t kl = strlen(f->key), vl = strlen(f->value);
        if (kl < 1 || kl > 128) {
            snprintf(buf, len, "findings[%zu].key: %zu bytes, must be 1 to 128", k, kl);
            return buf;
        }
        if (vl > max) {
            snprintf(buf, len,
                     "findings[%zu].value of %zu bytes is over limits.max_output_bytes (%u)", k, vl,
                     max);
            return buf;
        }
        ao_utf8_fix(f->key);
        ao_utf8_fix(f->value);
        f->confidence = unit_interval(f->confidence);
        if (!isfinite(f->score)) f->score = 0;
        ao_pb_clear_str(&f->source_task);
        f->authority = 0;
    }
    ao_utf8_fix(r->output);
    for (size_t k = 0; k < r->n_decisions; k++)
        ao_utf8_fix(r->decisions[k]);
    if (!isfinite(r->score)) r->score = 0;
    r->confidence = unit_interval(r->confidence);
    return NULL;
}

typedef struct plan_ctx {
    ao_wf_t *wf;
} plan_ctx_t;

static int plan_exists(void *ud, const char *id)
{
    return ao_wf_find(((plan_ctx_t *)ud)->wf, id) >= 0;
}

static int plan_completed(void *ud, const char *id)
{
    ao_wf_t *wf = ((plan_ctx_t *)ud)->wf;
    int32_t k = ao_wf_find(wf, id);
    return k >= 0 && wf->tasks[k].st->status == TS(SUCCEEDED);
}

static void attempt_done_work(ao_proc_t *p, void *ud)
{
    (void)p;
    attempt_t *a = ud;
    ao_engine_t *e = a->e;
    ao_wf_t *wf = a->wf;
    uint32_t i = a->task;
    rt(wf)->live_attempts--;
    ao_task_t *tt = i < ao_wf_ntasks(wf) ? &wf->tasks[i] : NULL;
    /* Stale: the task was cancelled, the workflow resumed or stopped. */
    if (!tt || tt->inflight != (struct ao_attempt *)a || e->stopping) {
        attempt_free(a);
        attempt_finished(e);
        return;
    }
    tt->inflight = NULL;
    Agentos__V1__TaskState *t = tt->st;
    ao_agent_outcome_t *o = a->outcome;
    emit_breaker_changes(e, wf, t, a->agent, a->changes, a->n_changes);

    Agentos__V1__Usage usage = AGENTOS__V1__USAGE__INIT;
    if (o->result && o->result->usage) {
        /* As the backends layer held it (AO_USAGE_REPORT_MAX, backends.h). */
        const Agentos__V1__Usage *ru = o->result->usage;
        usage.prompt_tokens = ru->prompt_tokens;
        usage.completion_tokens = ru->completion_tokens;
        usage.total_tokens = ru->total_tokens;
        usage.documents = ru->documents;
    }
    const Agentos__V1__AgentBackend *bc = backend_cfg(e, a->agent);
    /* A call the agent never saw costs nothing; a cancelled one is not
     * charged either (its usage is unknown). */
    if (!o->not_made && o->error_class != EC(CANCELLED))
        usage.cost_micros = ao_price_cost(bc ? bc->price : NULL, &usage);
    usage.wall_time_ms = (uint64_t)((ao_mono_us() - a->start_us) / 1000);

    char why[300];
    if (!o->error_class && o->result) {
        const char *bad = a->checked ? NULL : check_output(e, o->result, why, sizeof why);
        if (!bad && t->spec->kind == KIND(PLANNER)) {
            if (!o->result->plan || !o->result->plan->n_tasks) {
                bad = "the planner returned no plan";
            } else {
                plan_ctx_t pc = {wf};
                ao_dag_existing_t ex = {plan_completed, plan_exists, &pc};
                unsigned max_tasks = e->cfg->limits->max_tasks;
                const Agentos__V1__Budget *wb = wf->pb->spec ? wf->pb->spec->budget : NULL;
                if (wb && wb->max_tasks && wb->max_tasks < max_tasks) max_tasks = wb->max_tasks;
                unsigned max_depth = wf->pb->spec && wf->pb->spec->max_plan_depth
                                         ? wf->pb->spec->max_plan_depth
                                         : e->cfg->limits->max_plan_depth;
                if (max_depth > e->cfg->limits->max_plan_depth) max_depth = e->cfg->limits->max_plan_depth;
                ao_status_t st;
                if (ao_dag_validate_plan(t->spec->id, o->result->plan->tasks, o->result->plan->n_tasks,
                                         ao_wf_ntasks(wf), max_tasks, t->depth + 1, max_depth, &ex,
                                         &e->env, &st)) {
                    snprintf(why, sizeof why, "plan rejected: %.250s", st.msg);
                    bad = why;
                }
            }
        }
        if (bad) {
            o->error_class = EC(INVALID_RESPONSE);
            o->retryable = 1;
            snprintf(o->error, sizeof o->error, "%s", bad);
        }
    }
    if (o->error_class || !o->result) {
        if (!o->error_class) o->error_class = EC(INTERNAL);
        attempt_failed(e, wf, i, a, &usage);
        attempt_free(a);
        attempt_finished(e);
        return;
    }

    Agentos__V1__AgentResult *res = o->result;
    if (t->spec->kind == KIND(PLANNER)) {
        const Agentos__V1__Plan *plan = res->plan;
        EVENT(pe, ET(PLAN_EXPANDED), t->spec->id);
        set_parent(&pe, t);
        Agentos__V1__PlanExpanded px = AGENTOS__V1__PLAN_EXPANDED__INIT;
        px.rationale = plan->rationale;
        px.n_tasks = plan->n_tasks;
        px.tasks = ao_xcalloc(plan->n_tasks, sizeof *px.tasks);
        for (size_t k = 0; k < plan->n_tasks; k++) {
            Agentos__V1__TaskState *s = ao_xmalloc(sizeof *s);
            agentos__v1__task_state__init(s);
            plan->tasks[k]->role = default_role(e, plan->tasks[k]);
            s->spec = plan->tasks[k];
            s->status = TS(PENDING);
            s->parent_task_id = t->spec->id;
            s->depth = t->depth + 1;
            s->agent = plan->tasks[k]->agent;
            px.tasks[k] = s;
        }
        pe.payload_case = PAY(PLAN_EXPANDED);
        pe.plan_expanded = &px;
        emit(e, wf, &pe);
        for (size_t k = 0; k < plan->n_tasks; k++) free(px.tasks[k]);
        free(px.tasks);
    }
    EVENT(ev, ET(TASK_SUCCEEDED), t->spec->id);
    set_parent(&ev, t);
    ev.attempt = t->attempts;
    ev.attempt_id = t->attempt_id;
    ev.confidence = res->confidence;
    Agentos__V1__TaskSucceeded ts = AGENTOS__V1__TASK_SUCCEEDED__INIT;
    ts.result = res;
    ts.usage = &usage;
    ev.payload_case = PAY(TASK_SUCCEEDED);
    ev.task_succeeded = &ts;
    if (a->result_packed) {
        /* The payload around the reply's bytes: its field 1 first, where
         * protobuf-c puts it, then the rest. */
        enum { RESULT_FIELD = 1 };
        ts.result = NULL;
        size_t head = ao_pb_field_size(RESULT_FIELD, a->result_len);
        size_t len = head + protobuf_c_message_get_packed_size(&ts.base);
        uint8_t *payload = ao_xmalloc(len);
        ao_pb_put_field(payload, RESULT_FIELD, a->result_packed, a->result_len);
        protobuf_c_message_pack(&ts.base, payload + head);
        ts.result = res;
        emit_event(e, wf, &ev, 0, payload, len);
        free(payload);
    } else {
        emit(e, wf, &ev);
    }
    check_budgets(e, wf, (int32_t)i);
    retire(e, a);
    attempt_finished(e);
}

static void retry_work(ao_proc_t *p, void *ud)
{
    (void)p;
    tctx_t *c = ud;
    ao_engine_t *e = c->e;
    ao_wf_t *wf = c->wf;
    if (!e->stopping && c->task < ao_wf_ntasks(wf)) {
        ao_task_t *tt = &wf->tasks[c->task];
        if (tt->st->status == TS(RETRY_WAIT) && tt->st->attempts == c->attempts) {
            tt->timer = 0;
            start_attempt(e, wf, c->task);
        }
    }
    free(c);
}

static void retry_timer_fired(void *ud)
{
    tctx_t *c = ud;
    ao_proc_post(c->e->proc, retry_work, free, c);
}

/* ---- builtin task kinds ----------------------------------------------------------- */

typedef struct conflict_ctx {
    ao_engine_t *e;
    ao_wf_t *wf;
    const char *at;
    unsigned n;
} conflict_ctx_t;

static void on_conflict(void *ud, const Agentos__V1__Finding *winner,
                        const Agentos__V1__Finding *const *lost, size_t n)
{
    conflict_ctx_t *c = ud;
    EVENT(ev, ET(CONFLICT_RESOLVED), c->at);
    ev.confidence = winner->confidence;
    Agentos__V1__ConflictResolved cr = AGENTOS__V1__CONFLICT_RESOLVED__INIT;
    cr.key = winner->key;
    cr.winner = (Agentos__V1__Finding *)winner;
    cr.overridden = (Agentos__V1__Finding **)lost;
    cr.n_overridden = n;
    cr.resolved_at = (char *)c->at;
    ev.payload_case = PAY(CONFLICT_RESOLVED);
    ev.conflict_resolved = &cr;
    emit(c->e, c->wf, &ev);
    c->n++;
}

/* Starts a task the engine computes itself (sync, builtin synthesis,
 * refinement): no agent, no call. */
static void start_builtin(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    if (t->status == TS(RUNNING)) return;
    EVENT(sev, ET(TASK_STARTED), t->spec->id);
    set_parent(&sev, t);
    Agentos__V1__TaskStarted ts = AGENTOS__V1__TASK_STARTED__INIT;
    sev.payload_case = PAY(TASK_STARTED);
    sev.task_started = &ts;
    emit(e, wf, &sev);
}

/* Completes a task the engine computes itself with a result. */
static void succeed_builtin(ao_engine_t *e, ao_wf_t *wf, uint32_t i, Agentos__V1__AgentResult *res)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    start_builtin(e, wf, i);
    EVENT(ev, ET(TASK_SUCCEEDED), t->spec->id);
    set_parent(&ev, t);
    ev.confidence = res->confidence;
    Agentos__V1__TaskSucceeded s = AGENTOS__V1__TASK_SUCCEEDED__INIT;
    s.result = res;
    ev.payload_case = PAY(TASK_SUCCEEDED);
    ev.task_succeeded = &s;
    emit(e, wf, &ev);
}

/* Findings of the given tasks, merged with conflicts recorded at `at`. */
static size_t merge_findings(ao_engine_t *e, ao_wf_t *wf, const char *at,
                             const Agentos__V1__Finding **all, size_t n,
                             const Agentos__V1__Finding **out, unsigned *conflicts)
{
    conflict_ctx_t c = {e, wf, at, 0};
    size_t m = ao_findings_merge(all, n, out, on_conflict, &c);
    *conflicts = c.n;
    return m;
}

static void run_sync(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    start_builtin(e, wf, i);
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    size_t n;
    /* Every finding before the sync point (its ancestors'). */
    const Agentos__V1__Finding **vis = visible_findings(wf, i, &n);
    /* visible_findings already resolved conflicts silently; recompute with
     * conflict events from the raw findings of the ancestors. */
    free(vis);
    size_t nt = ao_wf_ntasks(wf), total = wf->pb->n_findings;
    for (size_t k = 0; k < nt; k++) total += wf->tasks[k].st->n_findings;
    const Agentos__V1__Finding **all = ao_xcalloc(total ? total : 1, sizeof *all);
    size_t m = 0;
    for (size_t k = 0; k < wf->pb->n_findings; k++) all[m++] = wf->pb->findings[k];
    /* Ancestors by DFS. */
    uint8_t *seen = ao_xcalloc(nt, 1);
    uint32_t *stack = ao_xmalloc(nt * sizeof *stack);
    size_t sp = 0;
    const ao_task_t *self = &wf->tasks[i];
    for (uint32_t k = 0; k < self->n_deps; k++)
        if (!seen[self->deps[k]]) {
            seen[self->deps[k]] = 1;
            stack[sp++] = self->deps[k];
        }
    while (sp) {
        uint32_t v = stack[--sp];
        const ao_task_t *a = &wf->tasks[v];
        if (a->st->status == TS(SUCCEEDED))
            for (size_t j = 0; j < a->st->n_findings; j++) all[m++] = a->st->findings[j];
        for (uint32_t k = 0; k < a->n_deps; k++)
            if (!seen[a->deps[k]]) {
                seen[a->deps[k]] = 1;
                stack[sp++] = a->deps[k];
            }
        /* Subtasks of a planner or refinement before the sync point. */
        for (size_t c = 0; c < nt; c++)
            if (wf->tasks[c].parent == (int32_t)v && !seen[c]) {
                seen[c] = 1;
                stack[sp++] = (uint32_t)c;
            }
    }
    free(seen);
    free(stack);
    const Agentos__V1__Finding **merged = ao_xcalloc(m ? m : 1, sizeof *merged);
    unsigned conflicts = 0;
    size_t nm = merge_findings(e, wf, t->spec->id, all, m, merged, &conflicts);

    EVENT(sp_ev, ET(SYNC_POINT_REACHED), t->spec->id);
    Agentos__V1__SyncPoint spp = AGENTOS__V1__SYNC_POINT__INIT;
    spp.findings = (Agentos__V1__Finding **)merged;
    spp.n_findings = nm;
    sp_ev.payload_case = PAY(SYNC_POINT);
    sp_ev.sync_point = &spp;
    emit(e, wf, &sp_ev);

    Agentos__V1__AgentResult res = AGENTOS__V1__AGENT_RESULT__INIT;
    char *out = ao_xasprintf("sync point %s: %zu finding%s visible, %u conflict%s resolved",
                             t->spec->id, nm, nm == 1 ? "" : "s", conflicts, conflicts == 1 ? "" : "s");
    res.output = out;
    double conf = 0;
    for (size_t k = 0; k < nm; k++) conf += merged[k]->confidence;
    res.confidence = nm ? conf / (double)nm : 1.0;
    res.findings = (Agentos__V1__Finding **)merged;
    res.n_findings = nm;
    succeed_builtin(e, wf, i, &res);
    free(out);
    free(merged);
    free(all);
}

/* Refinement: the areas that passed the last stage reached, as the stage
 * decided (succeeded, score at or over its threshold). Areas dropped on the
 * way are left out, and not counted as missing: they were judged not worth
 * going on with. Returns how many were added. */
static size_t collect_refined(ao_wf_t *wf, uint32_t dep, ao_idxlist_t *have)
{
    const Agentos__V1__RefinementSpec *r = wf->tasks[dep].st->spec->refinement;
    size_t nt = ao_wf_ntasks(wf), n = 0;
    uint32_t last = 0;
    for (size_t c = 0; c < nt; c++)
        if (wf->tasks[c].parent == (int32_t)dep && wf->tasks[c].st->stage > last)
            last = wf->tasks[c].st->stage;
    double threshold = r && last < r->n_stages ? r->stages[last]->threshold : 0;
    for (size_t c = 0; c < nt; c++) {
        const Agentos__V1__TaskState *a = wf->tasks[c].st;
        if (wf->tasks[c].parent != (int32_t)dep || a->stage != last) continue;
        if (a->status == TS(SUCCEEDED) && a->score >= threshold) {
            ao_idxlist_push(have, (uint32_t)c);
            n++;
        }
    }
    return n;
}

/* The results a synthesis combines: each dependency, or for a planner or
 * refinement dependency, its completed analysis subtasks. */
static void collect_inputs(ao_wf_t *wf, uint32_t dep, ao_idxlist_t *have, double *missing)
{
    const ao_task_t *d = &wf->tasks[dep];
    int kind = d->st->spec->kind ? d->st->spec->kind : KIND(AGENT);
    /* Nothing passed (an early end): the refinement's own result stands. */
    if (kind == KIND(REFINEMENT) && collect_refined(wf, dep, have)) return;
    if (kind == KIND(PLANNER)) {
        size_t nt = ao_wf_ntasks(wf);
        int any = 0;
        for (size_t c = 0; c < nt; c++) {
            if (wf->tasks[c].parent != (int32_t)dep) continue;
            any = 1;
            collect_inputs(wf, (uint32_t)c, have, missing);
        }
        if (any) return;
    }
    if (kind == KIND(SYNC)) return;
    if (d->st->status == TS(SUCCEEDED)) ao_idxlist_push(have, dep);
    else *missing += ao_task_authority(d->st);
}

static void run_synthesis(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    start_builtin(e, wf, i);
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    const ao_task_t *tt = &wf->tasks[i];
    ao_idxlist_t have = {0};
    double missing = 0;
    for (uint32_t k = 0; k < tt->n_deps; k++) collect_inputs(wf, tt->deps[k], &have, &missing);
    ao_synth_in_t *in = ao_xcalloc(have.n ? have.n : 1, sizeof *in);
    Agentos__V1__TaskOutput **outs = ao_xcalloc(have.n ? have.n : 1, sizeof *outs);
    size_t nin = 0, total_f = 0;
    for (size_t k = 0; k < have.n; k++) {
        const Agentos__V1__TaskState *d = wf->tasks[have.v[k]].st;
        in[nin] = (ao_synth_in_t){d->score, d->confidence, ao_task_authority(d)};
        Agentos__V1__TaskOutput *o = ao_xmalloc(sizeof *o);
        agentos__v1__task_output__init(o);
        o->task_id = d->spec->id;
        o->agent = d->agent;
        o->output = d->output;
        o->score = d->score;
        o->confidence = d->confidence;
        o->authority = ao_task_authority(d);
        outs[nin++] = o;
        total_f += d->n_findings;
    }
    double score = 0, conf = 0;
    ao_synth_weighted(in, nin, missing, &score, &conf);

    char **missing_ids = NULL;
    size_t n_missing = 0;
    for (uint32_t k = 0; k < tt->n_deps; k++) {
        const Agentos__V1__TaskState *d = wf->tasks[tt->deps[k]].st;
        if (d->status != TS(SUCCEEDED)) ao_pb_push_str(&missing_ids, &n_missing, d->spec->id);
    }
    EVENT(sev, ET(SYNTHESIS_COMPUTED), t->spec->id);
    sev.confidence = conf;
    Agentos__V1__SynthesisComputed sc = AGENTOS__V1__SYNTHESIS_COMPUTED__INIT;
    sc.score = score;
    sc.confidence = conf;
    sc.inputs = outs;
    sc.n_inputs = nin;
    sc.missing = missing_ids;
    sc.n_missing = n_missing;
    sev.payload_case = PAY(SYNTHESIS);
    sev.synthesis = &sc;
    emit(e, wf, &sev);

    const Agentos__V1__Finding **all = ao_xcalloc(total_f ? total_f : 1, sizeof *all);
    size_t m = 0;
    for (size_t k = 0; k < nin; k++) {
        int32_t d = ao_wf_find(wf, outs[k]->task_id);
        const Agentos__V1__TaskState *ds = wf->tasks[d].st;
        for (size_t j = 0; j < ds->n_findings; j++) all[m++] = ds->findings[j];
    }
    const Agentos__V1__Finding **merged = ao_xcalloc(m ? m : 1, sizeof *merged);
    unsigned conflicts = 0;
    size_t nm = merge_findings(e, wf, t->spec->id, all, m, merged, &conflicts);

    ao_sb_t sb = {0};
    ao_sb_printf(&sb, "Weighted score %.2f (confidence %.2f) from %zu result%s", score, conf, nin,
                 nin == 1 ? "" : "s");
    for (size_t k = 0; k < nin; k++)
        ao_sb_printf(&sb, "%s %s (score %.2f x confidence %.2f x authority %.2f)", k ? "," : ":",
                     outs[k]->task_id, outs[k]->score, outs[k]->confidence, outs[k]->authority);
    if (n_missing) {
        ao_sb_puts(&sb, "; missing:");
        for (size_t k = 0; k < n_missing; k++) ao_sb_printf(&sb, " %s", missing_ids[k]);
    }
    if (conflicts) ao_sb_printf(&sb, "; %u conflicting finding%s resolved", conflicts, conflicts == 1 ? "" : "s");
    Agentos__V1__AgentResult res = AGENTOS__V1__AGENT_RESULT__INIT;
    res.output = sb.data;
    res.score = score;
    res.confidence = conf;
    res.findings = (Agentos__V1__Finding **)merged;
    res.n_findings = nm;
    succeed_builtin(e, wf, i, &res);
    ao_sb_free(&sb);
    free(merged);
    free(all);
    for (size_t k = 0; k < nin; k++) free(outs[k]);
    free(outs);
    free(in);
    ao_pb_free_strs(&missing_ids, &n_missing);
    free(have.v);
}

/* ---- progressive refinement --------------------------------------------------------- */

static void expand_stage(ao_engine_t *e, ao_wf_t *wf, uint32_t i, uint32_t stage, char **areas,
                         size_t n_areas)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    const Agentos__V1__RefinementStage *sg = t->spec->refinement->stages[stage];
    EVENT(ev, ET(PLAN_EXPANDED), t->spec->id);
    set_parent(&ev, t);
    Agentos__V1__PlanExpanded px = AGENTOS__V1__PLAN_EXPANDED__INIT;
    px.rationale = sg->name;
    px.tasks = ao_xcalloc(n_areas ? n_areas : 1, sizeof *px.tasks);
    Agentos__V1__TaskSpec *specs = ao_xcalloc(n_areas ? n_areas : 1, sizeof *specs);
    Agentos__V1__TaskState *states = ao_xcalloc(n_areas ? n_areas : 1, sizeof *states);
    char **ids = ao_xcalloc(n_areas ? n_areas : 1, sizeof *ids);
    for (size_t k = 0; k < n_areas; k++) {
        Agentos__V1__TaskSpec *s = &specs[k];
        agentos__v1__task_spec__init(s);
        ids[k] = ao_xasprintf("%s/%u/%s", t->spec->id, stage, areas[k]);
        s->id = ids[k];
        s->kind = KIND(AGENT);
        s->agent = sg->agent;
        s->input = sg->input;
        s->retry = t->spec->retry;
        s->attempt_timeout_ms = t->spec->attempt_timeout_ms;
        s->authority = t->spec->authority;
        s->optional = 1; /* an area that fails is dropped, not fatal */
        s->role = t->spec->role;
        if (!s->role) s->role = default_role(e, s);
        s->params = t->spec->params;
        s->n_params = t->spec->n_params;
        Agentos__V1__TaskState *st = &states[k];
        agentos__v1__task_state__init(st);
        st->spec = s;
        st->status = TS(PENDING);
        st->parent_task_id = t->spec->id;
        st->depth = t->depth + 1;
        st->agent = sg->agent;
        st->area = areas[k];
        st->stage = stage;
        px.tasks[px.n_tasks++] = st;
    }
    ev.payload_case = PAY(PLAN_EXPANDED);
    ev.plan_expanded = &px;
    emit(e, wf, &ev);
    for (size_t k = 0; k < n_areas; k++) free(ids[k]);
    free(ids);
    free(specs);
    free(states);
    free(px.tasks);
}

static void start_refinement(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    start_builtin(e, wf, i);
    expand_stage(e, wf, i, 0, t->spec->refinement->areas, t->spec->refinement->n_areas);
}

/* A refinement stage has finished (every area task settled). */
static void stage_done(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    if (t->status != TS(RUNNING) || wf->tasks[i].open_children) return;
    const Agentos__V1__RefinementSpec *r = t->spec->refinement;
    size_t nt = ao_wf_ntasks(wf);
    uint32_t stage = 0;
    int any = 0;
    for (size_t c = 0; c < nt; c++)
        if (wf->tasks[c].parent == (int32_t)i) {
            any = 1;
            if (wf->tasks[c].st->stage > stage) stage = wf->tasks[c].st->stage;
        }
    if (!any) {
        expand_stage(e, wf, i, 0, r->areas, r->n_areas);
        return;
    }
    const Agentos__V1__RefinementStage *sg = r->stages[stage];
    char **passed = NULL, **dropped = NULL;
    size_t np = 0, nd = 0;
    ao_synth_in_t *in = ao_xcalloc(nt, sizeof *in);
    size_t nin = 0;
    for (size_t c = 0; c < nt; c++) {
        const Agentos__V1__TaskState *a = wf->tasks[c].st;
        if (wf->tasks[c].parent != (int32_t)i || a->stage != stage) continue;
        if (a->status == TS(SUCCEEDED) && a->score >= sg->threshold) {
            ao_pb_push_str(&passed, &np, a->area);
            in[nin++] = (ao_synth_in_t){a->score, a->confidence, ao_task_authority(a)};
        } else {
            ao_pb_push_str(&dropped, &nd, a->area);
        }
    }
    EVENT(ev, ET(STAGE_COMPLETED), t->spec->id);
    Agentos__V1__StageCompleted sc = AGENTOS__V1__STAGE_COMPLETED__INIT;
    sc.stage = stage;
    sc.name = sg->name;
    sc.passed = passed;
    sc.n_passed = np;
    sc.dropped = dropped;
    sc.n_dropped = nd;
    sc.threshold = sg->threshold;
    ev.payload_case = PAY(STAGE_COMPLETED);
    ev.stage_completed = &sc;
    emit(e, wf, &ev);

    if (np == 0) {
        char reason[300];
        snprintf(reason, sizeof reason,
                 "no area passed stage %u (%s) of %s at threshold %.2f: nothing more worth "
                 "analysing",
                 stage, sg->name, t->spec->id, sg->threshold);
        Agentos__V1__AgentResult res = AGENTOS__V1__AGENT_RESULT__INIT;
        res.output = reason;
        res.confidence = 1.0;
        succeed_builtin(e, wf, i, &res);
        EVENT(et, ET(EARLY_TERMINATION), t->spec->id);
        Agentos__V1__EarlyTermination x = AGENTOS__V1__EARLY_TERMINATION__INIT;
        x.stage = stage;
        x.reason = reason;
        et.payload_case = PAY(EARLY_TERMINATION);
        et.early_termination = &x;
        emit(e, wf, &et);
    } else if (stage + 1 < r->n_stages) {
        expand_stage(e, wf, i, stage + 1, passed, np);
    } else {
        double score = 0, conf = 0;
        ao_synth_weighted(in, nin, 0, &score, &conf);
        ao_sb_t sb = {0};
        ao_sb_printf(&sb, "%zu area%s passed the last stage (%s):", np, np == 1 ? "" : "s", sg->name);
        for (size_t k = 0; k < np; k++) {
            char *id = ao_xasprintf("%s/%u/%s", t->spec->id, stage, passed[k]);
            int32_t a = ao_wf_find(wf, id);
            free(id);
            ao_sb_printf(&sb, "\n- %s: %s", passed[k], a >= 0 ? wf->tasks[a].st->output : "");
        }
        Agentos__V1__AgentResult res = AGENTOS__V1__AGENT_RESULT__INIT;
        res.output = sb.data;
        res.score = score;
        res.confidence = conf;
        succeed_builtin(e, wf, i, &res);
        ao_sb_free(&sb);
    }
    free(in);
    ao_pb_free_strs(&passed, &np);
    ao_pb_free_strs(&dropped, &nd);
}

/* ---- stepping a workflow ------------------------------------------------------------- */

static void start_task(ao_engine_t *e, ao_wf_t *wf, uint32_t i)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    int kind = t->spec->kind ? t->spec->kind : KIND(AGENT);
    if (kind == KIND(SYNC)) run_sync(e, wf, i);
    else if (kind == KIND(SYNTHESIS) && !*t->spec->agent) run_synthesis(e, wf, i);
    else if (kind == KIND(REFINEMENT)) start_refinement(e, wf, i);
    else start_attempt(e, wf, i);
}

static void skip_task(ao_engine_t *e, ao_wf_t *wf, uint32_t i, const char *reason)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    EVENT(ev, ET(TASK_SKIPPED), t->spec->id);
    set_parent(&ev, t);
    Agentos__V1__TaskSkipped s = AGENTOS__V1__TASK_SKIPPED__INIT;
    s.reason = (char *)reason;
    ev.payload_case = PAY(TASK_SKIPPED);
    ev.task_skipped = &s;
    emit(e, wf, &ev);
}

static void cancel_timers(ao_engine_t *e, ao_wf_t *wf);

/* Answers every client waiting for wf: the workflow's result if it has
 * finished, else the server is stopping. */
static void fire_all_watches(ao_proc_t *p, void *ud)
{
    (void)p;
    ao_wf_t *wf = ud;
    wf_rt_t *r = rt(wf);
    watch_t *w = r->watches;
    r->watches = NULL;
    while (w) {
        watch_t *next = w->next;
        w->fn(w->ud, wf);
        free(w);
        w = next;
    }
}

/* After the commit of a workflow's result. A resume may have come first
 * (in an earlier commit callback): it answered the clients waiting for
 * this result, and those waiting now wait for the next one. */
static void fire_watches(ao_proc_t *p, void *ud)
{
    ao_wf_t *wf = ud;
    if (ao_wf_status_terminal(wf->pb->status)) fire_all_watches(p, wf);
}

/* A workflow of this tenant started (1: submitted, resumed, recovered
 * unfinished) or finished (-1). */
static void count_active(ao_engine_t *e, const ao_wf_t *wf, int delta)
{
    tenant_of(e, wf->pb->tenant)->active += (size_t)delta;
    if (delta > 0)
        atomic_fetch_add(&e->active, (unsigned)delta);
    else
        atomic_fetch_sub(&e->active, (unsigned)-delta);
}

/* A finished workflow's final checkpoint (with its snapshot) is taken in
 * the tick after the one that finished it, so that its packing and its
 * write do not hold up the result: the result's batch is closed by then.
 * A resume takes it first; recovery takes it for a workflow whose result
 * is in the log and its final checkpoint is not. */
static void final_due(ao_engine_t *e, ao_wf_t *wf)
{
    wf_rt_t *r = rt(wf);
    if (r->final_due) return;
    r->final_due = 1;
    push_wf(&e->finals, &e->n_finals, &e->cap_finals, wf);
}

static void take_final(ao_engine_t *e, ao_wf_t *wf)
{
    wf_rt_t *r = rt(wf);
    if (!r->final_due) return;
    r->final_due = 0;
    if (ao_wf_status_terminal(wf->pb->status)) ao_engine_checkpoint(e, wf, "final", "", NULL, NULL);
}

/* The final checkpoints due before this tick (taking one adds none). */
static void take_finals(ao_engine_t *e)
{
    for (size_t k = 0; k < e->n_finals; k++) take_final(e, e->finals[k]);
    e->n_finals = 0;
}

static void complete(ao_engine_t *e, ao_wf_t *wf, int status)
{
    Agentos__V1__WorkflowResult *res = ao_result_build(wf, status);
    EVENT(ev, ET(WORKFLOW_COMPLETED), NULL);
    ev.confidence = res->confidence;
    Agentos__V1__WorkflowCompleted wc = AGENTOS__V1__WORKFLOW_COMPLETED__INIT;
    wc.result = res;
    ev.payload_case = PAY(WORKFLOW_COMPLETED);
    ev.workflow_completed = &wc;
    emit_event(e, wf, &ev, 1, NULL, 0); /* the state keeps the result */
    ao_pb_free(wc.result);
    final_due(e, wf);
    cancel_timers(e, wf);
    rt(wf)->last_used_ms = ao_now_ms();
    done_add(e, wf);
    ao_proc_after_commit(e->proc, fire_watches, wf);
    AO_METRIC_INC(workflows_finished);
    count_active(e, wf, -1);
    if (status == WS(FAILED)) AO_METRIC_INC(workflows_failed);
    if (status == WS(PARTIAL_SUCCESS)) AO_METRIC_INC(workflows_partial);
    if (status == WS(BUDGET_EXCEEDED)) AO_METRIC_INC(workflows_budget_exceeded);
    if (status == WS(CANCELLED)) AO_METRIC_INC(workflows_cancelled);
    AO_INFO("engine", "workflow finished id=%s status=%s tasks=%zu", wf->pb->id,
            enum_name(&agentos__v1__workflow_status__descriptor, status, strlen("WORKFLOW_STATUS_")),
            ao_wf_ntasks(wf));
}

/* The workflow is stopping: stop what runs, skip what waits, finish. */
static void stop_step(ao_engine_t *e, ao_wf_t *wf)
{
    const char *reason = wf->pb->stop_reason;
    char skip_reason[400];
    snprintf(skip_reason, sizeof skip_reason, "the workflow stopped: %s", reason);
    size_t n = ao_wf_ntasks(wf);
    for (uint32_t i = 0; i < n; i++) {
        ao_task_t *tt = &wf->tasks[i];
        int s = tt->st->status;
        if (s == TS(RUNNING) || s == TS(RETRY_WAIT) || s == TS(READY)) {
            if (tt->inflight) {
                attempt_t *a = (attempt_t *)tt->inflight;
                tt->inflight = NULL;
                if (a->submitted) ao_backends_cancel(e->backends, &a->d);
                else a->abandoned = 1;
            }
            void *ctx = NULL;
            if (tt->timer && ao_timer_cancel(e->timers, tt->timer, &ctx)) free(ctx);
            tt->timer = 0;
            EVENT(ev, ET(TASK_CANCELLED), tt->st->spec->id);
            set_parent(&ev, tt->st);
            Agentos__V1__TaskCancelled c = AGENTOS__V1__TASK_CANCELLED__INIT;
            c.reason = (char *)reason;
            ev.payload_case = PAY(TASK_CANCELLED);
            ev.task_cancelled = &c;
            emit(e, wf, &ev);
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if (wf->tasks[i].st->status == TS(PENDING)) skip_task(e, wf, i, skip_reason);
    complete(e, wf, wf->pb->stopping);
}

static void decide_strategy(ao_engine_t *e, ao_wf_t *wf)
{
    const Agentos__V1__WorkflowSpec *spec = wf->pb->spec;
    int s = spec->strategy;
    if ((s != AGENTOS__V1__STRATEGY__STRATEGY_AUTO && s != AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT) ||
        *wf->pb->strategy_reason)
        return;
    /* The estimate needs the tasks: a spec view over the task states. */
    size_t n = ao_wf_ntasks(wf);
    Agentos__V1__WorkflowSpec view = *spec;
    view.tasks = ao_xcalloc(n ? n : 1, sizeof *view.tasks);
    view.n_tasks = n;
    for (size_t k = 0; k < n; k++) view.tasks[k] = wf->tasks[k].st->spec;
    ao_strategy_choice_t ch;
    ao_strategy_decide(&view, &ch);
    free(view.tasks);
    if (s == AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT) {
        ch.strategy = s;
        snprintf(ch.reason, sizeof ch.reason, "requested: one agent (%s) runs the job",
                 spec->auto_strategy->single_agent);
    }
    EVENT(ev, ET(STRATEGY_SELECTED), NULL);
    Agentos__V1__StrategySelected ss = AGENTOS__V1__STRATEGY_SELECTED__INIT;
    ss.strategy = ch.strategy;
    ss.complexity = ch.complexity;
    ss.band = (char *)ch.band;
    ss.reason = ch.reason;
    ev.payload_case = PAY(STRATEGY_SELECTED);
    ev.strategy_selected = &ss;
    emit(e, wf, &ev);
}

/* An automatic checkpoint comes at most once per this many events a task. */
enum { CHECKPOINT_EVENTS_PER_TASK = 4 };

static void pop_all(ao_idxlist_t *l, ao_idxlist_t *into)
{
    into->v = l->v;
    into->n = l->n;
    into->cap = l->cap;
    l->v = NULL;
    l->n = l->cap = 0;
}

static void step(ao_engine_t *e, ao_wf_t *wf)
{
    if (ao_wf_status_terminal(wf->pb->status)) return;
    decide_strategy(e, wf);
    for (int rounds = 0; rounds < 1000000; rounds++) {
        if (wf->pb->stopping) {
            stop_step(e, wf);
            return;
        }
        if (!wf->to_skip.n && !wf->stage_done.n && !wf->ready.n) break;
        ao_idxlist_t l;
        pop_all(&wf->to_skip, &l);
        for (size_t k = 0; k < l.n; k++) {
            uint32_t i = l.v[k];
            if (wf->tasks[i].st->status != TS(PENDING)) continue;
            const char *why = "a dependency did not complete";
            char reason[300];
            for (uint32_t d = 0; d < wf->tasks[i].n_deps; d++) {
                const Agentos__V1__TaskState *ds = wf->tasks[wf->tasks[i].deps[d]].st;
                if (ao_task_terminal(ds->status) && ds->status != TS(SUCCEEDED)) {
                    snprintf(reason, sizeof reason, "dependency %s %s", ds->spec->id,
                             ds->status == TS(FAILED) ? "failed" : "did not run");
                    why = reason;
                    break;
                }
            }
            skip_task(e, wf, i, why);
        }
        free(l.v);
        pop_all(&wf->stage_done, &l);
        for (size_t k = 0; k < l.n; k++) stage_done(e, wf, l.v[k]);
        free(l.v);
        pop_all(&wf->ready, &l);
        int paused = 0;
        for (size_t k = 0; k < l.n && !wf->pb->stopping; k++) {
            uint32_t i = l.v[k];
            if (!e->starts_left) {
                /* The rest in the next tick. */
                for (; k < l.n; k++) ao_idxlist_push(&wf->ready, l.v[k]);
                paused = 1;
                break;
            }
            ao_task_t *tt = &wf->tasks[i];
            int s = tt->st->status;
            if (tt->inflight) continue;
            e->starts_left--;
            if (s == TS(PENDING) && tt->unmet == 0) start_task(e, wf, i);
            else if (s == TS(READY)) start_attempt(e, wf, i);
        }
        free(l.v);
        if (paused && !rt(wf)->in_deferred) {
            rt(wf)->in_deferred = 1;
            push_wf(&e->deferred, &e->n_deferred, &e->cap_deferred, wf);
        }
        if (paused) return;
    }
    if (!wf->pb->stopping && wf->n_terminal == ao_wf_ntasks(wf)) {
        int failed = 0, succeeded = 0;
        for (size_t k = 0; k < ao_wf_ntasks(wf); k++) {
            if (wf->tasks[k].st->status == TS(FAILED)) failed = 1;
            if (wf->tasks[k].st->status == TS(SUCCEEDED)) succeeded = 1;
        }
        /* Degraded is partial success only if something succeeded: a run
         * whose optional tasks all failed produced nothing. */
        complete(e, wf, !failed ? WS(SUCCESS) : succeeded ? WS(PARTIAL_SUCCESS) : WS(FAILED));
        return;
    }
    uint32_t every = wf->pb->spec && wf->pb->spec->checkpoint_every_events
                         ? wf->pb->spec->checkpoint_every_events
                         : e->cfg->storage->checkpoint_every_events;
    /* A checkpoint costs the workflow's size, about what replaying four
     * events a task costs (docs/storage.md): at most one per
     * CHECKPOINT_EVENTS_PER_TASK events a task bounds the replayed tail
     * and keeps the cost linear, and a workflow whose tasks run once (a
     * start and an end each) takes none before its final one, which
     * would follow it at once. */
    uint64_t floor = (uint64_t)CHECKPOINT_EVENTS_PER_TASK * ao_wf_ntasks(wf);
    if (every < floor) every = floor > UINT32_MAX ? UINT32_MAX : (uint32_t)floor;
    if (wf->pb->events_since_checkpoint >= every) ao_engine_checkpoint(e, wf, "auto", "", NULL, NULL);
}

/* Tasks started per tick: enough that a batch's fixed costs are shared,
 * few enough that the first dispatches overlap the later starts. */
enum { STARTS_PER_TICK = 256 };

/* ---- finished workflows out of memory ------------------------------------------------------ */

/* A finished workflow is frozen (ao_wf_freeze: its summary stays, its
 * state is its snapshot) once unused storage.freeze_idle_ms, and only when
 * more than storage.max_finished_in_memory finished workflows are whole;
 * the processor looks as often. The ao_wf_t itself stays: what holds it
 * across a turn (a call waiting for a commit) makes it whole again
 * (ao_engine_whole) before it reads the state. */

/* Whether nothing holds the workflow's state but the workflow itself, and
 * its final snapshot is written. */
static int freezable(ao_engine_t *e, ao_wf_t *wf, int64_t now)
{
    wf_rt_t *r = rt(wf);
    if (r->watches || r->final_due || r->in_deferred || r->in_dirty || r->live_attempts ||
        r->wall_timer[0] || r->wall_timer[1] || wf->n_running)
        return 0;
    if (wf->pb->events_since_checkpoint || ao_log_last_seq(e->log) < wf->pb->last_seq) return 0;
    return now - r->last_used_ms >= (int64_t)e->cfg->storage->freeze_idle_ms;
}

static int by_last_use(const void *a, const void *b)
{
    ao_wf_t *x = *(ao_wf_t *const *)a, *y = *(ao_wf_t *const *)b;
    int64_t u = rt(x)->last_used_ms, v = rt(y)->last_used_ms;
    if (u != v) return u < v ? -1 : 1;
    return (x->pb->created_unix_ms > y->pb->created_unix_ms) -
           (x->pb->created_unix_ms < y->pb->created_unix_ms);
}

/* A finished workflow, whole: into e->done (once). */
static void done_add(ao_engine_t *e, ao_wf_t *wf)
{
    wf_rt_t *r = rt(wf);
    if (r->done_pos) return;
    push_wf(&e->done, &e->n_done, &e->cap_done, wf);
    r->done_pos = e->n_done;
}

static void done_drop(ao_engine_t *e, size_t k)
{
    rt(e->done[k])->done_pos = 0;
    e->done[k] = e->done[--e->n_done];
    if (k < e->n_done) rt(e->done[k])->done_pos = k + 1;
}

/* Freezes the finished workflows unused the longest, down to the limit. */
static void freeze_unused(ao_engine_t *e, int64_t now)
{
    size_t keep = e->cfg->storage->max_finished_in_memory;
    e->last_freeze_ms = now;
    /* Those resumed or frozen since they were listed. */
    for (size_t k = 0; k < e->n_done;) {
        ao_wf_t *wf = e->done[k];
        if (wf->frozen || !ao_wf_status_terminal(wf->pb->status))
            done_drop(e, k);
        else
            k++;
    }
    if (e->n_done <= keep) return;
    size_t n = 0;
    ao_wf_t **cand = ao_xmalloc(e->n_done * sizeof *cand);
    for (size_t k = 0; k < e->n_done; k++)
        if (freezable(e, e->done[k], now)) cand[n++] = e->done[k];
    qsort(cand, n, sizeof *cand, by_last_use);
    size_t m = n < e->n_done - keep ? n : e->n_done - keep;
    for (size_t k = 0; k < m; k++) {
        ao_wf_freeze(cand[k]);
        done_drop(e, rt(cand[k])->done_pos - 1);
        AO_METRIC_INC(workflows_frozen);
    }
    if (m)
        AO_INFO("engine", "froze finished workflows=%zu whole=%zu limit=%zu", m, e->n_done, keep);
    free(cand);
}

/* Makes a frozen workflow whole from its snapshot in the log. */
static int thaw(ao_engine_t *e, ao_wf_t *wf, ao_status_t *st)
{
    uint64_t seq;
    void *data;
    size_t len;
    int rc = ao_log_get_snapshot(e->log, wf->pb->id, &seq, &data, &len, st);
    if (rc) return rc;
    Agentos__V1__Workflow *pb = len ? agentos__v1__workflow__unpack(NULL, len, data) : NULL;
    free(data);
    if (!pb)
        return ao_status_set(st, AO_ECORRUPT, "the snapshot of workflow %s does not decode",
                             wf->pb->id);
    if ((rc = ao_wf_thaw(wf, pb, st))) return rc;
    done_add(e, wf);
    AO_METRIC_INC(workflows_thawed);
    return 0;
}

static int tick(void *ud, ao_proc_t *p)
{
    (void)p;
    ao_engine_t *e = ud;
    /* Those that finished in an earlier tick: their results' batch is
     * closed. */
    take_finals(e);
    flush_retired(e, 0);
    if (e->stopping) {
        e->n_dirty = 0;
        return 0;
    }
    int64_t now = ao_now_ms();
    if (now - e->last_freeze_ms >= (int64_t)e->cfg->storage->freeze_idle_ms) freeze_unused(e, now);
    e->starts_left = STARTS_PER_TICK;
    /* Workflows paused in the last tick go first: those dirtied since
     * must not starve them. */
    for (size_t k = 0; k < e->n_paused; k++) {
        ao_wf_t *wf = e->paused[k];
        rt(wf)->in_deferred = 0;
        step(e, wf);
    }
    e->n_paused = 0;
    /* Stepping may dirty workflows again (its own events): loop until
     * quiet. */
    while (e->n_dirty) {
        ao_wf_t *wf = e->dirty[--e->n_dirty];
        rt(wf)->in_dirty = 0;
        wf->dirty = 0;
        step(e, wf);
        rt(wf)->in_dirty = 0; /* its own events re-marked it: done for now */
        if (e->n_dirty && e->dirty[e->n_dirty - 1] == wf) e->n_dirty--;
    }
    /* Paused workflows go on in the next tick, first. */
    ao_wf_t **v = e->paused;
    size_t cap = e->cap_paused;
    e->paused = e->deferred;
    e->cap_paused = e->cap_deferred;
    e->n_paused = e->n_deferred;
    e->deferred = v;
    e->cap_deferred = cap;
    e->n_deferred = 0;
    return e->n_paused > 0 || e->n_finals > 0;
}

static void on_publish(void *ud, ao_evref_t *const *evs, size_t n, uint64_t durable)
{
    ao_engine_t *e = ud;
    if (e->publish) e->publish(e->publish_ud, evs, n, durable);
}

/* ---- wall-time budget ------------------------------------------------------------------ */

static void wall_work(ao_proc_t *p, void *ud)
{
    (void)p;
    tctx_t *c = ud;
    ao_engine_t *e = c->e;
    ao_wf_t *wf = c->wf;
    if (!e->stopping && !ao_wf_status_terminal(wf->pb->status)) {
        rt(wf)->wall_timer[c->slot] = 0;
        check_budgets(e, wf, -1);
        mark_dirty(e, wf);
    }
    free(c);
}

static void wall_fired(void *ud)
{
    tctx_t *c = ud;
    ao_proc_post(c->e->proc, wall_work, free, c);
}

static void arm_wall_timers(ao_engine_t *e, ao_wf_t *wf)
{
    const Agentos__V1__Budget *b = wf->pb->spec ? wf->pb->spec->budget : NULL;
    if (!b || !b->max_wall_time_ms) return;
    double warn = b->warn_fraction > 0 ? b->warn_fraction : 0.8;
    int64_t elapsed = ao_now_ms() - wf->pb->started_unix_ms;
    int64_t at[2] = {(int64_t)((double)b->max_wall_time_ms * warn), (int64_t)b->max_wall_time_ms + 1};
    for (int k = 0; k < 2; k++) {
        int64_t delay = at[k] - elapsed;
        tctx_t *c = ao_xcalloc(1, sizeof *c);
        c->e = e;
        c->wf = wf;
        c->kind = 1;
        c->slot = k;
        rt(wf)->wall_timer[k] = ao_timer_add(e->timers, delay > 0 ? (uint64_t)delay : 0, wall_fired, c);
    }
}

/* A timer's context is freed by the work it posts (or that work's drop);
 * a timer cancelled before it fires hands its context back to be freed
 * here. */
static void cancel_timers(ao_engine_t *e, ao_wf_t *wf)
{
    wf_rt_t *r = rt(wf);
    for (int k = 0; k < 2; k++) {
        void *ctx = NULL;
        if (r->wall_timer[k] && ao_timer_cancel(e->timers, r->wall_timer[k], &ctx)) free(ctx);
        r->wall_timer[k] = 0;
    }
    for (size_t i = 0; i < ao_wf_ntasks(wf); i++) {
        void *ctx = NULL;
        if (wf->tasks[i].timer && ao_timer_cancel(e->timers, wf->tasks[i].timer, &ctx)) free(ctx);
        wf->tasks[i].timer = 0;
    }
}

/* ---- checkpoints ------------------------------------------------------------------------- */

/* A checkpoint built as a view of the workflow's state: the message and its
 * arrays are the view's own, everything they point to (task states, specs,
 * findings, strings) is borrowed from the workflow. Packing it costs what
 * the checkpoint holds; nothing is copied. Freed with view_free, never with
 * free_unpacked. */
typedef struct ckpt_view {
    Agentos__V1__Checkpoint c;
    char id[32];
    Agentos__V1__Decision *decisions; /* the structs behind c.decisions */
    Agentos__V1__TaskState *added;    /* the structs behind c.added_tasks */
    uint32_t *completed;              /* task indexes of c.completed_tasks */
} ckpt_view_t;

static void view_free(ckpt_view_t *v)
{
    if (!v) return;
    free(v->c.decisions);
    free(v->decisions);
    free(v->c.completed_tasks);
    free(v->c.next_steps);
    free(v->c.added_tasks);
    free(v->added);
    free(v->completed);
    free(v->c.key_findings);
    free(v);
}

/* Puts the workflow's snapshot, as of its last event, into the batch. */
static void put_snapshot(ao_engine_t *e, ao_wf_t *wf)
{
    size_t len;
    uint8_t *bytes = ao_wf_pack(wf, &len);
    ao_proc_put_snapshot(e->proc, wf->pb->id, wf->pb->last_seq, bytes, len);
    free(bytes);
}

/* The checkpoint of the workflow's current state (design note,
 * "Checkpointing Strategy"): decisions, completed tasks with their results,
 * key findings (merged), next steps; a generated task not yet done is kept
 * as it would restart (pending, no attempts). The view borrows from wf:
 * use it before wf changes. */
static ckpt_view_t *build_checkpoint(ao_wf_t *wf, uint64_t seq, const char *reason,
                                     const char *note)
{
    ckpt_view_t *v = ao_xcalloc(1, sizeof *v);
    Agentos__V1__Checkpoint *c = &v->c;
    agentos__v1__checkpoint__init(c);
    snprintf(v->id, sizeof v->id, "ckpt-%llu", (unsigned long long)seq);
    c->id = v->id;
    c->workflow_id = wf->pb->id;
    c->tenant = wf->pb->tenant;
    c->seq = seq;
    c->created_unix_ms = ao_now_ms();
    c->reason = (char *)reason;
    c->note = (char *)note;
    c->status = wf->pb->status;
    c->usage = wf->pb->usage;
    size_t n = ao_wf_ntasks(wf), nf = wf->pb->n_findings, nd = 0;
    for (size_t i = 0; i < n; i++) nd += wf->tasks[i].st->n_decisions;
    /* Sized once: no array grows while the view is built. */
    c->decisions = ao_xcalloc(nd ? nd : 1, sizeof *c->decisions);
    v->decisions = ao_xcalloc(nd ? nd : 1, sizeof *v->decisions);
    c->completed_tasks = ao_xcalloc(n ? n : 1, sizeof *c->completed_tasks);
    v->completed = ao_xcalloc(n ? n : 1, sizeof *v->completed);
    c->next_steps = ao_xcalloc(n ? n : 1, sizeof *c->next_steps);
    c->added_tasks = ao_xcalloc(n ? n : 1, sizeof *c->added_tasks);
    v->added = ao_xcalloc(n ? n : 1, sizeof *v->added);
    for (size_t i = 0; i < n; i++) {
        Agentos__V1__TaskState *t = wf->tasks[i].st;
        for (size_t k = 0; k < t->n_decisions; k++) {
            Agentos__V1__Decision *d = &v->decisions[c->n_decisions];
            agentos__v1__decision__init(d);
            d->task_id = t->spec->id;
            d->text = t->decisions[k];
            c->decisions[c->n_decisions++] = d;
        }
        if (t->status == TS(SUCCEEDED)) {
            v->completed[c->n_completed_tasks] = (uint32_t)i;
            c->completed_tasks[c->n_completed_tasks++] = t;
            nf += t->n_findings;
        } else {
            c->next_steps[c->n_next_steps++] = t->spec->id;
            if (*t->parent_task_id) {
                Agentos__V1__TaskState *r = &v->added[c->n_added_tasks];
                agentos__v1__task_state__init(r);
                r->spec = t->spec;
                r->status = TS(PENDING);
                r->agent = t->spec->agent;
                r->parent_task_id = t->parent_task_id;
                r->depth = t->depth;
                r->area = t->area;
                r->stage = t->stage;
                c->added_tasks[c->n_added_tasks++] = r;
            }
        }
    }
    const Agentos__V1__Finding **all = ao_xcalloc(nf ? nf : 1, sizeof *all);
    c->key_findings = ao_xcalloc(nf ? nf : 1, sizeof *c->key_findings);
    size_t m = 0;
    for (size_t k = 0; k < wf->pb->n_findings; k++) all[m++] = wf->pb->findings[k];
    for (size_t i = 0; i < n; i++) {
        const Agentos__V1__TaskState *t = wf->tasks[i].st;
        if (t->status == TS(SUCCEEDED))
            for (size_t k = 0; k < t->n_findings; k++) all[m++] = t->findings[k];
    }
    c->n_key_findings =
        ao_findings_merge(all, m, (const Agentos__V1__Finding **)c->key_findings, NULL, NULL);
    free(all);
    return v;
}

int ao_engine_checkpoint(ao_engine_t *e, ao_wf_t *wf, const char *reason, const char *note,
                         Agentos__V1__Checkpoint **out, ao_status_t *st)
{
    (void)st;
    uint64_t seq = ao_proc_next_seq(e->proc);
    ckpt_view_t *v = build_checkpoint(wf, seq, reason, note ? note : "");
    EVENT(ev, ET(CHECKPOINT_SAVED), NULL);
    Agentos__V1__CheckpointSaved cs = AGENTOS__V1__CHECKPOINT_SAVED__INIT;
    cs.checkpoint_id = v->c.id;
    cs.reason = (char *)reason;
    cs.completed_tasks = (uint32_t)v->c.n_completed_tasks;
    cs.next_steps = (uint32_t)v->c.n_next_steps;
    ev.payload_case = PAY(CHECKPOINT_SAVED);
    ev.checkpoint_saved = &cs;
    uint64_t got = emit(e, wf, &ev);
    if (got != seq) ao_fatal("checkpoint sequence mismatch (%llu != %llu)", (unsigned long long)got,
                             (unsigned long long)seq);
    /* The view still holds: applying CHECKPOINT_SAVED changes counters only.
     * Its completed tasks come from the cache of packed task states: a
     * finished task is packed once however many checkpoints hold it, and
     * the pool helps pack a large workflow's (the snapshot holds all). */
    ao_wf_pack_tasks_shared(wf, NULL, ao_wf_ntasks(wf), e->pool);
    size_t len;
    uint8_t *bytes = ao_wf_pack_with_tasks(wf, &v->c.base, "completed_tasks", v->completed,
                                           v->c.n_completed_tasks, &len);
    ao_proc_put_checkpoint(e->proc, wf->pb->id, seq, bytes, len);
    free(bytes);
    put_snapshot(e, wf);
    if (out) *out = AO_PB_CLONE(Agentos__V1__Checkpoint, &v->c);
    view_free(v);
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

ao_engine_t *ao_engine_create(const ao_engine_options_t *opt)
{
    ao_engine_t *e = ao_xcalloc(1, sizeof *e);
    /* The first random bytes seed OpenSSL's generator (milliseconds):
     * here, not in the first submission's reply time. */
    char warm[9];
    ao_random_hex(warm, 4);
    e->cfg = opt->cfg;
    e->env.cfg = opt->cfg;
    e->log = opt->log;
    e->backends = opt->backends;
    e->timers = opt->timers;
    e->pool = opt->pool;
    e->publish = opt->publish;
    e->publish_ud = opt->publish_ud;
    e->workflow_loaded = opt->workflow_loaded;
    e->loaded_ud = opt->loaded_ud;
    e->wfs = json_object();
    e->requests = json_object();
    e->tenants = json_object();
    atomic_init(&e->inflight, 0);
    atomic_init(&e->active, 0);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    ao_proc_options_t po = {opt->log, opt->cfg->storage->max_batch_events, on_publish, e, tick, e};
    e->proc = ao_proc_create(&po);
    return e;
}

ao_proc_t *ao_engine_proc(ao_engine_t *e)
{
    return e->proc;
}

unsigned ao_engine_active(ao_engine_t *e)
{
    return atomic_load(&e->active);
}

const Agentos__V1__ServerConfig *ao_engine_config(ao_engine_t *e)
{
    return e->cfg;
}

struct ao_backends *ao_engine_backends(ao_engine_t *e)
{
    return e->backends;
}

/* ---- workflows and usage by tenant (tenant_t) ----------------------------------------------- */

/* Inserts wf into v, kept in creation order (recovery loads by id, which
 * sorts by time; a new workflow goes last). */
static void order_insert(ao_wf_t ***v, size_t *n, size_t *cap, ao_wf_t *wf)
{
    push_wf(v, n, cap, wf);
    size_t k = *n - 1;
    while (k > 0 && (*v)[k - 1]->pb->created_unix_ms > wf->pb->created_unix_ms) {
        (*v)[k] = (*v)[k - 1];
        k--;
    }
    (*v)[k] = wf;
}

/* Where wf is in v (creation order), in O(log n); n if it is not there. */
static size_t order_find(ao_wf_t *const *v, size_t n, const ao_wf_t *wf)
{
    int64_t t = wf->pb->created_unix_ms;
    size_t lo = 0, hi = n; /* the first created after t */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid]->pb->created_unix_ms <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    while (lo > 0 && v[lo - 1]->pb->created_unix_ms == t)
        if (v[--lo] == wf) return lo;
    return n;
}

/* The tenant's, or NULL if it has no workflow yet. */
static tenant_t *tenant_find(ao_engine_t *e, const char *tenant)
{
    json_t *v = json_object_get(e->tenants, tenant);
    return v ? (tenant_t *)(intptr_t)json_integer_value(v) : NULL;
}

static tenant_t *tenant_of(ao_engine_t *e, const char *tenant)
{
    tenant_t *tu = tenant_find(e, tenant);
    if (tu) return tu;
    tu = ao_xcalloc(1, sizeof *tu);
    json_object_set_new(e->tenants, tenant, json_integer((json_int_t)(intptr_t)tu));
    return tu;
}

static Agentos__V1__AgentUsage *tenant_agent(tenant_t *tu, const char *agent)
{
    for (size_t i = 0; i < tu->n_agents; i++)
        if (!strcmp(tu->agents[i]->agent, agent)) return tu->agents[i];
    Agentos__V1__AgentUsage **slot = ao_pb_push(&tu->agents, &tu->n_agents, sizeof *slot);
    *slot = ao_xmalloc(sizeof **slot);
    agentos__v1__agent_usage__init(*slot);
    (*slot)->agent = ao_xstrdup(agent);
    return *slot;
}

/* A workflow's usage sink (wf.h). */
static void on_usage(void *ud, const char *agent, const Agentos__V1__Usage *u)
{
    tenant_t *tu = ud;
    Agentos__V1__AgentUsage *au = tenant_agent(tu, agent);
    if (u) {
        ao_usage_add(&tu->total, u);
        ao_usage_add(&au->usage, u);
    } else {
        ao_usage_take_back_call(tu->total);
        ao_usage_take_back_call(au->usage);
    }
}

/* The workflow's usage so far into its tenant's, and what follows through
 * its sink. */
static void join_tenant(ao_engine_t *e, ao_wf_t *wf)
{
    tenant_t *tu = tenant_of(e, wf->pb->tenant);
    ao_usage_add(&tu->total, wf->pb->usage);
    for (size_t i = 0; i < wf->pb->n_agent_usage; i++) {
        const Agentos__V1__AgentUsage *au = wf->pb->agent_usage[i];
        ao_usage_add(&tenant_agent(tu, au->agent)->usage, au->usage);
    }
    wf->usage_sink = on_usage;
    wf->usage_ud = tu;
}

void ao_engine_tenant_usage(ao_engine_t *e, const char *tenant, const Agentos__V1__Usage **total,
                            Agentos__V1__AgentUsage *const **agents, size_t *n_agents)
{
    const tenant_t *tu = tenant_find(e, tenant);
    *total = tu ? tu->total : NULL;
    *agents = tu ? tu->agents : NULL;
    *n_agents = tu ? tu->n_agents : 0;
}

static void tenants_free(ao_engine_t *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(e->tenants, k, v)
    {
        tenant_t *tu = (tenant_t *)(intptr_t)json_integer_value(v);
        free(tu->order);
        ao_pb_free(tu->total);
        for (size_t i = 0; i < tu->n_agents; i++) ao_pb_free(tu->agents[i]);
        free(tu->agents);
        free(tu);
    }
    json_decref(e->tenants);
}

static char *request_key(const char *tenant, const char *request_id)
{
    return ao_xasprintf("%s\x1f%s", tenant, request_id);
}

static void add_workflow(ao_engine_t *e, ao_wf_t *wf)
{
    json_object_set_new(e->wfs, wf->pb->id, json_integer((json_int_t)(intptr_t)wf));
    order_insert(&e->order, &e->n_order, &e->cap_order, wf);
    tenant_t *tu = tenant_of(e, wf->pb->tenant);
    order_insert(&tu->order, &tu->n_order, &tu->cap_order, wf);
    if (*wf->pb->request_id) {
        char *key = request_key(wf->pb->tenant, wf->pb->request_id);
        json_object_set_new(e->requests, key, json_string(wf->pb->id));
        free(key);
    }
    join_tenant(e, wf);
}

typedef struct replay_ctx {
    ao_wf_t *wf;
    ao_wf_t **created;
    const char *wf_id;
    ao_status_t *st;
    int rc;
    size_t n; /* events replayed */
} replay_ctx_t;

static int replay_event(void *ud, uint64_t seq, const void *data, size_t len)
{
    replay_ctx_t *c = ud;
    Agentos__V1__Event *ev = agentos__v1__event__unpack(NULL, len, data);
    if (!ev) {
        c->rc = ao_status_set(c->st, AO_ECORRUPT, "event %llu of workflow %s does not decode",
                              (unsigned long long)seq, c->wf_id);
        return 1;
    }
    if (ev->seq != seq) {
        c->rc = ao_status_set(c->st, AO_ECORRUPT, "event stored at %llu says it is %llu",
                              (unsigned long long)seq, (unsigned long long)ev->seq);
    } else if (!c->wf) {
        c->rc = ao_wf_create(ev, &c->wf, c->st);
        if (c->rc) {
            ao_status_t inner = *c->st;
            ao_status_set(c->st, AO_ECORRUPT, "workflow %s: %s", c->wf_id, inner.msg);
            c->rc = AO_ECORRUPT;
        }
    } else {
        c->rc = ao_wf_apply(c->wf, ev, c->st);
    }
    agentos__v1__event__free_unpacked(ev, NULL);
    c->n++;
    return c->rc != 0;
}

typedef struct load_ctx {
    ao_engine_t *e;
    ao_status_t *st;
    int rc;
    size_t loaded, replayed, frozen;
    /* The finished workflows loaded last (storage.max_finished_in_memory of
     * them, a ring): one that falls out is frozen at once, so that a start
     * never holds more finished workflows whole than the limit. */
    ao_wf_t **recent;
    size_t n_recent, next_recent;
} load_ctx_t;

/* A finished workflow just loaded: kept whole among the latest, or the
 * oldest of those frozen in its place. Snapshots come in workflow id
 * order, which is creation order. */
static void keep_recent(load_ctx_t *c, ao_wf_t *wf)
{
    size_t keep = c->e->cfg->storage->max_finished_in_memory;
    if (!ao_wf_status_terminal(wf->pb->status) || wf->pb->events_since_checkpoint || !keep) return;
    if (!c->recent) c->recent = ao_xcalloc(keep, sizeof *c->recent);
    if (c->n_recent < keep) {
        c->recent[c->n_recent++] = wf;
        return;
    }
    ao_wf_freeze(c->recent[c->next_recent]);
    AO_METRIC_INC(workflows_frozen);
    c->frozen++;
    c->recent[c->next_recent] = wf;
    c->next_recent = (c->next_recent + 1) % keep;
}

static int load_snapshot(void *ud, const char *wf_id, uint64_t seq, const void *data, size_t len)
{
    load_ctx_t *c = ud;
    ao_wf_t *wf = NULL;
    /* Empty: written at submit, the workflow is its events from seq + 1. */
    if (len) {
        Agentos__V1__Workflow *pb = agentos__v1__workflow__unpack(NULL, len, data);
        if (!pb) {
            c->rc = ao_status_set(c->st, AO_ECORRUPT, "the snapshot of workflow %s does not decode", wf_id);
            return 1;
        }
        if ((c->rc = ao_wf_from_snapshot(pb, &wf, c->st))) return 1;
    }
    if (!wf || !ao_wf_status_terminal(wf->pb->status)) {
        replay_ctx_t r = {wf, NULL, wf_id, c->st, 0, 0};
        int rc = ao_log_read_workflow(c->e->log, wf_id, seq + 1, UINT64_MAX, 0, replay_event, &r, c->st);
        wf = r.wf;
        if (!rc && !r.rc && !wf)
            r.rc = ao_status_set(c->st, AO_ECORRUPT,
                                 "workflow %s has an empty snapshot at %llu but no events after it",
                                 wf_id, (unsigned long long)seq);
        if (rc || r.rc) {
            ao_wf_free(wf);
            c->rc = rc ? rc : r.rc;
            return 1;
        }
        c->replayed += r.n;
    }
    add_workflow(c->e, wf);
    if (!ao_wf_status_terminal(wf->pb->status)) count_active(c->e, wf, 1);
    keep_recent(c, wf);
    if (c->e->workflow_loaded) c->e->workflow_loaded(c->e->loaded_ud, wf->pb->id, wf->pb->tenant);
    c->loaded++;
    return 0;
}

int ao_engine_recover(ao_engine_t *e, ao_status_t *st)
{
    int64_t t0 = ao_mono_us();
    load_ctx_t c = {e, st, 0, 0, 0, 0, NULL, 0, 0};
    int rc = ao_log_scan_snapshots(e->log, load_snapshot, &c, st);
    free(c.recent);
    if (rc || c.rc) return rc ? rc : c.rc;
    size_t unfinished = 0, finals = 0;
    for (size_t k = 0; k < e->n_order; k++) {
        ao_wf_t *wf = e->order[k];
        if (!ao_wf_status_terminal(wf->pb->status)) unfinished++;
        /* Finished, with events after its last checkpoint: the process
         * stopped between the result and the final checkpoint. */
        else if (wf->pb->events_since_checkpoint > 0) {
            final_due(e, wf);
            finals++;
        }
        if (ao_wf_status_terminal(wf->pb->status)) {
            rt(wf)->last_used_ms = wf->pb->finished_unix_ms;
            if (!wf->frozen) done_add(e, wf);
        }
    }
    AO_INFO("engine",
            "recovered workflows=%zu unfinished=%zu final_checkpoints_due=%zu frozen=%zu "
            "replayed_events=%zu last_seq=%llu ms=%.1f",
            c.loaded, unfinished, finals, c.frozen, c.replayed,
            (unsigned long long)ao_log_last_seq(e->log), (double)(ao_mono_us() - t0) / 1000.0);
    return 0;
}

/* First work of the processor: continue the unfinished workflows. */
static void continue_work(ao_proc_t *p, void *ud)
{
    (void)p;
    ao_engine_t *e = ud;
    int64_t now = ao_now_ms();
    for (size_t k = 0; k < e->n_order; k++) {
        ao_wf_t *wf = e->order[k];
        if (ao_wf_status_terminal(wf->pb->status)) continue;
        for (uint32_t i = 0; i < ao_wf_ntasks(wf); i++) {
            Agentos__V1__TaskState *t = wf->tasks[i].st;
            int kind = t->spec->kind ? t->spec->kind : KIND(AGENT);
            if (t->status == TS(RUNNING) && kind != KIND(REFINEMENT)) {
                EVENT(ev, ET(TASK_RECOVERED), t->spec->id);
                set_parent(&ev, t);
                ev.attempt = t->attempts;
                ev.attempt_id = t->attempt_id;
                Agentos__V1__TaskRecovered tr = AGENTOS__V1__TASK_RECOVERED__INIT;
                tr.lost_attempt_id = t->attempt_id;
                ev.payload_case = PAY(TASK_RECOVERED);
                ev.task_recovered = &tr;
                emit(e, wf, &ev);
            } else if (t->status == TS(RETRY_WAIT)) {
                tctx_t *c = ao_xcalloc(1, sizeof *c);
                c->e = e;
                c->wf = wf;
                c->task = i;
                c->attempts = t->attempts;
                int64_t delay = t->next_attempt_unix_ms - now;
                wf->tasks[i].timer = ao_timer_add(e->timers, delay > 0 ? (uint64_t)delay : 0,
                                                  retry_timer_fired, c);
            }
        }
        arm_wall_timers(e, wf);
        mark_dirty(e, wf);
    }
}

void ao_engine_start(ao_engine_t *e)
{
    ao_proc_start(e->proc);
    ao_proc_post(e->proc, continue_work, NULL, e);
}

static void stop_work(ao_proc_t *p, void *ud)
{
    (void)p;
    ao_engine_t *e = ud;
    e->stopping = 1;
    for (size_t k = 0; k < e->n_order; k++) {
        ao_wf_t *wf = e->order[k];
        for (uint32_t i = 0; i < ao_wf_ntasks(wf); i++) {
            ao_task_t *tt = &wf->tasks[i];
            if (!tt->inflight) continue;
            attempt_t *a = (attempt_t *)tt->inflight;
            tt->inflight = NULL;
            if (a->submitted) ao_backends_cancel(e->backends, &a->d);
            else a->abandoned = 1;
        }
        cancel_timers(e, wf);
        /* After commit: what they are told may be in this loop's batch. */
        if (wf->rt && rt(wf)->watches) ao_proc_after_commit(p, fire_all_watches, wf);
    }
}

static void release_work(ao_proc_t *p, void *ud)
{
    ao_engine_t *e = ud;
    for (size_t k = 0; k < e->n_order; k++)
        if (e->order[k]->rt && rt(e->order[k])->watches) fire_all_watches(p, e->order[k]);
}

void ao_engine_release_waiters(ao_engine_t *e)
{
    ao_proc_post(e->proc, release_work, NULL, e);
}

void ao_engine_stop(ao_engine_t *e)
{
    ao_proc_post(e->proc, stop_work, NULL, e);
    pthread_mutex_lock(&e->lock);
    while (atomic_load(&e->inflight) > 0) pthread_cond_wait(&e->cond, &e->lock);
    pthread_mutex_unlock(&e->lock);
    ao_proc_stop(e->proc);
}

void ao_engine_destroy(ao_engine_t *e)
{
    if (!e) return;
    for (size_t k = 0; k < e->n_order; k++) {
        ao_wf_t *wf = e->order[k];
        if (wf->rt) {
            watch_t *w = rt(wf)->watches;
            while (w) {
                watch_t *next = w->next;
                free(w);
                w = next;
            }
            free(wf->rt);
        }
        ao_wf_free(wf);
    }
    free(e->order);
    free(e->done);
    free(e->dirty);
    free(e->deferred);
    free(e->paused);
    flush_retired(e, 1);
    free(e->retired);
    free(e->finals);
    json_decref(e->wfs);
    json_decref(e->requests);
    tenants_free(e);
    ao_proc_destroy(e->proc);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cond);
    free(e);
}

/* ---- operations --------------------------------------------------------------------------- */

ao_wf_t *ao_engine_find(ao_engine_t *e, const char *id, const char *tenant, ao_status_t *st)
{
    json_t *v = json_object_get(e->wfs, id);
    ao_wf_t *wf = v ? (ao_wf_t *)(intptr_t)json_integer_value(v) : NULL;
    if (!wf || strcmp(wf->pb->tenant, tenant)) {
        ao_status_set(st, AO_ENOTFOUND, "workflow \"%.100s\" not found", id);
        return NULL;
    }
    return ao_engine_whole(e, wf, st) ? NULL : wf;
}

int ao_engine_whole(ao_engine_t *e, ao_wf_t *wf, ao_status_t *st)
{
    if (wf->frozen) {
        int rc = thaw(e, wf, st);
        if (rc) {
            AO_ERROR("engine", "workflow %s could not be loaded from its snapshot: %s", wf->pb->id,
                     st->msg);
            return rc;
        }
    }
    rt(wf)->last_used_ms = ao_now_ms();
    return 0;
}

struct ao_submission {
    char *request_id;
    char *id; /* the workflow's, made here: RAND_bytes is about 110,000
               * instructions, which the processor need not spend */
    uint8_t *payload; /* WorkflowSubmitted */
    size_t len;
    ao_wf_t *wf;
};

/* A large submission's payload is packed by a pool job while the caller
 * builds the workflow's state (ao_pool_share: the caller packs it itself if
 * no job has started it). */
enum { PACK_APART_MIN_TASKS = 256 };

typedef struct payload {
    Agentos__V1__WorkflowSubmitted ws; /* borrows the caller's spec */
    uint8_t *out;
    size_t len;
} payload_t;

static void pack_payload(void *ud, size_t begin, size_t end)
{
    (void)begin;
    (void)end;
    payload_t *pl = ud;
    pl->len = protobuf_c_message_get_packed_size(&pl->ws.base);
    pl->out = ao_xmalloc(pl->len ? pl->len : 1);
    protobuf_c_message_pack(&pl->ws.base, pl->out);
}

ao_submission_t *ao_engine_prepare(ao_engine_t *e, const Agentos__V1__WorkflowSpec *spec,
                                   const char *request_id)
{
    ao_submission_t *sub = ao_xcalloc(1, sizeof *sub);
    sub->request_id = ao_xstrdup(request_id ? request_id : "");
    char rnd[9];
    ao_random_hex(rnd, 4);
    sub->id = ao_xasprintf("wf-%012llx-%s", (unsigned long long)ao_now_ms(), rnd);
    /* Roles from the backends' defaults go into the submitted spec (a copy
     * only when some task takes one). */
    Agentos__V1__WorkflowSpec *roled = NULL;
    for (size_t k = 0; k < spec->n_tasks && !roled; k++)
        if (!spec->tasks[k]->role && default_role(e, spec->tasks[k]))
            roled = AO_PB_CLONE(Agentos__V1__WorkflowSpec, spec);
    for (size_t k = 0; roled && k < roled->n_tasks; k++)
        roled->tasks[k]->role = default_role(e, roled->tasks[k]);
    if (roled) spec = roled;
    payload_t pl = {AGENTOS__V1__WORKFLOW_SUBMITTED__INIT, NULL, 0};
    pl.ws.spec = (Agentos__V1__WorkflowSpec *)spec;
    pl.ws.request_id = sub->request_id;
    ao_pool_share_t *packing =
        ao_pool_share(e->pool, "", 1, 1, spec->n_tasks >= PACK_APART_MIN_TASKS, pack_payload, &pl);
    ao_status_t st;
    if (ao_wf_new(spec, "", sub->request_id, e->pool, &sub->wf, &st))
        ao_fatal("a validated workflow could not be built: %s", st.msg);
    ao_pool_join(packing);
    sub->payload = pl.out;
    sub->len = pl.len;
    ao_wf_set_submission(sub->wf, sub->payload, sub->len);
    ao_pb_free(roled);
    return sub;
}

void ao_submission_free(ao_submission_t *sub)
{
    if (!sub) return;
    ao_wf_free(sub->wf);
    free(sub->payload);
    free(sub->request_id);
    free(sub->id);
    free(sub);
}

int ao_engine_submit(ao_engine_t *e, const char *tenant, const Agentos__V1__WorkflowSpec *spec,
                     const char *request_id, ao_wf_t **out, uint64_t *seq, int *dedup,
                     ao_status_t *st)
{
    return ao_engine_submit_prepared(e, tenant, ao_engine_prepare(e, spec, request_id), out, seq, dedup, st);
}

/* Whether the tenant has limits.max_active_workflows unfinished
 * workflows already: another may not start (submitted or resumed). */
static int over_active_limit(ao_engine_t *e, const char *tenant, ao_status_t *st)
{
    const tenant_t *tu = tenant_find(e, tenant);
    size_t n = tu ? tu->active : 0;
    if (n < e->cfg->limits->max_active_workflows) return 0;
    ao_status_set(st, AO_ELIMIT,
                  "tenant %s has %zu unfinished workflows, the limit (limits.max_active_workflows)",
                  tenant, n);
    return 1;
}

int ao_engine_submit_prepared(ao_engine_t *e, const char *tenant, ao_submission_t *sub, ao_wf_t **out,
                              uint64_t *seq, int *dedup, ao_status_t *st)
{
    *dedup = 0;
    const char *request_id = sub->request_id;
    if (e->stopping) {
        ao_submission_free(sub);
        return ao_status_set(st, AO_EUNAVAIL, "agentosd is shutting down");
    }
    if (*request_id) {
        char *key = request_key(tenant, request_id);
        json_t *v = json_object_get(e->requests, key);
        free(key);
        if (v) {
            ao_wf_t *held = ao_engine_find(e, json_string_value(v), tenant, st);
            /* A retry sends what it sent; the same key with another
             * workflow is a client's mistake, not a retry. */
            int rc = held ? 0 : AO_EINTERNAL;
            if (held && *held->pb->submission_sha256 &&
                strcmp(held->pb->submission_sha256, sub->wf->pb->submission_sha256))
                rc = ao_status_set(st, AO_EEXIST,
                                   "request_id \"%.128s\" was used for workflow %s, with another "
                                   "workflow spec: a retry sends the same spec, a new submission "
                                   "a new request_id",
                                   request_id, held->pb->id);
            ao_submission_free(sub);
            *seq = 0;
            if (rc) return rc;
            *out = held;
            *dedup = 1;
            return 0;
        }
    }
    if (over_active_limit(e, tenant, st)) {
        ao_submission_free(sub);
        return AO_ELIMIT;
    }
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    ev.type = ET(WORKFLOW_SUBMITTED);
    ev.workflow_id = sub->id;
    ev.tenant = (char *)tenant;
    ev.payload_case = PAY(WORKFLOW_SUBMITTED); /* packed in sub */
    *seq = ao_proc_emit_packed(e->proc, &ev, sub->payload, sub->len);
    ao_wf_t *wf = sub->wf;
    sub->wf = NULL;
    ao_wf_bind(wf, &ev);
    ao_submission_free(sub);
    add_workflow(e, wf);
    /* An empty snapshot as of the event before: recovery finds the workflow
     * and rebuilds it from its WORKFLOW_SUBMITTED, which holds the spec
     * already (a full snapshot here would pack the workflow twice). */
    ao_proc_put_snapshot(e->proc, wf->pb->id, *seq - 1, "", 0);
    arm_wall_timers(e, wf);
    mark_dirty(e, wf);
    *out = wf;
    count_active(e, wf, 1);
    AO_METRIC_INC(workflows_submitted);
    AO_INFO("engine", "workflow submitted id=%s tenant=%s tasks=%zu", wf->pb->id, tenant,
            ao_wf_ntasks(wf));
    return 0;
}

int ao_engine_cancel(ao_engine_t *e, ao_wf_t *wf, const char *reason, ao_status_t *st)
{
    if (ao_wf_status_terminal(wf->pb->status))
        return ao_status_set(st, AO_ESTATE, "workflow %s has already finished (%s)", wf->pb->id,
                             enum_name(&agentos__v1__workflow_status__descriptor, wf->pb->status,
                                       strlen("WORKFLOW_STATUS_")));
    if (wf->pb->stopping) return 0;
    EVENT(ev, ET(CANCEL_REQUESTED), NULL);
    Agentos__V1__CancelRequested cr = AGENTOS__V1__CANCEL_REQUESTED__INIT;
    char buf[300];
    snprintf(buf, sizeof buf, "cancelled: %s", reason && *reason ? reason : "by request");
    cr.reason = buf;
    ev.payload_case = PAY(CANCEL_REQUESTED);
    ev.cancel_requested = &cr;
    emit(e, wf, &ev);
    return 0;
}

int ao_engine_resume(ao_engine_t *e, ao_wf_t *wf, const Agentos__V1__Checkpoint *from,
                     Agentos__V1__TaskOverride *const *overrides, size_t n_overrides,
                     const Agentos__V1__Budget *budget, uint64_t *seq, ao_status_t *st)
{
    int s = wf->pb->status;
    if (!ao_wf_status_terminal(s))
        return ao_status_set(st, AO_ESTATE, "workflow %s is still running; cancel it first",
                             wf->pb->id);
    if (s == WS(SUCCESS))
        return ao_status_set(st, AO_ESTATE, "workflow %s succeeded: there is nothing to resume",
                             wf->pb->id);
    if (from && strcmp(from->workflow_id, wf->pb->id))
        return ao_status_set(st, AO_EINVAL, "checkpoint %s belongs to workflow %s", from->id,
                             from->workflow_id);
    for (size_t k = 0; k < n_overrides; k++) {
        const Agentos__V1__TaskOverride *o = overrides[k];
        if (ao_wf_find(wf, o->task_id) < 0)
            return ao_status_set(st, AO_EINVAL, "overrides[%zu].task_id: no task \"%.100s\"", k,
                                 o->task_id);
        if (*o->agent && !backend_cfg(e, o->agent))
            return ao_status_set(st, AO_EINVAL, "overrides[%zu].agent: unknown agent \"%.100s\"",
                                 k, o->agent);
        if (o->max_attempts > 100)
            return ao_status_set(st, AO_EINVAL, "overrides[%zu].max_attempts: at most 100", k);
    }
    if (over_active_limit(e, wf->pb->tenant, st)) return AO_ELIMIT;
    take_final(e, wf);
    /* Clients still waiting for the result this resume replaces get it
     * now: a resume runs once the state is the log's (a commit callback),
     * so the result is durable, and the callback that would have answered
     * them after its commit finds the workflow running again. */
    fire_all_watches(e->proc, wf);
    ckpt_view_t *own = NULL;
    if (!from) {
        own = build_checkpoint(wf, ao_proc_next_seq(e->proc), "resume", "");
        from = &own->c;
    }
    char **rerun = NULL;
    size_t n_rerun = 0;
    json_t *kept = ao_wf_resume_kept(from);
    for (size_t i = 0; i < ao_wf_ntasks(wf); i++) {
        const char *id = wf->tasks[i].st->spec->id;
        if (!json_object_get(kept, id)) ao_pb_push_str(&rerun, &n_rerun, id);
    }
    json_decref(kept);
    EVENT(ev, ET(WORKFLOW_RESUMED), NULL);
    Agentos__V1__WorkflowResumed wr = AGENTOS__V1__WORKFLOW_RESUMED__INIT;
    wr.checkpoint_id = own ? "" : from->id;
    wr.checkpoint = (Agentos__V1__Checkpoint *)from;
    wr.overrides = (Agentos__V1__TaskOverride **)overrides;
    wr.n_overrides = n_overrides;
    wr.rerun = rerun;
    wr.n_rerun = n_rerun;
    wr.budget = (Agentos__V1__Budget *)budget;
    ev.payload_case = PAY(RESUMED);
    ev.resumed = &wr;
    *seq = emit(e, wf, &ev);
    /* The stored snapshot says the workflow finished: recovery would not
     * replay past it. A snapshot of the resumed state goes with the event. */
    put_snapshot(e, wf);
    count_active(e, wf, 1);
    ao_pb_free_strs(&rerun, &n_rerun);
    view_free(own);
    arm_wall_timers(e, wf);
    AO_INFO("engine", "workflow resumed id=%s checkpoint=%s", wf->pb->id,
            wr.checkpoint_id[0] ? wr.checkpoint_id : "(latest state)");
    return 0;
}

int ao_engine_publish(ao_engine_t *e, ao_wf_t *wf, const Agentos__V1__PublishEventRequest *req,
                      uint64_t *seq, ao_status_t *st)
{
    if (ao_wf_status_terminal(wf->pb->status))
        return ao_status_set(st, AO_ESTATE, "workflow %s has finished: no more events", wf->pb->id);
    if (*req->task_id && ao_wf_find(wf, req->task_id) < 0)
        return ao_status_set(st, AO_EINVAL, "task_id: no task \"%.100s\" in workflow %s",
                             req->task_id, wf->pb->id);
    unsigned max = e->cfg->limits->max_output_bytes;
    EVENT(ev, 0, req->task_id);
    Agentos__V1__Finding finding;
    switch (req->payload_case) {
    case AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_PROGRESS:
        if (strlen(req->progress->message) > max)
            return ao_status_set(st, AO_ELIMIT, "progress.message is over limits.max_output_bytes (%u)", max);
        ev.type = ET(TASK_PROGRESS);
        ev.payload_case = PAY(PROGRESS);
        ev.progress = req->progress;
        break;
    case AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_FINDING:
        if (!*req->finding->key || strlen(req->finding->key) > 128)
            return ao_status_set(st, AO_EINVAL, "finding.key: 1 to 128 bytes");
        if (strlen(req->finding->value) > max)
            return ao_status_set(st, AO_ELIMIT, "finding.value is over limits.max_output_bytes (%u)", max);
        if (!(req->finding->confidence >= 0 && req->finding->confidence <= 1))
            return ao_status_set(st, AO_EINVAL, "finding.confidence: must be in [0, 1]");
        /* source_task and authority are the server's to fill (the task's,
         * when applied), whatever the client sent. */
        finding = *req->finding;
        finding.source_task = (char *)protobuf_c_empty_string;
        finding.authority = 0;
        ev.type = ET(FINDING_PUBLISHED);
        ev.confidence = finding.confidence;
        ev.payload_case = PAY(FINDING);
        ev.finding = &finding;
        break;
    case AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_CUSTOM:
        if (strlen(req->custom->data) > max || strlen(req->custom->name) > 256)
            return ao_status_set(st, AO_ELIMIT,
                                 "custom: name over 256 bytes or data over limits.max_output_bytes (%u)", max);
        ev.type = ET(CUSTOM);
        ev.payload_case = PAY(CUSTOM);
        ev.custom = req->custom;
        break;
    default:
        return ao_status_set(st, AO_EINVAL, "payload: set one of progress, finding, custom");
    }
    *seq = emit(e, wf, &ev);
    return 0;
}

void *ao_engine_watch(ao_engine_t *e, ao_wf_t *wf, ao_engine_watch_fn fn, void *ud)
{
    watch_t *w = ao_xcalloc(1, sizeof *w);
    w->fn = fn;
    w->ud = ud;
    wf_rt_t *r = rt(wf);
    w->next = r->watches;
    r->watches = w;
    if (ao_wf_status_terminal(wf->pb->status)) ao_proc_after_commit(e->proc, fire_watches, wf);
    return w;
}

int ao_engine_unwatch(ao_engine_t *e, ao_wf_t *wf, void *handle)
{
    (void)e;
    wf_rt_t *r = rt(wf);
    for (watch_t **p = &r->watches; *p; p = &(*p)->next) {
        if (*p == handle) {
            *p = (*p)->next;
            free(handle);
            return 1;
        }
    }
    return 0;
}

void ao_engine_list(ao_engine_t *e, const char *tenant, const char *after,
                    int (*fn)(void *ud, ao_wf_t *wf), void *ud)
{
    const tenant_t *tu = tenant_find(e, tenant);
    if (!tu) return;
    size_t k = tu->n_order;
    if (after && *after) {
        /* From the one before it; nothing after a workflow not the tenant's. */
        json_t *v = json_object_get(e->wfs, after);
        const ao_wf_t *a = v ? (const ao_wf_t *)(intptr_t)json_integer_value(v) : NULL;
        k = a && !strcmp(a->pb->tenant, tenant) ? order_find(tu->order, tu->n_order, a) : 0;
        if (k == tu->n_order) k = 0;
    }
    while (k > 0)
        if (fn(ud, tu->order[--k])) break;
}

int ao_engine_state_at(ao_log_t *log, const char *workflow_id, uint64_t at_seq, ao_wf_t **out,
                       ao_status_t *st)
{
    replay_ctx_t r = {NULL, NULL, workflow_id, st, 0, 0};
    int rc = ao_log_read_workflow(log, workflow_id, 0, at_seq, 0, replay_event, &r, st);
    if (rc || r.rc) {
        ao_wf_free(r.wf);
        return rc ? rc : r.rc;
    }
    if (!r.wf) return ao_status_set(st, AO_ENOTFOUND, "workflow %s has no events up to %llu",
                                    workflow_id, (unsigned long long)at_seq);
    *out = r.wf;
    return 0;
}
