/*
 * The agentos.v1.Orchestrator handlers (StreamEvents is the hub's).
 *
 * Threads: handlers run on RPC threads, validate what they can there, and
 * post the rest to the processor thread, which owns the workflows; replies
 * that depend on new events are sent after those events are durable.
 */
#include "handlers.h"

#include "agentos/v1/orchestrator.pb-c.h"
#include "backends.h"
#include "dag.h"
#include "engine.h"
#include "log.h"
#include "mem.h"
#include "pbutil.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x

/* One request in flight, in the call's arena (it lives as long as the
 * call, so callbacks racing with the end of the call never see it freed). */
typedef struct op {
    ao_handlers_t *h;
    ao_rpc_call_t *call;
    const ProtobufCMessage *req;
    char *tenant;
    ao_wf_t *wf;
    void *watch;
    int finished;
    int dedup;
    uint64_t seq;
    Agentos__V1__Checkpoint *ckpt;
    ao_proc_after_fn after; /* post_after_commit's work */
    ao_submission_t *sub;   /* Orchestrate: prepared on the RPC thread */
} op_t;

static op_t *op_new(ao_handlers_t *h, ao_rpc_call_t *call, const ProtobufCMessage *req)
{
    op_t *op = ao_rpc_call_alloc(call, sizeof *op);
    memset(op, 0, sizeof *op);
    op->h = h;
    op->call = call;
    op->req = req;
    op->tenant = (char *)ao_rpc_call_tenant(call);
    return op;
}

static void op_fail(op_t *op, const ao_status_t *st)
{
    op->finished = 1;
    ao_rpc_fail_status(op->call, st);
}

/* The processor has stopped: the server is going down. */
static void op_drop(void *ud)
{
    op_t *op = ud;
    ao_rpc_fail(op->call, AO_EUNAVAIL, "agentosd is shutting down");
}

static void post(op_t *op, ao_proc_work_fn fn)
{
    ao_proc_post(ao_engine_proc(op->h->engine), fn, op_drop, op);
}

static void after_commit_work(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    ao_proc_after_commit(p, op->after, op);
}

/* Runs fn on the processor once what was applied before the call came is
 * written: the checkpoint reads and a resume, so that a checkpoint taken
 * before them (a final one is taken in the turn after the result) is in
 * the log. */
static void post_after_commit(op_t *op, ao_proc_after_fn fn)
{
    op->after = fn;
    post(op, after_commit_work);
}

/* Finds the caller's workflow into op->wf; 0 when there is none, after
 * failing the call (op is gone then: it lives in the call's arena, which
 * an RPC thread may free as soon as the status is sent). */
static int find(op_t *op, const char *id)
{
    ao_status_t st;
    op->wf = ao_engine_find(op->h->engine, id, op->tenant, &st);
    if (op->wf) return 1;
    op_fail(op, &st);
    return 0;
}

/* Whether op->wf, found in an earlier turn (it may have been frozen
 * since), is whole; else the call fails. */
static int still_whole(op_t *op)
{
    ao_status_t st;
    if (!ao_engine_whole(op->h->engine, op->wf, &st)) return 1;
    op_fail(op, &st);
    return 0;
}

/* ---- Orchestrate and ResumeWorkflow ------------------------------------------ */

static void reply_orchestrate(op_t *op)
{
    if (!still_whole(op)) return;
    Agentos__V1__OrchestrateResponse r = AGENTOS__V1__ORCHESTRATE_RESPONSE__INIT;
    r.workflow_id = op->wf->pb->id;
    r.status = op->wf->pb->status;
    r.result = op->wf->pb->result;
    r.deduplicated = op->dedup;
    r.seq = op->seq;
    op->finished = 1;
    ao_rpc_reply(op->call, &r.base);
}

static void after_commit_reply(ao_proc_t *p, void *ud)
{
    (void)p;
    reply_orchestrate(ud);
}

