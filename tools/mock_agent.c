/*
 * mock_agent: a TLS agent server for tests and the `make run` demo. It is a
 * test peer, not a stand-in: agentosd's real backends talk to it over real
 * TLS. It speaks the three agent protocols:
 *
 *   POST /agent                 the https backend's JSON protocol
 *                               (AgentTask in, AgentResult out)
 *   POST /v1/chat/completions   OpenAI-compatible chat completions
 *   agentos.v1.Agent/Execute    gRPC (on --grpc-port)
 *   GET  /stats                 calls per path and per idempotency key, and
 *                               the SHA-256 of the bearer tokens seen
 *
 * Behaviour (flags set defaults; AgentTask.params "mock.NAME", or a
 * "[mock NAME=VALUE ...]" directive in an OpenAI user message, override per
 * call): latency_ms, fail_rate, fail_first (per task: the first N calls of a
 * task id fail with 503), status (answer with this HTTP status), retry_after
 * (seconds, with status 429), drip_ms (send the reply a byte at a time,
 * this many ms apart), hang (never answer), barrier (HTTPS: hold the request
 * until this many barrier requests are held at once, then answer them all
 * after latency_ms; how a benchmark gets N connections open at once),
 * prompt_tokens, completion_tokens, score, confidence, content (openai:
 * "json" or "text"), output_bytes (an output of this many bytes, for
 * limits). On POST /agent, the param "mock.body" is sent back verbatim as
 * the reply's body, with 200; on Execute, "mock.result_hex" is the reply
 * (a packed AgentResult, as hex).
 *
 * One thread runs an epoll loop over non-blocking TLS connections (HTTP/1.1
 * keep-alive), with a timer heap for latencies: 10,000 requests in flight
 * cost a connection each, not a thread.
 */
#include "agentos/v1/agent.pb-c.h"
#include "log.h"
#include "mem.h"
#include "pbjson.h"
#include "pbutil.h"
#include "rpc.h"
#include "timer.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grpc/grpc_security.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- settings ------------------------------------------------------------------------ */

typedef struct behaviour {
    double latency_ms, fail_rate, fail_first, status, retry_after, drip_ms, hang;
    double prompt_tokens, completion_tokens, score, confidence;
    int text_content;
    double barrier;
    double output_bytes;
} behaviour_t;

static behaviour_t defaults = {0, 0, 0, 0, 1, 0, 0, 20, 10, 0.5, 0.8, 0, 0, 0};
static int quiet;

static void set_behaviour(behaviour_t *b, const char *name, const char *value)
{
    double v = strtod(value, NULL);
    if (!strcmp(name, "latency_ms")) b->latency_ms = v;
    else if (!strcmp(name, "fail_rate")) b->fail_rate = v;
    else if (!strcmp(name, "fail_first")) b->fail_first = v;
    else if (!strcmp(name, "status")) b->status = v;
    else if (!strcmp(name, "retry_after")) b->retry_after = v;
    else if (!strcmp(name, "drip_ms")) b->drip_ms = v;
    else if (!strcmp(name, "hang")) b->hang = !strcmp(value, "true") || v > 0;
    else if (!strcmp(name, "prompt_tokens")) b->prompt_tokens = v;
    else if (!strcmp(name, "completion_tokens")) b->completion_tokens = v;
    else if (!strcmp(name, "score")) b->score = v;
    else if (!strcmp(name, "confidence")) b->confidence = v;
    else if (!strcmp(name, "content")) b->text_content = !strcmp(value, "text");
    else if (!strcmp(name, "barrier")) b->barrier = v;
    else if (!strcmp(name, "output_bytes")) b->output_bytes = v;
}

/* ---- stats ---------------------------------------------------------------------------- */

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *stats;     /* {"calls":N, "paths":{}, "idempotency_keys":{}, "bearer_sha256":{},
                             *  "openai_temperatures":{}} */
static json_t *per_task;  /* task id -> calls so far (fail_first) */

