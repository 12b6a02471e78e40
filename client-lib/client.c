/*
 * libagentos-client on the gRPC core C API.
 *
 * Each unary call runs on its own pluck completion queue: one batch, one
 * pluck, so calls from several threads never share queue state. A stream
 * owns a queue too, with at most one RECV_MESSAGE in flight.
 */
#include "agentos/client.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ao_client {
    grpc_channel *channel;
    char *token;
    unsigned timeout_ms;
};

struct ao_client_stream {
    ao_client_t *client;
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata md[1];
    size_t n_md;
    grpc_byte_buffer *send;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    grpc_byte_buffer *recv;
    int recv_pending;  /* a RECV_MESSAGE batch is in flight */
    int status_pending;
    int ended;
    int tag_status;
    int tag_recv;
};

static void set_err(ao_client_error_t *err, int code, const char *fmt, ...)
{
    if (!err) return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) abort();
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

const char *ao_client_status_name(int c)
{
    static const char *names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                  "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return c >= 0 && (size_t)c < sizeof names / sizeof names[0] ? names[c] : "UNKNOWN";
}

static char *read_file(const char *path, ao_client_error_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, GRPC_STATUS_INVALID_ARGUMENT, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) abort();
    buf[len] = '\0';
    return buf;
}

int ao_client_connect(const ao_client_options_t *opt, ao_client_t **out, ao_client_error_t *err)
{
    *out = NULL;
    if (!opt || !opt->target || !*opt->target) {
        set_err(err, GRPC_STATUS_INVALID_ARGUMENT, "target: required (host:port)");
        return GRPC_STATUS_INVALID_ARGUMENT;
    }
    grpc_init();
    grpc_channel_credentials *creds;
    if (opt->tls || opt->ca_file || opt->cert_file) {
        char *ca = NULL, *cert = NULL, *key = NULL;
        if (opt->ca_file && !(ca = read_file(opt->ca_file, err))) goto fail;
        if (opt->cert_file) {
            if (!opt->key_file) {
                set_err(err, GRPC_STATUS_INVALID_ARGUMENT, "key_file: required with cert_file");
                free(ca);
                goto fail;
            }
            if (!(cert = read_file(opt->cert_file, err)) || !(key = read_file(opt->key_file, err))) {
                free(ca);
                free(cert);
                goto fail;
            }
        }
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_credentials_create_ex(ca, cert ? &pair : NULL, NULL, NULL);
        free(ca);
        free(cert);
        free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[3];
    size_t n = 0;
    if (opt->server_name) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n++].value.string = (char *)opt->server_name;
    }
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = 64 << 20;
    grpc_channel_args cargs = {n, args};
    ao_client_t *c = xcalloc(1, sizeof *c);
    c->channel = grpc_channel_create(opt->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    c->token = opt->token && *opt->token ? xstrdup(opt->token) : NULL;
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 30000;
    *out = c;
    return 0;
fail:
    grpc_shutdown();
    return err ? err->code : GRPC_STATUS_INVALID_ARGUMENT;
}

void ao_client_close(ao_client_t *c)
{
    if (!c) return;
    grpc_channel_destroy(c->channel);
    if (c->token) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    free(c);
    grpc_shutdown();
}

