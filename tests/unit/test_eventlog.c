/*
 * Unit tests for storage/eventlog.c against a real RocksDB in a directory
 * the test makes and removes: appends and reads back across reopen (range,
 * by workflow, max, bounds), gaps refused with nothing written, snapshots,
 * checkpoints, metadata, the schema version check, the directory lock
 * (in this process and from another one), read-only opens, and corrupt
 * values (written with the RocksDB C API directly, or through a batch)
 * reported by whoever decodes them: the replay path (ao_engine_state_at,
 * ao_engine_recover) and ao-logdump's check. RocksDB's own corruption (a
 * damaged table file) must be reported as corruption, not as a busy
 * directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backends.h"
#include "config.h"
#include "engine.h"
#include "eventlog.h"
#include "pbjson.h"
#include "pool.h"
#include "testdir.h"
#include "timer.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ET(x) AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_##x

typedef struct fx {
    char *dir;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->dir = ao_test_mkdtemp("test-eventlog");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    ao_test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Every write indexes its own events (the index does not trail): the
 * tests of the index's entries and of damage behind the log's back. */
static ao_log_t *open_log(const char *dir, int read_only)
{
    ao_log_options_t o = {.dir = dir, .sync = 1, .read_only = read_only, .index_every = 1};
    ao_log_t *log = NULL;
    ao_status_t st;
    int rc = ao_log_open(&o, &log, &st);
    if (rc) fail_msg("ao_log_open(%s): %s", dir, st.msg);
    return log;
}

/* The index trails the log, as it does in agentosd. */
static ao_log_t *open_trailing(const char *dir, int read_only)
{
    ao_log_options_t o = {.dir = dir, .sync = 1, .read_only = read_only};
    ao_log_t *log = NULL;
    ao_status_t st;
    int rc = ao_log_open(&o, &log, &st);
    if (rc) fail_msg("ao_log_open(%s): %s", dir, st.msg);
    return log;
}

static int try_open(const char *dir, int read_only, ao_status_t *st)
{
    ao_log_options_t o = {.dir = dir, .sync = 1, .read_only = read_only};
    ao_log_t *log = NULL;
    int rc = ao_log_open(&o, &log, st);
    if (!rc) {
        assert_non_null(log);
        ao_log_close(log);
    } else {
        assert_null(log);
    }
    return rc;
}

/* The payload stored for event seq: recognisable and of varying length. */
static size_t payload(uint64_t seq, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "event-%llu-", (unsigned long long)seq);
    for (uint64_t i = 0; i < seq % 7; i++)
        n += snprintf(buf + n, cap - (size_t)n, "x");
    return (size_t)n;
}

static void write_events(ao_log_t *log, uint64_t from, uint64_t to, const char *const *wfs,
                         size_t n_wfs)
{
    ao_log_batch_t *b = ao_log_batch_new(log);
    char buf[64];
    for (uint64_t s = from; s <= to; s++) {
        size_t len = payload(s, buf, sizeof buf);
        ao_log_batch_put_event(b, s, wfs[s % n_wfs], buf, len);
    }
    assert_int_equal(ao_log_batch_count(b), to - from + 1);
    ao_status_t st;
    int rc = ao_log_write(log, b, &st);
    if (rc) fail_msg("ao_log_write: %s", st.msg);
    ao_log_batch_free(b);
}

/* ---- collecting what a read visits ----------------------------------- */

typedef struct seen {
    uint64_t seqs[1024];
    char data[1024][80];
    size_t n;
    size_t stop_after; /* 0: never stop */
} seen_t;

static int collect(void *ud, uint64_t seq, const void *data, size_t len)
{
    seen_t *s = ud;
    assert_true(s->n < 1024);
    s->seqs[s->n] = seq;
    size_t m = len < 79 ? len : 79;
    memcpy(s->data[s->n], data, m);
    s->data[s->n][m] = '\0';
    s->n++;
    return s->stop_after && s->n == s->stop_after;
}

static void read_range(ao_log_t *log, uint64_t from, uint64_t to, size_t max, seen_t *s)
{
    ao_status_t st;
    int rc = ao_log_read_range(log, from, to, max, collect, s, &st);
    if (rc) fail_msg("ao_log_read_range: %s", st.msg);
}

static void read_wf(ao_log_t *log, const char *wf, uint64_t from, uint64_t to, size_t max,
                    seen_t *s)
{
    ao_status_t st;
    int rc = ao_log_read_workflow(log, wf, from, to, max, collect, s, &st);
    if (rc) fail_msg("ao_log_read_workflow: %s", st.msg);
}

static void assert_seqs(const seen_t *s, const uint64_t *want, size_t n)
{
    assert_int_equal(s->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(s->seqs[i], want[i]);
        char buf[64];
        payload(want[i], buf, sizeof buf);
        assert_string_equal(s->data[i], buf);
    }
}

/* ---- appends and reads ------------------------------------------------ */

static void test_append_reopen_read(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    assert_int_equal(ao_log_last_seq(log), 0);
    /* Workflow ids where one is a prefix of another: "a" must not see
     * "ab"'s events. Event 0 % 3 goes to "" (not indexed). */
    const char *wfs[] = {"", "a", "ab"};
    write_events(log, 1, 3, wfs, 3);
    write_events(log, 4, 300, wfs, 3);
    assert_int_equal(ao_log_last_seq(log), 300);
    ao_log_close(log);

    log = open_log(f->dir, 0);
    assert_int_equal(ao_log_last_seq(log), 300);
    seen_t s = {0};
    read_range(log, 1, 10, 0, &s);
    uint64_t one_to_ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assert_seqs(&s, one_to_ten, 10);

    /* from/to bounds are inclusive; max caps the count. */
    memset(&s, 0, sizeof s);
    read_range(log, 255, 258, 0, &s);
    uint64_t around_256[] = {255, 256, 257, 258};
    assert_seqs(&s, around_256, 4);
    memset(&s, 0, sizeof s);
    read_range(log, 290, UINT64_MAX, 3, &s);
    uint64_t capped[] = {290, 291, 292};
    assert_seqs(&s, capped, 3);
    memset(&s, 0, sizeof s);
    read_range(log, 299, UINT64_MAX, 0, &s);
    uint64_t tail[] = {299, 300};
    assert_seqs(&s, tail, 2);
    /* Nothing past the end, nothing for an empty or inverted range. */
    memset(&s, 0, sizeof s);
    read_range(log, 301, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 0);
    read_range(log, 7, 3, 0, &s);
    assert_int_equal(s.n, 0);
    /* A visitor returning nonzero stops the read, which still succeeds. */
    s.stop_after = 2;
    read_range(log, 1, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 2);

    /* By workflow: "a" has seqs = 1 (mod 3), "ab" = 2 (mod 3); "" none. */
    memset(&s, 0, sizeof s);
    read_wf(log, "a", 0, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 100);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.seqs[i], 1 + 3 * i);
    memset(&s, 0, sizeof s);
    read_wf(log, "ab", 0, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 100);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.seqs[i], 2 + 3 * i);
    memset(&s, 0, sizeof s);
    read_wf(log, "a", 250, 262, 0, &s);
    uint64_t a_mid[] = {250, 253, 256, 259, 262};
    assert_seqs(&s, a_mid, 5);
    memset(&s, 0, sizeof s);
    read_wf(log, "ab", 251, UINT64_MAX, 2, &s);
    uint64_t ab_capped[] = {251, 254};
    assert_seqs(&s, ab_capped, 2);
    memset(&s, 0, sizeof s);
    read_wf(log, "b", 0, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 0);
    read_wf(log, "a", 20, 10, 0, &s);
    assert_int_equal(s.n, 0);
    ao_log_close(log);
}

