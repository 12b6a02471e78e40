/* Unit tests for server/config/config.c: defaults, validation errors naming
 * the field, flags over the file, loopback detection, seeded mutations of
 * a configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "jsonmut.h"
#include "pbjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static Agentos__V1__ServerConfig *from_args(int expect, const char *want, const char *file_json, ...)
{
    char path[] = "/tmp/ao_config_XXXXXX";
    char *argv[32] = {"agentosd"};
    int argc = 1;
    if (file_json) {
        int fd = mkstemp(path);
        assert_true(write(fd, file_json, strlen(file_json)) == (ssize_t)strlen(file_json));
        close(fd);
        argv[argc++] = "--config";
        argv[argc++] = path;
    }
    va_list ap;
    va_start(ap, file_json);
    char *a;
    while ((a = va_arg(ap, char *))) argv[argc++] = a;
    va_end(ap);
    Agentos__V1__ServerConfig *cfg = NULL;
    ao_status_t st = {0};
    int rc = ao_config_from_args(argc, argv, &cfg, &st);
    if (file_json) unlink(path);
    if (rc != expect) fail_msg("rc %d (%s), want %d", rc, st.msg, expect);
    if (want && !strstr(st.msg, want)) fail_msg("\"%s\" does not contain \"%s\"", st.msg, want);
    return cfg;
}

static void test_defaults(void **state)
{
    (void)state;
    Agentos__V1__ServerConfig *c = from_args(0, NULL, NULL, NULL);
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0], AO_DEFAULT_LISTEN);
    assert_string_equal(c->storage->data_dir, AO_DEFAULT_DATA_DIR);
    assert_int_equal(c->storage->durability, AGENTOS__V1__DURABILITY__DURABILITY_SYNC);
    assert_int_equal(c->limits->max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(c->limits->max_tasks, 10000);
    assert_int_equal(c->limits->default_max_attempts, 3);
    assert_int_equal(c->shutdown_grace_seconds, 5);
    assert_string_equal(c->log->level, "info");
    ao_config_free(c);
}

static void test_flags_override_the_file(void **state)
{
    (void)state;
    Agentos__V1__ServerConfig *c = from_args(
        0, NULL,
        "{\"listen\":[\"127.0.0.1:1\",\"127.0.0.1:2\"],\"storage\":{\"dataDir\":\"/file\"},"
        "\"agents\":[{\"name\":\"b\",\"kind\":\"BACKEND_KIND_BUILTIN\"}]}",
        "--listen", "127.0.0.1:3", "--data-dir", "/flag", "--durability", "async", "--log-level", "debug", NULL);
    assert_int_equal(c->n_listen, 1); /* --listen replaces the list */
    assert_string_equal(c->listen[0], "127.0.0.1:3");
    assert_string_equal(c->storage->data_dir, "/flag");
    assert_int_equal(c->storage->durability, AGENTOS__V1__DURABILITY__DURABILITY_ASYNC);
    assert_string_equal(c->log->level, "debug");
    /* Defaults fill the agents too. */
    assert_int_equal(c->agents[0]->max_concurrency, 64);
    assert_int_equal(c->agents[0]->breaker->failure_threshold, 5);
    assert_non_null(c->agents[0]->builtin);
    ao_config_free(c);
}

