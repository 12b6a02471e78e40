"""Bad input never crashes agentosd: every RPC of the Orchestrator service
gets undecodable bytes and valid requests with random mutations (a fixed
seed, so a failure repeats). The mutations work on bytes (flipped, cut,
inserted, repeated) and, to get past decoding into the handlers'
validation, on fields: strings empty, long, with NUL or template marks;
numbers at their limits, NaN and infinities; unknown enum values; repeated
entries duplicated, added, removed. Each call must end with a gRPC status
that is not a server fault (UNAVAILABLE, UNKNOWN, INTERNAL, DATA_LOSS),
every INVALID_ARGUMENT must say what is wrong, and agentosd must go on
serving. Afterwards the log reads back whole (sequence numbers 1..N
without a gap) and agentosd stops cleanly: exit 0, no sanitizer report
(ctest runs it under ASan and UBSan).

The same for what agents send back: an https agent (mock_agent over real
TLS) answers with mutated AgentResult replies and planners with mutated
plans; every task ends SUCCEEDED or FAILED with an error that says why.

And for races: client threads submitting, cancelling, resuming,
checkpointing, publishing and streaming on the same workflows at once,
with a live subscriber to the whole log, with kill -9 at random moments,
and with https and gRPC calls in flight."""

import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from harness import TS, Mock, Server, builtin, epb, make_certs, opb, params, spb, task, wait_until, wpb

SERVICE = "/agentos.v1.Orchestrator/"
# Statuses that would mean agentosd failed, not the request.
SERVER_FAULTS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                 grpc.StatusCode.DATA_LOSS)
MUTATIONS_PER_SEED = 150


def mutate(rng, data):
    b = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and b:  # flip one to three bytes
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1 and b:  # cut
        del b[rng.randrange(len(b)):]
    elif kind == 2:  # insert random bytes
        at = rng.randrange(len(b) + 1)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif kind == 3 and b:  # repeat a slice (repeated fields, duplicated sub-messages)
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 24))
        b[j:j] = b[i:j] * rng.randint(1, 4)
    else:  # a varint field with a huge value, or a length running past the end
        b += rng.choice([b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x1a\xff\xff\xff\x0f",
                         b"\x12\x80\x80\x80\x80\x10"])
    return bytes(b)


STRINGS = ["", "x" * 300, "y" * 5000, "{{", "}}{{deps.nope.output}}", "{{context.nope}}", "\u00e9\u4e2d\U0001f600",
           "a\x00b", "../../etc", "a" * 257, " "]
DOUBLES = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e308, 0.5, 2.0]


def random_value(rng, f):
    """A value for field f that validation has to think about."""
    T = f.type
    if T == f.TYPE_STRING:
        return rng.choice(STRINGS)
    if T == f.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
    if T == f.TYPE_BOOL:
        return rng.random() < 0.5
    if T in (f.TYPE_DOUBLE, f.TYPE_FLOAT):
        return rng.choice(DOUBLES)
    if T == f.TYPE_ENUM:
        return rng.choice([v.number for v in f.enum_type.values] + [-1, 99, 2**31 - 1])
    if T in (f.TYPE_UINT32, f.TYPE_FIXED32):
        return rng.choice([0, 1, 7, 1000, 2**31, 2**32 - 1])
    if T in (f.TYPE_UINT64, f.TYPE_FIXED64):
        return rng.choice([0, 1, 1000, 2**53 + 1, 2**64 - 1])
    if T in (f.TYPE_INT32, f.TYPE_SINT32, f.TYPE_SFIXED32):
        return rng.choice([0, -1, 1, 2**31 - 1, -2**31])
    return rng.choice([0, -1, 1, 2**63 - 1, -2**63])


def mutate_fields(rng, msg, depth=0):
    """Sets, clears, repeats or adds one field somewhere in msg."""
    fields = msg.DESCRIPTOR.fields
    f = rng.choice(fields)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        getattr(msg, f.name)[rng.choice(STRINGS[:6])] = rng.choice(STRINGS)
    elif f.label == f.LABEL_REPEATED:
        items = getattr(msg, f.name)
        if f.message_type is not None:
            choice = rng.randrange(4)
            if choice == 0 and len(items):
                items.add().CopyFrom(rng.choice(items))  # a duplicate (duplicate task ids)
            elif choice == 1 and len(items) and depth < 4:
                mutate_fields(rng, rng.choice(items), depth + 1)
            elif choice == 2:
                del items[:]
            else:
                items.add()
        else:
            if len(items) and rng.random() < 0.3:
                del items[:]
            else:
                items.append(random_value(rng, f))
    elif f.message_type is not None:
        if rng.random() < 0.2:
            msg.ClearField(f.name)
        elif depth < 4:
            mutate_fields(rng, getattr(msg, f.name), depth + 1)
    else:
        setattr(msg, f.name, random_value(rng, f))


