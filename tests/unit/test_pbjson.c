/* Unit tests for server/common/pbjson.c: round trips of every field shape,
 * every error path naming the field, and seeded mutations of JSON text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentos/v1/agent.pb-c.h"
#include "agentos/v1/config.pb-c.h"
#include "agentos/v1/event.pb-c.h"
#include "jsonmut.h"
#include "pbjson.h"
#include "pbjson_test.pb-c.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ProtobufCMessage *decode_ok(const ProtobufCMessageDescriptor *d, const char *json)
{
    ProtobufCMessage *m = NULL;
    ao_status_t st = {0};
    int rc = ao_pbjson_decode_text(d, json, strlen(json), &m, &st);
    if (rc) fail_msg("decode failed: %s", st.msg);
    assert_non_null(m);
    return m;
}

/* Decoding must fail with EINVAL and a message containing `want`. */
static void decode_err(const ProtobufCMessageDescriptor *d, const char *json, const char *want)
{
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    ao_status_t st = {0};
    int rc = ao_pbjson_decode_text(d, json, strlen(json), &m, &st);
    assert_int_equal(rc, AO_EINVAL);
    assert_int_equal(st.code, AO_EINVAL);
    assert_null(m);
    if (!strstr(st.msg, want)) fail_msg("error \"%s\" does not contain \"%s\"", st.msg, want);
}

static void test_scalars_round_trip(void **state)
{
    (void)state;
    const char *in = "{\"i32\":-5,\"s32\":-7,\"sf32\":9,\"u32\":4000000000,\"f32\":12,"
                     "\"i64\":\"-9223372036854775808\",\"s64\":\"123\",\"sf64\":-4,"
                     "\"u64\":\"18446744073709551615\",\"f64\":\"77\",\"flt\":1.5,"
                     "\"dbl\":0.85,\"flag\":true,\"text\":\"h\\u00e9llo \\\"q\\\"\\n\","
                     "\"blob\":\"AAEC/w==\",\"color\":\"COLOR_BLUE\"}";
    Aotest__AllTypes *m = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor, in);
    assert_int_equal(m->i32, -5);
    assert_int_equal(m->s32, -7);
    assert_int_equal(m->sf32, 9);
    assert_true(m->u32 == 4000000000u);
    assert_int_equal(m->f32, 12);
    assert_true(m->i64 == INT64_MIN);
    assert_true(m->s64 == 123);
    assert_true(m->sf64 == -4);
    assert_true(m->u64 == UINT64_MAX);
    assert_true(m->f64 == 77);
    assert_true(m->flt == 1.5f);
    assert_true(m->dbl == 0.85);
    assert_true(m->flag);
    assert_string_equal(m->text, "h\xc3\xa9llo \"q\"\n");
    assert_int_equal(m->blob.len, 4);
    assert_int_equal(m->blob.data[3], 0xff);
    assert_int_equal(m->color, AOTEST__COLOR__COLOR_BLUE);

    char *out = ao_pbjson_encode(&m->base, 0);
    assert_string_equal(out,
                        "{\"i32\":-5,\"s32\":-7,\"sf32\":9,\"u32\":4000000000,\"f32\":12,"
                        "\"i64\":\"-9223372036854775808\",\"s64\":\"123\",\"sf64\":\"-4\","
                        "\"u64\":\"18446744073709551615\",\"f64\":\"77\",\"flt\":1.5,"
                        "\"dbl\":0.85,\"flag\":true,\"text\":\"h\xc3\xa9llo \\\"q\\\"\\n\","
                        "\"blob\":\"AAEC/w==\",\"color\":\"COLOR_BLUE\"}");
    /* And back again: the same message. */
    Aotest__AllTypes *m2 = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor, out);
    char *out2 = ao_pbjson_encode(&m2->base, 0);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    protobuf_c_message_free_unpacked(&m2->base, NULL);
}

