/*
 * agentosd as a whole: the subsystems built from a ServerConfig, started
 * and stopped in order.
 */
#ifndef AO_SERVER_H
#define AO_SERVER_H

#include "agentos/v1/config.pb-c.h"
#include "err.h"

typedef struct ao_server ao_server_t;

/* Builds the server from cfg (the server takes ownership of cfg). Opens
 * the storage (AO_EBUSY if another agentosd has it), recovers unfinished
 * workflows, prepares the listeners. Returns 0 and *out, or an error with
 * st naming what failed. Main thread, with SIGINT/SIGTERM blocked. */
int ao_server_create(Agentos__V1__ServerConfig *cfg, ao_server_t **out, ao_status_t *st);

/* Binds and starts serving. AO_EBUSY if an address is in use. */
int ao_server_start(ao_server_t *srv, ao_status_t *st);

/* Stops: refuses new calls, ends streams, gives calls the grace period,
 * cancels the rest, stops the executor and flushes the log. */
void ao_server_stop(ao_server_t *srv);

void ao_server_destroy(ao_server_t *srv);

#endif