/* The workflow finished while the client waited. */
static void on_finished(void *ud, ao_wf_t *wf)
{
    op_t *op = ud;
    op->watch = NULL;
    if (op->finished) return;
    if (!ao_wf_status_terminal(wf->pb->status)) {
        op->finished = 1;
        ao_rpc_fail(op->call, AO_EUNAVAIL,
                    "agentosd is shutting down; the workflow continues when it restarts");
        return;
    }
    reply_orchestrate(op);
}

/* The client went away while waiting. on_call_cancelled took a reference
 * on the call: op lives in its arena, and the workflow may have finished
 * (and the reply freed the call) before this runs. */
static void cancel_wait_work(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    ao_rpc_call_t *call = op->call;
    if (!op->finished) {
        if (op->watch && op->wf) ao_engine_unwatch(op->h->engine, op->wf, op->watch);
        op->watch = NULL;
        op->finished = 1;
        ao_rpc_fail(call, AO_ECANCELLED,
                    "the call ended (client gone or deadline passed); the workflow keeps running");
    }
    ao_rpc_call_unref(call);
}

/* The processor has stopped: its waiters were answered (or are failed now). */
static void cancel_wait_drop(void *ud)
{
    op_t *op = ud;
    ao_rpc_call_t *call = op->call;
    if (!op->finished) {
        op->finished = 1;
        ao_rpc_fail(call, AO_EUNAVAIL, "agentosd is shutting down");
    }
    ao_rpc_call_unref(call);
}

static void on_call_cancelled(ao_rpc_call_t *call, void *ud)
{
    op_t *op = ud;
    ao_rpc_call_ref(call);
    ao_proc_post(ao_engine_proc(op->h->engine), cancel_wait_work, cancel_wait_drop, op);
}

/* Replies now, or registers to reply when the workflow finishes. */
static void reply_or_wait(op_t *op, int wait)
{
    if (wait && !ao_wf_status_terminal(op->wf->pb->status)) {
        op->watch = ao_engine_watch(op->h->engine, op->wf, on_finished, op);
        ao_rpc_call_on_cancel(op->call, on_call_cancelled, op);
        return;
    }
    ao_proc_after_commit(ao_engine_proc(op->h->engine), after_commit_reply, op);
}

static void orchestrate_work(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    const Agentos__V1__OrchestrateRequest *req = (const void *)op->req;
    ao_status_t st;
    ao_submission_t *sub = op->sub;
    op->sub = NULL;
    if (ao_engine_submit_prepared(op->h->engine, op->tenant, sub, &op->wf, &op->seq, &op->dedup, &st)) {
        op_fail(op, &st);
        return;
    }
    reply_or_wait(op, req->wait);
}

static void orchestrate_drop(void *ud)
{
    op_t *op = ud;
    ao_submission_free(op->sub);
    op_drop(op);
}

static void orchestrate(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    ao_handlers_t *h = ud;
    const Agentos__V1__OrchestrateRequest *req = (const void *)m;
    ao_status_t st;
    if (!req->workflow) {
        ao_rpc_fail(call, AO_EINVAL, "workflow: required");
        return;
    }
    if (strlen(req->request_id) > 128) {
        ao_rpc_fail(call, AO_EINVAL, "request_id: at most 128 bytes");
        return;
    }
    ao_dag_env_t env = {ao_engine_config(h->engine)};
    if (ao_dag_validate(req->workflow, &env, &st)) {
        ao_rpc_fail_status(call, &st);
        return;
    }
    /* What needs only the spec, here, beside the processor. */
    op_t *op = op_new(h, call, m);
    op->sub = ao_engine_prepare(h->engine, req->workflow, req->request_id);
    ao_proc_post(ao_engine_proc(h->engine), orchestrate_work, orchestrate_drop, op);
}

