"""Test harness: a real agentosd in a temporary directory, driven over gRPC.

Every integration test uses this: it writes a ServerConfig, starts the
built agentosd (path in $AGENTOSD), waits until it logs that it listens
(a channel made before that would sit out gRPC's reconnect backoff, a
second and more) and then until the health check answers, and stops it
with SIGTERM (asserting a clean exit and no sanitizer report) or kill -9
(for crash tests) and restarts it on the same data directory.
Waiting is always on an event with a deadline, never a fixed sleep.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import grpc

from agentos.v1 import orchestrator_pb2 as opb
from agentos.v1 import orchestrator_pb2_grpc as ogrpc
from agentos.v1 import workflow_pb2 as wpb
from agentos.v1 import event_pb2 as epb
from agentos.v1 import state_pb2 as spb
from grpc_health.v1 import health_pb2, health_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Statuses that would mean agentosd failed, not the request.
SERVER_FAULTS = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                 grpc.StatusCode.DATA_LOSS)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_port():
    """A port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, what="condition", interval=0.01):
    """Polls predicate() until it returns a truthy value or the deadline
    passes (then fails naming `what`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def builtin(name, **settings):
    """A builtin agent backend entry for the config."""
    entry = {"name": name, "kind": "BACKEND_KIND_BUILTIN", "builtin": settings}
    return entry


class Server:
    """One agentosd process with its own data directory."""

    def __init__(self, agents=None, config=None, tmp=None, port=None, args=()):
        self.tmp = tmp or tempfile.mkdtemp(prefix="agentos-it-")
        # A port the harness chose may be taken by another process (an
        # outgoing connection's ephemeral port) before agentosd binds it:
        # start() then moves to another. A port the test chose stays.
        self.own_port = port is None
        self.port = port or free_port()
        self.data_dir = os.path.join(self.tmp, "data")
        self.config = {
            "listen": ["127.0.0.1:%d" % self.port],
            "storage": {"dataDir": self.data_dir},
            "agents": agents or [builtin("noop")],
            "shutdownGraceSeconds": 2,
        }
        if config:
            self.config.update(config)
        self.args = list(args)
        self.proc = None
        self.log_path = None
        self.starts = 0
        self._channel = None

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def write_config(self):
        path = os.path.join(self.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(self.config, f, indent=2)
        return path

    def start(self, wait=True, expect_exit=False):
        """Starts agentosd and waits until it listens; then, with wait,
        until it serves (a TLS server's test checks that itself). With
        expect_exit, waits until it exits instead, returning (code, log).
        If the port the harness chose was taken meanwhile, agentosd is
        started again on another."""
        for _ in range(5):
            self._spawn()
            if expect_exit:
                code = self.proc.wait(timeout=30)
                self.log_file.close()
                return code, self.log()
            if self._wait_listening():
                break
        else:
            raise AssertionError("agentosd found no free port in 5 tries:\n%s" % self.log())
        if wait:
            self.wait_healthy()
        return self

    def _spawn(self):
        cfg = self.write_config()
        self.starts += 1
        self.log_path = os.path.join(self.tmp, "agentosd-%d.log" % self.starts)
        binary = os.environ.get("AGENTOSD", os.path.join(ROOT, "build", "server", "agentosd"))
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary, "--config", cfg] + self.args,
                                     stdout=self.log_file, stderr=subprocess.STDOUT, env=env)

    def _wait_listening(self, timeout=30.0):
        """True once agentosd logs that it listens (it logs at info by
        default); False if it exited because the harness's port was taken
        (the port is replaced); fails on any other exit."""
        def state():
            if "listening addr=" in self.log():
                return "listening"
            return "exited" if self.proc.poll() is not None else None
        if wait_until(state, timeout, "agentosd to listen on %s" % self.target, interval=0.02) == "listening":
            return True
        log = self.log()
        taken = "cannot listen on %s" % self.target in log
        if taken and self.own_port and self.config["listen"] == [self.target]:
            self.log_file.close()
            self.port = free_port()
            self.config["listen"] = [self.target]
            self._channel = None
            return False
        raise AssertionError("agentosd exited (%s) while starting:\n%s" % (self.proc.returncode, log))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_healthy(self, timeout=20.0):
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError("agentosd exited (%s) while starting:\n%s"
                                     % (self.proc.returncode, self.log()))
            try:
                stub = health_pb2_grpc.HealthStub(self.channel())
                r = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return r.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False
        wait_until(healthy, timeout, "agentosd to serve on %s" % self.target, interval=0.05)

    def channel(self):
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def stub(self, token=None):
        return Client(self.channel(), token)

    def check_log_clean(self):
        log = self.log()
        for mark in SANITIZER_MARKS:
            at = log.find(mark)
            if at >= 0:
                # The report itself, wherever it is (UBSan goes on after one).
                raise AssertionError("sanitizer report in agentosd's log:\n" + log[max(0, at - 1500):at + 6000])

    def stop(self, timeout=30.0):
        """SIGTERM; asserts exit 0 and a clean log."""
        if self.proc is None:
            return
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("agentosd did not stop within %.0fs:\n%s" % (timeout, self.log()[-4000:]))
        self.log_file.close()
        self.proc = None
        self.check_log_clean()
        if code != 0:
            raise AssertionError("agentosd exited %d:\n%s" % (code, self.log()[-4000:]))

    def kill9(self):
        """kill -9: no chance to flush or clean up."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.log_file.close()
        self.proc = None

    def cleanup(self):
        if self.proc is not None:
            self.kill9()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Client:
    """The Orchestrator stub with the caller's token on every call."""

    def __init__(self, channel, token=None):
        self.stub = ogrpc.OrchestratorStub(channel)
        self.metadata = [("authorization", "Bearer " + token)] if token else None

    def __getattr__(self, name):
        method = getattr(self.stub, name)

        def call(request, timeout=30, **kw):
            return method(request, timeout=timeout, metadata=self.metadata, **kw)
        return call

    def submit(self, spec, wait=True, request_id="", timeout=60):
        return self.Orchestrate(opb.OrchestrateRequest(workflow=spec, wait=wait,
                                                       request_id=request_id), timeout=timeout)

    def get(self, wf_id, at_seq=0):
        return self.GetWorkflow(opb.GetWorkflowRequest(workflow_id=wf_id, at_seq=at_seq))

    def wait_status(self, wf_id, statuses, timeout=30.0):
        """Polls GetWorkflow until the workflow's status is one of statuses."""
        def done():
            wf = self.get(wf_id)
            return wf if wf.status in statuses else None
        return wait_until(done, timeout, "workflow %s to reach %s" % (wf_id, statuses))

    def events(self, wf_id=None, from_seq=0, timeout=10, types=()):
        """The durable events so far (reads the stream until the workflow's
        last event or the call's deadline)."""
        req = opb.StreamEventsRequest(from_seq=from_seq, workflow_id=wf_id or "", types=types)
        out = []
        try:
            for ev in self.StreamEvents(req, timeout=timeout):
                out.append(ev)
                if ev.type == epb.EVENT_TYPE_WORKFLOW_COMPLETED and wf_id:
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return out


CERTS_LOCK = __import__("threading").Lock()


def make_certs(directory):
    """The test certificates (tools/make-certs.sh) in directory."""
    with CERTS_LOCK:
        subprocess.run(["bash", os.path.join(ROOT, "tools", "make-certs.sh"), directory], check=True)
    return directory


class Mock:
    """A mock_agent process (HTTPS JSON, OpenAI-compatible, gRPC) over TLS."""

    def __init__(self, certs, cert="server", args=(), client_ca=None, require_client_cert=False):
        self.tmp = tempfile.mkdtemp(prefix="agentos-mock-")
        self.port_file = os.path.join(self.tmp, "ports.json")
        binary = os.environ.get("AO_MOCK_AGENT", os.path.join(ROOT, "build", "tools", "mock_agent"))
        cmd = [binary, "--cert", os.path.join(certs, cert + ".pem"), "--key", os.path.join(certs, cert + ".key"),
               "--https-port", "0", "--grpc-port", "0", "--port-file", self.port_file, "--quiet"] + list(args)
        if client_ca:
            cmd += ["--client-ca", client_ca]
        if require_client_cert:
            cmd += ["--require-client-cert"]
        self.log_path = os.path.join(self.tmp, "mock.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log_file, stderr=subprocess.STDOUT)
        ports = wait_until(lambda: os.path.exists(self.port_file) and json.load(open(self.port_file)),
                           10, "mock_agent to listen")
        self.https, self.grpc = ports["https"], ports["grpc"]

    def stats(self, ca):
        import ssl
        import urllib.request
        ctx = ssl.create_default_context(cafile=ca)
        return json.loads(urllib.request.urlopen("https://localhost:%d/stats" % self.https, context=ctx,
                                                 timeout=10).read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def task(id, agent="noop", deps=(), **kw):
    return wpb.TaskSpec(id=id, agent=agent, depends_on=list(deps), **kw)


def params(**kw):
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in kw.items()}


WS = spb.WorkflowStatus
TS = spb.TaskStatus
EV = epb.EventType


def status_name(status):
    return spb.WorkflowStatus.Name(status)


def task_state(wf, task_id):
    for t in wf.tasks:
        if t.spec.id == task_id:
            return t
    raise KeyError(task_id)
