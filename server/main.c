/*
 * agentosd: parse the configuration, build the server, serve until SIGINT
 * or SIGTERM, shut down cleanly (exit 0).
 */
#include "config.h"
#include "log.h"
#include "server.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    /* Block the signals before any thread exists (gRPC's threads inherit
     * the mask); the main thread takes them with sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* gRPC's c-ares resolver (Debian 12) leaves an allocation behind at
     * shutdown; the native resolver (getaddrinfo) does not. A setting in
     * the environment wins. */
    setenv("GRPC_DNS_RESOLVER", "native", 0);

    Agentos__V1__ServerConfig *cfg = NULL;
    ao_status_t st;
    ao_status_clear(&st);
    int rc = ao_config_from_args(argc, argv, &cfg, &st);
    if (rc == 1) return 0;
    if (rc) {
        fprintf(stderr, "agentosd: %s\n", st.msg);
        return 2;
    }
    ao_log_configure(cfg->log->level, cfg->log->format);

    ao_server_t *srv = NULL;
    if ((rc = ao_server_create(cfg, &srv, &st)) || (rc = ao_server_start(srv, &st))) {
        AO_ERROR("server", "cannot start: %s", st.msg);
        fprintf(stderr, "agentosd: %s\n", st.msg);
        if (srv) {
            ao_server_stop(srv);
            ao_server_destroy(srv);
        }
        return 1;
    }
    char malloc_name[128];
    AO_INFO("server", "ready malloc=\"%s\"", ao_malloc_name(malloc_name, sizeof malloc_name));
    int sig = 0;
    sigwait(&sigs, &sig);
    AO_INFO("server", "signal received sig=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    ao_server_stop(srv);
    ao_server_destroy(srv);
    AO_INFO("server", "stopped");
    return 0;
}
