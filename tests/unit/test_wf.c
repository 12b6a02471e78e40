/* Unit tests for server/exec/wf.c: applying events to a workflow's state,
 * readiness the moment the last dependency settles, optional failures,
 * plan expansion, snapshots and resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pbjson.h"
#include "pbutil.h"
#include "pool.h"
#include "result.h"
#include "testgate.h"
#include "util.h"
#include "wf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x
#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define ET(x) AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_##x

static uint64_t seq;

static ao_wf_t *make(const char *spec_json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, spec_json, strlen(spec_json), &m, &st))
        fail_msg("%s", st.msg);
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__WorkflowSubmitted ws = AGENTOS__V1__WORKFLOW_SUBMITTED__INIT;
    ws.spec = (Agentos__V1__WorkflowSpec *)m;
    ev.seq = seq = 1;
    ev.type = ET(WORKFLOW_SUBMITTED);
    ev.workflow_id = "wf-1";
    ev.tenant = "t";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_WORKFLOW_SUBMITTED;
    ev.workflow_submitted = &ws;
    ao_wf_t *wf;
    if (ao_wf_create(&ev, &wf, &st)) fail_msg("%s", st.msg);
    protobuf_c_message_free_unpacked(m, NULL);
    return wf;
}

/* ao_wf_pack (tasks from the cache of packed task states) must give the
 * state protobuf-c packs from scratch: decoded, they pack the same. */
static void check_pack(ao_wf_t *wf)
{
    size_t len;
    uint8_t *cached = ao_wf_pack(wf, &len);
    Agentos__V1__Workflow *back = agentos__v1__workflow__unpack(NULL, len, cached);
    assert_non_null(back);
    size_t la = protobuf_c_message_get_packed_size(&wf->pb->base);
    size_t lb = protobuf_c_message_get_packed_size(&back->base);
    uint8_t *a = malloc(la + 1), *b = malloc(lb + 1);
    protobuf_c_message_pack(&wf->pb->base, a);
    protobuf_c_message_pack(&back->base, b);
    assert_int_equal(la, lb);
    if (memcmp(a, b, la)) fail_msg("a snapshot from the cache differs from the state after event %llu",
                                   (unsigned long long)wf->pb->last_seq);
    free(a);
    free(b);
    free(cached);
    protobuf_c_message_free_unpacked(&back->base, NULL);
}

/* Applies an event with every task's packed state cached before, so that
 * a cache entry the event should have dropped shows up in check_pack. */
static void apply(ao_wf_t *wf, Agentos__V1__Event *ev)
{
    ao_status_t st;
    ev->seq = ++seq;
    ev->workflow_id = "wf-1";
    free(ao_wf_pack(wf, &(size_t){0}));
    if (ao_wf_apply(wf, ev, &st)) fail_msg("%s", st.msg);
    check_pack(wf);
}

static void started(ao_wf_t *wf, const char *task)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__TaskStarted ts = AGENTOS__V1__TASK_STARTED__INIT;
    ev.type = ET(TASK_STARTED);
    ev.task_id = (char *)task;
    ev.attempt_id = "x";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_TASK_STARTED;
    ev.task_started = &ts;
    apply(wf, &ev);
}

static void succeeded(ao_wf_t *wf, const char *task, double score, uint64_t tokens)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__TaskSucceeded s = AGENTOS__V1__TASK_SUCCEEDED__INIT;
    Agentos__V1__AgentResult r = AGENTOS__V1__AGENT_RESULT__INIT;
    Agentos__V1__Usage u = AGENTOS__V1__USAGE__INIT;
    Agentos__V1__Finding f = AGENTOS__V1__FINDING__INIT;
    Agentos__V1__Finding *fs[] = {&f};
    f.key = "k";
    f.value = (char *)task;
    f.confidence = 0.5;
    r.output = "out";
    r.score = score;
    r.confidence = 0.9;
    r.findings = fs;
    r.n_findings = 1;
    u.total_tokens = tokens;
    s.result = &r;
    s.usage = &u;
    ev.type = ET(TASK_SUCCEEDED);
    ev.task_id = (char *)task;
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_TASK_SUCCEEDED;
    ev.task_succeeded = &s;
    apply(wf, &ev);
}

static void failed(ao_wf_t *wf, const char *task)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__TaskFailed f = AGENTOS__V1__TASK_FAILED__INIT;
    f.error = "boom";
    f.error_class = AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_TIMEOUT;
    ev.type = ET(TASK_FAILED);
    ev.task_id = (char *)task;
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_TASK_FAILED;
    ev.task_failed = &f;
    apply(wf, &ev);
}