static void count(const char *path, const char *idem, const char *bearer)
{
    pthread_mutex_lock(&stats_lock);
    json_object_set_new(stats, "calls", json_integer(json_integer_value(json_object_get(stats, "calls")) + 1));
    json_t *paths = json_object_get(stats, "paths");
    json_object_set_new(paths, path, json_integer(json_integer_value(json_object_get(paths, path)) + 1));
    if (idem && *idem) {
        json_t *keys = json_object_get(stats, "idempotency_keys");
        json_object_set_new(keys, idem, json_integer(json_integer_value(json_object_get(keys, idem)) + 1));
    }
    if (bearer && *bearer) {
        char h[65];
        ao_sha256_hex(bearer, strlen(bearer), h);
        json_t *b = json_object_get(stats, "bearer_sha256");
        json_object_set_new(b, h, json_integer(json_integer_value(json_object_get(b, h)) + 1));
    }
    pthread_mutex_unlock(&stats_lock);
}

/* Counts one more `key` under stats[name]. */
static void tally(const char *name, const char *key)
{
    pthread_mutex_lock(&stats_lock);
    json_t *o = json_object_get(stats, name);
    json_object_set_new(o, key, json_integer(json_integer_value(json_object_get(o, key)) + 1));
    pthread_mutex_unlock(&stats_lock);
}

/* Which call of this task this is (1-based). */
static long task_call(const char *task)
{
    pthread_mutex_lock(&stats_lock);
    long n = (long)json_integer_value(json_object_get(per_task, task)) + 1;
    json_object_set_new(per_task, task, json_integer(n));
    pthread_mutex_unlock(&stats_lock);
    return n;
}

/* Decides the fate of a call: 0 success, else an HTTP status to fail with. */
static int fate(const behaviour_t *b, const char *task)
{
    if (b->status >= 400) return (int)b->status;
    long n = task_call(task && *task ? task : "-");
    if (n <= (long)b->fail_first) return 503;
    if (b->fail_rate > 0 && (double)rand() / RAND_MAX < b->fail_rate) return 503;
    return 0;
}

static Agentos__V1__AgentResult *make_result(const behaviour_t *b, const char *task_id, const char *input)
{
    Agentos__V1__AgentResult *r = ao_xmalloc(sizeof *r);
    agentos__v1__agent_result__init(r);
    char *out = ao_xasprintf("mock analysis of %s (%zu bytes of input)", task_id, strlen(input));
    if (b->output_bytes > 0) {
        /* A reply of this size (for limits), the text repeated. */
        size_t n = (size_t)b->output_bytes, len = strlen(out);
        char *big = ao_xmalloc(n + 1);
        for (size_t k = 0; k < n; k++) big[k] = out[k % len];
        big[n] = 0;
        free(out);
        out = big;
    }
    ao_pb_set_str(&r->output, out);
    free(out);
    r->score = b->score;
    r->confidence = b->confidence;
    r->usage = ao_xmalloc(sizeof *r->usage);
    agentos__v1__usage__init(r->usage);
    r->usage->prompt_tokens = (uint64_t)b->prompt_tokens;
    r->usage->completion_tokens = (uint64_t)b->completion_tokens;
    r->usage->total_tokens = r->usage->prompt_tokens + r->usage->completion_tokens;
    Agentos__V1__Finding **f = ao_pb_push(&r->findings, &r->n_findings, sizeof *f);
    *f = ao_xmalloc(sizeof **f);
    agentos__v1__finding__init(*f);
    ao_pb_set_str(&(*f)->key, "reviewed_by_mock");
    ao_pb_set_str(&(*f)->value, task_id);
    (*f)->confidence = b->confidence;
    return r;
}

/* ---- HTTPS ------------------------------------------------------------------------------ */

enum { C_HANDSHAKE, C_READ, C_WAIT, C_WRITE };