static void resume_now(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    const Agentos__V1__ResumeWorkflowRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    ao_status_t st;
    Agentos__V1__Checkpoint *from = NULL;
    if (*req->checkpoint_id) {
        unsigned long long seq = 0;
        char tail;
        if (sscanf(req->checkpoint_id, "ckpt-%llu%c", &seq, &tail) != 1) {
            ao_rpc_fail(op->call, AO_EINVAL, "checkpoint_id: expected ckpt-SEQ");
            return;
        }
        void *data = NULL;
        size_t len = 0;
        uint64_t got;
        if (ao_log_get_checkpoint(ao_proc_log(ao_engine_proc(op->h->engine)), op->wf->pb->id, seq,
                                  &got, &data, &len, &st)) {
            char msg[300];
            snprintf(msg, sizeof msg, "checkpoint %s of workflow %s not found", req->checkpoint_id,
                     op->wf->pb->id);
            ao_rpc_fail(op->call, AO_ENOTFOUND, msg);
            return;
        }
        from = agentos__v1__checkpoint__unpack(NULL, len, data);
        free(data);
        if (!from) {
            ao_rpc_fail(op->call, AO_ECORRUPT, "the stored checkpoint does not decode");
            return;
        }
    }
    int rc = ao_engine_resume(op->h->engine, op->wf, from, req->overrides, req->n_overrides,
                              req->budget, &op->seq, &st);
    ao_pb_free(from);
    if (rc) {
        op_fail(op, &st);
        return;
    }
    reply_or_wait(op, req->wait);
}

static void resume(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post_after_commit(op_new(ud, call, m), resume_now);
}

/* ---- GetWorkflow ------------------------------------------------------------------- */

static void state_at_job(void *ud)
{
    op_t *op = ud;
    const Agentos__V1__GetWorkflowRequest *req = (const void *)op->req;
    ao_wf_t *wf = NULL;
    ao_status_t st;
    if (ao_engine_state_at(ao_proc_log(ao_engine_proc(op->h->engine)), req->workflow_id,
                           req->at_seq, &wf, &st)) {
        ao_rpc_fail_status(op->call, &st);
        return;
    }
    ao_rpc_reply(op->call, &wf->pb->base);
    ao_wf_free(wf);
}

/* Replies with the workflow's state once what has been applied is durable
 * (work before this in the same loop may have changed it). */
static void reply_state(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    if (!still_whole(op)) return;
    ao_rpc_reply(op->call, &op->wf->pb->base);
}

static void get_workflow_work(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__GetWorkflowRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    if (!req->at_seq) {
        ao_proc_after_commit(p, reply_state, op);
        return;
    }
    uint64_t durable = ao_proc_durable_seq(p);
    if (req->at_seq > durable) {
        char msg[200];
        snprintf(msg, sizeof msg, "at_seq %llu is past the last durable event (%llu)",
                 (unsigned long long)req->at_seq, (unsigned long long)durable);
        ao_rpc_fail(op->call, AO_EINVAL, msg);
        return;
    }
    /* Replaying reads the log: off the processor thread. */
    ao_pool_submit(op->h->pool, "debug-replay", state_at_job, op);
}

static void get_workflow(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post(op_new(ud, call, m), get_workflow_work);
}

/* ---- ListWorkflows ----------------------------------------------------------------- */

typedef struct list_ctx {
    const Agentos__V1__ListWorkflowsRequest *req;
    Agentos__V1__ListWorkflowsResponse *resp;
    size_t limit;
    const char *last;
    int more;
} list_ctx_t;

static int labels_match(const Agentos__V1__ListWorkflowsRequest *req, const ao_wf_t *wf)
{
    const Agentos__V1__WorkflowSpec *s = wf->pb->spec;
    for (size_t i = 0; i < req->n_labels; i++) {
        int found = 0;
        for (size_t k = 0; s && k < s->n_labels && !found; k++)
            found = !strcmp(s->labels[k]->key, req->labels[i]->key) &&
                    !strcmp(s->labels[k]->value, req->labels[i]->value);
        if (!found) return 0;
    }
    return 1;
}

