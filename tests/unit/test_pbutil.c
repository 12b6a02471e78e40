/* Unit tests for server/common/pbutil.c: the descriptor-driven deep copy
 * (every field shape, oneofs, maps, unknown fields, shared defaults; a copy
 * that outlives its source), the repeated-field helpers, narrowed packing
 * and the UTF-8 check of every string in a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agentos/v1/event.pb-c.h"
#include "agentos/v1/state.pb-c.h"
#include "pbjson.h"
#include "pbjson_test.pb-c.h"
#include "pbutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ProtobufCMessage *decode(const char *json)
{
    ProtobufCMessage *m = NULL;
    ao_status_t st = {0};
    if (ao_pbjson_decode_text(&aotest__all_types__descriptor, json, strlen(json), &m, &st))
        fail_msg("decode failed: %s", st.msg);
    return m;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* The copy packs to the same bytes as the source, and still does after
 * the source is freed (nothing is shared: ASan would see a use after free). */
static void check_copy(ProtobufCMessage *src)
{
    size_t la, lb;
    uint8_t *a = pack(src, &la);
    ProtobufCMessage *c = ao_pb_clone(src);
    assert_non_null(c);
    assert_ptr_not_equal(c, src);
    protobuf_c_message_free_unpacked(src, NULL);
    uint8_t *b = pack(c, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    protobuf_c_message_free_unpacked(c, NULL);
    free(a);
    free(b);
}

static void test_every_field_shape(void **state)
{
    (void)state;
    check_copy(decode("{\"i32\":-5,\"s32\":-7,\"sf32\":9,\"u32\":4000000000,\"f32\":12,"
                      "\"i64\":\"-9\",\"s64\":\"123\",\"sf64\":-4,\"u64\":\"18446744073709551615\","
                      "\"f64\":\"77\",\"flt\":1.5,\"dbl\":0.85,\"flag\":true,\"text\":\"hello\","
                      "\"blob\":\"AAEC/w==\",\"color\":\"COLOR_BLUE\","
                      "\"inner\":{\"name\":\"in\",\"values\":[1,2,3]},"
                      "\"names\":[\"a\",\"\",\"c\"],"
                      "\"inners\":[{\"name\":\"x\"},{\"values\":[7]},{}],"
                      "\"colors\":[\"COLOR_RED\",\"COLOR_BLUE\"],"
                      "\"labels\":{\"k1\":\"v1\",\"k2\":\"\"},"
                      "\"byId\":{\"3\":{\"name\":\"three\"}},"
                      "\"scores\":[0.5,1e300],\"blobs\":[\"AQ==\",\"\"]}"));
}

static void test_each_oneof_case(void **state)
{
    (void)state;
    check_copy(decode("{\"choiceText\":\"chosen\"}"));
    check_copy(decode("{\"choiceInner\":{\"name\":\"nested\",\"values\":[4]}}"));
    check_copy(decode("{\"choiceNumber\":\"42\"}"));
    check_copy(decode("{}"));
}

static void test_defaults_stay_shared(void **state)
{
    (void)state;
    Aotest__AllTypes m = AOTEST__ALL_TYPES__INIT;
    Aotest__AllTypes *c = (Aotest__AllTypes *)ao_pb_clone(&m.base);
    /* Unset strings keep pointing at protobuf-c's empty string, which
     * free_unpacked knows not to free. */
    assert_ptr_equal(c->text, m.text);
    assert_null(c->inner);
    assert_null(c->names);
    assert_int_equal(c->n_names, 0);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    assert_null(ao_pb_clone(NULL));
}

static void test_unknown_fields_are_copied(void **state)
{
    (void)state;
    /* Field 14 (text) = "ok", then unknown field 99 (varint 150) and
     * unknown field 100 (length-delimited "zz"). */
    const uint8_t wire[] = {0x72, 0x02, 'o',  'k',  0x98, 0x06, 0x96, 0x01,
                            0xa2, 0x06, 0x02, 'z',  'z'};
    ProtobufCMessage *m = protobuf_c_message_unpack(&aotest__all_types__descriptor, NULL, sizeof wire, wire);
    assert_non_null(m);
    assert_int_equal(m->n_unknown_fields, 2);
    ProtobufCMessage *c = ao_pb_clone(m);
    assert_int_equal(c->n_unknown_fields, 2);
    assert_ptr_not_equal(c->unknown_fields, m->unknown_fields);
    assert_ptr_not_equal(c->unknown_fields[1].data, m->unknown_fields[1].data);
    protobuf_c_message_free_unpacked(c, NULL);
    check_copy(m);
}

static void test_workflow_state_copy(void **state)
{
    (void)state;
    /* A message of the contract with nested messages, oneof-free repeated
     * submessages and maps. */
    const char *json = "{\"id\":\"wf-1\",\"tenant\":\"t\",\"status\":\"WORKFLOW_STATUS_RUNNING\","
                       "\"tasks\":[{\"spec\":{\"id\":\"a\",\"agent\":\"fin\",\"dependsOn\":[\"b\"],"
                       "\"params\":{\"k\":\"v\"}},\"status\":\"TASK_STATUS_SUCCEEDED\","
                       "\"output\":\"done\",\"usage\":{\"totalTokens\":\"12\"},"
                       "\"findings\":[{\"key\":\"risk\",\"value\":\"low\",\"confidence\":0.5}]}],"
                       "\"spec\":{\"labels\":{\"team\":\"m&a\"},\"context\":{\"deal\":\"x\"}}}";
    ProtobufCMessage *m = NULL;
    ao_status_t st = {0};
    if (ao_pbjson_decode_text(&agentos__v1__workflow__descriptor, json, strlen(json), &m, &st))
        fail_msg("%s", st.msg);
    Agentos__V1__Workflow *c = AO_PB_CLONE(Agentos__V1__Workflow, (Agentos__V1__Workflow *)m);
    assert_string_equal(c->tasks[0]->spec->params[0]->value, "v");
    assert_ptr_not_equal(c->tasks[0]->spec, ((Agentos__V1__Workflow *)m)->tasks[0]->spec);
    protobuf_c_message_free_unpacked(&c->base, NULL);
    check_copy(m);
}

static void test_repeated_helpers(void **state)
{
    (void)state;
    Aotest__AllTypes m = AOTEST__ALL_TYPES__INIT;
    for (int i = 0; i < 100; i++) ao_pb_push_str(&m.names, &m.n_names, i % 2 ? "odd" : NULL);
    assert_int_equal(m.n_names, 100);
    assert_string_equal(m.names[0], "");
    assert_string_equal(m.names[99], "odd");
    ao_pb_set_str(&m.text, "first");
    ao_pb_set_str(&m.text, "second");
    assert_string_equal(m.text, "second");
    ao_pb_clear_str(&m.text);
    assert_ptr_equal(m.text, protobuf_c_empty_string);
    ao_pb_free_strs(&m.names, &m.n_names);
    assert_null(m.names);
    assert_int_equal(m.n_names, 0);
}

/* The narrowed packer writes exactly what protobuf-c writes through the
 * full descriptor: for every payload member of an event, for none, with an
 * unknown field, and for a message without a oneof. */
static void check_same_bytes(const ao_pb_narrow_t *n, ProtobufCMessage *m)
{
    size_t full = protobuf_c_message_get_packed_size(m);
    uint8_t *a = malloc(full + 1), *b = malloc(full + 1);
    assert_int_equal(protobuf_c_message_pack(m, a), full);
    assert_int_equal(ao_pb_narrow_size(n, m), full);
    assert_int_equal(ao_pb_narrow_pack(n, m, b), full);
    assert_memory_equal(a, b, full);
    free(a);
    free(b);
}

static void test_narrowed_packing_same_bytes(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &agentos__v1__event__descriptor;
    ao_pb_narrow_t *n = ao_pb_narrow_create(d);
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    ev.seq = 300;
    ev.workflow_id = "wf-1";
    ev.task_id = "t";
    ev.type = AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_TASK_SUCCEEDED;
    ev.confidence = 0.5;
    ev.tenant = "acme";
    ev.attempt = 2;
    check_same_bytes(n, &ev.base); /* no payload */
    int members = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
        members++;
        assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
        const ProtobufCMessageDescriptor *sd = f->descriptor;
        ProtobufCMessage *sub = calloc(1, sd->sizeof_message);
        sd->message_init(sub);
        for (unsigned k = 0; k < sd->n_fields; k++)
            if (sd->fields[k].type == PROTOBUF_C_TYPE_STRING && sd->fields[k].label == PROTOBUF_C_LABEL_NONE) {
                *(const char **)((char *)sub + sd->fields[k].offset) = "value";
                break;
            }
        *(uint32_t *)((char *)&ev + f->quantifier_offset) = f->id;
        *(ProtobufCMessage **)((char *)&ev + f->offset) = sub;
        check_same_bytes(n, &ev.base);
        /* The bytes read back as the event with this payload. */
        uint8_t buf[512];
        size_t len = ao_pb_narrow_pack(n, &ev.base, buf);
        Agentos__V1__Event *back = agentos__v1__event__unpack(NULL, len, buf);
        assert_non_null(back);
        assert_int_equal(back->payload_case, f->id);
        assert_int_equal(back->seq, 300);
        assert_string_equal(back->tenant, "acme");
        agentos__v1__event__free_unpacked(back, NULL);
        *(ProtobufCMessage **)((char *)&ev + f->offset) = NULL;
        free(sub);
    }
    assert_int_equal(members, 25);
    /* An unknown field goes through as well. */
    uint8_t raw[] = {0x01, 0x02};
    ProtobufCMessageUnknownField uf = {900, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, sizeof raw, raw};
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD__NOT_SET;
    ev.base.n_unknown_fields = 1;
    ev.base.unknown_fields = &uf;
    check_same_bytes(n, &ev.base);
    ev.base.n_unknown_fields = 0;
    ev.base.unknown_fields = NULL;
    assert_ptr_equal(ev.base.descriptor, d); /* given back after each call */
    ao_pb_narrow_destroy(n);
    /* Without a oneof: the message's own descriptor. */
    ao_pb_narrow_t *u = ao_pb_narrow_create(&agentos__v1__usage__descriptor);
    Agentos__V1__Usage usage = AGENTOS__V1__USAGE__INIT;
    usage.total_tokens = 12;
    check_same_bytes(u, &usage.base);
    ao_pb_narrow_destroy(u);
}