typedef struct conn {
    int fd;
    SSL *ssl;
    int state;
    ao_sb_t in;
    char *out;
    size_t out_len, out_off;
    int64_t due_us;     /* C_WAIT: when to start writing */
    double drip_ms;     /* write a byte at a time, this far apart */
    int64_t next_drip_us;
    int hang;
    int64_t latency_us; /* at a barrier: how long to wait once it opens */
    size_t heap_pos, barrier_pos;
    int in_heap, at_barrier;
    struct conn *prev, *next; /* every open connection, to close them at exit */
} conn_t;

static int epfd;
static SSL_CTX *ctx;
static conn_t *conns;
static int stop_pipe[2];
static conn_t **heap;
static size_t heap_n, heap_cap;
static conn_t **barrier; /* requests held at the barrier */
static size_t barrier_n, barrier_cap;

static int64_t conn_due(const conn_t *c)
{
    return c->state == C_WAIT ? c->due_us : c->next_drip_us;
}

static void heap_swap(size_t a, size_t b)
{
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_pos = a;
    heap[b]->heap_pos = b;
}

static void heap_up(size_t i)
{
    while (i && conn_due(heap[i]) < conn_due(heap[(i - 1) / 2])) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && conn_due(heap[l]) < conn_due(heap[m])) m = l;
        if (r < heap_n && conn_due(heap[r]) < conn_due(heap[m])) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_add(conn_t *c)
{
    if (heap_n == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = ao_xrealloc(heap, heap_cap * sizeof *heap);
    }
    heap[heap_n] = c;
    c->heap_pos = heap_n++;
    c->in_heap = 1;
    heap_up(c->heap_pos);
}

static void heap_del(conn_t *c)
{
    if (!c->in_heap) return;
    size_t i = c->heap_pos;
    heap_swap(i, --heap_n);
    c->in_heap = 0;
    if (i < heap_n) {
        heap_down(i);
        heap_up(i);
    }
}

static void barrier_del(conn_t *c)
{
    if (!c->at_barrier) return;
    barrier[c->barrier_pos] = barrier[--barrier_n];
    barrier[c->barrier_pos]->barrier_pos = c->barrier_pos;
    c->at_barrier = 0;
}

/* Holds c until `size` requests are held; then all of them go on to wait
 * their latency. */
static void barrier_add(conn_t *c, size_t size)
{
    if (barrier_n == barrier_cap) {
        barrier_cap = barrier_cap ? barrier_cap * 2 : 1024;
        barrier = ao_xrealloc(barrier, barrier_cap * sizeof *barrier);
    }
    barrier[barrier_n] = c;
    c->barrier_pos = barrier_n++;
    c->at_barrier = 1;
    if (barrier_n < size) return;
    int64_t now = ao_mono_us();
    while (barrier_n) {
        conn_t *h = barrier[0];
        barrier_del(h);
        h->due_us = now + h->latency_us;
        heap_add(h);
    }
}

static void conn_close(conn_t *c)
{
    if (c->prev) c->prev->next = c->next;
    else conns = c->next;
    if (c->next) c->next->prev = c->prev;
    heap_del(c);
    barrier_del(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    SSL_free(c->ssl);
    close(c->fd);
    ao_sb_free(&c->in);
    free(c->out);
    free(c);
}

static void want(conn_t *c, uint32_t events)
{
    struct epoll_event ev = {events, {.ptr = c}};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static const char *header(const char *head, const char *name, char *buf, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ') v++;
            size_t n = strcspn(v, "\r\n");
            if (n >= cap) n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return buf;
        }
    }
    return NULL;
}

static void respond(conn_t *c, int status, const char *reason, const char *extra, const char *body,
                    const behaviour_t *b)
{
    size_t bl = strlen(body);
    c->out = ao_xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                          status, reason, bl, extra ? extra : "", body);
    c->out_len = strlen(c->out);
    c->out_off = 0;
    c->hang = b && b->hang;
    c->drip_ms = b ? b->drip_ms : 0;
    c->state = C_WAIT;
    c->latency_us = (int64_t)((b ? b->latency_ms : 0) * 1000);
    c->due_us = ao_mono_us() + c->latency_us;
    want(c, 0);
    if (c->hang) return;
    if (b && b->barrier >= 1) barrier_add(c, (size_t)b->barrier);
    else heap_add(c);
}

