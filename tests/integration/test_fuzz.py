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

Races have their own file, test_races.py."""

import json
import os
import random
import shutil
import subprocess
import tempfile
import unittest

import grpc

from harness import SERVER_FAULTS, TS, Mock, Server, builtin, epb, make_certs, opb, params, task, wpb

SERVICE = "/agentos.v1.Orchestrator/"
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


if __name__ == "__main__":
    unittest.main()
