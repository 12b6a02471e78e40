/*
 * bench_stream: the gRPC half of bench/eventlog, one client on the gRPC
 * core C API driving the real agentosd (and, for the ratios, the plain
 * streaming server bench_stream_server) over loopback. Figures:
 *
 * 1. StreamEvents from the backlog to one subscriber: a backlog of N events
 *    of 200 bytes is published into one workflow with PublishEvent (64 calls
 *    in flight), then read with bounded StreamEvents calls (from_seq..to_seq,
 *    ending with OK), over the whole log (the tenant filter only) and
 *    through the workflow filter (the workflow index). Baseline: the same
 *    request to bench_stream_server, which packs and sends events of the
 *    same size in a loop with no storage behind it: the cost of gRPC
 *    server streaming itself. The same client, connection settings and
 *    message sizes; rounds alternate between the servers (order swapped
 *    each round) and are pooled. Target: agentosd >= 0.7x the baseline.
 * 2. The same with 100 concurrent subscribers (each a bounded replay of
 *    the first M events): aggregate messages/s, against the baseline with
 *    100 streams.
 * 3. Append-to-delivery latency for a live subscriber (from_now, workflow
 *    filter): one PublishEvent at a time; from the call's start to the
 *    event's arrival on the stream (the ack's latency alongside), p50/p99.
 * 4. 100 live subscribers while 16 PublishEvent calls are kept in flight:
 *    the aggregate delivery rate, whether each subscriber got every event
 *    exactly once and in order, and the append-to-delivery latency over
 *    all deliveries.
 * Each server's CPU per message is read from /proc/PID/stat (all its
 * threads: RocksDB's background flushes count for agentosd), and the
 * client's own CPU share is printed (near 100% would mean the client set
 * the pace). run.sh pins the servers to CPU 0 and this client to CPU 1,
 * and gives each server one completion-queue thread. --settle-ms waits
 * after publishing the backlog, before measuring (lets RocksDB flush and
 * compact the burst first).
 *
 * usage: bench_stream --subject HOST:PORT@PID --baseline HOST:PORT@PID
 *                     [--events N] [--event-bytes N] [--rounds N] [--quick]
 *                     [--only backlog|workflow|backlog100|latency|live100] [--settle-ms MS]
 *        bench_stream --wait-serving HOST:PORT --since-ns T
 *            (waits until agentosd answers Health/Check SERVING and prints
 *            the milliseconds since CLOCK_REALTIME T: start-to-serving)
 * Exit: 0 when every call behaved (targets met or not), 1 otherwise.
 */
#include "agentos/v1/event.pb-c.h"
#include "agentos/v1/orchestrator.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <getopt.h>
#include <grpc/byte_buffer_reader.h>
#include "../common/unary.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SVC "/agentos.v1.Orchestrator/"
#define CALL_DEADLINE_S 120

static grpc_completion_queue *cq;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_stream: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) die("out of memory");
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of a process (all threads), -1 if unknown. */
static double proc_cpu_s(int pid)
{
    if (pid <= 0) return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static gpr_timespec deadline_s(int s)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(s, GPR_TIMESPAN));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, size_t n, double q)
{
    if (!n) return 0;
    size_t i = (size_t)(q * (double)n);
    if (i >= n) i = n - 1;
    return (double)v[i] / 1000.0;
}

/* ---- servers ------------------------------------------------------------- */

typedef struct server {
    const char *name;
    char *addr;
    int pid;
    grpc_channel *ch;
    void *m_stream, *m_publish, *m_orchestrate, *m_check;
} server_t;

static void server_connect(server_t *s)
{
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_arg args[2];
    /* Its own connection (the servers never share one) and no message size
     * limit in the way. */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = 1;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].value.integer = 64 << 20;
    grpc_channel_args ca = {2, args};
    s->ch = grpc_channel_create(s->addr, creds, &ca);
    grpc_channel_credentials_release(creds);
    s->m_stream = grpc_channel_register_call(s->ch, SVC "StreamEvents", NULL, NULL);
    s->m_publish = grpc_channel_register_call(s->ch, SVC "PublishEvent", NULL, NULL);
    s->m_orchestrate = grpc_channel_register_call(s->ch, SVC "Orchestrate", NULL, NULL);
    s->m_check = grpc_channel_register_call(s->ch, "/grpc.health.v1.Health/Check", NULL, NULL);
}

