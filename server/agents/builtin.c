/*
 * Builtin agents. See builtin.h.
 *
 * Threads: start runs on the submitting thread (a cheap start: see
 * agent.h); a call with latency completes on the timer thread; cancel runs
 * on the caller's thread under the dispatch lock. A call's `state` decides, once, who completes it.
 */
#include "builtin.h"

#include "mem.h"
#include "pbjson.h"
#include "pbutil.h"
#include "template.h"
#include "timer.h"
#include "util.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x

typedef struct builtin {
    ao_timers_t *timers;
} builtin_t;

enum { B_PENDING = 0, B_DONE = 1 };

/* A call in progress. Referenced by the call and, while its latency timer
 * is pending, by the timer: whoever wins `state` completes the call, and
 * the last reference frees it. */
typedef struct bcall {
    atomic_int state;
    atomic_int refs;
    uint64_t timer;
    ao_agent_call_t *call;
    ao_agent_outcome_t outcome;
} bcall_t;

static void bcall_unref(bcall_t *b)
{
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        ao_pb_free(b->outcome.result);
        free(b);
    }
}

static const char *param(const Agentos__V1__AgentTask *t, const char *name)
{
    for (size_t i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i]->key, name)) return t->params[i]->value;
    return NULL;
}

static double num_param(const Agentos__V1__AgentTask *t, const char *name, double dflt)
{
    const char *v = param(t, name);
    if (!v) return dflt;
    char *end;
    double x = strtod(v, &end);
    return *v && !*end ? x : dflt;
}

static int bool_param(const Agentos__V1__AgentTask *t, const char *name, int dflt)
{
    const char *v = param(t, name);
    if (!v) return dflt;
    return !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes");
}

typedef struct render_ctx {
    const Agentos__V1__AgentTask *task;
    const char *agent;
    char attempt[16];
} render_ctx_t;

static const char *lookup(void *ud, const char *key, ao_status_t *st)
{
    render_ctx_t *c = ud;
    if (!strcmp(key, "input")) return c->task->input;
    if (!strcmp(key, "task.id")) return c->task->task_id;
    if (!strcmp(key, "agent")) return c->agent;
    if (!strcmp(key, "attempt")) return c->attempt;
    if (!strcmp(key, "area")) return c->task->area;
    ao_status_set(st, AO_EINVAL, "builtin output: unknown placeholder {{%s}}", key);
    return NULL;
}

/* x with two decimals (a half rounds up) for the usual range of scores and
 * confidences; printf for the rest. */
static const char *two_decimals(double x, char buf[32])
{
    if (!(x >= 0 && x < 1e6)) {
        snprintf(buf, 32, "%.2f", x);
        return buf;
    }
    unsigned long c = (unsigned long)(x * 100 + 0.5);
    char *p = buf + 31;
    *p = 0;
    *--p = (char)('0' + c % 10);
    *--p = (char)('0' + c / 10 % 10);
    *--p = '.';
    c /= 100;
    do *--p = (char)('0' + c % 10);
    while (c /= 10);
    return p;
}

static void add_finding(Agentos__V1__AgentResult *r, const char *kv, size_t len, double conf)
{
    const char *eq = memchr(kv, '=', len);
    if (!eq || eq == kv) return;
    Agentos__V1__Finding **slot = ao_pb_push(&r->findings, &r->n_findings, sizeof *slot);
    *slot = ao_xmalloc(sizeof **slot);
    agentos__v1__finding__init(*slot);
    (*slot)->key = ao_xstrndup(kv, (size_t)(eq - kv));
    (*slot)->value = ao_xstrndup(eq + 1, len - (size_t)(eq + 1 - kv));
    (*slot)->confidence = conf;
}

/* Computes the reply (or failure) of one attempt, deterministically from
 * the config, the task's params and the attempt number. */
