/*
 * The event log on RocksDB. See eventlog.h for the layout and guarantees.
 *
 * Threads: ao_log_write from one thread at a time (the processor or its
 * log writer), which alone touches the pending index groups; reads from
 * any thread (RocksDB reads are thread-safe); last_seq and
 * indexed_through are atomics.
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

/* A workflow's events not indexed yet: one index entry when they are,
 * keyed by the first, holding the deltas to the others. */
typedef struct wf_group {
    char *workflow_id;
    uint64_t first, last;
    unsigned char *deltas;
    size_t n_deltas, cap_deltas;
    int taken;          /* a flush wrote it with a pending group of its workflow */
    uint64_t rec_stamp; /* in a batch: see ao_log_batch */
    size_t rec_ref;
} wf_group_t;

/* Groups by workflow: mostly runs of one workflow, so the last group is
 * tried before the map, and the map is built only once there are two. */
typedef struct groups {
    wf_group_t *v;
    size_t n, cap;
    size_t last;
    json_t *of; /* workflow id -> index into v */
} groups_t;

/* The workflow index trails the log: a write indexes what it holds and
 * what earlier writes left pending once there are INDEX_EVERY events of
 * them, else leaves its own pending. An index entry is a memtable insert
 * and a WriteBatch entry: per write, it was a fifth of a chain step's
 * write. Every event up to indexed_through (meta, with the entries that
 * moved it) is in the index; reads of a workflow scan the events after it
 * (at most about INDEX_EVERY plus a batch), and an open for writing
 * indexes them. */
enum { INDEX_EVERY = 1024 };
#define INDEXED_KEY "indexed_through"

struct ao_log {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;
    atomic_uint_fast64_t last_seq;
    atomic_uint_fast64_t indexed; /* indexed_through */
    /* The writer's: events written, not indexed yet. */
    groups_t pending;
    size_t n_pending;
    size_t index_every;
    char *dir;
    int read_only;
};

/* Records: the events of a batch go into the events family a record of
 * up to REC_MAX_EVENTS events (or past REC_MAX_BYTES, the event that
 * crosses it) per key, keyed by its first event's seq. A record is
 * REC_MARK, varint(count), varint(workflows), each workflow id as
 * varint(length) + bytes, then per event varint(its workflow: 1 for the
 * first id, 0 for none), varint(length) and its bytes. One event of no
 * workflow is stored as its bytes alone, as schemas 1 and 2 stored every
 * event (no packed Event starts with a 0 byte: field number 0 is
 * invalid). One key per record rather than per event: each key is a
 * memtable insert and a WriteBatch entry, a fifth of a chain step's
 * write; the workflow ids let reads find a workflow's events that the
 * index does not hold yet. */
enum { REC_MARK = 0x00, REC_MAX_EVENTS = 256, REC_MAX_BYTES = 64 << 10, REC_HEAD = 128 };

