/*
 * The gRPC server core: registered methods, completion-queue threads, call
 * objects with their arena, unary replies and pull-driven server streams.
 *
 * Threads: each completion-queue thread owns its queue and the request
 * slots armed on it; a call's completions arrive on the thread whose queue
 * accepted it. A call's mutable state is guarded by its own lock because
 * handlers finish calls, and streams are kicked, from other threads.
 */
#include "rpc.h"

#include "log.h"
#include "mem.h"
#include "pbutil.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Outstanding request slots per method per completion queue. */
#define SLOTS_PER_METHOD 2

typedef struct tag {
    void (*fn)(struct tag *t, int ok);
} tag_t;

typedef struct method {
    char *path;
    const ProtobufCMessageDescriptor *input;
    ao_rpc_method_impl_t impl; /* handler NULL: UNIMPLEMENTED */
    void *ud;
    void *handle;
} method_t;

typedef struct cq_thread {
    ao_rpc_server_t *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
} cq_thread_t;

/* A request slot armed on a completion queue, waiting for a call. */
typedef struct slot {
    tag_t tag;
    cq_thread_t *t;
    method_t *m; /* NULL: the catch-all slot for unknown methods */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
} slot_t;

struct ao_rpc_server {
    grpc_server *server;
    cq_thread_t *threads;
    unsigned n_threads;
    method_t **methods;
    size_t n_methods;
    char **listen;
    size_t n_listen;
    int *ports;
    grpc_server_credentials *creds;
    ao_rpc_auth_fn auth;
    void *auth_ud;
    atomic_int shutting_down;
    int started;
    tag_t shutdown_tag;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int shutdown_done;
    int queues_shut;
};

struct ao_rpc_call {
    ao_rpc_server_t *srv;
    method_t *m;
    grpc_call *call;
    gpr_timespec deadline;
    char *path;
    char *tenant;
    char *identity;
    ProtobufCAllocator alloc;
    pthread_mutex_t lock;
    /* Atomic: taken by threads that must not take `lock` (kickers). */
    atomic_int refs;

    /* RECV_CLOSE_ON_SERVER, started when the call arrives. */
    tag_t close_tag;
    int close_cancelled;
    int cancelled;

    /* Sends. One batch with a message in flight at a time. */
    tag_t send_tag;
    grpc_byte_buffer *send_bb;
    grpc_slice status_details;
    int details_set;
    int md_sent;
    int sending;
    int status_sent;

    /* The handler's side. */
    int finished;
    ao_rpc_cancel_fn cancel_fn;
    void *cancel_ud;
    int cancel_notified;

    /* Streams. */
    const ao_rpc_stream_ops_t *ops;
    void *ops_ud;
    int pending_finish;
    int finish_code;
    char *finish_msg;
};

static void *arena_alloc(void *ud, size_t n)
{
    return grpc_call_arena_alloc(((ao_rpc_call_t *)ud)->call, n ? n : 1);
}

static void arena_free(void *ud, void *p)
{
    (void)ud;
    (void)p;
}

/* ---- call references --------------------------------------------------- */

/* Drops a reference; *destroy says whether it was the last (the caller
 * frees the call after releasing its lock). */
static void call_unref_locked(ao_rpc_call_t *c, int *destroy)
{
    *destroy = atomic_fetch_sub(&c->refs, 1) == 1;
}

static void call_free(ao_rpc_call_t *c)
{
    if (c->ops && c->ops->destroy) c->ops->destroy(c->ops_ud);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->details_set) grpc_slice_unref(c->status_details);
    grpc_call_unref(c->call);
    pthread_mutex_destroy(&c->lock);
    free(c->path);
    free(c->tenant);
    free(c->identity);
    free(c->finish_msg);
    free(c);
}

static void call_unref(ao_rpc_call_t *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) call_free(c);
}

static void start_batch_locked(ao_rpc_call_t *c, grpc_op *ops, size_t n, tag_t *tag)
{
    atomic_fetch_add(&c->refs, 1);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) ao_fatal("grpc_call_start_batch failed (%d) on %s", e, c->path);
}

/* ---- sending ------------------------------------------------------------- */

/* Adds SEND_INITIAL_METADATA to ops if not sent yet. */
static size_t add_initial_md(ao_rpc_call_t *c, grpc_op *ops, size_t n)
{
    if (c->md_sent) return n;
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = 1;
    return n + 1;
}