static void expanded(ao_wf_t *wf, const char *planner, Agentos__V1__TaskState **tasks, size_t n)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__PlanExpanded px = AGENTOS__V1__PLAN_EXPANDED__INIT;
    px.tasks = tasks;
    px.n_tasks = n;
    ev.type = ET(PLAN_EXPANDED);
    ev.task_id = (char *)planner;
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_PLAN_EXPANDED;
    ev.plan_expanded = &px;
    apply(wf, &ev);
}

static int status(ao_wf_t *wf, const char *task)
{
    int32_t i = ao_wf_find(wf, task);
    assert_true(i >= 0);
    return wf->tasks[i].st->status;
}

static int in_list(const ao_idxlist_t *l, ao_wf_t *wf, const char *task)
{
    for (size_t k = 0; k < l->n; k++)
        if (l->v[k] == (uint32_t)ao_wf_find(wf, task)) return 1;
    return 0;
}

static const char *acquisition =
    "{\"tasks\":[{\"id\":\"financial\",\"agent\":\"a\"},"
    "{\"id\":\"legal\",\"agent\":\"a\",\"dependsOn\":[\"financial\"]},"
    "{\"id\":\"market\",\"agent\":\"a\"},"
    "{\"id\":\"synthesis\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"legal\",\"market\"]}]}";

static void test_ready_when_last_dependency_settles(void **state)
{
    (void)state;
    ao_wf_t *wf = make(acquisition);
    assert_int_equal(wf->pb->status, WS(RUNNING));
    /* Roots are ready at once. */
    assert_true(in_list(&wf->ready, wf, "financial"));
    assert_true(in_list(&wf->ready, wf, "market"));
    assert_false(in_list(&wf->ready, wf, "legal"));
    wf->ready.n = 0;
    started(wf, "financial");
    started(wf, "market");
    assert_int_equal(wf->n_running, 2);
    succeeded(wf, "financial", 0.8, 100);
    /* legal is ready now, without waiting for market (no level barrier). */
    assert_true(in_list(&wf->ready, wf, "legal"));
    assert_false(in_list(&wf->ready, wf, "synthesis"));
    wf->ready.n = 0;
    started(wf, "legal");
    succeeded(wf, "legal", 0.5, 50);
    assert_false(in_list(&wf->ready, wf, "synthesis"));
    succeeded(wf, "market", 0.3, 10);
    assert_true(in_list(&wf->ready, wf, "synthesis"));
    /* Usage adds up per task, workflow, role and agent. */
    assert_int_equal(wf->pb->usage->total_tokens, 160);
    assert_int_equal(wf->pb->n_role_usage, 1);
    assert_int_equal(wf->pb->role_usage[0]->usage->total_tokens, 160);
    assert_int_equal(wf->pb->n_agent_usage, 1);
    assert_int_equal(wf->n_terminal, 3);
    /* Findings carry their source and authority. */
    int32_t l = ao_wf_find(wf, "legal");
    assert_string_equal(wf->tasks[l].st->findings[0]->source_task, "legal");
    assert_true(wf->tasks[l].st->findings[0]->authority == 1.0);
    ao_wf_free(wf);
}

static void test_failures_optional_and_required(void **state)
{
    (void)state;
    ao_wf_t *wf = make("{\"tasks\":[{\"id\":\"a\",\"agent\":\"x\",\"optional\":true},"
                       "{\"id\":\"b\",\"agent\":\"x\",\"optional\":true,\"onFailure\":\"DEPENDENTS_SKIP\"},"
                       "{\"id\":\"after_a\",\"agent\":\"x\",\"dependsOn\":[\"a\"]},"
                       "{\"id\":\"after_b\",\"agent\":\"x\",\"dependsOn\":[\"b\"]},"
                       "{\"id\":\"req\",\"agent\":\"x\"}]}");
    wf->ready.n = 0;
    started(wf, "a");
    failed(wf, "a");
    /* RUN_WITH_MISSING (the default): the dependent runs. */
    assert_true(in_list(&wf->ready, wf, "after_a"));
    assert_int_equal(wf->pb->stopping, 0);
    started(wf, "b");
    failed(wf, "b");
    assert_true(in_list(&wf->to_skip, wf, "after_b"));
    /* A required task's failure stops the workflow with FAILED. */
    started(wf, "req");
    failed(wf, "req");
    assert_int_equal(wf->pb->stopping, WS(FAILED));
    assert_non_null(strstr(wf->pb->stop_reason, "required task req failed: boom"));
    ao_wf_free(wf);
}