static void test_special_numbers(void **state)
{
    (void)state;
    Aotest__AllTypes *m = (Aotest__AllTypes *)decode_ok(
        &aotest__all_types__descriptor,
        "{\"dbl\":\"NaN\",\"flt\":\"-Infinity\",\"scores\":[\"Infinity\",1e300,\"2.5\",3],"
        "\"i32\":\"42\",\"u64\":12,\"i64\":1e3}");
    assert_true(isnan(m->dbl));
    assert_true(isinf(m->flt) && m->flt < 0);
    assert_int_equal(m->n_scores, 4);
    assert_true(isinf(m->scores[0]));
    assert_true(m->scores[1] == 1e300);
    assert_true(m->scores[2] == 2.5);
    assert_int_equal(m->i32, 42);
    assert_true(m->u64 == 12);
    assert_true(m->i64 == 1000);
    char *out = ao_pbjson_encode(&m->base, 0);
    assert_non_null(strstr(out, "\"dbl\":\"NaN\""));
    assert_non_null(strstr(out, "\"flt\":\"-Infinity\""));
    assert_non_null(strstr(out, "\"scores\":[\"Infinity\",1e+300,2.5,3]"));
    free(out);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    /* Negative zero keeps its sign through a round trip: "-0" would come
     * back as the integer 0. */
    Aotest__AllTypes z = AOTEST__ALL_TYPES__INIT;
    z.dbl = -0.0;
    out = ao_pbjson_encode(&z.base, 0);
    assert_string_equal(out, "{\"dbl\":-0.0}");
    m = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor, out);
    assert_true(m->dbl == 0 && signbit(m->dbl));
    free(out);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_repeated_maps_oneof(void **state)
{
    (void)state;
    /* An empty array is the field unset, holding nothing (a config whose
     * "listen": [] the defaults then fill leaked it). */
    Aotest__AllTypes *e = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor,
                                                        "{\"names\":[],\"inners\":[],\"labels\":{}}");
    assert_int_equal(e->n_names, 0);
    assert_null(e->names);
    assert_null(e->inners);
    assert_null(e->labels);
    protobuf_c_message_free_unpacked(&e->base, NULL);
    const char *in = "{\"names\":[\"a\",\"b\"],\"inners\":[{\"name\":\"x\",\"values\":[1,2]},{}],"
                     "\"colors\":[\"COLOR_RED\",2],\"labels\":{\"team\":\"risk\",\"env\":\"prod\"},"
                     "\"by_id\":{\"7\":{\"name\":\"seven\"}},\"choiceInner\":{\"name\":\"c\"},"
                     "\"blobs\":[\"_-8\",\"YQ\"]}";
    Aotest__AllTypes *m = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor, in);
    assert_int_equal(m->n_names, 2);
    assert_string_equal(m->names[1], "b");
    assert_int_equal(m->n_inners, 2);
    assert_int_equal(m->inners[0]->n_values, 2);
    assert_int_equal(m->inners[0]->values[1], 2);
    assert_int_equal(m->n_colors, 2);
    assert_int_equal(m->colors[1], AOTEST__COLOR__COLOR_BLUE);
    assert_int_equal(m->n_labels, 2);
    assert_int_equal(m->n_by_id, 1);
    assert_int_equal(m->by_id[0]->key, 7);
    assert_string_equal(m->by_id[0]->value->name, "seven");
    assert_int_equal(m->choice_case, AOTEST__ALL_TYPES__CHOICE_CHOICE_INNER);
    assert_string_equal(m->choice_inner->name, "c");
    assert_int_equal(m->n_blobs, 2);
    assert_int_equal(m->blobs[0].len, 2); /* URL-safe alphabet, no padding */
    assert_int_equal(m->blobs[0].data[0], 0xff);
    assert_int_equal(m->blobs[1].len, 1);

    char *out = ao_pbjson_encode(&m->base, AO_PBJSON_ORIGINAL_NAMES);
    assert_non_null(strstr(out, "\"by_id\":{\"7\":{\"name\":\"seven\"}}"));
    assert_non_null(strstr(out, "\"choice_inner\":{\"name\":\"c\"}"));
    assert_non_null(strstr(out, "\"labels\":{\"team\":\"risk\",\"env\":\"prod\"}"));
    assert_non_null(strstr(out, "\"inners\":[{\"name\":\"x\",\"values\":[1,2]},{}]"));
    Aotest__AllTypes *m2 = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor, out);
    char *out2 = ao_pbjson_encode(&m2->base, AO_PBJSON_ORIGINAL_NAMES);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    protobuf_c_message_free_unpacked(&m->base, NULL);
    protobuf_c_message_free_unpacked(&m2->base, NULL);
}