static void send_status_locked(ao_rpc_call_t *c, int code, const char *msg)
{
    grpc_op ops[2];
    size_t n = add_initial_md(c, ops, 0);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)ao_err_grpc_status(code);
    if (msg && *msg) {
        c->status_details = grpc_slice_from_copied_string(msg);
        c->details_set = 1;
        ops[n].data.send_status_from_server.status_details = &c->status_details;
    }
    c->status_sent = 1;
    c->sending = 1;
    start_batch_locked(c, ops, n + 1, &c->send_tag);
}

static void send_message_locked(ao_rpc_call_t *c, grpc_slice slice, int with_status)
{
    grpc_op ops[3];
    size_t n = add_initial_md(c, ops, 0);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    c->send_bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = c->send_bb;
    n++;
    if (with_status) {
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        c->status_sent = 1;
        n++;
    }
    c->sending = 1;
    start_batch_locked(c, ops, n, &c->send_tag);
}

/* Streams: write the next message, or the final status, if nothing is in
 * flight. */
static void pull_locked(ao_rpc_call_t *c)
{
    if (c->sending || c->status_sent || c->cancelled) return;
    if (c->pending_finish) {
        send_status_locked(c, c->finish_code, c->finish_msg);
        return;
    }
    if (!c->ops) return;
    grpc_slice s;
    if (c->ops->next(c, c->ops_ud, &s) == 1) send_message_locked(c, s, 0);
}

static void on_send_done(tag_t *t, int ok)
{
    ao_rpc_call_t *c = (ao_rpc_call_t *)((char *)t - offsetof(ao_rpc_call_t, send_tag));
    pthread_mutex_lock(&c->lock);
    c->sending = 0;
    if (c->send_bb) {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
    }
    /* A failed write means the call is gone; the close op reports it. */
    if (ok) pull_locked(c);
    int destroy;
    call_unref_locked(c, &destroy);
    pthread_mutex_unlock(&c->lock);
    if (destroy) call_free(c);
}

/* ---- cancellation -------------------------------------------------------- */

static void on_close(tag_t *t, int ok)
{
    ao_rpc_call_t *c = (ao_rpc_call_t *)((char *)t - offsetof(ao_rpc_call_t, close_tag));
    pthread_mutex_lock(&c->lock);
    int notify = 0;
    if (c->close_cancelled || !ok) {
        c->cancelled = 1;
        if (!c->finished && !c->cancel_notified) {
            c->cancel_notified = 1;
            notify = 1;
        }
    }
    ao_rpc_cancel_fn fn = c->cancel_fn;
    void *ud = c->cancel_ud;
    const ao_rpc_stream_ops_t *ops = c->ops;
    void *ops_ud = c->ops_ud;
    pthread_mutex_unlock(&c->lock);
    if (notify) {
        if (ops && ops->cancelled) ops->cancelled(c, ops_ud);
        else if (fn) fn(c, ud);
    }
    call_unref(c);
}

void ao_rpc_call_on_cancel(ao_rpc_call_t *call, ao_rpc_cancel_fn fn, void *ud)
{
    pthread_mutex_lock(&call->lock);
    call->cancel_fn = fn;
    call->cancel_ud = ud;
    int now = call->cancelled && !call->finished && !call->cancel_notified;
    if (now) call->cancel_notified = 1;
    pthread_mutex_unlock(&call->lock);
    if (now) fn(call, ud);
}

int ao_rpc_call_cancelled(ao_rpc_call_t *call)
{
    pthread_mutex_lock(&call->lock);
    int c = call->cancelled;
    pthread_mutex_unlock(&call->lock);
    return c;
}

/* ---- finishing ----------------------------------------------------------- */

static int begin_finish_locked(ao_rpc_call_t *c)
{
    if (c->finished) ao_fatal("call %s finished twice", c->path);
    c->finished = 1;
    return !c->cancelled;
}

void ao_rpc_reply(ao_rpc_call_t *call, const ProtobufCMessage *msg)
{
    pthread_mutex_lock(&call->lock);
    if (begin_finish_locked(call)) send_message_locked(call, ao_rpc_pack(msg), 1);
    int destroy;
    call_unref_locked(call, &destroy);
    pthread_mutex_unlock(&call->lock);
    if (destroy) call_free(call);
}

