/*
 * libagentos-client: a C client for the agentos.v1.Orchestrator service.
 *
 * Messages are the protobuf-c types generated from idl/ (installed under
 * agentos/v1/). Every call returns the gRPC status code of the call (0 is
 * OK) and fills an ao_client_error_t with the code and the server's message
 * (which names the task, field or limit at fault).
 *
 * Threads: a client may be used from several threads at once (each call
 * has its own completion queue). A stream is used from one thread at a
 * time.
 *
 * Ownership: responses are allocated by the library and freed by the
 * caller with ao_client_free(). Requests stay the caller's.
 */
#ifndef AGENTOS_CLIENT_H
#define AGENTOS_CLIENT_H

#include <agentos/v1/event.pb-c.h>
#include <agentos/v1/orchestrator.pb-c.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ao_client ao_client_t;
typedef struct ao_client_stream ao_client_stream_t;

typedef struct ao_client_options {
    /* "host:port" of agentosd. Required. */
    const char *target;
    /* Sent as `authorization: Bearer TOKEN` on every call (NULL: none). */
    const char *token;
    /* 1: TLS (with ca_file, or the system's roots when ca_file is NULL);
     * 0: plaintext (loopback development servers). */
    int tls;
    /* PEM bundle of the CAs to trust. */
    const char *ca_file;
    /* Client certificate and key (PEM) for mTLS. */
    const char *cert_file;
    const char *key_file;
    /* The name to verify in the server's certificate when it differs from
     * the target's host. */
    const char *server_name;
    /* Default deadline of each call, ms. 0: 30,000. */
    unsigned timeout_ms;
} ao_client_options_t;

typedef struct ao_client_error {
    /* A grpc_status_code: 0 OK, 3 INVALID_ARGUMENT, 5 NOT_FOUND, 14
     * UNAVAILABLE, 16 UNAUTHENTICATED, ... */
    int code;
    /* The server's message, or what went wrong locally. */
    char message[512];
} ao_client_error_t;

/* Makes a client (no connection is made until the first call). Returns 0,
 * or a status code (INVALID_ARGUMENT for a bad option, an unreadable
 * certificate file) with err filled. Close with ao_client_close. */
int ao_client_connect(const ao_client_options_t *opt, ao_client_t **out, ao_client_error_t *err);

/* Closes the client. Every stream must be closed first. */
void ao_client_close(ao_client_t *client);

/* Frees a response or an event returned by the library. NULL is fine. */
void ao_client_free(void *message);

/* The name of a status code ("NOT_FOUND"). */
const char *ao_client_status_name(int code);

/* ---- unary calls ----------------------------------------------------
 * Each sends the request with the client's default deadline (or
 * timeout_ms of ao_client_call) and, on success, sets *resp to the reply.
 * On failure *resp is NULL. Any thread. */

int ao_client_orchestrate(ao_client_t *c, const Agentos__V1__OrchestrateRequest *req,
                          Agentos__V1__OrchestrateResponse **resp, ao_client_error_t *err);
int ao_client_get_workflow(ao_client_t *c, const Agentos__V1__GetWorkflowRequest *req,
                           Agentos__V1__Workflow **resp, ao_client_error_t *err);
int ao_client_list_workflows(ao_client_t *c, const Agentos__V1__ListWorkflowsRequest *req,
                             Agentos__V1__ListWorkflowsResponse **resp, ao_client_error_t *err);
int ao_client_cancel_workflow(ao_client_t *c, const Agentos__V1__CancelWorkflowRequest *req,
                              Agentos__V1__Workflow **resp, ao_client_error_t *err);
int ao_client_checkpoint(ao_client_t *c, const Agentos__V1__CheckpointRequest *req,
                         Agentos__V1__Checkpoint **resp, ao_client_error_t *err);
int ao_client_list_checkpoints(ao_client_t *c, const Agentos__V1__ListCheckpointsRequest *req,
                               Agentos__V1__ListCheckpointsResponse **resp, ao_client_error_t *err);
int ao_client_get_checkpoint(ao_client_t *c, const Agentos__V1__GetCheckpointRequest *req,
                             Agentos__V1__Checkpoint **resp, ao_client_error_t *err);
int ao_client_resume_workflow(ao_client_t *c, const Agentos__V1__ResumeWorkflowRequest *req,
                              Agentos__V1__OrchestrateResponse **resp, ao_client_error_t *err);
int ao_client_get_agent_health(ao_client_t *c, const Agentos__V1__GetAgentHealthRequest *req,
                               Agentos__V1__GetAgentHealthResponse **resp, ao_client_error_t *err);
int ao_client_publish_event(ao_client_t *c, const Agentos__V1__PublishEventRequest *req,
                            Agentos__V1__PublishEventResponse **resp, ao_client_error_t *err);

/* Any unary method of the service by name ("GetWorkflow"), with an explicit
 * deadline (0: the client's default). *resp is a message of resp_desc. */
int ao_client_call(ao_client_t *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, unsigned timeout_ms,
                   ProtobufCMessage **resp, ao_client_error_t *err);

/* ---- StreamEvents ------------------------------------------------------ */

/* Called for each event (borrowed: valid during the call). Return nonzero
 * to stop the stream. */
typedef int (*ao_client_event_fn)(void *ud, const Agentos__V1__Event *event);

/* Streams events to fn until fn returns nonzero (returns 0), the stream
 * ends or fails (returns its status), or timeout_ms passes (0: no deadline;
 * returns 4 DEADLINE_EXCEEDED). Blocks the calling thread. */
int ao_client_stream_events(ao_client_t *c, const Agentos__V1__StreamEventsRequest *req,
                            unsigned timeout_ms, ao_client_event_fn fn, void *ud,
                            ao_client_error_t *err);

/* The same as an iterator: open, then next until it stops, then close.
 * timeout_ms (0: none) bounds the whole stream. */
int ao_client_stream_open(ao_client_t *c, const Agentos__V1__StreamEventsRequest *req,
                          unsigned timeout_ms, ao_client_stream_t **out, ao_client_error_t *err);

/* Waits up to wait_ms (0: as long as it takes) for the next event: returns
 * 1 with *event set (free it with ao_client_free), 0 when none came in
 * time (call again), or -1
 * when the stream has ended (err holds its status; OK means it was closed
 * by the server cleanly). */
int ao_client_stream_next(ao_client_stream_t *s, unsigned wait_ms, Agentos__V1__Event **event,
                          ao_client_error_t *err);

/* Stops the stream (cancelling it if it is still open) and frees it. */
void ao_client_stream_close(ao_client_stream_t *s);

#ifdef __cplusplus
}
#endif

#endif