struct ao_log_batch {
    ao_log_t *log;
    rocksdb_writebatch_t *wb;
    uint64_t first, last;
    size_t n_events;
    /* The record being filled: its events from rec + REC_HEAD (room for
     * the header, written when it is put); its workflows, as indexes into
     * groups (a group's rec_ref is its number in this record when its
     * rec_stamp is rec_stamp). */
    unsigned char *rec;
    size_t rec_len, rec_cap;
    uint64_t rec_first;
    size_t rec_n;
    size_t rec_head1; /* the bytes before its first event's own */
    size_t *rec_wfs;
    size_t rec_nwfs, rec_capwfs;
    uint64_t rec_stamp;
    groups_t groups; /* the batch's events by workflow */
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

static void groups_free(groups_t *gs);

void ao_log_close(ao_log_t *log)
{
    if (!log) return;
    for (int i = 0; i < CF_COUNT; i++)
        if (log->cf[i]) rocksdb_column_family_handle_destroy(log->cf[i]);
    if (log->db) rocksdb_close(log->db);
    if (log->opts) rocksdb_options_destroy(log->opts);
    if (log->wopts) rocksdb_writeoptions_destroy(log->wopts);
    if (log->ropts) rocksdb_readoptions_destroy(log->ropts);
    groups_free(&log->pending);
    free(log->dir);
    free(log);
}

/* ---- records (see REC_MARK) ------------------------------------------------ */

/* One record of the events family: events first .. first + n - 1, read
 * through a cursor (the next event is number i, at p; ref is the
 * workflow of the last one read). */
typedef struct rec {
    uint64_t first, n, i;
    const char *v; /* the value; body NULL: it is one event of no workflow */
    size_t vl;
    uint64_t n_wfs, ref;
    const unsigned char *wfs, *body, *p, *end;
} rec_t;

static int rec_corrupt(ao_log_t *log, const rec_t *r, const char *what, ao_status_t *st)
{
    return ao_status_set(st, AO_ECORRUPT, "%s: the events record at %llu does not decode (%s)",
                         log->dir, (unsigned long long)r->first, what);
}

/* Reads varint(length) + bytes at *p. -1: past end. */
static int bytes_get(const unsigned char **p, const unsigned char *end, const unsigned char **b,
                     size_t *n)
{
    uint64_t l;
    if (ao_varint_get(p, end, &l) || l > (uint64_t)(end - *p)) return -1;
    *b = *p;
    *n = (size_t)l;
    *p += l;
    return 0;
}

static int rec_open(ao_log_t *log, rec_t *r, const char *k, size_t kl, const char *v, size_t vl,
                    ao_status_t *st)
{
    if (kl != 8)
        return ao_status_set(st, AO_ECORRUPT, "%s: an events key of %zu bytes (want 8)", log->dir,
                             kl);
    memset(r, 0, sizeof *r);
    r->first = rd_be64((const unsigned char *)k);
    r->v = v;
    r->vl = vl;
    r->n = 1;
    if (!vl || (unsigned char)v[0] != REC_MARK) return 0;
    const unsigned char *p = (const unsigned char *)v + 1, *end = (const unsigned char *)v + vl;
    /* Every event takes at least two bytes. */
    if (ao_varint_get(&p, end, &r->n) || !r->n || r->n > (uint64_t)(end - p) / 2 ||
        r->n - 1 > UINT64_MAX - r->first)
        return rec_corrupt(log, r, "its count", st);
    if (ao_varint_get(&p, end, &r->n_wfs) || r->n_wfs > r->n)
        return rec_corrupt(log, r, "its workflows", st);
    r->wfs = p;
    for (uint64_t w = 0; w < r->n_wfs; w++) {
        const unsigned char *id;
        size_t n;
        if (bytes_get(&p, end, &id, &n)) return rec_corrupt(log, r, "its workflows", st);
    }
    r->body = r->p = p;
    r->end = end;
    return 0;
}

/* The number of workflow id in the record (0: none of its events are
 * that workflow's). */
static uint64_t rec_find_wf(const rec_t *r, const char *id, size_t n)
{
    const unsigned char *p = r->wfs, *b;
    size_t l;
    for (uint64_t w = 1; w <= r->n_wfs && !bytes_get(&p, r->body, &b, &l); w++)
        if (l == n && !memcmp(b, id, n)) return w;
    return 0;
}

/* The id of workflow number ref (1 <= ref <= n_wfs). */
static void rec_wf(const rec_t *r, uint64_t ref, const char **id, size_t *n)
{
    const unsigned char *p = r->wfs, *b = p;
    size_t l = 0;
    for (uint64_t w = 1; w <= ref && !bytes_get(&p, r->body, &b, &l); w++)
        continue;
    *id = (const char *)b;
    *n = l;
}

static uint64_t rec_last(const rec_t *r)
{
    return r->first + (r->n - 1);
}

static int rec_holds(const rec_t *r, uint64_t seq)
{
    return seq >= r->first && seq - r->first < r->n;
}

/* The next event: 1 (in *seq, *data, *len, its workflow's number in
 * r->ref), 0 past the last, or AO_ECORRUPT. */
static int rec_next(ao_log_t *log, rec_t *r, uint64_t *seq, const char **data, size_t *len,
                    ao_status_t *st)
{
    if (r->i == r->n) return 0;
    *seq = r->first + r->i;
    if (!r->body) {
        *data = r->v;
        *len = r->vl;
        r->ref = 0;
        r->i++;
        return 1;
    }
    const unsigned char *b;
    if (ao_varint_get(&r->p, r->end, &r->ref) || r->ref > r->n_wfs)
        return rec_corrupt(log, r, "an event's workflow", st);
    if (bytes_get(&r->p, r->end, &b, len)) return rec_corrupt(log, r, "an event's length", st);
    *data = (const char *)b;
    if (++r->i == r->n && r->p != r->end)
        return rec_corrupt(log, r, "bytes after its last event", st);
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
        uint64_t at;
        const char *d;
        size_t l;
        int rc = rec_next(log, r, &at, &d, &l, st);
        if (rc < 0) return rc;
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
    if (ver < AO_LOG_SCHEMA_VERSION && !log->read_only) {
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
    if (ver > AO_LOG_SCHEMA_VERSION)
        return ao_status_set(st, AO_ESCHEMA,
                             "%s has storage schema version %ld; this agentosd reads versions 1 to %d "
                             "(it was written by a newer agentosd)",
                             log->dir, ver, AO_LOG_SCHEMA_VERSION);
    return 0;
}

static int load_index(ao_log_t *log, ao_status_t *st);

int ao_log_open(const ao_log_options_t *opt, ao_log_t **out, ao_status_t *st)
{
    *out = NULL;
    ao_log_t *log = ao_xcalloc(1, sizeof *log);
    log->dir = ao_xstrdup(opt->dir);
    log->read_only = opt->read_only;
    log->index_every = opt->index_every ? opt->index_every : INDEX_EVERY;
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
    if (!rc) rc = load_index(log, st);
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
    b->rec_stamp = 1;
    return b;
}

static void groups_clear(groups_t *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        free(gs->v[i].workflow_id);
        free(gs->v[i].deltas);
    }
    gs->n = 0;
    gs->last = 0;
    if (gs->of) json_object_clear(gs->of);
}

static void groups_free(groups_t *gs)
{
    groups_clear(gs);
    free(gs->v);
    json_decref(gs->of);
}

static wf_group_t *groups_find(groups_t *gs, const char *workflow_id)
{
    if (!gs->n) return NULL;
    if (!strcmp(gs->v[gs->last].workflow_id, workflow_id)) return &gs->v[gs->last];
    if (gs->n == 1) return NULL;
    json_t *v = json_object_get(gs->of, workflow_id);
    return v ? &gs->v[gs->last = (size_t)json_integer_value(v)] : NULL;
}

/* A new group, named by id (taken: freed with the group). */
static wf_group_t *groups_add(groups_t *gs, char *id, uint64_t first)
{
    if (gs->n == gs->cap) {
        gs->cap = gs->cap ? gs->cap * 2 : 8;
        gs->v = ao_xrealloc(gs->v, gs->cap * sizeof *gs->v);
    }
    if (gs->n) {
        if (!gs->of) gs->of = json_object();
        if (gs->n == 1) json_object_set_new(gs->of, gs->v[0].workflow_id, json_integer(0));
        json_object_set_new(gs->of, id, json_integer((json_int_t)gs->n));
    }
    wf_group_t *g = &gs->v[gs->n];
    memset(g, 0, sizeof *g);
    g->workflow_id = id;
    g->first = g->last = first;
    gs->last = gs->n++;
    return g;
}

static void put_deltas(wf_group_t *g, const unsigned char *d, size_t n)
{
    if (!n) return;
    if (g->cap_deltas - g->n_deltas < n) {
        g->cap_deltas = (g->n_deltas + n) * 2;
        g->deltas = ao_xrealloc(g->deltas, g->cap_deltas);
    }
    memcpy(g->deltas + g->n_deltas, d, n);
    g->n_deltas += n;
}

static void put_delta(wf_group_t *g, uint64_t v)
{
    unsigned char d[10];
    put_deltas(g, d, ao_varint_put(d, v));
}

static wf_group_t *group_event(groups_t *gs, const char *workflow_id, uint64_t seq)
{
    wf_group_t *g = groups_find(gs, workflow_id);
    if (!g) return groups_add(gs, ao_xstrdup(workflow_id), seq);
    put_delta(g, seq - g->last);
    g->last = seq;
    return g;
}

void ao_log_batch_free(ao_log_batch_t *b)
{
    if (!b) return;
    groups_free(&b->groups);
    free(b->rec);
    free(b->rec_wfs);
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

void ao_log_batch_clear(ao_log_batch_t *b)
{
    rocksdb_writebatch_clear(b->wb);
    groups_clear(&b->groups);
    b->first = b->last = 0;
    b->n_events = 0;
    b->rec_len = b->rec_n = b->rec_nwfs = 0;
    b->rec_stamp++;
}

/* The open record goes into the WriteBatch. */
static void put_record(ao_log_batch_t *b)
{
    if (!b->rec_n) return;
    unsigned char k[8];
    be64(b->rec_first, k);
    unsigned char *body = b->rec + REC_HEAD;
    if (b->rec_n == 1 && !b->rec_nwfs) {
        /* One event of no workflow: its bytes alone. */
        rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_EVENTS], (const char *)k, 8,
                                  (const char *)body + b->rec_head1, b->rec_len - b->rec_head1);
    } else {
        size_t hl = 1 + 10 + 10;
        for (size_t i = 0; i < b->rec_nwfs; i++)
            hl += 10 + strlen(b->groups.v[b->rec_wfs[i]].workflow_id);
        /* Written in the room before the events, or, past it, apart. */
        unsigned char *head = hl <= REC_HEAD ? b->rec : ao_xmalloc(hl + b->rec_len);
        unsigned char *h = head;
        *h++ = REC_MARK;
        h += ao_varint_put(h, b->rec_n);
        h += ao_varint_put(h, b->rec_nwfs);
        for (size_t i = 0; i < b->rec_nwfs; i++) {
            const char *id = b->groups.v[b->rec_wfs[i]].workflow_id;
            size_t n = strlen(id);
            h += ao_varint_put(h, n);
            memcpy(h, id, n);
            h += n;
        }
        size_t used = (size_t)(h - head);
        const char *value;
        if (head == b->rec) {
            memmove(body - used, head, used);
            value = (const char *)body - used;
        } else {
            memcpy(h, body, b->rec_len);
            value = (const char *)head;
        }
        rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_EVENTS], (const char *)k, 8, value,
                                  used + b->rec_len);
        if (head != b->rec) free(head);
    }
    b->rec_len = b->rec_n = b->rec_nwfs = 0;
    b->rec_stamp++;
}

