#include "dag.h"

#include "mem.h"
#include "pbutil.h"
#include "template.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIND(x) AGENTOS__V1__TASK_KIND__TASK_KIND_##x

static int agent_known(const ao_dag_env_t *env, const char *name)
{
    for (size_t i = 0; i < env->cfg->n_agents; i++)
        if (!strcmp(env->cfg->agents[i]->name, name)) return 1;
    return 0;
}

static int in_list(char **list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

/* ---- templates ------------------------------------------------------------- */

typedef struct tpl_ctx {
    const Agentos__V1__TaskSpec *task;
    const Agentos__V1__WorkflowSpec *wf; /* NULL for plans: any context key */
    int refinement;                      /* area and prev.output allowed */
    const char *where;                   /* "input" or "refinement.stages[1].input" */
    ao_status_t *st;
} tpl_ctx_t;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && !strcmp(s + n - m, suffix);
}

static int check_key(void *ud, const char *key)
{
    tpl_ctx_t *c = ud;
    const char *id = c->task->id;
    if (!strncmp(key, "deps.", 5)) {
        const char *fields[] = {".output", ".score", ".confidence"};
        for (int f = 0; f < 3; f++) {
            if (!ends_with(key + 5, fields[f])) continue;
            size_t len = strlen(key + 5) - strlen(fields[f]);
            char dep[201];
            memcpy(dep, key + 5, len);
            dep[len] = '\0';
            if (!in_list(c->task->depends_on, c->task->n_depends_on, dep))
                return ao_status_set(c->st, AO_EINVAL,
                                     "task %s %s: {{%s}} names task \"%s\", which is not in its "
                                     "depends_on",
                                     id, c->where, key, dep);
            return 0;
        }
        return ao_status_set(c->st, AO_EINVAL,
                             "task %s %s: {{%s}}: use deps.ID.output, deps.ID.score or "
                             "deps.ID.confidence",
                             id, c->where, key);
    }
    if (!strncmp(key, "context.", 8)) {
        if (!c->wf) return 0;
        for (size_t i = 0; i < c->wf->n_context; i++)
            if (!strcmp(c->wf->context[i]->key, key + 8)) return 0;
        return ao_status_set(c->st, AO_EINVAL,
                             "task %s %s: {{%s}}: the workflow's context has no key \"%s\"", id,
                             c->where, key, key + 8);
    }
    if (!strncmp(key, "findings.", 9) && key[9]) return 0;
    if (!strcmp(key, "workflow.name") || !strcmp(key, "workflow.id") || !strcmp(key, "task.id"))
        return 0;
    if (c->refinement && (!strcmp(key, "area") || !strcmp(key, "prev.output"))) return 0;
    return ao_status_set(c->st, AO_EINVAL, "task %s %s: unknown placeholder {{%s}}", id, c->where,
                         key);
}

static int check_template(const char *tpl, tpl_ctx_t *c, size_t max)
{
    if (strlen(tpl) > max)
        return ao_status_set(c->st, AO_EINVAL,
                             "task %s %s: %zu bytes is over limits.max_input_bytes (%zu)",
                             c->task->id, c->where, strlen(tpl), max);
    return ao_template_scan(tpl, check_key, c);
}

/* ---- one task ---------------------------------------------------------------- */