static void test_gap_rejected_nothing_written(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 2, wfs, 1);

    struct {
        uint64_t seqs[3];
        size_t n;
    } bad[] = {
        {{4, 5, 6}, 3}, /* a gap before the batch */
        {{3, 5, 6}, 3}, /* a gap inside it */
        {{2, 3, 4}, 3}, /* overlaps the log */
        {{3, 3, 4}, 3}, /* a repeat inside it */
        {{4, 3, 5}, 3}, /* out of order */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ao_log_batch_t *b = ao_log_batch_new(log);
        for (size_t i = 0; i < bad[k].n; i++)
            ao_log_batch_put_event(b, bad[k].seqs[i], "w", "bad", 3);
        /* What rides in the same batch must not be written either. */
        ao_log_batch_put_snapshot(b, "w", 6, "snap", 4);
        ao_log_batch_put_checkpoint(b, "w", 6, "ckpt", 4);
        ao_log_batch_put_meta(b, "m", "v", 1);
        ao_status_t st;
        assert_int_equal(ao_log_write(log, b, &st), AO_EINVAL);
        assert_int_equal(st.code, AO_EINVAL);
        assert_non_null(strstr(st.msg, "does not follow"));
        /* The batch is left as it was. */
        assert_int_equal(ao_log_batch_count(b), bad[k].n);
        ao_log_batch_free(b);
        assert_int_equal(ao_log_last_seq(log), 2);
    }
    seen_t s = {0};
    read_range(log, 1, UINT64_MAX, 0, &s);
    uint64_t two[] = {1, 2};
    assert_seqs(&s, two, 2);
    memset(&s, 0, sizeof s);
    read_wf(log, "w", 0, UINT64_MAX, 0, &s);
    assert_seqs(&s, two, 2);
    ao_status_t st;
    uint64_t seq;
    void *data;
    size_t len;
    assert_int_equal(ao_log_get_snapshot(log, "w", &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_int_equal(ao_log_get_checkpoint(log, "w", 0, &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_int_equal(ao_log_get_meta(log, "m", &data, &len, &st), AO_ENOTFOUND);

    /* A batch cleared and refilled correctly goes through. */
    ao_log_batch_t *b = ao_log_batch_new(log);
    ao_log_batch_put_event(b, 9, "w", "bad", 3);
    ao_log_batch_clear(b);
    assert_int_equal(ao_log_batch_count(b), 0);
    ao_log_batch_put_event(b, 3, "w", "event-3-xxx", 11);
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    ao_log_close(log);

    log = open_log(f->dir, 0);
    assert_int_equal(ao_log_last_seq(log), 3);
    memset(&s, 0, sizeof s);
    read_range(log, 1, UINT64_MAX, 0, &s);
    uint64_t three[] = {1, 2, 3};
    assert_seqs(&s, three, 3);
    ao_log_close(log);
}

/* ---- snapshots, checkpoints, metadata ---------------------------------- */

typedef struct snaps {
    char ids[8][16];
    uint64_t seqs[8];
    char data[8][16];
    size_t n;
} snaps_t;

static int collect_snap(void *ud, const char *wf, uint64_t seq, const void *data, size_t len)
{
    snaps_t *s = ud;
    assert_true(s->n < 8 && len < 16);
    snprintf(s->ids[s->n], 16, "%s", wf);
    s->seqs[s->n] = seq;
    memcpy(s->data[s->n], data, len);
    s->data[s->n][len] = '\0';
    s->n++;
    return 0;
}

static void put_snapshot(ao_log_t *log, const char *wf, uint64_t seq, const char *data)
{
    ao_log_batch_t *b = ao_log_batch_new(log);
    ao_log_batch_put_snapshot(b, wf, seq, data, strlen(data));
    ao_status_t st;
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
}

static void test_snapshots_replace(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    ao_status_t st;
    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    assert_int_equal(ao_log_get_snapshot(log, "w1", &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_non_null(strstr(st.msg, "w1"));
    put_snapshot(log, "w2", 5, "two@5");
    put_snapshot(log, "w1", 7, "one@7");
    put_snapshot(log, "w1", 300, "one@300");
    /* A snapshot-only batch does not move last_seq. */
    assert_int_equal(ao_log_last_seq(log), 0);
    ao_log_close(log);

    log = open_log(f->dir, 0);
    assert_int_equal(ao_log_get_snapshot(log, "w1", &seq, &data, &len, &st), 0);
    assert_int_equal(seq, 300);
    assert_int_equal(len, 7);
    assert_memory_equal(data, "one@300", 7);
    free(data);
    snaps_t s = {0};
    assert_int_equal(ao_log_scan_snapshots(log, collect_snap, &s, &st), 0);
    /* One per workflow (the latest), in workflow id order. */
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "w1");
    assert_int_equal(s.seqs[0], 300);
    assert_string_equal(s.data[0], "one@300");
    assert_string_equal(s.ids[1], "w2");
    assert_int_equal(s.seqs[1], 5);
    assert_string_equal(s.data[1], "two@5");
    ao_log_close(log);
}

static void put_checkpoints(ao_log_t *log, const char *wf, const uint64_t *seqs, size_t n)
{
    ao_log_batch_t *b = ao_log_batch_new(log);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%s@%llu", wf, (unsigned long long)seqs[i]);
        ao_log_batch_put_checkpoint(b, wf, seqs[i], buf, (size_t)len);
    }
    ao_status_t st;
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
}

static void test_checkpoints(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    /* Put out of order and across batches; seqs on both sides of a byte
     * boundary (255/256, 65535/65536) so that ordering is by number. */
    uint64_t a1[] = {70000, 3};
    uint64_t a2[] = {256, 255};
    uint64_t ab[] = {5, 1u << 20};
    uint64_t b[] = {65535};
    put_checkpoints(log, "a", a1, 2);
    put_checkpoints(log, "ab", ab, 2);
    put_checkpoints(log, "a", a2, 2);
    put_checkpoints(log, "b", b, 1);
    ao_log_close(log);

    log = open_log(f->dir, 0);
    seen_t s = {0};
    ao_status_t st;
    assert_int_equal(ao_log_list_checkpoints(log, "a", collect, &s, &st), 0);
    assert_int_equal(s.n, 4);
    uint64_t oldest_first[] = {3, 255, 256, 70000};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(s.seqs[i], oldest_first[i]);
        char want[32];
        snprintf(want, sizeof want, "a@%llu", (unsigned long long)oldest_first[i]);
        assert_string_equal(s.data[i], want);
    }
    memset(&s, 0, sizeof s);
    assert_int_equal(ao_log_list_checkpoints(log, "nope", collect, &s, &st), 0);
    assert_int_equal(s.n, 0);

    uint64_t seq = 0;
    void *data = NULL;
    size_t len = 0;
    /* seq 0: the latest. */
    assert_int_equal(ao_log_get_checkpoint(log, "a", 0, &seq, &data, &len, &st), 0);
    assert_int_equal(seq, 70000);
    assert_int_equal(len, strlen("a@70000"));
    assert_string_equal(data, "a@70000"); /* NUL-terminated beyond len */
    free(data);
    assert_int_equal(ao_log_get_checkpoint(log, "ab", 0, &seq, &data, &len, &st), 0);
    assert_int_equal(seq, 1u << 20);
    free(data);
    assert_int_equal(ao_log_get_checkpoint(log, "b", 0, &seq, &data, &len, &st), 0);
    assert_int_equal(seq, 65535);
    free(data);
    /* By seq: that one exactly. */
    assert_int_equal(ao_log_get_checkpoint(log, "a", 255, &seq, &data, &len, &st), 0);
    assert_int_equal(seq, 255);
    assert_string_equal(data, "a@255");
    free(data);
    assert_int_equal(ao_log_get_checkpoint(log, "a", 254, &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_int_equal(ao_log_get_checkpoint(log, "a", 5, &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_int_equal(ao_log_get_checkpoint(log, "nope", 0, &seq, &data, &len, &st), AO_ENOTFOUND);
    assert_non_null(strstr(st.msg, "nope"));
    ao_log_close(log);
}

static void test_meta(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    void *data = NULL;
    size_t len = 0;
    ao_status_t st;
    /* Written at creation. */
    assert_int_equal(ao_log_get_meta(log, "schema_version", &data, &len, &st), 0);
    char want[16];
    snprintf(want, sizeof want, "%d", AO_LOG_SCHEMA_VERSION);
    assert_string_equal(data, want);
    free(data);
    assert_int_equal(ao_log_get_meta(log, "k", &data, &len, &st), AO_ENOTFOUND);
    ao_log_batch_t *b = ao_log_batch_new(log);
    ao_log_batch_put_meta(b, "k", "v\0w", 3); /* binary values survive */
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    ao_log_close(log);
    log = open_log(f->dir, 1);
    assert_int_equal(ao_log_get_meta(log, "k", &data, &len, &st), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "v\0w\0", 4);
    free(data);
    ao_log_close(log);
}

/* ---- the raw database, behind the log's back ----------------------------- */

static const char *cf_names[] = {"default",   "events",      "wf_index",
                                 "snapshots", "checkpoints", "meta"};
enum { RAW_EVENTS = 1, RAW_INDEX = 2, RAW_SNAPSHOTS = 3, RAW_META = 5, RAW_NCF = 6 };

typedef struct raw {
    rocksdb_t *db;
    rocksdb_options_t *o;
    rocksdb_column_family_handle_t *cf[RAW_NCF];
    rocksdb_writeoptions_t *wo;
} raw_t;

static void raw_open(raw_t *r, const char *dir)
{
    r->o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->o, 1);
    rocksdb_options_set_create_missing_column_families(r->o, 1);
    const rocksdb_options_t *cfo[RAW_NCF];
    for (int i = 0; i < RAW_NCF; i++)
        cfo[i] = r->o;
    char *err = NULL;
    r->db = rocksdb_open_column_families(r->o, dir, RAW_NCF, cf_names, cfo, r->cf, &err);
    if (err) fail_msg("raw open: %s", err);
    r->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo, 1);
}

static void raw_put(raw_t *r, int cf, const void *k, size_t kl, const void *v, size_t vl)
{
    char *err = NULL;
    rocksdb_put_cf(r->db, r->wo, r->cf[cf], k, kl, v, vl, &err);
    if (err) fail_msg("raw put: %s", err);
}

static void raw_delete(raw_t *r, int cf, const void *k, size_t kl)
{
    char *err = NULL;
    rocksdb_delete_cf(r->db, r->wo, r->cf[cf], k, kl, &err);
    if (err) fail_msg("raw delete: %s", err);
}

static void raw_close(raw_t *r)
{
    for (int i = 0; i < RAW_NCF; i++)
        rocksdb_column_family_handle_destroy(r->cf[i]);
    rocksdb_close(r->db);
    rocksdb_options_destroy(r->o);
    rocksdb_writeoptions_destroy(r->wo);
}

static void be64(uint64_t v, unsigned char k[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        k[i] = (unsigned char)v;
}

static void set_schema(const char *dir, const char *version)
{
    raw_t r;
    raw_open(&r, dir);
    if (version)
        raw_put(&r, RAW_META, "schema_version", 14, version, strlen(version));
    else
        raw_delete(&r, RAW_META, "schema_version", 14);
    raw_close(&r);
}

/* The value at key k (malloc'd; NULL if none), *vl its length. */
static char *raw_get(raw_t *r, int cf, const void *k, size_t kl, size_t *vl)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *err = NULL;
    char *v = rocksdb_get_cf(r->db, ro, r->cf[cf], k, kl, vl, &err);
    rocksdb_readoptions_destroy(ro);
    if (err) fail_msg("raw get: %s", err);
    return v;
}

static size_t raw_count(raw_t *r, int cf)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[cf]);
    size_t n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) n++;
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return n;
}

static size_t index_key(const char *wf, uint64_t seq, unsigned char *k)
{
    size_t n = strlen(wf);
    memcpy(k, wf, n);
    k[n] = 0;
    be64(seq, k + n + 1);
    return n + 9;
}

/* The workflow index holds one entry per workflow per batch (the first
 * event's seq, then deltas), and a read from the middle of an entry finds
 * the rest of it. */
static void test_index_one_entry_per_workflow_per_batch(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w2", "w1"};
    write_events(log, 1, 200, wfs, 2); /* one batch: w1 the odd seqs, w2 the even */
    write_events(log, 201, 203, wfs, 2);
    seen_t s = {0};
    read_wf(log, "w1", 101, 105, 0, &s);
    uint64_t mid[] = {101, 103, 105};
    assert_seqs(&s, mid, 3);
    memset(&s, 0, sizeof s);
    read_wf(log, "w2", 198, UINT64_MAX, 0, &s);
    uint64_t across[] = {198, 200, 202};
    assert_seqs(&s, across, 3);
    memset(&s, 0, sizeof s);
    read_wf(log, "w1", 0, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 102);
    ao_log_close(log);
    raw_t r;
    raw_open(&r, f->dir);
    assert_int_equal(raw_count(&r, RAW_INDEX), 4); /* 2 workflows x 2 batches */
    assert_int_equal(raw_count(&r, RAW_EVENTS), 2); /* a record per batch */
    raw_close(&r);
}

/* Runs of one workflow and returns to an earlier one, in a batch that is
 * then cleared and reused: each workflow reads exactly its own events. */
static void test_index_runs_and_returns(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *first[] = {"a", "a", "b", "b", "b", "c", "a", "a", "c", "b", "a", "a"};
    const char *second[] = {"c", "c", "d", "c"};
    ao_log_batch_t *b = ao_log_batch_new(log);
    char buf[64];
    ao_status_t st;
    for (uint64_t s = 1; s <= 12; s++)
        ao_log_batch_put_event(b, s, first[s - 1], buf, payload(s, buf, sizeof buf));
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_clear(b);
    for (uint64_t s = 13; s <= 16; s++)
        ao_log_batch_put_event(b, s, second[s - 13], buf, payload(s, buf, sizeof buf));
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    struct {
        const char *wf;
        uint64_t seqs[8];
        size_t n;
    } want[] = {{"a", {1, 2, 7, 8, 11, 12}, 6},
                {"b", {3, 4, 5, 10}, 4},
                {"c", {6, 9, 13, 14, 16}, 5},
                {"d", {15}, 1}};
    for (size_t k = 0; k < 4; k++) {
        seen_t s = {0};
        read_wf(log, want[k].wf, 0, UINT64_MAX, 0, &s);
        assert_seqs(&s, want[k].seqs, want[k].n);
    }
    ao_log_close(log);
    raw_t r;
    raw_open(&r, f->dir);
    assert_int_equal(raw_count(&r, RAW_INDEX), 5); /* a, b, c; then c, d */
    raw_close(&r);
}

/* A version 1 database (one index entry per event, empty values; an event
 * per events key) reads the same, and opening it for writing marks it
 * version 3; read-only leaves it. */
static void check_older_version(const char *dir, const char *version)
{
    ao_log_close(open_log(dir, 0));
    raw_t r;
    raw_open(&r, dir);
    raw_put(&r, RAW_META, "schema_version", 14, version, 1);
    raw_delete(&r, RAW_META, "indexed_through", 15); /* those versions had none */
    for (uint64_t seq = 1; seq <= 6; seq++) {
        unsigned char ek[8], ik[64];
        be64(seq, ek);
        char buf[64];
        size_t len = payload(seq, buf, sizeof buf);
        raw_put(&r, RAW_EVENTS, ek, 8, buf, len);
        raw_put(&r, RAW_INDEX, ik, index_key(seq % 2 ? "odd" : "even", seq, ik), "", 0);
    }
    raw_close(&r);
    for (int ro = 1; ro >= 0; ro--) {
        ao_log_t *log = open_log(dir, ro);
        seen_t s = {0};
        read_wf(log, "odd", 2, 5, 0, &s);
        uint64_t odd[] = {3, 5};
        assert_seqs(&s, odd, 2);
        void *v;
        size_t vl;
        ao_status_t st;
        assert_int_equal(ao_log_get_meta(log, "schema_version", &v, &vl, &st), 0);
        assert_memory_equal(v, ro ? version : "3", 1);
        free(v);
        ao_log_close(log);
    }
    /* Written after the upgrade (a record of three events), read with what
     * was there. */
    ao_log_t *log = open_log(dir, 0);
    const char *wfs[] = {"odd"};
    write_events(log, 7, 9, wfs, 1);
    seen_t s = {0};
    read_wf(log, "odd", 0, UINT64_MAX, 0, &s);
    uint64_t all[] = {1, 3, 5, 7, 8, 9};
    assert_seqs(&s, all, 6);
    memset(&s, 0, sizeof s);
    read_range(log, 5, 8, 0, &s);
    uint64_t mixed[] = {5, 6, 7, 8};
    assert_seqs(&s, mixed, 4);
    ao_log_close(log);
    log = open_log(dir, 1);
    assert_int_equal(ao_log_last_seq(log), 9);
    ao_log_close(log);
}

static void test_index_version_1_read_and_upgraded(void **state)
{
    fx_t *f = *state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/v1", f->dir);
    check_older_version(dir, "1");
    /* Version 2: the same layout (its index entries could hold several
     * events, its events keys one each). */
    snprintf(dir, sizeof dir, "%s/v2", f->dir);
    check_older_version(dir, "2");
}

/* An index entry whose deltas do not decode is reported, not followed. */
static void test_index_corrupt_entry(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 3, wfs, 1);
    ao_log_close(log);
    /* An unterminated varint; a zero delta (a seq twice). */
    static const struct {
        const char *v;
        size_t len;
    } bad[] = {{"\x81", 1}, {"\x01\x00", 2}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_t r;
        raw_open(&r, f->dir);
        unsigned char ik[64];
        raw_put(&r, RAW_INDEX, ik, index_key("w", 1, ik), bad[i].v, bad[i].len);
        raw_close(&r);
        log = open_log(f->dir, 0);
        seen_t s = {0};
        ao_status_t st;
        assert_int_equal(ao_log_read_workflow(log, "w", 0, UINT64_MAX, 0, collect, &s, &st), AO_ECORRUPT);
        assert_non_null(strstr(st.msg, "workflow index entry at 1 does not decode"));
        ao_log_close(log);
    }
}