/* Waits (up to `secs`) until the channel is READY. */
static int wait_connected(server_t *s, int secs)
{
    grpc_completion_queue *pq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec until = deadline_s(secs);
    int ok = 0;
    for (;;) {
        grpc_connectivity_state st = grpc_channel_check_connectivity_state(s->ch, 1);
        if (st == GRPC_CHANNEL_READY) {
            ok = 1;
            break;
        }
        if (gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), until) > 0) break;
        static int tag;
        grpc_channel_watch_connectivity_state(s->ch, st, until, pq, &tag);
        grpc_completion_queue_pluck(pq, &tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    grpc_completion_queue_shutdown(pq);
    while (grpc_completion_queue_pluck(pq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(pq);
    return ok;
}

/* ---- calls --------------------------------------------------------------- */

enum { K_UNARY, K_STREAM_INIT, K_STREAM_MSG, K_STREAM_STATUS };

/* A unary call in flight (blocking or part of a window). */
typedef struct unary {
    int kind;
    grpc_call *call;
    grpc_byte_buffer *req, *resp;
    grpc_metadata_array md, trailing;
    grpc_status_code status;
    grpc_slice details;
    uint64_t start_ns;
    int done;
    void *ud;
} unary_t;

static grpc_byte_buffer *bb_of(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static grpc_slice bb_slice(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) die("bad byte buffer");
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return s;
}

static void unary_start(unary_t *u, server_t *s, void *method, const ProtobufCMessage *req)
{
    memset(u, 0, sizeof *u);
    u->kind = K_UNARY;
    u->call = grpc_channel_create_registered_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                                  deadline_s(CALL_DEADLINE_S), NULL);
    u->req = bb_of(req);
    u->start_ns = now_ns();
    if (ao_bench_unary_start(u->call, 0, u->req, &u->resp, &u->md, &u->trailing, &u->status, &u->details,
                             u) != GRPC_CALL_OK)
        die("start_batch (unary)");
}

/* Unpacks the reply into *out (NULL: ignore it); dies on a failed call. */
static void unary_end(unary_t *u, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    if (u->status != GRPC_STATUS_OK || !u->resp)
        die("call failed: status %d %.*s", u->status, (int)GRPC_SLICE_LENGTH(u->details),
            (const char *)GRPC_SLICE_START_PTR(u->details));
    if (out) {
        grpc_slice s = bb_slice(u->resp);
        *out = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
        grpc_slice_unref(s);
        if (!*out) die("a reply does not decode");
    }
    grpc_byte_buffer_destroy(u->req);
    if (u->resp) grpc_byte_buffer_destroy(u->resp);
    grpc_metadata_array_destroy(&u->md);
    grpc_metadata_array_destroy(&u->trailing);
    grpc_slice_unref(u->details);
    grpc_call_unref(u->call);
}

/* A stream being read: one RECV_MESSAGE in flight at a time. */
typedef struct stream {
    int kind; /* K_STREAM_MSG tag */
    int status_kind;
    int init_kind;
    /* Batches not yet completed: the stream is freed only when none is
     * (the status may arrive before the last message's completion). */
    int pending;
    grpc_call *call;
    grpc_byte_buffer *req, *msg;
    grpc_metadata_array md, trailing;
    grpc_status_code status;
    grpc_slice details;
    int ended;
    /* Figures */
    uint64_t msgs, bytes, last_seq, first_seq, start_ns, end_ns;
    int disorder;
    /* Live: latency samples parsed from each event's data. */
    int parse_time;
    uint64_t *lat;
    size_t n_lat, cap_lat;
} stream_t;

/* Reads the seq of a packed event (field 1, the first the packer writes). */
static uint64_t seq_of(const uint8_t *p, size_t n)
{
    if (n < 2 || p[0] != 0x08) return 0;
    uint64_t v = 0;
    for (size_t i = 1, shift = 0; i < n && i < 11; i++, shift += 7) {
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80)) return v;
    }
    return 0;
}

static void stream_recv(stream_t *s)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->msg;
    s->msg = NULL;
    s->pending++;
    if (grpc_call_start_batch(s->call, &op, 1, &s->kind, NULL) != GRPC_CALL_OK)
        die("start_batch (recv)");
}

static void stream_start(stream_t *s, server_t *srv, const Agentos__V1__StreamEventsRequest *req,
                         int secs)
{
    memset(s, 0, sizeof *s);
    s->kind = K_STREAM_MSG;
    s->status_kind = K_STREAM_STATUS;
    s->init_kind = K_STREAM_INIT;
    s->call = grpc_channel_create_registered_call(srv->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                  srv->m_stream, deadline_s(secs), NULL);
    s->req = bb_of(&req->base);
    grpc_metadata_array_init(&s->md);
    grpc_metadata_array_init(&s->trailing);
    s->details = grpc_empty_slice();
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->md;
    s->start_ns = now_ns();
    /* The status op first: it completes when the stream ends, whatever
     * the messages do. */
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &s->trailing;
    st.data.recv_status_on_client.status = &s->status;
    st.data.recv_status_on_client.status_details = &s->details;
    s->pending = 2;
    if (grpc_call_start_batch(s->call, &st, 1, &s->status_kind, NULL) != GRPC_CALL_OK)
        die("start_batch (status)");
    if (grpc_call_start_batch(s->call, ops, 4, &s->init_kind, NULL) != GRPC_CALL_OK)
        die("start_batch (start)");
    stream_recv(s);
}

static void stream_free(stream_t *s)
{
    grpc_byte_buffer_destroy(s->req);
    grpc_metadata_array_destroy(&s->md);
    grpc_metadata_array_destroy(&s->trailing);
    grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    free(s->lat);
}

/* The send time a live event carries: its custom data starts with
 * "t=<ns>;". */
