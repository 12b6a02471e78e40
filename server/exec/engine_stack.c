/*
 * The engine with its parts, in process. See engine_stack.h.
 */
#include "engine_stack.h"

#include <string.h>

int ao_engine_stack_open(const Agentos__V1__ServerConfig *cfg, const char *dir, int sync,
                         unsigned pool_threads, ao_engine_stack_t *s, ao_status_t *st)
{
    memset(s, 0, sizeof *s);
    ao_log_options_t lo = {.dir = dir, .sync = sync};
    int rc = ao_log_open(&lo, &s->log, st);
    if (rc) return rc;
    s->timers = ao_timers_create();
    s->pool = ao_pool_create(pool_threads);
    if ((rc = ao_backends_create(cfg, s->timers, s->pool, &s->backends, st))) {
        ao_engine_stack_close(s, 0);
        return rc;
    }
    ao_engine_options_t eo = {
        .cfg = cfg, .log = s->log, .backends = s->backends, .timers = s->timers, .pool = s->pool};
    s->engine = ao_engine_create(&eo);
    if ((rc = ao_engine_recover(s->engine, st))) {
        ao_engine_stack_close(s, 0);
        return rc;
    }
    return 0;
}

void ao_engine_stack_close(ao_engine_stack_t *s, int started)
{
    if (s->engine) {
        if (started) ao_engine_stop(s->engine);
        ao_engine_destroy(s->engine);
    }
    if (s->backends) ao_backends_destroy(s->backends);
    if (s->pool) ao_pool_destroy(s->pool);
    if (s->timers) ao_timers_destroy(s->timers);
    if (s->log) ao_log_close(s->log);
    memset(s, 0, sizeof *s);
}