static void parse_directives(behaviour_t *b, const char *text)
{
    const char *p = strstr(text, "[mock ");
    if (!p) return;
    p += 6;
    while (*p && *p != ']') {
        char name[64], value[64];
        int n = 0;
        if (sscanf(p, "%63[a-z_]=%63[^] ]%n", name, value, &n) != 2) break;
        set_behaviour(b, name, value);
        p += n;
        while (*p == ' ') p++;
    }
}

static void handle_agent(conn_t *c, const char *body, size_t len, const char *idem, const char *bearer)
{
    count("/agent", idem, bearer);
    ProtobufCMessage *m = NULL;
    ao_status_t st;
    if (ao_pbjson_decode_text_ex(&agentos__v1__agent_task__descriptor, body, len, AO_PBJSON_IGNORE_UNKNOWN, &m, &st)) {
        json_t *e = json_pack("{s:s}", "error", st.msg);
        char *t = json_dumps(e, JSON_COMPACT);
        respond(c, 400, "Bad Request", NULL, t, NULL);
        free(t);
        json_decref(e);
        return;
    }
    Agentos__V1__AgentTask *t = (Agentos__V1__AgentTask *)m;
    behaviour_t b = defaults;
    for (size_t i = 0; i < t->n_params; i++)
        if (!strncmp(t->params[i]->key, "mock.", 5)) set_behaviour(&b, t->params[i]->key + 5, t->params[i]->value);
    /* mock.body: this reply body, verbatim, with 200 (replies that are not
     * what the protocol says, for tests of their checks). */
    const char *raw = NULL;
    for (size_t i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i]->key, "mock.body")) raw = t->params[i]->value;
    int f = raw ? 0 : fate(&b, t->task_id);
    if (raw) {
        respond(c, 200, "OK", NULL, raw, &b);
    } else if (f == 429) {
        char extra[64];
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", (int)b.retry_after);
        respond(c, 429, "Too Many Requests", extra, "{\"error\":\"slow down\"}", &b);
    } else if (f) {
        respond(c, f, f >= 500 ? "Service Unavailable" : "Bad Request", NULL, "{\"error\":\"mock failure\"}", &b);
    } else {
        Agentos__V1__AgentResult *r = make_result(&b, t->task_id, t->input);
        char *json = ao_pbjson_encode(&r->base, 0);
        respond(c, 200, "OK", NULL, json, &b);
        free(json);
        ao_pb_free(r);
    }
    ao_pb_free(t);
}