static void test_schema_version(void **state)
{
    fx_t *f = *state;
    ao_log_close(open_log(f->dir, 0));
    ao_status_t st;
    char newer[16];
    snprintf(newer, sizeof newer, "%d", AO_LOG_SCHEMA_VERSION + 1);
    set_schema(f->dir, newer);
    for (int ro = 0; ro <= 1; ro++) {
        assert_int_equal(try_open(f->dir, ro, &st), AO_ESCHEMA);
        char want[64];
        snprintf(want, sizeof want, "schema version %s", newer);
        if (!strstr(st.msg, want) || !strstr(st.msg, "newer") || !strstr(st.msg, f->dir))
            fail_msg("unclear message: %s", st.msg);
    }
    const char *unknown[] = {"banana", "", "0", "-1", "1x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        set_schema(f->dir, unknown[i]);
        assert_int_equal(try_open(f->dir, 0, &st), AO_ESCHEMA);
        if (!strstr(st.msg, "schema version"))
            fail_msg("unclear message for \"%s\": %s", unknown[i], st.msg);
    }
    /* Putting the right version back makes it open again: nothing was
     * changed by the refused opens. */
    char cur[16];
    snprintf(cur, sizeof cur, "%d", AO_LOG_SCHEMA_VERSION);
    set_schema(f->dir, cur);
    assert_int_equal(try_open(f->dir, 0, &st), 0);
}

