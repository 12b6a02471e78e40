#include "config.h"

#include "mem.h"
#include "pbjson.h"
#include "util.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char ao_config_usage[] =
    "usage: agentosd [--config FILE] [options]\n"
    "\n"
    "agentosd runs the agentos orchestrator: the agentos.v1.Orchestrator and\n"
    "grpc.health.v1.Health gRPC services over an embedded RocksDB event log.\n"
    "The configuration is an agentos.v1.ServerConfig in proto3 JSON (see\n"
    "idl/agentos/v1/config.proto and docs/configuration.md); flags override it.\n"
    "\n"
    "  --config FILE            read the configuration from FILE\n"
    "  --listen ADDR            listen on ADDR (repeatable; replaces the file's list)\n"
    "                           default " AO_DEFAULT_LISTEN "\n"
    "  --data-dir DIR           RocksDB directory (default " AO_DEFAULT_DATA_DIR ")\n"
    "  --durability MODE        sync (default: WAL synced per group commit) or async\n"
    "  --insecure               allow plaintext on a non-loopback address\n"
    "  --tls-cert FILE          server certificate chain (PEM)\n"
    "  --tls-key FILE           server private key (PEM)\n"
    "  --tls-client-ca FILE     CA bundle for client certificates (enables mTLS)\n"
    "  --require-client-cert    refuse clients without a valid certificate\n"
    "  --metrics-listen ADDR    serve Prometheus metrics at http://ADDR/metrics\n"
    "  --log-level LEVEL        debug, info (default), warn, error\n"
    "  --log-format FORMAT      text (default) or json\n"
    "  --rpc-threads N          gRPC completion-queue threads (default: one per CPU\n"
    "                           agentosd may run on)\n"
    "  --worker-threads N       executor threads (default: CPUs)\n"
    "  --print-config           print the effective configuration as JSON and exit\n"
    "  --help                   print this text and exit\n"
    "  --version                print the version and exit\n";

#define ENSURE(parent, field, type, lower)                                                         \
    do {                                                                                           \
        if (!(parent)->field) {                                                                    \
            (parent)->field = ao_xmalloc(sizeof(type));                                            \
            lower##__init((parent)->field);                                                        \
        }                                                                                          \
    } while (0)

static void set_str(char **field, const char *value)
{
    if (*field && *field != protobuf_c_empty_string) free(*field);
    *field = ao_xstrdup(value);
}

static int str_unset(const char *s)
{
    return !s || !*s;
}

