#include "breaker.h"

#include "agentos/v1/event.pb-c.h"

#include <stdio.h>
#include <string.h>

#define BS(x) AGENTOS__V1__BREAKER_STATE__BREAKER_STATE_##x

void ao_breaker_init(ao_breaker_t *b, uint32_t threshold, uint32_t reset_ms)
{
    memset(b, 0, sizeof *b);
    b->state = BS(CLOSED);
    b->threshold = threshold ? threshold : 5;
    b->reset_ms = reset_ms ? reset_ms : 30000;
}

static void change(ao_breaker_t *b, int to, ao_breaker_change_t *ch, const char *reason)
{
    if (ch) {
        ch->from = b->state;
        ch->to = to;
        ch->failures = b->failures;
        snprintf(ch->reason, sizeof ch->reason, "%s", reason);
    }
    b->state = to;
}

int ao_breaker_allow(ao_breaker_t *b, int64_t now_ms, int *is_probe, ao_breaker_change_t *ch)
{
    *is_probe = 0;
    if (ch) ch->from = ch->to = 0;
    if (b->state == BS(CLOSED)) return 1;
    if (b->state == BS(OPEN)) {
        if (now_ms - b->opened_at_ms < (int64_t)b->reset_ms) return 0;
        char why[160];
        snprintf(why, sizeof why, "reset timeout of %u ms passed: one probe call goes through",
                 b->reset_ms);
        change(b, BS(HALF_OPEN), ch, why);
    }
    /* HALF_OPEN: one probe at a time. */
    if (b->probe_in_flight) return 0;
    b->probe_in_flight = 1;
    *is_probe = 1;
    return 1;
}

void ao_breaker_record(ao_breaker_t *b, int success, int counts, int was_probe, int64_t now_ms,
                       ao_breaker_change_t *ch)
{
    if (ch) ch->from = ch->to = 0;
    if (was_probe) b->probe_in_flight = 0;
    if (!counts) return;
    if (success) {
        b->failures = 0;
        if (b->state == BS(HALF_OPEN) && was_probe) change(b, BS(CLOSED), ch, "the probe call succeeded");
        return;
    }
    b->failures++;
    if (b->state == BS(HALF_OPEN) && was_probe) {
        b->opened_at_ms = now_ms;
        change(b, BS(OPEN), ch, "the probe call failed");
    } else if (b->state == BS(CLOSED) && b->failures >= b->threshold) {
        b->opened_at_ms = now_ms;
        char why[160];
        snprintf(why, sizeof why, "%u consecutive failures reached the threshold of %u",
                 b->failures, b->threshold);
        change(b, BS(OPEN), ch, why);
    }
}
