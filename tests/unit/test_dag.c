/* Unit tests for server/exec/dag.c: validation before anything runs, each
 * error naming its culprit; plan validation and rewriting; seeded
 * mutations of specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "dag.h"
#include "jsonmut.h"
#include "pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Agentos__V1__ServerConfig *cfg;

static int setup(void **state)
{
    (void)state;
    const char *text = "{\"agents\":[{\"name\":\"fin\",\"kind\":\"BACKEND_KIND_BUILTIN\"},"
                       "{\"name\":\"legal\",\"kind\":\"BACKEND_KIND_BUILTIN\"}],"
                       "\"limits\":{\"maxTasks\":50,\"maxDepth\":4,\"maxInputBytes\":200,"
                       "\"maxContextBytes\":100}}";
    ao_status_t st;
    ProtobufCMessage *m;
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, text, strlen(text), &m, &st))
        fail_msg("%s", st.msg);
    cfg = (Agentos__V1__ServerConfig *)m;
    ao_config_defaults(cfg);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ao_config_free(cfg);
    return 0;
}

static Agentos__V1__WorkflowSpec *spec_of(const char *json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, json, strlen(json), &m, &st))
        fail_msg("bad test JSON: %s", st.msg);
    return (Agentos__V1__WorkflowSpec *)m;
}

static void expect(const char *json, int code, const char *want)
{
    Agentos__V1__WorkflowSpec *s = spec_of(json);
    ao_dag_env_t env = {cfg};
    ao_status_t st = {0};
    int rc = ao_dag_validate(s, &env, &st);
    if (rc != code) fail_msg("rc %d (%s), want %d for %s", rc, st.msg, code, json);
    if (want && !strstr(st.msg, want)) fail_msg("\"%s\" does not contain \"%s\"", st.msg, want);
    protobuf_c_message_free_unpacked(&s->base, NULL);
}

static void test_valid_acquisition(void **state)
{
    (void)state;
    expect("{\"tasks\":[{\"id\":\"financial\",\"agent\":\"fin\"},"
           "{\"id\":\"legal\",\"agent\":\"legal\",\"dependsOn\":[\"financial\"],"
           "\"input\":\"Given {{deps.financial.output}} and {{context.target}}\"},"
           "{\"id\":\"market\",\"agent\":\"fin\"},"
           "{\"id\":\"synthesis\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"legal\",\"market\"]}],"
           "\"context\":{\"target\":\"Acme\"}}",
           0, NULL);
}

static void test_cycle_names_its_tasks(void **state)
{
    (void)state;
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"c\"]},"
           "{\"id\":\"b\",\"agent\":\"fin\",\"dependsOn\":[\"a\"]},"
           "{\"id\":\"c\",\"agent\":\"fin\",\"dependsOn\":[\"b\"]},"
           "{\"id\":\"d\",\"agent\":\"fin\"}]}",
           AO_EINVAL, "cycle: a -> b -> c -> a");
    /* A cycle downstream of a valid prefix is still found and named. */
    expect("{\"tasks\":[{\"id\":\"root\",\"agent\":\"fin\"},"
           "{\"id\":\"x\",\"agent\":\"fin\",\"dependsOn\":[\"root\",\"y\"]},"
           "{\"id\":\"y\",\"agent\":\"fin\",\"dependsOn\":[\"x\"]}]}",
           AO_EINVAL, "x -> y -> x");
}

static void test_culprits_named(void **state)
{
    (void)state;
    expect("{\"tasks\":[]}", AO_EINVAL, "at least one task");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"ghost\"]}]}", AO_EINVAL,
           "task a: depends on unknown task \"ghost\"");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"nobody\"}]}", AO_EINVAL,
           "task a: unknown agent \"nobody\"");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"a\",\"agent\":\"fin\"}]}", AO_EINVAL,
           "tasks[1].id: duplicate task id \"a\"");
    expect("{\"tasks\":[{\"id\":\"a/b\",\"agent\":\"fin\"}]}", AO_EINVAL, "tasks[0].id");
    expect("{\"tasks\":[{\"id\":\"auto.x\",\"agent\":\"fin\"}]}", AO_EINVAL, "reserved");
    expect("{\"tasks\":[{\"id\":\"a\"}]}", AO_EINVAL, "task a: agent is required");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"a\"]}]}", AO_EINVAL,
           "task a: depends on itself");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\","
           "\"dependsOn\":[\"a\",\"a\"]}]}",
           AO_EINVAL, "task b: depends on a twice");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"fallbackAgent\":\"zzz\"}]}", AO_EINVAL,
           "unknown fallback_agent \"zzz\"");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"retry\":{\"jitter\":2}}]}", AO_EINVAL,
           "task a: retry.jitter");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"authority\":-1}]}", AO_EINVAL,
           "task a: authority");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"}],\"budget\":{\"roleSplit\":"
           "{\"analysis\":0.8,\"synthesis\":0.4}}}",
           AO_EINVAL, "role_split");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"}],\"strategy\":\"STRATEGY_SINGLE_AGENT\"}",
           AO_EINVAL, "single_agent is required");
}