static void test_plan_children_hold_dependents(void **state)
{
    (void)state;
    ao_wf_t *wf = make("{\"tasks\":[{\"id\":\"plan\",\"kind\":\"TASK_KIND_PLANNER\",\"agent\":\"x\"},"
                       "{\"id\":\"synth\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"plan\"]}]}");
    started(wf, "plan");
    /* The plan expands before the planner succeeds. */
    Agentos__V1__TaskSpec s1 = AGENTOS__V1__TASK_SPEC__INIT, s2 = AGENTOS__V1__TASK_SPEC__INIT;
    Agentos__V1__TaskState t1 = AGENTOS__V1__TASK_STATE__INIT, t2 = AGENTOS__V1__TASK_STATE__INIT;
    char *dep[] = {"plan/a"};
    s1.id = "plan/a";
    s1.agent = "x";
    s2.id = "plan/b";
    s2.agent = "x";
    s2.depends_on = dep;
    s2.n_depends_on = 1;
    t1.spec = &s1;
    t1.depth = 1;
    t2.spec = &s2;
    t2.depth = 1;
    Agentos__V1__TaskState *ts[] = {&t1, &t2};
    wf->ready.n = 0;
    expanded(wf, "plan", ts, 2);
    assert_int_equal(ao_wf_ntasks(wf), 4);
    assert_true(in_list(&wf->ready, wf, "plan/a"));
    assert_false(in_list(&wf->ready, wf, "plan/b"));
    int32_t b = ao_wf_find(wf, "plan/b");
    assert_string_equal(wf->tasks[b].st->parent_task_id, "plan");
    succeeded(wf, "plan", 0, 0);
    /* The synthesis waits for the plan's subtasks too. */
    assert_false(in_list(&wf->ready, wf, "synth"));
    started(wf, "plan/a");
    succeeded(wf, "plan/a", 0.4, 1);
    assert_true(in_list(&wf->ready, wf, "plan/b"));
    assert_false(in_list(&wf->ready, wf, "synth"));
    started(wf, "plan/b");
    succeeded(wf, "plan/b", 0.6, 1);
    assert_true(in_list(&wf->ready, wf, "synth"));

    /* A snapshot rebuilds the same indexes. */
    Agentos__V1__Workflow *copy = AO_PB_CLONE(Agentos__V1__Workflow, wf->pb);
    ao_wf_t *again;
    ao_status_t st;
    assert_int_equal(ao_wf_from_snapshot(copy, &again, &st), 0);
    int32_t synth = ao_wf_find(again, "synth");
    assert_int_equal(again->tasks[synth].unmet, 0);
    assert_true(in_list(&again->ready, again, "synth"));
    int32_t plan = ao_wf_find(again, "plan");
    assert_true(again->tasks[plan].settled);
    assert_int_equal(again->n_terminal, 3);
    ao_wf_free(again);
    ao_wf_free(wf);
}

static void test_snapshot_with_unsettled_children(void **state)
{
    (void)state;
    ao_wf_t *wf = make("{\"tasks\":[{\"id\":\"p\",\"kind\":\"TASK_KIND_PLANNER\",\"agent\":\"x\"},"
                       "{\"id\":\"after\",\"agent\":\"x\",\"dependsOn\":[\"p\"]}]}");
    started(wf, "p");
    Agentos__V1__TaskSpec s1 = AGENTOS__V1__TASK_SPEC__INIT;
    Agentos__V1__TaskState t1 = AGENTOS__V1__TASK_STATE__INIT;
    s1.id = "p/a";
    s1.agent = "x";
    t1.spec = &s1;
    Agentos__V1__TaskState *ts[] = {&t1};
    expanded(wf, "p", ts, 1);
    succeeded(wf, "p", 0, 0);
    /* p succeeded but its child runs: "after" must still wait, also after a
     * snapshot (recovery). */
    Agentos__V1__Workflow *copy = AO_PB_CLONE(Agentos__V1__Workflow, wf->pb);
    ao_wf_t *again;
    ao_status_t st;
    assert_int_equal(ao_wf_from_snapshot(copy, &again, &st), 0);
    assert_false(in_list(&again->ready, again, "after"));
    int32_t p = ao_wf_find(again, "p");
    assert_false(again->tasks[p].settled);
    assert_int_equal(again->tasks[p].open_children, 1);
    started(again, "p/a");
    succeeded(again, "p/a", 0, 0);
    assert_true(in_list(&again->ready, again, "after"));
    ao_wf_free(again);
    ao_wf_free(wf);
}

