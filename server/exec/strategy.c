#include "strategy.h"

#include "mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double cap1(double x)
{
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

void ao_strategy_decide(const Agentos__V1__WorkflowSpec *spec, ao_strategy_choice_t *out)
{
    size_t n = spec->n_tasks;
    /* Distinct agents. */
    json_t *agents = json_object();
    for (size_t i = 0; i < n; i++)
        if (*spec->tasks[i]->agent) json_object_set_new(agents, spec->tasks[i]->agent, json_true());
    size_t domains = json_object_size(agents);
    json_decref(agents);
    /* Levels: level(t) = 1 + max level of its deps (the spec is validated
     * acyclic: iterate to a fixpoint, at most n rounds). */
    json_t *index = json_object();
    for (size_t i = 0; i < n; i++) json_object_set_new(index, spec->tasks[i]->id, json_integer((json_int_t)i));
    unsigned *level = ao_xcalloc(n ? n : 1, sizeof *level);
    for (size_t i = 0; i < n; i++) level[i] = 1;
    for (size_t round = 0, changed = 1; changed && round < n; round++) {
        changed = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < spec->tasks[i]->n_depends_on; k++) {
                json_t *d = json_object_get(index, spec->tasks[i]->depends_on[k]);
                if (d && level[json_integer_value(d)] + 1 > level[i]) {
                    level[i] = level[json_integer_value(d)] + 1;
                    changed = 1;
                }
            }
    }
    unsigned depth = 0, width = 0;
    unsigned *count = ao_xcalloc(n + 2, sizeof *count);
    for (size_t i = 0; i < n; i++) {
        if (level[i] > depth) depth = level[i];
        if (level[i] <= n + 1 && ++count[level[i]] > width) width = count[level[i]];
    }
    free(count);
    free(level);
    json_decref(index);

    double c = 0.45 * cap1((double)(domains ? domains - 1 : 0) / 3.0) +
               0.35 * cap1((double)(width ? width - 1 : 0) / 3.0) +
               0.20 * cap1((double)(depth ? depth - 1 : 0) / 3.0);
    const Agentos__V1__AutoStrategy *a = spec->auto_strategy;
    int hinted = a && a->complexity_hint > 0 && a->complexity_hint <= 1;
    if (hinted) c = a->complexity_hint;
    double single_below = a && a->single_agent_below > 0 ? a->single_agent_below : 0.3;
    double full_from = a && a->full_multi_agent_from > 0 ? a->full_multi_agent_from : 0.7;
    int can_single = a && *a->single_agent;

    out->complexity = c;
    out->band = c < single_below ? "single_agent" : c < full_from ? "hierarchical_2_level"
                                                                  : "full_multi_agent";
    out->strategy = c < single_below && can_single ? AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT
                                                   : AGENTOS__V1__STRATEGY__STRATEGY_MULTI_AGENT;
    const char *shape_fmt = "%zu domain%s, width %u, depth %u";
    char shape[96];
    snprintf(shape, sizeof shape, shape_fmt, domains, domains == 1 ? "" : "s", width, depth);
    if (c < single_below && can_single)
        snprintf(out->reason, sizeof out->reason,
                 "complexity %.2f < %.2f (%s%s): one agent (%s) runs the job", c, single_below,
                 hinted ? "hint; " : "", shape, a->single_agent);
    else if (c < single_below)
        snprintf(out->reason, sizeof out->reason,
                 "complexity %.2f < %.2f (%s%s) but no single_agent is set: running the DAG", c,
                 single_below, hinted ? "hint; " : "", shape);
    else
        snprintf(out->reason, sizeof out->reason, "complexity %.2f >= %.2f (%s%s): %s", c,
                 single_below, hinted ? "hint; " : "", shape, out->band);
}
