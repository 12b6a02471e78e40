/* Unit tests for server/exec/template.c: rendering, scanning, rewriting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "template.h"

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
    char *r = ao_template_render("Analyse {{ name }}: {{deps.a.output}} {{ bad key }} {{", lookup, NULL, 100, &st);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
