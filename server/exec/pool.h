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

#include <stddef.h>

typedef struct ao_pool ao_pool_t;
typedef void (*ao_pool_fn)(void *ud);

/* threads 0: the number of CPUs. */
ao_pool_t *ao_pool_create(unsigned threads);
/* Runs the jobs still queued, then stops the threads. */
void ao_pool_destroy(ao_pool_t *p);

/* Queues fn(ud) under the fairness key (a workflow id). Any thread. */
void ao_pool_submit(ao_pool_t *p, const char *key, ao_pool_fn fn, void *ud);

unsigned ao_pool_threads(const ao_pool_t *p);

/* Work of n items shared between the caller and up to `helpers` pool
 * jobs: each claims chunks of `chunk` items from one counter and runs
 * fn(ud, begin, end) on them. ao_pool_share starts it and returns at once,
 * so the caller may do other work meanwhile; ao_pool_join runs on the
 * caller's thread the chunks no job has claimed, and waits only for those
 * a job is running: a busy pool never holds the caller up. Once the join
 * returns, fn is not called again and ud may go (a job that starts late
 * touches nothing but the share). p NULL or helpers 0: all in the join.
 * The share is the caller's until it joins. Any thread. */
typedef struct ao_pool_share ao_pool_share_t;
typedef void (*ao_pool_range_fn)(void *ud, size_t begin, size_t end);
ao_pool_share_t *ao_pool_share(ao_pool_t *p, const char *key, size_t n, size_t chunk, unsigned helpers,
                               ao_pool_range_fn fn, void *ud);
void ao_pool_join(ao_pool_share_t *s);

#endif
