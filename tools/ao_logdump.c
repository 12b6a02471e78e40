/*
 * ao-logdump: reads an agentos event log (read-only, also while agentosd
 * runs) and checks or prints it.
 *
 *   ao-logdump DIR                 check: contiguous sequence numbers from 1,
 *                                  every event decodes, its seq matches its
 *                                  key; prints a summary line
 *   ao-logdump DIR --json [--from N] [--to N] [--workflow ID]
 *                                  print the events as proto3 JSON, one per
 *                                  line
 *   ao-logdump DIR --seqs          print every sequence number, one per line
 *
 * Exit status: 0 the log is sound, 1 it is not (the first problem is
 * printed), 2 usage or open error.
 */
#include "agentos/v1/event.pb-c.h"
#include "eventlog.h"
#include "pbjson.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ctx {
    uint64_t expect;
    uint64_t count;
    int json, seqs, bad;
    int check_gaps;
    char problem[512];
} ctx_t;

static int visit(void *ud, uint64_t seq, const void *data, size_t len)
{
    ctx_t *c = ud;
    if (c->check_gaps && seq != c->expect) {
        snprintf(c->problem, sizeof c->problem, "gap: expected event %" PRIu64 ", found %" PRIu64,
                 c->expect, seq);
        c->bad = 1;
        return 1;
    }
    Agentos__V1__Event *ev = agentos__v1__event__unpack(NULL, len, data);
    if (!ev) {
        snprintf(c->problem, sizeof c->problem, "event %" PRIu64 " does not decode (%zu bytes)", seq, len);
        c->bad = 1;
        return 1;
    }
    if (ev->seq != seq) {
        snprintf(c->problem, sizeof c->problem, "event stored at %" PRIu64 " says it is %" PRIu64, seq,
                 (uint64_t)ev->seq);
        c->bad = 1;
    } else if (c->json) {
        char *j = ao_pbjson_encode(&ev->base, 0);
        puts(j);
        free(j);
    } else if (c->seqs) {
        printf("%" PRIu64 "\n", seq);
    }
    agentos__v1__event__free_unpacked(ev, NULL);
    c->expect = seq + 1;
    c->count++;
    return c->bad;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: ao-logdump DIR [--json|--seqs] [--from N] [--to N] [--workflow ID]\n");
        return 2;
    }
    ctx_t c = {0};
    uint64_t from = 1, to = UINT64_MAX;
    const char *wf = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) c.json = 1;
        else if (!strcmp(argv[i], "--seqs")) c.seqs = 1;
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--to") && i + 1 < argc) to = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--workflow") && i + 1 < argc) wf = argv[++i];
        else {
            fprintf(stderr, "ao-logdump: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    ao_log_options_t lo = {.dir = argv[1], .read_only = 1};
    ao_log_t *log;
    ao_status_t st;
    if (ao_log_open(&lo, &log, &st)) {
        fprintf(stderr, "ao-logdump: %s\n", st.msg);
        return 2;
    }
    c.expect = from;
    c.check_gaps = !wf;
    int rc = wf ? ao_log_read_workflow(log, wf, from, to, 0, visit, &c, &st)
                : ao_log_read_range(log, from, to, 0, visit, &c, &st);
    uint64_t last = ao_log_last_seq(log);
    ao_log_close(log);
    if (rc) {
        fprintf(stderr, "ao-logdump: %s\n", st.msg);
        return 1;
    }
    if (c.bad) {
        fprintf(stderr, "ao-logdump: %s\n", c.problem);
        return 1;
    }
    if (!wf && from == 1 && to == UINT64_MAX && c.count != last) {
        fprintf(stderr, "ao-logdump: %" PRIu64 " events read, the last is %" PRIu64 "\n", c.count, last);
        return 1;
    }
    if (!c.json && !c.seqs)
        printf("ok: %" PRIu64 " events, contiguous 1..%" PRIu64 ", all decode\n", c.count, last);
    return 0;
}