static int check_task(const Agentos__V1__TaskSpec *t, const Agentos__V1__WorkflowSpec *wf,
                      const ao_dag_env_t *env, int generated, ao_status_t *st)
{
    const Agentos__V1__Limits *lim = env->cfg->limits;
    const char *id = t->id;
    int kind = t->kind ? t->kind : KIND(AGENT);
    if (kind < KIND(AGENT) || kind > KIND(REFINEMENT))
        return ao_status_set(st, AO_EINVAL, "task %s: unknown kind %d", id, t->kind);
    if (kind == KIND(AGENT) || kind == KIND(PLANNER)) {
        if (!*t->agent)
            return ao_status_set(st, AO_EINVAL, "task %s: agent is required for a %s task", id,
                                 kind == KIND(PLANNER) ? "PLANNER" : "AGENT");
    }
    if (*t->agent && kind != KIND(SYNC) && kind != KIND(REFINEMENT) && !agent_known(env, t->agent))
        return ao_status_set(st, AO_EINVAL, "task %s: unknown agent \"%s\" (not in the server's agents)",
                             id, t->agent);
    if (*t->fallback_agent && !agent_known(env, t->fallback_agent))
        return ao_status_set(st, AO_EINVAL, "task %s: unknown fallback_agent \"%s\"", id,
                             t->fallback_agent);
    if (*t->fallback_agent && !strcmp(t->fallback_agent, t->agent))
        return ao_status_set(st, AO_EINVAL, "task %s: fallback_agent is the same as agent", id);
    if (t->authority < 0 || !isfinite(t->authority))
        return ao_status_set(st, AO_EINVAL, "task %s: authority must be >= 0", id);
    if (t->retry) {
        const Agentos__V1__RetryPolicy *r = t->retry;
        if (r->max_attempts > 100)
            return ao_status_set(st, AO_EINVAL, "task %s: retry.max_attempts %u is over 100", id,
                                 r->max_attempts);
        if (r->multiplier != 0 && (r->multiplier < 1 || r->multiplier > 100 || !isfinite(r->multiplier)))
            return ao_status_set(st, AO_EINVAL, "task %s: retry.multiplier must be in [1, 100]", id);
        if (r->jitter < 0 || r->jitter > 1 || !isfinite(r->jitter))
            return ao_status_set(st, AO_EINVAL, "task %s: retry.jitter must be in [0, 1]", id);
    }
    if (strlen(t->impact) > 1024)
        return ao_status_set(st, AO_EINVAL, "task %s: impact is over 1024 bytes", id);
    size_t params = 0;
    for (size_t i = 0; i < t->n_params; i++) params += strlen(t->params[i]->key) + strlen(t->params[i]->value);
    if (params > lim->max_input_bytes)
        return ao_status_set(st, AO_EINVAL, "task %s: params are over limits.max_input_bytes (%u)",
                             id, lim->max_input_bytes);
    if (t->budget && t->budget->max_tasks)
        return ao_status_set(st, AO_EINVAL, "task %s: budget.max_tasks applies to workflows only", id);

    tpl_ctx_t c = {t, wf, 0, "input", st};
    int rc = check_template(t->input, &c, lim->max_input_bytes);
    if (rc) return rc;

    if (kind == KIND(REFINEMENT)) {
        const Agentos__V1__RefinementSpec *r = t->refinement;
        if (!r || r->n_areas == 0 || r->n_areas > 256)
            return ao_status_set(st, AO_EINVAL, "task %s: refinement.areas needs 1 to 256 areas", id);
        if (r->n_stages == 0 || r->n_stages > 8)
            return ao_status_set(st, AO_EINVAL, "task %s: refinement.stages needs 1 to 8 stages", id);
        for (size_t a = 0; a < r->n_areas; a++) {
            if (!ao_valid_id(r->areas[a], 64) || strchr(r->areas[a], '/'))
                return ao_status_set(st, AO_EINVAL,
                                     "task %s: refinement.areas[%zu] must be 1 to 64 characters "
                                     "of [A-Za-z0-9_.:-]",
                                     id, a);
            for (size_t b = 0; b < a; b++)
                if (!strcmp(r->areas[a], r->areas[b]))
                    return ao_status_set(st, AO_EINVAL, "task %s: refinement area \"%s\" twice",
                                         id, r->areas[a]);
        }
        for (size_t s = 0; s < r->n_stages; s++) {
            const Agentos__V1__RefinementStage *sg = r->stages[s];
            if (!agent_known(env, sg->agent))
                return ao_status_set(st, AO_EINVAL,
                                     "task %s: refinement.stages[%zu].agent \"%s\" is unknown", id,
                                     s, sg->agent);
            char where[64];
            snprintf(where, sizeof where, "refinement.stages[%zu].input", s);
            tpl_ctx_t sc = {t, wf, 1, where, st};
            if ((rc = check_template(sg->input, &sc, lim->max_input_bytes))) return rc;
            if (sg->threshold < 0 || sg->threshold > 1 || !isfinite(sg->threshold))
                return ao_status_set(st, AO_EINVAL,
                                     "task %s: refinement.stages[%zu].threshold must be in [0, 1]",
                                     id, s);
        }
    } else if (t->refinement) {
        return ao_status_set(st, AO_EINVAL, "task %s: refinement is only for REFINEMENT tasks", id);
    }
    (void)generated;
    return 0;
}