void ao_client_free(void *m)
{
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

static gpr_timespec deadline_of(unsigned ms)
{
    if (!ms) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static size_t auth_md(ao_client_t *c, grpc_metadata *md)
{
    if (!c->token) return 0;
    size_t n = strlen(c->token) + 8;
    char *v = malloc(n);
    if (!v) abort();
    snprintf(v, n, "Bearer %s", c->token);
    md->key = grpc_slice_from_static_string("authorization");
    md->value = grpc_slice_from_copied_string(v);
    memset(v, 0, n);
    free(v);
    return 1;
}

static grpc_byte_buffer *pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

static void copy_details(grpc_slice details, grpc_status_code code, ao_client_error_t *err)
{
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= sizeof err->message) n = sizeof err->message - 1;
    if (err) {
        err->code = (int)code;
        memcpy(err->message, GRPC_SLICE_START_PTR(details), n);
        err->message[n] = '\0';
        if (!n && code) snprintf(err->message, sizeof err->message, "%s", ao_client_status_name(code));
    }
}

int ao_client_call(ao_client_t *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, unsigned timeout_ms,
                   ProtobufCMessage **resp, ao_client_error_t *err)
{
    *resp = NULL;
    char path[128];
    snprintf(path, sizeof path, "/agentos.v1.Orchestrator/%s", method);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice ps = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, ps, NULL,
                                               deadline_of(timeout_ms ? timeout_ms : c->timeout_ms), NULL);
    grpc_slice_unref(ps);
    grpc_metadata md[1];
    size_t n_md = auth_md(c, md);
    grpc_byte_buffer *send = pack(req), *recv = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int tag;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    int rc;
    if (e != GRPC_CALL_OK) {
        set_err(err, GRPC_STATUS_INTERNAL, "starting the call failed (%d)", e);
        rc = GRPC_STATUS_INTERNAL;
    } else {
        grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        rc = (int)status;
        copy_details(details, status, err);
        if (status == GRPC_STATUS_OK) {
            if (!recv || !(*resp = unpack(resp_desc, recv))) {
                set_err(err, GRPC_STATUS_INTERNAL, "the reply is not a valid %s", resp_desc->name);
                rc = GRPC_STATUS_INTERNAL;
            }
        }
    }
    if (recv) grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    for (size_t i = 0; i < n_md; i++) grpc_slice_unref(md[i].value);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_slice_unref(details);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    return rc;
}

#define UNARY(fn, method, req_t, resp_t, resp_desc)                                                     \
    int fn(ao_client_t *c, const req_t *req, resp_t **resp, ao_client_error_t *err)                     \
    {                                                                                                   \
        return ao_client_call(c, method, &req->base, &resp_desc, 0, (ProtobufCMessage **)resp, err);   \
    }

UNARY(ao_client_orchestrate, "Orchestrate", Agentos__V1__OrchestrateRequest, Agentos__V1__OrchestrateResponse,
      agentos__v1__orchestrate_response__descriptor)
UNARY(ao_client_get_workflow, "GetWorkflow", Agentos__V1__GetWorkflowRequest, Agentos__V1__Workflow,
      agentos__v1__workflow__descriptor)
UNARY(ao_client_list_workflows, "ListWorkflows", Agentos__V1__ListWorkflowsRequest,
      Agentos__V1__ListWorkflowsResponse, agentos__v1__list_workflows_response__descriptor)
UNARY(ao_client_cancel_workflow, "CancelWorkflow", Agentos__V1__CancelWorkflowRequest, Agentos__V1__Workflow,
      agentos__v1__workflow__descriptor)
UNARY(ao_client_checkpoint, "Checkpoint", Agentos__V1__CheckpointRequest, Agentos__V1__Checkpoint,
      agentos__v1__checkpoint__descriptor)
UNARY(ao_client_list_checkpoints, "ListCheckpoints", Agentos__V1__ListCheckpointsRequest,
      Agentos__V1__ListCheckpointsResponse, agentos__v1__list_checkpoints_response__descriptor)
UNARY(ao_client_get_checkpoint, "GetCheckpoint", Agentos__V1__GetCheckpointRequest, Agentos__V1__Checkpoint,
      agentos__v1__checkpoint__descriptor)
UNARY(ao_client_resume_workflow, "ResumeWorkflow", Agentos__V1__ResumeWorkflowRequest,
      Agentos__V1__OrchestrateResponse, agentos__v1__orchestrate_response__descriptor)
UNARY(ao_client_get_agent_health, "GetAgentHealth", Agentos__V1__GetAgentHealthRequest,
      Agentos__V1__GetAgentHealthResponse, agentos__v1__get_agent_health_response__descriptor)
UNARY(ao_client_publish_event, "PublishEvent", Agentos__V1__PublishEventRequest,
      Agentos__V1__PublishEventResponse, agentos__v1__publish_event_response__descriptor)

/* ---- streams ------------------------------------------------------------------------ */

/* The next RECV_MESSAGE; the first also receives the initial metadata
 * (which a server may send only with its first message). */
static void start_recv(ao_client_stream_t *s, int first)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (first) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &s->recv;
    s->recv = NULL;
    s->recv_pending = 1;
    if (grpc_call_start_batch(s->call, ops, n, &s->tag_recv, NULL) != GRPC_CALL_OK) s->recv_pending = 0;
}