void ao_rpc_fail(ao_rpc_call_t *call, int code, const char *msg)
{
    if (code == 0) code = AO_EINTERNAL;
    pthread_mutex_lock(&call->lock);
    if (begin_finish_locked(call)) {
        if (call->ops) {
            call->pending_finish = 1;
            call->finish_code = code;
            call->finish_msg = ao_xstrdup(msg);
            pull_locked(call);
        } else {
            send_status_locked(call, code, msg);
        }
    }
    int destroy;
    call_unref_locked(call, &destroy);
    pthread_mutex_unlock(&call->lock);
    if (destroy) call_free(call);
}

void ao_rpc_fail_status(ao_rpc_call_t *call, const ao_status_t *st)
{
    ao_rpc_fail(call, st->code, st->msg);
}

void ao_rpc_stream_start(ao_rpc_call_t *call, const ao_rpc_stream_ops_t *ops, void *ud)
{
    pthread_mutex_lock(&call->lock);
    call->ops = ops;
    call->ops_ud = ud;
    int notify = call->cancelled && !call->finished && !call->cancel_notified;
    if (notify) call->cancel_notified = 1;
    else pull_locked(call);
    pthread_mutex_unlock(&call->lock);
    if (notify && ops->cancelled) ops->cancelled(call, ud);
}

void ao_rpc_call_ref(ao_rpc_call_t *call)
{
    atomic_fetch_add(&call->refs, 1);
}

void ao_rpc_call_unref(ao_rpc_call_t *call)
{
    call_unref(call);
}

void ao_rpc_stream_kick(ao_rpc_call_t *call)
{
    pthread_mutex_lock(&call->lock);
    if (!call->finished) pull_locked(call);
    pthread_mutex_unlock(&call->lock);
}

void ao_rpc_stream_finish(ao_rpc_call_t *call, int code, const char *msg)
{
    pthread_mutex_lock(&call->lock);
    if (begin_finish_locked(call)) {
        call->pending_finish = 1;
        call->finish_code = code;
        call->finish_msg = ao_xstrdup(msg);
        pull_locked(call);
    }
    int destroy;
    call_unref_locked(call, &destroy);
    pthread_mutex_unlock(&call->lock);
    if (destroy) call_free(call);
}

grpc_slice ao_rpc_pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    return s;
}

/* ---- accessors ------------------------------------------------------------ */

const char *ao_rpc_call_tenant(const ao_rpc_call_t *call)
{
    return call->tenant ? call->tenant : "";
}

const char *ao_rpc_call_peer_identity(const ao_rpc_call_t *call)
{
    return call->identity;
}

const char *ao_rpc_call_method(const ao_rpc_call_t *call)
{
    return call->path;
}

gpr_timespec ao_rpc_call_deadline(const ao_rpc_call_t *call)
{
    return call->deadline;
}

void *ao_rpc_call_alloc(ao_rpc_call_t *call, size_t n)
{
    return grpc_call_arena_alloc(call->call, n ? n : 1);
}

ProtobufCAllocator *ao_rpc_call_allocator(ao_rpc_call_t *call)
{
    return &call->alloc;
}

/* ---- accepting calls --------------------------------------------------- */

static void on_slot(tag_t *t, int ok);

static void arm_slot(cq_thread_t *t, method_t *m)
{
    slot_t *s = ao_xcalloc(1, sizeof *s);
    s->tag.fn = on_slot;
    s->t = t;
    s->m = m;
    grpc_metadata_array_init(&s->md);
    grpc_call_error e;
    if (m) {
        e = grpc_server_request_registered_call(t->srv->server, m->handle, &s->call, &s->deadline,
                                                &s->md, &s->payload, t->cq, t->cq, &s->tag);
    } else {
        grpc_call_details_init(&s->details);
        e = grpc_server_request_call(t->srv->server, &s->call, &s->details, &s->md, t->cq, t->cq,
                                     &s->tag);
    }
    if (e != GRPC_CALL_OK) ao_fatal("could not arm a request slot (%d)", e);
}

