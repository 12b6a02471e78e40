/*
 * Threads: the loop thread owns the multi handle and the active list;
 * other threads hand requests over through `incoming` (under `lock`) and
 * raise cancel flags, then wake the loop with curl_multi_wakeup.
 */
#include "http_loop.h"

#include "mem.h"

#include <pthread.h>
#include <stdlib.h>

struct ao_http_loop {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t lock;
    ao_http_req_t *incoming; /* submitted, not yet added */
    atomic_int cancels;      /* cancel flags raised since the last scan */
    atomic_int stop;
    atomic_uint active_n;
    ao_http_req_t *active;   /* loop thread only */
};

static void link_active(ao_http_loop_t *l, ao_http_req_t *r)
{
    r->prev = NULL;
    r->next = l->active;
    if (l->active) l->active->prev = r;
    l->active = r;
}

static void unlink_active(ao_http_loop_t *l, ao_http_req_t *r)
{
    if (r->prev) r->prev->next = r->next;
    else l->active = r->next;
    if (r->next) r->next->prev = r->prev;
}

static void finish(ao_http_loop_t *l, ao_http_req_t *r, CURLcode code, int cancelled)
{
    curl_multi_remove_handle(l->multi, r->easy);
    unlink_active(l, r);
    atomic_fetch_sub(&l->active_n, 1);
    long status = 0;
    if (!cancelled) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    r->done(r, cancelled ? CURLE_ABORTED_BY_CALLBACK : code, status, cancelled);
}

static void *loop_main(void *arg)
{
    ao_http_loop_t *l = arg;
    while (!atomic_load(&l->stop)) {
        pthread_mutex_lock(&l->lock);
        ao_http_req_t *in = l->incoming;
        l->incoming = NULL;
        pthread_mutex_unlock(&l->lock);
        while (in) {
            ao_http_req_t *next = in->next;
            curl_easy_setopt(in->easy, CURLOPT_PRIVATE, in);
            link_active(l, in);
            CURLMcode mc = curl_multi_add_handle(l->multi, in->easy);
            if (mc != CURLM_OK) finish(l, in, CURLE_FAILED_INIT, 0);
            in = next;
        }
        if (atomic_exchange(&l->cancels, 0)) {
            ao_http_req_t *r = l->active;
            while (r) {
                ao_http_req_t *next = r->next;
                if (atomic_load(&r->cancel)) finish(l, r, CURLE_ABORTED_BY_CALLBACK, 1);
                r = next;
            }
        }
        int running = 0;
        curl_multi_perform(l->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(l->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            ao_http_req_t *r = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            finish(l, r, msg->data.result, 0);
        }
        curl_multi_poll(l->multi, NULL, 0, 1000, NULL);
    }
    /* Stopping: whatever is left completes as cancelled. */
    pthread_mutex_lock(&l->lock);
    ao_http_req_t *in = l->incoming;
    l->incoming = NULL;
    pthread_mutex_unlock(&l->lock);
    while (in) {
        ao_http_req_t *next = in->next;
        atomic_fetch_sub(&l->active_n, 1);
        in->done(in, CURLE_ABORTED_BY_CALLBACK, 0, 1);
        in = next;
    }
    while (l->active) finish(l, l->active, CURLE_ABORTED_BY_CALLBACK, 1);
    return NULL;
}

ao_http_loop_t *ao_http_loop_create(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ao_http_loop_t *l = ao_xcalloc(1, sizeof *l);
    l->multi = curl_multi_init();
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    /* Enough cached connections for many agents at high concurrency. */
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, 20000L);
    pthread_mutex_init(&l->lock, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l)) ao_fatal("cannot start the HTTP loop");
    return l;
}

void ao_http_loop_destroy(ao_http_loop_t *l)
{
    if (!l) return;
    atomic_store(&l->stop, 1);
    curl_multi_wakeup(l->multi);
    pthread_join(l->thread, NULL);
    curl_multi_cleanup(l->multi);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void ao_http_loop_submit(ao_http_loop_t *l, ao_http_req_t *r)
{
    atomic_init(&r->cancel, 0);
    atomic_fetch_add(&l->active_n, 1);
    pthread_mutex_lock(&l->lock);
    r->next = l->incoming;
    l->incoming = r;
    pthread_mutex_unlock(&l->lock);
    curl_multi_wakeup(l->multi);
}

void ao_http_loop_cancel(ao_http_loop_t *l, ao_http_req_t *r)
{
    atomic_store(&r->cancel, 1);
    atomic_store(&l->cancels, 1);
    curl_multi_wakeup(l->multi);
}

unsigned ao_http_loop_active(ao_http_loop_t *l)
{
    return atomic_load(&l->active_n);
}