static void test_defaults_and_pretty(void **state)
{
    (void)state;
    Aotest__AllTypes *m = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor,
                                                        "{\"text\":null,\"inner\":null}");
    char *out = ao_pbjson_encode(&m->base, 0);
    assert_string_equal(out, "{}");
    free(out);
    out = ao_pbjson_encode(&m->base, AO_PBJSON_EMIT_DEFAULTS);
    assert_non_null(strstr(out, "\"i32\":0"));
    assert_non_null(strstr(out, "\"u64\":\"0\""));
    assert_non_null(strstr(out, "\"names\":[]"));
    assert_non_null(strstr(out, "\"labels\":{}"));
    assert_non_null(strstr(out, "\"color\":\"COLOR_UNSPECIFIED\""));
    assert_null(strstr(out, "\"inner\""));
    free(out);
    protobuf_c_message_free_unpacked(&m->base, NULL);

    m = (Aotest__AllTypes *)decode_ok(&aotest__all_types__descriptor,
                                      "{\"names\":[\"a\"],\"inner\":{\"name\":\"n\"}}");
    out = ao_pbjson_encode(&m->base, AO_PBJSON_PRETTY);
    assert_string_equal(out, "{\n  \"inner\": {\n    \"name\": \"n\"\n  },\n  \"names\": [\n    "
                             "\"a\"\n  ]\n}");
    free(out);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_control_characters_escaped(void **state)
{
    (void)state;
    Aotest__AllTypes m = AOTEST__ALL_TYPES__INIT;
    char text[] = "a\x01z\x7f";
    m.text = text;
    char *out = ao_pbjson_encode(&m.base, 0);
    assert_string_equal(out, "{\"text\":\"a\\u0001z\\u007f\"}");
    free(out);
}

static void test_errors_name_the_field(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &aotest__all_types__descriptor;
    decode_err(d, "{\"nope\":1}", "nope: unknown field of aotest.AllTypes");
    decode_err(d, "{\"inner\":{\"nme\":\"x\"}}", "inner.nme: unknown field of aotest.Inner");
    decode_err(d, "{\"i32\":\"x\"}", "i32: expected an integer, got \"x\"");
    decode_err(d, "{\"i32\":1.5}", "i32: expected an integer, got 1.5");
    decode_err(d, "{\"i32\":3000000000}", "i32: 3000000000 is out of range for int32");
    decode_err(d, "{\"u32\":-1}", "u32: expected a non-negative integer");
    decode_err(d, "{\"u32\":5000000000}", "out of range for uint32");
    decode_err(d, "{\"u64\":\"-3\"}", "u64: expected a non-negative integer");
    decode_err(d, "{\"u64\":\"99999999999999999999\"}", "u64: expected an integer");
    decode_err(d, "{\"i64\":true}", "i64: expected an integer, got a boolean");
    decode_err(d, "{\"flt\":1e39}", "flt: 1e+39 is out of range for float");
    decode_err(d, "{\"dbl\":\"fast\"}", "dbl: expected a number");
    decode_err(d, "{\"dbl\":[1]}", "dbl: expected a number, got an array");
    decode_err(d, "{\"flag\":1}", "flag: expected a boolean, got a number");
    decode_err(d, "{\"text\":5}", "text: expected a string, got a number");
    decode_err(d, "{\"text\":\"a\\u0000b\"}", "text: a string may not contain a NUL");
    decode_err(d, "{\"blob\":\"!!\"}", "blob: not valid base64");
    decode_err(d, "{\"blob\":\"A\"}", "blob: not valid base64");
    decode_err(d, "{\"color\":\"PURPLE\"}", "color: \"PURPLE\" is not a value of enum aotest.Color");
    decode_err(d, "{\"color\":9}", "color: 9 is not a value of enum aotest.Color");
    decode_err(d, "{\"color\":{}}", "color: expected an enum name, got an object");
    decode_err(d, "{\"inner\":[]}", "inner: expected an object, got an array");
    decode_err(d, "{\"names\":\"a\"}", "names: expected an array, got a string");
    decode_err(d, "{\"names\":[\"a\",null]}", "names[1]: an array element may not be null");
    decode_err(d, "{\"inners\":[{},{\"values\":[1,\"x\"]}]}",
               "inners[1].values[1]: expected an integer");
    decode_err(d, "{\"labels\":[]}", "labels: expected an object (a map), got an array");
    decode_err(d, "{\"labels\":{\"a\":1}}", "labels[\"a\"]: expected a string");
    decode_err(d, "{\"labels\":{\"a\":null}}", "labels[\"a\"]: a map value may not be null");
    decode_err(d, "{\"by_id\":{\"x\":{}}}", "by_id[\"x\"]: expected an integer");
    decode_err(d, "{\"choiceText\":\"a\",\"choiceNumber\":1}",
               "choiceNumber: only one of a oneof may be set, and choice_text is set already");
    decode_err(d, "{\"by_id\":{},\"byId\":{}}", "byId: given twice");
    decode_err(d, "{\"text\":\"a\",\"text\":\"b\"}", "invalid JSON at line 1");
    decode_err(d, "{\"text\":", "invalid JSON at line 1");
    decode_err(d, "[1]", "(top level): expected an object, got an array");
}