void ao_config_defaults(Agentos__V1__ServerConfig *cfg)
{
    if (cfg->n_listen == 0) {
        free(cfg->listen); /* an empty array may still be held */
        cfg->listen = ao_xcalloc(1, sizeof *cfg->listen);
        cfg->listen[0] = ao_xstrdup(AO_DEFAULT_LISTEN);
        cfg->n_listen = 1;
    }
    ENSURE(cfg, storage, Agentos__V1__StorageConfig, agentos__v1__storage_config);
    if (str_unset(cfg->storage->data_dir)) set_str(&cfg->storage->data_dir, AO_DEFAULT_DATA_DIR);
    if (!cfg->storage->durability)
        cfg->storage->durability = AGENTOS__V1__DURABILITY__DURABILITY_SYNC;
    if (!cfg->storage->checkpoint_every_events) cfg->storage->checkpoint_every_events = 1000;
    if (!cfg->storage->max_batch_events) cfg->storage->max_batch_events = 4096;
    if (!cfg->storage->max_finished_in_memory) cfg->storage->max_finished_in_memory = 10000;
    if (!cfg->storage->freeze_idle_ms) cfg->storage->freeze_idle_ms = 1000;

    ENSURE(cfg, limits, Agentos__V1__Limits, agentos__v1__limits);
    Agentos__V1__Limits *l = cfg->limits;
    if (!l->max_message_bytes) l->max_message_bytes = 4 * 1024 * 1024;
    if (!l->max_tasks) l->max_tasks = 10000;
    if (!l->max_input_bytes) l->max_input_bytes = 64 * 1024;
    if (!l->max_output_bytes) l->max_output_bytes = 256 * 1024;
    if (!l->max_depth) l->max_depth = 256;
    if (!l->max_plan_depth) l->max_plan_depth = 3;
    if (!l->max_subscribers) l->max_subscribers = 1000;
    if (!l->subscriber_buffer) l->subscriber_buffer = 1024;
    if (!l->max_active_workflows) l->max_active_workflows = 10000;
    if (!l->default_max_attempts) l->default_max_attempts = 3;
    if (!l->max_context_bytes) l->max_context_bytes = 64 * 1024;

    ENSURE(cfg, executor, Agentos__V1__ExecutorConfig, agentos__v1__executor_config);
    ENSURE(cfg, log, Agentos__V1__LogConfig, agentos__v1__log_config);
    if (str_unset(cfg->log->level)) set_str(&cfg->log->level, "info");
    if (str_unset(cfg->log->format)) set_str(&cfg->log->format, "text");
    if (!cfg->shutdown_grace_seconds) cfg->shutdown_grace_seconds = 5;
    /* rpc_threads 0 stays 0: the RPC layer picks one thread per CPU the
     * process may run on (see server/rpc/rpc.c). */

    for (size_t i = 0; i < cfg->n_agents; i++) {
        Agentos__V1__AgentBackend *a = cfg->agents[i];
        if (!a->max_concurrency) a->max_concurrency = 64;
        if (!a->max_queue) a->max_queue = 100000;
        if (!a->default_timeout_ms) a->default_timeout_ms = 60000;
        ENSURE(a, breaker, Agentos__V1__BreakerConfig, agentos__v1__breaker_config);
        if (!a->breaker->failure_threshold) a->breaker->failure_threshold = 5;
        if (!a->breaker->reset_timeout_ms) a->breaker->reset_timeout_ms = 30000;
        ENSURE(a, price, Agentos__V1__Price, agentos__v1__price);
        ENSURE(a, tls, Agentos__V1__ClientTls, agentos__v1__client_tls);
        if (a->kind == AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_BUILTIN)
            ENSURE(a, builtin, Agentos__V1__BuiltinAgent, agentos__v1__builtin_agent);
        if (a->kind == AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_OPENAI)
            ENSURE(a, openai, Agentos__V1__OpenAiSettings, agentos__v1__open_ai_settings);
    }
}

int ao_config_is_loopback(const char *addr)
{
    if (!strncmp(addr, "unix:", 5) || !strncmp(addr, "unix-abstract:", 14)) return 1;
    if (!strncmp(addr, "ipv4:", 5)) addr += 5;
    else if (!strncmp(addr, "ipv6:", 5)) addr += 5;
    if (!strncmp(addr, "localhost:", 10)) return 1;
    if (!strncmp(addr, "127.", 4)) return 1;
    if (!strncmp(addr, "[::1]:", 6)) return 1;
    return 0;
}

const Agentos__V1__AgentBackend *ao_config_find_agent(const Agentos__V1__ServerConfig *cfg,
                                                      const char *name)
{
    for (size_t i = 0; i < cfg->n_agents; i++)
        if (!strcmp(cfg->agents[i]->name, name)) return cfg->agents[i];
    return NULL;
}

static int valid_agent_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-') return 0;
    return 1;
}

