/*
 * grpc.health.v1.Health: Check and Watch for the server as a whole ("")
 * and for "agentos.v1.Orchestrator". Unauthenticated, as load balancers
 * expect.
 */
#ifndef AO_HEALTH_H
#define AO_HEALTH_H

#include "rpc.h"

typedef struct ao_health ao_health_t;

/* Creates the service and adds it to srv (before ao_rpc_server_start). The
 * status starts SERVING. */
int ao_health_create(ao_rpc_server_t *srv, ao_health_t **out, ao_status_t *st);

/* Marks the server NOT_SERVING (at shutdown): every Watch receives
 * NOT_SERVING and is then finished with OK, so that shutdown does not wait
 * for them. Any thread. */
void ao_health_shutdown(ao_health_t *h);

/* Frees the service, after the RPC server has shut down. */
void ao_health_destroy(ao_health_t *h);

#endif