static void test_validation_names_the_field(void **state)
{
    (void)state;
    from_args(AO_EINVAL, "listen[0]: 0.0.0.0:7 is not a loopback address", NULL, "--listen", "0.0.0.0:7", NULL);
    from_args(AO_EINVAL, "needs tokens or cert_tenants", NULL, "--listen", "0.0.0.0:7", "--insecure", NULL);
    from_args(AO_EINVAL, "tls: cert_file and key_file go together", NULL, "--tls-cert", "/x.pem", NULL);
    from_args(AO_EINVAL, "require_client_cert needs client_ca_file", NULL, "--tls-cert", "/a", "--tls-key", "/b",
              "--require-client-cert", NULL);
    from_args(AO_EINVAL, "agents[1].name: \"a\" is used twice",
              "{\"agents\":[{\"name\":\"a\",\"kind\":\"BACKEND_KIND_BUILTIN\"},"
              "{\"name\":\"a\",\"kind\":\"BACKEND_KIND_BUILTIN\"}]}",
              NULL);
    from_args(AO_EINVAL, "agents[0] (x).kind", "{\"agents\":[{\"name\":\"x\"}]}", NULL);
    from_args(AO_EINVAL, "agents[0] (g).url: expected host:port",
              "{\"agents\":[{\"name\":\"g\",\"kind\":\"BACKEND_KIND_GRPC\"}]}", NULL);
    from_args(AO_EINVAL, "api_key: set file or env, not both",
              "{\"agents\":[{\"name\":\"h\",\"kind\":\"BACKEND_KIND_HTTPS\",\"url\":\"https://x\","
              "\"apiKey\":{\"file\":\"/k\",\"env\":\"K\"}}]}",
              NULL);
    from_args(AO_EINVAL, "--durability: expected sync or async", NULL, "--durability", "sometimes", NULL);
    from_args(AO_EINVAL, "log.level", NULL, "--log-level", "loud", NULL);
    from_args(AO_EINVAL, "limits.bogus: unknown field", "{\"limits\":{\"bogus\":1}}", NULL);
    from_args(AO_EINVAL, "unexpected argument", NULL, "stray", NULL);
    from_args(AO_EINVAL, "unknown option", NULL, "--nope", NULL);
    from_args(AO_EINVAL, "--rpc-threads: expected a number", NULL, "--rpc-threads", "many", NULL);
    from_args(AO_EINVAL, "rpc_threads: 100000 is over the limit of 1024", NULL, "--rpc-threads", "100000", NULL);
    from_args(AO_EINVAL, "executor.worker_threads: 5000 is over the limit of 1024", NULL, "--worker-threads", "5000",
              NULL);
    ao_config_free(from_args(0, NULL, NULL, "--rpc-threads", "1024", "--worker-threads", "1024", NULL));
    /* TLS, tokens and non-loopback together are fine. */
    Agentos__V1__ServerConfig *c = from_args(
        0, NULL, "{\"tokens\":[{\"tenant\":\"t\",\"tokenSha256\":\"00\"}]}", "--listen", "0.0.0.0:7", "--tls-cert",
        "/a.pem", "--tls-key", "/a.key", NULL);
    ao_config_free(c);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(ao_config_is_loopback("127.0.0.1:7700"));
    assert_true(ao_config_is_loopback("127.8.9.1:1"));
    assert_true(ao_config_is_loopback("localhost:7700"));
    assert_true(ao_config_is_loopback("[::1]:7700"));
    assert_true(ao_config_is_loopback("unix:/tmp/agentos.sock"));
    assert_true(ao_config_is_loopback("ipv4:127.0.0.1:1"));
    assert_false(ao_config_is_loopback("0.0.0.0:7700"));
    assert_false(ao_config_is_loopback("[::]:7700"));
    assert_false(ao_config_is_loopback("10.0.0.1:7700"));
    assert_false(ao_config_is_loopback("example.com:7700"));
    assert_false(ao_config_is_loopback("127example:1"));
}

/* A configuration mutated thousands of times (jsonmut.h): each that
 * decodes is, after its defaults, valid or refused with a message, never a
 * crash; a valid one stays valid. */
static void test_mutated_configs(void **state)
{
    (void)state;
    static const char seed[] =
        "{\"listen\":[\"127.0.0.1:7700\"],\"metricsListen\":\"127.0.0.1:9100\",\"rpcThreads\":2,"
        "\"storage\":{\"dataDir\":\"/tmp/x\",\"durability\":\"DURABILITY_ASYNC\",\"checkpointEveryEvents\":50},"
        "\"limits\":{\"maxTasks\":100,\"maxInputBytes\":4096,\"maxSubscribers\":8,\"subscriberBuffer\":16},"
        "\"tokens\":[{\"tenant\":\"alpha\",\"tokenSha256\":\"" 
        "a3f5c1e2d4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8\",\"name\":\"ci\"}],"
        "\"agents\":[{\"name\":\"fin\",\"kind\":\"BACKEND_KIND_BUILTIN\",\"maxConcurrency\":4,"
        "\"price\":{\"perCallMicros\":\"1500\"},\"breaker\":{\"failureThreshold\":3,\"resetTimeoutMs\":100},"
        "\"builtin\":{\"latencyMs\":20,\"findings\":[\"k=v\"]}},"
        "{\"name\":\"web\",\"kind\":\"BACKEND_KIND_HTTPS\",\"url\":\"https://agent.test/agent\","
        "\"tls\":{\"caFile\":\"/etc/ssl/ca.pem\"},\"apiKey\":{\"env\":\"KEY\"},\"defaultTimeoutMs\":5000},"
        "{\"name\":\"llm\",\"kind\":\"BACKEND_KIND_OPENAI\",\"url\":\"https://llm.test/v1\","
        "\"openai\":{\"model\":\"m\",\"temperature\":0.2}}]}";
    static const char *const own[] = {"fin", "web", "llm", "127.0.0.1:0", "0.0.0.0:7700", "[::1]:7700",
                                      "BACKEND_KIND_GRPC", "http://plain.test/agent", "localhost:1", "/nonexistent"};
    jm_t jm = {0xa4093822299f31d0u, own, sizeof own / sizeof *own};
    size_t valid = 0, refused = 0;
    for (int i = 0; i < 15000; i++) {
        ProtobufCMessage *m = jm_mutated_message(&jm, seed, &agentos__v1__server_config__descriptor);
        if (!m) continue;
        Agentos__V1__ServerConfig *cfg = (Agentos__V1__ServerConfig *)m;
        ao_config_defaults(cfg);
        ao_status_t st = {0};
        int rc = ao_config_validate(cfg, &st);
        if (rc) {
            assert_true(st.msg[0] != 0);
            refused++;
        } else {
            assert_int_equal(ao_config_validate(cfg, &st), 0);
            valid++;
        }
        ao_config_free(cfg);
    }
    print_message("%zu mutated configs valid, %zu refused\n", valid, refused);
    assert_true(valid > 500);
    assert_true(refused > 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags_override_the_file),
        cmocka_unit_test(test_validation_names_the_field),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_mutated_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