static void put_entry(ao_log_batch_t *b, const char *workflow_id, uint64_t first,
                      const unsigned char *deltas, size_t n)
{
    unsigned char ik[256 + 9];
    size_t kl = wf_key(workflow_id, first, ik, sizeof ik);
    rocksdb_writebatch_put_cf(b->wb, b->log->cf[CF_WF_INDEX], (const char *)ik, kl,
                              (const char *)deltas, n);
}

/* The index entries of the pending groups and the batch's (a workflow's
 * pending events and its events in the batch in one), and indexed_through
 * moved to `through`, into wb. */
static void put_entries(ao_log_t *log, ao_log_batch_t *b, uint64_t through)
{
    for (size_t i = 0; i < b->groups.n; i++)
        b->groups.v[i].taken = 0;
    wf_group_t joined = {0};
    for (size_t i = 0; i < log->pending.n; i++) {
        const wf_group_t *p = &log->pending.v[i];
        wf_group_t *g = groups_find(&b->groups, p->workflow_id);
        if (!g) {
            put_entry(b, p->workflow_id, p->first, p->deltas, p->n_deltas);
            continue;
        }
        joined.n_deltas = 0;
        put_deltas(&joined, p->deltas, p->n_deltas);
        put_delta(&joined, g->first - p->last);
        put_deltas(&joined, g->deltas, g->n_deltas);
        put_entry(b, p->workflow_id, p->first, joined.deltas, joined.n_deltas);
        g->taken = 1;
    }
    free(joined.deltas);
    for (size_t i = 0; i < b->groups.n; i++) {
        const wf_group_t *g = &b->groups.v[i];
        if (!g->taken) put_entry(b, g->workflow_id, g->first, g->deltas, g->n_deltas);
    }
    unsigned char v[8];
    be64(through, v);
    rocksdb_writebatch_put_cf(b->wb, log->cf[CF_META], INDEXED_KEY, strlen(INDEXED_KEY),
                              (const char *)v, 8);
}