static void slot_free(slot_t *s)
{
    grpc_metadata_array_destroy(&s->md);
    if (!s->m) grpc_call_details_destroy(&s->details);
    if (s->payload) grpc_byte_buffer_destroy(s->payload);
    free(s);
}

static char *slice_dup(grpc_slice s)
{
    return ao_xstrndup((const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
}

/* The verified identity of the client certificate, if any. */
static char *peer_identity(grpc_call *call)
{
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (!ctx) return NULL;
    char *id = NULL;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        static const char *names[] = {"x509_subject_alternative_name", "x509_common_name"};
        for (size_t i = 0; i < 2 && !id; i++) {
            grpc_auth_property_iterator it =
                grpc_auth_context_find_properties_by_name(ctx, names[i]);
            const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
            if (p) id = ao_xstrndup(p->value, p->value_length);
        }
    }
    grpc_auth_context_release(ctx);
    return id;
}

static ao_rpc_call_t *call_new(ao_rpc_server_t *srv, method_t *m, slot_t *s)
{
    ao_rpc_call_t *c = ao_xcalloc(1, sizeof *c);
    c->srv = srv;
    c->m = m;
    c->call = s->call;
    c->deadline = m ? s->deadline : s->details.deadline;
    c->path = m ? ao_xstrdup(m->path) : slice_dup(s->details.method);
    c->alloc.alloc = arena_alloc;
    c->alloc.free = arena_free;
    c->alloc.allocator_data = c;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->refs, 1); /* the handler's, released when it finishes the call */
    c->close_tag.fn = on_close;
    c->send_tag.fn = on_send_done;
    c->identity = peer_identity(s->call);

    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    pthread_mutex_lock(&c->lock);
    start_batch_locked(c, &op, 1, &c->close_tag);
    pthread_mutex_unlock(&c->lock);
    return c;
}

static void dispatch(ao_rpc_server_t *srv, slot_t *s)
{
    method_t *m = s->m;
    ao_rpc_call_t *c = call_new(srv, m, s);
    if (!m) {
        char msg[300];
        snprintf(msg, sizeof msg, "unknown method %s", c->path);
        ao_rpc_fail(c, AO_EUNIMPL, msg);
        return;
    }
    ao_status_t st;
    ao_status_clear(&st);
    if (m->impl.auth && srv->auth) {
        if (srv->auth(srv->auth_ud, c->call, &s->md, &c->tenant, &st)) {
            ao_rpc_fail_status(c, &st);
            return;
        }
    }
    if (!m->impl.handler) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s is not implemented by this server", m->path);
        ao_rpc_fail(c, AO_EUNIMPL, msg);
        return;
    }
    if (!s->payload) {
        ao_rpc_fail(c, AO_EINVAL, "the request carried no message");
        return;
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, s->payload)) {
        ao_rpc_fail(c, AO_EINVAL, "the request message could not be read");
        return;
    }
    grpc_slice body = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *req = protobuf_c_message_unpack(
        m->input, &c->alloc, GRPC_SLICE_LENGTH(body), GRPC_SLICE_START_PTR(body));
    grpc_slice_unref(body);
    if (!req) {
        char msg[300];
        snprintf(msg, sizeof msg, "the request is not a valid %s message", m->input->name);
        ao_rpc_fail(c, AO_EINVAL, msg);
        return;
    }
    /* protobuf-c takes any bytes as a string; the other languages' clients
     * would then fail on every reply and event that carries it. */
    char path[200];
    if (!ao_pb_check_utf8(req, path, sizeof path)) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s: not valid UTF-8 (proto3 strings must be)", path);
        ao_rpc_fail(c, AO_EINVAL, msg);
        return;
    }
    m->impl.handler(c, req, m->ud);
}

static void on_slot(tag_t *t, int ok)
{
    slot_t *s = (slot_t *)t;
    ao_rpc_server_t *srv = s->t->srv;
    if (ok && !atomic_load(&srv->shutting_down)) arm_slot(s->t, s->m);
    if (ok) dispatch(srv, s);
    else if (s->call) grpc_call_unref(s->call);
    slot_free(s);
}

static void on_shutdown(tag_t *t, int ok)
{
    (void)ok;
    ao_rpc_server_t *srv = (ao_rpc_server_t *)((char *)t - offsetof(ao_rpc_server_t, shutdown_tag));
    pthread_mutex_lock(&srv->lock);
    srv->shutdown_done = 1;
    pthread_cond_broadcast(&srv->cond);
    pthread_mutex_unlock(&srv->lock);
}

