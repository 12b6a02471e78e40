/*
 * Workflow state and the apply function. See wf.h.
 */
#include "wf.h"

#include "mem.h"
#include "pbutil.h"
#include "pool.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TS(x) AGENTOS__V1__TASK_STATUS__TASK_STATUS_##x
#define WS(x) AGENTOS__V1__WORKFLOW_STATUS__WORKFLOW_STATUS_##x
#define ET(x) AGENTOS__V1__EVENT_TYPE__EVENT_TYPE_##x
#define KIND(x) AGENTOS__V1__TASK_KIND__TASK_KIND_##x

void ao_idxlist_push(ao_idxlist_t *l, uint32_t v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = ao_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = v;
}

int ao_task_terminal(int s)
{
    return s == TS(SUCCEEDED) || s == TS(FAILED) || s == TS(SKIPPED) || s == TS(CANCELLED);
}

int ao_wf_status_terminal(int s)
{
    return s == WS(SUCCESS) || s == WS(PARTIAL_SUCCESS) || s == WS(FAILED) || s == WS(CANCELLED) ||
           s == WS(BUDGET_EXCEEDED);
}

double ao_task_authority(const Agentos__V1__TaskState *t)
{
    double a = t->spec ? t->spec->authority : 0;
    return a > 0 ? a : 1.0;
}

int ao_task_role(const Agentos__V1__TaskState *t)
{
    if (t->spec && t->spec->role) return t->spec->role;
    int kind = t->spec ? t->spec->kind : 0;
    if (kind == KIND(SYNTHESIS)) return AGENTOS__V1__ROLE__ROLE_SYNTHESIS;
    if (kind == KIND(PLANNER)) return AGENTOS__V1__ROLE__ROLE_ORCHESTRATOR;
    return AGENTOS__V1__ROLE__ROLE_ANALYSIS;
}

/* Sums that stop at the type's limit instead of wrapping round (a total
 * that wrapped would fall back under its budget). */
static void sat_add(uint64_t *a, uint64_t b)
{
    *a = *a > UINT64_MAX - b ? UINT64_MAX : *a + b;
}

static void sat_add_signed(int64_t *a, int64_t b)
{
    if (b > 0 && *a > INT64_MAX - b) *a = INT64_MAX;
    else if (b < 0 && *a < INT64_MIN - b) *a = INT64_MIN;
    else *a += b;
}

void ao_usage_add(Agentos__V1__Usage **acc, const Agentos__V1__Usage *u)
{
    if (!u) return;
    if (!*acc) {
        *acc = ao_xmalloc(sizeof **acc);
        agentos__v1__usage__init(*acc);
    }
    Agentos__V1__Usage *a = *acc;
    sat_add(&a->prompt_tokens, u->prompt_tokens);
    sat_add(&a->completion_tokens, u->completion_tokens);
    sat_add(&a->total_tokens, u->total_tokens);
    sat_add(&a->api_calls, u->api_calls);
    sat_add(&a->documents, u->documents);
    sat_add_signed(&a->cost_micros, u->cost_micros);
    sat_add(&a->wall_time_ms, u->wall_time_ms);
}

/* agentos.v1.TaskState.spec */
enum { SPEC_FIELD = 1 };

/* Task i's spec packed, once: specs do not change while the index lives. */
static void pack_spec(ao_wf_t *wf, uint32_t i)
{
    ao_task_t *t = &wf->tasks[i];
    Agentos__V1__TaskSpec *spec = t->st->spec;
    if (!spec || t->spec_packed) return;
    t->spec_packed_len = protobuf_c_message_get_packed_size(&spec->base);
    t->spec_packed = ao_xmalloc(t->spec_packed_len ? t->spec_packed_len : 1);
    protobuf_c_message_pack(&spec->base, t->spec_packed);
}

const uint8_t *ao_wf_task_packed(ao_wf_t *wf, uint32_t i, size_t *len)
{
    ao_task_t *t = &wf->tasks[i];
    if (!t->packed) {
        Agentos__V1__TaskSpec *spec = t->st->spec;
        pack_spec(wf, i);
        /* The state without its spec, then the spec's bytes as field 1 (a
         * parser takes fields in any order). */
        t->st->spec = NULL;
        size_t head = protobuf_c_message_get_packed_size(&t->st->base);
        size_t total = head + (spec ? ao_pb_field_size(SPEC_FIELD, t->spec_packed_len) : 0);
        t->packed = ao_xmalloc(total ? total : 1);
        protobuf_c_message_pack(&t->st->base, t->packed);
        t->st->spec = spec;
        t->packed_len = head;
        if (spec) t->packed_len += ao_pb_put_field(t->packed + head, SPEC_FIELD, t->spec_packed, t->spec_packed_len);
    }
    *len = t->packed_len;
    return t->packed;
}

/* ---- packing task states with the pool's help --------------------------------- */

enum { SHARE_CHUNK = 32, SHARE_MIN = 128, SHARE_HELPERS_MAX = 4 };

/* The pool jobs that help with n items: none for few (or no pool). */
static unsigned share_helpers(ao_pool_t *pool, size_t n)
{
    if (!pool || n < SHARE_MIN) return 0;
    unsigned helpers = ao_pool_threads(pool);
    return helpers < SHARE_HELPERS_MAX ? helpers : SHARE_HELPERS_MAX;
}

typedef struct pack_range {
    ao_wf_t *wf;
    const uint32_t *idx; /* the tasks not yet packed */
} pack_range_t;

static void pack_range(void *ud, size_t begin, size_t end)
{
    pack_range_t *r = ud;
    for (size_t j = begin; j < end; j++) ao_wf_task_packed(r->wf, r->idx[j], &(size_t){0});
}

void ao_wf_pack_tasks_shared(ao_wf_t *wf, const uint32_t *idx, size_t n, ao_pool_t *pool)
{
    if (!pool || n < SHARE_MIN) return;
    uint32_t *unpacked = ao_xmalloc(n * sizeof *unpacked);
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t i = idx ? idx[k] : (uint32_t)k;
        if (!wf->tasks[i].packed) unpacked[m++] = i;
    }
    if (m >= SHARE_MIN) {
        pack_range_t r = {wf, unpacked};
        ao_pool_join(ao_pool_share(pool, wf->pb->id, m, SHARE_CHUNK, share_helpers(pool, m),
                                   pack_range, &r));
    }
    free(unpacked);
}

