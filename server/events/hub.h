/*
 * The subscriber hub: serves StreamEvents.
 *
 * A subscription replays the log from its starting sequence number (or
 * starts at "now"), then follows live events, with no gap and no duplicate
 * at the switch, also while events are appended concurrently. Events are
 * filtered by the caller's tenant (always), and optionally by workflow,
 * tasks and types. Only durable events are ever delivered: the processor
 * publishes each committed batch with ao_hub_publish, and backlog reads
 * never go past the durable sequence number.
 *
 * A slow subscriber never slows the processor or other subscribers: each
 * has a bounded buffer (Limits.subscriber_buffer events); when it is full
 * the subscriber drops back to reading the log until it has caught up, then
 * switches to live again. A client that goes away or whose deadline passes
 * is removed at once. At most Limits.max_subscribers at a time
 * (RESOURCE_EXHAUSTED beyond).
 *
 * Threads: ao_hub_publish on the processor thread (must be quick: it only
 * hands references over); the rest on RPC threads and the main thread. The
 * hub may run its own thread to fan events out.
 */
#ifndef AO_HUB_H
#define AO_HUB_H

#include "agentos/v1/orchestrator.pb-c.h"
#include "eventlog.h"
#include "processor.h"
#include "rpc.h"

typedef struct ao_hub ao_hub_t;

typedef struct ao_hub_options {
    /* Read for backlogs (thread-safe reads). */
    ao_log_t *log;
    /* The durable sequence number at start (the log's last). */
    uint64_t durable_seq;
    /* Limits.subscriber_buffer and Limits.max_subscribers. */
    unsigned buffer_events;
    unsigned max_subscribers;
} ao_hub_options_t;

ao_hub_t *ao_hub_create(const ao_hub_options_t *opt);

/* Records that workflow_id belongs to tenant (the workflows that exist at
 * start; later ones are learned from WORKFLOW_SUBMITTED events). Used to
 * answer NOT_FOUND for a workflow filter naming a workflow the caller does
 * not own. Any thread. */
void ao_hub_add_workflow(ao_hub_t *hub, const char *workflow_id, const char *tenant);

/* A committed batch (see ao_proc_publish_fn; ud is the hub). */
void ao_hub_publish(void *hub, ao_evref_t *const *evs, size_t n, uint64_t durable_seq);

/* The StreamEvents handler: ud is the hub. Validates the request
 * (INVALID_ARGUMENT naming the field; NOT_FOUND for a workflow the tenant
 * does not own; RESOURCE_EXHAUSTED past max_subscribers) and streams. */
void ao_hub_stream_events(ao_rpc_call_t *call, const ProtobufCMessage *req, void *ud);

/* Current subscriber count. Any thread. */
unsigned ao_hub_subscribers(ao_hub_t *hub);

/* Ends every stream with UNAVAILABLE ("agentosd is shutting down") and
 * refuses new ones, so that shutdown does not wait for them. Main thread. */
void ao_hub_shutdown(ao_hub_t *hub);

/* Frees the hub after the RPC server has shut down. */
void ao_hub_destroy(ao_hub_t *hub);

#endif
