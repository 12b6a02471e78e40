/*
 * Threads: the loop thread owns the multi handles, the epoll set, the
 * active list and every gate's state; other threads hand requests over
 * through `incoming` (under `lock`) and raise cancel flags, then wake the
 * loop through an eventfd in the epoll set.
 *
 * Why curl_multi_socket_action over epoll and not curl_multi_perform /
 * curl_multi_poll: both of those visit every transfer on each call (perform
 * runs each one's state machine, poll gathers each one's sockets), and the
 * loop wakes for every submission and every reply, so with 10,000 calls in
 * flight each wakeup cost time in proportion to all of them. socket_action
 * runs only the transfers whose sockets are ready or whose timers expired.
 *
 * Why several multi handles (shards): libcurl (7.88, Debian 12's) spends on
 * each transfer time in proportion to the connections its multi handle
 * caches: curl_multi_remove_handle walks every cached connection (to close
 * a CONNECT_ONLY one), and a new transfer walks the host's connections for
 * an idle one. With 10,000 connections that is most of a call's CPU time. A
 * gate's transfers stay on one shard while it has up to SHARD_SPAN of them
 * in flight or waiting (one connection cache: reuse and HTTP/2
 * multiplexing as usual) and spread over more shards, in turn, above that.
 */
#include "http_loop.h"

#include "mem.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { R_INCOMING = 0, R_WAITING, R_ADDED };

#define MAX_EVENTS 512
/* 32 x 256: 10,000 calls in flight to one backend make some 300 connections
 * a handle, where a call's CPU time is back near what it is with a few
 * hundred calls (bench/backends, warm batch of 10,000: about 130 us a call,
 * against 170 with 8 x 1024 and 320 with one handle). */
#define SHARDS 32
#define SHARD_SPAN 256
/* Well under libcurl's 118 s for an idle connection: a busy backend's kept
 * connections are still there when its next burst comes. */
#define WIDTH_HOLD_US (30 * 1000000LL)
/* epoll data of the eventfd: no shard has this index. */
#define WAKE_TAG UINT32_MAX

typedef struct ao_http_shard {
    ao_http_loop_t *loop;
    CURLM *multi;
    uint32_t index;
    int64_t deadline_us; /* libcurl's timer; -1: none */
} ao_http_shard_t;

struct ao_http_loop {
    ao_http_shard_t shards[SHARDS];
    int epfd, wakefd;
    pthread_t thread;
    pthread_mutex_t lock;
    ao_http_req_t *in_head, *in_tail; /* submitted, not yet taken (under lock) */
    atomic_int woken;                 /* a wakeup is pending: no need for another */
    atomic_int cancels;               /* cancel flags raised since the last scan */
    atomic_int stop;
    atomic_uint active_n;
    /* Loop thread only. */
    ao_http_req_t *active; /* taken: waiting at a gate or added to a multi handle */
    ao_http_gate_t *open;  /* gates with room and requests waiting */
};

/* Spreads backends over the shards (any thread, before their first call). */
static atomic_uint next_gate_shard;

void ao_http_gate_init(ao_http_gate_t *g, unsigned max_connecting)
{
    g->max_connecting = max_connecting ? max_connecting : 1;
    g->connecting = 0;
    g->started = 0;
    g->shard = atomic_fetch_add(&next_gate_shard, 1) % SHARDS;
    g->turn = 0;
    g->width = 1;
    g->width_us = 0;
    g->waiting = 0;
    g->head = g->tail = NULL;
    g->next_open = NULL;
    g->in_open = 0;
}

/* ---- lists (loop thread) -------------------------------------------------------- */

static void link_active(ao_http_loop_t *l, ao_http_req_t *r)
{
    r->prev = NULL;
    r->next = l->active;
    if (l->active) l->active->prev = r;
    l->active = r;
}

static void unlink_active(ao_http_loop_t *l, ao_http_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->active = r->next;
    if (r->next) r->next->prev = r->prev;
}

static void mark_open(ao_http_loop_t *l, ao_http_gate_t *g)
{
    if (g->in_open || !g->head || g->connecting >= g->max_connecting) return;
    g->in_open = 1;
    g->next_open = l->open;
    l->open = g;
}

static void gate_push(ao_http_loop_t *l, ao_http_req_t *r)
{
    ao_http_gate_t *g = r->gate;
    r->state = R_WAITING;
    r->wnext = NULL;
    r->wprev = g->tail;
    if (g->tail)
        g->tail->wnext = r;
    else
        g->head = r;
    g->tail = r;
    g->waiting++;
    mark_open(l, g);
}

static void gate_unlink(ao_http_req_t *r)
{
    ao_http_gate_t *g = r->gate;
    if (r->wprev)
        r->wprev->wnext = r->wnext;
    else
        g->head = r->wnext;
    if (r->wnext)
        r->wnext->wprev = r->wprev;
    else
        g->tail = r->wprev;
    g->waiting--;
}