uint8_t *ao_wf_pack_with_tasks(ao_wf_t *wf, ProtobufCMessage *m, const char *field,
                               const uint32_t *idx, size_t n, size_t *len)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
    if (!f || f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
        ao_fatal("ao_wf_pack_with_tasks: %s has no repeated message field %s", m->descriptor->name, field);
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        size_t tl;
        ao_wf_task_packed(wf, idx ? idx[k] : (uint32_t)k, &tl);
        total += ao_pb_field_size(f->id, tl);
    }
    /* The rest of the message as protobuf-c packs it, then the tasks as the
     * field's entries (a parser takes fields in any order). */
    size_t *count = (size_t *)((char *)m + f->quantifier_offset);
    size_t saved = *count;
    *count = 0;
    size_t head = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = ao_xmalloc(head + total + 1);
    protobuf_c_message_pack(m, buf);
    *count = saved;
    size_t pos = head;
    for (size_t k = 0; k < n; k++) {
        const ao_task_t *t = &wf->tasks[idx ? idx[k] : (uint32_t)k];
        pos += ao_pb_put_field(buf + pos, f->id, t->packed, t->packed_len);
    }
    *len = pos;
    return buf;
}

uint8_t *ao_wf_pack(ao_wf_t *wf, size_t *len)
{
    return ao_wf_pack_with_tasks(wf, &wf->pb->base, "tasks", NULL, wf->pb->n_tasks, len);
}

/* ---- the task index ----------------------------------------------------- */

/* Seeded once a process, so that no one can choose task ids that collide
 * (a workflow of 10,000 such ids would cost the processor 50 million
 * string comparisons). */
static uint32_t index_seed;
static pthread_once_t index_seed_once = PTHREAD_ONCE_INIT;

static void make_index_seed(void)
{
    if (getrandom(&index_seed, sizeof index_seed, 0) != sizeof index_seed)
        index_seed = (uint32_t)ao_mono_us();
}

/* FNV-1a, from a seeded offset basis (seeded before the first table is
 * made: every id hashed goes into or is looked up in one). */
static uint32_t id_hash(const char *id)
{
    uint32_t h = 2166136261u ^ index_seed;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The slot of id (hash h): its task's, or the empty one where it would go. */
static struct ao_task_slot *index_slot(const ao_wf_t *wf, const char *id, uint32_t h)
{
    uint32_t mask = wf->index_cap - 1;
    for (uint32_t k = h & mask;; k = (k + 1) & mask) {
        struct ao_task_slot *s = &wf->index[k];
        if (!s->task || (s->hash == h && !strcmp(wf->tasks[s->task - 1].st->spec->id, id)))
            return s;
    }
}

/* Room for n ids, at most half full. */
static void index_reserve(ao_wf_t *wf, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (cap <= wf->index_cap) return;
    pthread_once(&index_seed_once, make_index_seed);
    struct ao_task_slot *old = wf->index;
    uint32_t old_cap = wf->index_cap;
    wf->index = ao_xcalloc(cap, sizeof *wf->index);
    wf->index_cap = (uint32_t)cap;
    for (uint32_t k = 0; k < old_cap; k++) {
        if (!old[k].task) continue;
        uint32_t mask = wf->index_cap - 1, j = old[k].hash & mask;
        while (wf->index[j].task)
            j = (j + 1) & mask;
        wf->index[j] = old[k];
    }
    free(old);
}

int32_t ao_wf_find(const ao_wf_t *wf, const char *task_id)
{
    if (!wf->index_cap) return -1;
    const struct ao_task_slot *s = index_slot(wf, task_id, id_hash(task_id));
    return s->task ? (int32_t)(s->task - 1) : -1;
}

/* ---- indexes ------------------------------------------------------------- */

static void drop_packed(ao_task_t *t)
{
    free(t->packed);
    t->packed = NULL;
    t->packed_len = 0;
}

static void free_index(ao_wf_t *wf)
{
    /* Every slot: pb->n_tasks may already count another list of tasks (a
     * resume replaces them before rebuilding); unused slots are zero. */
    for (size_t i = 0; i < wf->cap_tasks && wf->tasks; i++) {
        free(wf->tasks[i].deps);
        free(wf->tasks[i].dependents);
        drop_packed(&wf->tasks[i]);
        free(wf->tasks[i].spec_packed);
    }
    free(wf->tasks);
    wf->tasks = NULL;
    wf->cap_tasks = 0;
    free(wf->index);
    wf->index = NULL;
    wf->index_cap = wf->index_n = 0;
    wf->ready.n = wf->to_skip.n = wf->stage_done.n = 0;
}

static void add_dependent(ao_task_t *t, uint32_t d)
{
    if (t->n_dependents == t->cap_dependents) {
        t->cap_dependents = t->cap_dependents ? t->cap_dependents * 2 : 4;
        t->dependents = ao_xrealloc(t->dependents, t->cap_dependents * sizeof *t->dependents);
    }
    t->dependents[t->n_dependents++] = d;
}

static void ensure_task_cap(ao_wf_t *wf, size_t n)
{
    if (n <= wf->cap_tasks) return;
    size_t cap = wf->cap_tasks ? wf->cap_tasks : 8;
    while (cap < n) cap *= 2;
    ao_task_t *nt = ao_xcalloc(cap, sizeof *nt);
    if (wf->tasks) memcpy(nt, wf->tasks, wf->cap_tasks * sizeof *nt);
    free(wf->tasks);
    wf->tasks = nt;
    wf->cap_tasks = cap;
}

/* Whether a settled dependency lets its dependents run. */
static int satisfies(const ao_wf_t *wf, const Agentos__V1__TaskState *dep)
{
    if (dep->status == TS(SUCCEEDED)) return 1;
    if (dep->status == TS(FAILED) && dep->spec->optional) {
        int policy = dep->spec->on_failure ? dep->spec->on_failure
                                           : (wf->pb->spec ? wf->pb->spec->on_optional_failure : 0);
        return policy != AGENTOS__V1__DEPENDENTS_POLICY__DEPENDENTS_SKIP;
    }
    return 0;
}

static void settle(ao_wf_t *wf, uint32_t i);

/* Indexes task i (already in pb->tasks): id, deps, parent. */
static int index_task(ao_wf_t *wf, uint32_t i, ao_status_t *st)
{
    ensure_task_cap(wf, i + 1);
    ao_task_t *t = &wf->tasks[i];
    memset(t, 0, sizeof *t);
    t->st = wf->pb->tasks[i];
    t->parent = -1;
    if (!t->st->spec)
        return ao_status_set(st, AO_ECORRUPT, "workflow %s: task %u has no spec", wf->pb->id, i);
    const char *id = t->st->spec->id;
    index_reserve(wf, (size_t)wf->index_n + 1);
    uint32_t h = id_hash(id);
    struct ao_task_slot *s = index_slot(wf, id, h);
    if (s->task)
        return ao_status_set(st, AO_ECORRUPT, "workflow %s: task id %s twice", wf->pb->id, id);
    *s = (struct ao_task_slot){h, i + 1};
    wf->index_n++;
    return 0;
}

/* Links task i to its dependencies and parent. With `count`, also counts
 * what it waits for from its dependencies' and parent's current state (for
 * tasks added while the workflow runs). */
static int link_task(ao_wf_t *wf, uint32_t i, int count, ao_status_t *st)
{
    ao_task_t *t = &wf->tasks[i];
    const Agentos__V1__TaskSpec *spec = t->st->spec;
    t->deps = ao_xcalloc(spec->n_depends_on, sizeof *t->deps);
    t->n_deps = 0;
    for (size_t k = 0; k < spec->n_depends_on; k++) {
        int32_t d = ao_wf_find(wf, spec->depends_on[k]);
        if (d < 0)
            return ao_status_set(st, AO_ECORRUPT, "workflow %s: task %s depends on unknown %s",
                                 wf->pb->id, spec->id, spec->depends_on[k]);
        t->deps[t->n_deps++] = (uint32_t)d;
        add_dependent(&wf->tasks[d], i);
        if (count && (!wf->tasks[d].settled || !satisfies(wf, wf->tasks[d].st))) t->unmet++;
    }
    if (*t->st->parent_task_id) {
        int32_t p = ao_wf_find(wf, t->st->parent_task_id);
        if (p < 0)
            return ao_status_set(st, AO_ECORRUPT, "workflow %s: task %s has unknown parent %s",
                                 wf->pb->id, spec->id, t->st->parent_task_id);
        t->parent = p;
        if (count && !ao_task_terminal(t->st->status)) wf->tasks[p].open_children++;
    }
    return 0;
}

/* Whether some task has i as its parent. */
static int children_exist(const ao_wf_t *wf, uint32_t i)
{
    for (size_t k = 0; k < wf->pb->n_tasks; k++)
        if (wf->tasks[k].parent == (int32_t)i) return 1;
    return 0;
}

/* Whether task i is settled: terminal, and for a success, every subtask
 * settled. Memoised in done[] (0 unknown, 1 no, 2 yes). */
static int compute_settled(ao_wf_t *wf, uint32_t i, uint8_t *done, ao_idxlist_t *children)
{
    if (done[i]) return done[i] == 2;
    const Agentos__V1__TaskState *t = wf->tasks[i].st;
    int settled = ao_task_terminal(t->status);
    done[i] = 1; /* a cycle of parents (corrupt) reads as unsettled */
    if (settled && t->status == TS(SUCCEEDED))
        for (size_t k = 0; k < children[i].n; k++)
            if (!compute_settled(wf, children[i].v[k], done, children)) settled = 0;
    done[i] = settled ? 2 : 1;
    return settled;
}

int ao_wf_rebuild(ao_wf_t *wf, ao_status_t *st)
{
    free_index(wf);
    wf->n_terminal = wf->n_running = 0;
    size_t n = wf->pb->n_tasks;
    ensure_task_cap(wf, n);
    index_reserve(wf, n);
    int rc;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = index_task(wf, i, st))) return rc;
    for (uint32_t i = 0; i < n; i++)
        if ((rc = link_task(wf, i, 0, st))) return rc;
    for (uint32_t i = 0; i < n; i++) {
        int s = wf->tasks[i].st->status;
        if (ao_task_terminal(s)) wf->n_terminal++;
        if (s == TS(RUNNING)) wf->n_running++;
    }
    /* Settled flags bottom-up through the parent links, then the counts. */
    ao_idxlist_t *children = ao_xcalloc(n ? n : 1, sizeof *children);
    uint8_t *done = ao_xcalloc(n ? n : 1, 1);
    for (uint32_t i = 0; i < n; i++)
        if (wf->tasks[i].parent >= 0) ao_idxlist_push(&children[wf->tasks[i].parent], i);
    for (uint32_t i = 0; i < n; i++) wf->tasks[i].settled = (uint8_t)compute_settled(wf, i, done, children);
    for (uint32_t i = 0; i < n; i++) {
        ao_task_t *t = &wf->tasks[i];
        for (size_t k = 0; k < children[i].n; k++)
            if (!wf->tasks[children[i].v[k]].settled) t->open_children++;
        for (uint32_t k = 0; k < t->n_deps; k++) {
            const ao_task_t *d = &wf->tasks[t->deps[k]];
            if (!d->settled || !satisfies(wf, d->st)) t->unmet++;
        }
        free(children[i].v);
    }
    free(children);
    free(done);
    /* Work lists from scratch. */
    for (uint32_t i = 0; i < n; i++) {
        ao_task_t *t = &wf->tasks[i];
        int s = t->st->status;
        if ((s == TS(PENDING) && t->unmet == 0) || s == TS(READY)) ao_idxlist_push(&wf->ready, i);
        if (s == TS(PENDING) && t->unmet) {
            for (uint32_t k = 0; k < t->n_deps; k++) {
                const ao_task_t *d = &wf->tasks[t->deps[k]];
                if (d->settled && !satisfies(wf, d->st)) {
                    ao_idxlist_push(&wf->to_skip, i);
                    break;
                }
            }
        }
        if (t->st->spec->kind == KIND(REFINEMENT) && s == TS(RUNNING) && t->open_children == 0 &&
            children_exist(wf, i))
            ao_idxlist_push(&wf->stage_done, i);
    }
    wf->dirty = 1;
    return 0;
}