/* Records: a batch's events share keys, at most 256 events or 64 KiB a
 * record, and every read starts anywhere in one. */
static void test_records(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w0", "w1", "w2"};
    write_events(log, 1, 600, wfs, 3); /* records 1-256, 257-512, 513-600 */
    uint64_t starts[] = {1, 2, 255, 256, 257, 258, 511, 512, 513, 599, 600};
    for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
        seen_t s = {0};
        read_range(log, starts[k], starts[k] + 299, 0, &s);
        uint64_t last = starts[k] + 299 < 600 ? starts[k] + 299 : 600;
        assert_int_equal(s.n, last - starts[k] + 1);
        for (size_t i = 0; i < s.n; i++) {
            char buf[64];
            payload(starts[k] + i, buf, sizeof buf);
            assert_int_equal(s.seqs[i], starts[k] + i);
            assert_string_equal(s.data[i], buf);
        }
        /* A limit, and an end inside a record. */
        memset(&s, 0, sizeof s);
        read_range(log, starts[k], 400, 3, &s);
        if (starts[k] <= 398) assert_int_equal(s.n, 3);
    }
    seen_t s = {0};
    read_range(log, 601, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 0);
    /* A workflow's events, from inside the first record across the others. */
    read_wf(log, "w1", 250, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 117); /* 250, 253, ..., 598 */
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.seqs[i], 250 + 3 * i);
    memset(&s, 0, sizeof s);
    read_wf(log, "w2", 0, 520, 0, &s);
    assert_int_equal(s.n, 173); /* 2, 5, ..., 518 */
    assert_int_equal(s.seqs[172], 518);

    /* Big events: a record closes once it holds 64 KiB. */
    ao_log_batch_t *b = ao_log_batch_new(log);
    size_t big = 20 << 10;
    char *data = malloc(big);
    for (uint64_t seq = 601; seq <= 605; seq++) {
        memset(data, 'a' + (int)(seq - 601), big);
        ao_log_batch_put_event(b, seq, "big", data, big);
    }
    ao_status_t st;
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    free(data);
    memset(&s, 0, sizeof s);
    read_wf(log, "big", 603, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seqs[0], 603);
    assert_int_equal(s.data[0][0], 'c');
    assert_int_equal(s.data[2][79 - 1], 'e');

    /* One event of no workflow alone: stored as its bytes, as schemas 1
     * and 2 stored every event. */
    const char *none[] = {""};
    write_events(log, 606, 606, none, 1);
    memset(&s, 0, sizeof s);
    read_range(log, 606, 606, 0, &s);
    char buf[64];
    size_t len = payload(606, buf, sizeof buf);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.data[0], buf);
    ao_log_close(log);

    log = open_log(f->dir, 1);
    assert_int_equal(ao_log_last_seq(log), 606);
    ao_log_close(log);
    raw_t r;
    raw_open(&r, f->dir);
    assert_int_equal(raw_count(&r, RAW_EVENTS), 6); /* 3; then 601-604, 605; 606 */
    unsigned char k606[8];
    be64(606, k606);
    size_t vl = 0;
    char *v = raw_get(&r, RAW_EVENTS, k606, 8, &vl);
    assert_non_null(v);
    assert_int_equal(vl, len);
    assert_memory_equal(v, buf, len);
    free(v);
    raw_close(&r);
}

static uint64_t indexed_through(ao_log_t *log)
{
    void *v;
    size_t vl;
    ao_status_t st;
    assert_int_equal(ao_log_get_meta(log, "indexed_through", &v, &vl, &st), 0);
    assert_int_equal(vl, 8);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | ((unsigned char *)v)[i];
    free(v);
    return x;
}