static void *cq_main(void *arg)
{
    cq_thread_t *t = arg;
    pthread_setname_np(pthread_self(), "ao-rpc");
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_OP_COMPLETE) {
            tag_t *tag = ev.tag;
            tag->fn(tag, ev.success);
        }
    }
    return NULL;
}

/* ---- server lifecycle ---------------------------------------------------- */

/* The default thread count: one per CPU this process may run on (its
 * affinity mask: taskset, a cgroup cpuset), not the machine's count.
 * Handlers never block, so a thread beyond the CPUs only adds work: each
 * completion-queue thread has its own queue, and the thread that reads a
 * call's bytes must wake the thread that owns the call. Measured with
 * bench/rpc on one core: two threads took about 2 context switches and 35%
 * more CPU per unary call than one thread (0.04 switches), which put
 * agentosd behind gRPC C++'s callback server (0.9x calls/s); one thread is
 * ahead of it (about 1.1-1.2x calls/s, 0.8x CPU per call). */
static unsigned default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

ao_rpc_server_t *ao_rpc_server_create(const ao_rpc_options_t *opt, ao_status_t *st)
{
    if (opt->n_listen == 0) {
        ao_status_set(st, AO_EINVAL, "no listening address");
        if (opt->creds) grpc_server_credentials_release(opt->creds);
        return NULL;
    }
    grpc_init();
    ao_rpc_server_t *srv = ao_xcalloc(1, sizeof *srv);
    srv->n_threads = opt->threads ? opt->threads : default_threads();
    srv->creds = opt->creds;
    srv->auth = opt->auth;
    srv->auth_ud = opt->auth_ud;
    srv->n_listen = opt->n_listen;
    srv->listen = ao_xcalloc(opt->n_listen, sizeof *srv->listen);
    srv->ports = ao_xcalloc(opt->n_listen, sizeof *srv->ports);
    for (size_t i = 0; i < opt->n_listen; i++) srv->listen[i] = ao_xstrdup(opt->listen[i]);
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->cond, NULL);
    srv->shutdown_tag.fn = on_shutdown;

    int max = opt->max_message_bytes ? (int)opt->max_message_bytes : 4 * 1024 * 1024;
    grpc_arg args[3];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = max;
    /* Without this a second server on the same port starts silently and
     * the kernel splits the connections between the two. */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args cargs = {3, args};
    srv->server = grpc_server_create(&cargs, NULL);
    srv->threads = ao_xcalloc(srv->n_threads, sizeof *srv->threads);
    for (unsigned i = 0; i < srv->n_threads; i++) {
        srv->threads[i].srv = srv;
        srv->threads[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->threads[i].cq, NULL);
    }
    return srv;
}

int ao_rpc_server_add_service(ao_rpc_server_t *srv, const ProtobufCServiceDescriptor *svc,
                              const ao_rpc_method_impl_t *impls, size_t n, void *ud,
                              ao_status_t *st)
{
    for (size_t k = 0; k < n; k++) {
        int found = 0;
        for (unsigned i = 0; i < svc->n_methods; i++)
            if (!strcmp(svc->methods[i].name, impls[k].name)) found = 1;
        if (!found)
            return ao_status_set(st, AO_EINVAL, "%s has no method %s", svc->name, impls[k].name);
    }
    for (unsigned i = 0; i < svc->n_methods; i++) {
        const ProtobufCMethodDescriptor *md = &svc->methods[i];
        method_t *m = ao_xcalloc(1, sizeof *m);
        m->path = ao_xasprintf("/%s/%s", svc->name, md->name);
        m->input = md->input;
        m->impl.name = md->name;
        m->impl.auth = 1;
        m->ud = ud;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(impls[k].name, md->name)) m->impl = impls[k];
        m->handle = grpc_server_register_method(srv->server, m->path, NULL,
                                                GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (!m->handle) {
            int rc = ao_status_set(st, AO_EINVAL, "could not register %s", m->path);
            free(m->path);
            free(m);
            return rc;
        }
        srv->methods = ao_xrealloc(srv->methods, (srv->n_methods + 1) * sizeof *srv->methods);
        srv->methods[srv->n_methods++] = m;
    }
    return 0;
}

