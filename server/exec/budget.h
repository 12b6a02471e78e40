/*
 * Budget checks (design note, "Resource Allocation and Budgeting" and "Cost
 * Monitoring and Alerts"): which limits of a budget a usage has crossed,
 * at the warning fraction (0.8 by default) and past the limit.
 *
 * Pure; thread-safe.
 */
#ifndef AO_BUDGET_H
#define AO_BUDGET_H

#include "agentos/v1/state.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ao_budget_hit {
    int dimension; /* Agentos__V1__BudgetDimension */
    int role;      /* Agentos__V1__Role; ROLE_UNSPECIFIED: the whole budget */
    double used;
    double limit;
    double fraction;
    int exceeded; /* 0: warning, 1: past the limit */
} ao_budget_hit_t;

/* What is being measured against a budget. */
typedef struct ao_budget_usage {
    const Agentos__V1__Usage *usage; /* may be NULL */
    uint64_t wall_ms;                /* elapsed since the start */
    uint32_t tasks;                  /* tasks so far (workflow budgets) */
    /* Per-role usage (workflow budgets with a role split). */
    Agentos__V1__RoleUsage *const *roles;
    size_t n_roles;
} ao_budget_usage_t;

/* Whether an alert was already emitted: (role, dimension, exceeded). */
typedef int (*ao_budget_alerted_fn)(void *ud, int role, int dimension, int exceeded);

/* Writes to out (room for max) the hits not yet alerted: a warning when
 * used >= warn_fraction * limit, an exceeded hit when used > limit. A
 * limit past which a warning was never emitted yields both. Returns the
 * count. */
size_t ao_budget_check(const Agentos__V1__Budget *b, const ao_budget_usage_t *u,
                       ao_budget_alerted_fn alerted, void *ud, ao_budget_hit_t *out, size_t max);

/* Whether one more agent call would go past max_api_calls (calls counts the
 * calls made so far). */
int ao_budget_call_allowed(const Agentos__V1__Budget *b, uint64_t calls);

/* The unit of a dimension for messages ("tokens", "ms", ...). */
const char *ao_budget_unit(int dimension);
/* The short name of a dimension ("tokens", "api_calls", ...). */
const char *ao_budget_dim_name(int dimension);

#endif