/* Whether this write indexes (the pending groups and the batch's reach
 * INDEX_EVERY events): then its entries go into wb, for this write only
 * (taken back if it fails). */
static int put_index(ao_log_t *log, ao_log_batch_t *b)
{
    if (!b->n_events || log->n_pending + b->n_events < log->index_every) return 0;
    put_entries(log, b, b->last);
    return 1;
}

/* A write that indexed nothing leaves its groups pending. */
static void keep_pending(ao_log_t *log, ao_log_batch_t *b)
{
    for (size_t i = 0; i < b->groups.n; i++) {
        wf_group_t *g = &b->groups.v[i];
        wf_group_t *p = groups_find(&log->pending, g->workflow_id);
        if (!p) {
            p = groups_add(&log->pending, ao_xstrdup(g->workflow_id), g->first);
        } else {
            put_delta(p, g->first - p->last);
        }
        put_deltas(p, g->deltas, g->n_deltas);
        p->last = g->last;
    }
    log->n_pending += b->n_events;
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
    size_t ref = 0;
    if (workflow_id && *workflow_id) {
        wf_group_t *g = group_event(&b->groups, workflow_id, seq);
        if (g->rec_stamp != b->rec_stamp) {
            if (b->rec_nwfs == b->rec_capwfs) {
                b->rec_capwfs = b->rec_capwfs ? b->rec_capwfs * 2 : 8;
                b->rec_wfs = ao_xrealloc(b->rec_wfs, b->rec_capwfs * sizeof *b->rec_wfs);
            }
            b->rec_wfs[b->rec_nwfs++] = (size_t)(g - b->groups.v);
            g->rec_stamp = b->rec_stamp;
            g->rec_ref = b->rec_nwfs;
        }
        ref = g->rec_ref;
    }
    if (b->rec_cap < REC_HEAD + b->rec_len + len + 20) {
        b->rec_cap = (REC_HEAD + b->rec_len + len + 20) * 2;
        b->rec = ao_xrealloc(b->rec, b->rec_cap);
    }
    unsigned char *at = b->rec + REC_HEAD + b->rec_len;
    size_t head = ao_varint_put(at, ref);
    head += ao_varint_put(at + head, len);
    if (!b->rec_n) {
        b->rec_first = seq;
        b->rec_head1 = head;
    }
    memcpy(at + head, data, len);
    b->rec_len += head + len;
    if (++b->rec_n == REC_MAX_EVENTS || b->rec_len >= REC_MAX_BYTES) put_record(b);
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
    /* The index entries depend on what is pending: a write that fails
     * takes them back, so that a retry (or a batch with more events)
     * puts them anew. */
    rocksdb_writebatch_set_save_point(b->wb);
    int indexes = put_index(log, b);
    char *err = NULL;
    rocksdb_write(log->db, log->wopts, b->wb, &err);
    if (err) {
        char *rb = NULL;
        rocksdb_writebatch_rollback_to_save_point(b->wb, &rb);
        if (rb) ao_fatal("taking the index entries back out of a failed write batch: %s", rb);
        return rocks_error(st, log->dir, "writing to", err);
    }
    rocksdb_writebatch_pop_save_point(b->wb, &err);
    if (err) rocksdb_free(err);
    if (b->n_events) {
        if (indexes) {
            groups_clear(&log->pending);
            log->n_pending = 0;
            atomic_store(&log->indexed, b->last);
        } else {
            keep_pending(log, b);
        }
        groups_clear(&b->groups);
        atomic_store(&log->last_seq, b->last);
    }
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

typedef int (*rec_visit_fn)(void *ud, const rec_t *r, uint64_t seq, const char *data, size_t len);

/* The events with from <= seq <= to in order: all of them, or (wf not
 * NULL) those of workflow wf. visit returns nonzero to stop. */
static int scan_events(ao_log_t *log, uint64_t from, uint64_t to, const char *wf,
                       rec_visit_fn visit, void *ud, ao_status_t *st)
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
    size_t wfl = wf ? strlen(wf) : 0;
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
        uint64_t want = 0;
        if (wf && !(want = rec_find_wf(&r, wf, wfl))) continue;
        if (from > r.first && (rc = rec_seek(log, &r, from, st))) break;
        uint64_t seq;
        const char *data;
        size_t len;
        int got;
        while ((got = rec_next(log, &r, &seq, &data, &len, st)) > 0) {
            if (seq > to) {
                done = 1;
                break;
            }
            if (wf && r.ref != want) continue;
            if ((rc = visit(ud, &r, seq, data, len))) {
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
    if (err) return rocks_error(st, log->dir, "reading", err);
    return rc < 0 ? rc : 0;
}

typedef struct range_ctx {
    ao_log_t *log;
    ao_log_event_fn fn;
    void *ud;
    size_t max, n;
    ao_status_t *st;
} range_ctx_t;

static int range_visit(void *ud, const rec_t *r, uint64_t seq, const char *data, size_t len)
{
    (void)r;
    range_ctx_t *c = ud;
    return c->fn(c->ud, seq, data, len) || ++c->n == c->max;
}

int ao_log_read_range(ao_log_t *log, uint64_t from, uint64_t to, size_t max, ao_log_event_fn fn,
                      void *ud, ao_status_t *st)
{
    range_ctx_t c = {log, fn, ud, max, 0, st};
    return scan_events(log, from, to, NULL, range_visit, &c, st);
}

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
    int stopped; /* by the visitor, or at max */
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
            ao_status_set(c->r.st, AO_ECORRUPT,
                          "%s: the workflow index names event %llu, which is missing", log->dir,
                          (unsigned long long)seq);
            return AO_ECORRUPT;
        }
    }
    uint64_t at;
    const char *ev;
    size_t el;
    int rc = rec_seek(log, &c->rec, seq, c->r.st);
    if (!rc) rc = rec_next(log, &c->rec, &at, &ev, &el, c->r.st);
    if (rc < 0) return rc;
    if (c->r.fn(c->r.ud, seq, ev, el) || ++c->r.n == c->r.max) {
        c->stopped = 1;
        return 1;
    }
    return 0;
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
        uint64_t d;
        if (ao_varint_get(&p, end, &d) || !d) {
            ao_status_set(c->r.st, AO_ECORRUPT, "%s: a workflow index entry at %llu does not decode",
                          c->r.log->dir, (unsigned long long)rd_be64((const unsigned char *)k + c->prefix));
            return AO_ECORRUPT;
        }
        seq += d;
    }
}