/* ---- creation ------------------------------------------------------------ */

static Agentos__V1__TaskState *new_task_state(const Agentos__V1__TaskSpec *spec)
{
    Agentos__V1__TaskState *t = ao_xmalloc(sizeof *t);
    agentos__v1__task_state__init(t);
    t->spec = AO_PB_CLONE(Agentos__V1__TaskSpec, spec);
    t->status = TS(PENDING);
    ao_pb_set_str(&t->agent, spec->agent);
    return t;
}

typedef struct new_states {
    const Agentos__V1__WorkflowSpec *spec;
    Agentos__V1__TaskState **states;
} new_states_t;

static void new_states(void *ud, size_t begin, size_t end)
{
    new_states_t *r = ud;
    for (size_t i = begin; i < end; i++)
        r->states[i] = new_task_state(r->spec->tasks[i]);
}

int ao_wf_new(const Agentos__V1__WorkflowSpec *spec, const char *id, const char *request_id,
              ao_pool_t *pool, ao_wf_t **out, ao_status_t *st)
{
    Agentos__V1__Workflow *pb = ao_xmalloc(sizeof *pb);
    agentos__v1__workflow__init(pb);
    ao_pb_set_str(&pb->id, id);
    ao_pb_set_str(&pb->request_id, request_id);
    /* The spec without its tasks: those live in tasks[].spec. */
    Agentos__V1__WorkflowSpec view = *spec;
    view.tasks = NULL;
    view.n_tasks = 0;
    pb->spec = AO_PB_CLONE(Agentos__V1__WorkflowSpec, &view);
    pb->status = WS(RUNNING);
    pb->strategy = spec->strategy;
    pb->tasks = ao_xcalloc(spec->n_tasks ? spec->n_tasks : 1, sizeof *pb->tasks);
    /* Copying the specs is most of the work: the caller and the pool's
     * threads share it out (a 1,000-task spec took 2.5 million
     * instructions, the index after it 1.1 million). */
    new_states_t r = {spec, pb->tasks};
    ao_pool_join(ao_pool_share(pool, "", spec->n_tasks, SHARE_CHUNK,
                               share_helpers(pool, spec->n_tasks), new_states, &r));
    pb->n_tasks = spec->n_tasks;
    return ao_wf_from_snapshot(pb, out, st);
}

