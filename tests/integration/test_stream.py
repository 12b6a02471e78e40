"""StreamEvents and checkpoints over gRPC: the switch from the backlog to
live events under concurrent appends (no gap, no duplicate), a slow
subscriber beside a fast one, disconnects, tenant isolation, limits."""

import hashlib
import socket
import threading
import time
import unittest
import urllib.request

import grpc

from harness import (EV, WS, Client, Server, builtin, epb, free_port, opb, task, wait_until, wpb)

TOKENS = {"alpha": "token-of-alpha", "beta": "token-of-beta"}


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def custom(wf, text):
    return opb.PublishEventRequest(workflow_id=wf, custom=epb.CustomPayload(name="load", data=text))


class Collector:
    """Reads a stream on its own thread into a list."""

    def __init__(self, client, request, timeout=60, slow_gate=None):
        self.events = []
        self.error = None
        self.call = client.StreamEvents(request, timeout=timeout)
        self.gate = slow_gate
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            for ev in self.call:
                if self.gate is not None:
                    self.gate.wait()
                self.events.append(ev)
        except grpc.RpcError as e:
            self.error = e

    def seqs(self):
        return [e.seq for e in self.events]

    def cancel(self):
        self.call.cancel()
        self.thread.join(timeout=10)


class StreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.metrics_port = free_port()
        cls.srv = Server(agents=[builtin("noop"), builtin("stuck", hang=True),
                                 {"name": "paid", "kind": "BACKEND_KIND_BUILTIN",
                                  "builtin": {"promptTokens": 10, "completionTokens": 5},
                                  "price": {"perCallMicros": "100"}}], config={
            "tokens": [{"tenant": t, "tokenSha256": sha(k), "name": t} for t, k in TOKENS.items()],
            "limits": {"subscriberBuffer": 32, "maxSubscribers": 40},
            "metricsListen": "127.0.0.1:%d" % cls.metrics_port,
        })
        cls.srv.start()
        cls.a = cls.srv.stub(TOKENS["alpha"])
        cls.b = cls.srv.stub(TOKENS["beta"])

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def subscribers(self):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("agentos_subscribers "):
                return int(line.split()[1])
        raise AssertionError("no agentos_subscribers gauge")

    def running_workflow(self, client):
        return client.submit(wpb.WorkflowSpec(tasks=[task("hold", "stuck")]), wait=False).workflow_id

    def test_backlog_to_live_switch_under_concurrent_appends(self):
        wf = self.running_workflow(self.a)
        acked, stop = [], threading.Event()
        lock = threading.Lock()

        def publish(n):
            i = 0
            while not stop.is_set():
                i += 1
                r = self.a.PublishEvent(custom(wf, "p%d-%d" % (n, i)))
                with lock:
                    acked.append(r.seq)
        pubs = [threading.Thread(target=publish, args=(n,)) for n in range(3)]
        for t in pubs:
            t.start()
        wait_until(lambda: len(acked) > 200, what="a backlog to build up")
        # Subscribers join at various points while appends continue: from the
        # start, from the middle of the backlog, and from now.
        with lock:
            mid = acked[len(acked) // 2]
        subs = [Collector(self.a, opb.StreamEventsRequest(workflow_id=wf)),
                Collector(self.a, opb.StreamEventsRequest(from_seq=mid, workflow_id=wf)),
                Collector(self.a, opb.StreamEventsRequest(from_now=True, workflow_id=wf))]
        wait_until(lambda: len(acked) > 1500, 60, what="appends during the switch")
        stop.set()
        for t in pubs:
            t.join()
        last = max(acked)
        for s in subs:
            wait_until(lambda: s.events and s.seqs()[-1] >= last, 30, what="the stream to reach %d" % last)
            s.cancel()
        wf_seqs = [e.seq for e in self.a.events(wf, timeout=5) if e.seq <= last]
        full = subs[0].seqs()
        self.assertEqual(full[:len(wf_seqs)], wf_seqs)
        self.assertEqual(len(full), len(set(full)), "duplicates in the stream")
        self.assertEqual(full, sorted(full))
        # Every acknowledged append was delivered, exactly once.
        self.assertTrue(set(acked) <= set(full))
        from_mid = subs[1].seqs()
        self.assertEqual(from_mid, [s for s in full if s >= mid][:len(from_mid)])
        self.assertEqual(from_mid[-1], full[-1])
        live = subs[2].seqs()
        self.assertEqual(live, [s for s in full if s >= live[0]][:len(live)])
        self.assertEqual(len(live), len(set(live)))
        self.a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))

    def test_slow_subscriber_does_not_slow_a_fast_one(self):
        wf = self.running_workflow(self.a)
        gate = threading.Event()
        slow = Collector(self.a, opb.StreamEventsRequest(from_now=True, workflow_id=wf), slow_gate=gate)
        fast = Collector(self.a, opb.StreamEventsRequest(from_now=True, workflow_id=wf))
        wait_until(lambda: self.subscribers() >= 2, what="both subscribers")
        n = 3000
        blob = "x" * 180
        t0 = time.monotonic()
        for i in range(n):
            self.a.PublishEvent(custom(wf, "%d %s" % (i, blob)))
        wait_until(lambda: len(fast.events) >= n, 60, what="the fast subscriber to get every event")
        fast_secs = time.monotonic() - t0
        self.assertLessEqual(len(slow.events), 1, "the slow one has not read yet")
        # Now the slow one reads: everything, in order, no gap (it fell back
        # to reading the log past its buffer of 32).
        gate.set()
        wait_until(lambda: len(slow.events) >= n, 60, what="the slow subscriber to catch up")
        self.assertEqual(slow.seqs(), fast.seqs()[:len(slow.events)])
        seqs = fast.seqs()
        self.assertEqual(len(seqs), len(set(seqs)))
        fast.cancel()
        slow.cancel()
        self.assertLess(fast_secs, 60)
        self.a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))

    def test_metrics_scrape_is_not_held_off_by_a_trickling_client(self):
        """The metrics endpoint serves one connection at a time: a client
        that sends its request a byte at a time is cut off at the scrape's
        deadline, and the next scrape is answered while it still trickles."""
        slow = socket.create_connection(("127.0.0.1", self.metrics_port), timeout=10)
        answered = threading.Event()

        def trickle():
            try:
                while not answered.is_set():
                    slow.sendall(b"G")
                    answered.wait(0.2)  # a byte every 0.2 s until the other scrape is answered
            except OSError:
                pass  # agentosd closed it: its deadline passed
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        self.assertGreaterEqual(self.subscribers(), 0)  # answered (its own timeout: 5 s)
        answered.set()
        t.join(timeout=10)
        slow.close()

    def test_disconnect_and_deadline_clean_up(self):
        base = self.subscribers()
        s = Collector(self.a, opb.StreamEventsRequest(from_now=True))
        wait_until(lambda: self.subscribers() == base + 1, what="the subscriber to register")
        s.cancel()
        wait_until(lambda: self.subscribers() == base, what="the subscriber to go away")
        s = Collector(self.a, opb.StreamEventsRequest(from_now=True), timeout=0.5)
        s.thread.join(timeout=10)
        self.assertEqual(s.error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        wait_until(lambda: self.subscribers() == base, what="the expired subscriber to go away")

    def test_tenant_isolation(self):
        wa = self.running_workflow(self.a)
        wb = self.running_workflow(self.b)
        live_b = Collector(self.b, opb.StreamEventsRequest(from_now=True))
        for i in range(50):
            self.a.PublishEvent(custom(wa, "secret of alpha %d" % i))
        self.b.PublishEvent(custom(wb, "beta's own"))
        wait_until(lambda: any(e.workflow_id == wb for e in live_b.events), what="beta's event")
        live_b.cancel()
        backlog_b = self.b.events(timeout=3)
        for ev in live_b.events + backlog_b:
            self.assertEqual(ev.tenant, "beta")
            self.assertNotEqual(ev.workflow_id, wa)
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.b.StreamEvents(opb.StreamEventsRequest(workflow_id=wa), timeout=5))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            self.b.get(wa)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            list(Client(self.srv.channel()).StreamEvents(opb.StreamEventsRequest(), timeout=5))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        for wf, c in ((wa, self.a), (wb, self.b)):
            c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))

    def test_agent_health_shows_only_the_callers_spend(self):
        # Regression: GetAgentHealth showed every tenant's spend through a
        # backend to any tenant.
        def spend(c):
            h = c.GetAgentHealth(opb.GetAgentHealthRequest(agent="paid")).agents[0]
            return h.cost_micros, h.tokens
        a0, b0 = spend(self.a), spend(self.b)
        for _ in range(3):
            r = self.a.submit(wpb.WorkflowSpec(tasks=[task("t", "paid")]))
            self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        self.assertEqual(spend(self.a), (a0[0] + 300, a0[1] + 45))
        self.assertEqual(spend(self.b), b0)
        r = self.b.submit(wpb.WorkflowSpec(tasks=[task("t", "paid")]))
        self.assertEqual(spend(self.b), (b0[0] + 100, b0[1] + 15))
        self.assertEqual(spend(self.a), (a0[0] + 300, a0[1] + 45))
        # The breaker and load figures are the backend's, the same for both.
        ha = self.a.GetAgentHealth(opb.GetAgentHealthRequest(agent="paid")).agents[0]
        hb = self.b.GetAgentHealth(opb.GetAgentHealthRequest(agent="paid")).agents[0]
        self.assertEqual((ha.calls_total, ha.breaker), (hb.calls_total, hb.breaker))
        self.assertEqual(ha.calls_total, 4)

    def test_filters_and_limits(self):
        r = self.a.submit(wpb.WorkflowSpec(tasks=[task("x", "noop"), task("y", "noop", deps=["x"])]))
        evs = self.a.events(r.workflow_id, timeout=3)
        only_y = [e for e in self.collect(opb.StreamEventsRequest(workflow_id=r.workflow_id, task_ids=["y"]))]
        self.assertTrue(only_y)
        self.assertTrue(all(e.task_id == "y" for e in only_y))
        typed = self.collect(opb.StreamEventsRequest(workflow_id=r.workflow_id,
                                                     types=[EV.EVENT_TYPE_TASK_SUCCEEDED]))
        self.assertEqual([e.task_id for e in typed], ["x", "y"])
        self.assertEqual(len(evs), len(set(e.seq for e in evs)))
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.a.StreamEvents(opb.StreamEventsRequest(types=[999]), timeout=3))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # max_subscribers (40): the 41st stream is refused, others unharmed.
        base = self.subscribers()
        held = [Collector(self.a, opb.StreamEventsRequest(from_now=True)) for _ in range(40 - base)]
        wait_until(lambda: self.subscribers() == 40, what="40 subscribers")
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.a.StreamEvents(opb.StreamEventsRequest(from_now=True), timeout=3))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("limits.max_subscribers", cm.exception.details())
        for h in held:
            h.cancel()
        wait_until(lambda: self.subscribers() == base, what="the streams to close")

    def test_bounded_replay_ends_with_ok(self):
        r = self.a.submit(wpb.WorkflowSpec(tasks=[task("x", "noop"), task("y", "noop", deps=["x"])]))
        last = self.a.get(r.workflow_id).last_seq
        evs = list(self.a.StreamEvents(opb.StreamEventsRequest(workflow_id=r.workflow_id, to_seq=last), timeout=10))
        self.assertEqual(evs[-1].seq, last)
        self.assertEqual(evs[0].type, EV.EVENT_TYPE_WORKFLOW_SUBMITTED)
        # Filtered so that no event reaches to_seq: it still ends.
        only = list(self.a.StreamEvents(opb.StreamEventsRequest(
            workflow_id=r.workflow_id, to_seq=last, types=[EV.EVENT_TYPE_TASK_STARTED]), timeout=10))
        self.assertEqual([e.task_id for e in only], ["x", "y"])
        # A bound in the future ends once it is reached live.
        wf = self.running_workflow(self.a)
        start = self.a.get(wf).last_seq
        got = []
        t = __import__("threading").Thread(target=lambda: got.extend(self.a.StreamEvents(
            opb.StreamEventsRequest(workflow_id=wf, from_seq=start + 1, to_seq=start + 3), timeout=20)))
        t.start()
        for i in range(5):
            self.a.PublishEvent(custom(wf, "n%d" % i))
        t.join(timeout=30)
        self.assertEqual([e.seq for e in got], [start + 1, start + 2, start + 3])
        self.a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))

    def test_filtered_backlog_past_a_buffer_loses_nothing(self):
        # A backlog read fills at most a buffer (limits.subscriber_buffer,
        # 32 here) per pass through the workflow index; with a type filter
        # most events it passes are not wanted. Regression: a pass that
        # visited a buffer's worth without filling it skipped the rest of
        # the backlog, so a filtered stream of a workflow lost every event
        # past its first 32.
        wf = self.running_workflow(self.a)
        findings = []
        first = None
        for block in range(3):
            # More than a pass over the whole log visits (4 buffers).
            for i in range(150):
                r = self.a.PublishEvent(custom(wf, "filler %d-%d" % (block, i)))
                first = first or r.seq
            r = self.a.PublishEvent(opb.PublishEventRequest(
                workflow_id=wf, finding=wpb.Finding(key="k%d" % block, value="v", confidence=0.5)))
            findings.append(r.seq)
        last = self.a.get(wf).last_seq
        only = [EV.EVENT_TYPE_FINDING_PUBLISHED]
        bounded = list(self.a.StreamEvents(opb.StreamEventsRequest(
            workflow_id=wf, to_seq=last, types=only), timeout=10))
        self.assertEqual([e.seq for e in bounded], findings)
        # The same through the whole log (no workflow filter) and live.
        whole = list(self.a.StreamEvents(opb.StreamEventsRequest(
            from_seq=first, to_seq=last, types=only), timeout=10))
        self.assertEqual([e.seq for e in whole], findings)
        live = Collector(self.a, opb.StreamEventsRequest(workflow_id=wf, types=only))
        wait_until(lambda: len(live.events) >= 3, 10, what="the findings from the backlog")
        live.cancel()
        self.assertEqual(live.seqs(), findings)
        self.a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))

    def collect(self, req, timeout=3):
        out = []
        try:
            for ev in self.a.StreamEvents(req, timeout=timeout):
                out.append(ev)
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        return out

    def test_checkpoint_create_list_get(self):
        wf = self.running_workflow(self.a)
        ck = self.a.Checkpoint(opb.CheckpointRequest(workflow_id=wf, note="before the review"))
        self.assertTrue(ck.id.startswith("ckpt-"))
        self.assertEqual((ck.reason, ck.note, ck.workflow_id), ("manual", "before the review", wf))
        self.assertEqual(list(ck.next_steps), ["hold"])
        listed = self.a.ListCheckpoints(opb.ListCheckpointsRequest(workflow_id=wf)).checkpoints
        self.assertIn(ck.id, [c.id for c in listed])
        got = self.a.GetCheckpoint(opb.GetCheckpointRequest(workflow_id=wf, checkpoint_id=ck.id))
        self.assertEqual(got.seq, ck.seq)
        latest = self.a.GetCheckpoint(opb.GetCheckpointRequest(workflow_id=wf))
        self.assertEqual(latest.id, ck.id)
        saved = self.collect(opb.StreamEventsRequest(workflow_id=wf, types=[EV.EVENT_TYPE_CHECKPOINT_SAVED]))
        self.assertEqual(saved[-1].checkpoint_saved.checkpoint_id, ck.id)
        with self.assertRaises(grpc.RpcError) as cm:
            self.a.GetCheckpoint(opb.GetCheckpointRequest(workflow_id=wf, checkpoint_id="ckpt-1"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            self.b.Checkpoint(opb.CheckpointRequest(workflow_id=wf))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=wf))


if __name__ == "__main__":
    unittest.main()