static void test_resume_keeps_completed(void **state)
{
    (void)state;
    ao_wf_t *wf = make(acquisition);
    started(wf, "financial");
    succeeded(wf, "financial", 0.8, 10);
    started(wf, "legal");
    failed(wf, "legal");
    assert_int_equal(wf->pb->stopping, WS(FAILED));
    /* As the engine would end it. */
    Agentos__V1__Event done = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__WorkflowCompleted wc = AGENTOS__V1__WORKFLOW_COMPLETED__INIT;
    Agentos__V1__WorkflowResult res = AGENTOS__V1__WORKFLOW_RESULT__INIT;
    res.status = WS(FAILED);
    wc.result = &res;
    done.type = ET(WORKFLOW_COMPLETED);
    done.payload_case = AGENTOS__V1__EVENT__PAYLOAD_WORKFLOW_COMPLETED;
    done.workflow_completed = &wc;
    apply(wf, &done);
    assert_int_equal(wf->pb->status, WS(FAILED));

    /* A workflow-level finding, to be kept as a key finding. */
    Agentos__V1__Event fe = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__Finding f = AGENTOS__V1__FINDING__INIT;
    f.key = "revenue";
    f.value = "growing";
    f.confidence = 0.7;
    fe.type = ET(FINDING_PUBLISHED);
    fe.payload_case = AGENTOS__V1__EVENT__PAYLOAD_FINDING;
    fe.finding = &f;
    apply(wf, &fe);

    /* A checkpoint with financial completed; resume with a longer timeout
     * for legal. Like the engine's view of the latest state, it points into
     * the state it resets (its task and its findings). */
    Agentos__V1__Checkpoint ck = AGENTOS__V1__CHECKPOINT__INIT;
    Agentos__V1__TaskState *fin = wf->tasks[ao_wf_find(wf, "financial")].st;
    Agentos__V1__TaskState *completed[] = {fin};
    ck.completed_tasks = completed;
    ck.n_completed_tasks = 1;
    Agentos__V1__Finding *keys[] = {wf->pb->findings[0], fin->findings[0]};
    ck.key_findings = keys;
    ck.n_key_findings = 2;
    ck.workflow_id = "wf-1";
    Agentos__V1__TaskOverride o = AGENTOS__V1__TASK_OVERRIDE__INIT;
    o.task_id = "legal";
    o.attempt_timeout_ms = 9000;
    Agentos__V1__TaskOverride *os[] = {&o};
    Agentos__V1__WorkflowResumed wr = AGENTOS__V1__WORKFLOW_RESUMED__INIT;
    wr.checkpoint = &ck;
    wr.overrides = os;
    wr.n_overrides = 1;
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    ev.type = ET(WORKFLOW_RESUMED);
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_RESUMED;
    ev.resumed = &wr;
    apply(wf, &ev);
    assert_int_equal(wf->pb->status, WS(RUNNING));
    assert_int_equal(wf->pb->stopping, 0);
    assert_null(wf->pb->result);
    assert_int_equal(wf->pb->resumes, 1);
    assert_int_equal(status(wf, "financial"), TS(SUCCEEDED));
    assert_int_equal(status(wf, "legal"), TS(PENDING));
    int32_t l = ao_wf_find(wf, "legal");
    assert_int_equal(wf->tasks[l].st->spec->attempt_timeout_ms, 9000);
    assert_int_equal(wf->tasks[l].st->attempts, 0);
    /* Only what is not done runs again: legal and market are ready. */
    assert_true(in_list(&wf->ready, wf, "legal"));
    assert_true(in_list(&wf->ready, wf, "market"));
    assert_false(in_list(&wf->ready, wf, "financial"));
    /* Usage spent before the resume is kept, and the key findings. */
    assert_int_equal(wf->pb->usage->total_tokens, 10);
    assert_int_equal(wf->pb->n_findings, 2);
    assert_string_equal(wf->pb->findings[0]->key, "revenue");
    assert_string_equal(wf->pb->findings[0]->value, "growing");
    assert_string_equal(wf->pb->findings[1]->value, "financial");
    ao_wf_free(wf);
}

