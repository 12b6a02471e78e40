/*
 * The RPC layer: a gRPC server on the core C API serving protobuf-c
 * services.
 *
 * Methods come from the protobuf-c service descriptors; the handlers table
 * adds what protobuf-c does not record (whether a method streams) and the
 * handler. Every method of a service is registered: one without a handler
 * answers UNIMPLEMENTED naming the method; a method of no known service
 * answers UNIMPLEMENTED from the catch-all slot.
 *
 * Threads: `threads` completion-queue threads, each with its own queue and
 * request slots, so that one call's events stay on one thread. Handlers run
 * on those threads and must not block; they finish calls later from any
 * thread.
 *
 * Call lifetime: the request passed to a handler lives in the call's arena
 * until the call ends. A handler finishes every call exactly once
 * (ao_rpc_reply / ao_rpc_fail for unary calls, ao_rpc_stream_finish for
 * streams), also after the client has gone away: then finishing only
 * releases the call.
 */
#ifndef AO_RPC_H
#define AO_RPC_H

#include "err.h"

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

typedef struct ao_rpc_server ao_rpc_server_t;
typedef struct ao_rpc_call ao_rpc_call_t;

typedef enum { AO_RPC_UNARY = 0, AO_RPC_SERVER_STREAMING = 1 } ao_rpc_kind_t;

/* Called on a completion-queue thread with the decoded request. */
typedef void (*ao_rpc_handler_fn)(ao_rpc_call_t *call, const ProtobufCMessage *request,
                                  void *ud);

typedef struct ao_rpc_method_impl {
    /* The method's name in the service ("Orchestrate"). */
    const char *name;
    ao_rpc_kind_t kind;
    ao_rpc_handler_fn handler;
    /* Whether callers must authenticate (the auth hook runs first). */
    int auth;
} ao_rpc_method_impl_t;

/* Authenticates a call from its metadata and peer: sets *tenant (malloc'd)
 * or returns AO_EUNAUTH / AO_EPERM with a message. Runs on the call's
 * thread. */
typedef int (*ao_rpc_auth_fn)(void *ud, grpc_call *call, const grpc_metadata_array *md,
                              char **tenant, ao_status_t *st);

typedef struct ao_rpc_options {
    /* Listening addresses ("127.0.0.1:7700"). */
    const char *const *listen;
    size_t n_listen;
    /* Credentials for every listening address (owned by the server after
     * create; NULL: plaintext). */
    grpc_server_credentials *creds;
    /* Completion-queue threads. 0: one per CPU this process may run on
     * (its affinity mask). */
    unsigned threads;
    /* Largest message received or sent. 0: 4 MiB. */
    size_t max_message_bytes;
    ao_rpc_auth_fn auth;
    void *auth_ud;
} ao_rpc_options_t;

/* Creates the server (not yet listening). Returns NULL with st set. */
ao_rpc_server_t *ao_rpc_server_create(const ao_rpc_options_t *opt, ao_status_t *st);

/* Adds a service: every method of `svc`, with the implementations found by
 * name in impls (n of them; a name that is not a method of svc is AO_EINVAL).
 * `ud` is passed to the handlers. Before ao_rpc_server_start only. */
int ao_rpc_server_add_service(ao_rpc_server_t *srv, const ProtobufCServiceDescriptor *svc,
                              const ao_rpc_method_impl_t *impls, size_t n, void *ud,
                              ao_status_t *st);

/* Binds the addresses and starts the threads. AO_EBUSY if an address is in
 * use (SO_REUSEPORT is off, so a second server on a port fails here). */
int ao_rpc_server_start(ao_rpc_server_t *srv, ao_status_t *st);

/* The port bound for listening address i (useful with port 0). */
int ao_rpc_server_port(ao_rpc_server_t *srv, size_t i);

/* Stops accepting calls, gives in-flight calls grace_ms to finish, then
 * cancels the rest (clients see UNAVAILABLE/CANCELLED), waits for every
 * call to be finished by its handler, and stops the threads. Call once,
 * from a thread that is not a completion-queue thread. Handlers must keep
 * finishing calls meanwhile. */
void ao_rpc_server_shutdown(ao_rpc_server_t *srv, unsigned grace_ms);

/* Frees a server that was shut down (or never started). */
void ao_rpc_server_destroy(ao_rpc_server_t *srv);

