/*
 * Unit tests for server/common/util.c: the allocator a process reports.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_name),
        cmocka_unit_test(test_malloc_name_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
