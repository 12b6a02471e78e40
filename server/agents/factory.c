/*
 * Makes an agent backend of the configured kind.
 */
#include "agent.h"
#include "builtin.h"

#include <stdio.h>

struct ao_timers;

int ao_agent_factory(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                     ao_agent_t **out, ao_status_t *st);
void ao_agent_factory_shutdown(void);

int ao_agent_factory(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                     ao_agent_t **out, ao_status_t *st)
{
    switch (cfg->kind) {
    case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_BUILTIN:
        return ao_builtin_agent_create(cfg, timers, out, st);
    default:
        return ao_status_set(st, AO_EUNIMPL, "backend kind %d is not available in this build",
                             cfg->kind);
    }
}

void ao_agent_factory_shutdown(void)
{
}