/* r's connection is ready (or r is over): its place at the gate frees up.
 * May run inside a libcurl callback: it only marks the gate open; the loop
 * starts the next requests after libcurl returns. */
static void gate_release(ao_http_loop_t *l, ao_http_req_t *r)
{
    if (!r->connecting) return;
    r->connecting = 0;
    r->gate->connecting--;
    mark_open(l, r->gate);
}

/* ---- transfers -------------------------------------------------------------------- */

static void finish(ao_http_loop_t *l, ao_http_req_t *r, CURLcode code, int cancelled)
{
    if (r->state == R_ADDED) {
        curl_multi_remove_handle(r->shard->multi, r->easy);
        if (r->gate) r->gate->started--;
    } else if (r->state == R_WAITING) {
        gate_unlink(r);
    }
    if (r->gate) gate_release(l, r);
    unlink_active(l, r);
    atomic_fetch_sub(&l->active_n, 1);
    long status = 0;
    if (!cancelled && r->state == R_ADDED)
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    r->done(r, cancelled ? CURLE_ABORTED_BY_CALLBACK : code, status, cancelled);
}

/* libcurl: the connection is set up and the request is about to go. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    ao_http_req_t *r = ud;
    if (r->gate) gate_release(r->loop, r);
    return CURL_PREREQFUNC_OK;
}

/* The gate's own shard while it has few transfers; in turn over as many
 * shards as it has SHARD_SPANs of them (in flight and waiting) above that.
 * The width grows at once and shrinks only after WIDTH_HOLD_US of lower
 * load: a burst arrives a few requests at a time, and its transfers should
 * go where the last burst left its idle connections. */
static ao_http_shard_t *pick_shard(ao_http_loop_t *l, ao_http_gate_t *g)
{
    if (!g) return &l->shards[0];
    unsigned want = 1 + (g->started + g->waiting) / SHARD_SPAN;
    if (want > SHARDS) want = SHARDS;
    int64_t now = ao_mono_us();
    if (want >= g->width || now - g->width_us > WIDTH_HOLD_US) {
        if (want >= g->width) g->width_us = now;
        g->width = want;
    }
    return &l->shards[(g->shard + g->turn++ % g->width) % SHARDS];
}

static void start(ao_http_loop_t *l, ao_http_req_t *r)
{
    r->shard = pick_shard(l, r->gate);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(r->easy, CURLOPT_PREREQDATA, r);
    if (r->gate) {
        r->connecting = 1;
        r->gate->connecting++;
    }
    if (curl_multi_add_handle(r->shard->multi, r->easy) != CURLM_OK) {
        finish(l, r, CURLE_FAILED_INIT, 0);
        return;
    }
    r->state = R_ADDED;
    if (r->gate) r->gate->started++;
}

/* Starts what the open gates let through. */
static void admit(ao_http_loop_t *l)
{
    while (l->open) {
        ao_http_gate_t *g = l->open;
        l->open = g->next_open;
        g->in_open = 0;
        while (g->head && g->connecting < g->max_connecting) {
            ao_http_req_t *r = g->head;
            gate_unlink(r);
            r->state = R_INCOMING;
            start(l, r);
        }
    }
}

/* Takes the submitted requests over; starts them (or queues them at their
 * gates) unless the loop is stopping. */
static void take_incoming(ao_http_loop_t *l, int starting)
{
    pthread_mutex_lock(&l->lock);
    ao_http_req_t *in = l->in_head;
    l->in_head = l->in_tail = NULL;
    pthread_mutex_unlock(&l->lock);
    while (in) {
        ao_http_req_t *next = in->next;
        link_active(l, in);
        if (starting && in->gate)
            gate_push(l, in);
        else if (starting)
            start(l, in);
        in = next;
    }
}

static void drain_done(ao_http_loop_t *l, ao_http_shard_t *sh)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sh->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        ao_http_req_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        finish(l, r, msg->data.result, 0);
    }
}

/* ---- libcurl's sockets and timers, on epoll --------------------------------------- */