static void test_errors_free_partial_messages(void **state)
{
    (void)state;
    /* A failure deep inside nested and repeated messages, oneofs and maps
     * must free what was built (ASan's leak check holds this test). */
    decode_err(&aotest__all_types__descriptor,
               "{\"text\":\"t\",\"inners\":[{\"name\":\"a\"},{\"name\":\"b\",\"values\":[true]}]}",
               "inners[1].values[0]");
    decode_err(&aotest__all_types__descriptor, "{\"choiceInner\":{\"name\":\"a\",\"bad\":1}}",
               "choiceInner.bad");
    decode_err(&aotest__all_types__descriptor,
               "{\"by_id\":{\"1\":{\"name\":\"a\"},\"2\":{\"values\":[\"z\"]}}}",
               "by_id[\"2\"].values[0]");
}

static void test_agentos_messages(void **state)
{
    (void)state;
    /* The server config as a user writes it: camelCase and snake_case mixed,
     * enums by name, 64-bit values as strings. */
    const char *cfg = "{\"listen\":[\"127.0.0.1:7700\"],\"storage\":{\"data_dir\":\"/tmp/x\","
                      "\"durability\":\"DURABILITY_ASYNC\"},\"agents\":[{\"name\":\"fin\","
                      "\"kind\":\"BACKEND_KIND_BUILTIN\",\"price\":{\"perCallMicros\":\"1500\"},"
                      "\"builtin\":{\"latencyMs\":20,\"findings\":[\"k=v\"]}}]}";
    Agentos__V1__ServerConfig *c =
        (Agentos__V1__ServerConfig *)decode_ok(&agentos__v1__server_config__descriptor, cfg);
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->storage->data_dir, "/tmp/x");
    assert_int_equal(c->storage->durability, AGENTOS__V1__DURABILITY__DURABILITY_ASYNC);
    assert_int_equal(c->n_agents, 1);
    assert_true(c->agents[0]->price->per_call_micros == 1500);
    assert_int_equal(c->agents[0]->builtin->latency_ms, 20);
    protobuf_c_message_free_unpacked(&c->base, NULL);

    decode_err(&agentos__v1__server_config__descriptor,
               "{\"agents\":[{\"name\":\"a\"},{\"name\":\"b\",\"kind\":\"BACKEND_KIND_FTP\"}]}",
               "agents[1].kind: \"BACKEND_KIND_FTP\" is not a value of enum agentos.v1.BackendKind");

    /* An event with its oneof payload encodes to the names clients expect. */
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__TaskSkipped sk = AGENTOS__V1__TASK_SKIPPED__INIT;
    ev.seq = 42;
    ev.type = AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_TASK_SKIPPED;
    sk.reason = "dependency legal failed";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_TASK_SKIPPED;
    ev.task_skipped = &sk;
    char *out = ao_pbjson_encode(&ev.base, 0);
    assert_string_equal(out, "{\"seq\":\"42\",\"type\":\"EVENT_TYPE_TASK_SKIPPED\","
                             "\"taskSkipped\":{\"reason\":\"dependency legal failed\"}}");
    free(out);
}

