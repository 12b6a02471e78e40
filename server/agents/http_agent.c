/*
 * HTTP agent backends over libcurl: `https` (AgentTask / AgentResult as
 * proto3 JSON, docs/agent-protocol.md) and `openai` (OpenAI-compatible
 * chat completions). Both share the transport: TLS verified by default with
 * a per-backend CA bundle, optional client certificate (mTLS) and pinned
 * public key; the attempt id as Idempotency-Key; the API key as a bearer
 * token; errors classified for retries and breakers, keeping their cause.
 *
 * Threads: start on a pool thread; completion on the HTTP loop's thread;
 * cancel on the executor's thread (it only raises a flag).
 */
#include "http_agent.h"

#include "log.h"
#include "mem.h"
#include "pbjson.h"
#include "pbutil.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EC(x) AGENTOS__V1__ERROR_CLASS__ERROR_CLASS_##x
#define MAX_REPLY (4u << 20)

typedef enum { KIND_HTTPS, KIND_OPENAI } kind_t;

typedef struct http_backend {
    kind_t kind;
    ao_http_loop_t *loop;
    char *api_key;
    char *url;        /* the URL requests go to (host rewritten to server_name) */
    char *connect_to; /* "name:port:host:port" when server_name is set */
    ao_http_gate_t gate; /* connection setup, see http_loop.h */
} http_backend_t;

/* Connections a backend sets up at once (TCP + TLS). Enough to cover the
 * round trips of a far server (hundreds of handshakes a second at 100 ms),
 * few enough that each handshake finishes in a fraction of its connect
 * timeout even when this process is CPU-bound on TLS (about 2 ms of CPU a
 * handshake with OpenSSL 3.0 here). */
#define MAX_CONNECTING 128

typedef struct http_call {
    ao_http_req_t req;
    ao_agent_t *agent;
    ao_agent_call_t *call;
    ao_sb_t body;
    int too_big;
    uint32_t retry_after_ms;
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    char *payload;
} http_call_t;

/* ---- response plumbing ------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    http_call_t *hc = ud;
    size_t len = size * n;
    if (hc->body.len + len > MAX_REPLY) {
        hc->too_big = 1;
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    }
    ao_sb_append(&hc->body, p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    http_call_t *hc = ud;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(p, "Retry-After:", 12)) {
        char v[128];
        size_t vl = len - 12 < sizeof v - 1 ? len - 12 : sizeof v - 1;
        memcpy(v, p + 12, vl);
        v[vl] = '\0';
        char *s = v;
        while (*s == ' ') s++;
        char *end;
        long secs = strtol(s, &end, 10);
        /* Seconds or an HTTP date; at most UINT32_MAX ms (49 days), however
         * far off the agent says. */
        int64_t ms;
        if (end != s && (*end == '\r' || *end == '\n' || !*end)) {
            ms = secs <= 0 ? 0 : secs >= INT32_MAX ? INT64_MAX : (int64_t)secs * 1000;
        } else {
            s[strcspn(s, "\r\n")] = '\0';
            time_t when = curl_getdate(s, NULL);
            ms = when > 0 && when < INT64_MAX / 1000 ? (int64_t)when * 1000 - ao_now_ms() : 0;
        }
        hc->retry_after_ms = ms <= 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    }
    return len;
}

/* The first line of a reply body, for error messages (bounded, printable). */
static void excerpt(const char *body, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap && n < 160; i++) {
        char c = body[i];
        if (c == '\n' || c == '\r') break;
        out[n++] = (c >= 32 && c < 127) ? c : '?';
    }
    out[n] = '\0';
}

static void classify_transport(http_call_t *hc, CURLcode code, ao_agent_outcome_t *o)
{
    const char *why = *hc->errbuf ? hc->errbuf : curl_easy_strerror(code);
    o->retryable = 1;
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        o->error_class = EC(TIMEOUT);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
        o->error_class = EC(TLS);
        break;
    case CURLE_WRITE_ERROR:
        if (hc->too_big) {
            o->error_class = EC(INVALID_RESPONSE);
            snprintf(o->error, sizeof o->error, "the reply of agent %s is larger than %u bytes",
                     hc->agent->cfg->name, MAX_REPLY);
            return;
        }
        o->error_class = EC(INTERNAL);
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        o->error_class = EC(REJECTED);
        o->retryable = 0;
        break;
    default:
        o->error_class = EC(UNAVAILABLE);
        break;
    }
    snprintf(o->error, sizeof o->error, "%s (agent %s)", why, hc->agent->cfg->name);
}

