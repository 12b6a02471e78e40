/*
 * Threads: create/start/stop/destroy run on the main thread. Each
 * subsystem documents its own threads.
 */
#include "server.h"

#include "auth.h"
#include "backends.h"
#include "config.h"
#include "engine.h"
#include "eventlog.h"
#include "handlers.h"
#include "health.h"
#include "hub.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "util.h"
#include "pool.h"
#include "rpc.h"
#include "timer.h"

#include <errno.h>
#include <grpc/grpc_security.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ao_server {
    Agentos__V1__ServerConfig *cfg;
    ao_auth_t *auth;
    ao_log_t *log;
    ao_timers_t *timers;
    ao_pool_t *pool;
    ao_backends_t *backends;
    ao_engine_t *engine;
    ao_hub_t *hub;
    ao_handlers_t handlers;
    ao_rpc_server_t *rpc;
    ao_health_t *health;
    ao_metrics_server_t *metrics;
    ao_metrics_gauge_fn gauges[1];
    void *gauge_uds[1];
    int engine_started;
};

/* Gauges read at each scrape. */
static void server_gauges(void *ud, void *out)
{
    ao_server_t *srv = ud;
    ao_sb_t *sb = out;
    ao_sb_printf(sb,
                 "# HELP agentos_durable_seq The highest durable sequence number\n"
                 "# TYPE agentos_durable_seq gauge\nagentos_durable_seq %llu\n",
                 (unsigned long long)ao_proc_durable_seq(ao_engine_proc(srv->engine)));
    ao_sb_printf(sb,
                 "# HELP agentos_workflows_active Workflows not yet finished\n"
                 "# TYPE agentos_workflows_active gauge\nagentos_workflows_active %u\n",
                 ao_engine_active(srv->engine));
    ao_sb_printf(sb,
                 "# HELP agentos_subscribers Open StreamEvents calls\n"
                 "# TYPE agentos_subscribers gauge\nagentos_subscribers %u\n",
                 ao_hub_subscribers(srv->hub));
    ao_sb_printf(sb,
                 "# HELP agentos_timers_pending Pending timers (timeouts, backoff, latency)\n"
                 "# TYPE agentos_timers_pending gauge\nagentos_timers_pending %u\n",
                 ao_timers_pending(srv->timers));
    Agentos__V1__GetAgentHealthResponse h = AGENTOS__V1__GET_AGENT_HEALTH_RESPONSE__INIT;
    ao_status_t st;
    ao_backends_health(srv->backends, NULL, NULL, &h, &st);
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"agent_breaker_state", "gauge", "Circuit breaker: 1 CLOSED, 2 OPEN, 3 HALF_OPEN"},
        {"agent_in_flight", "gauge", "Calls in flight"},
        {"agent_queued", "gauge", "Calls waiting for a concurrency slot"},
        {"agent_calls_total", "counter", "Calls completed"},
        {"agent_failures_total", "counter", "Calls failed"},
        {"agent_cost_micros_total", "counter", "Spend in micro-USD"},
        {"agent_tokens_total", "counter", "Tokens used"},
        {"agent_latency_p50_ms", "gauge", "Median latency of the last 1000 calls"},
        {"agent_latency_p99_ms", "gauge", "99th percentile latency of the last 1000 calls"},
    };
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        ao_sb_printf(sb, "# HELP agentos_%s %s\n# TYPE agentos_%s %s\n", m[k].name, m[k].help,
                     m[k].name, m[k].type);
        for (size_t i = 0; i < h.n_agents; i++) {
            const Agentos__V1__AgentHealth *a = h.agents[i];
            double v[] = {a->breaker,       a->in_flight,      a->queued,
                          (double)a->calls_total, (double)a->failures_total, (double)a->cost_micros,
                          (double)a->tokens, a->latency_p50_ms, a->latency_p99_ms};
            ao_sb_printf(sb, "agentos_%s{agent=\"%s\"} %.17g\n", m[k].name, a->agent, v[k]);
        }
    }
    for (size_t i = 0; i < h.n_agents; i++) protobuf_c_message_free_unpacked(&h.agents[i]->base, NULL);
    free(h.agents);
}

