#include "synthesis.h"

#include "mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ao_synth_weighted(const ao_synth_in_t *in, size_t n, double missing_authority, double *score,
                      double *confidence)
{
    double num = 0, den = 0, auth = 0;
    for (size_t i = 0; i < n; i++) {
        double a = in[i].authority > 0 ? in[i].authority : 0;
        double c = in[i].confidence > 0 ? in[i].confidence : 0;
        num += in[i].score * c * a;
        den += c * a;
        auth += a;
    }
    *score = *confidence = 0;
    if (den <= 0 || auth <= 0) return 0;
    *score = num / den;
    double conf = den / auth;
    if (missing_authority > 0) conf *= auth / (auth + missing_authority);
    *confidence = conf;
    return 1;
}

static double weight(const Agentos__V1__Finding *f)
{
    double a = f->authority > 0 ? f->authority : 1.0;
    return f->confidence * a;
}

size_t ao_findings_merge(const Agentos__V1__Finding *const *in, size_t n,
                         const Agentos__V1__Finding **out, ao_conflict_fn conflict, void *ud)
{
    size_t m = 0;
    uint8_t *used = ao_xcalloc(n ? n : 1, 1);
    const Agentos__V1__Finding **group = ao_xmalloc((n ? n : 1) * sizeof *group);
    const Agentos__V1__Finding **lost = ao_xmalloc((n ? n : 1) * sizeof *lost);
    for (size_t i = 0; i < n; i++) {
        if (used[i]) continue;
        size_t g = 0;
        for (size_t j = i; j < n; j++) {
            if (!used[j] && !strcmp(in[j]->key, in[i]->key)) {
                used[j] = 1;
                group[g++] = in[j];
            }
        }
        size_t best = 0;
        for (size_t k = 1; k < g; k++)
            if (weight(group[k]) > weight(group[best])) best = k;
        out[m++] = group[best];
        size_t nl = 0;
        for (size_t k = 0; k < g; k++)
            if (k != best && strcmp(group[k]->value, group[best]->value)) lost[nl++] = group[k];
        if (nl && conflict) conflict(ud, group[best], lost, nl);
    }
    free(used);
    free(group);
    free(lost);
    return m;
}
