/* Unit tests for server/agents/http_loop.c: transfers through a connection
 * gate all complete (also spread over several multi handles), the gate
 * holds connection setups to its limit, a
 * request waiting at the gate can be cancelled, and destroying the loop
 * completes what is waiting and connecting as cancelled. Over plain HTTP
 * on loopback: a tiny server in the test answers at once, and a listener
 * whose accept queue is full (backlog 0, one connection queued, never
 * accepted) makes connects hang, since Linux drops SYNs to a full queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_loop.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

typedef struct req {
    ao_http_req_t r;
    int done, cancelled;
    CURLcode code;
    long status;
} req_t;

static int opened; /* sockets libcurl opened (under lock) */

static void on_done(ao_http_req_t *hr, CURLcode code, long status, int cancelled)
{
    req_t *q = (req_t *)hr;
    pthread_mutex_lock(&lock);
    q->done = 1;
    q->code = code;
    q->status = status;
    q->cancelled = cancelled;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static curl_socket_t count_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)ud;
    (void)purpose;
    pthread_mutex_lock(&lock);
    opened++;
    pthread_mutex_unlock(&lock);
    return socket(a->family, a->socktype, a->protocol);
}

static req_t *req_new(int port, ao_http_gate_t *gate)
{
    req_t *q = calloc(1, sizeof *q);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/agent", port);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, count_socket);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 20000L);
    q->r.easy = e;
    q->r.done = on_done;
    q->r.gate = gate;
    return q;
}

static void req_free(req_t *q)
{
    curl_easy_cleanup(q->r.easy);
    free(q);
}

/* Waits until n of the requests are done (at most ms). */
static int wait_done(req_t **qs, int n, int want, int ms)
{
    int64_t until = ao_mono_us() + (int64_t)ms * 1000;
    pthread_mutex_lock(&lock);
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++)
            done += qs[i]->done;
        if (done >= want || ao_mono_us() >= until) {
            pthread_mutex_unlock(&lock);
            return done;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cond, &lock, &ts);
    }
}

static int listen_on(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- a server that answers every request at once (keep-alive) ------------------ */

typedef struct server {
    int lfd, port, stop_pipe[2];
    pthread_t thread;
} server_t;

static void *server_main(void *arg)
{
    server_t *s = arg;
    struct pollfd fds[1024];
    int n = 2;
    fds[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) < 0) continue;
        if (fds[1].revents) break;
        if (fds[0].revents && n < 1024) {
            int c = accept(s->lfd, NULL, NULL);
            if (c >= 0) fds[n++] = (struct pollfd){.fd = c, .events = POLLIN};
        }
        for (int i = 2; i < n; i++) {
            if (!fds[i].revents) continue;
            char buf[4096];
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r <= 0) {
                close(fds[i].fd);
                fds[i--] = fds[--n];
                continue;
            }
            /* One small request per read on loopback; answer it. */
            static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if (write(fds[i].fd, reply, sizeof reply - 1) < 0) {
                close(fds[i].fd);
                fds[i--] = fds[--n];
            }
        }
    }
    for (int i = 2; i < n; i++)
        close(fds[i].fd);
    return NULL;
}