/* Non-2xx statuses. */
static void classify_status(http_call_t *hc, long status, ao_agent_outcome_t *o)
{
    char ex[200];
    excerpt(hc->body.data ? hc->body.data : "", hc->body.len, ex, sizeof ex);
    o->transport_status = (int)status;
    if (status == 429) {
        o->error_class = EC(RATE_LIMITED);
        o->retryable = 1;
        o->retry_after_ms = hc->retry_after_ms;
    } else if (status >= 500) {
        o->error_class = EC(UNAVAILABLE);
        o->retryable = 1;
    } else if (status == 408) {
        o->error_class = EC(TIMEOUT);
        o->retryable = 1;
    } else {
        o->error_class = EC(REJECTED);
        o->retryable = 0;
    }
    snprintf(o->error, sizeof o->error, "HTTP %ld from agent %s%s%s%s", status, hc->agent->cfg->name,
             *ex ? ": " : "", ex, o->retry_after_ms ? " (Retry-After honoured)" : "");
}

/* ---- https: AgentResult as proto3 JSON ---------------------------------------- */

static void parse_https(http_call_t *hc, ao_agent_outcome_t *o)
{
    ProtobufCMessage *m = NULL;
    ao_status_t st;
    if (ao_pbjson_decode_text_ex(&agentos__v1__agent_result__descriptor, hc->body.data ? hc->body.data : "",
                                 hc->body.len, AO_PBJSON_IGNORE_UNKNOWN, &m, &st)) {
        o->error_class = EC(INVALID_RESPONSE);
        o->retryable = 1;
        snprintf(o->error, sizeof o->error, "the reply of agent %s is not an AgentResult: %.300s",
                 hc->agent->cfg->name, st.msg);
        return;
    }
    o->result = (Agentos__V1__AgentResult *)m;
}

/* ---- openai: chat completions ---------------------------------------------------- */

static const char default_system_prompt[] =
    "You are one agent of a multi-agent analysis. Do the task in the user message. Answer "
    "with one JSON object and nothing else: {\"output\": \"your analysis, as text\", "
    "\"score\": a number from 0 to 1 for the question asked, \"confidence\": a number from 0 "
    "to 1 for how sure you are, \"findings\": [{\"key\": \"short_key\", \"value\": \"what you "
    "found\", \"confidence\": 0 to 1}]}.";

static char *openai_request(ao_agent_t *a, const Agentos__V1__AgentTask *t)
{
    const Agentos__V1__OpenAiSettings *s = a->cfg->openai;
    json_t *req = json_object();
    json_object_set_new(req, "model", json_string(s && *s->model ? s->model : "default"));
    json_t *msgs = json_array();
    json_t *sys = json_object();
    json_object_set_new(sys, "role", json_string("system"));
    json_object_set_new(sys, "content", json_string(s && *s->system_prompt ? s->system_prompt : default_system_prompt));
    json_array_append_new(msgs, sys);
    ao_sb_t user = {0};
    ao_sb_puts(&user, t->input);
    if (t->n_context) {
        ao_sb_puts(&user, "\n\nContext:");
        for (size_t i = 0; i < t->n_context; i++)
            ao_sb_printf(&user, "\n- %s: %s", t->context[i]->key, t->context[i]->value);
    }
    if (t->n_findings) {
        ao_sb_puts(&user, "\n\nFindings so far:");
        for (size_t i = 0; i < t->n_findings; i++)
            ao_sb_printf(&user, "\n- %s: %s (confidence %.2f)", t->findings[i]->key, t->findings[i]->value,
                         t->findings[i]->confidence);
    }
    if (t->n_missing_dependencies) {
        ao_sb_puts(&user, "\n\nMissing inputs (their tasks failed):");
        for (size_t i = 0; i < t->n_missing_dependencies; i++)
            ao_sb_printf(&user, " %s", t->missing_dependencies[i]);
    }
    if (t->kind == AGENTOS__V1__TASK_KIND__TASK_KIND_PLANNER)
        ao_sb_puts(&user, "\n\nAlso include \"plan\": {\"tasks\": [{\"id\", \"agent\", \"input\", "
                          "\"dependsOn\": []}], \"rationale\": \"...\"}.");
    json_t *um = json_object();
    json_object_set_new(um, "role", json_string("user"));
    json_object_set_new(um, "content", json_stringn(user.data ? user.data : "", user.len));
    ao_sb_free(&user);
    json_array_append_new(msgs, um);
    json_object_set_new(req, "messages", msgs);
    if (s && (s->temperature > 0 || s->send_temperature))
        json_object_set_new(req, "temperature", json_real(s->temperature));
    if (s && s->max_tokens) json_object_set_new(req, "max_tokens", json_integer(s->max_tokens));
    if (s && s->json_mode) {
        json_t *rf = json_object();
        json_object_set_new(rf, "type", json_string("json_object"));
        json_object_set_new(req, "response_format", rf);
    }
    json_object_set_new(req, "user", json_string(t->attempt_id));
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return text;
}

