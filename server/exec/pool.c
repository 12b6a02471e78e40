#include "pool.h"

#include "fairq.h"
#include "mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct job {
    ao_pool_fn fn;
    void *ud;
} job_t;

struct ao_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    ao_fairq_t *q;
    int stop;
    unsigned n;
    pthread_t *threads;
};

static void *worker(void *arg)
{
    ao_pool_t *p = arg;
    pthread_setname_np(pthread_self(), "ao-worker");
    pthread_mutex_lock(&p->lock);
    for (;;) {
        job_t *j = ao_fairq_pop(p->q);
        if (!j) {
            if (p->stop) break;
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        j->fn(j->ud);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

ao_pool_t *ao_pool_create(unsigned threads)
{
    ao_pool_t *p = ao_xcalloc(1, sizeof *p);
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 2;
    }
    p->n = threads;
    p->q = ao_fairq_create();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = ao_xcalloc(threads, sizeof *p->threads);
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&p->threads[i], NULL, worker, p)) ao_fatal("cannot start a worker thread");
    return p;
}

void ao_pool_destroy(ao_pool_t *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n; i++) pthread_join(p->threads[i], NULL);
    ao_fairq_destroy(p->q);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p->threads);
    free(p);
}

void ao_pool_submit(ao_pool_t *p, const char *key, ao_pool_fn fn, void *ud)
{
    job_t *j = ao_xmalloc(sizeof *j);
    j->fn = fn;
    j->ud = ud;
    pthread_mutex_lock(&p->lock);
    ao_fairq_push(p->q, key, j);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

unsigned ao_pool_threads(const ao_pool_t *p)
{
    return p->n;
}
