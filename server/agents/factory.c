/*
 * Makes an agent backend of the configured kind. HTTP backends share one
 * libcurl multi loop, created with the first of them.
 */
#include "agent.h"
#include "builtin.h"
#include "grpc_agent.h"
#include "http_agent.h"

#include <pthread.h>
#include <stdio.h>

struct ao_timers;

int ao_agent_factory(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                     ao_agent_t **out, ao_status_t *st);
void ao_agent_factory_shutdown(void);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ao_http_loop_t *http_loop;

static ao_http_loop_t *shared_loop(void)
{
    pthread_mutex_lock(&lock);
    if (!http_loop) http_loop = ao_http_loop_create();
    ao_http_loop_t *l = http_loop;
    pthread_mutex_unlock(&lock);
    return l;
}

int ao_agent_factory(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                     ao_agent_t **out, ao_status_t *st)
{
    switch (cfg->kind) {
    case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_BUILTIN:
        return ao_builtin_agent_create(cfg, timers, out, st);
    case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_HTTPS:
        return ao_https_agent_create(cfg, shared_loop(), out, st);
    case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_OPENAI:
        return ao_openai_agent_create(cfg, shared_loop(), out, st);
    case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_GRPC:
        return ao_grpc_agent_create(cfg, out, st);
    default:
        return ao_status_set(st, AO_EINVAL, "unknown backend kind %d", cfg->kind);
    }
}

/* After every backend is destroyed. */
void ao_agent_factory_shutdown(void)
{
    pthread_mutex_lock(&lock);
    ao_http_loop_t *l = http_loop;
    http_loop = NULL;
    pthread_mutex_unlock(&lock);
    ao_http_loop_destroy(l);
}
