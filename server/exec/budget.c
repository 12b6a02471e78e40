#include "budget.h"

#define DIM(x) AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_##x
#define ROLE(x) AGENTOS__V1__ROLE__ROLE_##x

const char *ao_budget_dim_name(int d)
{
    switch (d) {
    case DIM(TOKENS):
        return "tokens";
    case DIM(API_CALLS):
        return "api_calls";
    case DIM(DOCUMENTS):
        return "documents";
    case DIM(WALL_TIME):
        return "wall_time";
    case DIM(COST):
        return "cost";
    case DIM(TASKS):
        return "tasks";
    }
    return "?";
}

const char *ao_budget_unit(int d)
{
    switch (d) {
    case DIM(TOKENS):
        return "tokens";
    case DIM(API_CALLS):
        return "calls";
    case DIM(DOCUMENTS):
        return "documents";
    case DIM(WALL_TIME):
        return "ms";
    case DIM(COST):
        return "micro-USD";
    case DIM(TASKS):
        return "tasks";
    }
    return "";
}

typedef struct acc {
    ao_budget_alerted_fn alerted;
    void *ud;
    double warn;
    ao_budget_hit_t *out;
    size_t max, n;
} acc_t;

static void check_one(acc_t *a, int role, int dim, double used, double limit)
{
    if (limit <= 0) return;
    double f = used / limit;
    int stages[2] = {f >= a->warn, used > limit};
    for (int ex = 0; ex < 2; ex++) {
        if (!stages[ex] || a->alerted(a->ud, role, dim, ex) || a->n >= a->max) continue;
        a->out[a->n++] = (ao_budget_hit_t){dim, role, used, limit, f, ex};
    }
}

size_t ao_budget_check(const Agentos__V1__Budget *b, const ao_budget_usage_t *u,
                       ao_budget_alerted_fn alerted, void *ud, ao_budget_hit_t *out, size_t max)
{
    if (!b) return 0;
    acc_t a = {alerted, ud, b->warn_fraction > 0 ? b->warn_fraction : 0.8, out, max, 0};
    const Agentos__V1__Usage *us = u->usage;
    double tokens = us ? (double)us->total_tokens : 0;
    check_one(&a, 0, DIM(TOKENS), tokens, (double)b->max_tokens);
    check_one(&a, 0, DIM(API_CALLS), us ? (double)us->api_calls : 0, (double)b->max_api_calls);
    check_one(&a, 0, DIM(DOCUMENTS), us ? (double)us->documents : 0, (double)b->max_documents);
    check_one(&a, 0, DIM(WALL_TIME), (double)u->wall_ms, (double)b->max_wall_time_ms);
    check_one(&a, 0, DIM(COST), us ? (double)us->cost_micros : 0, (double)b->max_cost_micros);
    check_one(&a, 0, DIM(TASKS), (double)u->tasks, (double)b->max_tasks);
    const Agentos__V1__RoleSplit *rs = b->role_split;
    if (rs) {
        const struct {
            int role;
            double frac;
        } roles[] = {{ROLE(ORCHESTRATOR), rs->orchestrator},
                     {ROLE(EXTRACTION), rs->extraction},
                     {ROLE(ANALYSIS), rs->analysis},
                     {ROLE(SYNTHESIS), rs->synthesis}};
        for (int r = 0; r < 4; r++) {
            if (roles[r].frac <= 0) continue;
            const Agentos__V1__Usage *ru = NULL;
            for (size_t k = 0; k < u->n_roles; k++)
                if ((int)u->roles[k]->role == roles[r].role) ru = u->roles[k]->usage;
            check_one(&a, roles[r].role, DIM(TOKENS), ru ? (double)ru->total_tokens : 0,
                      (double)b->max_tokens * roles[r].frac);
            check_one(&a, roles[r].role, DIM(COST), ru ? (double)ru->cost_micros : 0,
                      (double)b->max_cost_micros * roles[r].frac);
        }
    }
    return a.n;
}

int ao_budget_call_allowed(const Agentos__V1__Budget *b, uint64_t calls)
{
    return !b || !b->max_api_calls || calls + 1 <= b->max_api_calls;
}