/* A string of m (found by its JSON value, "@@") made invalid in place:
 * JSON cannot carry invalid UTF-8, protobuf-c's unpack can. */
static void spoil(char *s)
{
    char *at = strstr(s, "@@");
    assert_non_null(at);
    at[0] = (char)0xC0; /* an overlong form's first byte */
    at[1] = (char)0x80;
}

static void test_utf8_check_names_the_path(void **state)
{
    (void)state;
    char path[200];
    Aotest__AllTypes *m = (Aotest__AllTypes *)decode(
        "{\"text\":\"ok \u00e9\u4e2d\U0001f600\",\"names\":[\"a\",\"b@@\"],\"inner\":{\"name\":\"in@@\"},"
        "\"inners\":[{},{\"name\":\"x@@\"}],\"labels\":{\"k@@\":\"v@@\"},\"choiceText\":\"c@@\"}");
    /* Valid as decoded (JSON is UTF-8): each string spoiled in turn is
     * found, by its path. */
    assert_int_equal(ao_pb_check_utf8(&m->base, path, sizeof path), 1);
    struct {
        char **slot;
        const char *path;
    } cases[] = {
        {&m->choice_text, "choice_text"},
        {&m->labels[0]->value, "labels[0].value"},
        {&m->labels[0]->key, "labels[0].key"},
        {&m->inners[1]->name, "inners[1].name"},
        {&m->inner->name, "inner.name"},
        {&m->names[1], "names[1]"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        spoil(*cases[k].slot);
        assert_int_equal(ao_pb_check_utf8(&m->base, path, sizeof path), 0);
        /* The .proto's field names (protobuf-c's), not JSON's. */
        assert_string_equal(path, cases[k].path);
        /* Made valid again ('?'), the next one is found. */
        (*cases[k].slot)[strlen(*cases[k].slot) - 2] = '?';
        (*cases[k].slot)[strlen(*cases[k].slot) - 1] = '?';
    }
    assert_int_equal(ao_pb_check_utf8(&m->base, path, sizeof path), 1);
    assert_int_equal(ao_pb_check_utf8(NULL, path, sizeof path), 1);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_field_shape),
        cmocka_unit_test(test_each_oneof_case),
        cmocka_unit_test(test_defaults_stay_shared),
        cmocka_unit_test(test_unknown_fields_are_copied),
        cmocka_unit_test(test_workflow_state_copy),
        cmocka_unit_test(test_repeated_helpers),
        cmocka_unit_test(test_narrowed_packing_same_bytes),
        cmocka_unit_test(test_utf8_check_names_the_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
