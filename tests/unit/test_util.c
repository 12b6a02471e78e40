/*
 * Unit tests for server/common/util.c: the allocator a process reports, and
 * strict UTF-8.
 *
 * Linked with ao_malloc (jemalloc, outside the sanitizer builds), the test
 * expects "jemalloc <version> background_thread" (server/malloc_conf.c's
 * options) and checks that jemalloc really serves this process's malloc:
 * the bytes its thread has allocated, by jemalloc's own count, grow by a
 * block malloc'd here. Without it (the sanitizers bring their own
 * allocator), "system".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#ifdef AO_JEMALLOC_LINKED
typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);

static uint64_t thread_allocated(mallctl_fn mallctl)
{
    uint64_t n = 0;
    size_t len = sizeof n;
    assert_int_equal(mallctl("thread.allocated", &n, &len, NULL, 0), 0);
    return n;
}
#endif

static void test_malloc_name(void **state)
{
    (void)state;
    char buf[96];
    const char *name = ao_malloc_name(buf, sizeof buf);
    assert_ptr_equal(name, buf);
#ifdef AO_JEMALLOC_LINKED
    assert_int_equal(strncmp(name, "jemalloc 5.", 11), 0);
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    assert_non_null(mallctl);
    /* server/malloc_conf.c's options took effect, unless the environment
     * overrode them. */
    if (!getenv("MALLOC_CONF")) {
        bool background = false;
        size_t len = sizeof background;
        assert_int_equal(mallctl("background_thread", &background, &len, NULL, 0), 0);
        assert_true(background);
        assert_non_null(strstr(name, " background_thread"));
    }
    uint64_t before = thread_allocated(mallctl);
    void *volatile block = malloc(1 << 20);
    assert_non_null(block);
    assert_true(thread_allocated(mallctl) - before >= 1 << 20);
    free(block);
#else
    assert_string_equal(name, "system");
#endif
}

static void test_malloc_name_truncates(void **state)
{
    (void)state;
    char buf[4];
    const char *name = ao_malloc_name(buf, sizeof buf);
    assert_int_equal(strlen(name), 3);
#ifdef AO_JEMALLOC_LINKED
    assert_string_equal(name, "jem");
#else
    assert_string_equal(name, "sys");
#endif
}

/* Strict UTF-8, as protobuf's other implementations check it. */
static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int valid;
        size_t bad; /* the first invalid byte's offset */
    } cases[] = {
        {"", 1, 0},
        {"plain ascii", 1, 0},
        /* 2, 3 and 4 bytes; U+10FFFF */
        {"\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", 1, 0},
        {"a\xff", 0, 1},
        {"\xc0\x80", 0, 0},         /* an overlong NUL */
        {"\xc1\xbf", 0, 0},         /* overlong */
        {"ab\xe0\x80\x80", 0, 2},   /* overlong, 3 bytes */
        {"\xed\xa0\x80", 0, 0},     /* a surrogate (U+D800) */
        {"\xf0\x80\x80\x80", 0, 0}, /* overlong, 4 bytes */
        {"\xf4\x90\x80\x80", 0, 0}, /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 0, 0},
        {"x\xe4\xb8", 0, 1}, /* cut short */
        {"\xc3", 0, 0},
        {"\x80", 0, 0}, /* a continuation byte alone */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t bad = 99;
        int ok = ao_utf8_valid(cases[k].s, strlen(cases[k].s), &bad);
        if (ok != cases[k].valid)
            fail_msg("case %zu: valid %d, expected %d", k, ok, cases[k].valid);
        if (!ok && bad != cases[k].bad)
            fail_msg("case %zu: bad at %zu, expected %zu", k, bad, cases[k].bad);
    }
    char s[] = "ok\xff\xc3\xa9\xed\xa0\x80.\xe4\xb8";
    assert_int_equal(ao_utf8_fix(s), 6);
    assert_string_equal(s, "ok?\xc3\xa9???.??");
    assert_true(ao_utf8_valid(s, strlen(s), NULL));
}

/* Varints as protobuf writes them: round trips at each length's edges,
 * and what does not decode (cut short, longer than 64 bits). */
static void test_varint(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t len;
    } cases[] = {{0, 1},     {1, 1},     {127, 1},        {128, 2},         {300, 2},
                 {16383, 2}, {16384, 3}, {UINT32_MAX, 5}, {1ULL << 63, 10}, {UINT64_MAX, 10}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        unsigned char buf[10];
        size_t n = ao_varint_put(buf, cases[k].v);
        if (n != cases[k].len)
            fail_msg("%llu: %zu bytes, expected %zu", (unsigned long long)cases[k].v, n,
                     cases[k].len);
        const unsigned char *p = buf;
        uint64_t got = 0;
        assert_int_equal(ao_varint_get(&p, buf + n, &got), 0);
        assert_true(got == cases[k].v);
        assert_ptr_equal(p, buf + n);
        /* Cut short by a byte: nothing decodes. */
        p = buf;
        assert_int_equal(ao_varint_get(&p, buf + n - 1, &got), -1);
    }
    /* 300 is 0xac 0x02, as protobuf's encoding guide gives it. */
    unsigned char b300[10];
    assert_int_equal(ao_varint_put(b300, 300), 2);
    assert_int_equal(b300[0], 0xac);
    assert_int_equal(b300[1], 0x02);
    /* Eleven bytes with the continuation bit: past 64 bits, refused. */
    unsigned char longer[11];
    memset(longer, 0xff, sizeof longer);
    const unsigned char *p = longer;
    uint64_t v;
    assert_int_equal(ao_varint_get(&p, longer + sizeof longer, &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_name),
        cmocka_unit_test(test_malloc_name_truncates),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_varint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