static void test_decode_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ao_pbjson_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"name\":\"wf\",\n \"tasks\":[{\"id\":\"a\",\"agent\":7}]}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    ProtobufCMessage *m = NULL;
    ao_status_t st = {0};
    assert_int_equal(ao_pbjson_decode_file(&agentos__v1__workflow_spec__descriptor, path, &m, &st),
                     AO_EINVAL);
    assert_non_null(strstr(st.msg, path));
    assert_non_null(strstr(st.msg, "tasks[0].agent: expected a string"));
    unlink(path);
    assert_int_equal(ao_pbjson_decode_file(&agentos__v1__workflow_spec__descriptor, path, &m, &st),
                     AO_EINVAL);
    assert_non_null(strstr(st.msg, "No such file"));
}

static void test_ignore_unknown(void **state)
{
    (void)state;
    const char *in = "{\"output\":\"ok\",\"newerField\":{\"x\":[1]},\"confidence\":0.5}";
    ProtobufCMessage *m = NULL;
    ao_status_t st = {0};
    assert_int_equal(ao_pbjson_decode_text(&agentos__v1__agent_result__descriptor, in, strlen(in),
                                           &m, &st),
                     AO_EINVAL);
    assert_non_null(strstr(st.msg, "newerField: unknown field"));
    assert_int_equal(ao_pbjson_decode_text_ex(&agentos__v1__agent_result__descriptor, in,
                                              strlen(in), AO_PBJSON_IGNORE_UNKNOWN, &m, &st),
                     0);
    Agentos__V1__AgentResult *r = (Agentos__V1__AgentResult *)m;
    assert_string_equal(r->output, "ok");
    assert_true(r->confidence == 0.5);
    protobuf_c_message_free_unpacked(m, NULL);
    /* Known fields keep their type checks. */
    assert_int_equal(ao_pbjson_decode_text_ex(&agentos__v1__agent_result__descriptor,
                                              "{\"x\":1,\"score\":\"high\"}", 22,
                                              AO_PBJSON_IGNORE_UNKNOWN, &m, &st),
                     AO_EINVAL);
    assert_non_null(strstr(st.msg, "score: expected a number"));
}

/* A decode's outcome: refused with AO_EINVAL, nothing out and a message
 * (returns 0); or a message that encodes and decodes back to the same JSON
 * (returns 1). Frees what it got. */
static int decoded_or_refused(const ProtobufCMessageDescriptor *d, int rc, ProtobufCMessage *m,
                              const ao_status_t *st)
{
    if (rc) {
        assert_int_equal(rc, AO_EINVAL);
        assert_null(m);
        assert_true(st->msg[0] != 0);
        return 0;
    }
    char *out = ao_pbjson_encode(m, 0);
    ProtobufCMessage *m2 = decode_ok(d, out);
    char *out2 = ao_pbjson_encode(m2, 0);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    protobuf_c_message_free_unpacked(m, NULL);
    protobuf_c_message_free_unpacked(m2, NULL);
    return 1;
}

/* Text that comes from outside (config files, workflow files, agents'
 * replies) mutated thousands of times: each either decodes, and then
 * encodes and decodes back to the same JSON, or is refused with AO_EINVAL
 * and a message, leaving nothing allocated (ASan and LeakSanitizer watch
 * the test in CI). */
