/* Unit tests for server/exec/budget.c: warnings at the fraction, excess past
 * the limit, role split, calls, wall time and tasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "budget.h"

#include <math.h>
#include <string.h>

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static int alerted_none(void *ud, int role, int dim, int ex)
{
    (void)ud;
    (void)role;
    (void)dim;
    (void)ex;
    return 0;
}

static int alerted_warned(void *ud, int role, int dim, int ex)
{
    (void)ud;
    (void)role;
    (void)dim;
    return !ex; /* warnings already emitted */
}

static void test_budget_warning_then_exceeded(void **state)
{
    (void)state;
    Agentos__V1__Budget b = AGENTOS__V1__BUDGET__INIT;
    b.max_tokens = 1000;
    b.max_cost_micros = 5000;
    Agentos__V1__Usage u = AGENTOS__V1__USAGE__INIT;
    ao_budget_usage_t bu = {&u, 0, 0, NULL, 0};
    ao_budget_hit_t h[8];
    u.total_tokens = 799;
    assert_int_equal(ao_budget_check(&b, &bu, alerted_none, NULL, h, 8), 0);
    u.total_tokens = 800; /* exactly 80% */
    assert_int_equal(ao_budget_check(&b, &bu, alerted_none, NULL, h, 8), 1);
    assert_int_equal(h[0].dimension, AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_TOKENS);
    assert_int_equal(h[0].exceeded, 0);
    NEAR(h[0].fraction, 0.8);
    u.total_tokens = 1000; /* 100% is not past it */
    assert_int_equal(ao_budget_check(&b, &bu, alerted_warned, NULL, h, 8), 0);
    u.total_tokens = 1001;
    assert_int_equal(ao_budget_check(&b, &bu, alerted_warned, NULL, h, 8), 1);
    assert_int_equal(h[0].exceeded, 1);
    /* Jumping past the limit at once yields the warning and the excess. */
    u.total_tokens = 0;
    u.cost_micros = 9000;
    assert_int_equal(ao_budget_check(&b, &bu, alerted_none, NULL, h, 8), 2);
    assert_int_equal(h[0].exceeded + h[1].exceeded, 1);
    /* A custom warning fraction. */
    b.warn_fraction = 0.5;
    u.cost_micros = 2600;
    assert_int_equal(ao_budget_check(&b, &bu, alerted_none, NULL, h, 8), 1);
    assert_int_equal(h[0].dimension, AGENTOS__V1__BUDGET_DIMENSION__BUDGET_DIMENSION_COST);
}

static void test_budget_role_split_and_calls(void **state)
{
    (void)state;
    Agentos__V1__Budget b = AGENTOS__V1__BUDGET__INIT;
    Agentos__V1__RoleSplit rs = AGENTOS__V1__ROLE_SPLIT__INIT;
    rs.orchestrator = 0.1;
    rs.analysis = 0.4;
    b.max_tokens = 100000;
    b.role_split = &rs;
    Agentos__V1__Usage total = AGENTOS__V1__USAGE__INIT, orch = AGENTOS__V1__USAGE__INIT;
    total.total_tokens = 20000;
    orch.total_tokens = 10001; /* over the orchestrator's 10% */
    Agentos__V1__RoleUsage ru = AGENTOS__V1__ROLE_USAGE__INIT;
    ru.role = AGENTOS__V1__ROLE__ROLE_ORCHESTRATOR;
    ru.usage = &orch;
    Agentos__V1__RoleUsage *rus[] = {&ru};
    ao_budget_usage_t bu = {&total, 0, 0, rus, 1};
    ao_budget_hit_t h[8];
    size_t n = ao_budget_check(&b, &bu, alerted_none, NULL, h, 8);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].role, AGENTOS__V1__ROLE__ROLE_ORCHESTRATOR);
        NEAR(h[i].limit, 10000);
    }
    b.max_api_calls = 3;
    assert_true(ao_budget_call_allowed(&b, 2));
    assert_false(ao_budget_call_allowed(&b, 3));
    assert_true(ao_budget_call_allowed(NULL, 1000));
    /* Wall time and task count. */
    Agentos__V1__Budget w = AGENTOS__V1__BUDGET__INIT;
    w.max_wall_time_ms = 1000;
    w.max_tasks = 10;
    ao_budget_usage_t wu = {NULL, 1500, 9, NULL, 0};
    n = ao_budget_check(&w, &wu, alerted_none, NULL, h, 8);
    assert_int_equal(n, 3); /* wall warn + exceeded, tasks warn (9 >= 8) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_warning_then_exceeded),
        cmocka_unit_test(test_budget_role_split_and_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
