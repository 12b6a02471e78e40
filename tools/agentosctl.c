/*
 * agentosctl: the command-line tool of agentos, on libagentos-client.
 *
 * See `agentosctl --help` and docs/cli.md. Exit codes: 0 success (or a
 * SUCCESS workflow), 1 an RPC or connection error, 2 a usage error,
 * 3 PARTIAL_SUCCESS, 4 FAILED, 5 CANCELLED, 6 BUDGET_EXCEEDED, 7 the
 * workflow was still running when the command stopped waiting.
 */
#include "agentos/client.h"
#include "pbjson.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_RPC = 1, EXIT_USAGE = 2, EXIT_PARTIAL = 3, EXIT_FAILED = 4, EXIT_CANCELLED = 5,
       EXIT_BUDGET = 6, EXIT_RUNNING = 7 };

#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x
#define ET(x) AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_##x

static const char usage[] =
    "usage: agentosctl [options] COMMAND [args]\n"
    "\n"
    "Commands:\n"
    "  submit FILE [--wait|--follow] [--request-id ID]\n"
    "                          submit a workflow (a WorkflowSpec or OrchestrateRequest in proto3 JSON)\n"
    "  events [--from SEQ|--from-now] [--workflow ID] [--task ID]... [--type TYPE]... [--follow]\n"
    "                          print events (without --follow: until caught up)\n"
    "  status ID [--at SEQ]    a workflow as a tree: each task's state, attempts, tokens, cost, time\n"
    "  list [--status S] [--label K=V]... [--page-size N] [--page-token T]\n"
    "  checkpoint ID [--note TEXT]\n"
    "  checkpoints ID\n"
    "  resume ID [--checkpoint C] [--timeout TASK=MS]... [--total-timeout TASK=MS]...\n"
    "            [--agent TASK=AGENT]... [--attempts TASK=N]... [--budget FILE] [--wait|--follow]\n"
    "                          FILE: a Budget in proto3 JSON, replacing the workflow's\n"
    "  cancel ID [--reason TEXT]\n"
    "  agents                  agent backends: breaker, in flight, errors, latency, spend\n"
    "  publish ID [--task T] (--progress TEXT | --finding K=V | --custom NAME=DATA)\n"
    "\n"
    "Options (before the command):\n"
    "  --server ADDR           agentosd address (env AGENTOS_SERVER; default 127.0.0.1:7700)\n"
    "  --token TOKEN           bearer token (env AGENTOS_TOKEN); --token-file FILE reads it\n"
    "  --ca FILE               trust this CA bundle (enables TLS); --tls uses the system's\n"
    "  --cert FILE --key FILE  client certificate (mTLS)\n"
    "  --server-name NAME      name to verify in the server certificate\n"
    "  --timeout SECONDS       deadline of each call (default 30; --wait: 24 hours; following\n"
    "                          a stream: none)\n"
    "  --json                  machine-readable output (proto3 JSON; one object per line for streams)\n"
    "\n"
    "Exit codes: 0 ok / SUCCESS, 1 RPC or connection error, 2 usage error, 3 PARTIAL_SUCCESS,\n"
    "4 FAILED, 5 CANCELLED, 6 BUDGET_EXCEEDED, 7 still running.\n";

static int json_out;
static ao_client_t *client;

static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("agentosctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see agentosctl --help)\n", stderr);
    va_end(ap);
    exit(EXIT_USAGE);
}

static int rpc_failed(const char *what, const ao_client_error_t *err)
{
    fprintf(stderr, "agentosctl: %s: %s: %s\n", what, ao_client_status_name(err->code), err->message);
    return EXIT_RPC;
}

static void print_json(const void *msg)
{
    char *j = ao_pbjson_encode(msg, json_out > 1 ? AO_PBJSON_PRETTY : 0);
    puts(j);
    free(j);
    fflush(stdout);
}

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v, const char *prefix)
{
    const ProtobufCEnumValue *e = protobuf_c_enum_descriptor_get_value(d, v);
    if (!e) return "?";
    size_t n = strlen(prefix);
    return strncmp(e->name, prefix, n) ? e->name : e->name + n;
}

static const char *wf_status(int s)
{
    return enum_name(&agentos__v1__workflow_status__descriptor, s, "WORKFLOW_STATUS_");
}

static const char *task_status(int s)
{
    return enum_name(&agentos__v1__task_status__descriptor, s, "TASK_STATUS_");
}

static const char *event_type(int s)
{
    return enum_name(&agentos__v1__event_type__descriptor, s, "EVENT_TYPE_");
}

static int exit_for(int status)
{
    switch (status) {
    case WS(SUCCESS):
        return 0;
    case WS(PARTIAL_SUCCESS):
        return EXIT_PARTIAL;
    case WS(FAILED):
        return EXIT_FAILED;
    case WS(CANCELLED):
        return EXIT_CANCELLED;
    case WS(BUDGET_EXCEEDED):
        return EXIT_BUDGET;
    default:
        return EXIT_RUNNING;
    }
}

static void clock_of(int64_t ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&s, &tm);
    size_t k = strftime(out, n, "%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03d", (int)(ms % 1000));
}

static double usd(int64_t micros)
{
    return (double)micros / 1e6;
}

/* ---- results --------------------------------------------------------------------- */