void ao_wf_bind(ao_wf_t *wf, const Agentos__V1__Event *ev)
{
    Agentos__V1__Workflow *pb = wf->pb;
    ao_pb_set_str(&pb->id, ev->workflow_id);
    ao_pb_set_str(&pb->tenant, ev->tenant);
    pb->created_unix_ms = ev->time_unix_ms;
    pb->started_unix_ms = ev->time_unix_ms;
    pb->last_seq = ev->seq;
    pb->event_count = 1;
    pb->events_since_checkpoint = 1;
}

int ao_wf_create(const Agentos__V1__Event *ev, ao_wf_t **out, ao_status_t *st)
{
    if (ev->type != ET(WORKFLOW_SUBMITTED) || !ev->workflow_submitted ||
        !ev->workflow_submitted->spec)
        return ao_status_set(st, AO_EINVAL, "event %llu is not a WORKFLOW_SUBMITTED",
                             (unsigned long long)ev->seq);
    int rc = ao_wf_new(ev->workflow_submitted->spec, ev->workflow_id,
                       ev->workflow_submitted->request_id, NULL, out, st);
    if (rc) return rc;
    ao_wf_bind(*out, ev);
    if (*(*out)->pb->request_id) {
        /* The payload packed again is the bytes the log holds: protobuf-c
         * packs a message it unpacked as it packed it. */
        const ProtobufCMessage *m = &ev->workflow_submitted->base;
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *bytes = ao_xmalloc(len ? len : 1);
        protobuf_c_message_pack(m, bytes);
        ao_wf_set_submission(*out, bytes, len);
        free(bytes);
    }
    return 0;
}

void ao_wf_set_submission(ao_wf_t *wf, const void *payload, size_t len)
{
    if (!*wf->pb->request_id) return;
    char hex[65];
    ao_sha256_hex(payload, len, hex);
    ao_pb_set_str(&wf->pb->submission_sha256, hex);
}

int ao_wf_from_snapshot(Agentos__V1__Workflow *pb, ao_wf_t **out, ao_status_t *st)
{
    ao_wf_t *wf = ao_xcalloc(1, sizeof *wf);
    wf->pb = pb;
    int rc = ao_wf_rebuild(wf, st);
    if (rc) {
        ao_wf_free(wf);
        *out = NULL;
        return rc;
    }
    *out = wf;
    return 0;
}

static void free_work_lists(ao_wf_t *wf)
{
    free(wf->ready.v);
    free(wf->to_skip.v);
    free(wf->stage_done.v);
    memset(&wf->ready, 0, sizeof wf->ready);
    memset(&wf->to_skip, 0, sizeof wf->to_skip);
    memset(&wf->stage_done, 0, sizeof wf->stage_done);
}

/* Moves *from into *to (a string field), leaving from empty. */
static void move_str(char **to, char **from)
{
    *to = *from;
    *from = (char *)protobuf_c_empty_string;
}

void ao_wf_freeze(ao_wf_t *wf)
{
    if (wf->frozen) return;
    Agentos__V1__Workflow *old = wf->pb, *pb = ao_xmalloc(sizeof *pb);
    agentos__v1__workflow__init(pb);
    move_str(&pb->id, &old->id);
    move_str(&pb->tenant, &old->tenant);
    move_str(&pb->request_id, &old->request_id);
    move_str(&pb->submission_sha256, &old->submission_sha256);
    pb->status = old->status;
    pb->created_unix_ms = old->created_unix_ms;
    pb->started_unix_ms = old->started_unix_ms;
    pb->finished_unix_ms = old->finished_unix_ms;
    pb->last_seq = old->last_seq;
    pb->usage = old->usage;
    old->usage = NULL;
    if (old->spec) {
        pb->spec = ao_xmalloc(sizeof *pb->spec);
        agentos__v1__workflow_spec__init(pb->spec);
        move_str(&pb->spec->name, &old->spec->name);
        pb->spec->labels = old->spec->labels;
        pb->spec->n_labels = old->spec->n_labels;
        old->spec->labels = NULL;
        old->spec->n_labels = 0;
    }
    wf->frozen_tasks = (uint32_t)old->n_tasks;
    free_index(wf);
    free_work_lists(wf);
    ao_pb_free(old);
    wf->pb = pb;
    wf->frozen = 1;
}

int ao_wf_thaw(ao_wf_t *wf, Agentos__V1__Workflow *pb, ao_status_t *st)
{
    if (strcmp(pb->id, wf->pb->id) || pb->last_seq != wf->pb->last_seq ||
        pb->n_tasks != wf->frozen_tasks) {
        ao_status_set(st, AO_ECORRUPT,
                      "the snapshot of workflow %s is not its final state (%s at seq %llu, %zu "
                      "tasks)",
                      wf->pb->id, pb->id, (unsigned long long)pb->last_seq, pb->n_tasks);
        ao_pb_free(pb);
        return AO_ECORRUPT;
    }
    Agentos__V1__Workflow *summary = wf->pb;
    uint32_t done = wf->n_terminal;
    wf->pb = pb;
    int rc = ao_wf_rebuild(wf, st);
    if (rc) {
        free_index(wf);
        wf->pb = summary;
        wf->n_terminal = done;
        wf->n_running = 0;
        ao_pb_free(pb);
        return rc;
    }
    ao_pb_free(summary);
    wf->frozen = 0;
    wf->frozen_tasks = 0;
    return 0;
}

void ao_wf_free(ao_wf_t *wf)
{
    if (!wf) return;
    free_index(wf);
    free_work_lists(wf);
    ao_pb_free(wf->pb);
    free(wf);
}

/* ---- settling ------------------------------------------------------------ */

/* Task i has reached its final state: tell its dependents and its parent. */
static void settle(ao_wf_t *wf, uint32_t i)
{
    ao_task_t *t = &wf->tasks[i];
    if (t->settled) return;
    t->settled = 1;
    int ok = satisfies(wf, t->st);
    for (uint32_t k = 0; k < t->n_dependents; k++) {
        uint32_t d = t->dependents[k];
        ao_task_t *dt = &wf->tasks[d];
        if (dt->st->status != TS(PENDING)) continue;
        if (ok) {
            if (dt->unmet && --dt->unmet == 0) ao_idxlist_push(&wf->ready, d);
        } else {
            ao_idxlist_push(&wf->to_skip, d);
        }
    }
    if (t->parent >= 0) {
        ao_task_t *p = &wf->tasks[t->parent];
        if (p->open_children) p->open_children--;
        if (p->open_children == 0) {
            if (p->st->status == TS(SUCCEEDED)) settle(wf, (uint32_t)t->parent);
            else if (p->st->spec->kind == KIND(REFINEMENT) && p->st->status == TS(RUNNING))
                ao_idxlist_push(&wf->stage_done, (uint32_t)t->parent);
        }
    }
    wf->dirty = 1;
}

