/*
 * A binary min-heap of deadlines under one mutex, served by one thread that
 * sleeps on a condition variable until the earliest deadline.
 */
#include "timer.h"

#include "mem.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct entry {
    int64_t due_us; /* CLOCK_MONOTONIC */
    uint64_t id;
    ao_timer_fn fn;
    void *ud;
    size_t pos;
} entry_t;

struct ao_timers {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    entry_t **heap;
    size_t n, cap;
    json_t *live; /* id -> entry */
    uint64_t next_id;
    int stop;
};

static int before(const entry_t *a, const entry_t *b)
{
    return a->due_us < b->due_us || (a->due_us == b->due_us && a->id < b->id);
}

static void place(ao_timers_t *t, size_t i, entry_t *e)
{
    t->heap[i] = e;
    e->pos = i;
}

static void sift_up(ao_timers_t *t, size_t i)
{
    entry_t *e = t->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(e, t->heap[p])) break;
        place(t, i, t->heap[p]);
        i = p;
    }
    place(t, i, e);
}

static void sift_down(ao_timers_t *t, size_t i)
{
    entry_t *e = t->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const entry_t *best = e;
        if (l < t->n && before(t->heap[l], best)) {
            m = l;
            best = t->heap[l];
        }
        if (r < t->n && before(t->heap[r], best)) m = r;
        if (m == i) break;
        place(t, i, t->heap[m]);
        i = m;
    }
    place(t, i, e);
}

static void heap_remove(ao_timers_t *t, size_t i)
{
    entry_t *last = t->heap[--t->n];
    if (i == t->n) return;
    place(t, i, last);
    sift_down(t, i);
    sift_up(t, last->pos);
}

static void key_of(uint64_t id, char buf[24])
{
    snprintf(buf, 24, "%llu", (unsigned long long)id);
}

static void *timer_main(void *arg)
{
    ao_timers_t *t = arg;
    pthread_setname_np(pthread_self(), "ao-timer");
    /* The kernel may run a timed wait late by the thread's timer slack
     * (50 us by default), and every step of a chain of timed agents paid
     * it: ask for none. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        if (t->n == 0) {
            pthread_cond_wait(&t->cond, &t->lock);
            continue;
        }
        entry_t *e = t->heap[0];
        int64_t now = ao_mono_us();
        if (e->due_us > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = e->due_us - now;
            ts.tv_sec += wait / 1000000;
            ts.tv_nsec += (wait % 1000000) * 1000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&t->cond, &t->lock, &ts);
            continue;
        }
        heap_remove(t, 0);
        char key[24];
        key_of(e->id, key);
        json_object_del(t->live, key);
        pthread_mutex_unlock(&t->lock);
        e->fn(e->ud);
        free(e);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

ao_timers_t *ao_timers_create(void)
{
    ao_timers_t *t = ao_xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    t->live = json_object();
    t->next_id = 1;
    if (pthread_create(&t->thread, NULL, timer_main, t)) ao_fatal("cannot start the timer thread");
    return t;
}

void ao_timers_destroy(ao_timers_t *t)
{
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    for (size_t i = 0; i < t->n; i++) free(t->heap[i]);
    free(t->heap);
    json_decref(t->live);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
}

uint64_t ao_timer_add(ao_timers_t *t, uint64_t delay_ms, ao_timer_fn fn, void *ud)
{
    entry_t *e = ao_xmalloc(sizeof *e);
    e->due_us = ao_mono_us() + (int64_t)delay_ms * 1000;
    e->fn = fn;
    e->ud = ud;
    pthread_mutex_lock(&t->lock);
    e->id = t->next_id++;
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->heap = ao_xrealloc(t->heap, t->cap * sizeof *t->heap);
    }
    t->heap[t->n] = e;
    e->pos = t->n++;
    sift_up(t, e->pos);
    char key[24];
    key_of(e->id, key);
    json_object_set_new(t->live, key, json_integer((json_int_t)(intptr_t)e));
    if (t->heap[0] == e) pthread_cond_signal(&t->cond);
    uint64_t id = e->id;
    pthread_mutex_unlock(&t->lock);
    return id;
}

int ao_timer_cancel(ao_timers_t *t, uint64_t id, void **ud)
{
    if (ud) *ud = NULL;
    if (!id) return 0;
    char key[24];
    key_of(id, key);
    pthread_mutex_lock(&t->lock);
    json_t *v = json_object_get(t->live, key);
    entry_t *e = v ? (entry_t *)(intptr_t)json_integer_value(v) : NULL;
    if (e) {
        heap_remove(t, e->pos);
        json_object_del(t->live, key);
    }
    pthread_mutex_unlock(&t->lock);
    if (!e) return 0;
    if (ud) *ud = e->ud;
    free(e);
    return 1;
}

unsigned ao_timers_pending(ao_timers_t *t)
{
    pthread_mutex_lock(&t->lock);
    unsigned n = (unsigned)t->n;
    pthread_mutex_unlock(&t->lock);
    return n;
}
