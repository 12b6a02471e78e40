/*
 * Threads: Check and Watch run on completion-queue threads; shutdown runs on
 * the main thread. The watcher list and the status are guarded by `lock`.
 */
#include "health.h"

#include "grpc/health/v1/health.pb-c.h"
#include "mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct watcher {
    struct watcher *next;
    ao_health_t *h;
    ao_rpc_call_t *call;
    int sent_status; /* the status last sent, -1 before the first */
    int known;       /* the watched service is known */
} watcher_t;

struct ao_health {
    pthread_mutex_t lock;
    int serving;
    watcher_t *watchers;
};

#define HEALTH_STATUS(x) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##x

static int known_service(const char *name)
{
    return !*name || !strcmp(name, "agentos.v1.Orchestrator") || !strcmp(name, "grpc.health.v1.Health");
}

static void health_check(ao_rpc_call_t *call, const ProtobufCMessage *req, void *ud)
{
    ao_health_t *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
    if (!known_service(r->service)) {
        char msg[200];
        snprintf(msg, sizeof msg, "unknown service \"%.100s\"", r->service);
        ao_rpc_fail(call, AO_ENOTFOUND, msg);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    pthread_mutex_lock(&h->lock);
    resp.status = h->serving ? HEALTH_STATUS(SERVING) : HEALTH_STATUS(NOT_SERVING);
    pthread_mutex_unlock(&h->lock);
    ao_rpc_reply(call, &resp.base);
}

/* Whoever unlinks a watcher finishes its call. */
static int unlink_watcher(ao_health_t *h, watcher_t *w)
{
    for (watcher_t **p = &h->watchers; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return 1;
        }
    }
    return 0;
}

static int watch_next(ao_rpc_call_t *call, void *ud, grpc_slice *out)
{
    watcher_t *w = ud;
    /* Called under the call's lock; the status is read under ours. */
    pthread_mutex_lock(&w->h->lock);
    int status = !w->known      ? HEALTH_STATUS(SERVICE_UNKNOWN)
                 : w->h->serving ? HEALTH_STATUS(SERVING)
                                 : HEALTH_STATUS(NOT_SERVING);
    pthread_mutex_unlock(&w->h->lock);
    if (status == w->sent_status) return 0;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = status;
    *out = ao_rpc_pack(&resp.base);
    w->sent_status = status;
    return 1;
}

static void watch_cancelled(ao_rpc_call_t *call, void *ud)
{
    watcher_t *w = ud;
    ao_health_t *h = w->h;
    pthread_mutex_lock(&h->lock);
    int mine = unlink_watcher(h, w);
    pthread_mutex_unlock(&h->lock);
    if (mine) ao_rpc_stream_finish(call, 0, NULL);
}

static const ao_rpc_stream_ops_t watch_ops = {watch_next, watch_cancelled, NULL};

static void health_watch(ao_rpc_call_t *call, const ProtobufCMessage *req, void *ud)
{
    ao_health_t *h = ud;
    const Grpc__Health__V1__HealthCheckRequest *r = (const Grpc__Health__V1__HealthCheckRequest *)req;
    /* In the call's arena: it lives as long as the call, so callbacks that
     * race with the end of the stream never see it freed. */
    watcher_t *w = ao_rpc_call_alloc(call, sizeof *w);
    memset(w, 0, sizeof *w);
    w->h = h;
    w->call = call;
    w->sent_status = -1;
    w->known = known_service(r->service);
    pthread_mutex_lock(&h->lock);
    int serving = h->serving;
    if (serving) {
        w->next = h->watchers;
        h->watchers = w;
    }
    pthread_mutex_unlock(&h->lock);
    ao_rpc_stream_start(call, &watch_ops, w);
    /* Already shutting down: the one status, then the end. (Unlisted, so
     * the cancel path leaves the call to us.) */
    if (!serving) ao_rpc_stream_finish(call, 0, NULL);
}

int ao_health_create(ao_rpc_server_t *srv, ao_health_t **out, ao_status_t *st)
{
    ao_health_t *h = ao_xcalloc(1, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->serving = 1;
    static const ao_rpc_method_impl_t impls[] = {
        {"Check", AO_RPC_UNARY, health_check, 0},
        {"Watch", AO_RPC_SERVER_STREAMING, health_watch, 0},
    };
    int rc = ao_rpc_server_add_service(srv, &grpc__health__v1__health__descriptor, impls, 2, h, st);
    if (rc) {
        ao_health_destroy(h);
        return rc;
    }
    *out = h;
    return 0;
}

void ao_health_shutdown(ao_health_t *h)
{
    pthread_mutex_lock(&h->lock);
    h->serving = 0;
    watcher_t *list = h->watchers;
    h->watchers = NULL;
    pthread_mutex_unlock(&h->lock);
    while (list) {
        watcher_t *w = list;
        list = w->next;
        /* Queue NOT_SERVING, then the end of the stream after it. */
        ao_rpc_stream_kick(w->call);
        ao_rpc_stream_finish(w->call, 0, NULL);
    }
}

void ao_health_destroy(ao_health_t *h)
{
    if (!h) return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}
