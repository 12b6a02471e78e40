/*
 * One libcurl multi loop, on its own thread, shared by every HTTP backend:
 * connection reuse (and HTTP/2 multiplexing where the server offers it),
 * thousands of transfers in flight without a thread each. The loop is
 * event-driven (curl_multi_socket_action over epoll), so what a wakeup
 * costs follows the sockets that are ready, not the transfers in flight;
 * and a backend with more than a few hundred calls in flight spreads them
 * over several multi handles (see http_loop.c), so that libcurl's own
 * per-transfer costs do not grow with all of its connections.
 *
 * Connection setup goes through a gate per backend (ao_http_gate_t): a
 * burst of thousands of calls to a backend with no idle connection would
 * otherwise start thousands of TLS handshakes at once, each advancing a
 * step at a time in turn, so that every one of them takes as long as all of
 * them together (and trips its connect timeout) and none is answered before
 * nearly all have connected.
 *
 * Thread-safe: submit and cancel from any thread; completions run on the
 * loop's thread.
 */
#ifndef AO_HTTP_LOOP_H
#define AO_HTTP_LOOP_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct ao_http_loop ao_http_loop_t;
typedef struct ao_http_req ao_http_req_t;

/* Called once per request on the loop thread: the transfer's result and
 * the HTTP status (0 if none). A cancelled request completes with
 * `cancelled` set (code CURLE_ABORTED_BY_CALLBACK). */
typedef void (*ao_http_done_fn)(ao_http_req_t *req, CURLcode code, long status, int cancelled);

/* A gate on connection setup, one per backend, owned by it (it must outlive
 * every request that names it). A request that names a gate counts as
 * connecting from the moment the loop starts it until its connection is
 * ready to carry the request (TCP and TLS done, a kept connection reused,
 * or a stream on an HTTP/2 connection), or it ends; at most max_connecting
 * of a gate's requests are connecting at once, and the others wait in the
 * loop, in order, not started: their connect timeout has not begun (their
 * attempt timeout has). Requests that find a kept connection pass at once,
 * so the gate costs nothing to a warm backend. */
typedef struct ao_http_gate {
    unsigned max_connecting;
    /* Private (loop thread). */
    unsigned connecting;
    unsigned started;           /* in a multi handle */
    unsigned waiting;           /* at the gate */
    unsigned shard, turn;       /* which multi handles its transfers go to */
    unsigned width;             /* ... from shard on, in turn */
    int64_t width_us;           /* when width last grew or held */
    ao_http_req_t *head, *tail; /* waiting, in order */
    struct ao_http_gate *next_open;
    int in_open;
} ao_http_gate_t;

/* Before the gate's first request. */
void ao_http_gate_init(ao_http_gate_t *gate, unsigned max_connecting);

struct ao_http_req {
    /* Set by the submitter: a configured easy handle (owned by the
     * submitter, who cleans it up after done). The loop sets
     * CURLOPT_PRIVATE, CURLOPT_PREREQFUNCTION and CURLOPT_PREREQDATA: leave
     * them alone. */
    CURL *easy;
    ao_http_done_fn done;
    void *ud;
    /* The backend's gate, or NULL to start at once. */
    ao_http_gate_t *gate;
    /* Private. */
    ao_http_loop_t *loop;
    struct ao_http_shard *shard;       /* the multi handle it is in */
    struct ao_http_req *next, *prev;   /* in flight: incoming, then active */
    struct ao_http_req *wnext, *wprev; /* waiting at the gate */
    int state;
    int connecting;
    atomic_int cancel;
};

ao_http_loop_t *ao_http_loop_create(void);
/* Stops the thread; requests still in flight complete as cancelled. */
void ao_http_loop_destroy(ao_http_loop_t *loop);

/* Starts a transfer. req must live until its done has returned. */
void ao_http_loop_submit(ao_http_loop_t *loop, ao_http_req_t *req);
/* Asks an in-flight transfer to stop; its done follows (cancelled, unless
 * it completed first). Call only before done has returned. */
void ao_http_loop_cancel(ao_http_loop_t *loop, ao_http_req_t *req);

/* Transfers in flight. */
unsigned ao_http_loop_active(ao_http_loop_t *loop);

#endif