int ao_config_validate(const Agentos__V1__ServerConfig *cfg, ao_status_t *st)
{
    const Agentos__V1__ServerTls *tls = cfg->tls;
    int have_tls = tls && !str_unset(tls->cert_file);
    if (tls && str_unset(tls->cert_file) != str_unset(tls->key_file))
        return ao_status_set(st, AO_EINVAL, "tls: cert_file and key_file go together");
    if (tls && !have_tls && (!str_unset(tls->client_ca_file) || tls->require_client_cert))
        return ao_status_set(st, AO_EINVAL,
                             "tls.client_ca_file and require_client_cert need cert_file and "
                             "key_file");
    if (tls && tls->require_client_cert && str_unset(tls->client_ca_file))
        return ao_status_set(st, AO_EINVAL,
                             "tls.require_client_cert needs client_ca_file (the CAs that sign "
                             "client certificates)");
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const char *a = cfg->listen[i];
        if (str_unset(a)) return ao_status_set(st, AO_EINVAL, "listen[%zu]: empty address", i);
        if (!ao_config_is_loopback(a) && !have_tls && !cfg->insecure)
            return ao_status_set(st, AO_EINVAL,
                                 "listen[%zu]: %s is not a loopback address; configure tls "
                                 "(--tls-cert/--tls-key) or pass --insecure explicitly",
                                 i, a);
    }
    int all_loopback = 1;
    for (size_t i = 0; i < cfg->n_listen; i++)
        if (!ao_config_is_loopback(cfg->listen[i])) all_loopback = 0;
    if (!all_loopback && cfg->n_tokens == 0 && cfg->n_cert_tenants == 0)
        return ao_status_set(st, AO_EINVAL,
                             "listening on a non-loopback address needs tokens or cert_tenants: "
                             "without them every caller would be tenant \"default\"");
    if (cfg->n_cert_tenants && !(tls && !str_unset(tls->client_ca_file)))
        return ao_status_set(st, AO_EINVAL,
                             "cert_tenants needs tls.client_ca_file (client certificates)");
    for (size_t i = 0; i < cfg->n_agents; i++) {
        const Agentos__V1__AgentBackend *a = cfg->agents[i];
        if (!valid_agent_name(a->name))
            return ao_status_set(st, AO_EINVAL,
                                 "agents[%zu].name: \"%.60s\" is not 1 to 128 characters of "
                                 "[A-Za-z0-9_.-]",
                                 i, a->name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->agents[j]->name, a->name))
                return ao_status_set(st, AO_EINVAL, "agents[%zu].name: \"%s\" is used twice", i,
                                     a->name);
        switch (a->kind) {
        case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_BUILTIN:
            break;
        case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_HTTPS:
        case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_OPENAI:
            if (strncmp(a->url, "https://", 8) && strncmp(a->url, "http://", 7))
                return ao_status_set(st, AO_EINVAL,
                                     "agents[%zu] (%s).url: expected an https:// URL, got \"%.80s\"",
                                     i, a->name, a->url);
            break;
        case AGENTOS__V1__BACKEND_KIND__BACKEND_KIND_GRPC:
            if (str_unset(a->url) || !strchr(a->url, ':'))
                return ao_status_set(st, AO_EINVAL,
                                     "agents[%zu] (%s).url: expected host:port for a grpc agent",
                                     i, a->name);
            break;
        default:
            return ao_status_set(st, AO_EINVAL,
                                 "agents[%zu] (%s).kind: set BACKEND_KIND_BUILTIN, _HTTPS, "
                                 "_OPENAI or _GRPC",
                                 i, a->name);
        }
        if (a->tls && str_unset(a->tls->cert_file) != str_unset(a->tls->key_file))
            return ao_status_set(st, AO_EINVAL,
                                 "agents[%zu] (%s).tls: cert_file and key_file go together", i,
                                 a->name);
        if (a->api_key && !str_unset(a->api_key->file) && !str_unset(a->api_key->env))
            return ao_status_set(st, AO_EINVAL,
                                 "agents[%zu] (%s).api_key: set file or env, not both", i,
                                 a->name);
    }
    if (cfg->storage && cfg->storage->durability != AGENTOS__V1__DURABILITY__DURABILITY_SYNC &&
        cfg->storage->durability != AGENTOS__V1__DURABILITY__DURABILITY_ASYNC &&
        cfg->storage->durability != AGENTOS__V1__DURABILITY__DURABILITY_UNSPECIFIED)
        return ao_status_set(st, AO_EINVAL, "storage.durability: unknown value");
    if (cfg->limits && cfg->limits->max_message_bytes > 1024u * 1024u * 1024u)
        return ao_status_set(st, AO_EINVAL, "limits.max_message_bytes: at most 1 GiB");
    /* Threads are started at once: a mistyped count must not exhaust the
     * machine before the server serves. */
    if (cfg->rpc_threads > AO_CONFIG_MAX_THREADS)
        return ao_status_set(st, AO_EINVAL, "rpc_threads: %u is over the limit of %u", cfg->rpc_threads,
                             AO_CONFIG_MAX_THREADS);
    if (cfg->executor && cfg->executor->worker_threads > AO_CONFIG_MAX_THREADS)
        return ao_status_set(st, AO_EINVAL, "executor.worker_threads: %u is over the limit of %u",
                             cfg->executor->worker_threads, AO_CONFIG_MAX_THREADS);
    return 0;
}