static int on_socket(CURL *e, curl_socket_t s, int what, void *ud, void *socketp)
{
    (void)e;
    ao_http_shard_t *sh = ud;
    int epfd = sh->loop->epfd;
    if (what == CURL_POLL_REMOVE) {
        /* libcurl tells before it closes the socket; a failure means it is
         * gone already, which is what we want. */
        epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {0};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)sh->index << 32 | (uint32_t)s;
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd, op, s, &ev) && errno == (op == EPOLL_CTL_ADD ? EEXIST : ENOENT))
        epoll_ctl(epfd, op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    if (!socketp) curl_multi_assign(sh->multi, s, sh); /* any non-NULL: "registered" */
    return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *ud)
{
    (void)m;
    ao_http_shard_t *sh = ud;
    sh->deadline_us = timeout_ms < 0 ? -1 : ao_mono_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

/* Until the first shard's timer, in ms for epoll_wait (-1: none). */
static int wait_ms(const ao_http_loop_t *l)
{
    int64_t first = -1;
    for (int i = 0; i < SHARDS; i++) {
        int64_t d = l->shards[i].deadline_us;
        if (d >= 0 && (first < 0 || d < first)) first = d;
    }
    if (first < 0) return -1;
    int64_t d = first - ao_mono_us();
    if (d <= 0) return 0;
    return d >= INT32_MAX * 1000LL ? INT32_MAX : (int)((d + 999) / 1000);
}

static void *loop_main(void *arg)
{
    ao_http_loop_t *l = arg;
    pthread_setname_np(pthread_self(), "ao-http");
    struct epoll_event evs[MAX_EVENTS];
    int running;
    while (!atomic_load(&l->stop)) {
        take_incoming(l, 1);
        if (atomic_exchange(&l->cancels, 0)) {
            ao_http_req_t *r = l->active;
            while (r) {
                ao_http_req_t *next = r->next;
                if (atomic_load(&r->cancel)) finish(l, r, CURLE_ABORTED_BY_CALLBACK, 1);
                r = next;
            }
        }
        admit(l);
        int n = epoll_wait(l->epfd, evs, MAX_EVENTS, wait_ms(l));
        for (int i = 0; i < n; i++) {
            uint32_t tag = (uint32_t)(evs[i].data.u64 >> 32);
            if (tag == WAKE_TAG) {
                uint64_t v;
                if (read(l->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                    ao_fatal("HTTP loop: eventfd read");
                /* Cleared before the next take: a submitter that finds the
                 * flag clear wakes us again. */
                atomic_store(&l->woken, 0);
                continue;
            }
            uint32_t e = evs[i].events;
            int flags = (e & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (e & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (e & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(l->shards[tag].multi, (curl_socket_t)(uint32_t)evs[i].data.u64,
                                     flags, &running);
        }
        int64_t now = ao_mono_us();
        for (int i = 0; i < SHARDS; i++) {
            ao_http_shard_t *sh = &l->shards[i];
            if (sh->deadline_us >= 0 && now >= sh->deadline_us) {
                sh->deadline_us = -1; /* on_timer may set a new one inside */
                curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
            }
            drain_done(l, sh);
        }
    }
    /* Stopping: whatever is left completes as cancelled. */
    take_incoming(l, 0);
    while (l->active)
        finish(l, l->active, CURLE_ABORTED_BY_CALLBACK, 1);
    return NULL;
}

static void wake(ao_http_loop_t *l)
{
    if (atomic_exchange(&l->woken, 1)) return;
    uint64_t one = 1;
    if (write(l->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        ao_fatal("HTTP loop: eventfd write");
}

ao_http_loop_t *ao_http_loop_create(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ao_http_loop_t *l = ao_xcalloc(1, sizeof *l);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wakefd < 0) ao_fatal("cannot set up the HTTP loop: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)WAKE_TAG << 32};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev)) ao_fatal("cannot set up the HTTP loop");
    for (uint32_t i = 0; i < SHARDS; i++) {
        ao_http_shard_t *sh = &l->shards[i];
        sh->loop = l;
        sh->index = i;
        sh->deadline_us = -1;
        sh->multi = curl_multi_init();
        curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
        /* Enough cached connections for many agents at high concurrency. */
        curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, 20000L);
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    }
    pthread_mutex_init(&l->lock, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l)) ao_fatal("cannot start the HTTP loop");
    return l;
}

void ao_http_loop_destroy(ao_http_loop_t *l)
{
    if (!l) return;
    atomic_store(&l->stop, 1);
    atomic_store(&l->woken, 0);
    wake(l);
    pthread_join(l->thread, NULL);
    for (int i = 0; i < SHARDS; i++)
        curl_multi_cleanup(l->shards[i].multi);
    close(l->wakefd);
    close(l->epfd);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

void ao_http_loop_submit(ao_http_loop_t *l, ao_http_req_t *r)
{
    atomic_init(&r->cancel, 0);
    r->loop = l;
    r->state = R_INCOMING;
    r->connecting = 0;
    r->next = NULL;
    atomic_fetch_add(&l->active_n, 1);
    pthread_mutex_lock(&l->lock);
    if (l->in_tail)
        l->in_tail->next = r;
    else
        l->in_head = r;
    l->in_tail = r;
    pthread_mutex_unlock(&l->lock);
    wake(l);
}

void ao_http_loop_cancel(ao_http_loop_t *l, ao_http_req_t *r)
{
    atomic_store(&r->cancel, 1);
    atomic_store(&l->cancels, 1);
    wake(l);
}

unsigned ao_http_loop_active(ao_http_loop_t *l)
{
    return atomic_load(&l->active_n);
}