/* Regression: a resume re-ran a failed optional task but kept the
 * synthesis that had run without its output. A task whose dependency runs
 * again runs again. */
static void test_resume_reruns_what_depends_on_a_rerun(void **state)
{
    (void)state;
    ao_wf_t *wf = make("{\"tasks\":[{\"id\":\"financial\",\"agent\":\"a\"},"
                       "{\"id\":\"contracts\",\"agent\":\"a\",\"optional\":true},"
                       "{\"id\":\"report\",\"agent\":\"a\",\"dependsOn\":[\"financial\"]},"
                       "{\"id\":\"synthesis\",\"kind\":\"TASK_KIND_SYNTHESIS\","
                       "\"dependsOn\":[\"contracts\",\"report\"]}]}");
    started(wf, "financial");
    succeeded(wf, "financial", 0.8, 1);
    started(wf, "contracts");
    failed(wf, "contracts");
    started(wf, "report");
    succeeded(wf, "report", 0.7, 1);
    started(wf, "synthesis");
    succeeded(wf, "synthesis", 0.6, 0);
    Agentos__V1__Checkpoint ck = AGENTOS__V1__CHECKPOINT__INIT;
    Agentos__V1__TaskState *completed[] = {wf->tasks[ao_wf_find(wf, "financial")].st,
                                           wf->tasks[ao_wf_find(wf, "report")].st,
                                           wf->tasks[ao_wf_find(wf, "synthesis")].st};
    ck.completed_tasks = completed;
    ck.n_completed_tasks = 3;
    ck.workflow_id = "wf-1";
    json_t *kept = ao_wf_resume_kept(&ck);
    assert_non_null(json_object_get(kept, "financial"));
    assert_non_null(json_object_get(kept, "report"));
    assert_null(json_object_get(kept, "synthesis"));
    json_decref(kept);
    Agentos__V1__WorkflowResumed wr = AGENTOS__V1__WORKFLOW_RESUMED__INIT;
    wr.checkpoint = &ck;
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    ev.type = ET(WORKFLOW_RESUMED);
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_RESUMED;
    ev.resumed = &wr;
    apply(wf, &ev);
    assert_int_equal(status(wf, "financial"), TS(SUCCEEDED));
    assert_int_equal(status(wf, "report"), TS(SUCCEEDED));
    assert_int_equal(status(wf, "contracts"), TS(PENDING));
    assert_int_equal(status(wf, "synthesis"), TS(PENDING));
    assert_true(in_list(&wf->ready, wf, "contracts"));
    assert_false(in_list(&wf->ready, wf, "synthesis"));
    ao_wf_free(wf);
}

/* A budget event names the task whose budget it is, which need not be the
 * event's task: that task's cached state must be dropped too. */
static void test_budget_event_of_another_task(void **state)
{
    (void)state;
    ao_wf_t *wf = make(acquisition);
    started(wf, "financial");
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__BudgetEvent b = AGENTOS__V1__BUDGET_EVENT__INIT;
    b.task_id = "legal";
    b.dimension = AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_TOKENS;
    b.policy = AGENTOS__V1__BUDGET_POLICY__BUDGET_POLICY_WARN_ONLY;
    ev.type = ET(BUDGET_WARNING);
    ev.task_id = "financial";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_BUDGET;
    ev.budget = &b;
    apply(wf, &ev);
    assert_int_equal(wf->tasks[ao_wf_find(wf, "legal")].st->n_warned, 1);
    ev.type = ET(BUDGET_EXCEEDED);
    apply(wf, &ev);
    assert_int_equal(wf->tasks[ao_wf_find(wf, "legal")].st->n_exceeded, 1);
    ao_wf_free(wf);
}

/* A halt for a role's share of the budget says which role. */
static void test_role_budget_halt_names_the_role(void **state)
{
    (void)state;
    ao_wf_t *wf = make(acquisition);
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__BudgetEvent b = AGENTOS__V1__BUDGET_EVENT__INIT;
    b.dimension = AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_TOKENS;
    b.role = AGENTOS__V1__ROLE__ROLE_ANALYSIS;
    b.used = 120;
    b.limit = 100;
    ev.type = ET(BUDGET_EXCEEDED);
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_BUDGET;
    ev.budget = &b;
    apply(wf, &ev);
    assert_int_equal(wf->pb->stopping, WS(BUDGET_EXCEEDED));
    assert_string_equal(wf->pb->stop_reason, "budget exceeded: TOKENS (ANALYSIS role) 120 of 100");
    ao_wf_free(wf);
}

