"""Races: client threads submitting, cancelling, resuming (with
overrides), checkpointing, publishing and streaming on the same workflows
at once, with a live subscriber to the whole log; the same under kill -9
and under SIGTERM at random moments; with https and gRPC calls in flight; streams opened and
dropped at random while events are appended. Every call ends in a status
that is not a server fault, every workflow settles, nothing is lost,
repeated or reordered, and agentosd stops cleanly under ASan and UBSan.
The operations are seeded; their interleaving is not, which is the point:
each run tries other orders."""

import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

from harness import (SERVER_FAULTS, Mock, Server, builtin, epb, free_port, make_certs, opb, params, spb, task,
                     wait_until, wpb)

TERMINAL = (spb.WorkflowStatus.WORKFLOW_STATUS_SUCCESS, spb.WorkflowStatus.WORKFLOW_STATUS_PARTIAL_SUCCESS,
            spb.WorkflowStatus.WORKFLOW_STATUS_FAILED, spb.WorkflowStatus.WORKFLOW_STATUS_CANCELLED,
            spb.WorkflowStatus.WORKFLOW_STATUS_BUDGET_EXCEEDED)


def race_agents():
    return [builtin("noop"), builtin("slow", latencyMs=30),
            builtin("flaky", latencyMs=5, failFirst=1, failRetryable=True)]


class Clients:
    """Client threads doing random operations on a shared set of workflows
    (the newest most: those still running, where the races are)."""

    OPS = ["submit", "submit", "cancel", "resume", "checkpoint", "get", "list", "publish", "stream"]
    OVERRIDE_AGENT = "noop"  # a resume's override of t0

    def __init__(self, srv, n=6, seed=0):
        self.srv, self.n, self.seed = srv, n, seed
        self.ids, self.lock = [], threading.Lock()
        self.faults, self.counts = [], {}
        self.stop = threading.Event()

    def spec(self, rng):
        tasks = []
        for i in range(rng.randint(1, 6)):
            deps = ["t%d" % j for j in range(i) if rng.random() < 0.4]
            tasks.append(task("t%d" % i, rng.choice(["noop", "slow", "flaky"]), deps=deps,
                              optional=rng.random() < 0.5,
                              retry=wpb.RetryPolicy(max_attempts=rng.randint(1, 3), initial_backoff_ms=5)))
        return wpb.WorkflowSpec(name="race", tasks=tasks)

    def worker(self, k):
        rng = random.Random(self.seed * 100 + k)
        c = self.srv.stub()
        while not self.stop.is_set():
            with self.lock:
                wf = rng.choice(self.ids[-8:]) if self.ids else None
            op = rng.choice(self.OPS) if wf else "submit"
            try:
                if op == "submit":
                    # Some retried with a request id (each with its own
                    # spec): the same workflow back, maybe while it is
                    # cancelled or resumed.
                    rid = rng.choice(["", "", "", "again-%d" % self.seed, "again-%d-b" % self.seed])
                    s = self.spec(random.Random(rid) if rid else rng)
                    r = c.submit(s, wait=rng.random() < 0.3, request_id=rid, timeout=10)
                    with self.lock:
                        self.ids.append(r.workflow_id)
                elif op == "cancel":
                    c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf, reason="race"), timeout=10)
                elif op == "resume":
                    c.ResumeWorkflow(opb.ResumeWorkflowRequest(
                        workflow_id=wf, wait=rng.random() < 0.3,
                        overrides=[epb.TaskOverride(task_id="t0", agent=self.OVERRIDE_AGENT)]), timeout=10)
                elif op == "checkpoint":
                    c.Checkpoint(opb.CheckpointRequest(workflow_id=wf, note="race"), timeout=10)
                elif op == "get":
                    c.get(wf)
                elif op == "list":
                    c.ListWorkflows(opb.ListWorkflowsRequest(page_size=20), timeout=10)
                elif op == "publish":
                    c.PublishEvent(opb.PublishEventRequest(
                        workflow_id=wf, finding=wpb.Finding(key="k", value="v", confidence=0.5)), timeout=10)
                else:
                    for _ in c.StreamEvents(opb.StreamEventsRequest(workflow_id=wf, to_seq=1), timeout=1):
                        pass
                key = (op, "OK")
            except ValueError:
                return  # the harness closed the channel: agentosd was killed
            except grpc.RpcError as e:
                key = (op, e.code().name)
                if e.code() in SERVER_FAULTS and not self.stop.is_set():
                    self.faults.append("%s %s: %s %s" % (op, wf, e.code(), e.details()))
                if e.code() == grpc.StatusCode.UNAVAILABLE and self.stop.is_set():
                    return
            with self.lock:
                self.counts[key] = self.counts.get(key, 0) + 1

    def done(self):
        with self.lock:
            return sum(self.counts.values())

    def run(self, until):
        """Runs the clients until until() returns (it may set stop and kill
        the server: calls failing then are not faults)."""
        self.stop.clear()
        threads = [threading.Thread(target=self.worker, args=(k,)) for k in range(self.n)]
        for t in threads:
            t.start()
        until()
        self.stop.set()
        for t in threads:
            t.join(timeout=60)

    def settle(self, test, c):
        """Cancels what still runs; waits until every workflow has finished."""
        for wf in self.ids:
            try:
                c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf, reason="end"))
            except grpc.RpcError as e:
                test.assertNotIn(e.code(), SERVER_FAULTS)
        for wf in self.ids:
            wait_until(lambda: c.get(wf).status in TERMINAL, timeout=30, what="workflow %s to settle" % wf)