static void server_start(server_t *s)
{
    s->lfd = listen_on(512, &s->port);
    assert_int_equal(pipe(s->stop_pipe), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server_t *s)
{
    assert_int_equal(write(s->stop_pipe[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->lfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
}

/* A port whose connects hang: backlog 0 with its one place taken. */
static int black_hole(int *port, int *filler)
{
    int lfd = listen_on(0, port);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)*port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(*filler, (struct sockaddr *)&a, sizeof a), 0);
    return lfd;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_burst_through_gate_completes(void **state)
{
    (void)state;
    server_t s;
    server_start(&s);
    ao_http_loop_t *l = ao_http_loop_create();
    ao_http_gate_t gate;
    ao_http_gate_init(&gate, 4);
    /* 400 through the gate: more than one multi handle's share (http_loop.c). */
    enum { N = 600 };
    req_t *qs[N];
    for (int i = 0; i < N; i++)
        qs[i] = req_new(s.port, i % 3 ? &gate : NULL);
    for (int i = 0; i < N; i++)
        ao_http_loop_submit(l, &qs[i]->r);
    assert_int_equal(wait_done(qs, N, N, 20000), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(qs[i]->code, CURLE_OK);
        assert_int_equal(qs[i]->status, 200);
        assert_false(qs[i]->cancelled);
    }
    assert_int_equal(ao_http_loop_active(l), 0);
    assert_int_equal(gate.connecting, 0);
    ao_http_loop_destroy(l);
    for (int i = 0; i < N; i++)
        req_free(qs[i]);
    server_stop(&s);
}

static void test_gate_limits_connection_setups(void **state)
{
    (void)state;
    int port, filler;
    int lfd = black_hole(&port, &filler);
    ao_http_loop_t *l = ao_http_loop_create();
    ao_http_gate_t gate;
    ao_http_gate_init(&gate, 2);
    pthread_mutex_lock(&lock);
    opened = 0;
    pthread_mutex_unlock(&lock);
    enum { N = 5 };
    req_t *qs[N];
    for (int i = 0; i < N; i++)
        qs[i] = req_new(port, &gate);
    for (int i = 0; i < N; i++)
        ao_http_loop_submit(l, &qs[i]->r);
    /* Time for the loop to start what it would: none can finish. */
    assert_int_equal(wait_done(qs, N, 1, 300), 0);
    pthread_mutex_lock(&lock);
    int n_opened = opened;
    pthread_mutex_unlock(&lock);
    assert_int_equal(n_opened, 2);
    for (int i = 0; i < N; i++)
        ao_http_loop_cancel(l, &qs[i]->r);
    assert_int_equal(wait_done(qs, N, N, 5000), N);
    for (int i = 0; i < N; i++) {
        assert_true(qs[i]->cancelled);
        assert_int_equal(qs[i]->code, CURLE_ABORTED_BY_CALLBACK);
    }
    assert_int_equal(gate.connecting, 0);
    ao_http_loop_destroy(l);
    for (int i = 0; i < N; i++)
        req_free(qs[i]);
    close(filler);
    close(lfd);
}

static void test_cancel_while_waiting_at_gate(void **state)
{
    (void)state;
    int port, filler;
    int lfd = black_hole(&port, &filler);
    ao_http_loop_t *l = ao_http_loop_create();
    ao_http_gate_t gate;
    ao_http_gate_init(&gate, 1);
    req_t *first = req_new(port, &gate), *waiting = req_new(port, &gate);
    ao_http_loop_submit(l, &first->r);
    ao_http_loop_submit(l, &waiting->r);
    req_t *both[2] = {first, waiting};
    assert_int_equal(wait_done(both, 2, 1, 200), 0);
    /* The waiting one goes at once; the one connecting goes on. */
    ao_http_loop_cancel(l, &waiting->r);
    req_t *w[1] = {waiting};
    assert_int_equal(wait_done(w, 1, 1, 2000), 1);
    assert_true(waiting->cancelled);
    pthread_mutex_lock(&lock);
    int first_done = first->done;
    pthread_mutex_unlock(&lock);
    assert_false(first_done);
    assert_int_equal(ao_http_loop_active(l), 1);
    ao_http_loop_cancel(l, &first->r);
    assert_int_equal(wait_done(both, 2, 2, 2000), 2);
    assert_true(first->cancelled);
    ao_http_loop_destroy(l);
    req_free(first);
    req_free(waiting);
    close(filler);
    close(lfd);
}

static void test_destroy_completes_waiting_and_connecting(void **state)
{
    (void)state;
    int port, filler;
    int lfd = black_hole(&port, &filler);
    ao_http_loop_t *l = ao_http_loop_create();
    ao_http_gate_t gate;
    ao_http_gate_init(&gate, 1);
    enum { N = 3 };
    req_t *qs[N];
    for (int i = 0; i < N; i++) {
        qs[i] = req_new(port, &gate);
        ao_http_loop_submit(l, &qs[i]->r);
    }
    assert_int_equal(wait_done(qs, N, 1, 200), 0);
    ao_http_loop_destroy(l);
    for (int i = 0; i < N; i++) {
        assert_true(qs[i]->done);
        assert_true(qs[i]->cancelled);
        req_free(qs[i]);
    }
    close(filler);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_through_gate_completes),
        cmocka_unit_test(test_gate_limits_connection_setups),
        cmocka_unit_test(test_cancel_while_waiting_at_gate),
        cmocka_unit_test(test_destroy_completes_waiting_and_connecting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
