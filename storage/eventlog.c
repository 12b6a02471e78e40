/*
 * The event log on RocksDB. See eventlog.h for the layout and guarantees.
 *
 * Threads: ao_log_write from one thread at a time (the processor); reads
 * from any thread (RocksDB reads are thread-safe); last_seq is an atomic.
 */
#include "eventlog.h"

#include "log.h"
#include "mem.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { CF_DEFAULT, CF_EVENTS, CF_WF_INDEX, CF_SNAPSHOTS, CF_CHECKPOINTS, CF_META, CF_COUNT };
static const char *cf_names[CF_COUNT] = {"default", "events", "wf_index", "snapshots",
                                         "checkpoints", "meta"};

#define SCHEMA_KEY "schema_version"

struct ao_log {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    atomic_uint_fast64_t last_seq;
    char *dir;
    int read_only;
};

/* A workflow's events in a batch: one index entry at write time, keyed by
 * the first, holding the deltas to the others. */
typedef struct wf_group {
    char *workflow_id;
    uint64_t first, last;
    unsigned char *deltas;
    size_t n_deltas, cap_deltas;
} wf_group_t;

/* Records: the events of a batch go into the events family a record of
 * up to REC_MAX_EVENTS events (or past REC_MAX_BYTES, the event that
 * crosses it) per key, keyed by its first event's seq. A record of one
 * event is that event's bytes, as schema 1 and 2 stored every event; a
 * record of several is REC_MARK, varint(count), then varint(length) and
 * bytes per event (no packed Event starts with a 0 byte: field number 0
 * is invalid). One key per record rather than per event: each key is a
 * memtable insert and a WriteBatch entry, a fifth of a chain step's
 * write. */
enum { REC_MARK = 0x00, REC_MAX_EVENTS = 256, REC_MAX_BYTES = 64 << 10, REC_HEAD = 11 };

struct ao_log_batch {
    ao_log_t *log;
    rocksdb_writebatch_t *wb;
    uint64_t first, last;
    size_t n_events;
    /* The record being filled: its events as varint(length) + bytes,
     * from rec + REC_HEAD (room for the header, written when it is put). */
    unsigned char *rec;
    size_t rec_len, rec_cap;
    uint64_t rec_first;
    size_t rec_n;
    size_t rec_head; /* bytes of the first event's length varint */
    json_t *group_of; /* workflow id -> index into groups, once there are two */
    wf_group_t *groups;
    size_t n_groups, cap_groups;
    size_t last_group; /* the group of the last event */
    int indexed; /* the groups' index entries are in wb */
};

static void be64(uint64_t v, unsigned char out[8])
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t rd_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static size_t varint_put(unsigned char *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (unsigned char)v;
    return n;
}