def log_seqs(srv):
    out = subprocess.run([os.environ.get("AO_LOGDUMP", "ao-logdump"), srv.data_dir, "--seqs"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.split()
    return [int(x) for x in out]


class ConcurrentLifecycleTest(unittest.TestCase):
    def test_concurrent_operations_on_shared_workflows(self):
        """Six client threads at once, 1,500 operations, on a shared set of
        workflows: submit, cancel, resume (with overrides), checkpoint,
        get, list, publish, stream. Races between a workflow's end, its
        cancel and its resume must end in statuses, never a fault; a live
        subscriber to the whole log sees every event once and in order; at
        the end every workflow settles, the log reads back 1..N, and
        agentosd stops cleanly under ASan and UBSan."""
        srv = race_server().start()
        self.addCleanup(srv.cleanup)
        clients = Clients(srv)
        # A subscriber to the whole log, live from the first event: it must
        # see every event once, in order, whatever the races.
        seen, stream_error = [], []
        follow = srv.stub().StreamEvents(opb.StreamEventsRequest(from_seq=1), timeout=120)

        def subscriber():
            try:
                for ev in follow:
                    seen.append(ev.seq)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    stream_error.append(e)

        sub = threading.Thread(target=subscriber, daemon=True)
        sub.start()
        clients.run(until=lambda: wait_until(lambda: clients.done() >= 1500, 120, "1,500 operations"))
        self.assertEqual(clients.faults, [], "\n".join(clients.faults[:10]) + "\n" + srv.log()[-3000:])
        self.assertIsNone(srv.proc.poll(), "agentosd exited")
        self.assertGreater(sum(clients.counts.values()), 200, clients.counts)
        self.assertGreater(clients.counts.get(("submit", "OK"), 0), 20, clients.counts)
        self.assertNotIn(("submit", "ALREADY_EXISTS"), clients.counts)
        c = srv.stub()
        clients.settle(self, c)
        # Submissions retried with one request id, from six threads at once:
        # one workflow each.
        by_request = {}
        for wf in set(clients.ids):
            rid = c.get(wf).request_id
            if rid:
                by_request.setdefault(rid, set()).add(wf)
        self.assertTrue(by_request)
        for rid, wfs in by_request.items():
            self.assertEqual(len(wfs), 1, "request id %s made %d workflows" % (rid, len(wfs)))
        last = max(c.get(wf).last_seq for wf in clients.ids)
        wait_until(lambda: seen and seen[-1] >= last, timeout=30, what="the subscriber to reach seq %d" % last)
        follow.cancel()
        sub.join(timeout=10)
        self.assertEqual(stream_error, [])
        self.assertEqual(seen, list(range(1, len(seen) + 1)), "a gap, a duplicate or a reordering")
        # Finished workflows were frozen in the middle of it (race_server).
        self.assertIn("froze finished workflows", srv.log())
        srv.stop()
        seqs = log_seqs(srv)
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))

    def test_kill9_during_concurrent_operations(self):
        """The same clients, and agentosd killed with -9 at a random moment,
        three times. After each restart every workflow whose submission was
        acknowledged is there, the unfinished ones go on, and the clients
        carry on; at the end every workflow settles and the log reads back
        1..N."""
        restarts_under_load(self, seed=9, stop=lambda srv: srv.kill9())

    def test_sigterm_during_concurrent_operations(self):
        """The same with SIGTERM, a live subscriber and clients waiting for
        results (some with deadlines that pass as their workflows end):
        each stop is clean (exit 0, no sanitizer report: the harness
        checks)."""
        restarts_under_load(self, seed=21, stop=lambda srv: srv.stop(), follow=True)


def race_server():
    """agentosd for the races, keeping only four finished workflows whole:
    the others are frozen once unused for 20 ms and thawed by the next
    call that names them, in the middle of the races."""
    srv = Server(agents=race_agents())
    srv.config["storage"].update({"maxFinishedInMemory": 4, "freezeIdleMs": 20})
    return srv


