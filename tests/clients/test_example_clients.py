"""The Python and Node example clients (examples/clients/) against a real
agentosd: each submits a workflow, follows its events and takes a
checkpoint."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import ROOT, Server, builtin  # noqa: E402

WORKFLOW = {
    "name": "example",
    "tasks": [
        {"id": "research", "agent": "analyst"},
        {"id": "review", "agent": "analyst", "dependsOn": ["research"], "input": "{{deps.research.output}}"},
        {"id": "synthesis", "kind": "TASK_KIND_SYNTHESIS", "dependsOn": ["review"]},
    ],
}


class ExampleClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(agents=[builtin("analyst", latencyMs=20, score=0.7)],
                         config={"tokens": [{"tenant": "ex", "tokenSha256":
                                             __import__("hashlib").sha256(b"ex-token").hexdigest()}]})
        cls.srv.start()
        cls.tmp = tempfile.mkdtemp(prefix="agentos-examples-")
        cls.wf = os.path.join(cls.tmp, "workflow.json")
        with open(cls.wf, "w") as f:
            json.dump(WORKFLOW, f)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, out):
        line = [l for l in out.splitlines() if l.startswith("RESULT ")]
        self.assertEqual(len(line), 1, out)
        r = json.loads(line[0][len("RESULT "):])
        self.assertEqual(r["status"], "WORKFLOW_STATUS_SUCCESS")
        self.assertEqual(sorted(r["completed"]), ["research", "review", "synthesis"])
        self.assertGreaterEqual(r["events"], 7)  # submitted, 3 x started/succeeded, completed
        self.assertTrue(r["checkpoint"].startswith("ckpt-"))
        first = [l for l in out.splitlines() if l.startswith("#")][0]
        self.assertTrue(first.endswith("WORKFLOW_SUBMITTED ") or first.endswith("WORKFLOW_SUBMITTED"), first)

    def test_python_client(self):
        env = dict(os.environ)
        out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "clients", "python", "client.py"),
                              "--server", self.srv.target, "--token", "ex-token", self.wf],
                             capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.check(out.stdout)

    def test_node_client(self):
        node_dir = os.path.join(ROOT, "examples", "clients", "node")
        self.assertTrue(shutil.which("node"), "node is not installed")
        self.assertTrue(os.path.isdir(os.path.join(node_dir, "node_modules", "@grpc", "grpc-js")),
                        "run tools/bootstrap.sh: it installs @grpc/grpc-js and @grpc/proto-loader")
        out = subprocess.run(["node", os.path.join(node_dir, "client.js"), "--server", self.srv.target,
                              "--token", "ex-token", self.wf], capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.check(out.stdout)

    def test_wrong_token_is_refused(self):
        out = subprocess.run(["node", os.path.join(ROOT, "examples", "clients", "node", "client.js"), "--server",
                              self.srv.target, "--token", "nope", self.wf], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.returncode, 1)
        self.assertIn("UNAUTHENTICATED", out.stderr)


if __name__ == "__main__":
    unittest.main()
