/* Unit tests for server/exec/strategy.c: the single- vs multi-agent
 * decision from the complexity estimate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pbjson.h"
#include "strategy.h"

#include <math.h>
#include <string.h>

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static Agentos__V1__WorkflowSpec *spec(const char *json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, json, strlen(json), &m, &st))
        fail_msg("%s", st.msg);
    return (Agentos__V1__WorkflowSpec *)m;
}

static void test_strategy(void **state)
{
    (void)state;
    ao_strategy_choice_t c;
    /* One agent, one task: simple; a single agent is configured. */
    Agentos__V1__WorkflowSpec *s =
        spec("{\"tasks\":[{\"id\":\"q\",\"agent\":\"general\"}],\"strategy\":\"STRATEGY_AUTO\","
             "\"autoStrategy\":{\"singleAgent\":\"general\"}}");
    ao_strategy_decide(s, &c);
    NEAR(c.complexity, 0);
    assert_int_equal(c.strategy, AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT);
    assert_string_equal(c.band, "single_agent");
    assert_non_null(strstr(c.reason, "one agent (general)"));
    protobuf_c_message_free_unpacked(&s->base, NULL);
    /* The acquisition: 4 domains, width 3, depth 3. */
    s = spec("{\"tasks\":[{\"id\":\"f\",\"agent\":\"fin\"},{\"id\":\"l\",\"agent\":\"legal\",\"dependsOn\":[\"f\"]},"
             "{\"id\":\"m\",\"agent\":\"market\"},{\"id\":\"t\",\"agent\":\"tech\"},"
             "{\"id\":\"s\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"l\",\"m\",\"t\"]}],"
             "\"strategy\":\"STRATEGY_AUTO\",\"autoStrategy\":{\"singleAgent\":\"fin\"}}");
    ao_strategy_decide(s, &c);
    NEAR(c.complexity, 0.45 * 1.0 + 0.35 * (2.0 / 3.0) + 0.20 * (2.0 / 3.0));
    assert_int_equal(c.strategy, AGENTOS__V1__STRATEGY__STRATEGY_MULTI_AGENT);
    assert_string_equal(c.band, "full_multi_agent");
    assert_non_null(strstr(c.reason, "4 domains, width 3, depth 3"));
    protobuf_c_message_free_unpacked(&s->base, NULL);
    /* A hint overrides; without a single agent the DAG runs anyway. */
    s = spec("{\"tasks\":[{\"id\":\"a\",\"agent\":\"x\"},{\"id\":\"b\",\"agent\":\"y\"}],"
             "\"autoStrategy\":{\"complexityHint\":0.1}}");
    ao_strategy_decide(s, &c);
    NEAR(c.complexity, 0.1);
    assert_int_equal(c.strategy, AGENTOS__V1__STRATEGY__STRATEGY_MULTI_AGENT);
    assert_non_null(strstr(c.reason, "no single_agent"));
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strategy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