/* ---- inside a handler ------------------------------------------------ */

/* The caller's tenant ("" for methods without auth). Valid until the call
 * is finished. */
const char *ao_rpc_call_tenant(const ao_rpc_call_t *call);
/* The verified client-certificate identity (SAN or CN), or NULL. */
const char *ao_rpc_call_peer_identity(const ao_rpc_call_t *call);
/* The method path ("/agentos.v1.Orchestrator/Orchestrate"). */
const char *ao_rpc_call_method(const ao_rpc_call_t *call);
/* The call's deadline (gpr_inf_future when none). */
gpr_timespec ao_rpc_call_deadline(const ao_rpc_call_t *call);
/* Memory that lives as long as the call (the request's arena). */
void *ao_rpc_call_alloc(ao_rpc_call_t *call, size_t n);
/* A ProtobufCAllocator over the call's arena (free is a no-op). */
ProtobufCAllocator *ao_rpc_call_allocator(ao_rpc_call_t *call);
/* Whether the client has gone away, its deadline passed or the server is
 * shutting down. */
int ao_rpc_call_cancelled(ao_rpc_call_t *call);

/* Called once when the call is cancelled (client gone, deadline, shutdown)
 * before the handler finished it; on a completion-queue thread, without
 * locks held. The handler must then finish the call (it may do so inside
 * the callback). */
typedef void (*ao_rpc_cancel_fn)(ao_rpc_call_t *call, void *ud);
/* Registers the cancel callback. If the call is already cancelled the
 * callback runs at once, on this thread. */
void ao_rpc_call_on_cancel(ao_rpc_call_t *call, ao_rpc_cancel_fn fn, void *ud);

/* Finishes a unary call with a reply (packed at once: the caller keeps
 * ownership of msg). Any thread. */
void ao_rpc_reply(ao_rpc_call_t *call, const ProtobufCMessage *msg);
/* Finishes a unary or streaming call with an error status: code is an AO_E*
 * code (mapped with ao_err_grpc_status), msg names the culprit. */
void ao_rpc_fail(ao_rpc_call_t *call, int code, const char *msg);
/* The same from a status. */
void ao_rpc_fail_status(ao_rpc_call_t *call, const ao_status_t *st);

/* ---- server streaming -------------------------------------------------- */

typedef struct ao_rpc_stream_ops {
    /* The stream can take a message: return 1 with *out set to the packed
     * message (ownership passes to the RPC layer), or 0 when there is none
     * now (call ao_rpc_stream_kick when there is). Called with the call's
     * lock held, never concurrently for one call; must not call ao_rpc_*
     * functions on the same call. */
    int (*next)(ao_rpc_call_t *call, void *ud, grpc_slice *out);
    /* The call was cancelled (see ao_rpc_cancel_fn). Must lead to
     * ao_rpc_stream_finish. */
    void (*cancelled)(ao_rpc_call_t *call, void *ud);
    /* Optional: the call is being freed; no op runs after this. Frees ud. */
    void (*destroy)(void *ud);
} ao_rpc_stream_ops_t;

/* Makes the call a stream driven by ops (pull model: the RPC layer asks for
 * the next message whenever the previous one was written). Call once, from
 * the handler. */
void ao_rpc_stream_start(ao_rpc_call_t *call, const ao_rpc_stream_ops_t *ops, void *ud);
/* Keeps the call object alive (not the call itself: it may finish) until
 * the matching unref; for a thread that may kick a stream after releasing
 * the lock that guarded its ownership. Any thread. */
void ao_rpc_call_ref(ao_rpc_call_t *call);
void ao_rpc_call_unref(ao_rpc_call_t *call);

/* Tells the stream messages may be available: if no write is in flight,
 * next() is asked now, on this thread. Any thread; no-op once finished.
 * The caller must hold the call alive (own it, or hold a ref), and must not
 * hold a lock that next() takes. */
void ao_rpc_stream_kick(ao_rpc_call_t *call);
/* Ends the stream with a status (code 0: OK) after the messages already
 * handed over are written. Any thread, once. After it returns ops are not
 * called again. */
void ao_rpc_stream_finish(ao_rpc_call_t *call, int code, const char *msg);

/* Packs msg into a new slice (for stream next()). */
grpc_slice ao_rpc_pack(const ProtobufCMessage *msg);

#endif
