/*
 * Builtin agents: deterministic, in-process, for demos and tests (never the
 * only kind tested). Behaviour from AgentBackend.builtin, overridable per
 * task with TaskSpec.params of the same names (as strings): output (a
 * template: {{input}}, {{task.id}}, {{agent}}, {{attempt}}), score,
 * confidence, prompt_tokens, completion_tokens, documents, latency_ms
 * (timer-driven: no thread held), fail_first, fail_always, fail_retryable,
 * hang, findings ("k=v,k2=v2"), plan (proto3 JSON of a Plan), and
 * score_by_area ("area=score,...": the score of a refinement area).
 */
#ifndef AO_BUILTIN_H
#define AO_BUILTIN_H

#include "agent.h"

struct ao_timers;

int ao_builtin_agent_create(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                            ao_agent_t **out, ao_status_t *st);

#endif