static uint64_t sent_ns_of(const uint8_t *p, size_t n)
{
    Agentos__V1__Event *ev = agentos__v1__event__unpack(NULL, n, p);
    uint64_t t = 0;
    if (ev && ev->payload_case == AGENTOS__V1__EVENT__PAYLOAD_CUSTOM &&
        !strncmp(ev->custom->data, "t=", 2))
        t = strtoull(ev->custom->data + 2, NULL, 10);
    if (ev) agentos__v1__event__free_unpacked(ev, NULL);
    return t;
}

/* Handles a message completion and asks for the next one. */
static void stream_on_msg(stream_t *s, int ok)
{
    s->pending--;
    if (!ok || !s->msg) {
        /* No more messages: the status op reports how it ended. */
        if (s->msg) grpc_byte_buffer_destroy(s->msg);
        s->msg = NULL;
        return;
    }
    grpc_slice sl = bb_slice(s->msg);
    grpc_byte_buffer_destroy(s->msg);
    s->msg = NULL;
    const uint8_t *p = GRPC_SLICE_START_PTR(sl);
    size_t n = GRPC_SLICE_LENGTH(sl);
    uint64_t seq = seq_of(p, n);
    if (!s->msgs)
        s->first_seq = seq;
    else if (seq != s->last_seq + 1)
        s->disorder++;
    s->last_seq = seq;
    s->msgs++;
    s->bytes += n;
    if (s->parse_time) {
        uint64_t t = sent_ns_of(p, n);
        if (t) {
            if (s->n_lat == s->cap_lat) {
                s->cap_lat = s->cap_lat ? 2 * s->cap_lat : 4096;
                s->lat = realloc(s->lat, s->cap_lat * sizeof *s->lat);
                if (!s->lat) die("out of memory");
            }
            s->lat[s->n_lat++] = now_ns() - t;
        }
    }
    grpc_slice_unref(sl);
    stream_recv(s);
}

/* A stream is over when its status has come and no batch of it is
 * pending. */
static int stream_over(const stream_t *s)
{
    return s->ended && !s->pending;
}

/* Dispatches one completion; returns the tag's kind (K_STREAM_STATUS
 * when a stream is over: its status and its last batch are in). */
static int dispatch(grpc_event ev, void **which)
{
    int *kind = ev.tag;
    *which = ev.tag;
    if (*kind == K_STREAM_MSG) {
        stream_t *s = (stream_t *)kind;
        stream_on_msg(s, ev.success);
        if (stream_over(s)) return K_STREAM_STATUS;
    } else if (*kind == K_STREAM_INIT) {
        stream_t *s = (stream_t *)((char *)kind - offsetof(stream_t, init_kind));
        *which = s;
        s->pending--;
        return stream_over(s) ? K_STREAM_STATUS : K_STREAM_INIT;
    } else if (*kind == K_STREAM_STATUS) {
        stream_t *s = (stream_t *)((char *)kind - offsetof(stream_t, status_kind));
        s->ended = 1;
        s->pending--;
        s->end_ns = now_ns();
        *which = s;
        return stream_over(s) ? K_STREAM_STATUS : K_STREAM_INIT;
    } else {
        ((unary_t *)kind)->done = 1;
    }
    return *kind;
}

static grpc_event next_event(int ms)
{
    return grpc_completion_queue_next(
        cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN)),
        NULL);
}

/* Runs the queue until `u` is done (other completions are dispatched). */
static void wait_unary(unary_t *u)
{
    uint64_t until = now_ns() + (uint64_t)(CALL_DEADLINE_S + 10) * 1000000000u;
    while (!u->done) {
        grpc_event ev = next_event(200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            if (now_ns() > until) die("a call never completed");
            continue;
        }
        void *w;
        dispatch(ev, &w);
    }
}

static void call_unary(server_t *s, void *method, const ProtobufCMessage *req,
                       const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    unary_t u;
    unary_start(&u, s, method, req);
    wait_unary(&u);
    unary_end(&u, d, out);
}

/* Runs the queue until every stream of the list is over. */
static void wait_streams(stream_t **ss, size_t n)
{
    size_t ended = 0;
    for (size_t i = 0; i < n; i++)
        ended += stream_over(ss[i]);
    uint64_t until = now_ns() + (uint64_t)(CALL_DEADLINE_S + 10) * 1000000000u;
    while (ended < n) {
        grpc_event ev = next_event(200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            if (now_ns() > until) die("streams never ended");
            continue;
        }
        void *w;
        if (dispatch(ev, &w) == K_STREAM_STATUS) ended++;
    }
}

/* ---- agentosd setup: a running workflow, 200-byte events ------------------ */

static char workflow_id[128];
static size_t data_len; /* custom data length that gives event_bytes */

static Agentos__V1__PublishEventRequest *publish_req(const char *data)
{
    static Agentos__V1__PublishEventRequest req;
    static Agentos__V1__CustomPayload c;
    agentos__v1__publish_event_request__init(&req);
    agentos__v1__custom_payload__init(&c);
    req.workflow_id = workflow_id;
    req.payload_case = AGENTOS__V1__PUBLISH_EVENT_REQUEST__PAYLOAD_CUSTOM;
    req.custom = &c;
    c.name = "load";
    c.data = (char *)data;
    return &req;
}

