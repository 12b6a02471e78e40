/*
 * Validation of a workflow before anything runs: every error is
 * INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a limit) with a message that
 * names the culprit: the tasks of a cycle, an unknown dependency or agent,
 * a duplicate id, a template placeholder that names a task that is not a
 * dependency, a limit exceeded.
 *
 * Pure functions; thread-safe.
 */
#ifndef AO_DAG_H
#define AO_DAG_H

#include "agentos/v1/config.pb-c.h"
#include "agentos/v1/workflow.pb-c.h"
#include "err.h"

#include <stddef.h>

/* What validation checks against: the configured agents and the limits. */
typedef struct ao_dag_env {
    const Agentos__V1__ServerConfig *cfg;
} ao_dag_env_t;

/* Validates a submitted workflow. */
int ao_dag_validate(const Agentos__V1__WorkflowSpec *spec, const ao_dag_env_t *env,
                    ao_status_t *st);

/* Lookup of tasks already in a running workflow, for plans. */
typedef struct ao_dag_existing {
    /* Returns 1 if task_id exists in the workflow and has completed. */
    int (*completed)(void *ud, const char *task_id);
    /* Returns 1 if task_id exists in the workflow (in any state). */
    int (*exists)(void *ud, const char *task_id);
    void *ud;
} ao_dag_existing_t;

/* Validates a planner's plan and rewrites it in place for the running
 * workflow: subtask ids become "PLANNER/ID", dependencies on other subtasks
 * are rewritten the same way, dependencies on existing tasks must name
 * completed ones. Checks ids, agents, kinds, templates, cycles, and that
 * the workflow stays within max_tasks (tasks_now + plan size) and the depth
 * (depth of the subtasks) within max_plan_depth. */
int ao_dag_validate_plan(const char *planner_id, Agentos__V1__TaskSpec **tasks, size_t n,
                         size_t tasks_now, unsigned max_tasks, unsigned depth,
                         unsigned max_plan_depth, const ao_dag_existing_t *existing,
                         const ao_dag_env_t *env, ao_status_t *st);

#endif