/* Reads a varint at *p (before end) into *v. -1: it does not decode. */
static int varint_get(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* "WF\0SEQ" keys of wf_index and checkpoints. */
static size_t wf_key(const char *wf, uint64_t seq, unsigned char *out, size_t cap)
{
    size_t n = strlen(wf);
    if (n + 9 > cap) n = cap - 9;
    memcpy(out, wf, n);
    out[n] = 0;
    be64(seq, out + n + 1);
    return n + 9;
}

static int mkdirs(const char *path)
{
    char *p = ao_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static int rocks_error(ao_status_t *st, const char *dir, const char *what, char *err)
{
    /* Classified by what RocksDB's Status says. Only a failure to take the
     * directory's LOCK file ("While lock file: DIR/LOCK: ..." from another
     * process, "lock hold by current process ...: DIR/LOCK: ..." from
     * this one) is "busy": a bare "lock" would also match "block", and a
     * damaged table ("Corruption: block checksum mismatch") would be
     * reported as another agentosd holding the directory. */
    int code = AO_EIO;
    if (!strncmp(err, "Corruption:", 11)) code = AO_ECORRUPT;
    else if (strstr(err, "/LOCK: ")) code = AO_EBUSY;
    if (code == AO_EBUSY)
        ao_status_set(st, code,
                      "the data directory %s is in use by another agentosd (its RocksDB LOCK is "
                      "held): %s",
                      dir, err);
    else
        ao_status_set(st, code, "%s %s: %s", what, dir, err);
    rocksdb_free(err);
    return code;
}

void ao_log_close(ao_log_t *log)
{
    if (!log) return;
    for (int i = 0; i < CF_COUNT; i++)
        if (log->cf[i]) rocksdb_column_family_handle_destroy(log->cf[i]);
    if (log->db) rocksdb_close(log->db);
    if (log->opts) rocksdb_options_destroy(log->opts);
    if (log->wopts) rocksdb_writeoptions_destroy(log->wopts);
    if (log->ropts) rocksdb_readoptions_destroy(log->ropts);
    free(log->dir);
    free(log);
}

/* ---- records (see REC_MARK) ------------------------------------------------ */

/* One record of the events family: events first .. first + n - 1, read
 * through a cursor (the next event is number i, at p). */
typedef struct rec {
    uint64_t first, n, i;
    const char *v; /* the value; body NULL: it is one event */
    size_t vl;
    const unsigned char *body, *p, *end;
} rec_t;

static int rec_corrupt(ao_log_t *log, const rec_t *r, const char *what, ao_status_t *st)
{
    return ao_status_set(st, AO_ECORRUPT, "%s: the events record at %llu does not decode (%s)", log->dir,
                         (unsigned long long)r->first, what);
}

static int rec_open(ao_log_t *log, rec_t *r, const char *k, size_t kl, const char *v, size_t vl,
                    ao_status_t *st)
{
    if (kl != 8)
        return ao_status_set(st, AO_ECORRUPT, "%s: an events key of %zu bytes (want 8)", log->dir, kl);
    memset(r, 0, sizeof *r);
    r->first = rd_be64((const unsigned char *)k);
    r->v = v;
    r->vl = vl;
    r->n = 1;
    if (!vl || (unsigned char)v[0] != REC_MARK) return 0;
    const unsigned char *p = (const unsigned char *)v + 1, *end = (const unsigned char *)v + vl;
    if (varint_get(&p, end, &r->n)) return rec_corrupt(log, r, "its count", st);
    /* Every event takes at least its length byte. */
    if (!r->n || r->n > (uint64_t)(end - p) || r->n - 1 > UINT64_MAX - r->first)
        return rec_corrupt(log, r, "its count", st);
    r->body = r->p = p;
    r->end = end;
    return 0;
}

static uint64_t rec_last(const rec_t *r)
{
    return r->first + (r->n - 1);
}

static int rec_holds(const rec_t *r, uint64_t seq)
{
    return seq >= r->first && seq - r->first < r->n;
}

/* The next event: 1 (in *seq, *data, *len), 0 past the last, or
 * AO_ECORRUPT. */
static int rec_next(ao_log_t *log, rec_t *r, uint64_t *seq, const char **data, size_t *len,
                    ao_status_t *st)
{
    if (r->i == r->n) return 0;
    *seq = r->first + r->i;
    if (!r->body) {
        *data = r->v;
        *len = r->vl;
        r->i++;
        return 1;
    }
    uint64_t l;
    if (varint_get(&r->p, r->end, &l) || l > (uint64_t)(r->end - r->p))
        return rec_corrupt(log, r, "an event's length", st);
    *data = (const char *)r->p;
    *len = (size_t)l;
    r->p += l;
    if (++r->i == r->n && r->p != r->end) return rec_corrupt(log, r, "bytes after its last event", st);
    return 1;
}

/* Moves the cursor to event seq (which the record holds). */
static int rec_seek(ao_log_t *log, rec_t *r, uint64_t seq, ao_status_t *st)
{
    if (!r->body) {
        r->i = 0;
        return 0;
    }
    if (seq - r->first < r->i) {
        r->i = 0;
        r->p = r->body;
    }
    while (r->first + r->i < seq) {
        uint64_t l;
        if (varint_get(&r->p, r->end, &l) || l > (uint64_t)(r->end - r->p))
            return rec_corrupt(log, r, "an event's length", st);
        r->p += l;
        r->i++;
    }
    return 0;
}

/* Reads the last key of `events` into last_seq. */
static int load_last_seq(ao_log_t *log, ao_status_t *st)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(log->db, log->ropts, log->cf[CF_EVENTS]);
    rocksdb_iter_seek_to_last(it);
    uint64_t last = 0;
    int rc = 0;
    if (rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        rec_t r;
        rc = rec_open(log, &r, k, kl, v, vl, st);
        if (!rc) last = rec_last(&r);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err) return rocks_error(st, log->dir, "reading", err);
    atomic_store(&log->last_seq, last);
    return rc;
}

/* Checks (or, for a new database, writes) the schema version. */
static int check_schema(ao_log_t *log, int created, ao_status_t *st)
{
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(log->db, log->ropts, log->cf[CF_META], SCHEMA_KEY, strlen(SCHEMA_KEY), &vl, &err);
    if (err) return rocks_error(st, log->dir, "reading the schema version of", err);
    if (!v) {
        if (atomic_load(&log->last_seq) > 0 || !created) {
            /* Data, or a database that existed, without a version. */
            if (atomic_load(&log->last_seq) > 0)
                return ao_status_set(st, AO_ECORRUPT,
                                     "%s holds events but no schema version: refusing to open it",
                                     log->dir);
        }
        if (log->read_only) return 0;
        char buf[16];
        int n = snprintf(buf, sizeof buf, "%d", AO_LOG_SCHEMA_VERSION);
        rocksdb_put_cf(log->db, log->wopts, log->cf[CF_META], SCHEMA_KEY, strlen(SCHEMA_KEY), buf,
                       (size_t)n, &err);
        if (err) return rocks_error(st, log->dir, "writing the schema version of", err);
        return 0;
    }
    char buf[32];
    size_t n = vl < sizeof buf - 1 ? vl : sizeof buf - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    rocksdb_free(v);
    char *end;
    long ver = strtol(buf, &end, 10);
    if (!*buf || *end || ver <= 0)
        return ao_status_set(st, AO_ESCHEMA,
                             "%s has an unknown storage schema version \"%s\" (this agentosd "
                             "reads version %d)",
                             log->dir, buf, AO_LOG_SCHEMA_VERSION);
    if (ver >= 1 && ver < AO_LOG_SCHEMA_VERSION && !log->read_only) {
        /* Versions 1 and 2 read as 3: their index entries hold one event
         * each (1) or several (2, 3), their events one per key (a record
         * of one event). From now on records may hold several events and
         * index entries several, which they would misread: the database
         * says so. */
        int m = snprintf(buf, sizeof buf, "%d", AO_LOG_SCHEMA_VERSION);
        rocksdb_put_cf(log->db, log->wopts, log->cf[CF_META], SCHEMA_KEY, strlen(SCHEMA_KEY), buf,
                       (size_t)m, &err);
        if (err) return rocks_error(st, log->dir, "writing the schema version of", err);
        AO_INFO("storage", "upgraded %s from storage schema version %ld to %d", log->dir, ver,
                AO_LOG_SCHEMA_VERSION);
        return 0;
    }
    if (ver < 1 || ver > AO_LOG_SCHEMA_VERSION)
        return ao_status_set(st, AO_ESCHEMA,
                             "%s has storage schema version %ld; this agentosd reads versions 1 to %d%s",
                             log->dir, ver, AO_LOG_SCHEMA_VERSION,
                             ver > AO_LOG_SCHEMA_VERSION ? " (it was written by a newer agentosd)" : "");
    return 0;
}

int ao_log_open(const ao_log_options_t *opt, ao_log_t **out, ao_status_t *st)
{
    *out = NULL;
    ao_log_t *log = ao_xcalloc(1, sizeof *log);
    log->dir = ao_xstrdup(opt->dir);
    log->read_only = opt->read_only;
    struct stat sb;
    int existed = stat(opt->dir, &sb) == 0;
    if (opt->read_only && !existed) {
        /* RocksDB would make the directory (for its info log) first. */
        int rc = ao_status_set(st, AO_ENOTFOUND, "there is no event log at %s: %s", opt->dir,
                               strerror(errno));
        ao_log_close(log);
        return rc;
    }
    if (!opt->read_only && mkdirs(opt->dir)) {
        int rc = ao_status_set(st, AO_EIO, "cannot create %s: %s", opt->dir, strerror(errno));
        ao_log_close(log);
        return rc;
    }
    rocksdb_options_t *o = rocksdb_options_create();
    log->opts = o;
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    rocksdb_options_increase_parallelism(o, 2);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(o, 32 << 20);
    /* A write-ahead log file is kept until every column family has flushed
     * what it holds, and the small ones (snapshots, checkpoints, meta)
     * rarely fill a memtable: without a cap, opening a log of 1,000,000
     * events replayed 323 MB of WAL (1.6 s of a 2.3 s recovery). Past 64 MiB
     * RocksDB flushes the families that hold the oldest file. */
    rocksdb_options_set_max_total_wal_size(o, 64 << 20);
    rocksdb_options_set_max_open_files(o, 512);
    rocksdb_options_set_keep_log_file_num(o, 4);
    /* One thread writes (the event processor or its log writer): the
     * memtables need no concurrent inserts. */
    rocksdb_options_set_allow_concurrent_memtable_write(o, 0);

    const rocksdb_options_t *cf_opts[CF_COUNT];
    for (int i = 0; i < CF_COUNT; i++) cf_opts[i] = o;
    char *err = NULL;
    if (opt->read_only)
        log->db = rocksdb_open_for_read_only_column_families(o, opt->dir, CF_COUNT, cf_names, cf_opts,
                                                             log->cf, 0, &err);
    else
        log->db = rocksdb_open_column_families(o, opt->dir, CF_COUNT, cf_names, cf_opts, log->cf, &err);
    if (err) {
        int rc = rocks_error(st, opt->dir, "cannot open the event log at", err);
        memset(log->cf, 0, sizeof log->cf);
        log->db = NULL;
        ao_log_close(log);
        return rc;
    }
    log->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(log->wopts, opt->sync ? 1 : 0);
    log->ropts = rocksdb_readoptions_create();
    int rc = load_last_seq(log, st);
    if (!rc) rc = check_schema(log, !existed, st);
    if (rc) {
        ao_log_close(log);
        return rc;
    }
    *out = log;
    return 0;
}

uint64_t ao_log_last_seq(ao_log_t *log)
{
    return atomic_load(&log->last_seq);
}

/* ---- batches ------------------------------------------------------------ */

ao_log_batch_t *ao_log_batch_new(ao_log_t *log)
{
    ao_log_batch_t *b = ao_xcalloc(1, sizeof *b);
    b->log = log;
    b->wb = rocksdb_writebatch_create();
    return b;
}

static void clear_groups(ao_log_batch_t *b)
{
    for (size_t i = 0; i < b->n_groups; i++) {
        free(b->groups[i].workflow_id);
        free(b->groups[i].deltas);
    }
    b->n_groups = 0;
    b->last_group = 0;
    if (b->group_of) json_object_clear(b->group_of);
    b->indexed = 0;
}

void ao_log_batch_free(ao_log_batch_t *b)
{
    if (!b) return;
    clear_groups(b);
    free(b->rec);
    free(b->groups);
    json_decref(b->group_of);
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void ao_log_batch_clear(ao_log_batch_t *b)
{
    rocksdb_writebatch_clear(b->wb);
    clear_groups(b);
    b->first = b->last = 0;
    b->n_events = 0;
    b->rec_len = b->rec_n = 0;
}

/* The open record goes into the WriteBatch. */
static void put_record(ao_log_batch_t *b)
{
    if (!b->rec_n) return;
    unsigned char k[8];
    be64(b->rec_first, k);
    unsigned char *body = b->rec + REC_HEAD;
    if (b->rec_n == 1) {
        rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_EVENTS], (const char *)k, 8,
                                  (const char *)body + b->rec_head, b->rec_len - b->rec_head);
    } else {
        unsigned char head[REC_HEAD];
        head[0] = REC_MARK;
        size_t hl = 1 + varint_put(head + 1, b->rec_n);
        memcpy(body - hl, head, hl);
        rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_EVENTS], (const char *)k, 8,
                                  (const char *)body - hl, hl + b->rec_len);
    }
    b->rec_len = b->rec_n = 0;
}