static int list_one(void *ud, ao_wf_t *wf)
{
    list_ctx_t *c = ud;
    if (c->req->status && (int)wf->pb->status != (int)c->req->status) return 0;
    if (!labels_match(c->req, wf)) return 0;
    if (c->resp->n_workflows == c->limit) {
        c->more = 1;
        return 1;
    }
    Agentos__V1__WorkflowSummary **slot = ao_pb_push(&c->resp->workflows, &c->resp->n_workflows, sizeof *slot);
    Agentos__V1__WorkflowSummary *s = ao_xmalloc(sizeof *s);
    agentos__v1__workflow_summary__init(s);
    *slot = s;
    s->id = wf->pb->id;
    s->name = wf->pb->spec ? wf->pb->spec->name : "";
    s->status = wf->pb->status;
    size_t nl = wf->pb->spec ? wf->pb->spec->n_labels : 0;
    if (nl) {
        /* Entries that point at the spec's strings, freed with the reply. */
        Agentos__V1__WorkflowSummary__LabelsEntry *entries = ao_xcalloc(nl, sizeof *entries);
        s->labels = ao_xcalloc(nl, sizeof *s->labels);
        for (size_t k = 0; k < nl; k++) {
            agentos__v1__workflow_summary__labels_entry__init(&entries[k]);
            entries[k].key = wf->pb->spec->labels[k]->key;
            entries[k].value = wf->pb->spec->labels[k]->value;
            s->labels[k] = &entries[k];
        }
        s->n_labels = nl;
    }
    s->tasks_total = (uint32_t)ao_wf_tasks_total(wf);
    s->tasks_done = wf->n_terminal;
    s->usage = wf->pb->usage;
    s->created_unix_ms = wf->pb->created_unix_ms;
    s->finished_unix_ms = wf->pb->finished_unix_ms;
    c->last = wf->pb->id;
    return 0;
}

/* After the commit, like GetWorkflow: the page shows only durable state. */
static void list_reply(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    const Agentos__V1__ListWorkflowsRequest *req = (const void *)op->req;
    Agentos__V1__ListWorkflowsResponse resp = AGENTOS__V1__LIST_WORKFLOWS_RESPONSE__INIT;
    list_ctx_t c = {req, &resp, req->page_size ? req->page_size : 50, NULL, 0};
    if (c.limit > 1000) c.limit = 1000;
    ao_engine_list(op->h->engine, op->tenant, req->page_token, list_one, &c);
    if (c.more) resp.next_page_token = (char *)c.last;
    /* Borrowed from the engine, which keeps them summed. */
    const Agentos__V1__Usage *total;
    Agentos__V1__AgentUsage *const *agents;
    ao_engine_tenant_usage(op->h->engine, op->tenant, &total, &agents, &resp.n_tenant_agent_usage);
    resp.tenant_usage = (Agentos__V1__Usage *)total;
    resp.tenant_agent_usage = (Agentos__V1__AgentUsage **)agents;
    ao_rpc_reply(op->call, &resp.base);
    for (size_t i = 0; i < resp.n_workflows; i++) {
        if (resp.workflows[i]->n_labels) free(resp.workflows[i]->labels[0]);
        free(resp.workflows[i]->labels);
        free(resp.workflows[i]);
    }
    free(resp.workflows);
}

static void list_work(ao_proc_t *p, void *ud)
{
    ao_proc_after_commit(p, list_reply, ud);
}

static void list_workflows(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post(op_new(ud, call, m), list_work);
}

/* ---- CancelWorkflow -------------------------------------------------------------------- */

static void cancel_work(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__CancelWorkflowRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    ao_status_t st;
    if (ao_engine_cancel(op->h->engine, op->wf, req->reason, &st)) {
        op_fail(op, &st);
        return;
    }
    ao_proc_after_commit(p, reply_state, op);
}