/* ---- the graph ------------------------------------------------------------- */

typedef struct graph {
    size_t n;
    char **ids;
    uint32_t **deps;
    uint32_t *n_deps;
} graph_t;

/* Finds a cycle among the nodes left with in-degree > 0 by Kahn's algorithm
 * and writes it as "a -> b -> c -> a". */
static void describe_cycle(const graph_t *g, const uint32_t *indeg, ao_sb_t *out)
{
    /* Walk dependencies from a node on a cycle until a node repeats. */
    uint32_t start = 0;
    while (start < g->n && indeg[start] == 0) start++;
    int32_t *seen_at = ao_xmalloc(g->n * sizeof *seen_at);
    for (size_t i = 0; i < g->n; i++) seen_at[i] = -1;
    uint32_t *path = ao_xmalloc((g->n + 1) * sizeof *path);
    size_t len = 0;
    uint32_t cur = start;
    while (seen_at[cur] < 0) {
        seen_at[cur] = (int32_t)len;
        path[len++] = cur;
        uint32_t next = cur;
        for (uint32_t k = 0; k < g->n_deps[cur]; k++)
            if (indeg[g->deps[cur][k]] > 0) {
                next = g->deps[cur][k];
                break;
            }
        cur = next;
    }
    /* path[seen_at[cur]..len) is the cycle in dependency order; write it
     * in execution order, starting at the task declared first. */
    size_t first = (size_t)seen_at[cur], clen = len - first, begin = first;
    for (size_t i = first; i < len; i++)
        if (path[i] < path[begin]) begin = i;
    for (size_t k = 0; k <= clen; k++) {
        size_t i = first + (begin - first + clen - k % clen) % clen;
        if (k) ao_sb_puts(out, " -> ");
        ao_sb_puts(out, g->ids[path[k == clen ? begin : i]]);
    }
    free(seen_at);
    free(path);
}

/* Kahn's algorithm over the graph; on success fills depth[] (longest chain
 * ending at each node, 1-based). */
static int check_acyclic(const graph_t *g, uint32_t *depth, ao_status_t *st)
{
    size_t n = g->n;
    uint32_t *indeg = ao_xcalloc(n ? n : 1, sizeof *indeg);
    uint32_t **rev = ao_xcalloc(n ? n : 1, sizeof *rev);
    uint32_t *n_rev = ao_xcalloc(n ? n : 1, sizeof *n_rev);
    for (size_t i = 0; i < n; i++) {
        indeg[i] = g->n_deps[i];
        for (uint32_t k = 0; k < g->n_deps[i]; k++) n_rev[g->deps[i][k]]++;
    }
    for (size_t i = 0; i < n; i++) rev[i] = ao_xcalloc(n_rev[i] ? n_rev[i] : 1, sizeof **rev);
    uint32_t *fill = ao_xcalloc(n ? n : 1, sizeof *fill);
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < g->n_deps[i]; k++) {
            uint32_t d = g->deps[i][k];
            rev[d][fill[d]++] = (uint32_t)i;
        }
    uint32_t *queue = ao_xmalloc((n ? n : 1) * sizeof *queue);
    size_t qh = 0, qt = 0;
    for (size_t i = 0; i < n; i++) {
        depth[i] = 1;
        if (!indeg[i]) queue[qt++] = (uint32_t)i;
    }
    while (qh < qt) {
        uint32_t v = queue[qh++];
        for (uint32_t k = 0; k < n_rev[v]; k++) {
            uint32_t w = rev[v][k];
            if (depth[v] + 1 > depth[w]) depth[w] = depth[v] + 1;
            if (--indeg[w] == 0) queue[qt++] = w;
        }
    }
    int rc = 0;
    if (qt < n) {
        ao_sb_t sb = {0};
        describe_cycle(g, indeg, &sb);
        rc = ao_status_set(st, AO_EINVAL, "the dependencies form a cycle: %s", sb.data);
        ao_sb_free(&sb);
    }
    for (size_t i = 0; i < n; i++) free(rev[i]);
    free(rev);
    free(n_rev);
    free(fill);
    free(queue);
    free(indeg);
    return rc;
}