def mutate_request(rng, seed):
    m = type(seed)()
    m.CopyFrom(seed)
    for _ in range(rng.randint(1, 3)):
        mutate_fields(rng, m)
    return m.SerializeToString()


class FuzzTest(unittest.TestCase):
    def test_malformed_and_mutated_requests(self):
        srv = Server(agents=[builtin("noop")],
                     config={"limits": {"maxTasks": 64, "maxInputBytes": 4096}}).start()
        self.addCleanup(srv.cleanup)
        c = srv.stub()
        spec = wpb.WorkflowSpec(
            name="fuzz", labels={"team": "a"}, context={"company": "Acme"},
            budget=wpb.Budget(max_tokens=100000, max_api_calls=50, warn_fraction=0.8,
                              role_split=wpb.RoleSplit(orchestrator=0.1, extraction=0.4, analysis=0.4,
                                                       synthesis=0.1)),
            tasks=[task("a", input="about {{context.company}}", params=params(score=0.7)),
                   task("b", deps=["a"], input="from a: {{deps.a.output}}", optional=True, impact="minor",
                        retry=wpb.RetryPolicy(max_attempts=2, initial_backoff_ms=10, multiplier=2.0,
                                              max_backoff_ms=50, jitter=0.1)),
                   task("c", deps=["a"], attempt_timeout_ms=5000, total_timeout_ms=8000, authority=0.9),
                   task("d", deps=["b", "c"], kind=wpb.TASK_KIND_SYNTHESIS)])
        r = c.submit(spec, wait=True)
        wf = r.workflow_id
        ck = c.Checkpoint(opb.CheckpointRequest(workflow_id=wf, note="fuzz"))
        seeds = {
            "Orchestrate": opb.OrchestrateRequest(workflow=spec, wait=False, request_id="fuzz-1"),
            "GetWorkflow": opb.GetWorkflowRequest(workflow_id=wf, at_seq=3),
            "ListWorkflows": opb.ListWorkflowsRequest(page_size=5, labels={"team": "a"}),
            "CancelWorkflow": opb.CancelWorkflowRequest(workflow_id=wf, reason="fuzz"),
            "StreamEvents": opb.StreamEventsRequest(workflow_id=wf, from_seq=1, to_seq=4, task_ids=["a"]),
            "Checkpoint": opb.CheckpointRequest(workflow_id=wf, note="fuzz"),
            "ListCheckpoints": opb.ListCheckpointsRequest(workflow_id=wf),
            "GetCheckpoint": opb.GetCheckpointRequest(workflow_id=wf, checkpoint_id=ck.id),
            "ResumeWorkflow": opb.ResumeWorkflowRequest(
                workflow_id=wf, checkpoint_id=ck.id, wait=False,
                overrides=[epb.TaskOverride(task_id="b", agent="noop", attempt_timeout_ms=1000)]),
            "GetAgentHealth": opb.GetAgentHealthRequest(agent="noop"),
            "PublishEvent": opb.PublishEventRequest(
                workflow_id=wf, task_id="a", finding=wpb.Finding(key="k", value="v", confidence=0.5)),
        }
        ch = srv.channel()
        rng = random.Random(20261201)
        calls = faults = 0
        for method, seed in sorted(seeds.items()):
            raw = seed.SerializeToString()
            if method == "StreamEvents":
                rpc = ch.unary_stream(SERVICE + method, request_serializer=None, response_deserializer=None)
            else:
                rpc = ch.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
            inputs = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab"] + \
                [mutate(rng, raw) for _ in range(MUTATIONS_PER_SEED)] + \
                [mutate_request(rng, seed) for _ in range(MUTATIONS_PER_SEED)]
            for data in inputs:
                calls += 1
                try:
                    if method == "StreamEvents":
                        for _ in rpc(data, timeout=0.5):  # a live follow ends at the deadline
                            pass
                    else:
                        rpc(data, timeout=5)
                except grpc.RpcError as e:
                    code = e.code()
                    if code in SERVER_FAULTS:
                        faults += 1
                        self.fail("%s with %r: %s %s\n%s" % (method, data, code, e.details(), srv.log()[-3000:]))
                    if code == grpc.StatusCode.INVALID_ARGUMENT:
                        self.assertTrue(e.details(), "%s with %r: INVALID_ARGUMENT without a message" % (method, data))
                self.assertIsNone(srv.proc.poll(), "agentosd exited after %s with %r" % (method, data))
        self.assertEqual(faults, 0)
        self.assertGreater(calls, 3000)
        # Still serving, and the first workflow is intact.
        self.assertEqual(c.get(wf).id, wf)
        srv.stop()
        # The log reads back whole: 1..N, no gap.
        out = subprocess.run([os.environ.get("AO_LOGDUMP", "ao-logdump"), srv.data_dir, "--seqs"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.split()
        seqs = [int(s) for s in out]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))


