/*
 * Metrics in the Prometheus text format, served over plain HTTP at
 * http://METRICS_LISTEN/metrics (ServerConfig.metrics_listen).
 *
 * Counters are process-wide atomics any thread bumps; gauges are read
 * through callbacks when scraped.
 *
 * Thread-safe.
 */
#ifndef AO_METRICS_H
#define AO_METRICS_H

#include "err.h"

#include <stdatomic.h>
#include <stdint.h>

/* XX(name, help) for each counter. */
#define AO_METRIC_COUNTERS(XX)                                                                     \
    XX(events_appended, "Events made durable in the log")                                          \
    XX(batches_committed, "Group commits written to the log")                                      \
    XX(commit_micros, "Time spent writing group commits, microseconds")                            \
    XX(workflows_submitted, "Workflows accepted")                                                  \
    XX(workflows_finished, "Workflows that reached a final status")                                \
    XX(workflows_failed, "Workflows that ended FAILED")                                            \
    XX(workflows_partial, "Workflows that ended PARTIAL_SUCCESS")                                  \
    XX(workflows_budget_exceeded, "Workflows halted by a budget")                                  \
    XX(workflows_cancelled, "Workflows cancelled")                                                 \
    XX(workflows_frozen, "Finished workflows reduced to their summary in memory")                  \
    XX(workflows_thawed, "Frozen workflows loaded whole again from their snapshot")                \
    XX(attempts_started, "Agent attempts started")                                                 \
    XX(attempts_failed, "Agent attempts that failed")                                              \
    XX(tasks_succeeded, "Tasks completed with a result")                                           \
    XX(tasks_failed, "Tasks that failed after their attempts")                                     \
    XX(budget_warnings, "BUDGET_WARNING events")                                                   \
    XX(breaker_changes, "Circuit breaker state changes")                                           \
    XX(rpc_unauthenticated, "Calls refused for missing or wrong credentials")

typedef struct ao_metrics_counters {
#define AO__METRIC_FIELD(name, help) atomic_uint_fast64_t name;
    AO_METRIC_COUNTERS(AO__METRIC_FIELD)
#undef AO__METRIC_FIELD
} ao_metrics_counters_t;

extern ao_metrics_counters_t ao_metrics;

#define AO_METRIC_ADD(name, n) atomic_fetch_add_explicit(&ao_metrics.name, (n), memory_order_relaxed)
#define AO_METRIC_INC(name) AO_METRIC_ADD(name, 1)

/* A gauge read at scrape time: appends lines of the text format to out
 * (an ao_sb_t *). */
typedef void (*ao_metrics_gauge_fn)(void *ud, void *out);

typedef struct ao_metrics_server ao_metrics_server_t;

/* Listens on addr ("127.0.0.1:9464"; port 0 picks one) and serves /metrics
 * on its own thread. gauges[0..n) are called at each scrape. */
int ao_metrics_start(const char *addr, ao_metrics_gauge_fn *gauges, void **gauge_uds, size_t n,
                     ao_metrics_server_t **out, ao_status_t *st);
/* The bound port. */
int ao_metrics_port(const ao_metrics_server_t *m);
void ao_metrics_stop(ao_metrics_server_t *m);

/* The text of a scrape (counters and gauges), malloc'd. */
char *ao_metrics_render(ao_metrics_gauge_fn *gauges, void **gauge_uds, size_t n);

#endif
