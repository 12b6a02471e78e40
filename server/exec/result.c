/*
 * The result of a finished workflow (design note, "Graceful Degradation"):
 * what completed, what failed and what that costs, a confidence reduced for
 * what is missing, and recommendations derived from the failures.
 */
#include "result.h"

#include "budget.h"
#include "mem.h"
#include "pbutil.h"
#include "synthesis.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x
#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define KIND(x) AGENTOS__V1__TASK_KIND__TASK_KIND_##x
#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x

static int calls_agent(const Agentos__V1__TaskState *t)
{
    int k = t->spec->kind ? t->spec->kind : KIND(AGENT);
    return k == KIND(AGENT) || k == KIND(PLANNER) || (k == KIND(SYNTHESIS) && *t->spec->agent);
}

/* Tasks whose results are analysis (not plans, barriers or syntheses). */
static int is_analysis(const Agentos__V1__TaskState *t)
{
    int k = t->spec->kind ? t->spec->kind : KIND(AGENT);
    return k == KIND(AGENT);
}

const char *ao_result_class_name(int cls)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&agentos__v1__error_class__descriptor, cls);
    return v ? v->name + strlen("ERROR_CLASS_") : "UNSPECIFIED";
}

static char *recommendation(const Agentos__V1__TaskState *t)
{
    const char *id = t->spec->id;
    const char *agent = t->agent;
    unsigned attempts = t->attempts;
    switch (t->error_class) {
    case EC(TIMEOUT):
        return ao_xasprintf("Retry %s with a longer timeout (it timed out after %u attempt%s%s)", id,
                            attempts, attempts == 1 ? "" : "s",
                            t->spec->attempt_timeout_ms
                                ? ""
                                : "; set attempt_timeout_ms or override it on resume");
    case EC(RATE_LIMITED):
        return ao_xasprintf("Retry %s later or raise %s's rate limit (rate limited after %u "
                            "attempt%s)",
                            id, agent, attempts, attempts == 1 ? "" : "s");
    case EC(UNAVAILABLE):
        return ao_xasprintf("Check that backend %s is up, then resume to retry %s (%s)", agent, id,
                            t->error);
    case EC(TLS):
        return ao_xasprintf("Fix the TLS set-up of backend %s (CA bundle, certificate, host "
                            "name), then resume to retry %s",
                            agent, id);
    case EC(CIRCUIT_OPEN):
        return ao_xasprintf("Backend %s's circuit breaker is open: resume once it recovers, or "
                            "give %s a fallback_agent",
                            agent, id);
    case EC(BUDGET):
        return ao_xasprintf("Raise the budget of %s and resume to finish it", id);
    case EC(INVALID_RESPONSE):
        return ao_xasprintf("Review %s's replies: they did not parse (%s)", agent, t->error);
    case EC(REJECTED):
        return ao_xasprintf("Fix %s's request: backend %s rejected it (%s)", id, agent, t->error);
    case EC(AGENT_ERROR):
        return ao_xasprintf("Review %s: agent %s reported an error after %u attempt%s (%s)", id,
                            agent, attempts, attempts == 1 ? "" : "s", t->error);
    default:
        return ao_xasprintf("Resume the workflow to retry %s (%s)", id, t->error);
    }
}

static void push_str(char ***arr, size_t *n, char *owned)
{
    char **slot = ao_pb_push(arr, n, sizeof *slot);
    *slot = owned;
}

/* A completed task and its place in the workflow: the order between
 * those that finished in the same millisecond. */
typedef struct finished {
    int64_t ms;
    size_t i;
} finished_t;

static int cmp_finished(const void *a, const void *b)
{
    const finished_t *x = a, *y = b;
    if (x->ms != y->ms) return (x->ms > y->ms) - (x->ms < y->ms);
    return (x->i > y->i) - (x->i < y->i);
}