static uint64_t publish_one(server_t *s, const char *data)
{
    ProtobufCMessage *out;
    call_unary(s, s->m_publish, &publish_req(data)->base,
               &agentos__v1__publish_event_response__descriptor, &out);
    uint64_t seq = ((Agentos__V1__PublishEventResponse *)out)->seq;
    protobuf_c_message_free_unpacked(out, NULL);
    return seq;
}

/* The stored size of event seq, read back through a bounded stream. */
static size_t stored_size(server_t *s, uint64_t seq)
{
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    req.from_seq = seq;
    req.to_seq = seq;
    stream_t st;
    stream_start(&st, s, &req, 30);
    stream_t *one = &st;
    wait_streams(&one, 1);
    if (st.status != GRPC_STATUS_OK || st.msgs != 1)
        die("reading event %" PRIu64 " back failed", seq);
    size_t n = st.bytes;
    stream_free(&st);
    return n;
}

static void setup_workflow(server_t *s, size_t event_bytes)
{
    Agentos__V1__OrchestrateRequest req = AGENTOS__V1__ORCHESTRATE_REQUEST__INIT;
    Agentos__V1__WorkflowSpec spec = AGENTOS__V1__WORKFLOW_SPEC__INIT;
    Agentos__V1__TaskSpec task = AGENTOS__V1__TASK_SPEC__INIT;
    Agentos__V1__TaskSpec *tasks[] = {&task};
    task.id = "hold";
    task.agent = "hold";
    /* Never times out during the run: its retries would be events of
     * this workflow in the middle of the backlog. */
    task.attempt_timeout_ms = 24u * 3600 * 1000;
    task.total_timeout_ms = 24u * 3600 * 1000;
    spec.tasks = tasks;
    spec.n_tasks = 1;
    req.workflow = &spec;
    req.wait = 0;
    ProtobufCMessage *out;
    call_unary(s, s->m_orchestrate, &req.base, &agentos__v1__orchestrate_response__descriptor,
               &out);
    snprintf(workflow_id, sizeof workflow_id, "%s",
             ((Agentos__V1__OrchestrateResponse *)out)->workflow_id);
    protobuf_c_message_free_unpacked(out, NULL);
    /* Size the data so that stored events are event_bytes (at the seqs the
     * backlog will have: the seq varint is part of the size). */
    char *data = xcalloc(1, event_bytes + 1);
    data_len = event_bytes / 2;
    for (int i = 0; i < 4; i++) {
        memset(data, 'd', data_len);
        data[data_len] = 0;
        size_t have = stored_size(s, publish_one(s, data));
        if (have == event_bytes) break;
        data_len = data_len + event_bytes - have;
    }
    free(data);
}

/* Publishes n events with `window` calls in flight; returns the first and
 * last acknowledged seqs. With stamp, each event's data starts with its
 * send time ("t=<ns>;"), for the live latency. */
static void publish_many(server_t *s, uint64_t n, unsigned window, uint64_t *first, uint64_t *last,
                         int stamp)
{
    unary_t *us = xcalloc(window, sizeof *us);
    char *data = xcalloc(1, data_len + 32);
    uint64_t started = 0, done = 0, lo = UINT64_MAX, hi = 0;
    for (unsigned i = 0; i < window && started < n; i++, started++) {
        memset(data, 'd', data_len);
        data[data_len] = 0;
        if (stamp) {
            int k = snprintf(data, data_len + 1, "t=%" PRIu64 ";", now_ns());
            if ((size_t)k < data_len) data[k] = 'd';
        }
        unary_start(&us[i], s, s->m_publish, &publish_req(data)->base);
        us[i].ud = &us[i];
    }
    uint64_t until = now_ns() + (uint64_t)(CALL_DEADLINE_S + 10) * 1000000000u;
    while (done < n) {
        grpc_event ev = next_event(200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            if (now_ns() > until) die("publishing stalled");
            continue;
        }
        void *w;
        if (dispatch(ev, &w) != K_UNARY) continue;
        unary_t *u = w;
        ProtobufCMessage *out;
        unary_end(u, &agentos__v1__publish_event_response__descriptor, &out);
        uint64_t seq = ((Agentos__V1__PublishEventResponse *)out)->seq;
        protobuf_c_message_free_unpacked(out, NULL);
        lo = seq < lo ? seq : lo;
        hi = seq > hi ? seq : hi;
        done++;
        if (started < n) {
            memset(data, 'd', data_len);
            data[data_len] = 0;
            if (stamp) {
                int k = snprintf(data, data_len + 1, "t=%" PRIu64 ";", now_ns());
                if ((size_t)k < data_len) data[k] = 'd';
            }
            unary_start(u, s, s->m_publish, &publish_req(data)->base);
            started++;
        }
    }
    free(data);
    free(us);
    *first = lo;
    *last = hi;
}

/* ---- 1 and 2: backlog delivery --------------------------------------------- */

typedef struct tally {
    uint64_t msgs, bytes;
    double secs, srv_cpu, cli_cpu;
    int cpu_ok;
} tally_t;