static void print_result(const char *id, int status, const Agentos__V1__WorkflowResult *r)
{
    printf("workflow %s: %s\n", id, wf_status(status));
    if (!r) return;
    if (*r->summary) printf("  %s\n", r->summary);
    printf("  confidence %.2f", r->confidence);
    if (r->score) printf(", score %.2f", r->score);
    if (r->usage)
        printf(", %" PRIu64 " tokens, %" PRIu64 " calls, $%.6f", r->usage->total_tokens, r->usage->api_calls,
               usd(r->usage->cost_micros));
    printf("\n");
    if (*r->synthesis) printf("  synthesis: %s\n", r->synthesis);
    for (size_t i = 0; i < r->n_failed_agents; i++) {
        const Agentos__V1__FailedAgent *f = r->failed_agents[i];
        printf("  failed: %s (%s) after %u attempt%s, %s: %s\n    impact: %s\n", f->task_id, f->agent, f->attempts,
               f->attempts == 1 ? "" : "s", f->required ? "required" : "optional", f->error, f->impact);
    }
    for (size_t i = 0; i < r->n_findings; i++)
        printf("  finding: %s = %s (confidence %.2f, from %s)\n", r->findings[i]->key, r->findings[i]->value,
               r->findings[i]->confidence, r->findings[i]->source_task);
    for (size_t i = 0; i < r->n_recommendations; i++) printf("  recommendation: %s\n", r->recommendations[i]);
}

/* ---- following a workflow ---------------------------------------------------------- */

typedef struct follow {
    const char *workflow_id;
    int tty;
    int progress_shown;
    uint32_t tasks_total, tasks_done;
    uint64_t tokens, max_tokens;
    int64_t cost, max_cost;
    int finished;
    int status;
} follow_t;

static void clear_progress(follow_t *f)
{
    if (f->tty && f->progress_shown) {
        fputs("\r\033[K", stdout);
        f->progress_shown = 0;
    }
}

static void show_progress(follow_t *f)
{
    if (!f->tty || json_out) return;
    printf("\r\033[K[%u/%u tasks] tokens %" PRIu64, f->tasks_done, f->tasks_total, f->tokens);
    if (f->max_tokens) printf("/%" PRIu64, f->max_tokens);
    printf("  cost $%.6f", usd(f->cost));
    if (f->max_cost) printf("/$%.6f", usd(f->max_cost));
    fflush(stdout);
    f->progress_shown = 1;
}

static void account(follow_t *f, const Agentos__V1__Usage *u)
{
    if (!u) return;
    f->tokens += u->total_tokens;
    f->cost += u->cost_micros;
}