static void test_templates(void **state)
{
    (void)state;
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\","
           "\"input\":\"{{deps.a.output}}\"}]}",
           AO_EINVAL, "task b input: {{deps.a.output}} names task \"a\", which is not in its depends_on");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"input\":\"{{context.nope}}\"}]}",
           AO_EINVAL, "the workflow's context has no key \"nope\"");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"input\":\"{{weird}}\"}]}", AO_EINVAL,
           "unknown placeholder {{weird}}");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\","
           "\"dependsOn\":[\"a\"],\"input\":\"{{deps.a.size}}\"}]}",
           AO_EINVAL, "use deps.ID.output");
    /* Not placeholders: kept as text, no error. */
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"input\":\"{{ not a key! }} {{\"}]}", 0, NULL);
}

static void test_limits(void **state)
{
    (void)state;
    char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"tasks\":[");
    for (int i = 0; i < 51; i++)
        n += (size_t)snprintf(json + n, sizeof json - n, "%s{\"id\":\"t%d\",\"agent\":\"fin\"}",
                              i ? "," : "", i);
    snprintf(json + n, sizeof json - n, "]}");
    expect(json, AO_EINVAL, "51 tasks is over limits.max_tasks (50)");
    /* A chain of 5 over max_depth 4. */
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\",\"dependsOn\":[\"a\"]},"
           "{\"id\":\"c\",\"agent\":\"fin\",\"dependsOn\":[\"b\"]},{\"id\":\"d\",\"agent\":\"fin\",\"dependsOn\":[\"c\"]},"
           "{\"id\":\"e\",\"agent\":\"fin\",\"dependsOn\":[\"d\"]}]}",
           AO_EINVAL, "task e: its dependency chain is 5 tasks long, over limits.max_depth (4)");
    char big[400];
    memset(big, 'x', 250);
    big[250] = '\0';
    snprintf(json, sizeof json, "{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"input\":\"%s\"}]}", big);
    expect(json, AO_EINVAL, "task a input: 250 bytes is over limits.max_input_bytes (200)");
    snprintf(json, sizeof json, "{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"}],\"context\":{\"k\":\"%.120s\"}}", big);
    expect(json, AO_EINVAL, "limits.max_context_bytes (100)");
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\"}],"
           "\"budget\":{\"maxTasks\":1}}",
           AO_EINVAL, "budget.max_tasks (1)");
}

static void test_refinement(void **state)
{
    (void)state;
    expect("{\"tasks\":[{\"id\":\"r\",\"kind\":\"TASK_KIND_REFINEMENT\",\"refinement\":{"
           "\"areas\":[\"contracts\",\"patents\"],\"stages\":[{\"name\":\"broad\",\"agent\":\"fin\","
           "\"input\":\"scan {{area}}\",\"threshold\":0.5},{\"name\":\"deep\",\"agent\":\"legal\","
           "\"input\":\"{{prev.output}}\",\"threshold\":0.7}]}}]}",
           0, NULL);
    expect("{\"tasks\":[{\"id\":\"r\",\"kind\":\"TASK_KIND_REFINEMENT\",\"refinement\":{"
           "\"areas\":[],\"stages\":[]}}]}",
           AO_EINVAL, "task r: refinement.areas needs 1 to 256 areas");
    expect("{\"tasks\":[{\"id\":\"r\",\"kind\":\"TASK_KIND_REFINEMENT\",\"refinement\":{"
           "\"areas\":[\"a\",\"a\"],\"stages\":[{\"agent\":\"fin\"}]}}]}",
           AO_EINVAL, "refinement area \"a\" twice");
    expect("{\"tasks\":[{\"id\":\"r\",\"kind\":\"TASK_KIND_REFINEMENT\",\"refinement\":{"
           "\"areas\":[\"a\"],\"stages\":[{\"agent\":\"zz\"}]}}]}",
           AO_EINVAL, "refinement.stages[0].agent \"zz\" is unknown");
    /* {{area}} is for refinement stages only. */
    expect("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"input\":\"{{area}}\"}]}", AO_EINVAL,
           "unknown placeholder {{area}}");
}

static int ex_exists(void *ud, const char *id)
{
    (void)ud;
    return !strcmp(id, "done") || !strcmp(id, "running") || !strcmp(id, "p/a");
}

static int ex_completed(void *ud, const char *id)
{
    (void)ud;
    return !strcmp(id, "done");
}

