"""The server foundation, from Python grpcio against the real agentosd:
health, UNIMPLEMENTED for unknown methods, bearer tokens, TLS and mTLS
with certificates this test makes, message limits, clean shutdown with
open streams and in-flight calls, a second agentosd refused, a taken port
refused (and the harness moving to another), RPC threads sized by the CPU
affinity, config errors; requests that do not decode, or carry strings
that are not UTF-8, refused."""

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

from harness import (WS, Client, Server, builtin, epb, free_port, health_pb2, health_pb2_grpc,
                     make_certs, opb, task, wait_until, wpb)

TOKEN = "s3cret-token-of-alpha"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="agentos-server-")
        cls.certs = make_certs(os.path.join(cls.tmp, "certs"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cert(self, name):
        return os.path.join(self.certs, name)

    def read(self, name):
        with open(self.cert(name), "rb") as f:
            return f.read()

    def start(self, **kw):
        srv = Server(**kw)
        self.addCleanup(srv.cleanup)
        return srv

    def test_health_and_unknown_methods(self):
        srv = self.start().start()
        h = health_pb2_grpc.HealthStub(srv.channel())
        self.assertEqual(h.Check(health_pb2.HealthCheckRequest(), timeout=5).status,
                         health_pb2.HealthCheckResponse.SERVING)
        self.assertEqual(h.Check(health_pb2.HealthCheckRequest(service="agentos.v1.Orchestrator"), timeout=5).status,
                         health_pb2.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as cm:
            h.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        watch = h.Watch(health_pb2.HealthCheckRequest(), timeout=10)
        self.assertEqual(next(watch).status, health_pb2.HealthCheckResponse.SERVING)
        watch.cancel()
        with self.assertRaises(grpc.RpcError) as cm:
            srv.channel().unary_unary("/agentos.v1.Nope/Missing")(b"", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("unknown method /agentos.v1.Nope/Missing", cm.exception.details())
        # A request that is not the method's message: INVALID_ARGUMENT.
        with self.assertRaises(grpc.RpcError) as cm:
            srv.channel().unary_unary("/agentos.v1.Orchestrator/GetWorkflow")(b"\xff\xff\xff", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("not a valid agentos.v1.GetWorkflowRequest", cm.exception.details())
        # A string that is not UTF-8 (protobuf-c would take it; Python and
        # Node clients would then fail on the workflow): INVALID_ARGUMENT,
        # naming the field, and nothing is stored.
        spec = wpb.WorkflowSpec(name="ok", tasks=[task("a", "noop", input="IN-MARK")])
        raw = opb.OrchestrateRequest(workflow=spec, wait=True).SerializeToString().replace(b"IN-MARK", b"IN\xc0MARK")
        with self.assertRaises(grpc.RpcError) as cm:
            srv.channel().unary_unary("/agentos.v1.Orchestrator/Orchestrate")(raw, timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("workflow.tasks[0].input: not valid UTF-8", cm.exception.details())
        c = srv.stub()
        self.assertEqual(len(c.ListWorkflows(opb.ListWorkflowsRequest()).workflows), 0)
        self.assertEqual(c.submit(spec).status, 3)
        srv.stop()

    def test_bearer_tokens(self):
        srv = self.start(config={"tokens": [{"tenant": "alpha", "tokenSha256": sha(TOKEN), "name": "ci"}]}).start()
        for token, want in ((None, "missing credentials"), ("wrong", "invalid bearer token")):
            with self.assertRaises(grpc.RpcError) as cm:
                Client(srv.channel(), token).ListWorkflows(opb.ListWorkflowsRequest())
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            self.assertIn(want, cm.exception.details())
            self.assertNotIn(TOKEN, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            ogrpc_call(srv, [("authorization", "Basic abc")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("must be `Bearer TOKEN`", cm.exception.details())
        # The right token reaches the handler; the caller's tenant scopes it.
        ok = Client(srv.channel(), TOKEN)
        r = ok.submit(wpb.WorkflowSpec(tasks=[task("a", "noop")]))
        self.assertEqual(ok.get(r.workflow_id).tenant, "alpha")
        # Health needs no token (load balancers).
        self.assertEqual(health_pb2_grpc.HealthStub(srv.channel()).Check(health_pb2.HealthCheckRequest(),
                                                                         timeout=5).status,
                         health_pb2.HealthCheckResponse.SERVING)
        srv.stop()
        self.assertNotIn(TOKEN, srv.log())

    def test_active_workflow_limit_per_tenant(self):
        """limits.maxActiveWorkflows counts a tenant's unfinished workflows:
        submissions and resumes past it are refused (RESOURCE_EXHAUSTED,
        naming the limit), another tenant is not affected, a finished one
        frees its place, and a restart counts the recovered ones."""
        other = "beta-token-7c1d"
        srv = self.start(agents=[builtin("noop"), builtin("stuck", hang=True)], config={
            "tokens": [{"tenant": "alpha", "tokenSha256": sha(TOKEN), "name": "a"},
                       {"tenant": "beta", "tokenSha256": sha(other), "name": "b"}],
            "limits": {"maxActiveWorkflows": 2}}).start()
        a, b = srv.stub(TOKEN), srv.stub(other)
        hold = wpb.WorkflowSpec(tasks=[task("hold", "stuck")])

        def refused(call):
            with self.assertRaises(grpc.RpcError) as cm:
                call()
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("tenant alpha has 2 unfinished workflows, the limit (limits.max_active_workflows)",
                          cm.exception.details())

        a1 = a.submit(hold, wait=False).workflow_id
        a2 = a.submit(hold, wait=False).workflow_id
        refused(lambda: a.submit(hold, wait=False))
        b.submit(hold, wait=False)  # beta's own count
        a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=a1))
        a.wait_status(a1, [WS.WORKFLOW_STATUS_CANCELLED])
        a3 = a.submit(hold, wait=False).workflow_id  # a1's place
        refused(lambda: a.ResumeWorkflow(opb.ResumeWorkflowRequest(workflow_id=a1)))
        a.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=a3))
        a.wait_status(a3, [WS.WORKFLOW_STATUS_CANCELLED])
        a.ResumeWorkflow(opb.ResumeWorkflowRequest(workflow_id=a1))  # a3's place
        srv.stop()
        srv.start()
        a = srv.stub(TOKEN)
        self.assertEqual(a.get(a2).status, WS.WORKFLOW_STATUS_RUNNING)
        refused(lambda: a.submit(hold, wait=False))  # a1 (resumed) and a2, recovered
        srv.stop()

    def test_tenant_usage_is_the_sum_of_its_workflows(self):
        """ListWorkflows' tenant usage (total and by agent) is the sum of
        the tenant's workflows' usage, kept as it changes: through retries,
        calls a breaker refused (taken back), a resume, and a kill -9 and
        restart (rebuilt from snapshots and replayed events); another
        tenant's is its own."""
        other = "beta-token-7c1d"
        srv = self.start(agents=[
            builtin("noop"),
            {"name": "extractor", "kind": "BACKEND_KIND_BUILTIN",
             "builtin": {"promptTokens": 30, "completionTokens": 10}},
            {"name": "flaky", "kind": "BACKEND_KIND_BUILTIN", "builtin": {"failFirst": 10},
             "breaker": {"failureThreshold": 2, "resetTimeoutMs": 600000}},
        ], config={
            "tokens": [{"tenant": "alpha", "tokenSha256": sha(TOKEN), "name": "a"},
                       {"tenant": "beta", "tokenSha256": sha(other), "name": "b"}]}).start()
        a, b = srv.stub(TOKEN), srv.stub(other)
        retry = wpb.RetryPolicy(max_attempts=3, initial_backoff_ms=1)
        ids = [a.submit(wpb.WorkflowSpec(tasks=[task("x", "extractor"), task("n", "noop", deps=["x"])])).workflow_id
               for _ in range(3)]
        # The flaky calls open the breaker: their retries make no call (the
        # call counted at their start is taken back).
        failed = a.submit(wpb.WorkflowSpec(tasks=[task("f", "flaky", retry=retry, optional=True),
                                                  task("g", "flaky", retry=retry, optional=True),
                                                  task("x", "extractor")])).workflow_id
        ids.append(failed)
        self.assertEqual([t.attempts for t in a.get(failed).tasks][:2], [3, 3])
        self.assertEqual(a.get(failed).usage.api_calls, 3)
        b.submit(wpb.WorkflowSpec(tasks=[task("x", "extractor")]))

        def check(c, tenant_ids, stage):
            got = c.ListWorkflows(opb.ListWorkflowsRequest(page_size=1))
            want, by_agent = {}, {}
            for wf in tenant_ids:
                u = c.get(wf)
                for f in ("prompt_tokens", "completion_tokens", "total_tokens", "api_calls", "cost_micros"):
                    want[f] = want.get(f, 0) + getattr(u.usage, f)
                for au in u.agent_usage:
                    d = by_agent.setdefault(au.agent, {})
                    for f in ("total_tokens", "api_calls"):
                        d[f] = d.get(f, 0) + getattr(au.usage, f)
            for f, v in want.items():
                self.assertEqual(getattr(got.tenant_usage, f), v, "%s: tenant %s" % (stage, f))
            self.assertEqual({au.agent: {"total_tokens": au.usage.total_tokens, "api_calls": au.usage.api_calls}
                              for au in got.tenant_agent_usage}, by_agent, stage)
            return want

        total = check(a, ids, "after the runs")
        self.assertEqual(total["total_tokens"], 4 * 40)
        self.assertEqual(check(b, [w.id for w in b.ListWorkflows(opb.ListWorkflowsRequest()).workflows],
                               "beta")["total_tokens"], 40)
        # A resume runs the failed tasks again (on another agent).
        a.ResumeWorkflow(opb.ResumeWorkflowRequest(
            workflow_id=failed, wait=True,
            overrides=[epb.TaskOverride(task_id="f", agent="extractor"),
                       epb.TaskOverride(task_id="g", agent="noop")]))
        self.assertEqual(check(a, ids, "after the resume")["total_tokens"], 5 * 40)
        srv.kill9()
        srv.start()
        a = srv.stub(TOKEN)
        self.assertEqual(check(a, ids, "after kill -9 and a restart")["total_tokens"], 5 * 40)
        srv.stop()

    def test_finished_workflows_leave_memory_and_come_back(self):
        """Past storage.maxFinishedInMemory, finished workflows unused for
        freezeIdleMs keep only their summary: ListWorkflows still shows it, and
        GetWorkflow, a retried submit with their request_id and a resume
        load them whole from their snapshot, as they were; also after a
        kill -9 and a restart."""
        metrics = free_port()
        srv = self.start(agents=[builtin("noop"), builtin("broken", failAlways=True)],
                         config={"metricsListen": "127.0.0.1:%d" % metrics})
        # In the server's own data directory, which its cleanup removes.
        srv.config["storage"].update({"maxFinishedInMemory": 1, "freezeIdleMs": 100})
        srv.start()
        c = srv.stub()

        def counter(name):
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith("agentos_workflows_%s_total " % name):
                    return int(line.split()[1])
            raise AssertionError("no agentos_workflows_%s_total counter" % name)

        specs = [wpb.WorkflowSpec(name="w%d" % k, labels={"batch": "cold"},
                                  tasks=[task("a", "broken" if k == 0 else "noop", optional=k == 0,
                                              impact="a is optional"),
                                         task("b", "noop", deps=["a"] if k else [])])
                 for k in range(4)]
        ids = [c.submit(sp, request_id="cold-%d" % k).workflow_id for k, sp in enumerate(specs)]
        whole = {wf: c.get(wf) for wf in ids}
        listed = {w.id: w for w in c.ListWorkflows(opb.ListWorkflowsRequest(page_size=10)).workflows}
        # Each call is a processor turn, which looks for unused ones.
        wait_until(lambda: c.ListWorkflows(opb.ListWorkflowsRequest(page_size=1)) and counter("frozen") >= 3,
                   timeout=30, what="three workflows frozen", interval=0.1)
        self.assertEqual(counter("frozen"), 3)
        now = {w.id: w for w in c.ListWorkflows(opb.ListWorkflowsRequest(
            page_size=10, labels={"batch": "cold"})).workflows}
        self.assertEqual(now, listed)
        thawed = counter("thawed")
        for wf in ids:
            self.assertEqual(c.get(wf), whole[wf])
        self.assertEqual(counter("thawed"), thawed + 3)
        wait_until(lambda: c.ListWorkflows(opb.ListWorkflowsRequest(page_size=1)) and counter("frozen") >= 6,
                   timeout=30, what="frozen again", interval=0.1)
        r = c.submit(specs[1], request_id="cold-1")
        self.assertTrue(r.deduplicated)
        self.assertEqual(r.workflow_id, ids[1])
        srv.kill9()
        srv.start()
        c = srv.stub()
        for wf in ids:
            self.assertEqual(c.get(wf), whole[wf])
        # The partial one resumed, its optional task on another agent.
        res = c.ResumeWorkflow(opb.ResumeWorkflowRequest(
            workflow_id=ids[0], wait=True, overrides=[epb.TaskOverride(task_id="a", agent="noop")]))
        self.assertEqual(res.status, WS.WORKFLOW_STATUS_SUCCESS)
        srv.stop()

    def test_tls_and_mtls(self):
        srv = self.start(config={"tls": {"certFile": self.cert("server.pem"), "keyFile": self.cert("server.key")}})
        srv.start(wait=False)
        trusted = grpc.ssl_channel_credentials(root_certificates=self.read("ca.pem"))
        ch = grpc.secure_channel("localhost:%d" % srv.port, trusted)
        wait_until(lambda: _healthy(ch), 20, "the TLS server")
        r = Client(ch).submit(wpb.WorkflowSpec(tasks=[task("a", "noop")]))
        self.assertEqual(r.status, 3)
        # A client trusting another CA is refused.
        other = grpc.secure_channel("localhost:%d" % srv.port,
                                    grpc.ssl_channel_credentials(root_certificates=self.read("other-ca.pem")))
        with self.assertRaises(grpc.RpcError) as cm:
            health_pb2_grpc.HealthStub(other).Check(health_pb2.HealthCheckRequest(), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        ch.close()
        other.close()
        srv.stop()

        # mTLS, required: no client certificate is refused; a certificate from
        # the CA is accepted, and cert_tenants maps it without a token.
        srv = self.start(config={
            "tls": {"certFile": self.cert("server.pem"), "keyFile": self.cert("server.key"),
                    "clientCaFile": self.cert("ca.pem"), "requireClientCert": True},
            "certTenants": [{"identity": "client-one", "tenant": "certified"}],
            "tokens": [{"tenant": "alpha", "tokenSha256": sha(TOKEN)}],
        })
        srv.start(wait=False)
        with_cert = grpc.secure_channel("localhost:%d" % srv.port, grpc.ssl_channel_credentials(
            root_certificates=self.read("ca.pem"), private_key=self.read("client.key"),
            certificate_chain=self.read("client.pem")))
        wait_until(lambda: _healthy(with_cert), 20, "the mTLS server")
        c = Client(with_cert)
        r = c.submit(wpb.WorkflowSpec(tasks=[task("a", "noop")]))
        self.assertEqual(c.get(r.workflow_id).tenant, "certified")
        no_cert = grpc.secure_channel("localhost:%d" % srv.port,
                                      grpc.ssl_channel_credentials(root_certificates=self.read("ca.pem")))
        with self.assertRaises(grpc.RpcError) as cm:
            health_pb2_grpc.HealthStub(no_cert).Check(health_pb2.HealthCheckRequest(), timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        with_cert.close()
        no_cert.close()
        srv.stop()

    def test_message_limit_refused_and_server_keeps_serving(self):
        srv = self.start(config={"limits": {"maxMessageBytes": 65536, "maxInputBytes": 1000}}).start()
        c = srv.stub()
        big = wpb.WorkflowSpec(tasks=[task("a", "noop", input="x" * 100000)])
        with self.assertRaises(grpc.RpcError) as cm:
            c.submit(big)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Within the message limit but over limits.max_input_bytes.
        with self.assertRaises(grpc.RpcError) as cm:
            c.submit(wpb.WorkflowSpec(tasks=[task("a", "noop", input="y" * 2000)]))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("limits.max_input_bytes", cm.exception.details())
        r = c.submit(wpb.WorkflowSpec(tasks=[task("a", "noop")]))
        self.assertEqual(r.status, 3)
        srv.stop()

    def test_sigterm_with_open_stream_and_inflight_call(self):
        srv = self.start(agents=[builtin("noop"), builtin("stuck", hang=True)]).start()
        # A channel of its own: the harness closes its channel before SIGTERM.
        own = grpc.insecure_channel(srv.target)
        self.addCleanup(own.close)
        c = Client(own)
        wf = c.submit(wpb.WorkflowSpec(tasks=[task("hold", "stuck")]), wait=False).workflow_id
        ended = threading.Event()
        codes = []

        def follow():
            try:
                for _ in c.StreamEvents(opb.StreamEventsRequest(workflow_id=wf), timeout=60):
                    pass
            except grpc.RpcError as e:
                codes.append(e.code())
            ended.set()
        t = threading.Thread(target=follow)
        t.start()
        waiting = []
        w = threading.Thread(target=lambda: waiting.append(_catch(lambda: c.submit(
            wpb.WorkflowSpec(tasks=[task("h2", "stuck")]), wait=True, timeout=60))))
        w.start()
        wait_until(lambda: len(c.ListWorkflows(opb.ListWorkflowsRequest()).workflows) == 2, what="both workflows")
        t0 = time.monotonic()
        srv.stop(timeout=20)  # asserts exit 0 and a clean log
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(ended.wait(10))
        t.join()
        w.join()
        self.assertEqual(codes, [grpc.StatusCode.UNAVAILABLE])
        self.assertIsInstance(waiting[0], grpc.RpcError)
        self.assertEqual(waiting[0].code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("continues when it restarts", waiting[0].details())
        # The workflows were left running, and continue after a restart.
        srv.start()
        self.assertEqual(srv.stub().get(wf).status, 2)  # RUNNING
        srv.stop()

    def test_second_agentosd_refused(self):
        srv = self.start().start()
        # Same port, another data directory.
        twin = Server(port=srv.port)
        self.addCleanup(twin.cleanup)
        code, log = twin.start(expect_exit=True)
        self.assertNotEqual(code, 0)
        self.assertIn("cannot listen on 127.0.0.1:%d" % srv.port, log)
        # Same data directory, another port.
        twin2 = Server(tmp=tempfile.mkdtemp(prefix="agentos-twin-"))
        self.addCleanup(twin2.cleanup)
        twin2.config["storage"]["dataDir"] = srv.data_dir
        code, log = twin2.start(expect_exit=True)
        self.assertNotEqual(code, 0)
        self.assertIn("in use by another agentosd", log)
        # The first keeps serving.
        self.assertEqual(srv.stub().submit(wpb.WorkflowSpec(tasks=[task("a", "noop")])).status, 3)
        srv.stop()

    def test_taken_port_is_refused_and_the_harness_moves(self):
        # Another process takes the port the harness chose before agentosd
        # binds it (here a plain listening socket): agentosd refuses it,
        # naming the address, and the harness starts it on another port.
        srv = self.start()
        taken = srv.port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            other.bind(("127.0.0.1", taken))
            other.listen(1)
            srv.start()
            self.assertNotEqual(srv.port, taken)
            with open(os.path.join(srv.tmp, "agentosd-1.log")) as first:
                self.assertIn("cannot listen on 127.0.0.1:%d" % taken, first.read())
            self.assertEqual(srv.stub().submit(wpb.WorkflowSpec(tasks=[task("a", "noop")])).status, 3)
        srv.stop()

    def test_rpc_threads_follow_cpu_affinity(self):
        # One completion-queue thread per CPU the server may run on, not per
        # CPU of the machine: on one core a second thread cost 35% more CPU
        # per call (bench/rpc). Started from this thread with a one-CPU mask,
        # which the child inherits; an explicit --rpc-threads still wins.
        mask = os.sched_getaffinity(0)
        one = {min(mask)}
        os.sched_setaffinity(0, one)
        try:
            pinned = self.start().start()
            explicit = self.start(args=("--rpc-threads", "3")).start()
        finally:
            os.sched_setaffinity(0, mask)
        free = self.start().start()
        for srv, n in ((pinned, 1), (explicit, 3), (free, len(mask))):
            self.assertTrue(_healthy(srv.channel()))
            self.assertIn("rpc started threads=%d" % n, srv.log())
            srv.stop()

    def test_plaintext_agent_backend_is_warned_about(self):
        srv = self.start(agents=[
            {"name": "plain", "kind": "BACKEND_KIND_HTTPS", "url": "http://127.0.0.1:9/agent"},
            {"name": "sealed", "kind": "BACKEND_KIND_HTTPS", "url": "https://127.0.0.1:9/agent"}]).start()
        log = srv.log()
        self.assertIn("agent backend plain is plaintext HTTP (http://127.0.0.1:9/agent)", log)
        self.assertNotIn("agent backend sealed is plaintext", log)
        srv.stop()

    def test_config_errors(self):
        binary = os.environ["AGENTOSD"]

        def run(*args, config=None):
            path = None
            if config is not None:
                path = os.path.join(self.tmp, "bad.json")
                with open(path, "w") as f:
                    f.write(config)
                args = ("--config", path) + args
            return subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=30)
        r = run("--listen", "0.0.0.0:%d" % free_port())
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a loopback address; configure tls", r.stderr)
        r = run(config='{"listen": ["127.0.0.1:1"],\n "storage": {"dataDir": }}')
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid JSON at line 2", r.stderr)
        r = run(config='{"storage": {"dataDirectory": "/x"}}')
        self.assertIn("storage.dataDirectory: unknown field", r.stderr)
        r = run(config='{"agents": [{"name": "a", "kind": "BACKEND_KIND_HTTPS", "url": "ftp://x"}]}')
        self.assertIn("agents[0] (a).url: expected an https:// URL", r.stderr)
        r = run("--print-config")
        self.assertEqual(r.returncode, 0)
        self.assertIn('"maxMessageBytes": 4194304', r.stdout)
        self.assertIn('"127.0.0.1:7700"', r.stdout)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--insecure", r.stdout)
        r = run("--bogus")
        self.assertEqual(r.returncode, 2)


def ogrpc_call(srv, metadata):
    from agentos.v1 import orchestrator_pb2_grpc
    return orchestrator_pb2_grpc.OrchestratorStub(srv.channel()).ListWorkflows(
        opb.ListWorkflowsRequest(), metadata=metadata, timeout=5)


def _healthy(ch):
    try:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1
    except grpc.RpcError:
        return False


def _catch(fn):
    try:
        return fn()
    except grpc.RpcError as e:
        return e


if __name__ == "__main__":
    unittest.main()