static void graph_free(graph_t *g)
{
    for (size_t i = 0; i < g->n; i++) free(g->deps[i]);
    free(g->deps);
    free(g->n_deps);
}

/* Builds the graph of tasks[], resolving depends_on through `index` (id ->
 * position). Dependencies outside tasks[] are left to `external`. */
static int build_graph(Agentos__V1__TaskSpec **tasks, size_t n, json_t *index, graph_t *g,
                       const ao_dag_existing_t *external, ao_status_t *st)
{
    g->n = n;
    g->ids = ao_xcalloc(n ? n : 1, sizeof *g->ids);
    g->deps = ao_xcalloc(n ? n : 1, sizeof *g->deps);
    g->n_deps = ao_xcalloc(n ? n : 1, sizeof *g->n_deps);
    for (size_t i = 0; i < n; i++) {
        const Agentos__V1__TaskSpec *t = tasks[i];
        g->ids[i] = t->id;
        g->deps[i] = ao_xcalloc(t->n_depends_on ? t->n_depends_on : 1, sizeof **g->deps);
        for (size_t k = 0; k < t->n_depends_on; k++) {
            const char *d = t->depends_on[k];
            for (size_t j = 0; j < k; j++)
                if (!strcmp(t->depends_on[j], d))
                    return ao_status_set(st, AO_EINVAL, "task %s: depends on %s twice", t->id, d);
            if (!strcmp(d, t->id))
                return ao_status_set(st, AO_EINVAL, "task %s: depends on itself", t->id);
            json_t *v = json_object_get(index, d);
            if (v) {
                g->deps[i][g->n_deps[i]++] = (uint32_t)json_integer_value(v);
            } else if (!external || !external->exists(external->ud, d)) {
                return ao_status_set(st, AO_EINVAL, "task %s: depends on unknown task \"%s\"",
                                     t->id, d);
            } else if (!external->completed(external->ud, d)) {
                return ao_status_set(st, AO_EINVAL,
                                     "task %s: depends on \"%s\", which has not completed (a plan "
                                     "may depend on completed tasks or on its own subtasks)",
                                     t->id, d);
            }
        }
    }
    return 0;
}

