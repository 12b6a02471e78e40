"""TLS-secured agent backends against the mock agent over real TLS, with
certificates this test makes: HTTPS JSON, OpenAI-compatible and gRPC
agents; certificate failures with their cause; mTLS; 429 with
Retry-After; slow drip past the attempt timeout; breakers; 1,000
concurrent calls; secrets that never appear in logs or events."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest


from agentos.v1 import agent_pb2
from harness import (EV, TS, WS, Mock, Server, epb, make_certs, opb, params, task, task_state,
                     wait_until, wpb)

SECRET = "sk-test-5f1d2c3b4a-never-log-me"
LOGDUMP = os.environ.get("AO_LOGDUMP", "ao-logdump")


def pin_of(cert_path):
    der = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=der, capture_output=True,
                         check=True).stdout
    return "sha256//" + base64.b64encode(hashlib.sha256(der).digest()).decode()


class BackendsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="agentos-backends-")
        cls.certs = make_certs(os.path.join(cls.tmp, "certs"))
        c = lambda name: os.path.join(cls.certs, name)
        cls.ca = c("ca.pem")
        cls.mock = Mock(cls.certs)
        cls.other = Mock(cls.certs, cert="other")
        cls.expired = Mock(cls.certs, cert="expired")
        cls.wrong = Mock(cls.certs, cert="wronghost")
        cls.mtls = Mock(cls.certs, client_ca=cls.ca, require_client_cert=True)
        secret_file = os.path.join(cls.tmp, "key.txt")
        with open(secret_file, "w") as f:
            f.write(SECRET + "\n")
        os.environ["AO_TEST_SECRET"] = SECRET
        tls = {"caFile": cls.ca}
        https = lambda m: "https://localhost:%d/agent" % m.https

        def agent(name, kind, url, **kw):
            a = {"name": name, "kind": "BACKEND_KIND_" + kind, "url": url, "tls": dict(tls)}
            a.update(kw)
            return a
        cls.srv = Server(agents=[
            agent("https", "HTTPS", https(cls.mock), apiKey={"env": "AO_TEST_SECRET"},
                  price={"perCallMicros": "250"}),
            agent("openai", "OPENAI", "https://127.0.0.1:%d/v1" % cls.mock.https, apiKey={"file": secret_file},
                  openai={"model": "mock-model", "jsonMode": True},
                  price={"per1kPromptTokensMicros": "1000", "per1kCompletionTokensMicros": "3000"}),
            agent("grpc", "GRPC", "localhost:%d" % cls.mock.grpc, apiKey={"env": "AO_TEST_SECRET"}),
            agent("wrongca", "HTTPS", https(cls.other)),
            agent("expired", "HTTPS", https(cls.expired)),
            agent("wronghost", "HTTPS", https(cls.wrong)),
            agent("mtls_nocert", "HTTPS", https(cls.mtls)),
            agent("mtls", "HTTPS", https(cls.mtls), tls={"caFile": cls.ca, "certFile": c("client.pem"),
                                                         "keyFile": c("client.key")}),
            agent("mtls_grpc", "GRPC", "localhost:%d" % cls.mtls.grpc,
                  tls={"caFile": cls.ca, "certFile": c("client.pem"), "keyFile": c("client.key")}),
            agent("named", "HTTPS", "https://127.0.0.1:%d/agent" % cls.mock.https,
                  tls={"caFile": cls.ca, "serverName": "agent.test"}),
            agent("pinned", "HTTPS", https(cls.mock), tls={"caFile": cls.ca, "pinnedPublicKey": pin_of(c("server.pem"))}),
            agent("badpin", "HTTPS", https(cls.mock), tls={"caFile": cls.ca, "pinnedPublicKey": pin_of(c("other.pem"))}),
            agent("breaking", "HTTPS", https(cls.mock), breaker={"failureThreshold": 2, "resetTimeoutMs": 400}),
            agent("wide", "HTTPS", https(cls.mock), maxConcurrency=1000),
            agent("refused", "HTTPS", "https://localhost:1/agent"),
            agent("greedy", "OPENAI", "https://127.0.0.1:%d/v1" % cls.mock.https,
                  openai={"model": "mock-model", "temperature": 0, "sendTemperature": True}),
            agent("warm", "OPENAI", "https://127.0.0.1:%d/v1" % cls.mock.https,
                  openai={"model": "mock-model", "temperature": 0.7}),
        ], config={"limits": {"maxTasks": 2000}})
        cls.srv.start()
        cls.c = cls.srv.stub()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        for m in (cls.mock, cls.other, cls.expired, cls.wrong, cls.mtls):
            m.stop()
        cls.srv.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run1(self, agent, attempts=1, **kw):
        """Runs one optional task on agent; returns (response, task state).
        Task ids are unique: the mock counts fail_first per task id."""
        BackendsTest.n = getattr(BackendsTest, "n", 0) + 1
        tid = "t%d" % BackendsTest.n
        r = self.c.submit(wpb.WorkflowSpec(tasks=[task(tid, agent, optional=True,
                                                       retry=wpb.RetryPolicy(max_attempts=attempts,
                                                                             initial_backoff_ms=10), **kw)]))
        return r, task_state(self.c.get(r.workflow_id), tid)

    def test_success_over_tls_each_protocol(self):
        for agent in ("https", "openai", "grpc", "named", "pinned", "mtls", "mtls_grpc"):
            r, t = self.run1(agent)
            self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, "%s: %s" % (agent, t.error))
            self.assertIn("mock", t.output)
            self.assertEqual(t.findings[0].key, "model_note" if agent == "openai" else "reviewed_by_mock")
        # OpenAI usage feeds the budgets and the cost (price per 1k tokens).
        r, t = self.run1("openai")
        self.assertEqual((t.usage.prompt_tokens, t.usage.completion_tokens, t.usage.total_tokens), (20, 10, 30))
        self.assertEqual(t.usage.cost_micros, 20 + 30)
        r, t = self.run1("https")
        self.assertEqual(t.usage.cost_micros, 250)

    def test_tls_failures_keep_their_cause(self):
        cases = {
            "wrongca": "unable to get local issuer certificate",
            "expired": "certificate has expired",
            "wronghost": "matches target host name 'localhost'",
            "mtls_nocert": "",
            "badpin": "public key",
        }
        for agent, cause in cases.items():
            r, t = self.run1(agent)
            self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED, agent)  # its one task failed
            self.assertEqual(t.error_class, wpb.ERROR_CLASS_TLS if agent != "mtls_nocert"
                             else t.error_class, agent)
            self.assertIn(cause, t.error, "%s: %s" % (agent, t.error))
        r, t = self.run1("mtls_nocert")
        self.assertIn(t.error_class, (wpb.ERROR_CLASS_TLS, wpb.ERROR_CLASS_UNAVAILABLE), t.error)
        r, t = self.run1("refused")
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_UNAVAILABLE)
        self.assertIn("onnect", t.error)

    def test_openai_temperature_zero_can_be_sent(self):
        # Regression: temperature 0 (greedy decoding) could not be asked for:
        # 0 read as unset and was never sent.
        def temps():
            return dict(self.mock.stats(self.ca).get("openai_temperatures", {}))
        before = temps()
        for agent in ("greedy", "warm", "openai"):
            r, t = self.run1(agent)
            self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, "%s: %s" % (agent, t.error))
        after = temps()
        grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        self.assertEqual(grew.get("0"), 1, after)
        self.assertEqual(grew.get("0.7"), 1, after)
        self.assertEqual(grew.get("absent"), 1, after)

    def test_replies_over_the_limit_are_invalid_not_retried(self):
        # Regression: gRPC's own "Received message larger than max" was taken
        # for the agent's quota (RATE_LIMITED) and retried.
        big = params(**{"mock.output_bytes": 5 * 1024 * 1024})
        r, t = self.run1("grpc", attempts=3, params=big)
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_INVALID_RESPONSE, t.error)
        self.assertEqual(t.attempts, 1)
        self.assertIn("larger than max", t.error)
        # The HTTPS backend refuses a body over its 4 MiB too, with its cause.
        r, t = self.run1("https", params=big)
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        self.assertNotEqual(t.error_class, wpb.ERROR_CLASS_UNSPECIFIED)
        self.assertTrue(t.error, t)
        # Within the limits all is well.
        r, t = self.run1("grpc", params=params(**{"mock.output_bytes": 100000}))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, t.error)
        self.assertEqual(len(t.output), 100000)

    def test_replies_are_held_to_the_contract(self):
        """What an agent says of itself stops at the contract: confidences
        clamped to [0, 1], scores finite, a finding's source and authority
        the server's (the task's: an agent does not choose its weight in
        synthesis), keys of 1 to 128 bytes; strings that are not valid UTF-8
        (a gRPC agent can send them, protobuf-c takes them) refused, naming
        the field. Findings a client publishes get the same."""
        reply = {"output": "fine", "confidence": 3, "score": 0.5,
                 "findings": [{"key": "k", "value": "v", "confidence": 7, "score": "NaN",
                               "authority": 1e9, "sourceTask": "someone-else"}]}
        r, t = self.run1("https", authority=0.6, params={"mock.body": json.dumps(reply)})
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, t.error)
        self.assertEqual(t.confidence, 1.0)
        f = t.findings[0]
        self.assertEqual((f.confidence, f.score, f.authority, f.source_task), (1.0, 0.0, 0.6, t.spec.id))
        reply["findings"][0]["key"] = "k" * 200
        r, t = self.run1("https", params={"mock.body": json.dumps(reply)})
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_INVALID_RESPONSE, t.error)
        self.assertIn("findings[0].key: 200 bytes, must be 1 to 128", t.error)

        good = agent_pb2.AgentResult(output="OUT-MARK", confidence=0.5,
                                     findings=[wpb.Finding(key="k", value="VAL-MARK", confidence=0.5)])
        raw = good.SerializeToString()
        r, t = self.run1("grpc", params={"mock.result_hex": raw.hex()})
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, t.error)
        self.assertEqual(t.output, "OUT-MARK")
        for mark, path in ((b"OUT-MARK", "output"), (b"VAL-MARK", "findings[0].value")):
            bad = raw.replace(mark, mark[:3] + b"\xff" + mark[4:])
            r, t = self.run1("grpc", params={"mock.result_hex": bad.hex()})
            self.assertEqual(t.error_class, wpb.ERROR_CLASS_INVALID_RESPONSE, t.error)
            self.assertIn("the reply of agent grpc is not an AgentResult: %s is not valid UTF-8" % path, t.error)
            # The workflow still reads back in Python (which refuses invalid strings).
            self.c.get(r.workflow_id)

        r = self.c.submit(wpb.WorkflowSpec(tasks=[task("held", "https", authority=0.3,
                                                       params=params(**{"mock.hang": "true"}))]), wait=False)
        wait_until(lambda: task_state(self.c.get(r.workflow_id), "held").status == TS.TASK_STATUS_RUNNING,
                   what="the task to run")
        self.c.PublishEvent(opb.PublishEventRequest(
            workflow_id=r.workflow_id, task_id="held",
            finding=wpb.Finding(key="p", value="v", confidence=0.4, authority=50, source_task="forged")))
        f = task_state(self.c.get(r.workflow_id), "held").findings[0]
        self.assertEqual((f.source_task, f.authority), ("held", 0.3))
        self.c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=r.workflow_id))

    def test_429_with_retry_after_is_honoured(self):
        r, t = self.run1("https", attempts=2, params=params(**{"mock.fail_first": 0, "mock.status": 429,
                                                                "mock.retry_after": 1}))
        events = self.c.events(r.workflow_id, timeout=5)
        failed = [e for e in events if e.type == EV.EVENT_TYPE_ATTEMPT_FAILED]
        self.assertEqual(failed[0].attempt_failed.error_class, wpb.ERROR_CLASS_RATE_LIMITED)
        self.assertGreaterEqual(failed[0].attempt_failed.retry_in_ms, 1000)
        self.assertIn("HTTP 429", failed[0].attempt_failed.error)
        starts = [e.time_unix_ms for e in events if e.type == EV.EVENT_TYPE_TASK_STARTED]
        self.assertGreaterEqual(starts[1] - starts[0], 1000)

    def test_absurd_usage_is_capped_and_still_halts_the_budget(self):
        """An agent that reports 2^64 - 1 tokens: the counts are taken as a
        trillion each (AO_USAGE_REPORT_MAX), the sums do not wrap round
        under the budget, and the workflow's token budget halts it."""
        huge = str(2**64 - 1)
        reply = {"output": "x", "usage": {"promptTokens": huge, "completionTokens": huge, "documents": huge}}
        r = self.c.submit(wpb.WorkflowSpec(
            budget=wpb.Budget(max_tokens=1000),
            tasks=[task("big", "https", params={"mock.body": json.dumps(reply)}),
                   task("after", "https", deps=["big"])]))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_BUDGET_EXCEEDED)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(wf.usage.prompt_tokens, 10**12)
        self.assertEqual(wf.usage.total_tokens, 2 * 10**12)
        self.assertEqual(wf.usage.documents, 10**12)
        self.assertEqual(task_state(wf, "after").status, TS.TASK_STATUS_SKIPPED)

    def test_a_far_retry_after_is_capped_not_wrapped(self):
        """Retry-After of 9,999,999 s: the wait is capped at UINT32_MAX ms
        (it wrapped round to about 16 days before)."""
        BackendsTest.n = getattr(BackendsTest, "n", 0) + 1
        r = self.c.submit(wpb.WorkflowSpec(tasks=[task("far%d" % BackendsTest.n, "https", retry=wpb.RetryPolicy(
            max_attempts=2), params=params(**{"mock.status": 429, "mock.retry_after": 9999999}))]), wait=False)
        stream = self.c.StreamEvents(opb.StreamEventsRequest(workflow_id=r.workflow_id,
                                                             types=[EV.EVENT_TYPE_ATTEMPT_FAILED]), timeout=20)
        failed = next(iter(stream)).attempt_failed
        stream.cancel()
        self.assertEqual(failed.error_class, wpb.ERROR_CLASS_RATE_LIMITED)
        self.assertTrue(failed.will_retry)
        self.assertEqual(failed.retry_in_ms, 4294967295)
        self.c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=r.workflow_id))

    def test_statuses_retryable_or_not(self):
        r, t = self.run1("https", attempts=3, params=params(**{"mock.status": 400}))
        self.assertEqual((t.error_class, t.attempts), (wpb.ERROR_CLASS_REJECTED, 1))
        r, t = self.run1("https", attempts=3, params=params(**{"mock.fail_first": 2}))
        self.assertEqual((r.status, t.attempts), (WS.WORKFLOW_STATUS_SUCCESS, 3))
        r, t = self.run1("openai", attempts=1, params=params(**{"mock.fail_first": 0}),
                         input="[mock content=text] please answer")
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_INVALID_RESPONSE)
        self.assertIn("not the JSON object asked for", t.error)

    def test_slow_drip_hits_the_attempt_timeout(self):
        r, t = self.run1("https", attempt_timeout_ms=300, params=params(**{"mock.drip_ms": 40}))
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_TIMEOUT)
        self.assertIn("timed out", t.error.lower())
        r, t = self.run1("grpc", attempt_timeout_ms=200, params=params(**{"mock.hang": "true"}))
        self.assertEqual(t.error_class, wpb.ERROR_CLASS_TIMEOUT)

    def test_breaker_opens_after_threshold_and_closes_after_probe(self):
        fail = params(**{"mock.status": 503})
        once = wpb.RetryPolicy(max_attempts=1)
        r = self.c.submit(wpb.WorkflowSpec(tasks=[
            task("f0", "breaking", optional=True, params=fail, retry=once),
            task("f1", "breaking", deps=["f0"], optional=True, params=fail, retry=once),
            task("f2", "breaking", deps=["f1"], optional=True, params=fail, retry=once)]))
        wf = self.c.get(r.workflow_id)
        self.assertEqual(task_state(wf, "f2").error_class, wpb.ERROR_CLASS_CIRCUIT_OPEN)
        events = self.c.events(r.workflow_id, timeout=5)
        changes = [(getattr(e.breaker, "from"), e.breaker.to)
                   for e in events if e.type == EV.EVENT_TYPE_BREAKER_STATE_CHANGED]
        self.assertEqual(changes, [(epb.BREAKER_STATE_CLOSED, epb.BREAKER_STATE_OPEN)])
        h = self.c.GetAgentHealth(opb.GetAgentHealthRequest(agent="breaking")).agents[0]
        self.assertEqual(h.breaker, epb.BREAKER_STATE_OPEN)
        wait_until(lambda: time.time() * 1000 > h.opened_unix_ms + 450, what="the reset timeout")
        r, t = self.run1("breaking")
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        events = self.c.events(r.workflow_id, timeout=5)
        changes = [e.breaker.to for e in events if e.type == EV.EVENT_TYPE_BREAKER_STATE_CHANGED]
        self.assertEqual(changes, [epb.BREAKER_STATE_HALF_OPEN, epb.BREAKER_STATE_CLOSED])

    def test_a_thousand_concurrent_calls(self):
        r = self.c.submit(wpb.WorkflowSpec(tasks=[task("c%d" % i, "wide", params=params(**{"mock.latency_ms": 500}))
                                                  for i in range(1000)]), timeout=120)
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(sum(t.status == TS.TASK_STATUS_SUCCEEDED for t in wf.tasks), 1000)
        # In flight together: far less than 1,000 x 500 ms.
        self.assertLess(wf.finished_unix_ms - wf.created_unix_ms, 60000)

    def test_idempotency_key_and_secret(self):
        r, t = self.run1("https")
        r2, t2 = self.run1("grpc")
        stats = self.mock.stats(self.ca)
        self.assertIn(t.attempt_id, stats["idempotency_keys"])
        self.assertIn(t2.attempt_id, stats["idempotency_keys"])
        # The key reached the agent (the mock records only its hash)...
        self.assertIn(hashlib.sha256(SECRET.encode()).hexdigest(), stats["bearer_sha256"])
        # ...and appears in no log line, event or state.
        self.srv.check_log_clean()
        self.assertNotIn(SECRET, self.srv.log())
        dump = subprocess.run([LOGDUMP, self.srv.data_dir, "--json"], capture_output=True, text=True)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertNotIn(SECRET, dump.stdout)
        self.assertGreater(len(dump.stdout), 1000)
        for w in self.c.ListWorkflows(opb.ListWorkflowsRequest(page_size=1000)).workflows:
            self.assertNotIn(SECRET, str(self.c.get(w.id)))


if __name__ == "__main__":
    unittest.main()
