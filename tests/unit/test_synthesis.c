/* Unit tests for server/exec/synthesis.c: confidence x authority weighting
 * and conflict resolution of findings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "synthesis.h"

#include <math.h>
#include <string.h>

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-9)

static void test_weighted_score_design_note(void **state)
{
    (void)state;
    /* The design note's formula with two agents. */
    ao_synth_in_t in[] = {{0.8, 0.9, 1.0}, {0.4, 0.6, 0.6}};
    double s, c;
    assert_int_equal(ao_synth_weighted(in, 2, 0, &s, &c), 1);
    double num = 0.8 * 0.9 * 1.0 + 0.4 * 0.6 * 0.6, den = 0.9 * 1.0 + 0.6 * 0.6;
    NEAR(s, num / den);
    NEAR(c, den / 1.6);
    /* Missing analysis (authority 0.4) lowers confidence, not the score. */
    double s2, c2;
    ao_synth_weighted(in, 2, 0.4, &s2, &c2);
    NEAR(s2, s);
    NEAR(c2, c * 1.6 / 2.0);
    /* Simple averaging would differ: the weighting matters. */
    assert_true(fabs(s - 0.6) > 0.05);
    /* No weight: nothing to synthesise. */
    ao_synth_in_t zero[] = {{0.9, 0, 1}};
    assert_int_equal(ao_synth_weighted(zero, 1, 0, &s, &c), 0);
    assert_true(s == 0 && c == 0);
}

typedef struct conflicts {
    int n;
    char key[64];
    char winner[64];
    size_t lost;
} conflicts_t;

static void on_conflict(void *ud, const Agentos__V1__Finding *w, const Agentos__V1__Finding *const *lost,
                        size_t n)
{
    conflicts_t *c = ud;
    c->n++;
    strcpy(c->key, w->key);
    strcpy(c->winner, w->value);
    c->lost = n;
}

static Agentos__V1__Finding mk(const char *key, const char *value, double conf, double auth)
{
    Agentos__V1__Finding f = AGENTOS__V1__FINDING__INIT;
    f.key = (char *)key;
    f.value = (char *)value;
    f.confidence = conf;
    f.authority = auth;
    return f;
}

static void test_findings_conflicts(void **state)
{
    (void)state;
    /* regulatory (1.0) at 0.7 beats general (0.6) at 0.9: 0.70 > 0.54. */
    Agentos__V1__Finding f[] = {mk("compliance", "ok", 0.9, 0.6), mk("revenue", "12M", 0.8, 1),
                                mk("compliance", "issue", 0.7, 1.0), mk("revenue", "12M", 0.5, 1),
                                mk("compliance", "ok", 0.2, 0.8)};
    const Agentos__V1__Finding *in[5], *out[5];
    for (int i = 0; i < 5; i++) in[i] = &f[i];
    conflicts_t c = {0};
    size_t n = ao_findings_merge(in, 5, out, on_conflict, &c);
    assert_int_equal(n, 2);
    assert_string_equal(out[0]->key, "compliance");
    assert_string_equal(out[0]->value, "issue");
    assert_string_equal(out[1]->value, "12M");
    assert_true(out[1]->confidence == 0.8);
    /* One conflict (revenue agrees with itself), overriding two findings. */
    assert_int_equal(c.n, 1);
    assert_string_equal(c.key, "compliance");
    assert_string_equal(c.winner, "issue");
    assert_int_equal(c.lost, 2);
    /* Ties go to the earlier finding. */
    Agentos__V1__Finding t[] = {mk("k", "first", 0.5, 1), mk("k", "second", 0.5, 1)};
    const Agentos__V1__Finding *ti[] = {&t[0], &t[1]};
    n = ao_findings_merge(ti, 2, out, NULL, NULL);
    assert_string_equal(out[0]->value, "first");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weighted_score_design_note),
        cmocka_unit_test(test_findings_conflicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
