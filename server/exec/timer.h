/*
 * Timers on one thread: attempt timeouts, retry backoff, builtin agents'
 * latency, budget wall-time checks. Thousands pending at once cost a heap
 * entry each, no thread.
 *
 * Callbacks run on the timer thread and must be quick (post work
 * elsewhere). Thread-safe.
 */
#ifndef AO_TIMER_H
#define AO_TIMER_H

#include <stdint.h>

typedef struct ao_timers ao_timers_t;
typedef void (*ao_timer_fn)(void *ud);

ao_timers_t *ao_timers_create(void);
/* Stops the thread; pending timers are dropped without running. */
void ao_timers_destroy(ao_timers_t *t);

/* Runs fn(ud) after delay_ms. Returns the timer's id (never 0). */
uint64_t ao_timer_add(ao_timers_t *t, uint64_t delay_ms, ao_timer_fn fn, void *ud);

/* Cancels a timer: returns 1 if it will not run (and sets *ud, if ud is
 * not NULL, to its argument, for the caller to free), 0 if it has run or
 * is running (or id is unknown). */
int ao_timer_cancel(ao_timers_t *t, uint64_t id, void **ud);

/* Pending timers. */
unsigned ao_timers_pending(ao_timers_t *t);

#endif