/* Workflow w's events of [from, to] as write_pairs wrote them: seq s is
 * workflow s % 3's. */
static uint64_t pairs_last; /* the last seq write_pairs wrote */

static void expect_wf(ao_log_t *log, int w, uint64_t from, uint64_t to, size_t max)
{
    char wf[8];
    snprintf(wf, sizeof wf, "w%d", w);
    seen_t s = {0};
    read_wf(log, wf, from, to, max, &s);
    size_t n = 0;
    for (uint64_t seq = from ? from : 1; seq <= to && seq <= pairs_last && (!max || n < max);
         seq++) {
        if (seq % 3 != (uint64_t)w) continue;
        if (n >= s.n || s.seqs[n] != seq)
            fail_msg("%s [%llu, %llu] max %zu: event %zu is %llu, want %llu", wf,
                     (unsigned long long)from, (unsigned long long)to, max, n,
                     (unsigned long long)(n < s.n ? s.seqs[n] : 0), (unsigned long long)seq);
        char buf[64];
        payload(seq, buf, sizeof buf);
        assert_string_equal(s.data[n], buf);
        n++;
    }
    assert_int_equal(s.n, n);
}

/* Writes of two events each, seqs from..to. */
static void write_pairs(ao_log_t *log, uint64_t from, uint64_t to)
{
    static const char *const wfs[] = {"w0", "w1", "w2"};
    for (uint64_t s = from; s <= to; s += 2)
        write_events(log, s, s + 1 <= to ? s + 1 : s, wfs, 3);
    pairs_last = to;
}

/* The index trails the log by up to 1,024 events: a workflow's events are
 * read from the index up to indexed_through and from the events after it,
 * without a gap or a repeat at the seam; an open for writing indexes what
 * trails. */
static void check_reads(ao_log_t *log, uint64_t seam)
{
    for (int w = 0; w < 3; w++) {
        expect_wf(log, w, 0, UINT64_MAX, 0);
        expect_wf(log, w, seam - 24, seam + 76, 0); /* across the seam */
        expect_wf(log, w, seam + 1, UINT64_MAX, 0);
        expect_wf(log, w, 5, seam, 0);
        expect_wf(log, w, seam - 4, UINT64_MAX, 3); /* stops past the seam */
        expect_wf(log, w, seam - 24, UINT64_MAX, 2); /* stops before it */
    }
}

static size_t index_entries(const char *dir)
{
    raw_t r;
    raw_open(&r, dir);
    size_t n = raw_count(&r, RAW_INDEX);
    raw_close(&r);
    return n;
}

static void test_index_trails(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_trailing(f->dir, 0);
    assert_int_equal(indexed_through(log), 0);
    write_pairs(log, 1, 1000); /* 1,000 pending: none indexed */
    assert_int_equal(indexed_through(log), 0);
    for (int w = 0; w < 3; w++) expect_wf(log, w, 0, UINT64_MAX, 0);
    write_pairs(log, 1001, 1400); /* the write of 1023-1024 indexes 1-1024 */
    assert_int_equal(indexed_through(log), 1024);
    check_reads(log, 1024);
    ao_log_close(log);
    assert_int_equal(index_entries(f->dir), 3); /* one entry per workflow */

    /* Read-only: 1025-1400 are read from the events. */
    log = open_trailing(f->dir, 1);
    assert_int_equal(indexed_through(log), 1024);
    check_reads(log, 1024);
    ao_log_close(log);
    /* For writing: indexed at open. */
    log = open_trailing(f->dir, 0);
    assert_int_equal(indexed_through(log), 1400);
    check_reads(log, 1400);
    write_pairs(log, 1401, 2100); /* 700 pending */
    assert_int_equal(indexed_through(log), 1400);
    check_reads(log, 1400);
    ao_log_close(log);
    assert_int_equal(index_entries(f->dir), 6);
    log = open_trailing(f->dir, 0);
    assert_int_equal(indexed_through(log), 2100);
    check_reads(log, 2100);
    ao_log_close(log);
    assert_int_equal(index_entries(f->dir), 9);
}

/* A reader beside the writer: each read of workflow w1 up to the log's
 * last seq gets every one of its events once and in order, while writes
 * move indexed_through under it. Failures are kept for the main thread
 * (cmocka's checks are not for other threads). */
typedef struct seam_reader {
    ao_log_t *log;
    atomic_int stop;
    int reads;
    uint64_t next; /* within one read: the seq w1's next event must have */
    char failure[600];
} seam_reader_t;

static int seam_event(void *ud, uint64_t seq, const void *data, size_t len)
{
    seam_reader_t *r = ud;
    char want[64];
    size_t wl = payload(seq, want, sizeof want);
    if (seq != r->next || len != wl || memcmp(data, want, wl)) {
        snprintf(r->failure, sizeof r->failure, "read %d: got event %llu, want %llu", r->reads,
                 (unsigned long long)seq, (unsigned long long)r->next);
        return 1;
    }
    r->next += 3;
    return 0;
}

static void *seam_main(void *arg)
{
    seam_reader_t *r = arg;
    while (!atomic_load(&r->stop) && !r->failure[0]) {
        uint64_t last = ao_log_last_seq(r->log);
        r->next = 1;
        ao_status_t st;
        if (ao_log_read_workflow(r->log, "w1", 0, last, 0, seam_event, r, &st)) {
            snprintf(r->failure, sizeof r->failure, "read %d: %s", r->reads, st.msg);
            break;
        }
        if (r->failure[0]) break;
        uint64_t want_next = last >= 1 ? 1 + 3 * ((last - 1) / 3 + 1) : 1;
        if (r->next != want_next) {
            snprintf(r->failure, sizeof r->failure, "read %d up to %llu: stopped before %llu",
                     r->reads, (unsigned long long)last, (unsigned long long)r->next);
            break;
        }
        r->reads++;
    }
    return NULL;
}

static void test_index_trails_concurrent_reads(void **state)
{
    fx_t *f = *state;
    ao_log_options_t o = {.dir = f->dir, .sync = 0};
    ao_log_t *log;
    ao_status_t st;
    if (ao_log_open(&o, &log, &st)) fail_msg("%s", st.msg);
    seam_reader_t r = {.log = log};
    atomic_init(&r.stop, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, seam_main, &r), 0);
    /* 6,000 events, two a write: five times the index catches up. */
    uint64_t seq = 1;
    while (seq <= 6000 && !r.failure[0]) {
        write_pairs(log, seq, seq + 1);
        seq += 2;
    }
    atomic_store(&r.stop, 1);
    pthread_join(th, NULL);
    if (r.failure[0]) fail_msg("%s", r.failure);
    assert_int_equal(indexed_through(log), 5120);
    print_message("(%d whole reads beside the writes)\n", r.reads);
    assert_true(r.reads > 0);
    ao_log_close(log);
}

/* What the trailing index depends on, damaged: indexed_through, and the
 * records after it, which an open for writing reads back. */
