/*
 * bench_stream_server: the baseline of bench/eventlog's StreamEvents
 * figures. A plain server-streaming loop on the gRPC core C API, the way
 * anyone would write one with no log, no hub and no subscribers behind it:
 * it serves /agentos.v1.Orchestrator/StreamEvents by packing an
 * agentos.v1.Event for each seq from from_seq to to_seq (to_seq 0: until
 * the client goes) and sending it, one message in flight per call (gRPC
 * allows no more), then status OK. Each event is a CUSTOM event shaped as
 * PublishEvent makes them in agentosd (workflow id, tenant "default", a
 * name and data), its data sized so that the packed event is exactly
 * --event-bytes. The transport is agentosd's: the same library, the same
 * registered-method and one-batch-per-message pattern, the same number of
 * completion-queue threads as agentosd is given (--threads, default 2 as
 * agentosd's --rpc-threads; run.sh gives both 1).
 *
 * usage: bench_stream_server [--listen ADDR] [--threads N] [--event-bytes N]
 * Prints "listening port=N" once it serves; runs until SIGINT or SIGTERM.
 */
#include "agentos/v1/event.pb-c.h"
#include "agentos/v1/orchestrator.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define PATH "/agentos.v1.Orchestrator/StreamEvents"
#define SLOTS_PER_THREAD 16

enum { TAG_NEW, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN };

typedef struct tag {
    int kind;
} tag_t;

typedef struct worker worker_t;

/* A request slot: a call the server may hand us. */
typedef struct slot {
    tag_t tag;
    worker_t *w;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
} slot_t;

/* One stream. Freed when its last batch (send or close) is done. */
typedef struct stream {
    tag_t send_tag, close_tag;
    grpc_call *call;
    int refs;
    int cancelled;
    int status_sent;
    uint64_t next, to;
    grpc_byte_buffer *bb;
    char workflow_id[128];
} stream_t;

struct worker {
    pthread_t th;
    grpc_completion_queue *cq;
    slot_t slots[SLOTS_PER_THREAD];
};

static grpc_server *server;
static void *method;
static size_t event_bytes = 200;
static pthread_mutex_t shutdown_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t shutdown_cond = PTHREAD_COND_INITIALIZER;
static int shutdown_done;
static tag_t shutdown_tag = {TAG_SHUTDOWN};

static void die(const char *what)
{
    fprintf(stderr, "bench_stream_server: %s\n", what);
    exit(1);
}

static void arm(slot_t *s)
{
    grpc_metadata_array_init(&s->md);
    s->payload = NULL;
    s->call = NULL;
    if (grpc_server_request_registered_call(server, method, &s->call, &s->deadline, &s->md,
                                            &s->payload, s->w->cq, s->w->cq, s) != GRPC_CALL_OK)
        die("grpc_server_request_registered_call failed");
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* The packed event for seq, exactly event_bytes long. */
static grpc_slice pack_event(stream_t *st, uint64_t seq)
{
    static __thread char data[65536];
    static __thread size_t data_len;
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__CustomPayload c = AGENTOS__V1__CUSTOM_PAYLOAD__INIT;
    ev.seq = seq;
    ev.workflow_id = st->workflow_id;
    ev.tenant = "default";
    ev.type = AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_CUSTOM;
    ev.time_unix_ms = now_ms();
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_CUSTOM;
    ev.custom = &c;
    c.name = "load";
    c.data = data;
    /* The data length that gives event_bytes changes only when a varint
     * (seq, a length) grows: adjust from the last one. Usually one size
     * computation and one pack per message. */
    memset(data, 'd', data_len);
    data[data_len] = '\0';
    size_t n = protobuf_c_message_get_packed_size(&ev.base);
    for (int i = 0; i < 4 && n != event_bytes; i++) {
        long want = (long)data_len + (long)event_bytes - (long)n;
        if (want < 0 || want >= (long)sizeof data) break;
        data_len = (size_t)want;
        memset(data, 'd', data_len);
        data[data_len] = '\0';
        n = protobuf_c_message_get_packed_size(&ev.base);
    }
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(&ev.base, GRPC_SLICE_START_PTR(s));
    return s;
}

static void stream_unref(stream_t *st)
{
    if (--st->refs) return;
    if (st->bb) grpc_byte_buffer_destroy(st->bb);
    grpc_call_unref(st->call);
    free(st);
}

/* Sends the next message, or the final status; with SEND_INITIAL_METADATA
 * the first time. */
static void send_next(stream_t *st, int first)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (first) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (st->bb) {
        grpc_byte_buffer_destroy(st->bb);
        st->bb = NULL;
    }
    if (st->next <= st->to) {
        grpc_slice s = pack_event(st, st->next++);
        st->bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = st->bb;
        n++;
    } else {
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        st->status_sent = 1;
        n++;
    }
    st->refs++;
    if (grpc_call_start_batch(st->call, ops, n, &st->send_tag, NULL) != GRPC_CALL_OK)
        die("grpc_call_start_batch (send) failed");
}

