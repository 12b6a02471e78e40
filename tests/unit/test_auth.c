/* Unit tests for server/rpc/auth.c: bearer tokens against SHA-256 digests,
 * messages that never echo the token, certificate identities, open mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth.h"
#include "pbjson.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static ao_auth_t *make(const char *json, int expect, const char *want)
{
    ProtobufCMessage *m;
    ao_status_t st = {0};
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, json, strlen(json), &m, &st))
        fail_msg("%s", st.msg);
    ao_auth_t *a = NULL;
    int rc = ao_auth_create((Agentos__V1__ServerConfig *)m, &a, &st);
    protobuf_c_message_free_unpacked(m, NULL);
    assert_int_equal(rc, expect);
    if (want) assert_non_null(strstr(st.msg, want));
    return a;
}

static void test_tokens(void **state)
{
    (void)state;
    char h1[65], h2[65];
    ao_sha256_hex("alpha-token", 11, h1);
    ao_sha256_hex("beta-token", 10, h2);
    char json[512];
    snprintf(json, sizeof json,
             "{\"tokens\":[{\"tenant\":\"alpha\",\"tokenSha256\":\"%s\"},{\"tenant\":\"beta\",\"tokenSha256\":\"%s\"}]}",
             h1, h2);
    /* Digests in upper case work too. */
    for (char *p = strstr(json, h2); *p != '"'; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
    ao_auth_t *a = make(json, 0, NULL);
    assert_true(ao_auth_required(a));
    char *tenant;
    ao_status_t st;
    assert_int_equal(ao_auth_resolve(a, "Bearer alpha-token", NULL, &tenant, &st), 0);
    assert_string_equal(tenant, "alpha");
    free(tenant);
    assert_int_equal(ao_auth_resolve(a, "bearer   beta-token", NULL, &tenant, &st), 0);
    assert_string_equal(tenant, "beta");
    free(tenant);
    assert_int_equal(ao_auth_resolve(a, NULL, NULL, &tenant, &st), AO_EUNAUTH);
    assert_null(tenant);
    assert_non_null(strstr(st.msg, "missing credentials"));
    assert_int_equal(ao_auth_resolve(a, "Bearer gamma-token-guess", NULL, &tenant, &st), AO_EUNAUTH);
    assert_string_equal(st.msg, "invalid bearer token");
    assert_null(strstr(st.msg, "gamma"));
    assert_int_equal(ao_auth_resolve(a, "Basic YWxwaGE=", NULL, &tenant, &st), AO_EUNAUTH);
    assert_non_null(strstr(st.msg, "must be `Bearer TOKEN`"));
    assert_null(strstr(st.msg, "YWxwaGE"));
    /* An identity without a mapping does not help. */
    assert_int_equal(ao_auth_resolve(a, NULL, "client-one", &tenant, &st), AO_EUNAUTH);
    ao_auth_destroy(a);
}

static void test_certs_and_open_mode(void **state)
{
    (void)state;
    ao_auth_t *a = make("{\"certTenants\":[{\"identity\":\"client-one\",\"tenant\":\"certified\"}]}", 0, NULL);
    char *tenant;
    ao_status_t st;
    assert_int_equal(ao_auth_resolve(a, NULL, "client-one", &tenant, &st), 0);
    assert_string_equal(tenant, "certified");
    free(tenant);
    assert_int_equal(ao_auth_resolve(a, NULL, "client-two", &tenant, &st), AO_EUNAUTH);
    ao_auth_destroy(a);
    a = make("{}", 0, NULL);
    assert_false(ao_auth_required(a));
    assert_int_equal(ao_auth_resolve(a, NULL, NULL, &tenant, &st), 0);
    assert_string_equal(tenant, AO_DEFAULT_TENANT);
    free(tenant);
    ao_auth_destroy(a);
}

static void test_bad_config(void **state)
{
    (void)state;
    make("{\"tokens\":[{\"tenant\":\"a\",\"tokenSha256\":\"abc\"}]}", AO_EINVAL, "tokens[0].token_sha256");
    char json[256];
    snprintf(json, sizeof json, "{\"tokens\":[{\"tenant\":\"bad tenant\",\"tokenSha256\":\"%064d\"}]}", 0);
    make(json, AO_EINVAL, "tokens[0].tenant");
    make("{\"certTenants\":[{\"identity\":\"\",\"tenant\":\"t\"}]}", AO_EINVAL, "cert_tenants[0]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_certs_and_open_mode),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