static void test_mutated_json_is_decoded_or_refused(void **state)
{
    (void)state;
    static const struct {
        const ProtobufCMessageDescriptor *d;
        const char *json;
    } seeds[] = {
        {&aotest__all_types__descriptor,
         "{\"i32\":-5,\"s32\":-7,\"u32\":4000000000,\"i64\":\"-9223372036854775808\",\"u64\":\"18446744073709551615\","
         "\"flt\":1.5,\"dbl\":0.85,\"flag\":true,\"text\":\"h\\u00e9llo\\n\",\"blob\":\"AAEC/w==\","
         "\"color\":\"COLOR_BLUE\",\"inner\":{\"name\":\"n\",\"values\":[1,-2,3]},\"names\":[\"a\",\"b\"],"
         "\"inners\":[{\"name\":\"x\"},{}],\"colors\":[\"COLOR_RED\",2],\"labels\":{\"k\":\"v\"},"
         "\"byId\":{\"7\":{\"name\":\"seven\"}},\"choiceInner\":{\"values\":[9]},\"scores\":[0.5,\"NaN\","
         "\"-Infinity\"],\"blobs\":[\"AA==\",\"_-8=\"]}"},
        {&agentos__v1__server_config__descriptor,
         "{\"listen\":[\"127.0.0.1:7700\"],\"storage\":{\"data_dir\":\"/tmp/x\",\"durability\":"
         "\"DURABILITY_ASYNC\"},\"agents\":[{\"name\":\"fin\",\"kind\":\"BACKEND_KIND_BUILTIN\","
         "\"price\":{\"perCallMicros\":\"1500\"},\"builtin\":{\"latencyMs\":20,\"findings\":[\"k=v\"]}}],"
         "\"limits\":{\"maxTasks\":100}}"},
        {&agentos__v1__agent_result__descriptor,
         "{\"output\":\"fine\",\"confidence\":0.8,\"score\":0.5,\"usage\":{\"promptTokens\":\"10\","
         "\"completionTokens\":\"5\",\"documents\":2},\"findings\":[{\"key\":\"k\",\"value\":\"v\","
         "\"confidence\":0.9}],\"decisions\":[\"d1\"]}"},
    };
    enum { MUTATIONS = 10000 };
    jm_t jm = {0x9e3779b97f4a7c15u, NULL, 0};
    char buf[4096], cur[4096];
    size_t decoded = 0, refused = 0;
    for (size_t k = 0; k < sizeof seeds / sizeof *seeds; k++) {
        size_t len = strlen(seeds[k].json);
        assert_true(len < sizeof cur - 64 * 4);
        for (int i = 0; i < MUTATIONS; i++) {
            /* One to four mutations stacked on the seed. */
            memcpy(cur, seeds[k].json, len);
            size_t n = len;
            for (unsigned j = 0, stack = 1 + jm_rnd(&jm, 4); j < stack && n < sizeof cur - 64; j++) {
                n = jm_mutate_text(&jm, cur, n, buf);
                memcpy(cur, buf, n);
            }
            ProtobufCMessage *m = (ProtobufCMessage *)1;
            ao_status_t st = {0};
            int rc = ao_pbjson_decode_text(seeds[k].d, cur, n, &m, &st);
            if (decoded_or_refused(seeds[k].d, rc, m, &st)) decoded++;
            else refused++;
        }
    }
    /* The same seeds mutated as JSON values, to get past the syntax into
     * each field's checks: wrong types, out-of-range numbers, unknown enum
     * names, bad base64, NUL in strings, unknown members. */
    size_t t_decoded = 0, t_refused = 0;
    for (size_t k = 0; k < sizeof seeds / sizeof *seeds; k++) {
        for (int i = 0; i < MUTATIONS; i++) {
            json_t *root = json_loads(seeds[k].json, 0, NULL);
            assert_non_null(root);
            for (unsigned j = 0, stack = 1 + jm_rnd(&jm, 3); j < stack; j++) jm_mutate_tree(&jm, root, 0);
            ProtobufCMessage *m = (ProtobufCMessage *)1;
            ao_status_t st = {0};
            int rc = ao_pbjson_decode(seeds[k].d, root, &m, &st);
            json_decref(root);
            if (decoded_or_refused(seeds[k].d, rc, m, &st)) t_decoded++;
            else t_refused++;
        }
    }
    assert_true(t_decoded > 1000);
    assert_true(t_refused > 1000);
    print_message("%zu mutated values decoded, %zu refused\n", t_decoded, t_refused);
    /* Both paths were taken, many times. */
    assert_true(decoded > 100);
    assert_true(refused > 1000);
    print_message("%zu mutated texts decoded, %zu refused\n", decoded, refused);
}

static void test_camel(void **state)
{
    (void)state;
    char out[64];
    ao_pbjson_camel("max_tokens", out);
    assert_string_equal(out, "maxTokens");
    ao_pbjson_camel("per_1k_prompt_tokens_micros", out);
    assert_string_equal(out, "per1kPromptTokensMicros");
    ao_pbjson_camel("plain", out);
    assert_string_equal(out, "plain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars_round_trip),
        cmocka_unit_test(test_special_numbers),
        cmocka_unit_test(test_repeated_maps_oneof),
        cmocka_unit_test(test_defaults_and_pretty),
        cmocka_unit_test(test_control_characters_escaped),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_errors_free_partial_messages),
        cmocka_unit_test(test_agentos_messages),
        cmocka_unit_test(test_decode_file),
        cmocka_unit_test(test_ignore_unknown),
        cmocka_unit_test(test_mutated_json_is_decoded_or_refused),
        cmocka_unit_test(test_camel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
