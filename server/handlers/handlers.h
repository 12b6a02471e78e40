/*
 * The agentos.v1.Orchestrator service: its handlers over the engine, the
 * worker pool and (for StreamEvents) the subscriber hub.
 */
#ifndef AO_HANDLERS_H
#define AO_HANDLERS_H

#include "rpc.h"

struct ao_engine;
struct ao_pool;

typedef struct ao_handlers {
    struct ao_engine *engine;
    struct ao_pool *pool;
    /* StreamEvents (the hub's handler and its ud); NULL: UNIMPLEMENTED. */
    ao_rpc_handler_fn stream_fn;
    void *stream_ud;
} ao_handlers_t;

/* Adds the service to srv (before it starts). h must outlive the server. */
int ao_handlers_register(ao_handlers_t *h, ao_rpc_server_t *srv, ao_status_t *st);

#endif