def restarts_under_load(test, seed, stop, follow=False, srv=None, clients_cls=None, slow_task=None):
    """Three rounds of: the racing clients until a random moment once
    submissions flow, stop(srv), restart, every acknowledged submission
    there. Then everything settles and the log reads back 1..N."""
    if srv is None:
        srv = race_server().start()
        test.addCleanup(srv.cleanup)
    clients = (clients_cls or Clients)(srv, seed=seed)
    rng = random.Random(seed * 101)
    for _ in range(3):
        base = len(clients.ids)
        reader = None
        if follow:
            stream = srv.stub().StreamEvents(opb.StreamEventsRequest(from_seq=1), timeout=60)

            def read():
                try:
                    for _ in stream:
                        pass
                except grpc.RpcError:
                    pass  # ended by the stop
            reader = threading.Thread(target=read, daemon=True)
            reader.start()

        # Clients waiting for results when the stop comes: the stop answers
        # them while their calls are being cancelled.
        waiters = []

        def wait_for_results():
            c = srv.stub()
            while not clients.stop.is_set():
                try:
                    c.submit(wpb.WorkflowSpec(tasks=[slow_task() if slow_task else task("w", "slow")]), wait=True,
                             timeout=rng.choice([0.02, 0.05, 5]))
                except (grpc.RpcError, ValueError):
                    pass  # a deadline, or the stop: both are the point
        if follow:
            waiters = [threading.Thread(target=wait_for_results, daemon=True) for _ in range(4)]
            for t in waiters:
                t.start()

        def stop_now():
            wait_until(lambda: len(clients.ids) > base + 15, 30, "submissions to flow")
            time.sleep(rng.uniform(0.0, 0.5))  # the random moment of the stop
            clients.stop.set()  # calls in flight now fail UNAVAILABLE: not faults
            stop(srv)

        clients.run(until=stop_now)
        for t in waiters:
            t.join(timeout=30)
        if reader:
            reader.join(timeout=30)
        srv.start()
        c = srv.stub()
        for wf in clients.ids:
            c.get(wf)  # acknowledged: it survived the stop
    test.assertEqual(clients.faults, [], "\n".join(clients.faults[:10]))
    c = srv.stub()
    clients.settle(test, c)
    srv.stop()
    seqs = log_seqs(srv)
    test.assertEqual(seqs, list(range(1, len(seqs) + 1)))


class RemoteClients(Clients):
    """The racing clients on remote agents: https and gRPC calls in flight
    (mock_agent over TLS, each call held a random few ms) while their
    workflows are cancelled and resumed."""

    OVERRIDE_AGENT = "grpc"

    def spec(self, rng):
        tasks = []
        for i in range(rng.randint(1, 5)):
            deps = ["t%d" % j for j in range(i) if rng.random() < 0.3]
            tasks.append(task("t%d" % i, rng.choice(["https", "grpc"]), deps=deps, optional=rng.random() < 0.5,
                              attempt_timeout_ms=rng.choice([20, 2000]),
                              params=params(**{"mock.latency_ms": rng.randint(0, 40),
                                               "mock.fail_rate": rng.choice([0, 0.3])}),
                              retry=wpb.RetryPolicy(max_attempts=rng.randint(1, 3), initial_backoff_ms=5)))
        return wpb.WorkflowSpec(name="remote race", tasks=tasks)