static void put_varint(wf_group_t *g, uint64_t v)
{
    if (g->cap_deltas - g->n_deltas < 10) {
        g->cap_deltas = g->cap_deltas ? g->cap_deltas * 2 : 16;
        g->deltas = ao_xrealloc(g->deltas, g->cap_deltas);
    }
    while (v >= 0x80) {
        g->deltas[g->n_deltas++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    g->deltas[g->n_deltas++] = (unsigned char)v;
}

/* A batch's events mostly come in runs of one workflow: the last group is
 * tried before the map, and a batch of one workflow never builds the map. */
static void group_event(ao_log_batch_t *b, const char *workflow_id, uint64_t seq)
{
    wf_group_t *g = NULL;
    if (b->n_groups && !strcmp(b->groups[b->last_group].workflow_id, workflow_id)) {
        g = &b->groups[b->last_group];
    } else if (b->n_groups > 1) {
        json_t *v = json_object_get(b->group_of, workflow_id);
        if (v) g = &b->groups[b->last_group = (size_t)json_integer_value(v)];
    }
    if (g) {
        put_varint(g, seq - g->last);
        g->last = seq;
        return;
    }
    if (b->n_groups == b->cap_groups) {
        b->cap_groups = b->cap_groups ? b->cap_groups * 2 : 8;
        b->groups = ao_xrealloc(b->groups, b->cap_groups * sizeof *b->groups);
    }
    if (b->n_groups) {
        if (!b->group_of) b->group_of = json_object();
        if (b->n_groups == 1) json_object_set_new(b->group_of, b->groups[0].workflow_id, json_integer(0));
        json_object_set_new(b->group_of, workflow_id, json_integer((json_int_t)b->n_groups));
    }
    g = &b->groups[b->n_groups];
    memset(g, 0, sizeof *g);
    g->workflow_id = ao_xstrdup(workflow_id);
    g->first = g->last = seq;
    b->last_group = b->n_groups++;
}

/* The index entries of the batch's workflows, once. */
static void put_index(ao_log_batch_t *b)
{
    if (b->indexed) return;
    for (size_t i = 0; i < b->n_groups; i++) {
        const wf_group_t *g = &b->groups[i];
        unsigned char ik[256 + 9];
        size_t kl = wf_key(g->workflow_id, g->first, ik, sizeof ik);
        rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_WF_INDEX], (const char *)ik, kl,
                                  (const char *)g->deltas, g->n_deltas);
    }
    b->indexed = 1;
}