/* WORKFLOW_COMPLETED applied taking: the state keeps the event's result
 * itself; applied the usual way, a copy. Both read the same. */
static void test_completed_result_taken_or_copied(void **state)
{
    (void)state;
    for (int take = 0; take < 2; take++) {
        ao_wf_t *wf = make(acquisition);
        Agentos__V1__WorkflowResult *res = malloc(sizeof *res);
        agentos__v1__workflow_result__init(res);
        res->status = WS(PARTIAL_SUCCESS);
        res->confidence = 0.25;
        Agentos__V1__Event done = AGENTOS__V1__EVENT__INIT;
        Agentos__V1__WorkflowCompleted wc = AGENTOS__V1__WORKFLOW_COMPLETED__INIT;
        wc.result = res;
        done.type = ET(WORKFLOW_COMPLETED);
        done.payload_case = AGENTOS__V1__EVENT__PAYLOAD_WORKFLOW_COMPLETED;
        done.workflow_completed = &wc;
        done.seq = ++seq;
        done.workflow_id = "wf-1";
        ao_status_t st;
        assert_int_equal(take ? ao_wf_apply_taking(wf, &done, &st) : ao_wf_apply(wf, &done, &st), 0);
        assert_int_equal(wf->pb->status, WS(PARTIAL_SUCCESS));
        assert_true(wf->pb->result->confidence == 0.25);
        if (take) {
            assert_ptr_equal(wf->pb->result, res);
            assert_null(wc.result);
        } else {
            assert_ptr_not_equal(wf->pb->result, res);
            assert_ptr_equal(wc.result, res);
            ao_pb_free(res);
        }
        check_pack(wf);
        ao_wf_free(wf);
    }
}


static ao_wf_t *make_wide(size_t n)
{
    ao_sb_t sb = {0};
    ao_sb_puts(&sb, "{\"tasks\":[");
    for (size_t i = 0; i < n; i++) ao_sb_printf(&sb, "%s{\"id\":\"t%zu\",\"agent\":\"a\"}", i ? "," : "", i);
    ao_sb_puts(&sb, "]}");
    char *json = ao_sb_take(&sb);
    ao_wf_t *wf = make(json);
    free(json);
    return wf;
}

/* The pool helps pack a large workflow's task states; the result is the
 * state packed from scratch. With every worker busy, the caller packs
 * them all itself and does not wait for the pool. */
static void test_tasks_packed_with_the_pool(void **state)
{
    (void)state;
    ao_pool_t *pool = ao_pool_create(2);
    ao_wf_t *wf = make_wide(1000); /* nothing packed yet */
    ao_wf_pack_tasks_shared(wf, NULL, ao_wf_ntasks(wf), pool);
    for (size_t i = 0; i < ao_wf_ntasks(wf); i++) assert_non_null(wf->tasks[i].packed);
    check_pack(wf);
    ao_wf_free(wf);

    ao_test_gate_t g = AO_TEST_GATE_INIT;
    ao_pool_submit(pool, "busy", ao_test_gate_hold, &g);
    ao_pool_submit(pool, "busy2", ao_test_gate_hold, &g);
    assert_int_equal(ao_test_gate_wait_held(&g, 2), 0);
    wf = make_wide(500);
    ao_wf_pack_tasks_shared(wf, NULL, ao_wf_ntasks(wf), pool);
    for (size_t i = 0; i < ao_wf_ntasks(wf); i++) assert_non_null(wf->tasks[i].packed);
    check_pack(wf);
    ao_wf_free(wf); /* before the pool's late jobs run: they touch no task */
    ao_test_gate_open(&g);
    ao_pool_destroy(pool);
}

/* The result lists completed tasks in the order they finished, those that
 * finished in the same millisecond in the workflow's order: when the
 * tasks are in that order already, and when they are not. */