static void set_status(ao_wf_t *wf, uint32_t i, int status)
{
    Agentos__V1__TaskState *t = wf->tasks[i].st;
    int was = t->status;
    if (was == status) return;
    if (ao_task_terminal(was)) wf->n_terminal--;
    if (was == TS(RUNNING)) wf->n_running--;
    t->status = status;
    if (ao_task_terminal(status)) wf->n_terminal++;
    if (status == TS(RUNNING)) wf->n_running++;
    wf->dirty = 1;
}

/* ---- usage ----------------------------------------------------------------- */

static void add_role_usage(Agentos__V1__Workflow *pb, int role, const Agentos__V1__Usage *u)
{
    for (size_t i = 0; i < pb->n_role_usage; i++) {
        if ((int)pb->role_usage[i]->role == role) {
            ao_usage_add(&pb->role_usage[i]->usage, u);
            return;
        }
    }
    Agentos__V1__RoleUsage **slot = ao_pb_push(&pb->role_usage, &pb->n_role_usage, sizeof *slot);
    *slot = ao_xmalloc(sizeof **slot);
    agentos__v1__role_usage__init(*slot);
    (*slot)->role = role;
    ao_usage_add(&(*slot)->usage, u);
}

static void add_agent_usage(Agentos__V1__Workflow *pb, const char *agent, const Agentos__V1__Usage *u)
{
    for (size_t i = 0; i < pb->n_agent_usage; i++) {
        if (!strcmp(pb->agent_usage[i]->agent, agent)) {
            ao_usage_add(&pb->agent_usage[i]->usage, u);
            return;
        }
    }
    Agentos__V1__AgentUsage **slot = ao_pb_push(&pb->agent_usage, &pb->n_agent_usage, sizeof *slot);
    *slot = ao_xmalloc(sizeof **slot);
    agentos__v1__agent_usage__init(*slot);
    ao_pb_set_str(&(*slot)->agent, agent);
    ao_usage_add(&(*slot)->usage, u);
}

void ao_usage_take_back_call(Agentos__V1__Usage *u)
{
    if (u && u->api_calls) u->api_calls--;
}

/* An attempt's API call, counted when it started, was never made. */
static void uncount_call(ao_wf_t *wf, Agentos__V1__TaskState *t)
{
    Agentos__V1__Workflow *pb = wf->pb;
    ao_usage_take_back_call(t->usage);
    ao_usage_take_back_call(pb->usage);
    int role = ao_task_role(t);
    for (size_t i = 0; i < pb->n_role_usage; i++)
        if ((int)pb->role_usage[i]->role == role) ao_usage_take_back_call(pb->role_usage[i]->usage);
    const char *agent = *t->agent ? t->agent : "(builtin)";
    for (size_t i = 0; i < pb->n_agent_usage; i++)
        if (!strcmp(pb->agent_usage[i]->agent, agent))
            ao_usage_take_back_call(pb->agent_usage[i]->usage);
    if (wf->usage_sink) wf->usage_sink(wf->usage_ud, agent, NULL);
}

static void count_usage(ao_wf_t *wf, Agentos__V1__TaskState *t, const Agentos__V1__Usage *u)
{
    if (!u) return;
    const char *agent = *t->agent ? t->agent : "(builtin)";
    ao_usage_add(&t->usage, u);
    ao_usage_add(&wf->pb->usage, u);
    add_role_usage(wf->pb, ao_task_role(t), u);
    add_agent_usage(wf->pb, agent, u);
    if (wf->usage_sink) wf->usage_sink(wf->usage_ud, agent, u);
}

/* ---- findings ------------------------------------------------------------- */

static void push_finding(Agentos__V1__Finding ***arr, size_t *n, const Agentos__V1__Finding *f,
                         const char *source, double authority)
{
    Agentos__V1__Finding **slot = ao_pb_push(arr, n, sizeof *slot);
    *slot = AO_PB_CLONE(Agentos__V1__Finding, f);
    if (source && !*(*slot)->source_task) ao_pb_set_str(&(*slot)->source_task, source);
    if ((*slot)->authority == 0) (*slot)->authority = authority;
}

static void clear_findings(Agentos__V1__Finding ***arr, size_t *n)
{
    for (size_t i = 0; i < *n; i++) ao_pb_free((*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
}

/* ---- resume ----------------------------------------------------------------- */

json_t *ao_wf_resume_kept(const Agentos__V1__Checkpoint *c)
{
    json_t *kept = json_object();
    for (size_t i = 0; i < c->n_completed_tasks; i++)
        if (c->completed_tasks[i]->spec)
            json_object_set_new(kept, c->completed_tasks[i]->spec->id,
                                json_integer((json_int_t)(intptr_t)c->completed_tasks[i]));
    /* Drop, until nothing changes, every task with a dependency that runs
     * again: its input will be made again. */
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < c->n_completed_tasks; i++) {
            const Agentos__V1__TaskSpec *s = c->completed_tasks[i]->spec;
            if (!s || !json_object_get(kept, s->id)) continue;
            for (size_t k = 0; k < s->n_depends_on; k++) {
                if (json_object_get(kept, s->depends_on[k])) continue;
                json_object_del(kept, s->id);
                changed = 1;
                break;
            }
        }
    }
    return kept;
}

static const Agentos__V1__TaskState *kept_task(json_t *kept, const char *id)
{
    json_t *v = json_object_get(kept, id);
    return v ? (const Agentos__V1__TaskState *)(intptr_t)json_integer_value(v) : NULL;
}

static Agentos__V1__TaskState *fresh_copy(const Agentos__V1__TaskState *t)
{
    Agentos__V1__TaskState *c = new_task_state(t->spec);
    ao_pb_set_str(&c->parent_task_id, t->parent_task_id);
    c->depth = t->depth;
    ao_pb_set_str(&c->area, t->area);
    c->stage = t->stage;
    return c;
}

static void apply_override(Agentos__V1__TaskState *t, const Agentos__V1__TaskOverride *o)
{
    Agentos__V1__TaskSpec *s = t->spec;
    if (o->attempt_timeout_ms) s->attempt_timeout_ms = o->attempt_timeout_ms;
    if (o->total_timeout_ms) s->total_timeout_ms = o->total_timeout_ms;
    if (*o->agent) {
        ao_pb_set_str(&s->agent, o->agent);
        ao_pb_set_str(&t->agent, o->agent);
    }
    if (o->max_attempts) {
        if (!s->retry) {
            s->retry = ao_xmalloc(sizeof *s->retry);
            agentos__v1__retry_policy__init(s->retry);
        }
        s->retry->max_attempts = o->max_attempts;
    }
}