static void describe(const Agentos__V1__Event *e, char *buf, size_t n)
{
    buf[0] = '\0';
    switch (e->type) {
    case ET(WORKFLOW_SUBMITTED):
        snprintf(buf, n, "%s: %zu tasks", e->workflow_submitted && *e->workflow_submitted->spec->name
                                               ? e->workflow_submitted->spec->name : "workflow",
                 e->workflow_submitted ? e->workflow_submitted->spec->n_tasks : 0);
        break;
    case ET(STRATEGY_SELECTED):
        snprintf(buf, n, "%s", e->strategy_selected ? e->strategy_selected->reason : "");
        break;
    case ET(TASK_STARTED):
        if (*e->agent_id) snprintf(buf, n, "%s attempt %u on %s", e->task_id, e->attempt, e->agent_id);
        else snprintf(buf, n, "%s (computed by agentosd)", e->task_id);
        break;
    case ET(TASK_SUCCEEDED): {
        const Agentos__V1__AgentResult *r = e->task_succeeded ? e->task_succeeded->result : NULL;
        snprintf(buf, n, "%s score %.2f confidence %.2f%s%.80s", e->task_id, r ? r->score : 0, r ? r->confidence : 0,
                 r && *r->output ? ": " : "", r ? r->output : "");
        break;
    }
    case ET(ATTEMPT_FAILED):
        snprintf(buf, n, "%s attempt %u: %s%s", e->task_id, e->attempt, e->attempt_failed->error,
                 e->attempt_failed->will_retry ? " (will retry)" : "");
        if (e->attempt_failed->will_retry) {
            size_t k = strlen(buf);
            snprintf(buf + k, n - k, " in %u ms", e->attempt_failed->retry_in_ms);
        }
        break;
    case ET(TASK_FAILED):
        snprintf(buf, n, "%s: %s", e->task_id, e->task_failed->error);
        break;
    case ET(TASK_FALLBACK):
        snprintf(buf, n, "%s: %s -> %s", e->task_id, e->task_fallback->from_agent, e->task_fallback->to_agent);
        break;
    case ET(TASK_SKIPPED):
        snprintf(buf, n, "%s: %s", e->task_id, e->task_skipped->reason);
        break;
    case ET(TASK_CANCELLED):
        snprintf(buf, n, "%s: %s", e->task_id, e->task_cancelled->reason);
        break;
    case ET(PLAN_EXPANDED):
        snprintf(buf, n, "%s added %zu tasks", e->task_id, e->plan_expanded->n_tasks);
        break;
    case ET(CONFLICT_RESOLVED):
        snprintf(buf, n, "%s: kept \"%s\" from %s over %zu other%s", e->conflict_resolved->key,
                 e->conflict_resolved->winner->value, e->conflict_resolved->winner->source_task,
                 e->conflict_resolved->n_overridden, e->conflict_resolved->n_overridden == 1 ? "" : "s");
        break;
    case ET(STAGE_COMPLETED):
        snprintf(buf, n, "%s stage %s: %zu passed, %zu dropped", e->task_id, e->stage_completed->name,
                 e->stage_completed->n_passed, e->stage_completed->n_dropped);
        break;
    case ET(EARLY_TERMINATION):
        snprintf(buf, n, "%s", e->early_termination->reason);
        break;
    case ET(BUDGET_WARNING):
    case ET(BUDGET_EXCEEDED):
        snprintf(buf, n, "%s%s%s%s%s %.0f of %.0f (%.0f%%)",
                 *e->budget->task_id ? "task " : "", e->budget->task_id, *e->budget->task_id ? ": " : "",
                 enum_name(&agentos__v1__budget_dimension__descriptor, e->budget->dimension, "BUDGET_DIMENSION_"),
                 e->budget->role ? (e->budget->role == AGENTOS__V1__ROLE__ROLE_ORCHESTRATOR ? " (orchestrator role)"
                                    : e->budget->role == AGENTOS__V1__ROLE__ROLE_EXTRACTION ? " (extraction role)"
                                    : e->budget->role == AGENTOS__V1__ROLE__ROLE_ANALYSIS   ? " (analysis role)"
                                                                                            : " (synthesis role)")
                                 : "",
                 e->budget->used, e->budget->limit, e->budget->fraction * 100);
        break;
    case ET(BREAKER_STATE_CHANGED):
        snprintf(buf, n, "%s: %s -> %s (%s)", e->breaker->agent,
                 enum_name(&agentos__v1__breaker_state__descriptor, e->breaker->from, "BREAKER_STATE_"),
                 enum_name(&agentos__v1__breaker_state__descriptor, e->breaker->to, "BREAKER_STATE_"),
                 e->breaker->reason);
        break;
    case ET(CHECKPOINT_SAVED):
        snprintf(buf, n, "%s (%s): %u completed, %u to go", e->checkpoint_saved->checkpoint_id,
                 e->checkpoint_saved->reason, e->checkpoint_saved->completed_tasks, e->checkpoint_saved->next_steps);
        break;
    case ET(WORKFLOW_COMPLETED):
        snprintf(buf, n, "%s", e->workflow_completed->result->summary);
        break;
    case ET(SYNTHESIS_COMPUTED):
        snprintf(buf, n, "%s score %.2f confidence %.2f from %zu inputs", e->task_id, e->synthesis->score,
                 e->synthesis->confidence, e->synthesis->n_inputs);
        break;
    case ET(TASK_PROGRESS):
        snprintf(buf, n, "%s %s", e->task_id, e->progress->message);
        break;
    case ET(CUSTOM):
        snprintf(buf, n, "%s: %.100s", e->custom->name, e->custom->data);
        break;
    case ET(FINDING_PUBLISHED):
        snprintf(buf, n, "%s = %s", e->finding->key, e->finding->value);
        break;
    default:
        snprintf(buf, n, "%s", e->task_id);
        break;
    }
}

static int on_event(void *ud, const Agentos__V1__Event *e)
{
    follow_t *f = ud;
    switch (e->type) {
    case ET(WORKFLOW_SUBMITTED):
        if (e->workflow_submitted && e->workflow_submitted->spec) {
            f->tasks_total = (uint32_t)e->workflow_submitted->spec->n_tasks;
            const Agentos__V1__Budget *b = e->workflow_submitted->spec->budget;
            if (b) {
                f->max_tokens = b->max_tokens;
                f->max_cost = b->max_cost_micros;
            }
        }
        break;
    case ET(PLAN_EXPANDED):
        f->tasks_total += (uint32_t)e->plan_expanded->n_tasks;
        break;
    case ET(TASK_SUCCEEDED):
        f->tasks_done++;
        account(f, e->task_succeeded->usage);
        break;
    case ET(ATTEMPT_FAILED):
        account(f, e->attempt_failed->usage);
        break;
    case ET(TASK_FAILED):
    case ET(TASK_SKIPPED):
    case ET(TASK_CANCELLED):
        f->tasks_done++;
        break;
    case ET(WORKFLOW_RESUMED):
        f->tasks_done = (uint32_t)(e->resumed && e->resumed->checkpoint ? e->resumed->checkpoint->n_completed_tasks : 0);
        break;
    default:
        break;
    }
    if (json_out) {
        print_json(e);
    } else {
        clear_progress(f);
        char when[32], what[600];
        clock_of(e->time_unix_ms, when, sizeof when);
        describe(e, what, sizeof what);
        printf("#%-6" PRIu64 " %s %-22s %s\n", e->seq, when, event_type(e->type), what);
        show_progress(f);
    }
    if (e->type == ET(WORKFLOW_COMPLETED) && f->workflow_id && !strcmp(e->workflow_id, f->workflow_id)) {
        f->finished = 1;
        f->status = e->workflow_completed->result->status;
        return 1;
    }
    return 0;
}