REPLY = {"output": "fine", "score": 0.5, "confidence": 0.8, "decisions": ["d1"],
         "findings": [{"key": "k", "value": "v", "confidence": 0.9, "score": 0.4}],
         "usage": {"promptTokens": "10", "completionTokens": "5", "documents": "1"}}
PLAN_REPLY = dict(REPLY, plan={"rationale": "split", "tasks": [
    {"id": "s1", "agent": "noop"}, {"id": "s2", "agent": "https", "dependsOn": ["s1"], "input": "{{deps.s1.output}}"}]})
JSON_VALUES = [None, True, False, 0, -1, 2**64, -2**63 - 1, 1e308, -0.0, 0.5, "", "NaN", "-Infinity", "x" * 5000,
               "{{deps.nope.output}}", "s1", "ERROR_CLASS_TIMEOUT", [], {}, [1, "x"], {"id": "s1"},
               {"id": "s3", "dependsOn": ["s3"]}, {"id": "s1", "agent": "nope"}]


def mutate_json_value(rng, v, depth=0):
    """One change somewhere in the JSON value v (in place where it can)."""
    if isinstance(v, dict) and v:
        k = rng.choice(sorted(v))
        what = rng.randrange(5)
        if what == 0:
            del v[k]
        elif what == 1:
            v["unknownField" if rng.random() < 0.5 else rng.choice(["plan", "usage", "findings", "tasks"])] = \
                rng.choice(JSON_VALUES)
        elif what == 2 or depth > 5 or not isinstance(v[k], (dict, list)):
            v[k] = rng.choice(JSON_VALUES)
        else:
            mutate_json_value(rng, v[k], depth + 1)
    elif isinstance(v, list) and v:
        i = rng.randrange(len(v))
        what = rng.randrange(4)
        if what == 0:
            v.append(json.loads(json.dumps(v[i])))  # a duplicate (duplicate subtask ids)
        elif what == 1:
            del v[i]
        elif what == 2 or depth > 5 or not isinstance(v[i], (dict, list)):
            v[i] = rng.choice(JSON_VALUES)
        else:
            mutate_json_value(rng, v[i], depth + 1)


def mutated_reply(rng, seed):
    if rng.random() < 0.25:  # the text itself: cut, or a character changed
        text = json.dumps(seed)
        i = rng.randrange(len(text))
        return text[:i] if rng.random() < 0.5 else text[:i] + rng.choice('{}[]",:-0e\\') + text[i + 1:]
    v = json.loads(json.dumps(seed))
    for _ in range(rng.randint(1, 3)):
        # A plan's subtasks most of the time: that is where the checks are.
        plan = v.get("plan") if isinstance(v, dict) else None
        if isinstance(plan, dict) and isinstance(plan.get("tasks"), list) and rng.random() < 0.7:
            mutate_json_value(rng, plan["tasks"])
        else:
            mutate_json_value(rng, v)
    return json.dumps(v)


