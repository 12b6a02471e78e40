/*
 * A pool job that holds its worker until the test opens the gate: for
 * tests that need every worker of an ao_pool busy.
 */
#ifndef AO_TESTGATE_H
#define AO_TESTGATE_H

#include <pthread.h>
#include <time.h>

typedef struct ao_test_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open, held;
} ao_test_gate_t;

#define AO_TEST_GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}

/* The job (an ao_pool_fn): holds its worker until ao_test_gate_open. */
static inline void ao_test_gate_hold(void *ud)
{
    ao_test_gate_t *g = ud;
    pthread_mutex_lock(&g->lock);
    g->held++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open) pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

/* Waits until n jobs hold their workers, at most 60 s: 0, or -1 when
 * they did not in time. */
static inline int ao_test_gate_wait_held(ao_test_gate_t *g, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    int rc = 0;
    pthread_mutex_lock(&g->lock);
    while (g->held < n && !rc) rc = pthread_cond_timedwait(&g->cond, &g->lock, &until);
    int ok = g->held >= n;
    pthread_mutex_unlock(&g->lock);
    return ok ? 0 : -1;
}

/* Lets every held job go. */
static inline void ao_test_gate_open(ao_test_gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

#endif