/* n_streams bounded replays of [from, to] at once; adds to t. */
static void replay(server_t *s, size_t n_streams, uint64_t from, uint64_t to, int by_workflow,
                   tally_t *t)
{
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    req.from_seq = from;
    req.to_seq = to;
    /* The baseline gets the workflow id too, so that its events carry an
     * id of the same length. */
    req.workflow_id = by_workflow || strcmp(s->name, "agentosd") ? workflow_id : "";
    stream_t *ss = xcalloc(n_streams, sizeof *ss);
    stream_t **ps = xcalloc(n_streams, sizeof *ps);
    double srv0 = proc_cpu_s(s->pid), cli0 = self_cpu_s();
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n_streams; i++) {
        stream_start(&ss[i], s, &req, CALL_DEADLINE_S);
        ps[i] = &ss[i];
    }
    wait_streams(ps, n_streams);
    uint64_t t1 = now_ns();
    double srv1 = proc_cpu_s(s->pid), cli1 = self_cpu_s();
    for (size_t i = 0; i < n_streams; i++) {
        stream_t *st = &ss[i];
        if (st->status != GRPC_STATUS_OK)
            die("%s: a replay ended with status %d %.*s", s->name, st->status,
                (int)GRPC_SLICE_LENGTH(st->details),
                (const char *)GRPC_SLICE_START_PTR(st->details));
        /* Every event in the range is this workflow's (the only one doing
         * anything on this agentosd): both filters must deliver all of
         * them, once, in order. */
        if (st->disorder || st->first_seq != from || st->last_seq != to)
            die("%s: a replay of %" PRIu64 "..%" PRIu64 " delivered %" PRIu64 "..%" PRIu64
                " with %d gaps (another workflow's events in the range?)",
                s->name, from, to, st->first_seq, st->last_seq, st->disorder);
        t->msgs += st->msgs;
        t->bytes += st->bytes;
        stream_free(st);
    }
    free(ss);
    free(ps);
    t->secs += (double)(t1 - t0) / 1e9;
    t->cpu_ok = srv0 >= 0 && srv1 >= 0;
    t->srv_cpu += srv1 - srv0;
    t->cli_cpu += cli1 - cli0;
}

static void print_tally(const char *label, const char *name, const tally_t *t)
{
    printf("  %-22s %-20s %10.0f msg/s %6.1f B/msg", label, name, t->msgs / t->secs,
           t->msgs ? (double)t->bytes / (double)t->msgs : 0);
    if (t->cpu_ok) printf("  server %5.2f us/msg", t->srv_cpu * 1e6 / (double)t->msgs);
    printf("  client CPU %3.0f%%\n", 100.0 * t->cli_cpu / t->secs);
}

/* Alternating rounds on both servers: in round r both replay the same
 * segment of `seg` events of [from, to] (segments rotate through the
 * backlog); the servers' order swaps each round, figures are pooled.
 * Returns the subject/baseline rate ratio. */
static double compare(server_t *subj, server_t *base, const char *label, size_t n_streams,
                      uint64_t from, uint64_t to, uint64_t seg, int by_workflow, unsigned rounds)
{
    tally_t t[2];
    memset(t, 0, sizeof t);
    uint64_t span = to - from + 1;
    if (seg > span) seg = span;
    for (unsigned r = 0; r < rounds; r++) {
        uint64_t lo = from + ((uint64_t)r * seg) % (span - seg + 1);
        for (int k = 0; k < 2; k++) {
            int which = (r % 2) ? 1 - k : k;
            replay(which ? base : subj, n_streams, lo, lo + seg - 1, by_workflow, &t[which]);
        }
    }
    print_tally(label, subj->name, &t[0]);
    print_tally(label, base->name, &t[1]);
    double ratio = (t[0].msgs / t[0].secs) / (t[1].msgs / t[1].secs);
    printf("  %-22s ratio %.2fx (%u alternating rounds of %" PRIu64 " events x %zu stream%s)\n",
           label, ratio, rounds, seg, n_streams, n_streams == 1 ? "" : "s");
    fflush(stdout);
    return ratio;
}

/* ---- 3 and 4: live delivery ------------------------------------------------ */

/* Waits until every live stream has received seq (they were started
 * before it was published). */
static void wait_delivered(stream_t **ss, size_t n, uint64_t seq)
{
    uint64_t until = now_ns() + 60ull * 1000000000u;
    for (;;) {
        size_t have = 0;
        for (size_t i = 0; i < n; i++) {
            if (ss[i]->ended) die("a live stream ended early (status %d)", ss[i]->status);
            have += ss[i]->last_seq >= seq;
        }
        if (have == n) return;
        grpc_event ev = next_event(200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            if (now_ns() > until) die("live events were not delivered within 60 s");
            continue;
        }
        void *w;
        dispatch(ev, &w);
    }
}

