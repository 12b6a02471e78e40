/* Unit tests for server/agents/breaker.c: CLOSED -> OPEN at the threshold,
 * fail fast while OPEN, one probe in HALF_OPEN, and what counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentos/v1/event.pb-c.h"
#include "breaker.h"

#include <string.h>

#define BS(x) AGENTOS__V1__BREAKER_STATE__BREAKER_STATE_##x

static void fail_call(ao_breaker_t *b, int64_t now, ao_breaker_change_t *ch)
{
    int probe;
    assert_true(ao_breaker_allow(b, now, &probe, ch));
    ao_breaker_record(b, 0, 1, probe, now, ch);
}

static void test_opens_at_threshold_and_recovers(void **state)
{
    (void)state;
    ao_breaker_t b;
    ao_breaker_init(&b, 3, 1000);
    ao_breaker_change_t ch;
    fail_call(&b, 0, &ch);
    fail_call(&b, 1, &ch);
    assert_int_equal(ch.to, 0);
    assert_int_equal(b.state, BS(CLOSED));
    fail_call(&b, 2, &ch);
    assert_int_equal(ch.from, BS(CLOSED));
    assert_int_equal(ch.to, BS(OPEN));
    assert_int_equal(ch.failures, 3);
    assert_non_null(strstr(ch.reason, "3 consecutive failures reached the threshold of 3"));
    /* Open: calls fail fast until the reset timeout. */
    int probe;
    assert_false(ao_breaker_allow(&b, 500, &probe, &ch));
    assert_false(ao_breaker_allow(&b, 1001, &probe, &ch));
    /* After it: one probe, HALF_OPEN; a second call waits. */
    assert_true(ao_breaker_allow(&b, 1003, &probe, &ch));
    assert_true(probe);
    assert_int_equal(ch.from, BS(OPEN));
    assert_int_equal(ch.to, BS(HALF_OPEN));
    int probe2;
    assert_false(ao_breaker_allow(&b, 1004, &probe2, &ch));
    /* The probe succeeds: closed, count reset. */
    ao_breaker_record(&b, 1, 1, 1, 1005, &ch);
    assert_int_equal(ch.to, BS(CLOSED));
    assert_int_equal(b.failures, 0);
    assert_true(ao_breaker_allow(&b, 1006, &probe, &ch));
    assert_false(probe);
}

static void test_failed_probe_reopens(void **state)
{
    (void)state;
    ao_breaker_t b;
    ao_breaker_init(&b, 1, 100);
    ao_breaker_change_t ch;
    fail_call(&b, 0, &ch);
    assert_int_equal(b.state, BS(OPEN));
    int probe;
    assert_true(ao_breaker_allow(&b, 150, &probe, &ch));
    ao_breaker_record(&b, 0, 1, probe, 150, &ch);
    assert_int_equal(ch.from, BS(HALF_OPEN));
    assert_int_equal(ch.to, BS(OPEN));
    /* The reset timeout counts again from the failed probe. */
    assert_false(ao_breaker_allow(&b, 200, &probe, &ch));
    assert_true(ao_breaker_allow(&b, 251, &probe, &ch));
}

static void test_what_does_not_count(void **state)
{
    (void)state;
    ao_breaker_t b;
    ao_breaker_init(&b, 2, 100);
    ao_breaker_change_t ch;
    int probe;
    /* Our own cancellations (counts = 0) never open it. */
    for (int i = 0; i < 10; i++) {
        assert_true(ao_breaker_allow(&b, i, &probe, &ch));
        ao_breaker_record(&b, 0, 0, probe, i, &ch);
    }
    assert_int_equal(b.state, BS(CLOSED));
    /* A success in between resets the consecutive count. */
    fail_call(&b, 20, &ch);
    assert_true(ao_breaker_allow(&b, 21, &probe, &ch));
    ao_breaker_record(&b, 1, 1, probe, 21, &ch);
    fail_call(&b, 22, &ch);
    assert_int_equal(b.state, BS(CLOSED));
    /* A probe cancelled by us frees its slot without a verdict. */
    fail_call(&b, 23, &ch);
    assert_int_equal(b.state, BS(OPEN));
    assert_true(ao_breaker_allow(&b, 200, &probe, &ch));
    ao_breaker_record(&b, 0, 0, probe, 201, &ch);
    assert_int_equal(b.state, BS(HALF_OPEN));
    assert_true(ao_breaker_allow(&b, 202, &probe, &ch));
    assert_true(probe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_at_threshold_and_recovers),
        cmocka_unit_test(test_failed_probe_reopens),
        cmocka_unit_test(test_what_does_not_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