/* Resets the workflow to a checkpoint: completed tasks keep their results
 * (unless a dependency of theirs runs again), every other task starts over. The checkpoint may borrow from this state:
 * everything is copied out of it before the old state is freed. */
static int apply_resumed(ao_wf_t *wf, const Agentos__V1__Event *ev, ao_status_t *st)
{
    const Agentos__V1__WorkflowResumed *r = ev->resumed;
    const Agentos__V1__Checkpoint *c = r->checkpoint;
    if (!c) return ao_status_set(st, AO_ECORRUPT, "WORKFLOW_RESUMED %llu without a checkpoint",
                                 (unsigned long long)ev->seq);
    /* Everything kept from the checkpoint is copied before the old state
     * goes: the checkpoint may point into this very state (the engine
     * resumes from a view of the latest state: its key findings are the
     * tasks' and the workflow's own). */
    Agentos__V1__Finding **findings = NULL;
    size_t n_findings = 0;
    for (size_t i = 0; i < c->n_key_findings; i++)
        push_finding(&findings, &n_findings, c->key_findings[i], NULL, 0);
    Agentos__V1__Workflow *pb = wf->pb;
    size_t old_n = pb->n_tasks;
    Agentos__V1__TaskState **old = pb->tasks;
    Agentos__V1__TaskState **nt = ao_xcalloc(old_n + c->n_added_tasks + c->n_completed_tasks + 1,
                                             sizeof *nt);
    size_t n = 0;
    json_t *kept = ao_wf_resume_kept(c);
    /* The submitted tasks, in order. */
    for (size_t i = 0; i < old_n; i++) {
        if (*old[i]->parent_task_id) continue;
        const Agentos__V1__TaskState *done = kept_task(kept, old[i]->spec->id);
        nt[n++] = done ? AO_PB_CLONE(Agentos__V1__TaskState, done) : fresh_copy(old[i]);
    }
    /* Generated tasks: those kept, then those to run (again). */
    for (size_t i = 0; i < c->n_completed_tasks; i++) {
        const Agentos__V1__TaskState *t = c->completed_tasks[i];
        if (*t->parent_task_id && kept_task(kept, t->spec->id)) nt[n++] = AO_PB_CLONE(Agentos__V1__TaskState, t);
    }
    for (size_t i = 0; i < c->n_completed_tasks; i++) {
        const Agentos__V1__TaskState *t = c->completed_tasks[i];
        if (*t->parent_task_id && !kept_task(kept, t->spec->id)) nt[n++] = fresh_copy(t);
    }
    for (size_t i = 0; i < c->n_added_tasks; i++) nt[n++] = fresh_copy(c->added_tasks[i]);
    json_decref(kept);
    for (size_t i = 0; i < old_n; i++) ao_pb_free(old[i]);
    free(old);
    pb->tasks = nt;
    pb->n_tasks = n;
    /* A single-agent workflow keeps its other tasks skipped. */
    if (pb->strategy == AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT)
        for (size_t i = 0; i < n; i++)
            if (strcmp(nt[i]->spec->id, "auto.single") && nt[i]->status != TS(SUCCEEDED)) {
                nt[i]->status = TS(SKIPPED);
                ao_pb_set_str(&nt[i]->error, "strategy: a single agent runs the whole job");
            }
    for (size_t k = 0; k < r->n_overrides; k++) {
        for (size_t i = 0; i < n; i++)
            if (!strcmp(nt[i]->spec->id, r->overrides[k]->task_id) && nt[i]->status != TS(SUCCEEDED))
                apply_override(nt[i], r->overrides[k]);
    }
    clear_findings(&pb->findings, &pb->n_findings);
    pb->findings = findings;
    pb->n_findings = n_findings;
    if (r->budget) {
        ao_pb_free(pb->spec->budget);
        pb->spec->budget = AO_PB_CLONE(Agentos__V1__Budget, r->budget);
        for (size_t i = 0; i < pb->n_alerts; i++) ao_pb_free(pb->alerts[i]);
        free(pb->alerts);
        pb->alerts = NULL;
        pb->n_alerts = 0;
    }
    ao_pb_free(pb->result);
    pb->result = NULL;
    pb->status = WS(RUNNING);
    pb->stopping = WS(UNSPECIFIED);
    pb->early_terminated = 0;
    ao_pb_clear_str(&pb->stop_reason);
    pb->finished_unix_ms = 0;
    pb->started_unix_ms = ev->time_unix_ms;
    pb->resumes++;
    return ao_wf_rebuild(wf, st);
}

/* ---- apply ------------------------------------------------------------------ */

/* found: the index of the task ev names, looked up once (-1: none). */
static int need_task(ao_wf_t *wf, const Agentos__V1__Event *ev, int32_t found, int32_t *idx,
                     ao_status_t *st)
{
    *idx = found;
    if (*idx < 0)
        return ao_status_set(st, AO_ECORRUPT, "event %llu (%s) names unknown task \"%s\" of %s",
                             (unsigned long long)ev->seq,
                             protobuf_c_enum_descriptor_get_value(&agentos__v1__event_type__descriptor,
                                                                  ev->type)
                                 ? protobuf_c_enum_descriptor_get_value(
                                       &agentos__v1__event_type__descriptor, ev->type)
                                       ->name
                                 : "?",
                             ev->task_id, wf->pb->id);
    return 0;
}

static void add_alert(Agentos__V1__Workflow *pb, int role, int dim, int exceeded)
{
    for (size_t i = 0; i < pb->n_alerts; i++) {
        if ((int)pb->alerts[i]->role == role && (int)pb->alerts[i]->dimension == dim) {
            if (exceeded) pb->alerts[i]->exceeded = 1;
            return;
        }
    }
    Agentos__V1__BudgetAlert **slot = ao_pb_push(&pb->alerts, &pb->n_alerts, sizeof *slot);
    *slot = ao_xmalloc(sizeof **slot);
    agentos__v1__budget_alert__init(*slot);
    (*slot)->role = role;
    (*slot)->dimension = dim;
    (*slot)->exceeded = exceeded;
}

static void stop_with(Agentos__V1__Workflow *pb, int status, const char *reason)
{
    if (pb->stopping || ao_wf_status_terminal(pb->status)) return;
    pb->stopping = status;
    ao_pb_set_str(&pb->stop_reason, reason);
}

/* take: ev is the caller's to give (see ao_wf_apply_taking); otherwise
 * it is only read. */