size_t ao_log_batch_count(const ao_log_batch_t *b)
{
    return b->n_events;
}

void ao_log_batch_put_event(ao_log_batch_t *b, uint64_t seq, const char *workflow_id,
                            const void *data, size_t len)
{
    /* A record holds consecutive seqs only (a gap is refused at write). */
    if (b->rec_n && seq != b->rec_first + b->rec_n) put_record(b);
    if (b->rec_cap < REC_HEAD + b->rec_len + len + 10) {
        b->rec_cap = (REC_HEAD + b->rec_len + len + 10) * 2;
        b->rec = ao_xrealloc(b->rec, b->rec_cap);
    }
    unsigned char *at = b->rec + REC_HEAD + b->rec_len;
    size_t head = varint_put(at, len);
    if (!b->rec_n) {
        b->rec_first = seq;
        b->rec_head = head;
    }
    memcpy(at + head, data, len);
    b->rec_len += head + len;
    if (++b->rec_n == REC_MAX_EVENTS || b->rec_len >= REC_MAX_BYTES) put_record(b);
    if (workflow_id && *workflow_id) group_event(b, workflow_id, seq);
    if (!b->n_events) b->first = seq;
    else if (seq != b->last + 1) b->first = 0; /* marks a gap: write refuses */
    b->last = seq;
    b->n_events++;
}

