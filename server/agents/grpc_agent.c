/*
 * gRPC agent backends: a remote agentos.v1.Agent/Execute over TLS channel
 * credentials, with the attempt's deadline, `idempotency-key` and
 * `authorization` metadata.
 *
 * Threads: one client completion-queue thread for every gRPC backend
 * (started with the first, stopped by ao_grpc_agents_shutdown); start on a
 * pool thread; cancel on the executor's thread.
 */
#include "grpc_agent.h"

#include "log.h"
#include "mem.h"
#include "pbutil.h"
#include "util.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x

static pthread_mutex_t cq_lock = PTHREAD_MUTEX_INITIALIZER;
static grpc_completion_queue *cq;
static pthread_t cq_thread;
static int cq_users;

typedef struct grpc_backend {
    grpc_channel *channel;
    char *api_key;
} grpc_backend_t;

typedef struct gcall {
    void (*fn)(struct gcall *g, int ok);
    ao_agent_t *agent;
    ao_agent_call_t *call;
    grpc_call *gc;
    grpc_metadata md[2];
    size_t n_md;
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
} gcall_t;

static void *cq_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "ao-grpc-agent");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) {
            gcall_t *g = ev.tag;
            g->fn(g, ev.success);
        }
    }
    return NULL;
}

static void cq_acquire(void)
{
    pthread_mutex_lock(&cq_lock);
    if (cq_users++ == 0) {
        grpc_init();
        cq = grpc_completion_queue_create_for_next(NULL);
        if (pthread_create(&cq_thread, NULL, cq_main, NULL)) ao_fatal("cannot start the gRPC client thread");
    }
    pthread_mutex_unlock(&cq_lock);
}

static void cq_release(void)
{
    pthread_mutex_lock(&cq_lock);
    if (--cq_users == 0) {
        grpc_completion_queue_shutdown(cq);
        pthread_join(cq_thread, NULL);
        grpc_completion_queue_destroy(cq);
        cq = NULL;
        grpc_shutdown();
    }
    pthread_mutex_unlock(&cq_lock);
}

static const char *status_name(grpc_status_code c)
{
    static const char *names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                  "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return c >= 0 && (size_t)c < sizeof names / sizeof names[0] ? names[c] : "status";
}

static int classify(grpc_status_code code, const char *details, ao_agent_outcome_t *o)
{
    o->transport_status = (int)code;
    o->retryable = 1;
    switch (code) {
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return EC(TIMEOUT);
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        /* Our own receive limit ("Received message larger than max (N vs.
         * M)") is a reply too big, which another attempt repeats; anything
         * else is the agent's quota. */
        if (strstr(details, "larger than max")) {
            o->retryable = 0;
            return EC(INVALID_RESPONSE);
        }
        return EC(RATE_LIMITED);
    case GRPC_STATUS_CANCELLED:
        o->retryable = 0;
        return EC(CANCELLED);
    case GRPC_STATUS_UNAVAILABLE:
        if (strstr(details, "SSL") || strstr(details, "ssl") || strstr(details, "certificate") ||
            strstr(details, "handshake") || strstr(details, "TLS"))
            return EC(TLS);
        return EC(UNAVAILABLE);
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_NOT_FOUND:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_PERMISSION_DENIED:
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
    case GRPC_STATUS_UNIMPLEMENTED:
        o->retryable = 0;
        return EC(REJECTED);
    default:
        return EC(AGENT_ERROR);
    }
}