static void test_index_trails_corrupt(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_trailing(f->dir, 0);
    write_pairs(log, 1, 10);
    ao_log_close(log);
    raw_t r;
    raw_open(&r, f->dir);
    raw_put(&r, RAW_META, "indexed_through", 15, "\0\0\0\0\0\0\0\x0b", 8); /* 11 > 10 */
    raw_close(&r);
    ao_status_t st;
    int rc = try_open(f->dir, 1, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "indexed_through is past the last event"))
        fail_msg("open: %d \"%s\"", rc, st.msg);
    raw_open(&r, f->dir);
    raw_put(&r, RAW_META, "indexed_through", 15, "\0\0\0", 3);
    raw_close(&r);
    rc = try_open(f->dir, 0, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "indexed_through is not 8 bytes"))
        fail_msg("open: %d \"%s\"", rc, st.msg);
    raw_open(&r, f->dir);
    raw_put(&r, RAW_META, "indexed_through", 15, "\0\0\0\0\0\0\0\0", 8);
    /* The record 3-4 names a workflow past its table. */
    unsigned char k[8];
    be64(3, k);
    static const unsigned char bad[] = {0, 2, 1, 2, 'w', '1', 2, 1, 'x', 1, 1, 'y'};
    raw_put(&r, RAW_EVENTS, k, 8, bad, sizeof bad);
    raw_close(&r);
    rc = try_open(f->dir, 0, &st);
    if (rc != AO_ECORRUPT ||
        !strstr(st.msg, "the events record at 3 does not decode (an event's workflow)"))
        fail_msg("open for writing: %d \"%s\"", rc, st.msg);
    /* Read-only opens do not read the tail: the read that reaches it says. */
    log = open_trailing(f->dir, 1);
    seen_t s = {0};
    rc = ao_log_read_workflow(log, "w1", 0, UINT64_MAX, 0, collect, &s, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "the events record at 3"))
        fail_msg("read_workflow: %d \"%s\"", rc, st.msg);
    assert_int_equal(s.n, 1); /* event 1 */
    ao_log_close(log);
}

/* A record of three events, A B C, at key 1, with what replaces it. */
static void put_raw_record(const char *dir, const unsigned char *v, size_t vl)
{
    raw_t r;
    raw_open(&r, dir);
    unsigned char k[8];
    be64(1, k);
    raw_put(&r, RAW_EVENTS, k, 8, v, vl);
    raw_close(&r);
}

static void expect_range_corrupt(const char *dir, const char *msg_part)
{
    ao_log_t *log = open_log(dir, 1);
    seen_t s = {0};
    ao_status_t st;
    int rc = ao_log_read_range(log, 1, UINT64_MAX, 0, collect, &s, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, msg_part))
        fail_msg("ao_log_read_range: %d \"%s\", want AO_ECORRUPT naming \"%s\"", rc, st.msg,
                 msg_part);
    ao_log_close(log);
}

/* Damaged records are named, never read past or handed out as events. */
static void test_records_corrupt(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 3, wfs, 1);
    write_events(log, 4, 4, wfs, 1);
    ao_log_close(log);
    /* Three events of workflow "w" (its number 1 in the record's table). */
    static const unsigned char good[] = {0, 3, 1, 1, 'w', 1, 1, 'A', 1, 1, 'B', 1, 1, 'C'};
    put_raw_record(f->dir, good, sizeof good);
    log = open_log(f->dir, 1);
    seen_t s = {0};
    read_range(log, 2, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.data[0], "B");
    assert_string_equal(s.data[1], "C");
    ao_log_close(log);

    static const unsigned char zero[] = {0, 0, 0, 0, 1, 'A'};
    put_raw_record(f->dir, zero, sizeof zero);
    expect_range_corrupt(f->dir, "the events record at 1 does not decode (its count)");
    static const unsigned char too_many[] = {0, 9, 0, 0, 1, 'A', 0, 1, 'B'};
    put_raw_record(f->dir, too_many, sizeof too_many);
    expect_range_corrupt(f->dir, "the events record at 1 does not decode (its count)");
    static const unsigned char short_len[] = {0, 3, 0, 0, 1, 'A', 0, 1, 'B', 0, 5, 'C'};
    put_raw_record(f->dir, short_len, sizeof short_len);
    expect_range_corrupt(f->dir, "does not decode (an event's length)");
    static const unsigned char trailing[] = {0, 3, 0, 0, 1, 'A', 0, 1, 'B', 0, 1, 'C', 'x'};
    put_raw_record(f->dir, trailing, sizeof trailing);
    expect_range_corrupt(f->dir, "does not decode (bytes after its last event)");
    /* Four events at key 1 reach into key 4's. */
    static const unsigned char four[] = {0, 4, 0, 0, 1, 'A', 0, 1, 'B', 0, 1, 'C', 0, 1, 'D'};
    put_raw_record(f->dir, four, sizeof four);
    expect_range_corrupt(f->dir, "the events records at 1 and 4 overlap");

    /* Two events where the index names three: the third is missing. */
    static const unsigned char two[] = {0, 2, 1, 1, 'w', 1, 1, 'A', 1, 1, 'B'};
    /* A workflow table that runs past the value. */
    static const unsigned char table[] = {0, 2, 1, 9, 'w', 0, 1, 'A', 0, 1, 'B'};
    put_raw_record(f->dir, table, sizeof table);
    expect_range_corrupt(f->dir, "does not decode (its workflows)");
    put_raw_record(f->dir, two, sizeof two);
    log = open_log(f->dir, 1);
    memset(&s, 0, sizeof s);
    ao_status_t st;
    int rc = ao_log_read_workflow(log, "w", 0, UINT64_MAX, 0, collect, &s, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "event 3, which is missing"))
        fail_msg("read_workflow over a short record: %d \"%s\"", rc, st.msg);
    assert_int_equal(s.n, 2);
    ao_log_close(log);

    /* The last record's count is how the log knows its last seq. */
    raw_t r;
    raw_open(&r, f->dir);
    unsigned char k[8];
    be64(4, k);
    static const unsigned char bad_count[] = {0, 0x80};
    raw_put(&r, RAW_EVENTS, k, 8, bad_count, sizeof bad_count);
    raw_close(&r);
    rc = try_open(f->dir, 1, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "the events record at 4 does not decode"))
        fail_msg("open over a bad last record: %d \"%s\"", rc, st.msg);
}

static void test_events_without_version_corrupt(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 5, wfs, 1);
    ao_log_close(log);
    set_schema(f->dir, NULL);
    ao_status_t st;
    for (int ro = 0; ro <= 1; ro++) {
        assert_int_equal(try_open(f->dir, ro, &st), AO_ECORRUPT);
        if (!strstr(st.msg, "no schema version")) fail_msg("unclear message: %s", st.msg);
    }
    /* The refused open did not write a version over the evidence. */
    assert_int_equal(try_open(f->dir, 0, &st), AO_ECORRUPT);
}

/* ---- the directory lock ------------------------------------------------------- */

/* Another process: this binary re-run as `--open DIR` (see main). */
static int open_in_child(const char *dir, char *out, size_t cap)
{
    int status = ao_test_run_self("test_eventlog", "--open", dir, out, cap);
    assert_true(status >= 0);
    return status;
}

static void test_second_open_busy(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 4, wfs, 1);
    ao_status_t st;
    /* The same process. */
    assert_int_equal(try_open(f->dir, 0, &st), AO_EBUSY);
    if (!strstr(st.msg, "in use") || !strstr(st.msg, f->dir))
        fail_msg("unclear message: %s", st.msg);
    /* Another process (another agentosd). */
    char out[1024];
    int code = open_in_child(f->dir, out, sizeof out);
    if (code != -AO_EBUSY) fail_msg("the second process got exit %d: %s", code, out);
    assert_non_null(strstr(out, "in use"));
    /* A read-only open takes no lock and sees what is written. */
    ao_log_t *ro = open_log(f->dir, 1);
    assert_int_equal(ao_log_last_seq(ro), 4);
    ao_log_close(ro);
    ao_log_close(log);
    /* Released at close. */
    code = open_in_child(f->dir, out, sizeof out);
    if (code != 0) fail_msg("open after close: exit %d: %s", code, out);
    assert_int_equal(try_open(f->dir, 0, &st), 0);
}