void ao_log_batch_put_snapshot(ao_log_batch_t *b, const char *workflow_id, uint64_t seq,
                               const void *data, size_t len)
{
    unsigned char *v = ao_xmalloc(len + 8);
    be64(seq, v);
    memcpy(v + 8, data, len);
    rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_SNAPSHOTS], workflow_id, strlen(workflow_id),
                              (const char *)v, len + 8);
    free(v);
}

void ao_log_batch_put_checkpoint(ao_log_batch_t *b, const char *workflow_id, uint64_t seq,
                                 const void *data, size_t len)
{
    unsigned char k[256 + 9];
    size_t kl = wf_key(workflow_id, seq, k, sizeof k);
    rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_CHECKPOINTS], (const char *)k, kl, data, len);
}

void ao_log_batch_put_meta(ao_log_batch_t *b, const char *key, const void *data, size_t len)
{
    rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_META], key, strlen(key), data, len);
}

int ao_log_write(ao_log_t *log, ao_log_batch_t *b, ao_status_t *st)
{
    /* RocksDB counts into a per-thread perf context that nothing here
     * reads: not on the threads that write. */
    static _Thread_local int perf_off;
    if (!perf_off) {
        rocksdb_set_perf_level(rocksdb_disable);
        perf_off = 1;
    }
    if (b->log != log) return ao_status_set(st, AO_EINVAL, "a batch of another log");
    uint64_t last = atomic_load(&log->last_seq);
    if (b->n_events && (b->first != last + 1))
        return ao_status_set(st, AO_EINVAL,
                             "a batch of events %llu..%llu does not follow the log's last event %llu "
                             "without a gap",
                             (unsigned long long)b->first, (unsigned long long)b->last,
                             (unsigned long long)last);
    put_record(b); /* once: it empties the open record */
    put_index(b);
    char *err = NULL;
    rocksdb_write(log->db, log->wopts, b->wb, &err);
    if (err) return rocks_error(st, log->dir, "writing to", err);
    if (b->n_events) atomic_store(&log->last_seq, b->last);
    return 0;
}

/* ---- reads ---------------------------------------------------------------- */

/* Iterates [lo, hi) of a column family, calling fn(key, value). */
typedef int (*kv_fn)(void *ud, const char *k, size_t kl, const char *v, size_t vl);