static void handle_openai(conn_t *c, const char *body, size_t len, const char *idem, const char *bearer)
{
    count("/v1/chat/completions", idem, bearer);
    json_t *req = json_loadb(body, len, 0, NULL);
    json_t *msgs = json_object_get(req, "messages");
    const char *user = "";
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) if (!strcmp(json_string_value(json_object_get(m, "role")) ?: "", "user"))
        user = json_string_value(json_object_get(m, "content")) ?: "";
    behaviour_t b = defaults;
    parse_directives(&b, user);
    /* What temperature requests carried ("absent" when none), for tests. */
    json_t *temp = json_object_get(req, "temperature");
    char tk[32] = "absent";
    if (json_is_number(temp)) snprintf(tk, sizeof tk, "%g", json_number_value(temp));
    tally("openai_temperatures", tk);
    const char *task = json_string_value(json_object_get(req, "user"));
    char task_id[256] = "-";
    if (task) {
        /* The attempt id "WF/TASK/N-nonce": the task is the middle part. */
        const char *s1 = strchr(task, '/'), *s2 = s1 ? strrchr(task, '/') : NULL;
        if (s1 && s2 > s1) snprintf(task_id, sizeof task_id, "%.*s", (int)(s2 - s1 - 1), s1 + 1);
    }
    int f = req ? fate(&b, task_id) : 400;
    if (f == 429) {
        char extra[64];
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", (int)b.retry_after);
        respond(c, 429, "Too Many Requests", extra, "{\"error\":{\"message\":\"rate limited\"}}", &b);
    } else if (f) {
        respond(c, f, f >= 500 ? "Service Unavailable" : "Bad Request", NULL,
                "{\"error\":{\"message\":\"mock failure\"}}", &b);
    } else {
        char *content;
        if (b.text_content)
            content = ao_xasprintf("I think the answer is probably fine, but I am not sure.");
        else
            content = ao_xasprintf("```json\n{\"output\": \"mock model analysis of %s\", \"score\": %g, "
                                   "\"confidence\": %g, \"findings\": [{\"key\": \"model_note\", \"value\": "
                                   "\"%s\", \"confidence\": %g}]}\n```",
                                   task_id, b.score, b.confidence, task_id, b.confidence);
        json_t *resp = json_pack("{s:s,s:s,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:{s:i,s:i,s:i}}", "id", "chatcmpl-mock",
                                 "object", "chat.completion", "model",
                                 json_string_value(json_object_get(req, "model")) ?: "mock", "choices", "index", 0,
                                 "message", "role", "assistant", "content", content, "finish_reason", "stop",
                                 "usage", "prompt_tokens", (int)b.prompt_tokens, "completion_tokens",
                                 (int)b.completion_tokens, "total_tokens",
                                 (int)(b.prompt_tokens + b.completion_tokens));
        char *text = json_dumps(resp, JSON_COMPACT);
        respond(c, 200, "OK", NULL, text, &b);
        free(text);
        json_decref(resp);
        free(content);
    }
    json_decref(req);
}

static void handle_stats(conn_t *c)
{
    pthread_mutex_lock(&stats_lock);
    char *text = json_dumps(stats, JSON_COMPACT);
    pthread_mutex_unlock(&stats_lock);
    respond(c, 200, "OK", NULL, text, NULL);
    free(text);
}

/* A whole request is in c->in? Handle it. */
static void try_request(conn_t *c)
{
    char *head_end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL;
    if (!head_end) {
        if (c->in.len > 65536) conn_close(c);
        return;
    }
    size_t head_len = (size_t)(head_end - c->in.data) + 4;
    char buf[512];
    size_t clen = 0;
    if (header(c->in.data, "Content-Length", buf, sizeof buf)) clen = strtoul(buf, NULL, 10);
    if (c->in.len < head_len + clen) return;
    char idem[256] = "", bearer[512] = "";
    header(c->in.data, "Idempotency-Key", idem, sizeof idem);
    if (header(c->in.data, "Authorization", bearer, sizeof bearer) && !strncmp(bearer, "Bearer ", 7))
        memmove(bearer, bearer + 7, strlen(bearer + 7) + 1);
    else
        bearer[0] = '\0';
    const char *body = c->in.data + head_len;
    if (!strncmp(c->in.data, "POST /agent ", 12)) handle_agent(c, body, clen, idem, bearer);
    else if (!strncmp(c->in.data, "POST /v1/chat/completions ", 26)) handle_openai(c, body, clen, idem, bearer);
    else if (!strncmp(c->in.data, "GET /stats ", 11)) handle_stats(c);
    else respond(c, 404, "Not Found", NULL, "{\"error\":\"no such path\"}", NULL);
    /* Keep what follows (pipelining is not expected; drop it). */
    c->in.len = 0;
}