static void new_call(slot_t *s)
{
    stream_t *st = calloc(1, sizeof *st);
    if (!st) die("out of memory");
    st->send_tag.kind = TAG_SEND;
    st->close_tag.kind = TAG_CLOSE;
    st->call = s->call;
    st->refs = 1; /* the close op */
    st->next = 1;
    st->to = UINT64_MAX;
    snprintf(st->workflow_id, sizeof st->workflow_id, "wf-bench-stream-baseline-0000000000000000");
    if (s->payload) {
        grpc_byte_buffer_reader r;
        if (grpc_byte_buffer_reader_init(&r, s->payload)) {
            grpc_slice body = grpc_byte_buffer_reader_readall(&r);
            grpc_byte_buffer_reader_destroy(&r);
            Agentos__V1__StreamEventsRequest *req = agentos__v1__stream_events_request__unpack(
                NULL, GRPC_SLICE_LENGTH(body), GRPC_SLICE_START_PTR(body));
            grpc_slice_unref(body);
            if (req) {
                if (req->from_seq) st->next = req->from_seq;
                if (req->to_seq) st->to = req->to_seq;
                if (*req->workflow_id)
                    snprintf(st->workflow_id, sizeof st->workflow_id, "%s", req->workflow_id);
                agentos__v1__stream_events_request__free_unpacked(req, NULL);
            }
        }
        grpc_byte_buffer_destroy(s->payload);
    }
    grpc_metadata_array_destroy(&s->md);
    /* Client gone, deadline, shutdown: all arrive as the close op. */
    grpc_op close_op;
    memset(&close_op, 0, sizeof close_op);
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &st->cancelled;
    if (grpc_call_start_batch(st->call, &close_op, 1, &st->close_tag, NULL) != GRPC_CALL_OK)
        die("grpc_call_start_batch (close) failed");
    send_next(st, 1);
    arm(s);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        tag_t *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW: {
            slot_t *s = (slot_t *)t;
            if (!ev.success) {
                /* The server is shutting down: the slot is not re-armed. */
                grpc_metadata_array_destroy(&s->md);
                if (s->payload) grpc_byte_buffer_destroy(s->payload);
                break;
            }
            new_call(s);
            break;
        }
        case TAG_SEND: {
            stream_t *st = (stream_t *)((char *)t - offsetof(stream_t, send_tag));
            int more = ev.success && !st->status_sent;
            if (more) send_next(st, 0);
            stream_unref(st);
            break;
        }
        case TAG_CLOSE: {
            stream_t *st = (stream_t *)((char *)t - offsetof(stream_t, close_tag));
            stream_unref(st);
            break;
        }
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&shutdown_lock);
            shutdown_done = 1;
            pthread_cond_signal(&shutdown_cond);
            pthread_mutex_unlock(&shutdown_lock);
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--event-bytes") && i + 1 < argc)
            event_bytes = (size_t)atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_stream_server [--listen ADDR] [--threads N] [--event-bytes N]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || event_bytes < 64 || event_bytes > 60000)
        die("bad arguments");
    /* Blocked before gRPC starts its threads (they inherit the mask), then
     * taken with sigwait: a clean shutdown. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    grpc_init();
    server = grpc_server_create(NULL, NULL);
    method = grpc_server_register_method(server, PATH, NULL,
                                         GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    worker_t *ws = calloc((size_t)threads, sizeof *ws);
    for (int i = 0; i < threads; i++) {
        ws[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(server, ws[i].cq, NULL);
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(server, listen, creds);
    grpc_server_credentials_release(creds);
    if (port <= 0) die("cannot listen");
    grpc_server_start(server);
    for (int i = 0; i < threads; i++) {
        for (int k = 0; k < SLOTS_PER_THREAD; k++) {
            ws[i].slots[k].tag.kind = TAG_NEW;
            ws[i].slots[k].w = &ws[i];
            arm(&ws[i].slots[k]);
        }
        if (pthread_create(&ws[i].th, NULL, worker_main, &ws[i])) die("pthread_create");
    }
    printf("listening port=%d\n", port);
    fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    grpc_server_shutdown_and_notify(server, ws[0].cq, &shutdown_tag);
    grpc_server_cancel_all_calls(server);
    pthread_mutex_lock(&shutdown_lock);
    while (!shutdown_done)
        pthread_cond_wait(&shutdown_cond, &shutdown_lock);
    pthread_mutex_unlock(&shutdown_lock);
    grpc_server_destroy(server);
    for (int i = 0; i < threads; i++)
        grpc_completion_queue_shutdown(ws[i].cq);
    for (int i = 0; i < threads; i++) {
        pthread_join(ws[i].th, NULL);
        grpc_completion_queue_destroy(ws[i].cq);
    }
    free(ws);
    grpc_shutdown_blocking();
    return 0;
}