static void check_completed_order(const int64_t *finished, const char *const *want)
{
    ao_wf_t *wf = make(acquisition);
    for (size_t i = 0; i < 4; i++) {
        wf->pb->tasks[i]->status = TS(SUCCEEDED);
        wf->pb->tasks[i]->finished_unix_ms = finished[i];
    }
    Agentos__V1__WorkflowResult *r = ao_result_build(wf, WS(SUCCESS));
    assert_int_equal(r->n_completed_tasks, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(r->completed_tasks[i], want[i]);
    ao_pb_free(r);
    ao_wf_free(wf);
}

static void test_result_in_finishing_order(void **state)
{
    (void)state;
    /* financial, legal, market, synthesis */
    check_completed_order((int64_t[]){10, 20, 20, 30},
                          (const char *const[]){"financial", "legal", "market", "synthesis"});
    check_completed_order((int64_t[]){10, 30, 20, 40},
                          (const char *const[]){"financial", "market", "legal", "synthesis"});
    check_completed_order((int64_t[]){20, 20, 10, 20},
                          (const char *const[]){"market", "financial", "legal", "synthesis"});
}

/* A workflow built with the pool's threads copying its task specs is the
 * one built without them: the same state, task for task, in order (and
 * with every worker busy, the caller copies them all itself). */
static void check_built_with(ao_pool_t *pool, const Agentos__V1__WorkflowSpec *spec)
{
    ao_wf_t *a, *b;
    ao_status_t st;
    assert_int_equal(ao_wf_new(spec, "wf-1", "", NULL, &a, &st), 0);
    assert_int_equal(ao_wf_new(spec, "wf-1", "", pool, &b, &st), 0);
    assert_int_equal(ao_wf_ntasks(b), spec->n_tasks);
    size_t la, lb;
    uint8_t *pa = ao_wf_pack(a, &la), *pb = ao_wf_pack(b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(pa, pb, la);
    for (size_t i = 0; i < spec->n_tasks; i++) {
        assert_string_equal(b->tasks[i].st->spec->id, spec->tasks[i]->id);
        assert_int_equal(ao_wf_find(b, spec->tasks[i]->id), (int32_t)i);
    }
    free(pa);
    free(pb);
    ao_wf_free(a);
    ao_wf_free(b);
}

static void test_built_with_the_pool(void **state)
{
    (void)state;
    ao_sb_t sb = {0};
    ao_sb_puts(&sb, "{\"tasks\":[");
    for (size_t i = 0; i < 1000; i++)
        ao_sb_printf(&sb, "%s{\"id\":\"t%zu\",\"agent\":\"a\",\"input\":\"in %zu\"%s}",
                     i ? "," : "", i, i, i ? ",\"dependsOn\":[\"t0\"]" : "");
    ao_sb_puts(&sb, "]}");
    char *json = ao_sb_take(&sb);
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, json, strlen(json), &m, &st))
        fail_msg("%s", st.msg);
    free(json);
    ao_pool_t *pool = ao_pool_create(2);
    check_built_with(pool, (Agentos__V1__WorkflowSpec *)m);
    ao_test_gate_t g = AO_TEST_GATE_INIT;
    ao_pool_submit(pool, "busy", ao_test_gate_hold, &g);
    ao_pool_submit(pool, "busy2", ao_test_gate_hold, &g);
    assert_int_equal(ao_test_gate_wait_held(&g, 2), 0);
    check_built_with(pool, (Agentos__V1__WorkflowSpec *)m);
    ao_test_gate_open(&g);
    ao_pool_destroy(pool);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* The task index: 3,000 ids that differ only in their last characters,
 * ids that are prefixes of others, tasks a plan adds past the index's
 * first size, and a snapshot with an id twice. */
static void test_task_index(void **state)
{
    (void)state;
    enum { N = 3000 };
    ao_sb_t sb = {0};
    ao_sb_puts(&sb, "{\"tasks\":[{\"id\":\"plan\",\"kind\":\"TASK_KIND_PLANNER\",\"agent\":\"x\"}");
    char id[64];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "a-long-common-prefix-of-task-ids-%d", i);
        ao_sb_puts(&sb, ",{\"id\":\"");
        ao_sb_puts(&sb, id);
        ao_sb_puts(&sb, "\",\"agent\":\"x\"}");
    }
    ao_sb_puts(&sb, "]}");
    char *json = ao_sb_take(&sb);
    ao_wf_t *wf = make(json);
    free(json);
    assert_int_equal(ao_wf_find(wf, "plan"), 0);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "a-long-common-prefix-of-task-ids-%d", i);
        assert_int_equal(ao_wf_find(wf, id), i + 1);
        assert_string_equal(wf->tasks[i + 1].st->spec->id, id);
    }
    assert_int_equal(ao_wf_find(wf, "a-long-common-prefix-of-task-ids-"), -1);
    assert_int_equal(ao_wf_find(wf, "a-long-common-prefix-of-task-ids-30000"), -1);
    assert_int_equal(ao_wf_find(wf, ""), -1);
    assert_int_equal(ao_wf_find(wf, "pla"), -1);

    /* A plan of 40 subtasks into a workflow that had 2: the index grows
     * while the tasks come in, and finds the old ones and the new. */
    ao_wf_t *small =
        make("{\"tasks\":[{\"id\":\"plan\",\"kind\":\"TASK_KIND_PLANNER\",\"agent\":\"x\"},"
             "{\"id\":\"after\",\"agent\":\"x\",\"dependsOn\":[\"plan\"]}]}");
    started(small, "plan");
    enum { SUBS = 40 };
    Agentos__V1__TaskSpec specs[SUBS];
    Agentos__V1__TaskState states[SUBS], *ptrs[SUBS];
    char ids[SUBS][16], *deps[SUBS];
    for (int k = 0; k < SUBS; k++) {
        snprintf(ids[k], sizeof ids[k], "plan/%d", k);
        agentos__v1__task_spec__init(&specs[k]);
        specs[k].id = ids[k];
        specs[k].agent = "x";
        if (k) { /* each after the one before */
            deps[k] = ids[k - 1];
            specs[k].depends_on = &deps[k];
            specs[k].n_depends_on = 1;
        }
        agentos__v1__task_state__init(&states[k]);
        states[k].spec = &specs[k];
        states[k].depth = 1;
        ptrs[k] = &states[k];
    }
    expanded(small, "plan", ptrs, SUBS);
    assert_int_equal(ao_wf_ntasks(small), 2 + SUBS);
    assert_int_equal(ao_wf_find(small, "plan"), 0);
    assert_int_equal(ao_wf_find(small, "after"), 1);
    for (int k = 0; k < SUBS; k++) {
        assert_int_equal(ao_wf_find(small, ids[k]), 2 + k);
        if (k) assert_int_equal(small->tasks[2 + k].deps[0], 2 + k - 1);
    }
    ao_wf_free(small);

    /* A snapshot that holds an id twice does not load, and says which. */
    Agentos__V1__Workflow *copy = AO_PB_CLONE(Agentos__V1__Workflow, wf->pb);
    ao_pb_set_str(&copy->tasks[N]->spec->id, "a-long-common-prefix-of-task-ids-17");
    ao_wf_t *again;
    ao_status_t st;
    assert_int_equal(ao_wf_from_snapshot(copy, &again, &st), AO_ECORRUPT);
    assert_null(again);
    assert_non_null(strstr(st.msg, "task id a-long-common-prefix-of-task-ids-17 twice"));
    ao_wf_free(wf);
}