/* The JSON object inside a model's content: the whole content, or the
 * inside of a ``` fence, or from the first '{' to the last '}'. */
static json_t *content_object(const char *content)
{
    json_t *j = json_loads(content, 0, NULL);
    if (json_is_object(j)) return j;
    json_decref(j);
    const char *open = strchr(content, '{'), *close = strrchr(content, '}');
    if (!open || !close || close < open) return NULL;
    j = json_loadb(open, (size_t)(close - open + 1), 0, NULL);
    if (json_is_object(j)) return j;
    json_decref(j);
    return NULL;
}

static void parse_openai(http_call_t *hc, ao_agent_outcome_t *o)
{
    const char *name = hc->agent->cfg->name;
    json_error_t jerr;
    json_t *root = json_loadb(hc->body.data ? hc->body.data : "", hc->body.len, 0, &jerr);
    o->error_class = EC(INVALID_RESPONSE);
    o->retryable = 1;
    if (!json_is_object(root)) {
        snprintf(o->error, sizeof o->error, "the reply of %s is not JSON: %s", name, jerr.text);
        json_decref(root);
        return;
    }
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(root, "choices"), 0), "message"),
                                      "content");
    if (!json_is_string(content)) {
        snprintf(o->error, sizeof o->error, "the reply of %s has no choices[0].message.content", name);
        json_decref(root);
        return;
    }
    json_t *obj = content_object(json_string_value(content));
    if (!obj) {
        char ex[200];
        excerpt(json_string_value(content), json_string_length(content), ex, sizeof ex);
        snprintf(o->error, sizeof o->error,
                 "the model's reply is not the JSON object asked for ({\"output\",\"score\","
                 "\"confidence\",\"findings\"}): \"%s\"",
                 ex);
        json_decref(root);
        return;
    }
    Agentos__V1__AgentResult *r = ao_xmalloc(sizeof *r);
    agentos__v1__agent_result__init(r);
    json_t *out = json_object_get(obj, "output");
    if (json_is_string(out)) ao_pb_set_str(&r->output, json_string_value(out));
    else if (out) {
        char *dump = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        ao_pb_set_str(&r->output, dump);
        free(dump);
    }
    r->score = json_number_value(json_object_get(obj, "score"));
    json_t *conf = json_object_get(obj, "confidence");
    r->confidence = json_is_number(conf) ? json_number_value(conf) : 0.5;
    json_t *fs = json_object_get(obj, "findings");
    size_t i;
    json_t *f;
    json_array_foreach(fs, i, f)
    {
        const char *k = json_string_value(json_object_get(f, "key"));
        json_t *v = json_object_get(f, "value");
        /* A finding's key is 1 to 128 bytes: a model's other findings are
         * dropped, not its whole answer. */
        if (!k || !v || !*k || strlen(k) > 128) continue;
        Agentos__V1__Finding **slot = ao_pb_push(&r->findings, &r->n_findings, sizeof *slot);
        *slot = ao_xmalloc(sizeof **slot);
        agentos__v1__finding__init(*slot);
        ao_pb_set_str(&(*slot)->key, k);
        if (json_is_string(v)) ao_pb_set_str(&(*slot)->value, json_string_value(v));
        else {
            char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            ao_pb_set_str(&(*slot)->value, dump);
            free(dump);
        }
        json_t *fc = json_object_get(f, "confidence");
        (*slot)->confidence = json_is_number(fc) ? json_number_value(fc) : r->confidence;
        (*slot)->score = json_number_value(json_object_get(f, "score"));
    }
    json_t *ds = json_object_get(obj, "decisions"), *d;
    json_array_foreach(ds, i, d) if (json_is_string(d)) ao_pb_push_str(&r->decisions, &r->n_decisions, json_string_value(d));
    json_t *plan = json_object_get(obj, "plan");
    if (json_is_object(plan)) {
        ProtobufCMessage *pm = NULL;
        ao_status_t st;
        if (ao_pbjson_decode_ex(&agentos__v1__plan__descriptor, plan, AO_PBJSON_IGNORE_UNKNOWN, &pm, &st)) {
            snprintf(o->error, sizeof o->error, "the model's plan does not parse: %.300s", st.msg);
            ao_pb_free(r);
            json_decref(obj);
            json_decref(root);
            return;
        }
        r->plan = (Agentos__V1__Plan *)pm;
    }
    json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage)) {
        r->usage = ao_xmalloc(sizeof *r->usage);
        agentos__v1__usage__init(r->usage);
        r->usage->prompt_tokens = (uint64_t)json_integer_value(json_object_get(usage, "prompt_tokens"));
        r->usage->completion_tokens = (uint64_t)json_integer_value(json_object_get(usage, "completion_tokens"));
        r->usage->total_tokens = (uint64_t)json_integer_value(json_object_get(usage, "total_tokens"));
    }
    json_decref(obj);
    json_decref(root);
    o->error_class = EC(UNSPECIFIED);
    o->retryable = 0;
    o->error[0] = '\0';
    o->result = r;
}