static void compute(const ao_agent_t *a, const Agentos__V1__AgentTask *t, ao_agent_outcome_t *o)
{
    const Agentos__V1__BuiltinAgent *cfg = a->cfg->builtin;
    memset(o, 0, sizeof *o);
    unsigned fail_first = (unsigned)num_param(t, "fail_first", cfg ? cfg->fail_first : 0);
    int fail_always = bool_param(t, "fail_always", cfg ? cfg->fail_always : 0);
    int fail_retryable = bool_param(t, "fail_retryable", cfg ? cfg->fail_retryable : 0);
    if (t->attempt <= fail_first) {
        o->error_class = EC(AGENT_ERROR);
        o->retryable = 1;
        snprintf(o->error, sizeof o->error, "%s failed attempt %u of task %s (fail_first=%u)",
                 a->cfg->name, t->attempt, t->task_id, fail_first);
        return;
    }
    if (fail_always) {
        o->error_class = EC(AGENT_ERROR);
        o->retryable = fail_retryable;
        snprintf(o->error, sizeof o->error, "%s always fails (fail_always)", a->cfg->name);
        return;
    }
    Agentos__V1__AgentResult *r = ao_xmalloc(sizeof *r);
    agentos__v1__agent_result__init(r);
    const char *tpl = param(t, "output");
    if (!tpl) tpl = cfg && *cfg->output ? cfg->output : NULL;
    if (tpl) {
        render_ctx_t c = {t, a->cfg->name, {0}};
        snprintf(c.attempt, sizeof c.attempt, "%u", t->attempt);
        ao_status_t st;
        char *out = ao_template_render(tpl, lookup, &c, 1 << 20, &st);
        if (!out) {
            ao_pb_free(r);
            o->error_class = EC(AGENT_ERROR);
            snprintf(o->error, sizeof o->error, "%s", st.msg);
            return;
        }
        ao_pb_set_str(&r->output, out);
        free(out);
    } else {
        /* Without printf: it was a tenth of a no-op task. */
        ao_sb_t out = {0};
        ao_sb_puts(&out, a->cfg->name);
        ao_sb_puts(&out, " processed ");
        ao_sb_puts(&out, t->task_id);
        r->output = ao_sb_take(&out);
    }
    r->score = num_param(t, "score", cfg ? cfg->score : 0);
    /* Per-area scores for refinement stages: "area=score,area=score". */
    const char *by_area = param(t, "score_by_area");
    if (by_area && *t->area) {
        size_t al = strlen(t->area);
        for (const char *p = by_area; p && *p;) {
            if (!strncmp(p, t->area, al) && p[al] == '=') r->score = strtod(p + al + 1, NULL);
            p = strchr(p, ',');
            if (p) p++;
        }
    }
    double dconf = cfg && cfg->confidence > 0 ? cfg->confidence : 0.9;
    r->confidence = num_param(t, "confidence", dconf);
    r->usage = ao_xmalloc(sizeof *r->usage);
    agentos__v1__usage__init(r->usage);
    r->usage->prompt_tokens = (uint64_t)num_param(t, "prompt_tokens", cfg ? (double)cfg->prompt_tokens : 0);
    r->usage->completion_tokens =
        (uint64_t)num_param(t, "completion_tokens", cfg ? (double)cfg->completion_tokens : 0);
    r->usage->total_tokens = r->usage->prompt_tokens + r->usage->completion_tokens;
    r->usage->documents = (uint64_t)num_param(t, "documents", cfg ? (double)cfg->documents : 0);
    const char *fs = param(t, "findings");
    if (fs) {
        const char *p = fs;
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            add_finding(r, p, len, r->confidence);
            p += len + (comma ? 1 : 0);
        }
    } else if (cfg) {
        for (size_t i = 0; i < cfg->n_findings; i++)
            add_finding(r, cfg->findings[i], strlen(cfg->findings[i]), r->confidence);
    }
    if (t->kind == AGENTOS__V1__TASK_KIND__TASK_KIND_PLANNER) {
        const char *pj = param(t, "plan");
        if (pj) {
            ProtobufCMessage *plan = NULL;
            ao_status_t st;
            if (ao_pbjson_decode_text(&agentos__v1__plan__descriptor, pj, strlen(pj), &plan, &st)) {
                ao_pb_free(r);
                o->error_class = EC(INVALID_RESPONSE);
                snprintf(o->error, sizeof o->error, "builtin plan param: %.400s", st.msg);
                return;
            }
            r->plan = (Agentos__V1__Plan *)plan;
        } else if (cfg && cfg->plan) {
            r->plan = AO_PB_CLONE(Agentos__V1__Plan, cfg->plan);
        }
    }
    char sb[32], cb[32];
    char **dec = ao_pb_push(&r->decisions, &r->n_decisions, sizeof *dec);
    ao_sb_t line = {0};
    ao_sb_puts(&line, a->cfg->name);
    ao_sb_puts(&line, ": score ");
    ao_sb_puts(&line, two_decimals(r->score, sb));
    ao_sb_puts(&line, " with confidence ");
    ao_sb_puts(&line, two_decimals(r->confidence, cb));
    *dec = ao_sb_take(&line);
    o->result = r;
}