class AgentReplyFuzzTest(unittest.TestCase):
    def test_mutated_agent_replies(self):
        """Replies of an https agent (real TLS, through libcurl) that are not
        what the protocol says: each task ends SUCCEEDED, or FAILED with an
        error that says why; planners' mutated plans (cycles, duplicate and
        unknown ids, wrong types) are refused or expanded; agentosd keeps
        serving and stops cleanly."""
        tmp = tempfile.mkdtemp(prefix="agentos-fuzz-")
        self.addCleanup(shutil.rmtree, tmp, True)
        certs = make_certs(os.path.join(tmp, "certs"))
        mock = Mock(certs)
        self.addCleanup(mock.stop)
        https = {"name": "https", "kind": "BACKEND_KIND_HTTPS", "url": "https://localhost:%d/agent" % mock.https,
                 "tls": {"caFile": os.path.join(certs, "ca.pem")}, "maxConcurrency": 64,
                 # Bad replies are failures: the breaker would stop the calls.
                 "breaker": {"failureThreshold": 100000}}
        srv = Server(agents=[builtin("noop"), https], config={"limits": {"maxTasks": 2000}}).start()
        self.addCleanup(srv.cleanup)
        c = srv.stub()
        rng = random.Random(1201)
        workflows = []
        for w in range(8):
            tasks = []
            for i in range(25):
                planner = i % 5 == 0
                body = mutated_reply(rng, PLAN_REPLY if planner else REPLY)
                tasks.append(task("t%d" % i, "https", optional=True, params={"mock.body": body},
                                  kind=wpb.TASK_KIND_PLANNER if planner else wpb.TASK_KIND_AGENT,
                                  retry=wpb.RetryPolicy(max_attempts=1)))
            r = c.submit(wpb.WorkflowSpec(name="replies %d" % w, tasks=tasks), wait=True, timeout=120)
            workflows.append(r.workflow_id)
        outcomes = {}
        for wf_id in workflows:
            wf = c.get(wf_id)
            for t in wf.tasks:
                if "/" in t.spec.id:
                    continue  # a planner's subtask
                outcomes[t.status] = outcomes.get(t.status, 0) + 1
                self.assertIn(t.status, (TS.TASK_STATUS_SUCCEEDED, TS.TASK_STATUS_FAILED),
                              "%s %s: %s" % (wf_id, t.spec.id, TS.Name(t.status)))
                if t.status == TS.TASK_STATUS_FAILED:
                    self.assertTrue(t.error, "%s %s failed without an error" % (wf_id, t.spec.id))
        # Both outcomes, many times: the mutations reach the checks.
        self.assertGreater(outcomes.get(TS.TASK_STATUS_SUCCEEDED, 0), 20, outcomes)
        self.assertGreater(outcomes.get(TS.TASK_STATUS_FAILED, 0), 20, outcomes)
        srv.stop()


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
                    # Some retried with a request id: the same workflow back,
                    # maybe while it is cancelled or resumed.
                    rid = rng.choice(["", "", "", "again-%d" % self.seed, "again-%d-b" % self.seed])
                    r = c.submit(self.spec(rng), wait=rng.random() < 0.3, request_id=rid, timeout=10)
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
        srv = Server(agents=race_agents()).start()
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
        c = srv.stub()
        clients.settle(self, c)
        last = max(c.get(wf).last_seq for wf in clients.ids)
        wait_until(lambda: seen and seen[-1] >= last, timeout=30, what="the subscriber to reach seq %d" % last)
        follow.cancel()
        sub.join(timeout=10)
        self.assertEqual(stream_error, [])
        self.assertEqual(seen, list(range(1, len(seen) + 1)), "a gap, a duplicate or a reordering")
        srv.stop()
        seqs = log_seqs(srv)
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))

    def test_kill9_during_concurrent_operations(self):
        """The same clients, and agentosd killed with -9 at a random moment,
        three times. After each restart every workflow whose submission was
        acknowledged is there, the unfinished ones go on, and the clients
        carry on; at the end every workflow settles and the log reads back
        1..N."""
        srv = Server(agents=race_agents()).start()
        self.addCleanup(srv.cleanup)
        clients = Clients(srv, seed=9)
        rng = random.Random(99)
        for rnd in range(3):
            base = len(clients.ids)

            def crash():
                wait_until(lambda: len(clients.ids) > base + 15, 30, "submissions to flow")
                time.sleep(rng.uniform(0.0, 0.5))  # the random moment of the crash
                clients.stop.set()  # calls in flight now fail UNAVAILABLE: not faults
                srv.kill9()

            clients.run(until=crash)
            srv.start()
            c = srv.stub()
            for wf in clients.ids:
                c.get(wf)  # acknowledged: it survived the crash
        self.assertEqual(clients.faults, [], "\n".join(clients.faults[:10]))
        c = srv.stub()
        clients.settle(self, c)
        srv.stop()
        seqs = log_seqs(srv)
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))


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
    def test_cancel_and_resume_with_remote_calls_in_flight(self):
        """Cancels, resumes and timeouts racing with https and gRPC replies:
        statuses, never a fault; every workflow settles; agentosd stops
        cleanly under ASan and UBSan (a call freed while its reply arrives
        would show there)."""
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
        import urllib.request
        from harness import free_port
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