int ao_rpc_server_start(ao_rpc_server_t *srv, ao_status_t *st)
{
    grpc_server_credentials *creds =
        srv->creds ? srv->creds : grpc_insecure_server_credentials_create();
    srv->creds = NULL;
    int rc = 0;
    for (size_t i = 0; i < srv->n_listen && !rc; i++) {
        srv->ports[i] = grpc_server_add_http2_port(srv->server, srv->listen[i], creds);
        if (srv->ports[i] <= 0)
            rc = ao_status_set(st, AO_EBUSY,
                               "cannot listen on %s: the address is in use (another agentosd?) "
                               "or invalid",
                               srv->listen[i]);
    }
    grpc_server_credentials_release(creds);
    if (rc) return rc;
    grpc_server_start(srv->server);
    srv->started = 1;
    for (unsigned i = 0; i < srv->n_threads; i++) {
        cq_thread_t *t = &srv->threads[i];
        for (size_t k = 0; k < srv->n_methods; k++)
            for (int j = 0; j < SLOTS_PER_METHOD; j++) arm_slot(t, srv->methods[k]);
        arm_slot(t, NULL);
        if (pthread_create(&t->thread, NULL, cq_main, t)) ao_fatal("cannot start an RPC thread");
    }
    AO_INFO("rpc", "started threads=%u", srv->n_threads);
    return 0;
}

int ao_rpc_server_port(ao_rpc_server_t *srv, size_t i)
{
    return i < srv->n_listen ? srv->ports[i] : 0;
}

static int wait_shutdown(ao_rpc_server_t *srv, unsigned ms)
{
    gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                      gpr_time_from_millis((int64_t)ms, GPR_TIMESPAN));
    struct timespec ts = {until.tv_sec, until.tv_nsec};
    pthread_mutex_lock(&srv->lock);
    while (!srv->shutdown_done) {
        if (ms == 0) pthread_cond_wait(&srv->cond, &srv->lock);
        else if (pthread_cond_timedwait(&srv->cond, &srv->lock, &ts)) break;
    }
    int done = srv->shutdown_done;
    pthread_mutex_unlock(&srv->lock);
    return done;
}

void ao_rpc_server_shutdown(ao_rpc_server_t *srv, unsigned grace_ms)
{
    if (!srv->started) return;
    atomic_store(&srv->shutting_down, 1);
    grpc_server_shutdown_and_notify(srv->server, srv->threads[0].cq, &srv->shutdown_tag);
    if (!wait_shutdown(srv, grace_ms ? grace_ms : 1)) {
        AO_INFO("rpc", "grace period over, cancelling the remaining calls grace_ms=%u", grace_ms);
        grpc_server_cancel_all_calls(srv->server);
        wait_shutdown(srv, 0);
    }
    for (unsigned i = 0; i < srv->n_threads; i++) grpc_completion_queue_shutdown(srv->threads[i].cq);
    for (unsigned i = 0; i < srv->n_threads; i++) pthread_join(srv->threads[i].thread, NULL);
    srv->queues_shut = 1;
    srv->started = 0;
}

void ao_rpc_server_destroy(ao_rpc_server_t *srv)
{
    if (!srv) return;
    if (srv->started) ao_fatal("ao_rpc_server_destroy before shutdown");
    grpc_server_destroy(srv->server);
    for (unsigned i = 0; i < srv->n_threads; i++) {
        /* Never-started servers still have events to drain. */
        if (!srv->queues_shut) grpc_completion_queue_shutdown(srv->threads[i].cq);
        while (grpc_completion_queue_next(srv->threads[i].cq, gpr_inf_past(GPR_CLOCK_REALTIME),
                                          NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(srv->threads[i].cq);
    }
    for (size_t i = 0; i < srv->n_methods; i++) {
        free(srv->methods[i]->path);
        free(srv->methods[i]);
    }
    for (size_t i = 0; i < srv->n_listen; i++) free(srv->listen[i]);
    if (srv->creds) grpc_server_credentials_release(srv->creds);
    free(srv->methods);
    free(srv->listen);
    free(srv->ports);
    free(srv->threads);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->cond);
    free(srv);
    grpc_shutdown();
}