static void test_read_only(void **state)
{
    fx_t *f = *state;
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing/db", f->dir);
    ao_status_t st;
    assert_int_equal(try_open(missing, 1, &st), AO_ENOTFOUND);
    assert_non_null(strstr(st.msg, "there is no event log at"));
    /* A read-only open creates nothing. */
    struct stat sb;
    assert_int_not_equal(stat(missing, &sb), 0);

    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w", "v"};
    write_events(log, 1, 6, wfs, 2);
    ao_log_close(log);
    ao_log_t *ro = open_log(f->dir, 1);
    assert_int_equal(ao_log_last_seq(ro), 6);
    seen_t s = {0};
    read_wf(ro, "w", 0, UINT64_MAX, 0, &s);
    uint64_t even[] = {2, 4, 6};
    assert_seqs(&s, even, 3);
    /* Writes are refused, and the log is unchanged. */
    ao_log_batch_t *b = ao_log_batch_new(ro);
    ao_log_batch_put_event(b, 7, "w", "x", 1);
    int rc = ao_log_write(ro, b, &st);
    assert_true(rc == AO_EIO || rc == AO_EINVAL);
    /* A failed write takes its index entries back: the batch can be
     * written again, also with more events. */
    assert_int_equal(ao_log_write(ro, b, &st), rc);
    ao_log_batch_put_event(b, 8, "v", "y", 1);
    assert_int_equal(ao_log_write(ro, b, &st), rc);
    assert_int_equal(ao_log_last_seq(ro), 6);
    ao_log_batch_free(b);
    ao_log_close(ro);
    /* And a writer can open while a reader has it open. */
    ro = open_log(f->dir, 1);
    log = open_log(f->dir, 0);
    assert_int_equal(ao_log_last_seq(log), 6);
    ao_log_close(log);
    ao_log_close(ro);
}

/* ---- corrupt values ---------------------------------------------------------- */

static size_t packed_submitted(uint64_t seq, const char *wf, uint8_t **out)
{
    const char *spec_json = "{\"tasks\":[{\"id\":\"t1\",\"agent\":\"noop\"}]}";
    ProtobufCMessage *m;
    ao_status_t st;
    if (ao_pbjson_decode_text(&agentos__v1__workflow_spec__descriptor, spec_json, strlen(spec_json),
                              &m, &st))
        fail_msg("%s", st.msg);
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__WorkflowSubmitted ws = AGENTOS__V1__WORKFLOW_SUBMITTED__INIT;
    ws.spec = (Agentos__V1__WorkflowSpec *)m;
    ev.seq = seq;
    ev.type = ET(WORKFLOW_SUBMITTED);
    ev.workflow_id = (char *)wf;
    ev.tenant = "t";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_WORKFLOW_SUBMITTED;
    ev.workflow_submitted = &ws;
    size_t n = protobuf_c_message_get_packed_size(&ev.base);
    *out = malloc(n);
    protobuf_c_message_pack(&ev.base, *out);
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

static size_t packed_custom(uint64_t seq, const char *wf, uint8_t **out)
{
    Agentos__V1__Event ev = AGENTOS__V1__EVENT__INIT;
    Agentos__V1__CustomPayload c = AGENTOS__V1__CUSTOM_PAYLOAD__INIT;
    c.name = "n";
    c.data = "some application data";
    ev.seq = seq;
    ev.type = ET(CUSTOM);
    ev.workflow_id = (char *)wf;
    ev.tenant = "t";
    ev.payload_case = AGENTOS__V1__EVENT__PAYLOAD_CUSTOM;
    ev.custom = &c;
    size_t n = protobuf_c_message_get_packed_size(&ev.base);
    *out = malloc(n);
    protobuf_c_message_pack(&ev.base, *out);
    return n;
}

/* Runs ao-logdump's check on dir (its path in $AO_LOGDUMP, set by CTest);
 * returns its exit status and its output in out. -1 if not available. */
static int logdump_check(const char *dir, char *out, size_t cap)
{
    const char *tool = getenv("AO_LOGDUMP");
    if (!tool || !*tool) return -1;
    char *cmd = NULL;
    if (asprintf(&cmd, "'%s' '%s' 2>&1", tool, dir) < 0) abort();
    FILE *p = popen(cmd, "r");
    free(cmd);
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void expect_state_at_corrupt(ao_log_t *log, const char *wf, const char *msg_part)
{
    ao_wf_t *w = NULL;
    ao_status_t st;
    int rc = ao_engine_state_at(log, wf, UINT64_MAX, &w, &st);
    assert_null(w);
    if (rc != AO_ECORRUPT || !strstr(st.msg, msg_part))
        fail_msg("ao_engine_state_at: %d \"%s\", want AO_ECORRUPT naming \"%s\"", rc, st.msg,
                 msg_part);
}

static void test_corrupt_event_reported(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    uint8_t *sub, *cus;
    size_t sub_n = packed_submitted(1, "wf", &sub);
    size_t cus_n = packed_custom(2, "wf", &cus);
    /* A batch each: an event per key (a record of one), which the raw
     * writes below replace one at a time. */
    ao_log_batch_t *b = ao_log_batch_new(log);
    ao_status_t st;
    for (uint64_t seq = 1; seq <= 3; seq++) {
        ao_log_batch_clear(b);
        if (seq == 1) ao_log_batch_put_event(b, 1, "wf", sub, sub_n);
        if (seq == 2) ao_log_batch_put_event(b, 2, "wf", cus, cus_n);
        /* Through a batch: a truncated event (a length-delimited field
         * runs past the end). */
        if (seq == 3) ao_log_batch_put_event(b, 3, "wf", cus, cus_n / 2);
        assert_int_equal(ao_log_write(log, b, &st), 0);
    }
    ao_log_batch_free(b);

    /* The storage layer hands bytes back as stored: it does not decode. */
    seen_t s = {0};
    read_range(log, 1, UINT64_MAX, 0, &s);
    assert_int_equal(s.n, 3);
    /* Whoever decodes says which event is bad, without crashing; what is
     * before it still rebuilds. */
    expect_state_at_corrupt(log, "wf", "event 3 of workflow wf does not decode");
    ao_wf_t *w = NULL;
    assert_int_equal(ao_engine_state_at(log, "wf", 2, &w, &st), 0);
    assert_int_equal(w->pb->last_seq, 2);
    ao_wf_free(w);
    ao_log_close(log);
    char out[2048];
    int code = logdump_check(f->dir, out, sizeof out);
    if (code >= 0) {
        assert_int_equal(code, 1);
        if (!strstr(out, "event 3 does not decode")) fail_msg("ao-logdump said: %s", out);
    } else {
        print_message("(AO_LOGDUMP not set: ao-logdump's check not run)\n");
    }

    /* With the RocksDB C API directly: garbage (an invalid wire type) over
     * event 1, and event 2's bytes stored under key 3 (it decodes, but says
     * it is 2). */
    raw_t r;
    raw_open(&r, f->dir);
    unsigned char k[8];
    be64(1, k);
    raw_put(&r, RAW_EVENTS, k, 8, "\xff\xff\xff\xff\x0f", 5);
    be64(3, k);
    raw_put(&r, RAW_EVENTS, k, 8, cus, cus_n);
    raw_close(&r);
    log = open_log(f->dir, 0);
    expect_state_at_corrupt(log, "wf", "event 1 of workflow wf does not decode");
    ao_log_close(log);
    code = logdump_check(f->dir, out, sizeof out);
    if (code >= 0) {
        assert_int_equal(code, 1);
        if (!strstr(out, "event 1 does not decode")) fail_msg("ao-logdump said: %s", out);
    }
    raw_open(&r, f->dir);
    be64(1, k);
    raw_put(&r, RAW_EVENTS, k, 8, sub, sub_n);
    raw_close(&r);
    log = open_log(f->dir, 0);
    expect_state_at_corrupt(log, "wf", "event stored at 3 says it is 2");
    ao_log_close(log);
    code = logdump_check(f->dir, out, sizeof out);
    if (code >= 0) {
        assert_int_equal(code, 1);
        if (!strstr(out, "event stored at 3 says it is 2")) fail_msg("ao-logdump said: %s", out);
    }

    /* An index entry whose event is gone: named as missing, by a read
     * through the index, never handed out as something else. */
    raw_open(&r, f->dir);
    be64(2, k);
    raw_delete(&r, RAW_EVENTS, k, 8);
    raw_close(&r);
    log = open_log(f->dir, 0);
    memset(&s, 0, sizeof s);
    int rc = ao_log_read_workflow(log, "wf", 0, UINT64_MAX, 0, collect, &s, &st);
    if (rc != AO_ECORRUPT || !strstr(st.msg, "event 2, which is missing"))
        fail_msg("read_workflow over a missing event: %d \"%s\"", rc, st.msg);
    assert_int_equal(s.n, 1); /* event 1, then the stop */
    memset(&s, 0, sizeof s);
    assert_int_equal(ao_log_read_workflow(log, "wf", 3, UINT64_MAX, 0, collect, &s, &st), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.seqs[0], 3);
    ao_log_close(log);
    free(sub);
    free(cus);
}

/* A minimal engine over the log (no RPC), for the recovery path. */
static int recover_with_engine(const char *dir, ao_status_t *st)
{
    const char *cfg_json = "{\"agents\":[{\"name\":\"noop\",\"kind\":\"BACKEND_KIND_BUILTIN\"}]}";
    ProtobufCMessage *m;
    if (ao_pbjson_decode_text(&agentos__v1__server_config__descriptor, cfg_json, strlen(cfg_json),
                              &m, st))
        fail_msg("%s", st->msg);
    Agentos__V1__ServerConfig *cfg = (Agentos__V1__ServerConfig *)m;
    ao_config_defaults(cfg);
    ao_log_t *log = open_log(dir, 0);
    ao_timers_t *timers = ao_timers_create();
    ao_pool_t *pool = ao_pool_create(1);
    ao_backends_t *bs;
    if (ao_backends_create(cfg, timers, pool, &bs, st)) fail_msg("%s", st->msg);
    ao_engine_options_t eo = {.cfg = cfg, .log = log, .backends = bs, .timers = timers};
    ao_engine_t *e = ao_engine_create(&eo);
    int rc = ao_engine_recover(e, st);
    ao_engine_destroy(e);
    ao_backends_destroy(bs);
    ao_pool_destroy(pool);
    ao_timers_destroy(timers);
    ao_log_close(log);
    ao_config_free(cfg);
    return rc;
}

static void test_corrupt_snapshot_and_tail_in_recovery(void **state)
{
    fx_t *f = *state;
    /* A running workflow: submitted (1), then a snapshot at 1, then a tail
     * event (2). */
    ao_log_t *log = open_log(f->dir, 0);
    uint8_t *sub, *cus;
    size_t sub_n = packed_submitted(1, "wf", &sub);
    size_t cus_n = packed_custom(2, "wf", &cus);
    ao_log_batch_t *b = ao_log_batch_new(log);
    ao_log_batch_put_event(b, 1, "wf", sub, sub_n);
    ao_log_batch_put_event(b, 2, "wf", cus, cus_n);
    ao_status_t st;
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_wf_t *w = NULL;
    assert_int_equal(ao_engine_state_at(log, "wf", 1, &w, &st), 0);
    size_t snap_n = protobuf_c_message_get_packed_size(&w->pb->base);
    uint8_t *snap = malloc(snap_n);
    protobuf_c_message_pack(&w->pb->base, snap);
    ao_wf_free(w);
    ao_log_batch_clear(b);
    ao_log_batch_put_snapshot(b, "wf", 1, snap, snap_n);
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    ao_log_close(log);
    /* Sound: it recovers. */
    assert_int_equal(recover_with_engine(f->dir, &st), 0);

    /* A tail event that does not decode. */
    raw_t r;
    raw_open(&r, f->dir);
    unsigned char k[8];
    be64(2, k);
    raw_put(&r, RAW_EVENTS, k, 8, "\x0a\xff\x01", 3);
    raw_close(&r);
    assert_int_equal(recover_with_engine(f->dir, &st), AO_ECORRUPT);
    if (!strstr(st.msg, "event 2 of workflow wf does not decode"))
        fail_msg("recovery said: %s", st.msg);

    /* A snapshot that does not decode (through a batch). */
    log = open_log(f->dir, 0);
    b = ao_log_batch_new(log);
    ao_log_batch_put_snapshot(b, "wf", 1, snap, snap_n / 3);
    assert_int_equal(ao_log_write(log, b, &st), 0);
    ao_log_batch_free(b);
    ao_log_close(log);
    assert_int_equal(recover_with_engine(f->dir, &st), AO_ECORRUPT);
    if (!strstr(st.msg, "snapshot of workflow wf does not decode"))
        fail_msg("recovery said: %s", st.msg);
    /* A snapshot value too short to hold its seq. */
    raw_open(&r, f->dir);
    raw_put(&r, RAW_SNAPSHOTS, "wf", 2, "\x00\x01", 2);
    raw_close(&r);
    assert_int_equal(recover_with_engine(f->dir, &st), AO_ECORRUPT);
    free(snap);
    free(sub);
    free(cus);
}

/* RocksDB's own corruption (a table file damaged on disk) is corruption,
 * not "in use by another agentosd". */
static void damage_table_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int damaged = 0;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".sst")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        /* The first data block starts at offset 0: flip bytes inside it. */
        char junk[64];
        memset(junk, 0x5a, sizeof junk);
        assert_int_equal(pwrite(fd, junk, sizeof junk, 16), (ssize_t)sizeof junk);
        close(fd);
        damaged++;
    }
    closedir(d);
    assert_true(damaged > 0);
}

