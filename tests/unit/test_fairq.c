/* Unit tests for server/exec/fairq.c and pool.c: round-robin across
 * workflows, FIFO within one; the pool runs every job; shared work runs
 * every item once, with the pool free or busy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fairq.h"
#include "pool.h"
#include "testgate.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static void test_round_robin(void **state)
{
    (void)state;
    ao_fairq_t *q = ao_fairq_create();
    static int big[1000], small[3];
    for (int i = 0; i < 1000; i++) ao_fairq_push(q, "big", &big[i]);
    for (int i = 0; i < 3; i++) ao_fairq_push(q, "small", &small[i]);
    assert_int_equal(ao_fairq_len(q), 1003);
    /* The small workflow's 3 items come out within the first 6, in order. */
    int seen_small = 0, big_next = 0;
    for (int k = 0; k < 6; k++) {
        int *it = ao_fairq_pop(q);
        if (it >= small && it < small + 3) assert_ptr_equal(it, &small[seen_small++]);
        else assert_ptr_equal(it, &big[big_next++]);
    }
    assert_int_equal(seen_small, 3);
    for (int k = big_next; k < 1000; k++) assert_ptr_equal(ao_fairq_pop(q), &big[k]);
    assert_null(ao_fairq_pop(q));
    assert_int_equal(ao_fairq_len(q), 0);
    ao_fairq_destroy(q);
}

static void test_remove(void **state)
{
    (void)state;
    ao_fairq_t *q = ao_fairq_create();
    int a, b, c;
    ao_fairq_push(q, "w", &a);
    ao_fairq_push(q, "w", &b);
    ao_fairq_push(q, "v", &c);
    assert_int_equal(ao_fairq_remove(q, "w", &a), 1);
    assert_int_equal(ao_fairq_remove(q, "w", &a), 0);
    assert_int_equal(ao_fairq_remove(q, "zz", &a), 0);
    assert_int_equal(ao_fairq_remove(q, "v", &c), 1);
    assert_ptr_equal(ao_fairq_pop(q), &b);
    assert_null(ao_fairq_pop(q));
    /* Items left in the queue at destroy are not ours to free. */
    ao_fairq_push(q, "x", &a);
    ao_fairq_destroy(q);
}

typedef struct counter {
    atomic_int n;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} counter_t;

static void job(void *ud)
{
    counter_t *c = ud;
    pthread_mutex_lock(&c->lock);
    atomic_fetch_add(&c->n, 1);
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void test_pool_runs_everything(void **state)
{
    (void)state;
    counter_t c = {0};
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    ao_pool_t *p = ao_pool_create(3);
    assert_int_equal(ao_pool_threads(p), 3);
    for (int i = 0; i < 5000; i++) ao_pool_submit(p, i % 2 ? "a" : "b", job, &c);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&c.lock);
    while (atomic_load(&c.n) < 5000)
        if (pthread_cond_timedwait(&c.cond, &c.lock, &until)) break;
    pthread_mutex_unlock(&c.lock);
    assert_int_equal(atomic_load(&c.n), 5000);
    /* Destroy runs what is still queued. */
    for (int i = 0; i < 100; i++) ao_pool_submit(p, "late", job, &c);
    ao_pool_destroy(p);
    assert_int_equal(atomic_load(&c.n), 5100);
    pthread_mutex_destroy(&c.lock);
    pthread_cond_destroy(&c.cond);
}

enum { ITEMS = 1000 };

typedef struct items {
    atomic_int runs[ITEMS];
    atomic_int calls;
} items_t;

static void run_items(void *ud, size_t begin, size_t end)
{
    items_t *it = ud;
    atomic_fetch_add(&it->calls, 1);
    for (size_t k = begin; k < end; k++) atomic_fetch_add(&it->runs[k], 1);
}

static void check_each_once(items_t *it)
{
    for (int k = 0; k < ITEMS; k++)
        if (atomic_load(&it->runs[k]) != 1) fail_msg("item %d ran %d times", k, atomic_load(&it->runs[k]));
}

/* Every item runs exactly once, in chunks of at most `chunk`, whether the
 * pool helps, has every worker busy (the join runs it all), or is absent. */
static void test_shared_work(void **state)
{
    (void)state;
    ao_pool_t *p = ao_pool_create(2);
    static items_t it;
    memset(&it, 0, sizeof it);
    ao_pool_share_t *s = ao_pool_share(p, "w", ITEMS, 7, 2, run_items, &it);
    ao_pool_join(s);
    check_each_once(&it);
    assert_int_equal(atomic_load(&it.calls), (ITEMS + 6) / 7);

    ao_test_gate_t g = AO_TEST_GATE_INIT;
    ao_pool_submit(p, "busy", ao_test_gate_hold, &g);
    ao_pool_submit(p, "busy2", ao_test_gate_hold, &g);
    assert_int_equal(ao_test_gate_wait_held(&g, 2), 0);
    memset(&it, 0, sizeof it);
    ao_pool_join(ao_pool_share(p, "w", ITEMS, 32, 2, run_items, &it));
    check_each_once(&it);
    ao_test_gate_open(&g); /* the late helpers find nothing to claim */
    ao_pool_destroy(p);

    memset(&it, 0, sizeof it);
    ao_pool_join(ao_pool_share(NULL, "w", ITEMS, 0, 3, run_items, &it));
    check_each_once(&it);
    assert_int_equal(atomic_load(&it.calls), ITEMS); /* chunk 0 is 1 */
    memset(&it, 0, sizeof it);
    ao_pool_join(ao_pool_share(NULL, "w", 0, 8, 0, run_items, &it));
    assert_int_equal(atomic_load(&it.calls), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_pool_runs_everything),
        cmocka_unit_test(test_shared_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