/* Streams a workflow's events from `from` until it completes. */
static int follow_workflow(const char *id, uint64_t from)
{
    follow_t f = {id, isatty(STDOUT_FILENO), 0, 0, 0, 0, 0, 0, 0, 0, 0};
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    req.workflow_id = (char *)id;
    req.from_seq = from;
    ao_client_error_t err;
    int rc = ao_client_stream_events(client, &req, 0, on_event, &f, &err);
    clear_progress(&f);
    if (rc) return rpc_failed("StreamEvents", &err);
    /* The final state, for the result. */
    Agentos__V1__GetWorkflowRequest g = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
    g.workflow_id = (char *)id;
    Agentos__V1__Workflow *wf;
    if (ao_client_get_workflow(client, &g, &wf, &err)) return rpc_failed("GetWorkflow", &err);
    if (json_out) print_json(wf->result ? (void *)wf->result : (void *)wf);
    else print_result(wf->id, wf->status, wf->result);
    int code = exit_for(wf->status);
    ao_client_free(wf);
    return code;
}

/* ---- commands -------------------------------------------------------------------------- */

/* Prints a submission's outcome. Exit codes say how the workflow ended
 * when the command waited for it; a submission that did not wait is 0. */
static int finish_orchestrate(Agentos__V1__OrchestrateResponse *r, int follow, int waited)
{
    int code;
    if (follow) {
        if (!json_out) printf("workflow %s submitted\n", r->workflow_id);
        code = follow_workflow(r->workflow_id, 0);
    } else if (json_out) {
        print_json(r);
        code = waited ? exit_for(r->status) : 0;
    } else {
        if (r->deduplicated) printf("(request_id matched an earlier submission)\n");
        print_result(r->workflow_id, r->status, r->result);
        code = waited ? exit_for(r->status) : 0;
    }
    ao_client_free(r);
    return code;
}

static int cmd_submit(int argc, char **argv)
{
    int wait = 0, follow = 0;
    const char *request_id = NULL;
    static const struct option o[] = {{"wait", 0, 0, 'w'}, {"follow", 0, 0, 'f'}, {"request-id", 1, 0, 'r'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'w') wait = 1;
        else if (c == 'f') follow = 1;
        else if (c == 'r') request_id = optarg;
        else die_usage("submit: unknown option");
    }
    if (optind + 1 != argc) die_usage("submit: give one workflow file");
    const char *path = argv[optind];
    ao_status_t st;
    ProtobufCMessage *m = NULL;
    Agentos__V1__OrchestrateRequest *req = NULL;
    /* A WorkflowSpec, or a whole OrchestrateRequest. */
    if (ao_pbjson_decode_file(&agentos__v1__workflow_spec__descriptor, path, &m, &st)) {
        ao_status_t st2;
        if (ao_pbjson_decode_file(&agentos__v1__orchestrate_request__descriptor, path, &m, &st2)) {
            fprintf(stderr, "agentosctl: %s\n", st.msg);
            return EXIT_USAGE;
        }
        req = (Agentos__V1__OrchestrateRequest *)m;
    } else {
        req = malloc(sizeof *req);
        agentos__v1__orchestrate_request__init(req);
        req->workflow = (Agentos__V1__WorkflowSpec *)m;
    }
    if (wait) req->wait = 1;
    if (follow) req->wait = 0;
    if (request_id) {
        if (req->request_id != protobuf_c_empty_string) free(req->request_id);
        req->request_id = strdup(request_id);
    }
    Agentos__V1__OrchestrateResponse *r;
    ao_client_error_t err;
    int rc = ao_client_call(client, "Orchestrate", &req->base, &agentos__v1__orchestrate_response__descriptor,
                            req->wait ? 24u * 3600 * 1000 : 0, (ProtobufCMessage **)&r, &err);
    int wait_flag = req->wait;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (rc) return rpc_failed("Orchestrate", &err);
    wait = wait_flag;
    return finish_orchestrate(r, follow, wait);
}

typedef struct events_ctx {
    follow_t f;
    int follow;
    uint64_t stop_at;
} events_ctx_t;

static int on_event_until(void *ud, const Agentos__V1__Event *e)
{
    events_ctx_t *c = ud;
    on_event(&c->f, e);
    return c->stop_at && e->seq >= c->stop_at;
}