static void cancel_workflow(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    const Agentos__V1__CancelWorkflowRequest *req = (const void *)m;
    if (strlen(req->reason) > 1024) {
        ao_rpc_fail(call, AO_EINVAL, "reason: at most 1024 bytes");
        return;
    }
    post(op_new(ud, call, m), cancel_work);
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static void reply_checkpoint(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    /* op is in the call's arena: gone once the call is finished. */
    Agentos__V1__Checkpoint *k = op->ckpt;
    ao_rpc_reply(op->call, &k->base);
    ao_pb_free(k);
}

static void checkpoint_work(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__CheckpointRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    ao_status_t st;
    if (ao_engine_checkpoint(op->h->engine, op->wf, "manual", req->note, &op->ckpt, &st)) {
        op_fail(op, &st);
        return;
    }
    ao_proc_after_commit(p, reply_checkpoint, op);
}

static void checkpoint(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    const Agentos__V1__CheckpointRequest *req = (const void *)m;
    if (strlen(req->note) > 1024) {
        ao_rpc_fail(call, AO_EINVAL, "note: at most 1024 bytes");
        return;
    }
    post(op_new(ud, call, m), checkpoint_work);
}

typedef struct ckpt_list {
    Agentos__V1__ListCheckpointsResponse *resp;
    int rc;
} ckpt_list_t;

static int add_ckpt(void *ud, uint64_t seq, const void *data, size_t len)
{
    (void)seq;
    ckpt_list_t *c = ud;
    Agentos__V1__Checkpoint *k = agentos__v1__checkpoint__unpack(NULL, len, data);
    if (!k) {
        c->rc = AO_ECORRUPT;
        return 1;
    }
    /* Without the bulk: completed tasks keep only their spec id and status. */
    for (size_t i = 0; i < k->n_completed_tasks; i++) {
        Agentos__V1__TaskState *t = k->completed_tasks[i];
        ao_pb_clear_str(&t->output);
        for (size_t j = 0; j < t->n_findings; j++) ao_pb_free(t->findings[j]);
        free(t->findings);
        t->findings = NULL;
        t->n_findings = 0;
    }
    Agentos__V1__Checkpoint **slot = ao_pb_push(&c->resp->checkpoints, &c->resp->n_checkpoints, sizeof *slot);
    *slot = k;
    return 0;
}

static void list_checkpoints_read(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__ListCheckpointsRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    Agentos__V1__ListCheckpointsResponse resp = AGENTOS__V1__LIST_CHECKPOINTS_RESPONSE__INIT;
    ckpt_list_t c = {&resp, 0};
    ao_status_t st;
    int rc = ao_log_list_checkpoints(ao_proc_log(p), op->wf->pb->id, add_ckpt, &c, &st);
    if (rc || c.rc) {
        if (c.rc) ao_status_set(&st, c.rc, "a stored checkpoint of %s does not decode", op->wf->pb->id);
        op_fail(op, &st);
    } else {
        ao_rpc_reply(op->call, &resp.base);
    }
    for (size_t i = 0; i < resp.n_checkpoints; i++) ao_pb_free(resp.checkpoints[i]);
    free(resp.checkpoints);
}

static void list_checkpoints(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post_after_commit(op_new(ud, call, m), list_checkpoints_read);
}

static void get_checkpoint_read(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__GetCheckpointRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    unsigned long long seq = 0;
    char tail;
    if (*req->checkpoint_id && sscanf(req->checkpoint_id, "ckpt-%llu%c", &seq, &tail) != 1) {
        ao_rpc_fail(op->call, AO_EINVAL, "checkpoint_id: expected ckpt-SEQ");
        return;
    }
    void *data = NULL;
    size_t len = 0;
    uint64_t got;
    ao_status_t st;
    if (ao_log_get_checkpoint(ao_proc_log(p), op->wf->pb->id, seq, &got, &data, &len, &st)) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s of workflow %s not found",
                 *req->checkpoint_id ? req->checkpoint_id : "a checkpoint", op->wf->pb->id);
        ao_rpc_fail(op->call, AO_ENOTFOUND, msg);
        return;
    }
    Agentos__V1__Checkpoint *k = agentos__v1__checkpoint__unpack(NULL, len, data);
    free(data);
    if (!k) {
        ao_rpc_fail(op->call, AO_ECORRUPT, "the stored checkpoint does not decode");
        return;
    }
    ao_rpc_reply(op->call, &k->base);
    ao_pb_free(k);
}