static void do_write(conn_t *c)
{
    for (;;) {
        size_t n = c->out_len - c->out_off;
        if (n == 0) {
            free(c->out);
            c->out = NULL;
            c->state = C_READ;
            want(c, EPOLLIN);
            return;
        }
        if (c->drip_ms > 0) n = 1;
        /* SSL_get_error reads the thread's error queue: start it empty. */
        ERR_clear_error();
        int w = SSL_write(c->ssl, c->out + c->out_off, (int)n);
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE) {
                want(c, EPOLLOUT);
                return;
            }
            conn_close(c);
            return;
        }
        c->out_off += (size_t)w;
        if (c->drip_ms > 0 && c->out_off < c->out_len) {
            c->next_drip_us = ao_mono_us() + (int64_t)(c->drip_ms * 1000);
            want(c, 0);
            heap_add(c);
            return;
        }
    }
}

static void on_io(conn_t *c)
{
    ERR_clear_error();
    if (c->state == C_HANDSHAKE) {
        int r = SSL_accept(c->ssl);
        if (r == 1) {
            c->state = C_READ;
        } else {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) want(c, EPOLLIN);
            else if (e == SSL_ERROR_WANT_WRITE) want(c, EPOLLOUT);
            else {
                if (!quiet) {
                    char err[256];
                    ERR_error_string_n(ERR_get_error(), err, sizeof err);
                    fprintf(stderr, "mock_agent: TLS handshake refused: %s\n", err);
                }
                ERR_clear_error();
                conn_close(c);
            }
            return;
        }
    }
    if (c->state == C_READ) {
        char buf[16384];
        for (;;) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, buf, sizeof buf);
            if (n > 0) {
                ao_sb_append(&c->in, buf, (size_t)n);
                continue;
            }
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ) break;
            conn_close(c);
            return;
        }
        try_request(c);
        return;
    }
    if (c->state == C_WRITE) do_write(c);
}

static void on_timers(void)
{
    int64_t now = ao_mono_us();
    while (heap_n && conn_due(heap[0]) <= now) {
        conn_t *c = heap[0];
        heap_del(c);
        c->state = C_WRITE;
        do_write(c);
    }
}

static int listen_on(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096)) {
        fprintf(stderr, "mock_agent: cannot listen on port %d: %s\n", port, strerror(errno));
        exit(2);
    }
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *bound = ntohs(a.sin_port);
    return fd;
}

static void *https_main(void *arg)
{
    int lfd = *(int *)arg;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {EPOLLIN, {.ptr = NULL}};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event sev = {EPOLLIN, {.ptr = &stop_pipe}};
    epoll_ctl(epfd, EPOLL_CTL_ADD, stop_pipe[0], &sev);
    struct epoll_event evs[256];
    for (;;) {
        int timeout = -1;
        if (heap_n) {
            int64_t d = conn_due(heap[0]) - ao_mono_us();
            timeout = d <= 0 ? 0 : (int)(d / 1000) + 1;
        }
        int n = epoll_wait(epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &stop_pipe) {
                while (conns) conn_close(conns);
                free(heap);
                free(barrier);
                close(epfd);
                close(lfd);
                return NULL;
            }
            if (!evs[i].data.ptr) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = ao_xcalloc(1, sizeof *c);
                    c->fd = fd;
                    c->ssl = SSL_new(ctx);
                    SSL_set_fd(c->ssl, fd);
                    c->state = C_HANDSHAKE;
                    c->next = conns;
                    if (conns) conns->prev = c;
                    conns = c;
                    struct epoll_event ev = {EPOLLIN, {.ptr = c}};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
                    on_io(c);
                }
                continue;
            }
            on_io(evs[i].data.ptr);
        }
        on_timers();
    }
    return NULL;
}

/* ---- gRPC ------------------------------------------------------------------------------ */

static ao_timers_t *timers;

typedef struct grpc_reply {
    ao_rpc_call_t *call;
    Agentos__V1__AgentResult *result;
    int fail;
} grpc_reply_t;

static void grpc_send(void *ud)
{
    grpc_reply_t *r = ud;
    if (r->fail) ao_rpc_fail(r->call, AO_EUNAVAIL, "mock failure");
    else ao_rpc_reply(r->call, &r->result->base);
    ao_pb_free(r->result);
    free(r);
}