static int apply_event(ao_wf_t *wf, Agentos__V1__Event *ev, int take, ao_status_t *st)
{
    Agentos__V1__Workflow *pb = wf->pb;
    if (strcmp(ev->workflow_id, pb->id))
        return ao_status_set(st, AO_ECORRUPT, "event %llu of workflow %s applied to %s",
                             (unsigned long long)ev->seq, ev->workflow_id, pb->id);
    int32_t i = -1;
    int rc = 0;
    Agentos__V1__TaskState *t = NULL;
    /* The task an event names is the task it may change (a budget event
     * may name another: below); the rest change every task and rebuild. */
    int32_t named = *ev->task_id ? ao_wf_find(wf, ev->task_id) : -1;
    if (named >= 0) drop_packed(&wf->tasks[named]);

    switch (ev->type) {
    case ET(WORKFLOW_SUBMITTED):
        break; /* the workflow was created from it */

    case ET(STRATEGY_SELECTED): {
        const Agentos__V1__StrategySelected *s = ev->strategy_selected;
        if (!s) break;
        pb->strategy = s->strategy;
        ao_pb_set_str(&pb->strategy_reason, s->reason);
        if (s->strategy == AGENTOS__V1__STRATEGY__STRATEGY_SINGLE_AGENT &&
            ao_wf_find(wf, "auto.single") < 0) {
            const Agentos__V1__AutoStrategy *a = pb->spec->auto_strategy;
            for (size_t k = 0; k < pb->n_tasks; k++) {
                set_status(wf, (uint32_t)k, TS(SKIPPED));
                ao_pb_set_str(&pb->tasks[k]->error, "strategy: a single agent runs the whole job");
                wf->tasks[k].settled = 1;
            }
            Agentos__V1__TaskSpec spec = AGENTOS__V1__TASK_SPEC__INIT;
            spec.id = "auto.single";
            spec.agent = a ? a->single_agent : "";
            spec.input = a ? a->objective : "";
            Agentos__V1__TaskState **slot = ao_pb_push(&pb->tasks, &pb->n_tasks, sizeof *slot);
            *slot = new_task_state(&spec);
            if ((rc = ao_wf_rebuild(wf, st))) return rc;
        }
        break;
    }

    case ET(TASK_STARTED):
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        set_status(wf, (uint32_t)i, TS(RUNNING));
        t->attempts = ev->attempt ? ev->attempt : t->attempts + 1;
        ao_pb_set_str(&t->attempt_id, ev->attempt_id);
        if (ev->task_started) {
            if (*ev->task_started->agent && strcmp(t->agent, ev->task_started->agent))
                ao_pb_set_str(&t->agent, ev->task_started->agent);
            ao_pb_free_strs(&t->missing_dependencies, &t->n_missing_dependencies);
            for (size_t k = 0; k < ev->task_started->n_missing_dependencies; k++)
                ao_pb_push_str(&t->missing_dependencies, &t->n_missing_dependencies,
                               ev->task_started->missing_dependencies[k]);
        }
        if (!t->started_unix_ms) t->started_unix_ms = ev->time_unix_ms;
        t->next_attempt_unix_ms = 0;
        /* An agent call is counted when it is made (budgets check calls
         * before making them). */
        if (ev->task_started && *ev->task_started->agent) {
            Agentos__V1__Usage one = AGENTOS__V1__USAGE__INIT;
            one.api_calls = 1;
            count_usage(wf, t, &one);
        }
        break;

    case ET(TASK_SUCCEEDED): {
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        const Agentos__V1__TaskSucceeded *s = ev->task_succeeded;
        const Agentos__V1__AgentResult *r = s ? s->result : NULL;
        if (r) {
            ao_pb_set_str(&t->output, r->output);
            t->score = r->score;
            t->confidence = r->confidence;
            clear_findings(&t->findings, &t->n_findings);
            double auth = ao_task_authority(t);
            for (size_t k = 0; k < r->n_findings; k++)
                push_finding(&t->findings, &t->n_findings, r->findings[k], t->spec->id, auth);
            for (size_t k = 0; k < r->n_decisions; k++)
                ao_pb_push_str(&t->decisions, &t->n_decisions, r->decisions[k]);
        }
        count_usage(wf, t, s ? s->usage : NULL);
        ao_pb_clear_str(&t->error);
        t->error_class = 0;
        t->finished_unix_ms = ev->time_unix_ms;
        set_status(wf, (uint32_t)i, TS(SUCCEEDED));
        if (wf->tasks[i].open_children == 0) settle(wf, (uint32_t)i);
        break;
    }

    case ET(ATTEMPT_FAILED): {
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        const Agentos__V1__AttemptFailed *f = ev->attempt_failed;
        if (!f) break;
        ao_pb_set_str(&t->error, f->error);
        t->error_class = f->error_class;
        count_usage(wf, t, f->usage);
        if (f->call_not_made) uncount_call(wf, t);
        if (f->will_retry) {
            set_status(wf, (uint32_t)i, TS(RETRY_WAIT));
            t->next_attempt_unix_ms = ev->time_unix_ms + f->retry_in_ms;
        } else {
            /* The scheduler follows at once with a fallback or TASK_FAILED. */
            set_status(wf, (uint32_t)i, TS(READY));
        }
        break;
    }

    case ET(TASK_FAILED): {
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        const Agentos__V1__TaskFailed *f = ev->task_failed;
        if (f) {
            ao_pb_set_str(&t->error, f->error);
            t->error_class = f->error_class;
        }
        t->finished_unix_ms = ev->time_unix_ms;
        set_status(wf, (uint32_t)i, TS(FAILED));
        if (!t->spec->optional) {
            char reason[400];
            snprintf(reason, sizeof reason, "required task %s failed: %s", t->spec->id, t->error);
            stop_with(pb, WS(FAILED), reason);
        }
        settle(wf, (uint32_t)i);
        break;
    }

    case ET(TASK_FALLBACK):
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        t->primary_attempts = t->attempts;
        t->fell_back = 1;
        if (ev->task_fallback) ao_pb_set_str(&t->agent, ev->task_fallback->to_agent);
        break;

    case ET(TASK_SKIPPED):
    case ET(TASK_CANCELLED):
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        if (ev->type == ET(TASK_SKIPPED) && ev->task_skipped)
            ao_pb_set_str(&t->error, ev->task_skipped->reason);
        if (ev->type == ET(TASK_CANCELLED) && ev->task_cancelled) {
            ao_pb_set_str(&t->error, ev->task_cancelled->reason);
            t->error_class = AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_CANCELLED;
        }
        t->finished_unix_ms = ev->time_unix_ms;
        set_status(wf, (uint32_t)i, ev->type == ET(TASK_SKIPPED) ? TS(SKIPPED) : TS(CANCELLED));
        settle(wf, (uint32_t)i);
        break;

    case ET(TASK_RECOVERED):
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        t = pb->tasks[i];
        /* The lost attempt does not count against the retries. */
        if (t->attempts) t->attempts--;
        set_status(wf, (uint32_t)i, TS(READY));
        ao_idxlist_push(&wf->ready, (uint32_t)i);
        break;

    case ET(PLAN_EXPANDED): {
        if ((rc = need_task(wf, ev, named, &i, st))) return rc;
        const Agentos__V1__PlanExpanded *p = ev->plan_expanded;
        if (!p) break;
        size_t first = pb->n_tasks;
        for (size_t k = 0; k < p->n_tasks; k++) {
            Agentos__V1__TaskState **slot = ao_pb_push(&pb->tasks, &pb->n_tasks, sizeof *slot);
            *slot = AO_PB_CLONE(Agentos__V1__TaskState, p->tasks[k]);
            (*slot)->status = TS(PENDING);
            ao_pb_set_str(&(*slot)->parent_task_id, ev->task_id);
            if (!*(*slot)->agent) ao_pb_set_str(&(*slot)->agent, (*slot)->spec->agent);
        }
        for (size_t k = first; k < pb->n_tasks; k++)
            if ((rc = index_task(wf, (uint32_t)k, st))) return rc;
        for (size_t k = first; k < pb->n_tasks; k++) {
            if ((rc = link_task(wf, (uint32_t)k, 1, st))) return rc;
            if (wf->tasks[k].unmet == 0) ao_idxlist_push(&wf->ready, (uint32_t)k);
        }
        wf->dirty = 1;
        break;
    }

    case ET(FINDING_PUBLISHED):
        if (!ev->finding) break;
        if (*ev->task_id) {
            if ((rc = need_task(wf, ev, named, &i, st))) return rc;
            t = pb->tasks[i];
            push_finding(&t->findings, &t->n_findings, ev->finding, t->spec->id,
                         ao_task_authority(t));
        } else {
            push_finding(&pb->findings, &pb->n_findings, ev->finding, NULL, 1.0);
        }
        break;

    case ET(SYNC_POINT_REACHED):
        if (!ev->sync_point) break;
        clear_findings(&pb->findings, &pb->n_findings);
        for (size_t k = 0; k < ev->sync_point->n_findings; k++)
            push_finding(&pb->findings, &pb->n_findings, ev->sync_point->findings[k], NULL, 0);
        break;

    case ET(EARLY_TERMINATION):
        pb->early_terminated = 1;
        stop_with(pb, WS(SUCCESS),
                  ev->early_termination ? ev->early_termination->reason : "early termination");
        break;

    case ET(BUDGET_WARNING):
    case ET(BUDGET_EXCEEDED): {
        const Agentos__V1__BudgetEvent *b = ev->budget;
        if (!b) break;
        int exceeded = ev->type == ET(BUDGET_EXCEEDED);
        if (*b->task_id) {
            int32_t k = ao_wf_find(wf, b->task_id);
            if (k >= 0) {
                drop_packed(&wf->tasks[k]);
                Agentos__V1__TaskState *bt = pb->tasks[k];
                int have = 0;
                for (size_t j = 0; j < bt->n_warned; j++)
                    if ((int)bt->warned[j] == (int)b->dimension) have = 1;
                if (!have && !exceeded) {
                    Agentos__V1__BudgetDimension *slot =
                        ao_pb_push(&bt->warned, &bt->n_warned, sizeof *slot);
                    *slot = b->dimension;
                }
                if (exceeded) {
                    Agentos__V1__BudgetDimension *slot =
                        ao_pb_push(&bt->exceeded, &bt->n_exceeded, sizeof *slot);
                    *slot = b->dimension;
                }
            }
        } else {
            add_alert(pb, b->role, b->dimension, exceeded);
        }
        if (exceeded && (b->policy == AGENTOS__V1__BUDGET_POLICY__BUDGET_POLICY_HALT_WORKFLOW ||
                         b->policy == AGENTOS__V1__BUDGET_POLICY__BUDGET_POLICY_UNSPECIFIED)) {
            const ProtobufCEnumValue *dv =
                protobuf_c_enum_descriptor_get_value(&agentos__v1__budget_dimension__descriptor,
                                                     b->dimension);
            const char *dim = dv ? dv->name + strlen("BUDGET_DIMENSION_") : "?";
            char reason[300];
            const ProtobufCEnumValue *rv =
                b->role ? protobuf_c_enum_descriptor_get_value(&agentos__v1__role__descriptor, b->role) : NULL;
            char role[64] = "";
            if (rv) snprintf(role, sizeof role, " (%s role)", rv->name + strlen("ROLE_"));
            if (*b->task_id)
                snprintf(reason, sizeof reason, "budget of task %s exceeded: %s %.0f of %.0f", b->task_id,
                         dim, b->used, b->limit);
            else
                snprintf(reason, sizeof reason, "budget exceeded: %s%s %.0f of %.0f", dim, role, b->used,
                         b->limit);
            stop_with(pb, WS(BUDGET_EXCEEDED), reason);
        }
        break;
    }

    case ET(CHECKPOINT_SAVED):
        if (ev->checkpoint_saved) ao_pb_set_str(&pb->last_checkpoint_id, ev->checkpoint_saved->checkpoint_id);
        pb->events_since_checkpoint = 0;
        break;

    case ET(CANCEL_REQUESTED):
        stop_with(pb, WS(CANCELLED), ev->cancel_requested && *ev->cancel_requested->reason
                                         ? ev->cancel_requested->reason
                                         : "cancelled by request");
        wf->dirty = 1;
        break;

    case ET(WORKFLOW_RESUMED):
        if (!ev->resumed) break;
        if ((rc = apply_resumed(wf, ev, st))) return rc;
        break;

    case ET(WORKFLOW_COMPLETED):
        if (ev->workflow_completed && ev->workflow_completed->result) {
            ao_pb_free(pb->result);
            if (take) {
                pb->result = ev->workflow_completed->result;
                ev->workflow_completed->result = NULL;
            } else {
                pb->result = AO_PB_CLONE(Agentos__V1__WorkflowResult, ev->workflow_completed->result);
            }
            pb->status = pb->result->status;
        }
        pb->stopping = WS(UNSPECIFIED);
        pb->finished_unix_ms = ev->time_unix_ms;
        break;

    default:
        /* Progress, custom records, conflicts, stages, breakers, syntheses:
         * recorded in the log; no state of their own. */
        break;
    }
    pb->last_seq = ev->seq;
    pb->event_count++;
    if (ev->type != ET(CHECKPOINT_SAVED)) pb->events_since_checkpoint++;
    return 0;
}

int ao_wf_apply(ao_wf_t *wf, const Agentos__V1__Event *ev, ao_status_t *st)
{
    return apply_event(wf, (Agentos__V1__Event *)ev, 0, st);
}

int ao_wf_apply_taking(ao_wf_t *wf, Agentos__V1__Event *ev, ao_status_t *st)
{
    return apply_event(wf, ev, 1, st);
}