static void live_streams(server_t *s, stream_t *ss, stream_t **ps, size_t n, int parse)
{
    Agentos__V1__StreamEventsRequest req = AGENTOS__V1__STREAM_EVENTS_REQUEST__INIT;
    req.from_now = 1;
    req.workflow_id = workflow_id;
    for (size_t i = 0; i < n; i++) {
        stream_start(&ss[i], s, &req, CALL_DEADLINE_S * 4);
        ss[i].parse_time = parse;
        ps[i] = &ss[i];
    }
    /* A probe until every stream has it: they are all live from here. */
    char *data = xcalloc(1, data_len + 1);
    memset(data, 'p', data_len);
    for (int tries = 0;; tries++) {
        uint64_t seq = publish_one(s, data);
        /* from_now may start after a probe: retry until all have one. */
        uint64_t until = now_ns() + 2000000000ull;
        int all = 0;
        while (!all && now_ns() < until) {
            all = 1;
            for (size_t i = 0; i < n; i++)
                all &= ss[i].last_seq >= seq;
            if (all) break;
            grpc_event ev = next_event(50);
            if (ev.type == GRPC_OP_COMPLETE) {
                void *w;
                dispatch(ev, &w);
            }
        }
        if (all) break;
        if (tries > 20) die("live streams did not start");
    }
    free(data);
    for (size_t i = 0; i < n; i++) {
        ss[i].n_lat = 0;
        ss[i].msgs = 0;
        ss[i].disorder = 0;
    }
}

static void cancel_streams(stream_t *ss, stream_t **ps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        grpc_call_cancel(ss[i].call, NULL);
    wait_streams(ps, n);
    for (size_t i = 0; i < n; i++)
        stream_free(&ss[i]);
}

static void bench_latency(server_t *s, unsigned samples)
{
    stream_t st;
    stream_t *ps;
    live_streams(s, &st, &ps, 1, 0);
    uint64_t *deliv = xcalloc(samples, sizeof *deliv), *ack = xcalloc(samples, sizeof *ack);
    char *data = xcalloc(1, data_len + 1);
    memset(data, 'l', data_len);
    for (unsigned i = 0; i < samples; i++) {
        unary_t u;
        uint64_t t0 = now_ns();
        unary_start(&u, s, s->m_publish, &publish_req(data)->base);
        uint64_t t_ack = 0, t_del = 0, seq = 0, until = t0 + 60ull * 1000000000u;
        /* Both the ack and the delivery, in whichever order they come. */
        while (!t_ack || !t_del) {
            grpc_event ev = next_event(200);
            if (ev.type == GRPC_QUEUE_TIMEOUT) {
                if (now_ns() > until) die("a live event was not delivered within 60 s");
                continue;
            }
            void *w;
            int k = dispatch(ev, &w);
            uint64_t now = now_ns();
            if (k == K_UNARY && w == &u) {
                t_ack = now;
                ProtobufCMessage *out;
                unary_end(&u, &agentos__v1__publish_event_response__descriptor, &out);
                seq = ((Agentos__V1__PublishEventResponse *)out)->seq;
                protobuf_c_message_free_unpacked(out, NULL);
                if (st.last_seq >= seq && !t_del) t_del = now;
            } else if (k == K_STREAM_MSG && seq && st.last_seq >= seq && !t_del) {
                t_del = now;
            } else if (k == K_STREAM_MSG && !seq && !t_del) {
                /* Delivered before the ack: the stream's newest is ours
                 * (we are the only publisher). */
                t_del = now;
            } else if (k == K_STREAM_STATUS) {
                die("the live stream ended (status %d)", st.status);
            }
        }
        deliv[i] = t_del - t0;
        ack[i] = t_ack - t0;
    }
    qsort(deliv, samples, sizeof *deliv, cmp_u64);
    qsort(ack, samples, sizeof *ack, cmp_u64);
    printf(
        "  one live subscriber, one append at a time (%u samples): append-to-delivery p50 %.0f us, "
        "p99 %.0f us; PublishEvent ack p50 %.0f us, p99 %.0f us\n",
        samples, pct_us(deliv, samples, 0.5), pct_us(deliv, samples, 0.99),
        pct_us(ack, samples, 0.5), pct_us(ack, samples, 0.99));
    fflush(stdout);
    free(data);
    free(deliv);
    free(ack);
    cancel_streams(&st, &ps, 1);
}

/* Merges every stream's latency samples and resets them. */
static size_t take_latencies(stream_t *ss, size_t n, uint64_t **out)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        total += ss[i].n_lat;
    *out = xcalloc(total, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        memcpy(*out + k, ss[i].lat, ss[i].n_lat * sizeof **out);
        k += ss[i].n_lat;
        ss[i].n_lat = 0;
    }
    qsort(*out, total, sizeof **out, cmp_u64);
    return total;
}

/* 100 live subscribers: first one append at a time (the latency of each
 * delivery, until the last subscriber has it), then 16 appends in flight
 * (the aggregate delivery rate; past the server's capacity subscribers
 * fall behind and read from the log, and latency is queueing). */
