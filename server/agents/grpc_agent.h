/*
 * gRPC agent backends: a remote agentos.v1.Agent over TLS.
 */
#ifndef AO_GRPC_AGENT_H
#define AO_GRPC_AGENT_H

#include "agent.h"

/* Creates a backend calling cfg->url ("host:port") with TLS channel
 * credentials from cfg->tls (CA bundle, client certificate for mTLS,
 * server_name override). Errors name the config field. */
int ao_grpc_agent_create(const Agentos__V1__AgentBackend *cfg, ao_agent_t **out, ao_status_t *st);

#endif