int ao_dag_validate(const Agentos__V1__WorkflowSpec *spec, const ao_dag_env_t *env,
                    ao_status_t *st)
{
    const Agentos__V1__Limits *lim = env->cfg->limits;
    if (spec->n_tasks == 0)
        return ao_status_set(st, AO_EINVAL, "workflow.tasks: a workflow needs at least one task");
    if (spec->n_tasks > lim->max_tasks)
        return ao_status_set(st, AO_EINVAL, "workflow.tasks: %zu tasks is over limits.max_tasks (%u)",
                             spec->n_tasks, lim->max_tasks);
    if (spec->budget && spec->budget->max_tasks && spec->n_tasks > spec->budget->max_tasks)
        return ao_status_set(st, AO_EINVAL,
                             "workflow.tasks: %zu tasks is over the workflow's budget.max_tasks "
                             "(%u)",
                             spec->n_tasks, spec->budget->max_tasks);
    if (strlen(spec->name) > 256)
        return ao_status_set(st, AO_EINVAL, "workflow.name: over 256 bytes");
    for (size_t i = 0; i < spec->n_labels; i++)
        if (strlen(spec->labels[i]->key) > 128 || strlen(spec->labels[i]->value) > 128 ||
            !*spec->labels[i]->key)
            return ao_status_set(st, AO_EINVAL,
                                 "workflow.labels[\"%.40s\"]: keys are 1 to 128 bytes, values up "
                                 "to 128",
                                 spec->labels[i]->key);
    size_t ctx = 0;
    for (size_t i = 0; i < spec->n_context; i++)
        ctx += strlen(spec->context[i]->key) + strlen(spec->context[i]->value);
    if (ctx > lim->max_context_bytes)
        return ao_status_set(st, AO_EINVAL,
                             "workflow.context: %zu bytes is over limits.max_context_bytes (%u)",
                             ctx, lim->max_context_bytes);
    const Agentos__V1__Budget *b = spec->budget;
    if (b) {
        if (b->max_cost_micros < 0)
            return ao_status_set(st, AO_EINVAL, "workflow.budget.max_cost_micros must be >= 0");
        if (b->warn_fraction < 0 || b->warn_fraction > 1 || !isfinite(b->warn_fraction))
            return ao_status_set(st, AO_EINVAL, "workflow.budget.warn_fraction must be in [0, 1]");
        if (b->role_split) {
            const Agentos__V1__RoleSplit *r = b->role_split;
            double sum = r->orchestrator + r->extraction + r->analysis + r->synthesis;
            if (r->orchestrator < 0 || r->extraction < 0 || r->analysis < 0 || r->synthesis < 0 ||
                sum > 1.0 + 1e-9)
                return ao_status_set(st, AO_EINVAL,
                                     "workflow.budget.role_split: fractions must be >= 0 and sum "
                                     "to at most 1 (they sum to %.3f)",
                                     sum);
        }
    }
    int strategy = spec->strategy;
    if (strategy == AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT ||
        (strategy == AGENTOS__V1__STRATEGY__STRATEGY_AUTO && spec->auto_strategy &&
         *spec->auto_strategy->single_agent)) {
        const char *sa = spec->auto_strategy ? spec->auto_strategy->single_agent : "";
        if (!*sa)
            return ao_status_set(st, AO_EINVAL,
                                 "workflow.auto_strategy.single_agent is required for "
                                 "STRATEGY_SINGLE_AGENT");
        if (!agent_known(env, sa))
            return ao_status_set(st, AO_EINVAL,
                                 "workflow.auto_strategy.single_agent: unknown agent \"%s\"", sa);
    }

    json_t *index = json_object();
    int rc = 0;
    for (size_t i = 0; i < spec->n_tasks && !rc; i++) {
        const Agentos__V1__TaskSpec *t = spec->tasks[i];
        if (!ao_valid_id(t->id, 128) || strchr(t->id, '/'))
            rc = ao_status_set(st, AO_EINVAL,
                               "workflow.tasks[%zu].id: \"%.60s\" must be 1 to 128 characters of "
                               "[A-Za-z0-9_.:-]",
                               i, t->id);
        else if (!strncmp(t->id, "auto.", 5))
            rc = ao_status_set(st, AO_EINVAL, "workflow.tasks[%zu].id: the prefix \"auto.\" is reserved",
                               i);
        else if (json_object_get(index, t->id))
            rc = ao_status_set(st, AO_EINVAL, "workflow.tasks[%zu].id: duplicate task id \"%s\"", i,
                               t->id);
        else
            json_object_set_new(index, t->id, json_integer((json_int_t)i));
    }
    for (size_t i = 0; i < spec->n_tasks && !rc; i++) rc = check_task(spec->tasks[i], spec, env, 0, st);
    graph_t g = {0};
    if (!rc) rc = build_graph(spec->tasks, spec->n_tasks, index, &g, NULL, st);
    if (!rc) {
        uint32_t *depth = ao_xcalloc(spec->n_tasks, sizeof *depth);
        rc = check_acyclic(&g, depth, st);
        for (size_t i = 0; i < spec->n_tasks && !rc; i++)
            if (depth[i] > lim->max_depth)
                rc = ao_status_set(st, AO_EINVAL,
                                   "task %s: its dependency chain is %u tasks long, over "
                                   "limits.max_depth (%u)",
                                   spec->tasks[i]->id, depth[i], lim->max_depth);
        free(depth);
    }
    free(g.ids);
    graph_free(&g);
    json_decref(index);
    return rc;
}

typedef struct rewrite_ctx {
    const char *planner;
    json_t *local;
} rewrite_ctx_t;

