/*
 * A circuit breaker (design note, "Circuit Breakers and Backpressure"):
 * CLOSED counts consecutive failures; at the threshold it OPENs and calls
 * fail at once; after the reset timeout one probe call goes through
 * (HALF_OPEN); its success CLOSEs the breaker, its failure re-OPENs it.
 *
 * Not thread-safe: the backend that owns it locks.
 */
#ifndef AO_BREAKER_H
#define AO_BREAKER_H

#include <stdint.h>

typedef struct ao_breaker {
    int state; /* Agentos__V1__BreakerState */
    uint32_t failures;
    uint32_t threshold;
    uint32_t reset_ms;
    int64_t opened_at_ms;
    int probe_in_flight;
} ao_breaker_t;

/* A state change, for the BREAKER_STATE_CHANGED event. */
typedef struct ao_breaker_change {
    int from, to; /* both 0: no change */
    uint32_t failures;
    char reason[160];
} ao_breaker_change_t;

void ao_breaker_init(ao_breaker_t *b, uint32_t threshold, uint32_t reset_ms);

/* Whether a call may go now. In OPEN past the reset timeout it moves to
 * HALF_OPEN and lets this call through as the probe (*is_probe = 1). */
int ao_breaker_allow(ao_breaker_t *b, int64_t now_ms, int *is_probe, ao_breaker_change_t *ch);

/* Records a call's outcome. `counts` is 0 for outcomes that say nothing of
 * the backend's health (our own cancellation, a rejected request); such a
 * probe's slot is released without a verdict. */
void ao_breaker_record(ao_breaker_t *b, int success, int counts, int was_probe, int64_t now_ms,
                       ao_breaker_change_t *ch);

#endif