static void test_rocksdb_corruption_not_busy(void **state)
{
    fx_t *f = *state;
    ao_log_t *log = open_log(f->dir, 0);
    const char *wfs[] = {"w"};
    write_events(log, 1, 200, wfs, 1);
    ao_log_close(log);
    /* Reopening flushes the recovered write-ahead log into table files. */
    ao_log_close(open_log(f->dir, 0));
    damage_table_files(f->dir);
    ao_log_options_t o = {.dir = f->dir, .sync = 1};
    ao_status_t st;
    log = NULL;
    int rc = ao_log_open(&o, &log, &st);
    if (rc == 0) {
        /* Open may not touch the damaged block; a read does. */
        seen_t s = {0};
        rc = ao_log_read_range(log, 1, 100, 0, collect, &s, &st);
        ao_log_close(log);
    }
    if (rc != AO_ECORRUPT || strstr(st.msg, "in use"))
        fail_msg("a damaged table file: %d (%s) \"%s\", want AO_ECORRUPT", rc, ao_errname(rc),
                 st.msg);
}

int main(int argc, char **argv)
{
    /* Child mode for test_second_open_busy: open DIR as a writer, print
     * the status, exit with the code's magnitude. */
    if (argc == 3 && !strcmp(argv[1], "--open")) {
        ao_log_options_t o = {.dir = argv[2], .sync = 1};
        ao_log_t *log;
        ao_status_t st;
        int rc = ao_log_open(&o, &log, &st);
        if (rc) {
            printf("%s\n", st.msg);
            return -rc & 0xff;
        }
        ao_log_close(log);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_reopen_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gap_rejected_nothing_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_runs_and_returns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_one_entry_per_workflow_per_batch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index_version_1_read_and_upgraded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_corrupt_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_trails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_trails_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_trails_concurrent_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_without_version_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_event_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_snapshot_and_tail_in_recovery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rocksdb_corruption_not_busy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