static Agentos__V1__Plan *plan_of(const char *json)
{
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__plan__descriptor, json, strlen(json), &m, &st))
        fail_msg("bad plan JSON: %s", st.msg);
    return (Agentos__V1__Plan *)m;
}

static int validate_plan(Agentos__V1__Plan *p, size_t now, unsigned max_tasks, unsigned depth,
                         ao_status_t *st)
{
    ao_dag_env_t env = {cfg};
    ao_dag_existing_t ex = {ex_completed, ex_exists, NULL};
    return ao_dag_validate_plan("plan", p->tasks, p->n_tasks, now, max_tasks, depth, 2, &ex, &env, st);
}

static void test_plans(void **state)
{
    (void)state;
    ao_status_t st;
    Agentos__V1__Plan *p = plan_of(
        "{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"done\"]},"
        "{\"id\":\"b\",\"agent\":\"legal\",\"dependsOn\":[\"a\",\"done\"],\"input\":\"{{deps.a.output}} {{deps.done.score}}\"}]}");
    if (validate_plan(p, 3, 10, 1, &st)) fail_msg("%s", st.msg);
    assert_string_equal(p->tasks[0]->id, "plan/a");
    assert_string_equal(p->tasks[1]->id, "plan/b");
    assert_string_equal(p->tasks[1]->depends_on[0], "plan/a");
    assert_string_equal(p->tasks[0]->depends_on[0], "done");
    assert_string_equal(p->tasks[1]->input, "{{deps.plan/a.output}} {{deps.done.score}}");
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"b\"]},"
                "{\"id\":\"b\",\"agent\":\"fin\",\"dependsOn\":[\"a\"]}]}");
    assert_int_equal(validate_plan(p, 1, 10, 1, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "plan of plan: the dependencies form a cycle"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"running\"]}]}");
    assert_int_equal(validate_plan(p, 1, 10, 1, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "which has not completed"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"b\",\"agent\":\"fin\"}]}");
    assert_int_equal(validate_plan(p, 9, 10, 1, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "would make 11 tasks, over max_tasks (10)"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"}]}");
    assert_int_equal(validate_plan(p, 1, 10, 3, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "depth 3 exceed the plan depth limit (2)"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"nobody\"}]}");
    assert_int_equal(validate_plan(p, 1, 10, 1, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "plan of plan: task a: unknown agent"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    p = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"},{\"id\":\"a\",\"agent\":\"fin\"}]}");
    assert_int_equal(validate_plan(p, 1, 10, 1, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "duplicate subtask id \"a\""));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    /* A subtask whose prefixed id already exists in the workflow. */
    Agentos__V1__Plan *q = plan_of("{\"tasks\":[{\"id\":\"a\",\"agent\":\"fin\"}]}");
    ao_dag_env_t env = {cfg};
    ao_dag_existing_t ex = {ex_completed, ex_exists, NULL};
    assert_int_equal(ao_dag_validate_plan("p", q->tasks, 1, 1, 10, 1, 2, &ex, &env, &st), AO_EINVAL);
    assert_non_null(strstr(st.msg, "task p/a exists already"));
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* Workflow specs mutated tens of thousands of times (jsonmut.h), with
 * the spec's own ids, agents and template marks among the values, so that
 * mutations make cycles, self-dependencies, unknown and duplicate ids and
 * bad templates: each mutated spec that decodes is either valid or
 * refused with AO_EINVAL or AO_ELIMIT and a message, never a crash (ASan
 * and UBSan watch in CI), and every valid one still is on a second look. */
static void test_mutated_specs(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"name\":\"deal\",\"labels\":{\"team\":\"a\"},\"context\":{\"target\":\"Acme\"},"
        "\"budget\":{\"maxTokens\":\"1000\",\"maxApiCalls\":\"9\",\"warnFraction\":0.8,"
        "\"roleSplit\":{\"analysis\":0.5,\"synthesis\":0.2}},"
        "\"tasks\":[{\"id\":\"financial\",\"agent\":\"fin\",\"retry\":{\"maxAttempts\":3,"
        "\"initialBackoffMs\":10,\"multiplier\":2,\"jitter\":0.1}},"
        "{\"id\":\"legal\",\"agent\":\"legal\",\"dependsOn\":[\"financial\"],\"fallbackAgent\":\"fin\","
        "\"input\":\"Given {{deps.financial.output}} and {{context.target}}\",\"optional\":true,"
        "\"impact\":\"no legal view\",\"authority\":0.9,\"params\":{\"k\":\"v\"}},"
        "{\"id\":\"market\",\"agent\":\"fin\",\"attemptTimeoutMs\":100,\"totalTimeoutMs\":500},"
        "{\"id\":\"sync\",\"kind\":\"TASK_KIND_SYNC\",\"dependsOn\":[\"legal\",\"market\"]},"
        "{\"id\":\"synthesis\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"sync\"]}]}",
        "{\"strategy\":\"STRATEGY_AUTO\",\"autoStrategy\":{\"singleAgent\":\"fin\",\"objective\":\"o\","
        "\"singleAgentBelow\":0.3},\"tasks\":[{\"id\":\"plan\",\"kind\":\"TASK_KIND_PLANNER\","
        "\"agent\":\"fin\"},{\"id\":\"r\",\"kind\":\"TASK_KIND_REFINEMENT\",\"dependsOn\":[\"plan\"],"
        "\"refinement\":{\"areas\":[\"contracts\",\"patents\"],\"stages\":[{\"name\":\"broad\","
        "\"agent\":\"fin\",\"input\":\"scan {{area}}\",\"threshold\":0.5},{\"name\":\"deep\","
        "\"agent\":\"legal\",\"input\":\"{{prev.output}}\",\"threshold\":0.7}]}}]}",
    };
    static const char *const own[] = {"financial", "legal", "market", "sync", "synthesis", "plan", "r",
                                      "fin", "nobody", "{{deps.legal.output}}", "{{deps.nope.output}}",
                                      "{{context.nope}}", "{{area}}", "{{prev.output}}", "TASK_KIND_PLANNER",
                                      "TASK_KIND_SYNC", "ROLE_ANALYSIS", "DEPENDENTS_POLICY_RUN_WITH_MISSING"};
    jm_t jm = {0x243f6a8885a308d3u, own, sizeof own / sizeof *own};
    enum { MUTATIONS = 15000 };
    size_t valid = 0, refused = 0, undecodable = 0;
    ao_dag_env_t env = {cfg};
    for (size_t k = 0; k < sizeof seeds / sizeof *seeds; k++) {
        for (int i = 0; i < MUTATIONS; i++) {
            ProtobufCMessage *m = jm_mutated_message(&jm, seeds[k], &agentos__v1__workflow_spec__descriptor);
            if (!m) {
                undecodable++;
                continue;
            }
            Agentos__V1__WorkflowSpec *s = (Agentos__V1__WorkflowSpec *)m;
            ao_status_t st = {0};
            int rc = ao_dag_validate(s, &env, &st);
            if (rc) {
                if (rc != AO_EINVAL && rc != AO_ELIMIT) fail_msg("rc %d: %s", rc, st.msg);
                assert_true(st.msg[0] != 0);
                refused++;
            } else {
                assert_int_equal(ao_dag_validate(s, &env, &st), 0);
                valid++;
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    print_message("%zu mutated specs valid, %zu refused, %zu not decoded\n", valid, refused, undecodable);
    assert_true(valid > 1000);
    assert_true(refused > 1000);

    /* Plans too: validated and rewritten in place, or refused. */
    static const char plan[] = "{\"rationale\":\"split\",\"tasks\":[{\"id\":\"s1\",\"agent\":\"fin\"},"
                               "{\"id\":\"s2\",\"agent\":\"legal\",\"dependsOn\":[\"s1\",\"done\"],"
                               "\"input\":\"{{deps.s1.output}} {{deps.done.output}}\"},"
                               "{\"id\":\"s3\",\"kind\":\"TASK_KIND_SYNTHESIS\",\"dependsOn\":[\"s2\"]}]}";
    static const char *const plan_own[] = {"s1", "s2", "s3", "done", "running", "p/a", "plan", "fin",
                                           "{{deps.s1.output}}", "{{deps.running.output}}", "TASK_KIND_PLANNER"};
    jm_t pm = {0x13198a2e03707344u, plan_own, sizeof plan_own / sizeof *plan_own};
    size_t plans_ok = 0, plans_refused = 0;
    for (int i = 0; i < MUTATIONS; i++) {
        ProtobufCMessage *m = jm_mutated_message(&pm, plan, &agentos__v1__plan__descriptor);
        if (!m) continue;
        Agentos__V1__Plan *p = (Agentos__V1__Plan *)m;
        ao_status_t st = {0};
        int rc = validate_plan(p, 3, 50, 1, &st);
        if (rc) {
            assert_true(st.msg[0] != 0);
            plans_refused++;
        } else {
            /* Rewritten: every subtask is the planner's. */
            for (size_t t = 0; t < p->n_tasks; t++) assert_int_equal(strncmp(p->tasks[t]->id, "plan/", 5), 0);
            plans_ok++;
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    print_message("%zu mutated plans valid, %zu refused\n", plans_ok, plans_refused);
    assert_true(plans_ok > 500);
    assert_true(plans_refused > 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_acquisition), cmocka_unit_test(test_cycle_names_its_tasks),
        cmocka_unit_test(test_culprits_named),    cmocka_unit_test(test_templates),
        cmocka_unit_test(test_limits),            cmocka_unit_test(test_refinement),
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_mutated_specs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