static int cmd_events(int argc, char **argv)
{
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    char *tasks[256];
    int types[64];
    size_t nt = 0, ny = 0;
    int follow = 0;
    static const struct option o[] = {{"from", 1, 0, 'f'}, {"from-now", 0, 0, 'n'}, {"workflow", 1, 0, 'w'},
                                      {"task", 1, 0, 't'}, {"type", 1, 0, 'y'},     {"follow", 0, 0, 'F'},
                                      {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        switch (c) {
        case 'f': req.from_seq = strtoull(optarg, NULL, 10); break;
        case 'n': req.from_now = 1; break;
        case 'w': req.workflow_id = optarg; break;
        case 't':
            if (nt < 256) tasks[nt++] = optarg;
            break;
        case 'y': {
            char name[128];
            snprintf(name, sizeof name, "%s%s", strncmp(optarg, "EVENT_TYPE_", 11) ? "EVENT_TYPE_" : "", optarg);
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value_by_name(&agentos__v1__event_type__descriptor, name);
            if (!v) die_usage("events: unknown event type %s", optarg);
            if (ny < 64) types[ny++] = v->value;
            break;
        }
        case 'F': follow = 1; break;
        default: die_usage("events: unknown option");
        }
    }
    req.task_ids = tasks;
    req.n_task_ids = nt;
    req.types = (Agentos__V1__EventType *)types;
    req.n_types = ny;
    events_ctx_t ctx = {{NULL, isatty(STDOUT_FILENO) && follow, 0, 0, 0, 0, 0, 0, 0, 0, 0}, follow, 0};
    ao_client_error_t err;
    /* Without --follow: until caught up. For one workflow, its last event
     * now; otherwise until no event arrives for half a second. */
    if (!follow && *req.workflow_id) {
        Agentos__V1__GetWorkflowRequest g = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
        g.workflow_id = req.workflow_id;
        Agentos__V1__Workflow *wf;
        if (ao_client_get_workflow(client, &g, &wf, &err)) return rpc_failed("GetWorkflow", &err);
        ctx.stop_at = wf->last_seq;
        req.to_seq = wf->last_seq; /* the server ends the stream there */
        ao_client_free(wf);
        if (req.from_seq > ctx.stop_at) return 0;
    }
    ao_client_stream_t *s;
    if (ao_client_stream_open(client, &req, 0, &s, &err)) return rpc_failed("StreamEvents", &err);
    int rc = 0;
    for (;;) {
        Agentos__V1__Event *e;
        int got = ao_client_stream_next(s, follow || ctx.stop_at ? 0 : 500, &e, &err);
        if (got < 0) {
            if (err.code) rc = rpc_failed("StreamEvents", &err);
            break;
        }
        if (got == 0) break; /* caught up: nothing for 500 ms */
        int stop = on_event_until(&ctx, e);
        ao_client_free(e);
        if (stop) break;
    }
    ao_client_stream_close(s);
    clear_progress(&ctx.f);
    return rc;
}

/* ---- status: the DAG as a tree --------------------------------------------------------- */

static void print_task(const Agentos__V1__Workflow *wf, const Agentos__V1__TaskState *t, int depth, int64_t now)
{
    int64_t end = t->finished_unix_ms ? t->finished_unix_ms : (t->started_unix_ms ? now : 0);
    double secs = t->started_unix_ms ? (double)(end - t->started_unix_ms) / 1000.0 : 0;
    uint64_t tokens = t->usage ? t->usage->total_tokens : 0;
    int64_t cost = t->usage ? t->usage->cost_micros : 0;
    printf("%*s%-*s %-11s attempts %-2u tokens %-7" PRIu64 " $%-9.6f %7.2fs", depth * 2, "", 28 - depth * 2,
           t->spec->id, task_status(t->status), t->attempts, tokens, usd(cost), secs);
    if (*t->agent) printf("  agent %s", t->agent);
    if (t->spec->n_depends_on) {
        printf("  after");
        for (size_t k = 0; k < t->spec->n_depends_on; k++) printf(" %s", t->spec->depends_on[k]);
    }
    if (*t->error && t->status != TS(SUCCEEDED)) printf("\n%*s  ! %s", depth * 2, "", t->error);
    printf("\n");
    for (size_t i = 0; i < wf->n_tasks; i++)
        if (!strcmp(wf->tasks[i]->parent_task_id, t->spec->id)) print_task(wf, wf->tasks[i], depth + 1, now);
}

static int cmd_status(int argc, char **argv)
{
    Agentos__V1__GetWorkflowRequest req = AGENTOS__V1__GET_WORKFLOW_REQUEST__INIT;
    static const struct option o[] = {{"at", 1, 0, 'a'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'a') req.at_seq = strtoull(optarg, NULL, 10);
        else die_usage("status: unknown option");
    }
    if (optind + 1 != argc) die_usage("status: give one workflow id");
    req.workflow_id = argv[optind];
    Agentos__V1__Workflow *wf;
    ao_client_error_t err;
    if (ao_client_get_workflow(client, &req, &wf, &err)) return rpc_failed("GetWorkflow", &err);
    if (json_out) {
        print_json(wf);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        uint32_t done = 0;
        for (size_t i = 0; i < wf->n_tasks; i++)
            if (wf->tasks[i]->status >= TS(SUCCEEDED)) done++;
        printf("workflow %s%s%s: %s  (%u/%zu tasks done", wf->id, wf->spec && *wf->spec->name ? " " : "",
               wf->spec ? wf->spec->name : "", wf_status(wf->status), done, wf->n_tasks);
        if (wf->usage)
            printf(", %" PRIu64 " tokens, %" PRIu64 " calls, $%.6f", wf->usage->total_tokens, wf->usage->api_calls,
                   usd(wf->usage->cost_micros));
        printf(")%s\n", req.at_seq ? "  [as of the requested sequence number]" : "");
        if (*wf->strategy_reason) printf("strategy: %s\n", wf->strategy_reason);
        if (*wf->stop_reason) printf("stopped: %s\n", wf->stop_reason);
        for (size_t i = 0; i < wf->n_tasks; i++)
            if (!*wf->tasks[i]->parent_task_id) print_task(wf, wf->tasks[i], 0, now);
        if (wf->result && wf->result->n_recommendations) {
            for (size_t i = 0; i < wf->result->n_recommendations; i++)
                printf("recommendation: %s\n", wf->result->recommendations[i]);
        }
    }
    ao_client_free(wf);
    return 0;
}

static int cmd_list(int argc, char **argv)
{
    Agentos__V1__ListWorkflowsRequest req = AGENTOS__V1__LIST_WORKFLOWS_REQUEST__INIT;
    Agentos__V1__ListWorkflowsRequest__LabelsEntry entries[64], *lp[64];
    static const struct option o[] = {{"status", 1, 0, 's'}, {"label", 1, 0, 'l'}, {"page-size", 1, 0, 'p'},
                                      {"page-token", 1, 0, 't'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 's') {
            char name[128];
            snprintf(name, sizeof name, "WORKFLOW_STATUS_%s", optarg);
            const ProtobufCEnumValue *v =
                protobuf_c_enum_descriptor_get_value_by_name(&agentos__v1__workflow_status__descriptor, name);
            if (!v) die_usage("list: unknown status %s", optarg);
            req.status = v->value;
        } else if (c == 'l') {
            char *eq = strchr(optarg, '=');
            if (!eq || req.n_labels == 64) die_usage("list: --label needs KEY=VALUE");
            *eq = '\0';
            agentos__v1__list_workflows_request__labels_entry__init(&entries[req.n_labels]);
            entries[req.n_labels].key = optarg;
            entries[req.n_labels].value = eq + 1;
            lp[req.n_labels] = &entries[req.n_labels];
            req.n_labels++;
        } else if (c == 'p') {
            req.page_size = (uint32_t)atoi(optarg);
        } else if (c == 't') {
            req.page_token = optarg;
        } else {
            die_usage("list: unknown option");
        }
    }
    req.labels = lp;
    Agentos__V1__ListWorkflowsResponse *r;
    ao_client_error_t err;
    if (ao_client_list_workflows(client, &req, &r, &err)) return rpc_failed("ListWorkflows", &err);
    if (json_out) {
        print_json(r);
    } else {
        printf("%-30s %-16s %-9s %-10s %-12s %s\n", "ID", "STATUS", "TASKS", "TOKENS", "COST", "NAME");
        for (size_t i = 0; i < r->n_workflows; i++) {
            const Agentos__V1__WorkflowSummary *w = r->workflows[i];
            char tasks[32];
            snprintf(tasks, sizeof tasks, "%u/%u", w->tasks_done, w->tasks_total);
            printf("%-30s %-16s %-9s %-10" PRIu64 " $%-11.6f %s\n", w->id, wf_status(w->status), tasks,
                   w->usage ? w->usage->total_tokens : 0, usd(w->usage ? w->usage->cost_micros : 0), w->name);
        }
        if (r->tenant_usage)
            printf("tenant total: %" PRIu64 " tokens, %" PRIu64 " calls, $%.6f\n", r->tenant_usage->total_tokens,
                   r->tenant_usage->api_calls, usd(r->tenant_usage->cost_micros));
        if (*r->next_page_token) printf("(more: the page token is %s)\n", r->next_page_token);
    }
    ao_client_free(r);
    return 0;
}

static int cmd_checkpoint(int argc, char **argv)
{
    Agentos__V1__CheckpointRequest req = AGENTOS__V1__CHECKPOINT_REQUEST__INIT;
    static const struct option o[] = {{"note", 1, 0, 'n'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'n') req.note = optarg;
        else die_usage("checkpoint: unknown option");
    }
    if (optind + 1 != argc) die_usage("checkpoint: give one workflow id");
    req.workflow_id = argv[optind];
    Agentos__V1__Checkpoint *k;
    ao_client_error_t err;
    if (ao_client_checkpoint(client, &req, &k, &err)) return rpc_failed("Checkpoint", &err);
    if (json_out) print_json(k);
    else
        printf("%s of %s at event %" PRIu64 ": %zu tasks completed, %zu to go, %zu findings\n", k->id,
               k->workflow_id, k->seq, k->n_completed_tasks, k->n_next_steps, k->n_key_findings);
    ao_client_free(k);
    return 0;
}

static int cmd_checkpoints(int argc, char **argv)
{
    if (argc != 2) die_usage("checkpoints: give one workflow id");
    Agentos__V1__ListCheckpointsRequest req = AGENTOS__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    req.workflow_id = argv[1];
    Agentos__V1__ListCheckpointsResponse *r;
    ao_client_error_t err;
    if (ao_client_list_checkpoints(client, &req, &r, &err)) return rpc_failed("ListCheckpoints", &err);
    if (json_out) {
        print_json(r);
    } else {
        for (size_t i = 0; i < r->n_checkpoints; i++) {
            const Agentos__V1__Checkpoint *k = r->checkpoints[i];
            char when[32];
            clock_of(k->created_unix_ms, when, sizeof when);
            printf("%-14s %s %-7s %3zu done %3zu to go  %s\n", k->id, when, k->reason, k->n_completed_tasks,
                   k->n_next_steps, k->note);
        }
    }
    ao_client_free(r);
    return 0;
}

static Agentos__V1__TaskOverride *override_for(Agentos__V1__ResumeWorkflowRequest *req, const char *task)
{
    for (size_t i = 0; i < req->n_overrides; i++)
        if (!strcmp(req->overrides[i]->task_id, task)) return req->overrides[i];
    req->overrides = realloc(req->overrides, (req->n_overrides + 1) * sizeof *req->overrides);
    Agentos__V1__TaskOverride *o = calloc(1, sizeof *o);
    if (!req->overrides || !o) abort();
    agentos__v1__task_override__init(o);
    o->task_id = strdup(task);
    req->overrides[req->n_overrides++] = o;
    return o;
}

static int cmd_resume(int argc, char **argv)
{
    Agentos__V1__ResumeWorkflowRequest req = AGENTOS__V1__RESUME_WORKFLOW_REQUEST__INIT;
    int follow = 0;
    static const struct option o[] = {{"checkpoint", 1, 0, 'c'}, {"timeout", 1, 0, 't'}, {"agent", 1, 0, 'a'},
                                      {"attempts", 1, 0, 'n'},   {"wait", 0, 0, 'w'},    {"follow", 0, 0, 'f'},
                                      {"total-timeout", 1, 0, 'T'}, {"budget", 1, 0, 'b'}, {0, 0, 0, 0}};
    int c;
    ProtobufCMessage *budget = NULL;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        char *eq = c == 'b' ? NULL : optarg ? strchr(optarg, '=') : NULL;
        if ((c == 't' || c == 'T' || c == 'a' || c == 'n') && !eq) die_usage("resume: use TASK=VALUE");
        if (eq) *eq = '\0';
        ao_status_t st;
        switch (c) {
        case 'c': req.checkpoint_id = optarg; break;
        case 't': override_for(&req, optarg)->attempt_timeout_ms = (uint32_t)atoi(eq + 1); break;
        case 'T': override_for(&req, optarg)->total_timeout_ms = (uint32_t)atoi(eq + 1); break;
        case 'b':
            if (budget) protobuf_c_message_free_unpacked(budget, NULL);
            if (ao_pbjson_decode_file(&agentos__v1__budget__descriptor, optarg, &budget, &st))
                die_usage("resume: --budget: %s", st.msg);
            req.budget = (Agentos__V1__Budget *)budget;
            break;
        case 'a': override_for(&req, optarg)->agent = strdup(eq + 1); break;
        case 'n': override_for(&req, optarg)->max_attempts = (uint32_t)atoi(eq + 1); break;
        case 'w': req.wait = 1; break;
        case 'f': follow = 1; break;
        default: die_usage("resume: unknown option");
        }
    }
    if (optind + 1 != argc) die_usage("resume: give one workflow id");
    req.workflow_id = argv[optind];
    if (follow) req.wait = 0;
    Agentos__V1__OrchestrateResponse *r;
    ao_client_error_t err;
    int rc = ao_client_call(client, "ResumeWorkflow", &req.base, &agentos__v1__orchestrate_response__descriptor,
                            req.wait ? 24u * 3600 * 1000 : 0, (ProtobufCMessage **)&r, &err);
    for (size_t i = 0; i < req.n_overrides; i++) {
        free(req.overrides[i]->task_id);
        if (req.overrides[i]->agent != protobuf_c_empty_string) free(req.overrides[i]->agent);
        free(req.overrides[i]);
    }
    free(req.overrides);
    if (budget) protobuf_c_message_free_unpacked(budget, NULL);
    if (rc) return rpc_failed("ResumeWorkflow", &err);
    if (follow) {
        uint64_t from = r->seq;
        if (!json_out) printf("workflow %s resumed\n", r->workflow_id);
        char *id = strdup(r->workflow_id);
        ao_client_free(r);
        int code = follow_workflow(id, from);
        free(id);
        return code;
    }
    return finish_orchestrate(r, 0, req.wait);
}

