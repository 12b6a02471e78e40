/*
 * HTTP agent backends: `https` (the AgentTask / AgentResult JSON protocol of
 * docs/agent-protocol.md) and `openai` (OpenAI-compatible
 * /chat/completions). Both run on one shared ao_http_loop_t.
 */
#ifndef AO_HTTP_AGENT_H
#define AO_HTTP_AGENT_H

#include "agent.h"
#include "http_loop.h"

/* Create a backend from its config (the API key is read now). The loop
 * must outlive the agent. Errors name the config field. */
int ao_https_agent_create(const Agentos__V1__AgentBackend *cfg, ao_http_loop_t *loop, ao_agent_t **out,
                          ao_status_t *st);
int ao_openai_agent_create(const Agentos__V1__AgentBackend *cfg, ao_http_loop_t *loop, ao_agent_t **out,
                           ao_status_t *st);

#endif
