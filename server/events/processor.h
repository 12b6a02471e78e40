/*
 * The event processor: the one ordered writer of the event log and of the
 * workflow state (design note, "Event Sourcing with Ordered Processing").
 *
 * Any thread posts work to it (ao_proc_post): an agent's completion, an
 * RPC's command or query. The processor thread runs posted work in order;
 * work emits events (ao_proc_emit), each of which gets the next sequence
 * number, is applied to the in-memory state at once (so that later work in
 * the same batch sees it) and joins the current batch. When the inputs at
 * hand are done, the batch is written to the log in one group commit (WAL
 * synced unless durability is async); only then are its effects let out:
 * the events are published to subscribers and its callbacks run (agent
 * dispatches, replies to clients). While the processor has more to do, a
 * batch is written by a writer thread as the processor fills the next one
 * (at most one batch in flight); effects of a batch still wait for it.
 * Nothing outside the processor thread observes state or events that are
 * not durable. A failed log write is fatal (the process aborts, and
 * recovery starts from what is durable).
 *
 * Threads: ao_proc_post and ao_proc_durable_seq from any thread; every
 * other function on the processor thread only (inside posted work or
 * callbacks it runs).
 */
#ifndef AO_PROCESSOR_H
#define AO_PROCESSOR_H

#include "agentos/v1/event.pb-c.h"
#include "err.h"
#include "eventlog.h"

#include <grpc/slice.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct ao_proc ao_proc_t;

/* A durable event as shared with subscribers: immutable once published,
 * reference counted, freed by the last unref. */
typedef struct ao_evref {
    atomic_int refs;
    uint64_t seq;
    /* Agentos__V1__EventType */
    int type;
    char *tenant;
    char *workflow_id;
    char *task_id;
    /* The packed agentos.v1.Event, as stored in the log. */
    grpc_slice bytes;
} ao_evref_t;

/* Makes an evref from a packed event (copies data); refs starts at 1. */
ao_evref_t *ao_evref_new(uint64_t seq, int type, const char *tenant, const char *workflow_id,
                         const char *task_id, const void *data, size_t len);
/* The same, taking over a packed event already in a slice. */
ao_evref_t *ao_evref_take(uint64_t seq, int type, const char *tenant, const char *workflow_id,
                          const char *task_id, grpc_slice bytes);
ao_evref_t *ao_evref_ref(ao_evref_t *e);
void ao_evref_unref(ao_evref_t *e);

/* Receives each committed batch, in order, on the processor thread, right
 * after the commit: evs[0..n) (borrowed: take a ref to keep one) and the
 * new durable sequence number. Must be quick and must not block. */
typedef void (*ao_proc_publish_fn)(void *ud, ao_evref_t *const *evs, size_t n,
                                   uint64_t durable_seq);

/* Runs on the processor thread once per loop, after the posted work and
 * before the commit: the place to make decisions on what changed (the
 * scheduler). May emit events. Returns nonzero when it stopped with more
 * to do (it runs again at once, after this batch is handed on). */
typedef int (*ao_proc_tick_fn)(void *ud, ao_proc_t *p);

typedef struct ao_proc_options {
    ao_log_t *log;
    /* Most events in one group commit (0: 4096). */
    unsigned max_batch_events;
    ao_proc_publish_fn publish;
    void *publish_ud;
    ao_proc_tick_fn tick;
    void *tick_ud;
} ao_proc_options_t;

/* Creates the processor (not yet running): next sequence number is the
 * log's last + 1. */
ao_proc_t *ao_proc_create(const ao_proc_options_t *opt);

/* Starts the processor thread. */
void ao_proc_start(ao_proc_t *p);

/* Stops the thread after the work already posted has run and its batch is
 * committed. Work posted later is dropped (its `drop` callback runs, if
 * any). Main thread. */
void ao_proc_stop(ao_proc_t *p);

void ao_proc_destroy(ao_proc_t *p);

/* Work for the processor thread. `fn` runs there with ud. `drop` (may be
 * NULL) runs instead, on the posting or stopping thread, if the processor
 * has stopped. Any thread. */
typedef void (*ao_proc_work_fn)(ao_proc_t *p, void *ud);
typedef void (*ao_proc_drop_fn)(void *ud);
void ao_proc_post(ao_proc_t *p, ao_proc_work_fn fn, ao_proc_drop_fn drop, void *ud);

/* Whether the caller is the processor thread. Any thread. */
int ao_proc_on_thread(const ao_proc_t *p);

/* The highest durable sequence number. Any thread. */
uint64_t ao_proc_durable_seq(ao_proc_t *p);

/* ---- on the processor thread ---------------------------------------- */

/* Appends an event: fills seq and time_unix_ms, packs it into the current
 * batch and returns seq. The processor does not keep ev (the caller still
 * owns it and frees it); apply it to the state before or after, as the
 * caller's state needs. */
uint64_t ao_proc_emit(ao_proc_t *p, Agentos__V1__Event *ev);
/* The same for an event whose payload (the member ev->payload_case names)
 * was packed elsewhere, as payload[0..len): the envelope is packed without
 * it and the payload appended, where protobuf-c puts it (its field numbers
 * follow the envelope's), so the event's bytes are those ao_proc_emit would
 * write. For a payload packed on the thread that produced it. ev may not
 * have unknown fields. */
uint64_t ao_proc_emit_packed(ao_proc_t *p, Agentos__V1__Event *ev, const void *payload, size_t len);

/* Adds a packed workflow snapshot / checkpoint to the current batch
 * (written atomically with its events, or alone when the batch has none,
 * as from an after-commit callback; data is copied). An empty snapshot
 * (len 0) means "nothing before seq + 1", for a workflow whose events from
 * seq + 1 are all of it. */
void ao_proc_put_snapshot(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                          size_t len);
void ao_proc_put_checkpoint(ao_proc_t *p, const char *workflow_id, uint64_t seq, const void *data,
                            size_t len);

/* Runs fn(ud) on the processor thread after the current batch is durable,
 * at a moment when no later event is pending either: the state it sees is
 * the log's (at once after the next commit; if nothing is pending, after
 * the current loop). A snapshot or checkpoint put by a callback delays
 * only the callbacks registered after it. For replies that show state. */
typedef void (*ao_proc_after_fn)(ao_proc_t *p, void *ud);
void ao_proc_after_commit(ao_proc_t *p, ao_proc_after_fn fn, void *ud);

/* Runs fn(ud) on the processor thread as soon as the current batch is
 * durable, though later events may be pending (the processor goes on
 * filling the next batch while the writer writes this one). For effects
 * that depend on this batch's events only and read no state, such as an
 * agent dispatch whose request is already built. */
void ao_proc_after_durable(ao_proc_t *p, ao_proc_after_fn fn, void *ud);

/* The log (for reads on the processor thread or elsewhere). */
ao_log_t *ao_proc_log(ao_proc_t *p);

/* The number of batches closed so far (written, or handed to the
 * writer): events emitted now go out with the batch after this many. */
uint64_t ao_proc_batches(ao_proc_t *p);

/* The sequence number the next emitted event will get. */
uint64_t ao_proc_next_seq(ao_proc_t *p);

#endif