static int cmd_cancel(int argc, char **argv)
{
    Agentos__V1__CancelWorkflowRequest req = AGENTOS__V1__CANCEL_WORKFLOW_REQUEST__INIT;
    static const struct option o[] = {{"reason", 1, 0, 'r'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 'r') req.reason = optarg;
        else die_usage("cancel: unknown option");
    }
    if (optind + 1 != argc) die_usage("cancel: give one workflow id");
    req.workflow_id = argv[optind];
    Agentos__V1__Workflow *wf;
    ao_client_error_t err;
    if (ao_client_cancel_workflow(client, &req, &wf, &err)) return rpc_failed("CancelWorkflow", &err);
    if (json_out) print_json(wf);
    else printf("workflow %s: %s%s%s\n", wf->id, wf_status(wf->status), *wf->stop_reason ? " - " : "", wf->stop_reason);
    ao_client_free(wf);
    return 0;
}

static int cmd_agents(int argc, char **argv)
{
    Agentos__V1__GetAgentHealthRequest req = AGENTOS__V1__GET_AGENT_HEALTH_REQUEST__INIT;
    if (argc > 2) die_usage("agents: at most one agent name");
    if (argc == 2) req.agent = argv[1];
    Agentos__V1__GetAgentHealthResponse *r;
    ao_client_error_t err;
    if (ao_client_get_agent_health(client, &req, &r, &err)) return rpc_failed("GetAgentHealth", &err);
    if (json_out) {
        print_json(r);
    } else {
        printf("%-18s %-8s %-10s %-6s %-6s %-8s %-6s %-9s %-9s %s\n", "AGENT", "KIND", "BREAKER", "INFL", "QUEUE",
               "CALLS", "ERR%", "P50 ms", "P99 ms", "SPEND");
        for (size_t i = 0; i < r->n_agents; i++) {
            const Agentos__V1__AgentHealth *a = r->agents[i];
            printf("%-18s %-8s %-10s %-6u %-6u %-8" PRIu64 " %-6.1f %-9.1f %-9.1f $%.6f\n", a->agent,
                   enum_name(&agentos__v1__backend_kind__descriptor, a->kind, "BACKEND_KIND_"),
                   enum_name(&agentos__v1__breaker_state__descriptor, a->breaker, "BREAKER_STATE_"), a->in_flight,
                   a->queued, a->calls_total, a->error_rate * 100, a->latency_p50_ms, a->latency_p99_ms,
                   usd(a->cost_micros));
        }
    }
    ao_client_free(r);
    return 0;
}

