/*
 * The single- vs multi-agent decision (design note, "Progressive Cost
 * Optimization" and "Decision Framework"): a complexity estimate in [0, 1]
 * from the workflow's shape.
 *
 * Pure; thread-safe.
 */
#ifndef AO_STRATEGY_H
#define AO_STRATEGY_H

#include "agentos/v1/workflow.pb-c.h"

#include <stddef.h>

typedef struct ao_strategy_choice {
    int strategy;      /* Agentos__V1__Strategy: SINGLE_AGENT or MULTI_AGENT */
    double complexity; /* 0..1 */
    const char *band;  /* "single_agent", "hierarchical_2_level", "full_multi_agent" */
    char reason[256];
} ao_strategy_choice_t;

/* complexity = 0.45 * domains + 0.35 * parallelism + 0.20 * depth, each
 * term in [0, 1]:
 *   domains     (distinct agents of agent-calling tasks - 1) / 3, capped;
 *   parallelism (widest level of the DAG - 1) / 3, capped;
 *   depth       (longest dependency chain - 1) / 3, capped.
 * AutoStrategy.complexity_hint overrides the estimate. Below
 * single_agent_below (0.3) one agent runs the job, if one is configured. */
void ao_strategy_decide(const Agentos__V1__WorkflowSpec *spec, ao_strategy_choice_t *out);

#endif