static void grpc_hung_up(ao_rpc_call_t *call, void *ud)
{
    (void)ud;
    ao_rpc_fail(call, AO_ECANCELLED, "the client went away");
}

static void grpc_execute(ao_rpc_call_t *call, const ProtobufCMessage *m, void *ud)
{
    (void)ud;
    const Agentos__V1__AgentTask *t = (const void *)m;
    count("grpc:/agentos.v1.Agent/Execute", t->attempt_id, NULL);
    behaviour_t b = defaults;
    for (size_t i = 0; i < t->n_params; i++)
        if (!strncmp(t->params[i]->key, "mock.", 5)) set_behaviour(&b, t->params[i]->key + 5, t->params[i]->value);
    if (b.hang) {
        /* Never answer: the call ends at its deadline or cancellation. */
        ao_rpc_call_on_cancel(call, grpc_hung_up, NULL);
        return;
    }
    grpc_reply_t *r = ao_xcalloc(1, sizeof *r);
    r->call = call;
    /* mock.result_hex: this AgentResult, packed, as hex. protobuf-c takes
     * any bytes as a string, so a test can send what other languages'
     * protobuf would refuse to make (invalid UTF-8). */
    const char *hex = NULL;
    for (size_t i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i]->key, "mock.result_hex")) hex = t->params[i]->value;
    if (hex) {
        size_t n = strlen(hex) / 2;
        uint8_t *bytes = ao_xmalloc(n ? n : 1);
        for (size_t k = 0; k < n; k++) {
            unsigned v = 0;
            sscanf(hex + 2 * k, "%2x", &v);
            bytes[k] = (uint8_t)v;
        }
        r->result = agentos__v1__agent_result__unpack(NULL, n, bytes);
        free(bytes);
        r->fail = r->result == NULL;
    } else {
        r->fail = fate(&b, t->task_id) != 0;
        if (!r->fail) r->result = make_result(&b, t->task_id, t->input);
    }
    ao_timer_add(timers, (uint64_t)b.latency_ms, grpc_send, r);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mock_agent: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    ao_sb_t sb = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) ao_sb_append(&sb, buf, n);
    fclose(f);
    return ao_sb_take(&sb);
}

/* ---- main --------------------------------------------------------------------------------- */