/* ---- the call ----------------------------------------------------------------------- */

static void http_call_free(http_call_t *hc)
{
    curl_easy_cleanup(hc->req.easy);
    curl_slist_free_all(hc->headers);
    curl_slist_free_all(hc->connect_to);
    ao_sb_free(&hc->body);
    free(hc->payload);
    free(hc);
}

static void on_done(ao_http_req_t *req, CURLcode code, long status, int cancelled)
{
    http_call_t *hc = (http_call_t *)req;
    http_backend_t *b = hc->agent->impl;
    ao_agent_outcome_t o;
    memset(&o, 0, sizeof o);
    if (cancelled) {
        o.error_class = EC(CANCELLED);
        snprintf(o.error, sizeof o.error, "cancelled");
    } else if (code != CURLE_OK) {
        classify_transport(hc, code, &o);
    } else if (status < 200 || status > 299) {
        classify_status(hc, status, &o);
    } else {
        o.transport_status = (int)status;
        if (b->kind == KIND_OPENAI) parse_openai(hc, &o);
        else parse_https(hc, &o);
        if (o.result && *o.result->error) {
            o.error_class = EC(AGENT_ERROR);
            o.retryable = o.result->retryable;
            snprintf(o.error, sizeof o.error, "agent %s: %.400s", hc->agent->cfg->name, o.result->error);
            ao_pb_free(o.result);
            o.result = NULL;
        }
    }
    ao_agent_call_t *call = hc->call;
    call->backend_data = NULL;
    call->done(call, &o);
    http_call_free(hc);
}

static void apply_tls(CURL *e, const Agentos__V1__ClientTls *tls)
{
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!tls) return;
    if (*tls->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, tls->ca_file);
    if (*tls->cert_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, tls->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, tls->key_file);
    }
    if (*tls->pinned_public_key) curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY, tls->pinned_public_key);
    if (tls->insecure_skip_verify) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

