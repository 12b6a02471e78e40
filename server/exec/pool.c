#include "pool.h"

#include "fairq.h"
#include "mem.h"

#include <pthread.h>
#include <stdatomic.h>
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

/* ---- shared work -------------------------------------------------------------- */

struct ao_pool_share {
    size_t n, chunk;
    ao_pool_range_fn fn;
    void *ud;
    atomic_size_t next, done;
    atomic_int refs; /* the caller's and each job's */
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void share_unref(ao_pool_share_t *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}

/* Claims and runs chunks until none is left. */
static void share_work(ao_pool_share_t *s)
{
    for (;;) {
        size_t k = atomic_fetch_add(&s->next, s->chunk);
        if (k >= s->n) return;
        size_t end = s->n - k > s->chunk ? k + s->chunk : s->n;
        s->fn(s->ud, k, end);
        if (atomic_fetch_add(&s->done, end - k) + (end - k) == s->n) {
            pthread_mutex_lock(&s->lock);
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
        }
    }
}

static void share_job(void *ud)
{
    share_work(ud);
    share_unref(ud);
}

ao_pool_share_t *ao_pool_share(ao_pool_t *p, const char *key, size_t n, size_t chunk, unsigned helpers,
                               ao_pool_range_fn fn, void *ud)
{
    ao_pool_share_t *s = ao_xcalloc(1, sizeof *s);
    s->n = n;
    s->chunk = chunk ? chunk : 1;
    s->fn = fn;
    s->ud = ud;
    atomic_init(&s->next, 0);
    atomic_init(&s->done, 0);
    if (!p) helpers = 0;
    atomic_init(&s->refs, (int)helpers + 1);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    for (unsigned h = 0; h < helpers; h++) ao_pool_submit(p, key, share_job, s);
    return s;
}

void ao_pool_join(ao_pool_share_t *s)
{
    share_work(s);
    pthread_mutex_lock(&s->lock);
    while (atomic_load(&s->done) < s->n) pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    share_unref(s);
}
