/*
 * One libcurl multi loop, on its own thread, shared by every HTTP backend:
 * connection reuse (and HTTP/2 multiplexing where the server offers it),
 * thousands of transfers in flight without a thread each.
 *
 * Thread-safe: submit and cancel from any thread; completions run on the
 * loop's thread.
 */
#ifndef AO_HTTP_LOOP_H
#define AO_HTTP_LOOP_H

#include <curl/curl.h>
#include <stdatomic.h>

typedef struct ao_http_loop ao_http_loop_t;
typedef struct ao_http_req ao_http_req_t;

/* Called once per request on the loop thread: the transfer's result and
 * the HTTP status (0 if none). A cancelled request completes with
 * `cancelled` set (code CURLE_ABORTED_BY_CALLBACK). */
typedef void (*ao_http_done_fn)(ao_http_req_t *req, CURLcode code, long status, int cancelled);

struct ao_http_req {
    /* Set by the submitter: a configured easy handle (owned by the
     * submitter, who cleans it up after done). */
    CURL *easy;
    ao_http_done_fn done;
    void *ud;
    /* Private. */
    struct ao_http_req *next, *prev;
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