/* deps.ID.FIELD with ID a subtask of the plan -> deps.PLANNER/ID.FIELD */
static char *rewrite_dep_key(void *ud, const char *key)
{
    rewrite_ctx_t *rw = ud;
    if (strncmp(key, "deps.", 5)) return NULL;
    const char *last = strrchr(key, '.');
    if (last <= key + 5) return NULL;
    char id[201];
    size_t len = (size_t)(last - (key + 5));
    memcpy(id, key + 5, len);
    id[len] = '\0';
    if (!json_object_get(rw->local, id)) return NULL;
    return ao_xasprintf("deps.%s/%s%s", rw->planner, id, last);
}

int ao_dag_validate_plan(const char *planner_id, Agentos__V1__TaskSpec **tasks, size_t n,
                         size_t tasks_now, unsigned max_tasks, unsigned depth,
                         unsigned max_plan_depth, const ao_dag_existing_t *existing,
                         const ao_dag_env_t *env, ao_status_t *st)
{
    if (n == 0) return ao_status_set(st, AO_EINVAL, "plan of %s: no tasks", planner_id);
    if (depth > max_plan_depth)
        return ao_status_set(st, AO_EINVAL,
                             "plan of %s: subtasks at depth %u exceed the plan depth limit (%u)",
                             planner_id, depth, max_plan_depth);
    if (tasks_now + n > max_tasks)
        return ao_status_set(st, AO_EINVAL,
                             "plan of %s: %zu subtasks would make %zu tasks, over max_tasks (%u)",
                             planner_id, n, tasks_now + n, max_tasks);
    /* Local ids first (validated), then the prefixed ids. */
    json_t *local = json_object();
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *id = tasks[i]->id;
        if (!ao_valid_id(id, 64) || strchr(id, '/'))
            rc = ao_status_set(st, AO_EINVAL,
                               "plan of %s: tasks[%zu].id \"%.60s\" must be 1 to 64 characters of "
                               "[A-Za-z0-9_.:-]",
                               planner_id, i, id);
        else if (json_object_get(local, id))
            rc = ao_status_set(st, AO_EINVAL, "plan of %s: duplicate subtask id \"%s\"", planner_id, id);
        else
            json_object_set_new(local, id, json_integer((json_int_t)i));
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = check_task(tasks[i], NULL, env, 1, st);
        if (!rc && tasks[i]->kind == KIND(REFINEMENT))
            rc = ao_status_set(st, AO_EINVAL,
                               "plan of %s: task %s: a plan may not contain REFINEMENT tasks",
                               planner_id, tasks[i]->id);
        if (rc) {
            ao_status_t inner = *st;
            ao_status_set(st, rc, "plan of %s: %s", planner_id, inner.msg);
        }
    }
    /* Rewrite ids, local dependencies and the placeholders naming them. */
    rewrite_ctx_t rw = {planner_id, local};
    for (size_t i = 0; i < n && !rc; i++) {
        Agentos__V1__TaskSpec *t = tasks[i];
        char *input = ao_template_rewrite(t->input, rewrite_dep_key, &rw);
        ao_pb_clear_str(&t->input);
        t->input = input;
        char *pid = ao_xasprintf("%s/%s", planner_id, t->id);
        if (existing->exists(existing->ud, pid))
            rc = ao_status_set(st, AO_EINVAL, "plan of %s: task %s exists already", planner_id, pid);
        ao_pb_clear_str(&t->id);
        t->id = pid;
        for (size_t k = 0; k < t->n_depends_on && !rc; k++) {
            if (json_object_get(local, t->depends_on[k])) {
                char *d = ao_xasprintf("%s/%s", planner_id, t->depends_on[k]);
                free(t->depends_on[k]);
                t->depends_on[k] = d;
            }
        }
    }
    json_t *index = json_object();
    for (size_t i = 0; i < n && !rc; i++) json_object_set_new(index, tasks[i]->id, json_integer((json_int_t)i));
    graph_t g = {0};
    if (!rc) rc = build_graph(tasks, n, index, &g, existing, st);
    if (!rc) {
        uint32_t *d = ao_xcalloc(n, sizeof *d);
        rc = check_acyclic(&g, d, st);
        if (rc) {
            ao_status_t inner = *st;
            ao_status_set(st, rc, "plan of %s: %s", planner_id, inner.msg);
        }
        free(d);
    }
    free(g.ids);
    graph_free(&g);
    json_decref(index);
    json_decref(local);
    return rc;
}
