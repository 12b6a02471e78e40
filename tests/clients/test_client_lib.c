/* libagentos-client against a real agentosd (started here, with a
 * temporary data directory and builtin agents): every call, errors, a
 * stream stopped early from its callback and from the iterator,
 * deadlines, authentication. Runs under ASan: the library leaks nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentos/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define TOKEN "client-test-token"

static pid_t server;
static char dir[] = "/tmp/agentos-client-XXXXXX";
static char target[64];
static ao_client_t *c;

static void start_server(void)
{
    if (!mkdtemp(dir)) fail_msg("mkdtemp");
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)TOKEN, strlen(TOKEN), md);
    char hex[65];
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    /* A free port: bind to 0, read it, release it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &al)) fail_msg("bind");
    int port = ntohs(a.sin_port);
    close(fd);
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    char cfg[512], path[300];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(cfg, sizeof cfg,
             "{\"listen\":[\"%s\"],\"storage\":{\"dataDir\":\"%s/data\"},"
             "\"tokens\":[{\"tenant\":\"t1\",\"tokenSha256\":\"%s\"}],"
             "\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"latencyMs\":5}},"
             "{\"name\":\"stuck\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"builtin\":{\"hang\":true}}]}",
             target, dir, hex);
    FILE *f = fopen(path, "w");
    fputs(cfg, f);
    fclose(f);
    char log[300];
    snprintf(log, sizeof log, "%s/agentosd.log", dir);
    server = fork();
    if (server == 0) {
        freopen(log, "w", stderr);
        execl(getenv("AGENTOSD"), "agentosd", "--config", path, (char *)NULL);
        _exit(127);
    }
}

static int setup(void **state)
{
    (void)state;
    start_server();
    ao_client_options_t o = {.target = target, .token = TOKEN, .timeout_ms = 5000};
    ao_client_error_t err;
    if (ao_client_connect(&o, &c, &err)) fail_msg("%s", err.message);
    /* Wait (with a deadline) until the server answers. */
    for (int i = 0; i < 400; i++) {
        Agentos__V1__ListWorkflowsRequest req = AGENTOS__V1__LIST_WORKFLOWS_REQUEST__INIT;
        Agentos__V1__ListWorkflowsResponse *r;
        if (ao_client_call(c, "ListWorkflows", &req.base, &agentos__v1__list_workflows_response__descriptor, 200,
                           (ProtobufCMessage **)&r, &err) == 0) {
            ao_client_free(r);
            return 0;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* the server is starting: retry within the 20 s deadline */
    }
    fail_msg("agentosd did not answer on %s: %s", target, err.message);
    return 1;
}