static int scan(ao_log_t *log, int cf, const char *lo, size_t lol, const char *hi, size_t hil,
                int reverse_last, kv_fn fn, void *ud, ao_status_t *st)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (hi) rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(log->db, ro, log->cf[cf]);
    int rc = 0;
    if (reverse_last) {
        /* The last key below hi, if it is >= lo. */
        if (hi) rocksdb_iter_seek_for_prev(it, hi, hil);
        else rocksdb_iter_seek_to_last(it);
        if (rocksdb_iter_valid(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            if (hi && kl == hil && !memcmp(k, hi, hil)) rocksdb_iter_prev(it);
        }
        if (rocksdb_iter_valid(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            size_t m = kl < lol ? kl : lol;
            int ge = memcmp(k, lo, m) > 0 || (memcmp(k, lo, m) == 0 && kl >= lol);
            if (ge) {
                const char *v = rocksdb_iter_value(it, &vl);
                fn(ud, k, kl, v, vl);
            }
        }
    } else {
        rocksdb_iter_seek(it, lo, lol);
        for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            int r = fn(ud, k, kl, v, vl);
            if (r < 0) {
                rc = r;
                break;
            }
            if (r) break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (err) return rocks_error(st, log->dir, "reading", err);
    return rc;
}

int ao_log_read_range(ao_log_t *log, uint64_t from, uint64_t to, size_t max, ao_log_event_fn fn,
                      void *ud, ao_status_t *st)
{
    if (to < from) return 0;
    unsigned char lo[8], hi[8];
    be64(from, lo);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (to != UINT64_MAX) {
        be64(to + 1, hi);
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 8);
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(log->db, ro, log->cf[CF_EVENTS]);
    /* The record holding `from` may start before it. */
    rocksdb_iter_seek_for_prev(it, (const char *)lo, 8);
    if (!rocksdb_iter_valid(it)) rocksdb_iter_seek(it, (const char *)lo, 8);
    size_t n = 0;
    int rc = 0, done = 0, any = 0;
    uint64_t prev_first = 0, prev_last = 0;
    for (; !done && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        rec_t r;
        if ((rc = rec_open(log, &r, k, kl, v, vl, st))) break;
        if (any && r.first <= prev_last) {
            rc = ao_status_set(st, AO_ECORRUPT, "%s: the events records at %llu and %llu overlap",
                               log->dir, (unsigned long long)prev_first,
                               (unsigned long long)r.first);
            break;
        }
        any = 1;
        prev_first = r.first;
        prev_last = rec_last(&r);
        if (rec_last(&r) < from) continue;
        if (from > r.first && (rc = rec_seek(log, &r, from, st))) break;
        uint64_t seq;
        const char *data;
        size_t len;
        int got;
        while ((got = rec_next(log, &r, &seq, &data, &len, st)) > 0) {
            if (seq > to || fn(ud, seq, data, len) || ++n == max) {
                done = 1;
                break;
            }
        }
        if (got < 0) {
            rc = got;
            break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (err) {
        ao_status_clear(st);
        return rocks_error(st, log->dir, "reading", err);
    }
    return rc;
}

typedef struct range_ctx {
    ao_log_t *log;
    ao_log_event_fn fn;
    void *ud;
    size_t max, n;
    ao_status_t *st;
} range_ctx_t;

typedef struct wf_ctx {
    range_ctx_t r;
    size_t prefix;
    /* One iterator over events for the whole read, rather than a point
     * lookup per index entry: a Get searches every level (no bloom
     * filters here) and decompresses a block per event, while the
     * iterator keeps its position and its block, so a workflow's
     * consecutive events cost a Next and scattered ones a Seek from
     * where it is. */
    rocksdb_iterator_t *events;
    rec_t rec; /* the record the iterator is on, if on */
    int on;
} wf_ctx_t;

/* Delivers event seq of the workflow (named by the index). */
static int wf_event(wf_ctx_t *c, uint64_t seq)
{
    ao_log_t *log = c->r.log;
    /* Made after the index iterator: its snapshot is as new or newer, so
     * every event the index names is in it (an event and its index entry
     * are one WriteBatch). */
    if (!c->events) c->events = rocksdb_create_iterator_cf(log->db, log->ropts, log->cf[CF_EVENTS]);
    if (!c->on || !rec_holds(&c->rec, seq)) {
        /* The next record, or the one holding seq. */
        if (c->on && seq > c->rec.first && seq - c->rec.first == c->rec.n) {
            rocksdb_iter_next(c->events);
        } else {
            unsigned char ek[8];
            be64(seq, ek);
            rocksdb_iter_seek_for_prev(c->events, (const char *)ek, 8);
        }
        c->on = 0;
        if (rocksdb_iter_valid(c->events)) {
            size_t kl, vl;
            const char *k = rocksdb_iter_key(c->events, &kl);
            const char *v = rocksdb_iter_value(c->events, &vl);
            int rc = rec_open(log, &c->rec, k, kl, v, vl, c->r.st);
            if (rc) return rc;
            c->on = 1;
        }
        if (!c->on || !rec_holds(&c->rec, seq)) {
            char *err = NULL;
            rocksdb_iter_get_error(c->events, &err);
            if (err) return rocks_error(c->r.st, log->dir, "reading", err);
            ao_status_set(c->r.st, AO_ECORRUPT, "%s: the workflow index names event %llu, which is missing",
                          log->dir, (unsigned long long)seq);
            return AO_ECORRUPT;
        }
    }
    uint64_t at;
    const char *ev;
    size_t el;
    int rc = rec_seek(log, &c->rec, seq, c->r.st);
    if (!rc) rc = rec_next(log, &c->rec, &at, &ev, &el, c->r.st);
    if (rc < 0) return rc;
    if (c->r.fn(c->r.ud, seq, ev, el)) return 1;
    return ++c->r.n == c->r.max ? 1 : 0;
}

/* One index entry: its key's seq, then one per varint delta of its value;
 * those in [from, to] are delivered. 2: past `to`. */
static int wf_entry(wf_ctx_t *c, const char *k, size_t kl, const char *v, size_t vl, uint64_t from,
                    uint64_t to)
{
    if (kl != c->prefix + 8) {
        ao_status_set(c->r.st, AO_ECORRUPT, "%s: a workflow index key of %zu bytes", c->r.log->dir, kl);
        return AO_ECORRUPT;
    }
    uint64_t seq = rd_be64((const unsigned char *)k + c->prefix);
    const unsigned char *p = (const unsigned char *)v, *end = p + vl;
    for (;;) {
        if (seq > to) return 2;
        if (seq >= from) {
            int r = wf_event(c, seq);
            if (r) return r;
        }
        if (p == end) return 0;
        uint64_t d = 0;
        int shift = 0;
        while (p < end && (*p & 0x80) && shift < 63) {
            d |= (uint64_t)(*p++ & 0x7f) << shift;
            shift += 7;
        }
        if (p < end) d |= (uint64_t)*p++ << shift;
        else d = 0;
        if (!d) {
            ao_status_set(c->r.st, AO_ECORRUPT, "%s: a workflow index entry at %llu does not decode",
                          c->r.log->dir, (unsigned long long)rd_be64((const unsigned char *)k + c->prefix));
            return AO_ECORRUPT;
        }
        seq += d;
    }
}

int ao_log_read_workflow(ao_log_t *log, const char *workflow_id, uint64_t from, uint64_t to,
                         size_t max, ao_log_event_fn fn, void *ud, ao_status_t *st)
{
    if (to < from) return 0;
    unsigned char lo[256 + 9], hi[256 + 9];
    size_t ll = wf_key(workflow_id, from, lo, sizeof lo);
    size_t prefix = ll - 8;
    /* Past this workflow's keys: "WF\x01". */
    memcpy(hi, lo, prefix);
    hi[prefix - 1] = 1;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, prefix);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(log->db, ro, log->cf[CF_WF_INDEX]);
    /* The entry holding `from` may start before it: begin at the last entry
     * at or before (from), if it is this workflow's. */
    rocksdb_iter_seek_for_prev(it, (const char *)lo, ll);
    int mine = 0;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        mine = kl == ll && !memcmp(k, lo, prefix);
    }
    if (!mine) {
        memset(lo + prefix, 0, 8);
        rocksdb_iter_seek(it, (const char *)lo, ll);
    }
    wf_ctx_t c = {{log, fn, ud, max, 0, st}, prefix, NULL, {0}, 0};
    int rc = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        int r = wf_entry(&c, k, kl, v, vl, from, to);
        if (r < 0) rc = r;
        if (r) break;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (c.events) rocksdb_iter_destroy(c.events);
    if (err) return rocks_error(st, log->dir, "reading", err);
    return rc;
}

typedef struct one_ctx {
    void **data;
    size_t *len;
    uint64_t *seq;
    int found;
    size_t prefix; /* checkpoint keys: id length + 1; 0 for snapshots */
} one_ctx_t;

static int one_kv(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    one_ctx_t *c = ud;
    if (c->prefix) {
        if (kl != c->prefix + 8) return AO_ECORRUPT;
        *c->seq = rd_be64((const unsigned char *)k + c->prefix);
        *c->data = ao_xmalloc(vl + 1);
        memcpy(*c->data, v, vl);
        ((char *)*c->data)[vl] = '\0';
        *c->len = vl;
    }
    c->found = 1;
    return 1;
}

int ao_log_get_snapshot(ao_log_t *log, const char *workflow_id, uint64_t *seq, void **data,
                        size_t *len, ao_status_t *st)
{
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(log->db, log->ropts, log->cf[CF_SNAPSHOTS], workflow_id, strlen(workflow_id),
                             &vl, &err);
    if (err) return rocks_error(st, log->dir, "reading", err);
    if (!v) return ao_status_set(st, AO_ENOTFOUND, "no snapshot of workflow %s", workflow_id);
    if (vl < 8) {
        rocksdb_free(v);
        return ao_status_set(st, AO_ECORRUPT, "the snapshot of workflow %s is %zu bytes", workflow_id, vl);
    }
    *seq = rd_be64((const unsigned char *)v);
    *len = vl - 8;
    *data = ao_xmalloc(vl - 8 + 1);
    memcpy(*data, v + 8, vl - 8);
    rocksdb_free(v);
    return 0;
}

typedef struct snap_ctx {
    ao_log_snapshot_fn fn;
    void *ud;
    ao_log_t *log;
    ao_status_t *st;
} snap_ctx_t;

static int snap_kv(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    snap_ctx_t *c = ud;
    if (vl < 8) {
        ao_status_set(c->st, AO_ECORRUPT, "%s: a snapshot of %zu bytes", c->log->dir, vl);
        return AO_ECORRUPT;
    }
    char id[257];
    size_t n = kl < 256 ? kl : 256;
    memcpy(id, k, n);
    id[n] = '\0';
    return c->fn(c->ud, id, rd_be64((const unsigned char *)v), v + 8, vl - 8) ? 1 : 0;
}

int ao_log_scan_snapshots(ao_log_t *log, ao_log_snapshot_fn fn, void *ud, ao_status_t *st)
{
    snap_ctx_t c = {fn, ud, log, st};
    return scan(log, CF_SNAPSHOTS, "", 0, NULL, 0, 0, snap_kv, &c, st);
}

typedef struct ck_ctx {
    ao_log_event_fn fn;
    void *ud;
    size_t prefix;
} ck_ctx_t;

static int ck_kv(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    ck_ctx_t *c = ud;
    if (kl != c->prefix + 8) return AO_ECORRUPT;
    return c->fn(c->ud, rd_be64((const unsigned char *)k + c->prefix), v, vl) ? 1 : 0;
}

int ao_log_list_checkpoints(ao_log_t *log, const char *workflow_id, ao_log_event_fn fn, void *ud,
                            ao_status_t *st)
{
    unsigned char lo[256 + 9], hi[256 + 9];
    size_t ll = wf_key(workflow_id, 0, lo, sizeof lo);
    memcpy(hi, lo, ll - 8);
    hi[ll - 9] = 1;
    ck_ctx_t c = {fn, ud, ll - 8};
    int rc = scan(log, CF_CHECKPOINTS, (const char *)lo, ll, (const char *)hi, ll - 8, 0, ck_kv, &c, st);
    if (rc == AO_ECORRUPT) ao_status_set(st, rc, "%s: a malformed checkpoint key of %s", log->dir, workflow_id);
    return rc;
}

int ao_log_get_checkpoint(ao_log_t *log, const char *workflow_id, uint64_t seq,
                          uint64_t *seq_out, void **data, size_t *len, ao_status_t *st)
{
    unsigned char lo[256 + 9], hi[256 + 9];
    size_t ll = wf_key(workflow_id, seq, lo, sizeof lo);
    one_ctx_t c = {data, len, seq_out, 0, ll - 8};
    int rc;
    if (seq) {
        size_t hl = wf_key(workflow_id, seq + 1, hi, sizeof hi);
        rc = scan(log, CF_CHECKPOINTS, (const char *)lo, ll, (const char *)hi, hl, 0, one_kv, &c, st);
    } else {
        /* The latest: the last key below "WF\x01". */
        memcpy(hi, lo, ll - 8);
        hi[ll - 9] = 1;
        rc = scan(log, CF_CHECKPOINTS, (const char *)lo, ll, (const char *)hi, ll - 8, 1, one_kv, &c, st);
    }
    if (rc < 0) return rc == AO_ECORRUPT ? ao_status_set(st, rc, "%s: a malformed checkpoint key", log->dir) : rc;
    if (!c.found)
        return ao_status_set(st, AO_ENOTFOUND, "no checkpoint %llu of workflow %s",
                             (unsigned long long)seq, workflow_id);
    return 0;
}

int ao_log_get_meta(ao_log_t *log, const char *key, void **data, size_t *len, ao_status_t *st)
{
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(log->db, log->ropts, log->cf[CF_META], key, strlen(key), &vl, &err);
    if (err) return rocks_error(st, log->dir, "reading", err);
    if (!v) return ao_status_set(st, AO_ENOTFOUND, "no metadata %s", key);
    *data = ao_xmalloc(vl + 1);
    memcpy(*data, v, vl);
    ((char *)*data)[vl] = '\0';
    *len = vl;
    rocksdb_free(v);
    return 0;
}