static void http_start(ao_agent_t *a, ao_agent_call_t *call)
{
    http_backend_t *b = a->impl;
    const Agentos__V1__AgentTask *t = call->task;
    http_call_t *hc = ao_xcalloc(1, sizeof *hc);
    hc->agent = a;
    hc->call = call;
    hc->payload = b->kind == KIND_OPENAI ? openai_request(a, t) : ao_pbjson_encode(&t->base, 0);
    CURL *e = curl_easy_init();
    hc->req.easy = e;
    hc->req.done = on_done;
    hc->req.ud = hc;
    hc->req.gate = &b->gate;
    curl_easy_setopt(e, CURLOPT_URL, b->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, hc->payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(hc->payload));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, hc->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, hc);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, hc);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "agentosd/0.1");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (call->timeout_ms) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)call->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    apply_tls(e, a->cfg->tls);
    if (b->connect_to) {
        hc->connect_to = curl_slist_append(NULL, b->connect_to);
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, hc->connect_to);
    }
    hc->headers = curl_slist_append(hc->headers, "Content-Type: application/json");
    hc->headers = curl_slist_append(hc->headers, "Accept: application/json");
    char *h = ao_xasprintf("Idempotency-Key: %s", t->attempt_id);
    hc->headers = curl_slist_append(hc->headers, h);
    free(h);
    if (b->api_key) {
        h = ao_xasprintf("Authorization: Bearer %s", b->api_key);
        hc->headers = curl_slist_append(hc->headers, h);
        memset(h, 0, strlen(h));
        free(h);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hc->headers);
    call->backend_data = hc;
    ao_http_loop_submit(b->loop, &hc->req);
}

static void http_cancel(ao_agent_t *a, ao_agent_call_t *call)
{
    http_backend_t *b = a->impl;
    http_call_t *hc = call->backend_data;
    if (hc) ao_http_loop_cancel(b->loop, &hc->req);
}

static void http_destroy(ao_agent_t *a)
{
    http_backend_t *b = a->impl;
    if (b->api_key) {
        memset(b->api_key, 0, strlen(b->api_key));
        free(b->api_key);
    }
    free(b->url);
    free(b->connect_to);
    free(b);
    free(a);
}

static const ao_agent_ops_t http_ops = {http_start, http_cancel, http_destroy, NULL};

/* The URL to use, and a CONNECT_TO rule when the TLS name (server_name)
 * differs from the host in the URL. */
static int resolve_url(const Agentos__V1__AgentBackend *cfg, const char *url, http_backend_t *b,
                       ao_status_t *st)
{
    const char *name = cfg->tls ? cfg->tls->server_name : "";
    if (!*name) {
        b->url = ao_xstrdup(url);
        return 0;
    }
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *out = NULL;
    int rc = 0;
    if (curl_url_set(u, CURLUPART_URL, url, 0) || curl_url_get(u, CURLUPART_HOST, &host, 0) ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ||
        curl_url_set(u, CURLUPART_HOST, name, 0) || curl_url_get(u, CURLUPART_URL, &out, 0)) {
        rc = ao_status_set(st, AO_EINVAL, "url \"%.100s\" or tls.server_name \"%.100s\" does not parse", url, name);
    } else {
        b->url = ao_xstrdup(out);
        b->connect_to = ao_xasprintf("%s:%s:%s:%s", name, port, host, port);
    }
    curl_free(host);
    curl_free(port);
    curl_free(out);
    curl_url_cleanup(u);
    return rc;
}

static int create(const Agentos__V1__AgentBackend *cfg, ao_http_loop_t *loop, kind_t kind,
                  ao_agent_t **out, ao_status_t *st)
{
    http_backend_t *b = ao_xcalloc(1, sizeof *b);
    b->kind = kind;
    b->loop = loop;
    ao_http_gate_init(&b->gate, MAX_CONNECTING);
    int rc = ao_secret_load(cfg->api_key, &b->api_key, st);
    size_t ul = strlen(cfg->url);
    char *url = kind == KIND_OPENAI
                    ? ao_xasprintf("%s%schat/completions", cfg->url, ul && cfg->url[ul - 1] == '/' ? "" : "/")
                    : ao_xstrdup(cfg->url);
    if (!rc) rc = resolve_url(cfg, url, b, st);
    free(url);
    if (rc) {
        free(b->api_key);
        free(b->url);
        free(b->connect_to);
        free(b);
        return rc;
    }
    ao_agent_t *a = ao_xcalloc(1, sizeof *a);
    a->ops = &http_ops;
    a->cfg = cfg;
    a->impl = b;
    *out = a;
    return 0;
}

int ao_https_agent_create(const Agentos__V1__AgentBackend *cfg, ao_http_loop_t *loop, ao_agent_t **out,
                          ao_status_t *st)
{
    return create(cfg, loop, KIND_HTTPS, out, st);
}

int ao_openai_agent_create(const Agentos__V1__AgentBackend *cfg, ao_http_loop_t *loop, ao_agent_t **out,
                           ao_status_t *st)
{
    return create(cfg, loop, KIND_OPENAI, out, st);
}