/* The workflow's events in [from, to] through the index (all of them
 * indexed). */
static int read_indexed(ao_log_t *log, const char *workflow_id, uint64_t from, uint64_t to,
                        wf_ctx_t *c)
{
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
    c->prefix = prefix;
    int rc = 0;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        int r = wf_entry(c, k, kl, v, vl, from, to);
        if (r < 0) rc = r;
        if (r) break;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (c->events) rocksdb_iter_destroy(c->events);
    if (err) return rocks_error(c->r.st, log->dir, "reading", err);
    return rc;
}

int ao_log_read_workflow(ao_log_t *log, const char *workflow_id, uint64_t from, uint64_t to,
                         size_t max, ao_log_event_fn fn, void *ud, ao_status_t *st)
{
    if (to < from) return 0;
    /* Read before any iterator is made: everything up to it is in the
     * index those iterators see, and what is after is read from the
     * events. */
    uint64_t indexed = atomic_load(&log->indexed);
    wf_ctx_t c = {{log, fn, ud, max, 0, st}, 0, NULL, {0}, 0, 0};
    if (from <= indexed) {
        int rc = read_indexed(log, workflow_id, from, to < indexed ? to : indexed, &c);
        if (rc || c.stopped || to <= indexed) return rc;
    }
    return scan_events(log, from > indexed ? from : indexed + 1, to, workflow_id, range_visit, &c.r,
                       st);
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

/* ---- the index at open -------------------------------------------------- */

static int pending_visit(void *ud, const rec_t *r, uint64_t seq, const char *data, size_t len)
{
    (void)data;
    (void)len;
    ao_log_t *log = ud;
    if (r->ref) {
        const char *id;
        size_t n;
        rec_wf(r, r->ref, &id, &n);
        char *wf = ao_xstrndup(id, n);
        group_event(&log->pending, wf, seq);
        free(wf);
    }
    log->n_pending++;
    return 0;
}

/* indexed_through, and for writing the events after it indexed. A
 * database without it (schema 1 and 2) has every event indexed: it is
 * written then, as 0 for a new one. */
static int load_index(ao_log_t *log, ao_status_t *st)
{
    uint64_t last = atomic_load(&log->last_seq), indexed = last;
    char *err = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(log->db, log->ropts, log->cf[CF_META], INDEXED_KEY,
                             strlen(INDEXED_KEY), &vl, &err);
    if (err) return rocks_error(st, log->dir, "reading the workflow index of", err);
    if (v) {
        int bad = vl != 8;
        if (!bad) indexed = rd_be64((const unsigned char *)v);
        rocksdb_free(v);
        if (bad || indexed > last)
            return ao_status_set(
                st, AO_ECORRUPT, "%s: meta/" INDEXED_KEY " is %s (the last event is %llu)",
                log->dir, bad ? "not 8 bytes" : "past the last event", (unsigned long long)last);
    } else if (!log->read_only) {
        unsigned char b[8];
        be64(indexed, b);
        rocksdb_put_cf(log->db, log->wopts, log->cf[CF_META], INDEXED_KEY, strlen(INDEXED_KEY),
                       (const char *)b, 8, &err);
        if (err) return rocks_error(st, log->dir, "writing the workflow index of", err);
    }
    atomic_store(&log->indexed, indexed);
    if (log->read_only || indexed == last) return 0;
    int rc = scan_events(log, indexed + 1, last, NULL, pending_visit, log, st);
    if (rc) return rc;
    /* Indexed now, in one write: the reads of a start (recovery reads
     * every unfinished workflow) then find everything in the index. */
    ao_log_batch_t *b = ao_log_batch_new(log);
    put_entries(log, b, last);
    rocksdb_write(log->db, log->wopts, b->wb, &err);
    ao_log_batch_free(b);
    if (err) return rocks_error(st, log->dir, "writing the workflow index of", err);
    AO_INFO("storage", "indexed the %zu events after indexed_through %llu in %s", log->n_pending,
            (unsigned long long)indexed, log->dir);
    groups_clear(&log->pending);
    log->n_pending = 0;
    atomic_store(&log->indexed, last);
    return 0;
}