/* Completes the call (the caller won `state`): the outcome's result passes
 * to done. */
static void finish(ao_agent_call_t *call, bcall_t *b)
{
    ao_agent_outcome_t o = b->outcome;
    b->outcome.result = NULL;
    call->backend_data = NULL;
    call->done(call, &o);
}

static void on_latency(void *ud)
{
    bcall_t *b = ud;
    ao_agent_call_t *call = b->call;
    int expect = B_PENDING;
    if (atomic_compare_exchange_strong(&b->state, &expect, B_DONE)) {
        finish(call, b);
        bcall_unref(b); /* the call's */
    }
    bcall_unref(b); /* the timer's */
}

static void builtin_start(ao_agent_t *a, ao_agent_call_t *call)
{
    builtin_t *self = a->impl;
    const Agentos__V1__AgentTask *t = call->task;
    const Agentos__V1__BuiltinAgent *cfg = a->cfg->builtin;
    bcall_t *b = ao_xcalloc(1, sizeof *b);
    atomic_init(&b->state, B_PENDING);
    atomic_init(&b->refs, 1);
    compute(a, t, &b->outcome);
    call->backend_data = b;
    if (bool_param(t, "hang", cfg ? cfg->hang : 0)) return; /* until cancelled */
    unsigned latency = (unsigned)num_param(t, "latency_ms", cfg ? cfg->latency_ms : 0);
    if (latency) {
        b->call = call;
        atomic_fetch_add(&b->refs, 1);
        /* The dispatch lock is held across start, and done takes it: the
         * timer cannot complete the call before b->timer is set. */
        b->timer = ao_timer_add(self->timers, latency, on_latency, b);
        return;
    }
    atomic_store(&b->state, B_DONE);
    finish(call, b);
    bcall_unref(b);
}

static void builtin_cancel(ao_agent_t *a, ao_agent_call_t *call)
{
    builtin_t *self = a->impl;
    bcall_t *b = call->backend_data;
    if (!b) return;
    int expect = B_PENDING;
    if (!atomic_compare_exchange_strong(&b->state, &expect, B_DONE)) return;
    if (b->timer && ao_timer_cancel(self->timers, b->timer, NULL)) {
        /* The timer will not run: drop its reference. */
        bcall_unref(b);
    }
    ao_pb_free(b->outcome.result);
    memset(&b->outcome, 0, sizeof b->outcome);
    b->outcome.error_class = EC(CANCELLED);
    snprintf(b->outcome.error, sizeof b->outcome.error, "cancelled");
    finish(call, b);
    bcall_unref(b);
}

static void builtin_destroy(ao_agent_t *a)
{
    free(a->impl);
    free(a);
}

/* Every builtin call: its reply is computed in process, and a latency or a
 * hang is a timer or nothing. */
static int builtin_cheap_start(const ao_agent_t *a, const ao_agent_call_t *call)
{
    (void)a;
    (void)call;
    return 1;
}

static const ao_agent_ops_t builtin_ops = {builtin_start, builtin_cancel, builtin_destroy,
                                           builtin_cheap_start};

int ao_builtin_agent_create(const Agentos__V1__AgentBackend *cfg, struct ao_timers *timers,
                            ao_agent_t **out, ao_status_t *st)
{
    (void)st;
    ao_agent_t *a = ao_xcalloc(1, sizeof *a);
    builtin_t *self = ao_xcalloc(1, sizeof *self);
    self->timers = timers;
    a->ops = &builtin_ops;
    a->cfg = cfg;
    a->impl = self;
    *out = a;
    return 0;
}