Agentos__V1__WorkflowResult *ao_result_build(const ao_wf_t *wf, int status)
{
    const Agentos__V1__Workflow *pb = wf->pb;
    Agentos__V1__WorkflowResult *r = ao_xmalloc(sizeof *r);
    agentos__v1__workflow_result__init(r);
    r->status = status;
    r->early_terminated = pb->early_terminated;
    size_t n = pb->n_tasks;

    /* Completed tasks in completion order, the workflow's order for equal
     * times. Often in that order already (a chain's are): sorting them
     * was a thousand instructions a task. */
    Agentos__V1__TaskState **done = ao_xcalloc(n ? n : 1, sizeof *done);
    size_t nd = 0, sorted = 1;
    for (size_t i = 0; i < n; i++) {
        if (pb->tasks[i]->status != TS(SUCCEEDED)) continue;
        if (nd && done[nd - 1]->finished_unix_ms > pb->tasks[i]->finished_unix_ms) sorted = 0;
        done[nd++] = pb->tasks[i];
    }
    if (!sorted) {
        finished_t *f = ao_xmalloc(nd * sizeof *f);
        for (size_t i = 0, k = 0; i < n; i++)
            if (pb->tasks[i]->status == TS(SUCCEEDED))
                f[k++] = (finished_t){pb->tasks[i]->finished_unix_ms, i};
        qsort(f, nd, sizeof *f, cmp_finished);
        for (size_t k = 0; k < nd; k++)
            done[k] = pb->tasks[f[k].i];
        free(f);
    }

    json_t *agents = json_object();
    const Agentos__V1__TaskState *synth = NULL;
    ao_synth_in_t *in = ao_xcalloc(n ? n : 1, sizeof *in);
    size_t nin = 0;
    /* Sized once: a fan-out's result has an entry per task. */
    if (nd) {
        r->completed_tasks = ao_xmalloc(nd * sizeof *r->completed_tasks);
        r->results = ao_xmalloc(nd * sizeof *r->results);
    }
    for (size_t i = 0; i < nd; i++) {
        const Agentos__V1__TaskState *t = done[i];
        r->completed_tasks[r->n_completed_tasks++] = ao_xstrdup(t->spec->id);
        if (calls_agent(t) && !json_object_get(agents, t->agent)) {
            json_object_set_new(agents, t->agent, json_true());
            ao_pb_push_str(&r->completed_agents, &r->n_completed_agents, t->agent);
        }
        if (t->spec->kind == KIND(SYNC)) continue;
        Agentos__V1__TaskOutput **o = &r->results[r->n_results++];
        *o = ao_xmalloc(sizeof **o);
        agentos__v1__task_output__init(*o);
        ao_pb_set_str(&(*o)->task_id, t->spec->id);
        ao_pb_set_str(&(*o)->agent, t->agent);
        ao_pb_set_str(&(*o)->output, t->output);
        (*o)->score = t->score;
        (*o)->confidence = t->confidence;
        (*o)->authority = ao_task_authority(t);
        if (t->spec->kind == KIND(SYNTHESIS)) synth = t;
        if (is_analysis(t)) in[nin++] = (ao_synth_in_t){t->score, t->confidence, ao_task_authority(t)};
    }
    json_decref(agents);

    /* Failures, and what is missing from the analysis. */
    double missing = 0;
    unsigned n_failed = 0, n_skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const Agentos__V1__TaskState *t = pb->tasks[i];
        if (t->status != TS(SUCCEEDED) && is_analysis(t) &&
            strncmp(t->error, "strategy:", 9) != 0)
            missing += ao_task_authority(t);
        if (t->status == TS(SKIPPED) || t->status == TS(CANCELLED)) n_skipped++;
        if (t->status != TS(FAILED)) continue;
        n_failed++;
        Agentos__V1__FailedAgent **f = ao_pb_push(&r->failed_agents, &r->n_failed_agents, sizeof *f);
        *f = ao_xmalloc(sizeof **f);
        agentos__v1__failed_agent__init(*f);
        ao_pb_set_str(&(*f)->task_id, t->spec->id);
        ao_pb_set_str(&(*f)->agent, t->agent);
        ao_pb_set_str(&(*f)->error, t->error);
        (*f)->error_class = t->error_class;
        (*f)->attempts = t->attempts;
        (*f)->required = !t->spec->optional;
        if (*t->spec->impact) ao_pb_set_str(&(*f)->impact, t->spec->impact);
        else {
            char *imp = ao_xasprintf("The results of %s (%s) are missing", t->spec->id, t->agent);
            ao_pb_set_str(&(*f)->impact, imp);
            free(imp);
        }
        push_str(&r->recommendations, &r->n_recommendations, recommendation(t));
        if (t->spec->optional && *t->spec->impact)
            push_str(&r->recommendations, &r->n_recommendations,
                     ao_xasprintf("Manual review recommended: %s", t->spec->impact));
    }

    if (synth) {
        r->score = synth->score;
        r->confidence = synth->confidence;
        ao_pb_set_str(&r->synthesis, synth->output);
        /* The synthesis accounts for its own inputs; analysis outside it
         * that failed still lowers the confidence. */
        double covered = 0;
        for (size_t k = 0; k < nin; k++) covered += in[k].authority;
        if (missing > 0 && covered + missing > 0) {
            double s = 0, c = 0;
            ao_synth_weighted(in, nin, missing, &s, &c);
            if (c < r->confidence) r->confidence = c;
        }
    } else {
        ao_synth_weighted(in, nin, missing, &r->score, &r->confidence);
    }
    free(in);

    /* Findings of every completed task and the workflow, merged. */
    size_t nf = pb->n_findings;
    for (size_t i = 0; i < nd; i++) nf += done[i]->n_findings;
    const Agentos__V1__Finding **all = ao_xcalloc(nf ? nf : 1, sizeof *all);
    const Agentos__V1__Finding **merged = ao_xcalloc(nf ? nf : 1, sizeof *merged);
    size_t k = 0;
    for (size_t i = 0; i < pb->n_findings; i++) all[k++] = pb->findings[i];
    for (size_t i = 0; i < nd; i++)
        for (size_t j = 0; j < done[i]->n_findings; j++) all[k++] = done[i]->findings[j];
    size_t nm = ao_findings_merge(all, k, merged, NULL, NULL);
    for (size_t i = 0; i < nm; i++) {
        Agentos__V1__Finding **slot = ao_pb_push(&r->findings, &r->n_findings, sizeof *slot);
        *slot = AO_PB_CLONE(Agentos__V1__Finding, merged[i]);
    }
    free(all);
    free(merged);

    if (status == WS(BUDGET_EXCEEDED))
        push_str(&r->recommendations, &r->n_recommendations,
                 ao_xasprintf("Raise the workflow budget (%s) and resume it with a new budget to "
                              "finish the remaining tasks",
                              pb->stop_reason));
    if (status == WS(CANCELLED) && nd < n)
        push_str(&r->recommendations, &r->n_recommendations,
                 ao_xasprintf("Resume the workflow to run the %zu tasks that did not complete",
                              n - nd));
    if (status == WS(FAILED) && n_skipped)
        push_str(&r->recommendations, &r->n_recommendations,
                 ao_xasprintf("%u task%s did not run because of the failure; resume the workflow "
                              "after fixing it",
                              n_skipped, n_skipped == 1 ? "" : "s"));

    if (pb->usage) r->usage = AO_PB_CLONE(Agentos__V1__Usage, pb->usage);
    const ProtobufCEnumValue *sv =
        protobuf_c_enum_descriptor_get_value(&agentos__v1__workflow_status__descriptor, status);
    const char *sname = sv ? sv->name + strlen("WORKFLOW_STATUS_") : "?";
    char *summary;
    if (pb->early_terminated)
        summary = ao_xasprintf("%s: ended early by progressive refinement; %zu of %zu tasks "
                               "completed",
                               sname, nd, n);
    else if (*pb->stop_reason)
        summary = ao_xasprintf("%s: %s; %zu of %zu tasks completed", sname, pb->stop_reason, nd, n);
    else if (n_failed)
        summary = ao_xasprintf("%s: %zu of %zu tasks completed, %u failed", sname, nd, n, n_failed);
    else
        summary = ao_xasprintf("%s: %zu of %zu tasks completed", sname, nd, n);
    ao_pb_set_str(&r->summary, summary);
    free(summary);
    free(done);
    return r;
}