static int bench_fanout_live(server_t *s, size_t n_subs, unsigned samples, uint64_t n_events)
{
    stream_t *ss = xcalloc(n_subs, sizeof *ss);
    stream_t **ps = xcalloc(n_subs, sizeof *ps);
    live_streams(s, ss, ps, n_subs, 1);
    char *data = xcalloc(1, data_len + 32);
    uint64_t *last_of = xcalloc(samples, sizeof *last_of);
    for (unsigned i = 0; i < samples; i++) {
        memset(data, 'd', data_len);
        data[data_len] = 0;
        uint64_t t0 = now_ns();
        int k = snprintf(data, data_len + 1, "t=%" PRIu64 ";", t0);
        if ((size_t)k < data_len) data[k] = 'd';
        uint64_t seq = publish_one(s, data);
        wait_delivered(ps, n_subs, seq);
        last_of[i] = now_ns() - t0;
    }
    free(data);
    uint64_t *lat;
    size_t n_lat = take_latencies(ss, n_subs, &lat);
    qsort(last_of, samples, sizeof *last_of, cmp_u64);
    printf(
        "  %zu live subscribers, one append at a time (%u appends): append-to-delivery p50 %.0f "
        "us, p99 "
        "%.0f us over %zu deliveries; until the last subscriber has it p50 %.0f us, p99 %.0f us\n",
        n_subs, samples, pct_us(lat, n_lat, 0.5), pct_us(lat, n_lat, 0.99), n_lat,
        pct_us(last_of, samples, 0.5), pct_us(last_of, samples, 0.99));
    free(lat);
    free(last_of);

    uint64_t first = 0, last = 0, from = ss[0].last_seq + 1;
    for (size_t i = 0; i < n_subs; i++)
        ss[i].msgs = 0;
    double srv0 = proc_cpu_s(s->pid), cli0 = self_cpu_s();
    uint64_t t0 = now_ns();
    publish_many(s, n_events, 16, &first, &last, 1);
    uint64_t t_pub = now_ns();
    wait_delivered(ps, n_subs, last);
    uint64_t t1 = now_ns();
    double srv1 = proc_cpu_s(s->pid), cli1 = self_cpu_s();
    uint64_t delivered = 0;
    int exact = 1;
    for (size_t i = 0; i < n_subs; i++) {
        delivered += ss[i].msgs;
        /* Every event from the first after the paced part to the last,
         * once, in order (the workflow's automatic checkpoints included). */
        if (ss[i].disorder || ss[i].last_seq < last || ss[i].msgs != ss[i].last_seq - from + 1)
            exact = 0;
    }
    n_lat = take_latencies(ss, n_subs, &lat);
    double secs = (double)(t1 - t0) / 1e9;
    printf("  %zu live subscribers, 16 appends in flight: %" PRIu64
           " events appended at %.0f/s; %" PRIu64 " deliveries at %.0f/s aggregate, all done %.2f "
                                                  "s after the last append; every subscriber got "
           "every event once, in order: %s\n",
           n_subs, last - first + 1, (double)(last - first + 1) / ((double)(t_pub - t0) / 1e9),
           delivered, (double)delivered / secs, (double)(t1 - t_pub) / 1e9, exact ? "yes" : "NO");
    printf("  (there: append-to-delivery p50 %.0f us, p99 %.0f us; server %.2f us/delivery; client "
           "CPU %.0f%%)\n",
           pct_us(lat, n_lat, 0.5), pct_us(lat, n_lat, 0.99),
           srv0 >= 0 ? (srv1 - srv0) * 1e6 / (double)delivered : 0, 100.0 * (cli1 - cli0) / secs);
    fflush(stdout);
    free(lat);
    cancel_streams(ss, ps, n_subs);
    free(ss);
    free(ps);
    return exact;
}

/* ---- main -------------------------------------------------------------------- */

static int parse_target(const char *arg, server_t *s, const char *name)
{
    const char *at = strchr(arg, '@');
    if (!at) return -1;
    s->name = name;
    s->addr = strndup(arg, (size_t)(at - arg));
    s->pid = atoi(at + 1);
    return s->pid > 0 ? 0 : -1;
}

static int wait_serving(const char *addr, uint64_t since_ns)
{
    server_t s = {.name = "agentosd", .addr = strdup(addr)};
    server_connect(&s);
    struct timespec ts;
    for (int i = 0; i < 6000; i++) {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        unary_t u;
        unary_start(&u, &s, s.m_check, &req.base);
        wait_unary(&u);
        int ok = u.status == GRPC_STATUS_OK && u.resp;
        if (ok) {
            ProtobufCMessage *out;
            unary_end(&u, &grpc__health__v1__health_check_response__descriptor, &out);
            ok = ((Grpc__Health__V1__HealthCheckResponse *)out)->status ==
                 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
            protobuf_c_message_free_unpacked(out, NULL);
        } else {
            grpc_byte_buffer_destroy(u.req);
            if (u.resp) grpc_byte_buffer_destroy(u.resp);
            grpc_metadata_array_destroy(&u.md);
            grpc_metadata_array_destroy(&u.trailing);
            grpc_slice_unref(u.details);
            grpc_call_unref(u.call);
        }
        if (ok) {
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            printf("%.0f\n", (double)(now - since_ns) / 1e6);
            grpc_channel_destroy(s.ch);
            free(s.addr);
            return 0;
        }
        /* Not up yet: the connection attempt itself paces this loop. */
        struct timespec pause = {0, 5 * 1000000L};
        nanosleep(&pause, NULL);
    }
    return 1;
}