static int cmd_publish(int argc, char **argv)
{
    Agentos__V1__PublishEventRequest req = AGENTOS__V1__PUBLISH_EVENT_REQUEST__INIT;
    Agentos__V1__Progress progress = AGENTOS__V1__PROGRESS__INIT;
    Agentos__V1__Finding finding = AGENTOS__V1__FINDING__INIT;
    Agentos__V1__CustomPayload custom = AGENTOS__V1__CUSTOM_PAYLOAD__INIT;
    static const struct option o[] = {{"task", 1, 0, 't'}, {"progress", 1, 0, 'p'}, {"finding", 1, 0, 'f'},
                                      {"custom", 1, 0, 'c'}, {"confidence", 1, 0, 'C'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        char *eq = optarg ? strchr(optarg, '=') : NULL;
        switch (c) {
        case 't': req.task_id = optarg; break;
        case 'p':
            progress.message = optarg;
            req.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_PROGRESS;
            req.progress = &progress;
            break;
        case 'f':
        case 'c':
            if (!eq) die_usage("publish: use KEY=VALUE");
            *eq = '\0';
            if (c == 'f') {
                finding.key = optarg;
                finding.value = eq + 1;
                if (!finding.confidence) finding.confidence = 1.0;
                req.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_FINDING;
                req.finding = &finding;
            } else {
                custom.name = optarg;
                custom.data = eq + 1;
                req.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_CUSTOM;
                req.custom = &custom;
            }
            break;
        case 'C': finding.confidence = atof(optarg); break;
        default: die_usage("publish: unknown option");
        }
    }
    if (optind + 1 != argc || !req.payload_case) die_usage("publish: give a workflow id and one payload");
    req.workflow_id = argv[optind];
    Agentos__V1__PublishEventResponse *r;
    ao_client_error_t err;
    if (ao_client_publish_event(client, &req, &r, &err)) return rpc_failed("PublishEvent", &err);
    if (json_out) print_json(r);
    else printf("event %" PRIu64 " published\n", r->seq);
    ao_client_free(r);
    return 0;
}

static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) die_usage("--token-file %s: %s", path, strerror(errno));
    char buf[4096];
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return strdup(buf);
}