int ao_config_load(const char *path, Agentos__V1__ServerConfig **out, ao_status_t *st)
{
    if (!path) {
        *out = ao_xmalloc(sizeof **out);
        agentos__v1__server_config__init(*out);
        return 0;
    }
    ProtobufCMessage *m = NULL;
    int rc = ao_pbjson_decode_file(&agentos__v1__server_config__descriptor, path, &m, st);
    *out = (Agentos__V1__ServerConfig *)m;
    return rc;
}

void ao_config_free(Agentos__V1__ServerConfig *cfg)
{
    if (cfg) protobuf_c_message_free_unpacked(&cfg->base, NULL);
}

static int parse_uint(const char *flag, const char *v, uint32_t *out, ao_status_t *st)
{
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (!*v || *end || x > 1000000)
        return ao_status_set(st, AO_EINVAL, "%s: expected a number, got \"%s\"", flag, v);
    *out = (uint32_t)x;
    return 0;
}

enum {
    OPT_CONFIG = 256,
    OPT_LISTEN,
    OPT_DATA_DIR,
    OPT_DURABILITY,
    OPT_INSECURE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_CLIENT_CA,
    OPT_REQUIRE_CLIENT_CERT,
    OPT_METRICS,
    OPT_LOG_LEVEL,
    OPT_LOG_FORMAT,
    OPT_RPC_THREADS,
    OPT_WORKER_THREADS,
    OPT_PRINT_CONFIG,
    OPT_HELP,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"config", required_argument, 0, OPT_CONFIG},
    {"listen", required_argument, 0, OPT_LISTEN},
    {"data-dir", required_argument, 0, OPT_DATA_DIR},
    {"durability", required_argument, 0, OPT_DURABILITY},
    {"insecure", no_argument, 0, OPT_INSECURE},
    {"tls-cert", required_argument, 0, OPT_TLS_CERT},
    {"tls-key", required_argument, 0, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, 0, OPT_TLS_CLIENT_CA},
    {"require-client-cert", no_argument, 0, OPT_REQUIRE_CLIENT_CERT},
    {"metrics-listen", required_argument, 0, OPT_METRICS},
    {"log-level", required_argument, 0, OPT_LOG_LEVEL},
    {"log-format", required_argument, 0, OPT_LOG_FORMAT},
    {"rpc-threads", required_argument, 0, OPT_RPC_THREADS},
    {"worker-threads", required_argument, 0, OPT_WORKER_THREADS},
    {"print-config", no_argument, 0, OPT_PRINT_CONFIG},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {0, 0, 0, 0},
};

