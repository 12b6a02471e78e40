/* Unit tests for server/exec/timer.c: order, cancellation, many pending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "timer.h"
#include "util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct rec {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int order[16];
    int n;
} rec_t;

typedef struct arg {
    rec_t *r;
    int id;
} arg_t;

static void fired(void *ud)
{
    arg_t *a = ud;
    pthread_mutex_lock(&a->r->lock);
    a->r->order[a->r->n++] = a->id;
    pthread_cond_signal(&a->r->cond);
    pthread_mutex_unlock(&a->r->lock);
}

static int wait_for(rec_t *r, int n, int seconds)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&r->lock);
    while (r->n < n)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &until)) break;
    int got = r->n;
    pthread_mutex_unlock(&r->lock);
    return got;
}

static void test_fire_in_deadline_order(void **state)
{
    (void)state;
    rec_t r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0};
    ao_timers_t *t = ao_timers_create();
    arg_t a[4] = {{&r, 1}, {&r, 2}, {&r, 3}, {&r, 4}};
    int64_t start = ao_mono_us();
    ao_timer_add(t, 60, fired, &a[2]);
    ao_timer_add(t, 20, fired, &a[0]);
    uint64_t gone = ao_timer_add(t, 30, fired, &a[3]);
    ao_timer_add(t, 40, fired, &a[1]);
    void *ud = NULL;
    assert_int_equal(ao_timer_cancel(t, gone, &ud), 1);
    assert_ptr_equal(ud, &a[3]);
    assert_int_equal(ao_timer_cancel(t, gone, &ud), 0);
    assert_int_equal(wait_for(&r, 3, 10), 3);
    assert_true(ao_mono_us() - start >= 60000);
    assert_int_equal(r.order[0], 1);
    assert_int_equal(r.order[1], 2);
    assert_int_equal(r.order[2], 3);
    /* A fired timer cannot be cancelled. */
    assert_int_equal(ao_timers_pending(t), 0);
    ao_timers_destroy(t);
}

static int count;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t count_cond = PTHREAD_COND_INITIALIZER;

static void bump(void *ud)
{
    (void)ud;
    pthread_mutex_lock(&count_lock);
    count++;
    pthread_cond_signal(&count_cond);
    pthread_mutex_unlock(&count_lock);
}

static void test_many_pending_and_destroy(void **state)
{
    (void)state;
    ao_timers_t *t = ao_timers_create();
    uint64_t ids[10000];
    for (int i = 0; i < 10000; i++) ids[i] = ao_timer_add(t, (uint64_t)(i % 50), bump, NULL);
    /* Cancel every other one; the rest fire. */
    int cancelled = 0;
    for (int i = 0; i < 10000; i += 2) cancelled += ao_timer_cancel(t, ids[i], NULL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&count_lock);
    while (count + cancelled < 10000)
        if (pthread_cond_timedwait(&count_cond, &count_lock, &until)) break;
    pthread_mutex_unlock(&count_lock);
    assert_int_equal(count + cancelled, 10000);
    assert_true(cancelled > 0);
    /* Pending timers are dropped at destroy without running. */
    for (int i = 0; i < 100; i++) ao_timer_add(t, 3600000, bump, NULL);
    assert_int_equal(ao_timers_pending(t), 100);
    ao_timers_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fire_in_deadline_order),
        cmocka_unit_test(test_many_pending_and_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