static void on_complete(gcall_t *g, int ok)
{
    ao_agent_outcome_t o;
    memset(&o, 0, sizeof o);
    const char *name = g->agent->cfg->name;
    char details[300];
    size_t dl = GRPC_SLICE_LENGTH(g->details) < sizeof details - 1 ? GRPC_SLICE_LENGTH(g->details)
                                                                   : sizeof details - 1;
    memcpy(details, GRPC_SLICE_START_PTR(g->details), dl);
    details[dl] = '\0';
    if (!ok) {
        o.error_class = EC(INTERNAL);
        o.retryable = 1;
        snprintf(o.error, sizeof o.error, "the call to gRPC agent %s failed to complete", name);
    } else if (g->status != GRPC_STATUS_OK) {
        o.error_class = classify(g->status, details, &o);
        snprintf(o.error, sizeof o.error, "gRPC %s from agent %s: %s", status_name(g->status),
                 name, details);
    } else if (!g->recv) {
        o.error_class = EC(INVALID_RESPONSE);
        o.retryable = 1;
        snprintf(o.error, sizeof o.error, "agent %s replied without a message", name);
    } else {
        grpc_byte_buffer_reader r;
        grpc_byte_buffer_reader_init(&r, g->recv);
        grpc_slice s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        o.result = agentos__v1__agent_result__unpack(NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
        char path[200];
        if (!o.result) {
            o.error_class = EC(INVALID_RESPONSE);
            o.retryable = 1;
            snprintf(o.error, sizeof o.error, "the reply of agent %s is not an AgentResult", name);
        } else if (!ao_pb_check_utf8(&o.result->base, path, sizeof path)) {
            /* protobuf-c took it; clients in other languages would not. */
            o.error_class = EC(INVALID_RESPONSE);
            o.retryable = 1;
            snprintf(o.error, sizeof o.error,
                     "the reply of agent %s is not an AgentResult: %s is not valid UTF-8", name,
                     path);
            agentos__v1__agent_result__free_unpacked(o.result, NULL);
            o.result = NULL;
        } else if (*o.result->error) {
            o.error_class = EC(AGENT_ERROR);
            o.retryable = o.result->retryable;
            snprintf(o.error, sizeof o.error, "agent %s: %.400s", name, o.result->error);
            agentos__v1__agent_result__free_unpacked(o.result, NULL);
            o.result = NULL;
        }
    }
    ao_agent_call_t *call = g->call;
    call->backend_data = NULL;
    /* done may wait for a cancel in progress (which still sees g through
     * its own pointer); after done the call may be gone. */
    call->done(call, &o);
    grpc_call_unref(g->gc);
    for (size_t i = 0; i < g->n_md; i++) {
        grpc_slice_unref(g->md[i].key);
        grpc_slice_unref(g->md[i].value);
    }
    if (g->send) grpc_byte_buffer_destroy(g->send);
    if (g->recv) grpc_byte_buffer_destroy(g->recv);
    grpc_metadata_array_destroy(&g->initial);
    grpc_metadata_array_destroy(&g->trailing);
    grpc_slice_unref(g->details);
    free(g);
}

static void grpc_start(ao_agent_t *a, ao_agent_call_t *call)
{
    grpc_backend_t *b = a->impl;
    gcall_t *g = ao_xcalloc(1, sizeof *g);
    g->fn = on_complete;
    g->agent = a;
    g->call = call;
    gpr_timespec deadline = call->timeout_ms
                                ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_millis(call->timeout_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_slice method = grpc_slice_from_static_string("/agentos.v1.Agent/Execute");
    g->gc = grpc_channel_create_call(b->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);
    g->md[g->n_md].key = grpc_slice_from_static_string("idempotency-key");
    g->md[g->n_md++].value = grpc_slice_from_copied_string(call->task->attempt_id);
    if (b->api_key) {
        char *v = ao_xasprintf("Bearer %s", b->api_key);
        g->md[g->n_md].key = grpc_slice_from_static_string("authorization");
        g->md[g->n_md++].value = grpc_slice_from_copied_string(v);
        memset(v, 0, strlen(v));
        free(v);
    }
    size_t len = protobuf_c_message_get_packed_size(&call->task->base);
    grpc_slice body = grpc_slice_malloc(len);
    protobuf_c_message_pack(&call->task->base, GRPC_SLICE_START_PTR(body));
    g->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    grpc_metadata_array_init(&g->initial);
    grpc_metadata_array_init(&g->trailing);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = g->n_md;
    ops[0].data.send_initial_metadata.metadata = g->md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = g->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &g->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &g->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &g->trailing;
    ops[5].data.recv_status_on_client.status = &g->status;
    ops[5].data.recv_status_on_client.status_details = &g->details;
    call->backend_data = g;
    grpc_call_error e = grpc_call_start_batch(g->gc, ops, 6, g, NULL);
    if (e != GRPC_CALL_OK) ao_fatal("grpc_call_start_batch to agent %s failed (%d)", a->cfg->name, e);
}

static void grpc_cancel(ao_agent_t *a, ao_agent_call_t *call)
{
    (void)a;
    gcall_t *g = call->backend_data;
    if (g) grpc_call_cancel(g->gc, NULL);
}

static void grpc_destroy(ao_agent_t *a)
{
    grpc_backend_t *b = a->impl;
    grpc_channel_destroy(b->channel);
    if (b->api_key) {
        memset(b->api_key, 0, strlen(b->api_key));
        free(b->api_key);
    }
    free(b);
    free(a);
    cq_release();
}

static const ao_agent_ops_t grpc_ops = {grpc_start, grpc_cancel, grpc_destroy, NULL};

static char *read_file(const char *what, const char *path, ao_status_t *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ao_status_set(st, AO_EINVAL, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    ao_sb_t sb = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) ao_sb_append(&sb, buf, n);
    fclose(f);
    return ao_sb_take(&sb);
}

int ao_grpc_agent_create(const Agentos__V1__AgentBackend *cfg, ao_agent_t **out, ao_status_t *st)
{
    const Agentos__V1__ClientTls *tls = cfg->tls;
    if (tls && tls->insecure_skip_verify)
        return ao_status_set(st, AO_EINVAL,
                             "tls.insecure_skip_verify is not supported for grpc agents: give tls.ca_file");
    if (tls && *tls->pinned_public_key)
        return ao_status_set(st, AO_EINVAL, "tls.pinned_public_key is not supported for grpc agents");
    char *ca = NULL, *cert = NULL, *key = NULL, *api_key = NULL;
    int rc = 0;
    if (tls && *tls->ca_file && !(ca = read_file("tls.ca_file", tls->ca_file, st))) rc = st->code;
    if (!rc && tls && *tls->cert_file) {
        if (!(cert = read_file("tls.cert_file", tls->cert_file, st)) ||
            !(key = read_file("tls.key_file", tls->key_file, st)))
            rc = st->code;
    }
    if (!rc) rc = ao_secret_load(cfg->api_key, &api_key, st);
    if (rc) {
        free(ca);
        free(cert);
        free(key);
        return rc;
    }
    cq_acquire();
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    grpc_channel_credentials *creds = grpc_ssl_credentials_create_ex(ca, cert ? &pair : NULL, NULL, NULL);
    grpc_arg args[2];
    size_t nargs = 0;
    if (tls && *tls->server_name) {
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs++].value.string = tls->server_name;
    }
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[nargs++].value.integer = 4 << 20;
    grpc_channel_args cargs = {nargs, args};
    grpc_backend_t *b = ao_xcalloc(1, sizeof *b);
    b->channel = grpc_channel_create(cfg->url, creds, &cargs);
    b->api_key = api_key;
    grpc_channel_credentials_release(creds);
    free(ca);
    if (key) memset(key, 0, strlen(key));
    free(cert);
    free(key);
    ao_agent_t *a = ao_xcalloc(1, sizeof *a);
    a->ops = &grpc_ops;
    a->cfg = cfg;
    a->impl = b;
    *out = a;
    return 0;
}