static void test_corrupt_events_rejected(void **state)
{
    (void)state;
    ao_wf_t *wf = make(acquisition);
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    ev.type = ET(TASK_STARTED);
    ev.task_id = "nope";
    ev.workflow_id = "wf-1";
    ev.seq = 99;
    ao_status_t st;
    assert_int_equal(ao_wf_apply(wf, &ev, &st), AO_ECORRUPT);
    assert_non_null(strstr(st.msg, "unknown task \"nope\""));
    ev.workflow_id = "wf-other";
    ev.task_id = "legal";
    assert_int_equal(ao_wf_apply(wf, &ev, &st), AO_ECORRUPT);
    assert_non_null(strstr(st.msg, "of workflow wf-other applied to wf-1"));
    ao_wf_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_when_last_dependency_settles),
        cmocka_unit_test(test_failures_optional_and_required),
        cmocka_unit_test(test_plan_children_hold_dependents),
        cmocka_unit_test(test_snapshot_with_unsettled_children),
        cmocka_unit_test(test_resume_keeps_completed),
        cmocka_unit_test(test_resume_reruns_what_depends_on_a_rerun),
        cmocka_unit_test(test_budget_event_of_another_task),
        cmocka_unit_test(test_role_budget_halt_names_the_role),
        cmocka_unit_test(test_completed_result_taken_or_copied),
        cmocka_unit_test(test_tasks_packed_with_the_pool),
        cmocka_unit_test(test_result_in_finishing_order),
        cmocka_unit_test(test_built_with_the_pool),
        cmocka_unit_test(test_task_index),
        cmocka_unit_test(test_corrupt_events_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