static int teardown(void **state)
{
    (void)state;
    ao_client_close(c);
    kill(server, SIGTERM);
    int status;
    waitpid(server, &status, 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -q 'Sanitizer\\|runtime error' %s/agentosd.log", dir);
    int dirty = system(cmd) == 0;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_false(dirty);
    return 0;
}

static Agentos__V1__TaskSpec *mktask(const char *id, const char *agent, const char *dep)
{
    Agentos__V1__TaskSpec *t = calloc(1, sizeof *t);
    agentos__v1__task_spec__init(t);
    t->id = (char *)id;
    t->agent = (char *)agent;
    if (dep) {
        t->depends_on = calloc(1, sizeof(char *));
        t->depends_on[0] = (char *)dep;
        t->n_depends_on = 1;
    }
    return t;
}

static void free_spec(Agentos__V1__WorkflowSpec *s)
{
    for (size_t i = 0; i < s->n_tasks; i++) {
        free(s->tasks[i]->depends_on);
        free(s->tasks[i]);
    }
    free(s->tasks);
}

static char wf_id[128];

static void test_orchestrate_get_list(void **state)
{
    (void)state;
    Agentos__V1__WorkflowSpec spec = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec *ts[] = {mktask("a", "noop", NULL), mktask("b", "noop", "a")};
    spec.tasks = malloc(sizeof ts);
    memcpy(spec.tasks, ts, sizeof ts);
    spec.n_tasks = 2;
    spec.name = "from C";
    Agentos__V1__OrchestrateRequest req = AGENTOS__V1__ORCHESTRATE_REQUEST__INIT;
    req.workflow = &spec;
    req.wait = 1;
    req.request_id = "c-lib-1";
    Agentos__V1__OrchestrateResponse *r;
    ao_client_error_t err;
    assert_int_equal(ao_client_orchestrate(c, &req, &r, &err), 0);
    assert_int_equal(r->status, WS(SUCCESS));
    assert_non_null(r->result);
    assert_int_equal(r->result->n_completed_tasks, 2);
    snprintf(wf_id, sizeof wf_id, "%s", r->workflow_id);
    ao_client_free(r);
    /* The same request id: the same workflow. */
    assert_int_equal(ao_client_orchestrate(c, &req, &r, &err), 0);
    assert_true(r->deduplicated);
    assert_string_equal(r->workflow_id, wf_id);
    ao_client_free(r);
    free_spec(&spec);

    Agentos__V1__GetWorkflowRequest g = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
    g.workflow_id = wf_id;
    Agentos__V1__Workflow *wf;
    assert_int_equal(ao_client_get_workflow(c, &g, &wf, &err), 0);
    assert_int_equal(wf->n_tasks, 2);
    assert_string_equal(wf->tenant, "t1");
    ao_client_free(wf);

    Agentos__V1__ListWorkflowsRequest l = AGENTOS__V1__LIST_WORKFLOWS_REQUEST__INIT;
    Agentos__V1__ListWorkflowsResponse *lr;
    assert_int_equal(ao_client_list_workflows(c, &l, &lr, &err), 0);
    assert_true(lr->n_workflows >= 1);
    ao_client_free(lr);
}

static void test_errors_carry_status_and_message(void **state)
{
    (void)state;
    ao_client_error_t err;
    Agentos__V1__GetWorkflowRequest g = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
    g.workflow_id = "wf-missing";
    Agentos__V1__Workflow *wf = (void *)1;
    assert_int_equal(ao_client_get_workflow(c, &g, &wf, &err), 5);
    assert_null(wf);
    assert_int_equal(err.code, 5);
    assert_non_null(strstr(err.message, "wf-missing"));
    assert_string_equal(ao_client_status_name(err.code), "NOT_FOUND");

    /* A cycle: INVALID_ARGUMENT naming it. */
    Agentos__V1__WorkflowSpec spec = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec *ts[] = {mktask("x", "noop", "y"), mktask("y", "noop", "x")};
    spec.tasks = malloc(sizeof ts);
    memcpy(spec.tasks, ts, sizeof ts);
    spec.n_tasks = 2;
    Agentos__V1__OrchestrateRequest req = AGENTOS__V1__ORCHESTRATE_REQUEST__INIT;
    req.workflow = &spec;
    Agentos__V1__OrchestrateResponse *r;
    assert_int_equal(ao_client_orchestrate(c, &req, &r, &err), 3);
    assert_non_null(strstr(err.message, "x -> y -> x"));
    free_spec(&spec);

    /* A wrong token: UNAUTHENTICATED. */
    ao_client_options_t o = {.target = target, .token = "wrong", .timeout_ms = 5000};
    ao_client_t *bad;
    assert_int_equal(ao_client_connect(&o, &bad, &err), 0);
    assert_int_equal(ao_client_get_workflow(bad, &g, &wf, &err), 16);
    assert_non_null(strstr(err.message, "invalid bearer token"));
    ao_client_close(bad);

    /* Bad options. */
    ao_client_options_t none = {0};
    assert_int_equal(ao_client_connect(&none, &bad, &err), 3);
    ao_client_options_t nofile = {.target = target, .ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(ao_client_connect(&nofile, &bad, &err), 3);
    assert_non_null(strstr(err.message, "/nonexistent/ca.pem"));
}

static void test_checkpoints_health_publish_cancel_resume(void **state)
{
    (void)state;
    ao_client_error_t err;
    Agentos__V1__WorkflowSpec spec = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec *ts[] = {mktask("hold", "stuck", NULL)};
    spec.tasks = malloc(sizeof ts);
    memcpy(spec.tasks, ts, sizeof ts);
    spec.n_tasks = 1;
    Agentos__V1__OrchestrateRequest req = AGENTOS__V1__ORCHESTRATE_REQUEST__INIT;
    req.workflow = &spec;
    Agentos__V1__OrchestrateResponse *r;
    assert_int_equal(ao_client_orchestrate(c, &req, &r, &err), 0);
    char id[128];
    snprintf(id, sizeof id, "%s", r->workflow_id);
    ao_client_free(r);
    free_spec(&spec);

    Agentos__V1__PublishEventRequest p = AGENTOS__V1__PUBLISH_EVENT_REQUEST__INIT;
    Agentos__V1__Progress pr = AGENTOS__V1__PROGRESS__INIT;
    pr.message = "half way";
    p.workflow_id = id;
    p.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_PROGRESS;
    p.progress = &pr;
    Agentos__V1__PublishEventResponse *pe;
    assert_int_equal(ao_client_publish_event(c, &p, &pe, &err), 0);
    assert_true(pe->seq > 0);
    ao_client_free(pe);

    Agentos__V1__CheckpointRequest ck = AGENTOS__V1__CHECKPOINT_REQUEST__INIT;
    ck.workflow_id = id;
    ck.note = "from C";
    Agentos__V1__Checkpoint *k;
    assert_int_equal(ao_client_checkpoint(c, &ck, &k, &err), 0);
    assert_string_equal(k->note, "from C");
    char ckid[64];
    snprintf(ckid, sizeof ckid, "%s", k->id);
    ao_client_free(k);
    Agentos__V1__ListCheckpointsRequest lc = AGENTOS__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    lc.workflow_id = id;
    Agentos__V1__ListCheckpointsResponse *lcr;
    assert_int_equal(ao_client_list_checkpoints(c, &lc, &lcr, &err), 0);
    assert_int_equal(lcr->n_checkpoints, 1);
    ao_client_free(lcr);
    Agentos__V1__GetCheckpointRequest gc = AGENTOS__V1__GET_CHECKPOINT_REQUEST__INIT;
    gc.workflow_id = id;
    gc.checkpoint_id = ckid;
    assert_int_equal(ao_client_get_checkpoint(c, &gc, &k, &err), 0);
    assert_string_equal(k->id, ckid);
    ao_client_free(k);

    Agentos__V1__GetAgentHealthRequest h = AGENTOS__V1__GET_AGENT_HEALTH_REQUEST__INIT;
    Agentos__V1__GetAgentHealthResponse *hr;
    assert_int_equal(ao_client_get_agent_health(c, &h, &hr, &err), 0);
    assert_int_equal(hr->n_agents, 2);
    ao_client_free(hr);

    Agentos__V1__CancelWorkflowRequest cr = AGENTOS__V1__CANCEL_WORKFLOW_REQUEST__INIT;
    cr.workflow_id = id;
    cr.reason = "test";
    Agentos__V1__Workflow *wf;
    assert_int_equal(ao_client_cancel_workflow(c, &cr, &wf, &err), 0);
    ao_client_free(wf);
    /* Resume with another agent for the task: it completes. */
    Agentos__V1__ResumeWorkflowRequest rr = AGENTOS__V1__RESUME_WORKFLOW_REQUEST__INIT;
    Agentos__V1__TaskOverride ov = AGENTOS__V1__TASK_OVERRIDE__INIT, *ovs[] = {&ov};
    ov.task_id = "hold";
    ov.agent = "noop";
    rr.workflow_id = id;
    rr.overrides = ovs;
    rr.n_overrides = 1;
    rr.wait = 1;
    assert_int_equal(ao_client_resume_workflow(c, &rr, &r, &err), 0);
    assert_int_equal(r->status, WS(SUCCESS));
    ao_client_free(r);
}

typedef struct counter {
    int n;
    uint64_t last;
} counter_t;

static int count_three(void *ud, const Agentos__V1__Event *e)
{
    counter_t *k = ud;
    k->n++;
    k->last = e->seq;
    return k->n == 3;
}

/* Stops at the workflow's final checkpoint: the last event it will have. */
static int until_final(void *ud, const Agentos__V1__Event *e)
{
    (void)ud;
    return e->checkpoint_saved && strcmp(e->checkpoint_saved->reason, "final") == 0;
}

static void test_streams_stop_early_and_deadlines(void **state)
{
    (void)state;
    ao_client_error_t err;
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    req.workflow_id = wf_id;
    counter_t k = {0, 0};
    assert_int_equal(ao_client_stream_events(c, &req, 10000, count_three, &k, &err), 0);
    assert_int_equal(k.n, 3);
    assert_int_equal(k.last, 3);

    /* The iterator: read two, close mid-stream. */
    ao_client_stream_t *s;
    assert_int_equal(ao_client_stream_open(c, &req, 10000, &s, &err), 0);
    Agentos__V1__Event *e;
    assert_int_equal(ao_client_stream_next(s, 5000, &e, &err), 1);
    assert_int_equal(e->seq, 1);
    assert_int_equal(e->type, AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_WORKFLOW_SUBMITTED);
    ao_client_free(e);
    assert_int_equal(ao_client_stream_next(s, 5000, &e, &err), 1);
    ao_client_free(e);
    ao_client_stream_close(s);

    /* Waiting with nothing new: 0 (no event yet), then a deadline ends it.
     * The stream follows a finished workflow whose final checkpoint, taken
     * after its result was sent, is in the log: no event can follow. A
     * stream of all events could catch another workflow's final checkpoint. */
    Agentos__V1__StreamEventsRequest fin = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    Agentos__V1__EventType saved[] = {AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_CHECKPOINT_SAVED};
    fin.workflow_id = wf_id;
    fin.types = saved;
    fin.n_types = 1;
    assert_int_equal(ao_client_stream_events(c, &fin, 10000, until_final, NULL, &err), 0);
    Agentos__V1__StreamEventsRequest now = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    now.from_now = 1;
    now.workflow_id = wf_id;
    assert_int_equal(ao_client_stream_open(c, &now, 500, &s, &err), 0);
    assert_int_equal(ao_client_stream_next(s, 50, &e, &err), 0);
    int got;
    while ((got = ao_client_stream_next(s, 2000, &e, &err)) == 0) {
    }
    assert_int_equal(got, -1);
    assert_int_equal(err.code, 4); /* DEADLINE_EXCEEDED */
    ao_client_stream_close(s);

    /* A unary deadline. */
    Agentos__V1__GetWorkflowRequest g = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
    g.workflow_id = wf_id;
    Agentos__V1__Workflow *wf;
    assert_int_equal(ao_client_call(c, "GetWorkflow", &g.base, &agentos__v1__workflow__descriptor, 5000,
                                    (ProtobufCMessage **)&wf, &err), 0);
    ao_client_free(wf);
}

int main(void)
{
    if (!getenv("AGENTOSD")) {
        fprintf(stderr, "AGENTOSD is not set\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orchestrate_get_list),
        cmocka_unit_test(test_errors_carry_status_and_message),
        cmocka_unit_test(test_checkpoints_health_publish_cancel_resume),
        cmocka_unit_test(test_streams_stop_early_and_deadlines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
