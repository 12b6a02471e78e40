/*
 * Confidence x authority synthesis (design note, "Confidence-Weighted
 * Synthesis") and the merging of findings with conflict resolution.
 *
 * Pure functions; thread-safe.
 */
#ifndef AO_SYNTHESIS_H
#define AO_SYNTHESIS_H

#include "agentos/v1/workflow.pb-c.h"

#include <stddef.h>

typedef struct ao_synth_in {
    double score;
    double confidence;
    double authority;
} ao_synth_in_t;

/* score = sum(score*confidence*authority) / sum(confidence*authority);
 * confidence = sum(confidence*authority) / sum(authority), then reduced by
 * the share of authority that is missing: times present / (present +
 * missing_authority). Returns 0 (and zeros) when there is no weight. */
int ao_synth_weighted(const ao_synth_in_t *in, size_t n, double missing_authority, double *score,
                      double *confidence);

/* Called for each key on which findings disagree (different values): the
 * winner (highest confidence x authority, the earlier on a tie) and the
 * findings it overrides. */
typedef void (*ao_conflict_fn)(void *ud, const Agentos__V1__Finding *winner,
                               const Agentos__V1__Finding *const *overridden, size_t n);

/* Merges findings: one per key, the highest confidence x authority (the
 * earlier on a tie; findings with the same value are not a conflict).
 * Writes the winners to out (borrowed pointers, in order of first
 * appearance; out has room for n) and returns how many. */
size_t ao_findings_merge(const Agentos__V1__Finding *const *in, size_t n,
                         const Agentos__V1__Finding **out, ao_conflict_fn conflict, void *ud);

#endif