int ao_client_stream_open(ao_client_t *c, const Agentos__V1__StreamEventsRequest *req, unsigned timeout_ms,
                          ao_client_stream_t **out, ao_client_error_t *err)
{
    ao_client_stream_t *s = xcalloc(1, sizeof *s);
    s->client = c;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice ps = grpc_slice_from_static_string("/agentos.v1.Orchestrator/StreamEvents");
    s->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, ps, NULL,
                                       deadline_of(timeout_ms), NULL);
    s->n_md = auth_md(c, s->md);
    s->send = pack(&req->base);
    grpc_metadata_array_init(&s->initial);
    grpc_metadata_array_init(&s->trailing);
    s->details = grpc_empty_slice();
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = s->n_md;
    ops[0].data.send_initial_metadata.metadata = s->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    int tag;
    if (grpc_call_start_batch(s->call, ops, 3, &tag, NULL) != GRPC_CALL_OK) {
        set_err(err, GRPC_STATUS_INTERNAL, "starting the stream failed");
        ao_client_stream_close(s);
        return GRPC_STATUS_INTERNAL;
    }
    grpc_completion_queue_pluck(s->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &s->trailing;
    st.data.recv_status_on_client.status = &s->status;
    st.data.recv_status_on_client.status_details = &s->details;
    s->status_pending = grpc_call_start_batch(s->call, &st, 1, &s->tag_status, NULL) == GRPC_CALL_OK;
    start_recv(s, 1);
    *out = s;
    return 0;
}

/* Waits for the final status (the stream has ended). */
static int finish(ao_client_stream_t *s, ao_client_error_t *err)
{
    if (s->status_pending) {
        grpc_completion_queue_pluck(s->cq, &s->tag_status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        s->status_pending = 0;
    }
    s->ended = 1;
    copy_details(s->details, s->status, err);
    return -1;
}

int ao_client_stream_next(ao_client_stream_t *s, unsigned wait_ms, Agentos__V1__Event **event,
                          ao_client_error_t *err)
{
    *event = NULL;
    if (s->ended) return finish(s, err);
    if (!s->recv_pending) return finish(s, err);
    grpc_event ev = grpc_completion_queue_pluck(s->cq, &s->tag_recv, deadline_of(wait_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) return 0;
    s->recv_pending = 0;
    if (!ev.success || !s->recv) return finish(s, err);
    Agentos__V1__Event *e = (Agentos__V1__Event *)unpack(&agentos__v1__event__descriptor, s->recv);
    grpc_byte_buffer_destroy(s->recv);
    s->recv = NULL;
    if (!e) {
        set_err(err, GRPC_STATUS_INTERNAL, "an event does not decode");
        grpc_call_cancel(s->call, NULL);
        finish(s, NULL);
        return -1;
    }
    *event = e;
    start_recv(s, 0);
    return 1;
}

void ao_client_stream_close(ao_client_stream_t *s)
{
    if (!s) return;
    grpc_call_cancel(s->call, NULL);
    if (s->recv_pending) {
        grpc_completion_queue_pluck(s->cq, &s->tag_recv, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (s->recv) grpc_byte_buffer_destroy(s->recv);
    }
    if (s->status_pending)
        grpc_completion_queue_pluck(s->cq, &s->tag_status, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_call_unref(s->call);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(s->cq);
    grpc_byte_buffer_destroy(s->send);
    for (size_t i = 0; i < s->n_md; i++) grpc_slice_unref(s->md[i].value);
    grpc_metadata_array_destroy(&s->initial);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    free(s);
}

int ao_client_stream_events(ao_client_t *c, const Agentos__V1__StreamEventsRequest *req, unsigned timeout_ms,
                            ao_client_event_fn fn, void *ud, ao_client_error_t *err)
{
    ao_client_stream_t *s;
    int rc = ao_client_stream_open(c, req, timeout_ms, &s, err);
    if (rc) return rc;
    for (;;) {
        Agentos__V1__Event *e;
        int got = ao_client_stream_next(s, 0, &e, err);
        if (got < 0) {
            rc = err ? err->code : 0;
            break;
        }
        if (got == 0) continue;
        int stop = fn(ud, e);
        ao_client_free(e);
        if (stop) {
            rc = 0;
            if (err) {
                err->code = 0;
                err->message[0] = '\0';
            }
            break;
        }
    }
    ao_client_stream_close(s);
    return rc;
}
