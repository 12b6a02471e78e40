/*
 * The worker pool that runs ready tasks' work (building agent requests,
 * running builtin agents, starting remote calls). Jobs are queued per
 * workflow and served round-robin (ao_fairq), so workflows share the pool
 * fairly. A job must not block on the network: remote agents are
 * asynchronous, so a task waiting on its agent holds no thread.
 *
 * Thread-safe.
 */
#ifndef AO_POOL_H
#define AO_POOL_H

typedef struct ao_pool ao_pool_t;
typedef void (*ao_pool_fn)(void *ud);

/* threads 0: the number of CPUs. */
ao_pool_t *ao_pool_create(unsigned threads);
/* Runs the jobs still queued, then stops the threads. */
void ao_pool_destroy(ao_pool_t *p);

/* Queues fn(ud) under the fairness key (a workflow id). Any thread. */
void ao_pool_submit(ao_pool_t *p, const char *key, ao_pool_fn fn, void *ud);

unsigned ao_pool_threads(const ao_pool_t *p);

#endif