int main(int argc, char **argv)
{
    ao_client_options_t opt = {0};
    opt.target = getenv("AGENTOS_SERVER") ? getenv("AGENTOS_SERVER") : "127.0.0.1:7700";
    opt.token = getenv("AGENTOS_TOKEN");
    char *token_file = NULL;
    static const struct option o[] = {{"server", 1, 0, 's'}, {"token", 1, 0, 't'}, {"token-file", 1, 0, 'T'},
                                      {"ca", 1, 0, 'a'},     {"cert", 1, 0, 'c'},  {"key", 1, 0, 'k'},
                                      {"server-name", 1, 0, 'n'}, {"tls", 0, 0, 'L'}, {"timeout", 1, 0, 'o'},
                                      {"json", 0, 0, 'j'},   {"help", 0, 0, 'h'},  {0, 0, 0, 0}};
    int c;
    /* Options before the command only: stop at the first non-option. */
    while ((c = getopt_long(argc, argv, "+", o, NULL)) != -1) {
        switch (c) {
        case 's': opt.target = optarg; break;
        case 't': opt.token = optarg; break;
        case 'T': token_file = read_token_file(optarg); opt.token = token_file; break;
        case 'a': opt.ca_file = optarg; opt.tls = 1; break;
        case 'c': opt.cert_file = optarg; opt.tls = 1; break;
        case 'k': opt.key_file = optarg; break;
        case 'n': opt.server_name = optarg; break;
        case 'L': opt.tls = 1; break;
        case 'o': opt.timeout_ms = (unsigned)(atof(optarg) * 1000); break;
        case 'j': json_out++; break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: 0 re-initialises getopt for the new argv */
    ao_client_error_t err;
    if (ao_client_connect(&opt, &client, &err)) {
        fprintf(stderr, "agentosctl: %s\n", err.message);
        return EXIT_USAGE;
    }
    int rc;
    if (!strcmp(cmd, "submit")) rc = cmd_submit(sub_argc, sub_argv);
    else if (!strcmp(cmd, "events")) rc = cmd_events(sub_argc, sub_argv);
    else if (!strcmp(cmd, "status")) rc = cmd_status(sub_argc, sub_argv);
    else if (!strcmp(cmd, "list")) rc = cmd_list(sub_argc, sub_argv);
    else if (!strcmp(cmd, "checkpoint")) rc = cmd_checkpoint(sub_argc, sub_argv);
    else if (!strcmp(cmd, "checkpoints")) rc = cmd_checkpoints(sub_argc, sub_argv);
    else if (!strcmp(cmd, "resume")) rc = cmd_resume(sub_argc, sub_argv);
    else if (!strcmp(cmd, "cancel")) rc = cmd_cancel(sub_argc, sub_argv);
    else if (!strcmp(cmd, "agents")) rc = cmd_agents(sub_argc, sub_argv);
    else if (!strcmp(cmd, "publish")) rc = cmd_publish(sub_argc, sub_argv);
    else {
        fprintf(stderr, "agentosctl: unknown command %s (see agentosctl --help)\n", cmd);
        rc = EXIT_USAGE;
    }
    ao_client_close(client);
    free(token_file);
    return rc;
}