class RemoteCancelRaceTest(unittest.TestCase):
    def remote_server(self):
        """agentosd with an https and a gRPC agent on mock_agent over TLS."""
        tmp = tempfile.mkdtemp(prefix="agentos-race-")
        self.addCleanup(shutil.rmtree, tmp, True)
        certs = make_certs(os.path.join(tmp, "certs"))
        mock = Mock(certs)
        self.addCleanup(mock.stop)
        tls = {"caFile": os.path.join(certs, "ca.pem")}
        srv = Server(agents=[
            {"name": "https", "kind": "BACKEND_KIND_HTTPS", "url": "https://localhost:%d/agent" % mock.https,
             "tls": tls, "maxConcurrency": 16, "breaker": {"failureThreshold": 100000}},
            {"name": "grpc", "kind": "BACKEND_KIND_GRPC", "url": "localhost:%d" % mock.grpc, "tls": tls,
             "maxConcurrency": 16, "breaker": {"failureThreshold": 100000}},
        ]).start()
        self.addCleanup(srv.cleanup)
        return srv

    def test_sigterm_with_remote_calls_in_flight(self):
        """SIGTERM three times while https and gRPC calls are in flight and
        clients wait for results: each stop clean, nothing acknowledged
        lost, everything settles after the restarts."""
        restarts_under_load(self, seed=33, stop=lambda srv: srv.stop(), follow=True, srv=self.remote_server(),
                            clients_cls=RemoteClients,
                            slow_task=lambda: task("w", "https", params=params(**{"mock.latency_ms": 30})))

    def test_cancel_and_resume_with_remote_calls_in_flight(self):
        """Cancels, resumes and timeouts racing with https and gRPC replies:
        statuses, never a fault; every workflow settles; agentosd stops
        cleanly under ASan and UBSan (a call freed while its reply arrives
        would show there)."""
        srv = self.remote_server()
        clients = RemoteClients(srv, seed=3)
        clients.run(until=lambda: wait_until(lambda: clients.done() >= 800, 120, "800 operations"))
        self.assertEqual(clients.faults, [], "\n".join(clients.faults[:10]) + "\n" + srv.log()[-3000:])
        self.assertGreater(clients.counts.get(("cancel", "OK"), 0), 5, clients.counts)
        self.assertGreater(clients.counts.get(("resume", "OK"), 0), 5, clients.counts)
        c = srv.stub()
        clients.settle(self, c)
        srv.stop()
        seqs = log_seqs(srv)
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))


class StreamChurnTest(unittest.TestCase):
    def test_streams_opened_and_dropped_while_events_flow(self):
        """Subscribers that come and go at random (cancelled mid-stream, cut
        by short deadlines, bounded replays, live follows, workflow and
        type filters, from any offset) while four publishers append: no
        fault, every stream that ran to its bound got exactly its range in
        order, the subscriber gauge returns to zero, and agentosd stops
        cleanly under ASan and UBSan."""
        metrics = free_port()
        srv = Server(agents=[builtin("noop"), builtin("stuck", hang=True)],
                     config={"metricsListen": "127.0.0.1:%d" % metrics,
                             "limits": {"subscriberBuffer": 8, "maxSubscribers": 64}})
        srv.config["storage"]["durability"] = "DURABILITY_ASYNC"  # fast appends: the streams are tested
        srv.start()
        self.addCleanup(srv.cleanup)
        c = srv.stub()
        wfs = [c.submit(wpb.WorkflowSpec(tasks=[task("hold", "stuck")]), wait=False).workflow_id for _ in range(3)]
        stop = threading.Event()
        faults, bounded_ok, published = [], [0], [0]

        def publisher(k):
            stub = srv.stub()
            i = 0
            while not stop.is_set():
                i += 1
                stub.PublishEvent(opb.PublishEventRequest(
                    workflow_id=wfs[i % 3], custom=epb.CustomPayload(name="p", data="%d-%d" % (k, i))))
                published[0] += 1

        def subscriber(k):
            rng = random.Random(k)
            stub = srv.stub()
            while not stop.is_set():
                lo = rng.randint(1, max(1, published[0]))
                req = opb.StreamEventsRequest(from_seq=lo)
                kind = rng.randrange(4)
                if kind == 0:
                    req.to_seq = lo + rng.randint(0, 50)  # bounded: must end OK with exactly lo..to
                if rng.random() < 0.4:
                    req.workflow_id = rng.choice(wfs)
                if rng.random() < 0.2:
                    req.types.append(epb.EVENT_TYPE_CUSTOM)
                call = stub.StreamEvents(req, timeout=rng.choice([0.05, 0.3, 2]))
                got = []
                try:
                    for ev in call:
                        got.append(ev.seq)
                        if kind == 1 and len(got) >= rng.randint(1, 20):
                            call.cancel()  # dropped mid-stream
                            break
                    if kind == 0 and not req.workflow_id and not req.types:
                        if got != list(range(lo, req.to_seq + 1)):
                            faults.append("bounded %d..%d got %r" % (lo, req.to_seq, got[:5]))
                        bounded_ok[0] += 1
                except grpc.RpcError as e:
                    if e.code() in SERVER_FAULTS:
                        faults.append("stream %r: %s %s" % (req, e.code(), e.details()))
                if got != sorted(set(got)):
                    faults.append("out of order or repeated: %r" % got[:10])

        threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=subscriber, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: bounded_ok[0] >= 30 and published[0] >= 600, 120, "streams to churn")
        stop.set()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(faults, [], "\n".join(faults[:10]))

        def subscribers():
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=5).read().decode()
            return [int(l.split()[1]) for l in text.splitlines() if l.startswith("agentos_subscribers ")][0]
        wait_until(lambda: subscribers() == 0, 20, "every stream to be gone")
        for wf in wfs:
            c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))
        srv.stop()


if __name__ == "__main__":
    unittest.main()
