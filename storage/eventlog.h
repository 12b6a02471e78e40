/*
 * The durable event log: the narrow interface between agentos and its
 * storage, so that another log (a replicated one, later) can stand behind
 * it. This implementation is RocksDB (rocksdb/c.h) with one column family
 * per kind of record:
 *
 *   events       seq (8 bytes, big-endian)            -> a record: events seq,
 *                seq + 1, ... of one batch (up to 256 of them) with their
 *                workflow ids (see REC_MARK in eventlog.c); one event of
 *                no workflow is its bytes alone, as schemas 1 and 2 stored
 *                every event
 *   wf_index     workflow id, 0x00, seq (big-endian)  -> the workflow's further
 *                events up to meta/indexed_through: seq deltas as varints;
 *                schema 1 had one entry per event, schema 2 one per
 *                workflow per batch, read alike
 *   snapshots    workflow id                          -> seq (8 bytes BE) + packed Workflow
 *   checkpoints  workflow id, 0x00, seq (big-endian)  -> packed agentos.v1.Checkpoint
 *   meta         name                                 -> value (schema version,
 *                indexed_through: every event up to it is in wf_index,
 *                8 bytes BE)
 *
 * A schema version is written when the database is created and checked at
 * open: a newer or unknown version refuses to open (AO_ESCHEMA).
 *
 * Threads: one writer (the event processor) calls ao_log_write; any number
 * of threads may read at the same time. Readers should not read past the
 * sequence number the processor has published as durable.
 */
#ifndef AO_EVENTLOG_H
#define AO_EVENTLOG_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

/* The schema version this build writes. It reads it and versions 1 (one
 * workflow index entry per event) and 2 (one event per events key), and
 * marks a version 1 or 2 database it opens for writing as 3. */
#define AO_LOG_SCHEMA_VERSION 3

typedef struct ao_log ao_log_t;
typedef struct ao_log_batch ao_log_batch_t;

typedef struct ao_log_options {
    /* Directory of the database; created (with parents) if missing. */
    const char *dir;
    /* 1: every ao_log_write syncs the write-ahead log before returning
     * (DURABILITY_SYNC). 0: written, not synced (DURABILITY_ASYNC). */
    int sync;
    /* Open read-only (tools, tests); no LOCK is taken. */
    int read_only;
    /* The workflow index trails the log by up to this many events (0:
     * 1024): a write indexes its events and those before it once there
     * are this many unindexed. 1: every write indexes its own. */
    unsigned index_every;
} ao_log_options_t;

/* Opens (creating if needed) the log. Returns 0 and *out, or:
 *   AO_EBUSY    the directory is locked by another process (an agentosd is
 *               running on it);
 *   AO_ENOTFOUND read-only, and the directory does not exist;
 *   AO_ESCHEMA  the stored schema version is newer or unknown;
 *   AO_ECORRUPT the database has data but no schema version;
 *   AO_EIO      RocksDB failed (its message in st).
 * The caller closes *out with ao_log_close. */
int ao_log_open(const ao_log_options_t *opt, ao_log_t **out, ao_status_t *st);

/* Closes the log and frees it. NULL is a no-op. No call may be running. */
void ao_log_close(ao_log_t *log);

/* The highest sequence number stored (0 when empty). Read once at open
 * and kept current by ao_log_write. Thread-safe. */
uint64_t ao_log_last_seq(ao_log_t *log);

/* A batch of writes to `log`, applied atomically by ao_log_write (one
 * RocksDB WriteBatch: group commit). The caller owns it and frees it
 * before closing the log; data is copied in. */
ao_log_batch_t *ao_log_batch_new(ao_log_t *log);
void ao_log_batch_free(ao_log_batch_t *b);
/* Empties the batch for reuse. */
void ao_log_batch_clear(ao_log_batch_t *b);
/* Number of events put since the last clear. */
size_t ao_log_batch_count(const ao_log_batch_t *b);

/* Appends an event. seq must be last_seq + 1 for the first event of the
 * batch and increase by one after that (checked by ao_log_write).
 * workflow_id may be NULL or "" (then the event is not indexed). */
void ao_log_batch_put_event(ao_log_batch_t *b, uint64_t seq, const char *workflow_id,
                            const void *data, size_t len);
/* Replaces the workflow's snapshot: its state after applying event seq. */
void ao_log_batch_put_snapshot(ao_log_batch_t *b, const char *workflow_id, uint64_t seq,
                               const void *data, size_t len);
/* Stores a checkpoint of the workflow taken at event seq. */
void ao_log_batch_put_checkpoint(ao_log_batch_t *b, const char *workflow_id, uint64_t seq,
                                 const void *data, size_t len);
/* Sets a metadata value. */
void ao_log_batch_put_meta(ao_log_batch_t *b, const char *key, const void *data, size_t len);

/* Writes the batch atomically, syncing the WAL if opened with sync. On
 * success the batch's events are durable and last_seq advanced. Errors:
 * AO_EINVAL (sequence numbers not contiguous with the log), AO_EIO. The
 * batch is left as it was either way. Only one thread may write. */
int ao_log_write(ao_log_t *log, ao_log_batch_t *b, ao_status_t *st);

/* Visitors get each record's bytes, valid only during the call. Returning
 * nonzero stops the iteration (the read returns 0). */
typedef int (*ao_log_event_fn)(void *ud, uint64_t seq, const void *data, size_t len);

/* Events with from <= seq <= to, in order, at most max of them (0: no
 * limit). */
int ao_log_read_range(ao_log_t *log, uint64_t from, uint64_t to, size_t max, ao_log_event_fn fn,
                      void *ud, ao_status_t *st);

/* The events of one workflow with from <= seq <= to, in order, at most max
 * (0: no limit): through the workflow index up to indexed_through, then
 * from the records after it, whose workflow ids say whose their events
 * are. */
int ao_log_read_workflow(ao_log_t *log, const char *workflow_id, uint64_t from, uint64_t to,
                         size_t max, ao_log_event_fn fn, void *ud, ao_status_t *st);

/* The workflow's latest snapshot: *seq and a malloc'd copy of its bytes in
 * *data and *len (caller frees). AO_ENOTFOUND if it has none. */
int ao_log_get_snapshot(ao_log_t *log, const char *workflow_id, uint64_t *seq, void **data,
                        size_t *len, ao_status_t *st);

/* Every snapshot (one per workflow), in workflow id order. */
typedef int (*ao_log_snapshot_fn)(void *ud, const char *workflow_id, uint64_t seq,
                                  const void *data, size_t len);
int ao_log_scan_snapshots(ao_log_t *log, ao_log_snapshot_fn fn, void *ud, ao_status_t *st);

/* The workflow's checkpoints, oldest first. */
int ao_log_list_checkpoints(ao_log_t *log, const char *workflow_id, ao_log_event_fn fn, void *ud,
                            ao_status_t *st);
/* One checkpoint (seq 0: the latest) into a malloc'd copy; *seq_out gets
 * its seq. AO_ENOTFOUND if there is none. */
int ao_log_get_checkpoint(ao_log_t *log, const char *workflow_id, uint64_t seq,
                          uint64_t *seq_out, void **data, size_t *len, ao_status_t *st);

/* A metadata value into a malloc'd copy (NUL-terminated beyond len).
 * AO_ENOTFOUND if unset. */
int ao_log_get_meta(ao_log_t *log, const char *key, void **data, size_t *len, ao_status_t *st);

#endif
