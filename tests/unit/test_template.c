/* Unit tests for server/exec/template.c: rendering, scanning, rewriting,
 * and seeded random templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "jsonmut.h"
#include "template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *lookup(void *ud, const char *key, ao_status_t *st)
{
    (void)ud;
    if (!strcmp(key, "name")) return "Acme";
    if (!strcmp(key, "deps.a.output")) return "revenue {{not expanded}}";
    ao_status_set(st, AO_EINVAL, "unknown %s", key);
    return NULL;
}

static int count_keys(void *ud, const char *key)
{
    (void)key;
    (*(int *)ud)++;
    return 0;
}

static char *upper_name(void *ud, const char *key)
{
    (void)ud;
    return !strcmp(key, "name") ? strdup("NAME") : NULL;
}

static void test_templates(void **state)
{
    (void)state;
    ao_status_t st;
    char *r = ao_template_render("Analyse {{ name }}: {{deps.a.output}} {{ bad key }} {{", lookup,
                                 NULL, 100, &st);
    assert_string_equal(r, "Analyse Acme: revenue {{not expanded}} {{ bad key }} {{");
    free(r);
    assert_null(ao_template_render("{{missing}}", lookup, NULL, 100, &st));
    assert_non_null(strstr(st.msg, "unknown missing"));
    assert_null(ao_template_render("{{name}}{{name}}{{name}}", lookup, NULL, 10, &st));
    assert_int_equal(st.code, AO_ELIMIT);
    assert_non_null(strstr(st.msg, "limits.max_input_bytes (10)"));
    int n = 0;
    ao_template_scan("{{a}} {{b.c}} {{ d }} {x}", count_keys, &n);
    assert_int_equal(n, 3);
    r = ao_template_rewrite("hi {{name}} and {{ other }}", upper_name, NULL);
    assert_string_equal(r, "hi {{NAME}} and {{ other }}");
    free(r);
}

/* ---- seeded random templates ------------------------------------------------ */

static char long_key[260];

/* Known keys' values: a short one, an empty one, a long one, and one that
 * looks like a placeholder (values are not expanded again). */
static const char *fuzz_lookup(void *ud, const char *key, ao_status_t *st)
{
    static char big[1001];
    (void)ud;
    if (!big[0]) memset(big, 'v', sizeof big - 1);
    if (!strcmp(key, "name")) return "Acme";
    if (!strcmp(key, "empty")) return "";
    if (!strcmp(key, "big")) return big;
    if (!strcmp(key, "deps.a.output")) return "{{name}}";
    ao_status_set(st, AO_EINVAL, "unknown %.100s", key);
    return NULL;
}

static char *fuzz_keep(void *ud, const char *key)
{
    (void)ud;
    (void)key;
    return NULL;
}

static int all_known(void *ud, const char *key)
{
    (void)ud;
    return strcmp(key, "name") && strcmp(key, "empty") && strcmp(key, "big") &&
           strcmp(key, "deps.a.output");
}

static char *to_name(void *ud, const char *key)
{
    (void)ud;
    (void)key;
    return strdup("name");
}

static int only_name(void *ud, const char *key)
{
    (*(int *)ud)++;
    return strcmp(key, "name") != 0;
}

/* Templates made of fragments that a parser can trip on, thousands of
 * them: rendering gives a string within the limit, or NULL and a message;
 * a template whose keys are all known renders; rewriting nothing gives the
 * template back; rewriting every key leaves only the new key. ASan and
 * UBSan watch every byte read. */
static void test_random_templates(void **state)
{
    (void)state;
    memset(long_key, 'k', 201); /* one over the key limit */
    static const char *const parts[] = {
        "{{",      "}}",       "{",        "}",        " ",
        "  ",      "name",     "empty",    "big",      "deps.a.output",
        "deps.",   ".",        "nope",     "{{name}}", "{{ name }}",
        "{{big}}", "{{nope}}", "{{}}",     "{{ }}",    "{{na me}}",
        "{{name",  "name}}",   "\xc3\xa9", "text",     "{{{name}}}",
        long_key,  "\n"};
    jm_t jm = {0x452821e638d01377u, NULL, 0};
    char tpl[4096];
    size_t rendered = 0, refused = 0;
    for (int i = 0; i < 40000; i++) {
        size_t n = 0;
        tpl[0] = 0;
        for (unsigned k = 0, parts_n = jm_rnd(&jm, 12); k < parts_n; k++) {
            const char *p = parts[jm_rnd(&jm, sizeof parts / sizeof *parts)];
            size_t pl = strlen(p);
            if (n + pl >= sizeof tpl) break;
            memcpy(tpl + n, p, pl + 1);
            n += pl;
        }
        size_t max = jm_rnd(&jm, 2) ? 4096 : jm_rnd(&jm, 64);
        ao_status_t st = {0};
        char *out = ao_template_render(tpl, fuzz_lookup, NULL, max, &st);
        int known = ao_template_scan(tpl, all_known, NULL) == 0;
        if (out) {
            assert_true(strlen(out) <= max);
            rendered++;
        } else {
            assert_true(st.msg[0] != 0);
            /* Only an unknown key or the limit refuses a render. */
            assert_true(!known || st.code == AO_ELIMIT);
            refused++;
        }
        free(out);
        char *kept = ao_template_rewrite(tpl, to_name, NULL);
        int count = 0;
        assert_int_equal(ao_template_scan(kept, only_name, &count), 0);
        char *none = ao_template_rewrite(tpl, fuzz_keep, NULL);
        assert_string_equal(none, tpl);
        free(kept);
        free(none);
    }
    print_message("%zu random templates rendered, %zu refused\n", rendered, refused);
    assert_true(rendered > 1000);
    assert_true(refused > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_random_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