int ao_config_from_args(int argc, char **argv, Agentos__V1__ServerConfig **out, ao_status_t *st)
{
    *out = NULL;
    const char *config_path = NULL;
    /* First pass: find --config (flags apply on top of the file). */
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (c == OPT_CONFIG) config_path = optarg;
        else if (c == OPT_HELP) {
            fputs(ao_config_usage, stdout);
            return 1;
        } else if (c == OPT_VERSION) {
            puts("agentosd 0.1.0");
            return 1;
        } else if (c == '?' || c == ':') {
            return ao_status_set(st, AO_EINVAL, "unknown option or missing value: %s (see --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc)
        return ao_status_set(st, AO_EINVAL, "unexpected argument \"%s\" (see --help)",
                             argv[optind]);

    Agentos__V1__ServerConfig *cfg;
    int rc = ao_config_load(config_path, &cfg, st);
    if (rc) return rc;

    int listen_replaced = 0, print = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            if (!listen_replaced) {
                for (size_t i = 0; i < cfg->n_listen; i++) free(cfg->listen[i]);
                cfg->n_listen = 0;
                listen_replaced = 1;
            }
            cfg->listen = ao_xrealloc(cfg->listen, (cfg->n_listen + 1) * sizeof *cfg->listen);
            cfg->listen[cfg->n_listen++] = ao_xstrdup(optarg);
            break;
        case OPT_DATA_DIR:
            ENSURE(cfg, storage, Agentos__V1__StorageConfig, agentos__v1__storage_config);
            set_str(&cfg->storage->data_dir, optarg);
            break;
        case OPT_DURABILITY:
            ENSURE(cfg, storage, Agentos__V1__StorageConfig, agentos__v1__storage_config);
            if (!strcmp(optarg, "sync"))
                cfg->storage->durability = AGENTOS__V1__DURABILITY__DURABILITY_SYNC;
            else if (!strcmp(optarg, "async"))
                cfg->storage->durability = AGENTOS__V1__DURABILITY__DURABILITY_ASYNC;
            else
                rc = ao_status_set(st, AO_EINVAL, "--durability: expected sync or async, got \"%s\"",
                                   optarg);
            break;
        case OPT_INSECURE:
            cfg->insecure = 1;
            break;
        case OPT_TLS_CERT:
            ENSURE(cfg, tls, Agentos__V1__ServerTls, agentos__v1__server_tls);
            set_str(&cfg->tls->cert_file, optarg);
            break;
        case OPT_TLS_KEY:
            ENSURE(cfg, tls, Agentos__V1__ServerTls, agentos__v1__server_tls);
            set_str(&cfg->tls->key_file, optarg);
            break;
        case OPT_TLS_CLIENT_CA:
            ENSURE(cfg, tls, Agentos__V1__ServerTls, agentos__v1__server_tls);
            set_str(&cfg->tls->client_ca_file, optarg);
            break;
        case OPT_REQUIRE_CLIENT_CERT:
            ENSURE(cfg, tls, Agentos__V1__ServerTls, agentos__v1__server_tls);
            cfg->tls->require_client_cert = 1;
            break;
        case OPT_METRICS:
            set_str(&cfg->metrics_listen, optarg);
            break;
        case OPT_LOG_LEVEL:
            ENSURE(cfg, log, Agentos__V1__LogConfig, agentos__v1__log_config);
            set_str(&cfg->log->level, optarg);
            break;
        case OPT_LOG_FORMAT:
            ENSURE(cfg, log, Agentos__V1__LogConfig, agentos__v1__log_config);
            set_str(&cfg->log->format, optarg);
            break;
        case OPT_RPC_THREADS:
            rc = parse_uint("--rpc-threads", optarg, &cfg->rpc_threads, st);
            break;
        case OPT_WORKER_THREADS:
            ENSURE(cfg, executor, Agentos__V1__ExecutorConfig, agentos__v1__executor_config);
            rc = parse_uint("--worker-threads", optarg, &cfg->executor->worker_threads, st);
            break;
        case OPT_PRINT_CONFIG:
            print = 1;
            break;
        default:
            break;
        }
        if (rc) break;
    }
    if (!rc) {
        ao_config_defaults(cfg);
        rc = ao_config_validate(cfg, st);
    }
    if (!rc && cfg->log) {
        const char *lv = cfg->log->level, *fm = cfg->log->format;
        if (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error"))
            rc = ao_status_set(st, AO_EINVAL, "log.level: expected debug, info, warn or error, got \"%s\"", lv);
        else if (strcmp(fm, "text") && strcmp(fm, "json"))
            rc = ao_status_set(st, AO_EINVAL, "log.format: expected text or json, got \"%s\"", fm);
    }
    if (rc) {
        ao_config_free(cfg);
        return rc;
    }
    if (print) {
        char *json = ao_pbjson_encode(&cfg->base, AO_PBJSON_PRETTY);
        puts(json);
        free(json);
        ao_config_free(cfg);
        return 1;
    }
    *out = cfg;
    return 0;
}