static const char usage[] =
    "usage: mock_agent --cert FILE --key FILE [--https-port N] [--grpc-port N] [--client-ca FILE]\n"
    "                  [--require-client-cert] [--port-file FILE] [--quiet]\n"
    "                  [--latency-ms N] [--fail-rate F] [--fail-first N] [--status N] [--retry-after S]\n"
    "                  [--drip-ms N] [--hang] [--prompt-tokens N] [--completion-tokens N]\n"
    "                  [--score X] [--confidence X] [--content json|text]\n";

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *client_ca = NULL, *port_file = NULL;
    int https_port = -1, grpc_port = -1, require_cert = 0;
    static const struct option opts[] = {
        {"cert", 1, 0, 'c'},         {"key", 1, 0, 'k'},          {"client-ca", 1, 0, 'a'},
        {"require-client-cert", 0, 0, 'r'}, {"https-port", 1, 0, 'h'}, {"grpc-port", 1, 0, 'g'},
        {"port-file", 1, 0, 'p'},    {"quiet", 0, 0, 'q'},        {"latency-ms", 1, 0, 1},
        {"fail-rate", 1, 0, 2},      {"fail-first", 1, 0, 3},     {"status", 1, 0, 4},
        {"retry-after", 1, 0, 5},    {"drip-ms", 1, 0, 6},        {"hang", 0, 0, 7},
        {"prompt-tokens", 1, 0, 8},  {"completion-tokens", 1, 0, 9}, {"score", 1, 0, 10},
        {"confidence", 1, 0, 11},    {"content", 1, 0, 12},       {"help", 0, 0, '?'},
        {0, 0, 0, 0}};
    static const char *names[] = {NULL, "latency_ms", "fail_rate", "fail_first", "status", "retry_after",
                                  "drip_ms", "hang", "prompt_tokens", "completion_tokens", "score",
                                  "confidence", "content"};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'a': client_ca = optarg; break;
        case 'r': require_cert = 1; break;
        case 'h': https_port = atoi(optarg); break;
        case 'g': grpc_port = atoi(optarg); break;
        case 'p': port_file = optarg; break;
        case 'q': quiet = 1; break;
        case '?': fputs(usage, stderr); return 2;
        default: set_behaviour(&defaults, names[o], o == 7 ? "true" : optarg); break;
        }
    }
    if (!cert || !key || (https_port < 0 && grpc_port < 0)) {
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setenv("GRPC_DNS_RESOLVER", "native", 0);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ao_log_configure(quiet ? "warn" : "info", "text");
    stats = json_pack("{s:i,s:{},s:{},s:{},s:{}}", "calls", 0, "paths", "idempotency_keys", "bearer_sha256",
                      "openai_temperatures");
    per_task = json_object();

    int https_bound = 0, grpc_bound = 0, lfd = -1;
    pthread_t https_thread;
    if (https_port >= 0) {
        ctx = SSL_CTX_new(TLS_server_method());
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "mock_agent: cannot load %s / %s\n", cert, key);
            return 2;
        }
        if (client_ca) {
            SSL_CTX_load_verify_locations(ctx, client_ca, NULL);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (require_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
        }
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        lfd = listen_on(https_port, &https_bound);
        if (pipe(stop_pipe)) return 2;
        if (pthread_create(&https_thread, NULL, https_main, &lfd)) return 2;
    }
    ao_rpc_server_t *srv = NULL;
    if (grpc_port >= 0) {
        timers = ao_timers_create();
        char *pem_cert = slurp(cert), *pem_key = slurp(key), *pem_ca = client_ca ? slurp(client_ca) : NULL;
        grpc_ssl_pem_key_cert_pair pair = {pem_key, pem_cert};
        grpc_init();
        grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
            pem_ca, &pair, 1,
            !pem_ca ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : require_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                           : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY,
            NULL);
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", grpc_port);
        const char *listen[] = {addr};
        /* Sends replies past a client's 4 MiB limit when output_bytes asks. */
        ao_rpc_options_t ro = {.listen = listen, .n_listen = 1, .creds = creds, .threads = 2,
                               .max_message_bytes = 64u << 20};
        ao_status_t st;
        srv = ao_rpc_server_create(&ro, &st);
        static const ao_rpc_method_impl_t impls[] = {{"Execute", AO_RPC_UNARY, grpc_execute, 0}};
        if (!srv || ao_rpc_server_add_service(srv, &agentos__v1__agent__descriptor, impls, 1, NULL, &st) ||
            ao_rpc_server_start(srv, &st)) {
            fprintf(stderr, "mock_agent: gRPC: %s\n", st.msg);
            return 2;
        }
        grpc_bound = ao_rpc_server_port(srv, 0);
        free(pem_cert);
        free(pem_key);
        free(pem_ca);
    }
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        fprintf(f, "{\"https\": %d, \"grpc\": %d}\n", https_bound, grpc_bound);
        fclose(f);
        rename(tmp, port_file);
    }
    if (!quiet) fprintf(stderr, "mock_agent: https on %d, grpc on %d\n", https_bound, grpc_bound);
    int sig;
    sigwait(&sigs, &sig);
    if (srv) {
        ao_rpc_server_shutdown(srv, 100);
        ao_rpc_server_destroy(srv);
        ao_timers_destroy(timers);
    }
    if (https_port >= 0) {
        if (write(stop_pipe[1], "x", 1) != 1) return 1;
        pthread_join(https_thread, NULL);
        SSL_CTX_free(ctx);
    }
    json_decref(stats);
    json_decref(per_task);
    return 0;
}