int main(int argc, char **argv)
{
    server_t srv[2];
    memset(srv, 0, sizeof srv);
    int have = 0, quick = 0;
    uint64_t events = 0, since = 0, settle_ms = 0;
    size_t event_bytes = 200;
    unsigned rounds = 0;
    const char *serving = NULL, *only = NULL;
    static const struct option longopts[] = {
        {"subject", required_argument, NULL, 's'},
        {"baseline", required_argument, NULL, 'b'},
        {"events", required_argument, NULL, 'e'},
        {"event-bytes", required_argument, NULL, 'z'},
        {"rounds", required_argument, NULL, 'r'},
        {"quick", no_argument, NULL, 'q'},
        {"wait-serving", required_argument, NULL, 'w'},
        {"since-ns", required_argument, NULL, 't'},
        {"only", required_argument, NULL, 'o'},
        {"settle-ms", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (parse_target(optarg, &srv[0], "agentosd")) die("bad --subject %s", optarg);
            have |= 1;
            break;
        case 'b':
            if (parse_target(optarg, &srv[1], "plain-grpc-loop")) die("bad --baseline %s", optarg);
            have |= 2;
            break;
        case 'e':
            events = strtoull(optarg, NULL, 10);
            break;
        case 'z':
            event_bytes = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            quick = 1;
            break;
        case 'w':
            serving = optarg;
            break;
        case 't':
            since = strtoull(optarg, NULL, 10);
            break;
        case 'o':
            only = optarg;
            break;
        case 'm':
            settle_ms = strtoull(optarg, NULL, 10);
            break;
        default:
            return 2;
        }
    }
    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    if (serving) return wait_serving(serving, since);
    if (have != 3) {
        fprintf(stderr,
                "usage: bench_stream --subject HOST:PORT@PID --baseline HOST:PORT@PID [--events N] "
                "[--event-bytes N] [--rounds N] [--quick]\n");
        return 2;
    }
    if (!events) events = quick ? 20000 : 200000;
    if (!rounds) rounds = quick ? 4 : 10;
    for (int i = 0; i < 2; i++) {
        server_connect(&srv[i]);
        if (!wait_connected(&srv[i], 20))
            die("%s (%s) does not accept connections", srv[i].name, srv[i].addr);
    }
    server_t *ao = &srv[0], *base = &srv[1];

    setup_workflow(ao, event_bytes);
    uint64_t first, last;
    uint64_t t0 = now_ns();
    publish_many(ao, events, 64, &first, &last, 0);
    double pub_s = (double)(now_ns() - t0) / 1e9;
    printf("bench/eventlog StreamEvents: workflow %s; backlog of %" PRIu64
           " events of %zu bytes published in "
           "%.1f s (%.0f/s with 64 PublishEvent calls in flight); seqs %" PRIu64 "..%" PRIu64 "\n",
           workflow_id, events, event_bytes, pub_s, (double)events / pub_s, first, last);
    printf("  baseline %s: a plain gRPC core server-streaming loop packing same-sized events, no "
           "storage\n",
           base->name);
    fflush(stdout);
    if (settle_ms) {
        /* Let RocksDB flush and compact what the burst wrote before
         * measuring reads: that background work runs on the server's
         * CPU and the plain loop has none. */
        struct timespec pause = {(time_t)(settle_ms / 1000), (long)(settle_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }

    uint64_t seg = quick ? 5000 : 40000;
    double r1 = 0, r1w = 0, r100 = 0;
    int exact = 1;
    /* --only PART runs one part (for profiling one server at a time). */
#define PART(name) (!only || !strcmp(only, name))
    if (PART("backlog"))
        r1 = compare(ao, base, "backlog, 1 subscriber", 1, first, last, seg, 0, rounds);
    if (PART("workflow"))
        r1w = compare(ao, base, "by workflow, 1 sub", 1, first, last, seg, 1, rounds);
    if (PART("backlog100"))
        r100 = compare(ao, base, "backlog, 100 subs", 100, first, last, quick ? 1000 : 4000, 0,
                       rounds < 4 ? rounds : 4);
    if (PART("latency")) bench_latency(ao, quick ? 300 : 2000);
    if (PART("live100"))
        exact = bench_fanout_live(ao, 100, quick ? 100 : 500, quick ? 2000 : 20000);
#undef PART

    printf("target: StreamEvents from the backlog to one subscriber >= 0.70x a plain gRPC "
           "server-streaming loop: %s (%.2fx whole log, %.2fx by workflow)\n",
           r1 >= 0.7 && r1w >= 0.7 ? "met" : "NOT met", r1, r1w);
    printf("(100 subscribers from the backlog: %.2fx the plain loop with 100 streams)\n", r100);
    for (int i = 0; i < 2; i++) {
        grpc_channel_destroy(srv[i].ch);
        free(srv[i].addr);
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    return exact ? 0 : 1;
}