static char *read_pem(const char *what, const char *path, ao_status_t *st)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        ao_status_set(st, AO_EINVAL, "%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) fwrite(chunk, 1, n, mem);
    fclose(fp);
    fclose(mem);
    if (len == 0 || !strstr(buf, "-----BEGIN")) {
        ao_status_set(st, AO_EINVAL, "%s %s: not a PEM file", what, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Server credentials from cfg->tls, or NULL for plaintext (st unset) or on
 * error (st set). */
static grpc_server_credentials *server_creds(const Agentos__V1__ServerConfig *cfg, ao_status_t *st)
{
    const Agentos__V1__ServerTls *tls = cfg->tls;
    if (!tls || !*tls->cert_file) return NULL;
    char *cert = read_pem("tls.cert_file", tls->cert_file, st);
    char *key = cert ? read_pem("tls.key_file", tls->key_file, st) : NULL;
    char *ca = NULL;
    if (key && *tls->client_ca_file) ca = read_pem("tls.client_ca_file", tls->client_ca_file, st);
    grpc_server_credentials *creds = NULL;
    if (key && (ca || !*tls->client_ca_file)) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        grpc_ssl_client_certificate_request_type req =
            !ca ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : tls->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
        creds = grpc_ssl_server_credentials_create_ex(ca, &pair, 1, req, NULL);
        if (!creds) ao_status_set(st, AO_EINVAL, "tls: the certificate or key could not be used");
    }
    free(cert);
    free(key);
    free(ca);
    return creds;
}

static void hub_learns(void *ud, const char *workflow_id, const char *tenant)
{
    ao_hub_add_workflow(ud, workflow_id, tenant);
}

int ao_server_create(Agentos__V1__ServerConfig *cfg, ao_server_t **out, ao_status_t *st)
{
    ao_server_t *srv = ao_xcalloc(1, sizeof *srv);
    srv->cfg = cfg;
    *out = NULL;
    int rc = ao_auth_create(cfg, &srv->auth, st);
    if (rc) goto fail;

    ao_log_options_t lo = {
        .dir = cfg->storage->data_dir,
        .sync = cfg->storage->durability != AGENTOS__V1__DURABILITY__DURABILITY_ASYNC,
    };
    if ((rc = ao_log_open(&lo, &srv->log, st))) goto fail;
    srv->timers = ao_timers_create();
    srv->pool = ao_pool_create(cfg->executor->worker_threads);
    if ((rc = ao_backends_create(cfg, srv->timers, srv->pool, &srv->backends, st))) goto fail;
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const Agentos__V1__AgentBackend *a = cfg->agents[i];
        if (a->tls && a->tls->insecure_skip_verify)
            AO_WARN("server", "TLS verification is OFF for agent backend %s (insecure_skip_verify)",
                    a->name);
        int http = a->kind == AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_HTTPS ||
                   a->kind == AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_OPENAI;
        if (http && !strncasecmp(a->url, "http://", 7))
            AO_WARN("server",
                    "agent backend %s is plaintext HTTP (%s): requests, replies and its API key "
                    "cross the network unencrypted",
                    a->name, a->url);
    }
    ao_hub_options_t ho = {
        .log = srv->log,
        .durable_seq = ao_log_last_seq(srv->log),
        .buffer_events = cfg->limits->subscriber_buffer,
        .max_subscribers = cfg->limits->max_subscribers,
    };
    srv->hub = ao_hub_create(&ho);
    ao_engine_options_t eo = {
        .cfg = cfg,
        .log = srv->log,
        .backends = srv->backends,
        .timers = srv->timers,
        .pool = srv->pool,
        .publish = ao_hub_publish,
        .publish_ud = srv->hub,
        .workflow_loaded = hub_learns,
        .loaded_ud = srv->hub,
    };
    srv->engine = ao_engine_create(&eo);
    if ((rc = ao_engine_recover(srv->engine, st))) goto fail;

    ao_status_clear(st);
    grpc_server_credentials *creds = server_creds(cfg, st);
    if (st->code) {
        rc = st->code;
        goto fail;
    }
    ao_rpc_options_t ro = {
        .listen = (const char *const *)cfg->listen,
        .n_listen = cfg->n_listen,
        .creds = creds,
        .threads = cfg->rpc_threads,
        .max_message_bytes = cfg->limits->max_message_bytes,
        .auth = ao_auth_rpc_hook,
        .auth_ud = srv->auth,
    };
    srv->rpc = ao_rpc_server_create(&ro, st);
    if (!srv->rpc) {
        rc = st->code;
        goto fail;
    }
    if ((rc = ao_health_create(srv->rpc, &srv->health, st))) goto fail;
    srv->handlers.engine = srv->engine;
    srv->handlers.pool = srv->pool;
    srv->handlers.stream_fn = ao_hub_stream_events;
    srv->handlers.stream_ud = srv->hub;
    if ((rc = ao_handlers_register(&srv->handlers, srv->rpc, st))) goto fail;
    *out = srv;
    return 0;
fail:
    ao_server_destroy(srv);
    return rc;
}

int ao_server_start(ao_server_t *srv, ao_status_t *st)
{
    ao_engine_start(srv->engine);
    srv->engine_started = 1;
    int rc = ao_rpc_server_start(srv->rpc, st);
    if (rc) return rc;
    const Agentos__V1__ServerConfig *cfg = srv->cfg;
    for (size_t i = 0; i < cfg->n_listen; i++)
        AO_INFO("server", "listening addr=%s port=%d tls=%s", cfg->listen[i],
                ao_rpc_server_port(srv->rpc, i),
                cfg->tls && *cfg->tls->cert_file
                    ? (cfg->tls->require_client_cert ? "mtls" : "on")
                    : "off");
    if (*cfg->metrics_listen) {
        srv->gauges[0] = server_gauges;
        srv->gauge_uds[0] = srv;
        if ((rc = ao_metrics_start(cfg->metrics_listen, srv->gauges, srv->gauge_uds, 1,
                                   &srv->metrics, st)))
            return rc;
    }
    if (!ao_auth_required(srv->auth))
        AO_WARN("server", "running open: no tokens configured, every caller is tenant "
                          "\"default\" (allowed on loopback addresses only)");
    return 0;
}

void ao_server_stop(ao_server_t *srv)
{
    AO_INFO("server", "shutting down grace_s=%u", srv->cfg->shutdown_grace_seconds);
    ao_metrics_stop(srv->metrics);
    srv->metrics = NULL;
    if (srv->health) ao_health_shutdown(srv->health);
    if (srv->hub) ao_hub_shutdown(srv->hub);
    if (srv->engine_started) ao_engine_release_waiters(srv->engine);
    if (srv->rpc) ao_rpc_server_shutdown(srv->rpc, srv->cfg->shutdown_grace_seconds * 1000u);
    /* After the RPC server: replies to waiting clients need the processor. */
    if (srv->engine_started) ao_engine_stop(srv->engine);
    srv->engine_started = 0;
}

void ao_server_destroy(ao_server_t *srv)
{
    if (!srv) return;
    ao_rpc_server_destroy(srv->rpc);
    ao_health_destroy(srv->health);
    ao_engine_destroy(srv->engine);
    ao_hub_destroy(srv->hub);
    ao_backends_destroy(srv->backends);
    ao_pool_destroy(srv->pool);
    ao_timers_destroy(srv->timers);
    ao_log_close(srv->log);
    ao_auth_destroy(srv->auth);
    ao_config_free(srv->cfg);
    free(srv);
}