static void get_checkpoint(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post_after_commit(op_new(ud, call, m), get_checkpoint_read);
}

/* ---- GetAgentHealth, PublishEvent ------------------------------------------------------- */

static void get_agent_health(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    ao_handlers_t *h = ud;
    const Agentos__V1__GetAgentHealthRequest *req = (const void *)m;
    Agentos__V1__GetAgentHealthResponse resp = AGENTOS__V1__GET_AGENT_HEALTH_RESPONSE__INIT;
    ao_status_t st;
    if (ao_backends_health(ao_engine_backends(h->engine), req->agent, ao_rpc_call_tenant(call), &resp, &st)) ao_rpc_fail_status(call, &st);
    else ao_rpc_reply(call, &resp.base);
    for (size_t i = 0; i < resp.n_agents; i++) ao_pb_free(resp.agents[i]);
    free(resp.agents);
}

static void reply_seq(ao_proc_t *p, void *ud)
{
    (void)p;
    op_t *op = ud;
    Agentos__V1__PublishEventResponse r = AGENTOS__V1__PUBLISH_EVENT_RESPONSE__INIT;
    r.seq = op->seq;
    ao_rpc_reply(op->call, &r.base);
}

static void publish_work(ao_proc_t *p, void *ud)
{
    op_t *op = ud;
    const Agentos__V1__PublishEventRequest *req = (const void *)op->req;
    if (!find(op, req->workflow_id)) return;
    ao_status_t st;
    if (ao_engine_publish(op->h->engine, op->wf, req, &op->seq, &st)) {
        op_fail(op, &st);
        return;
    }
    ao_proc_after_commit(p, reply_seq, op);
}

static void publish_event(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    post(op_new(ud, call, m), publish_work);
}

/* ---- registration ------------------------------------------------------------------------ */

static void stream_events(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    ao_handlers_t *h = ud;
    h->stream_fn(call, m, h->stream_ud);
}

int ao_handlers_register(ao_handlers_t *h, ao_rpc_server_t *srv, ao_status_t *st)
{
    ao_rpc_method_impl_t impls[] = {
        {"Orchestrate", AO_RPC_UNARY, orchestrate, 1},
        {"GetWorkflow", AO_RPC_UNARY, get_workflow, 1},
        {"ListWorkflows", AO_RPC_UNARY, list_workflows, 1},
        {"CancelWorkflow", AO_RPC_UNARY, cancel_workflow, 1},
        {"Checkpoint", AO_RPC_UNARY, checkpoint, 1},
        {"ListCheckpoints", AO_RPC_UNARY, list_checkpoints, 1},
        {"GetCheckpoint", AO_RPC_UNARY, get_checkpoint, 1},
        {"ResumeWorkflow", AO_RPC_UNARY, resume, 1},
        {"GetAgentHealth", AO_RPC_UNARY, get_agent_health, 1},
        {"PublishEvent", AO_RPC_UNARY, publish_event, 1},
        {"StreamEvents", AO_RPC_SERVER_STREAMING, stream_events, 1},
    };
    size_t n = sizeof impls / sizeof impls[0] - (h->stream_fn ? 0 : 1);
    return ao_rpc_server_add_service(srv, &agentos__v1__orchestrator__descriptor, impls, n, h, st);
}
