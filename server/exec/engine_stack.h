/*
 * The engine with the parts it runs on (the event log, timers, the worker
 * pool, the agent backends), made in one call: for running workflows in
 * process, as tests and benchmarks do. agentosd builds the same parts
 * itself, with its RPC server and hub in between (server/server.c).
 */
#ifndef AO_ENGINE_STACK_H
#define AO_ENGINE_STACK_H

#include "agentos/v1/config.pb-c.h"
#include "backends.h"
#include "engine.h"
#include "err.h"
#include "eventlog.h"
#include "pool.h"
#include "timer.h"

typedef struct ao_engine_stack {
    ao_log_t *log;
    ao_timers_t *timers;
    ao_pool_t *pool;
    ao_backends_t *backends;
    ao_engine_t *engine;
} ao_engine_stack_t;

/* Opens the log in dir (WAL synced or not) and makes the engine on it,
 * with cfg's backends and a pool of pool_threads (0: one per CPU), then
 * recovers what the log holds. Not started. On failure nothing is left
 * open. cfg must outlive the stack. */
int ao_engine_stack_open(const Agentos__V1__ServerConfig *cfg, const char *dir, int sync,
                         unsigned pool_threads, ao_engine_stack_t *s, ao_status_t *st);

/* Stops the engine (if it was started), frees every part, closes the log. */
void ao_engine_stack_close(ao_engine_stack_t *s, int started);

#endif
