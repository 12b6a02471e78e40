"""agentosctl end to end against a real agentosd: submit (--wait, --follow,
exit codes), events, status tree (and --at), list, checkpoint(s), resume,
cancel, agents, publish, --json."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Server, builtin  # noqa: E402

CTL = os.environ.get("AGENTOSCTL", "agentosctl")


class AgentosctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(agents=[builtin("analyst", latencyMs=20, score=0.6, promptTokens=30, completionTokens=20),
                                 builtin("broken", failAlways=True), builtin("stuck", hang=True)])
        cls.srv.start()
        cls.tmp = tempfile.mkdtemp(prefix="agentos-ctl-")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ctl(self, *args, code=0):
        out = subprocess.run([CTL, "--server", self.srv.target] + list(args), capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.returncode, code, "agentosctl %s: %s%s" % (" ".join(args), out.stdout, out.stderr))
        return out.stdout

    def workflow(self, name, spec):
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(spec, f)
        return path

    def test_submit_wait_status_list(self):
        wf = self.workflow("ok", {"name": "ctl-ok", "tasks": [
            {"id": "a", "agent": "analyst"}, {"id": "b", "agent": "analyst", "dependsOn": ["a"]}]})
        out = self.ctl("submit", wf, "--wait")
        self.assertIn(": SUCCESS", out)
        self.assertIn("2 of 2 tasks completed", out)
        r = json.loads(self.ctl("--json", "submit", wf, "--wait"))
        wid, first = r["workflowId"], r["seq"]
        self.assertEqual(r["status"], "WORKFLOW_STATUS_SUCCESS")
        tree = self.ctl("status", wid)
        self.assertIn("ctl-ok: SUCCESS", tree)
        self.assertRegex(tree, r"a\s+SUCCEEDED\s+attempts 1\s+tokens 50")
        self.assertRegex(tree, r"b\s+SUCCEEDED.*after a")
        early = self.ctl("status", wid, "--at", first)
        self.assertRegex(early, r"a\s+PENDING")
        listed = self.ctl("list")
        self.assertIn(wid, listed)
        js = json.loads(self.ctl("--json", "status", wid))
        self.assertEqual(len(js["tasks"]), 2)
        # Pages: every workflow once, page by page.
        seen, token = [], None
        for _ in range(100):
            args = ["--json", "list", "--page-size", "1"] + (["--page-token", token] if token else [])
            page = json.loads(self.ctl(*args))
            seen += [w["id"] for w in page.get("workflows", [])]
            token = page.get("nextPageToken")
            if not token:
                break
        self.assertEqual(len(seen), len(set(seen)))
        self.assertIn(wid, seen)
        self.assertGreaterEqual(len(seen), 2)

    def test_exit_codes_and_follow(self):
        partial = self.workflow("partial", {"tasks": [
            {"id": "good", "agent": "analyst"},
            {"id": "bad", "agent": "broken", "optional": True, "impact": "No second opinion",
             "retry": {"maxAttempts": 1}}]})
        out = self.ctl("submit", partial, "--follow", code=3)
        self.assertIn("TASK_FAILED", out)
        self.assertIn("impact: No second opinion", out)
        self.assertIn("Manual review recommended: No second opinion", out)
        failed = self.workflow("failed", {"tasks": [{"id": "bad", "agent": "broken", "retry": {"maxAttempts": 1}}]})
        self.ctl("submit", failed, "--wait", code=4)
        budget = self.workflow("budget", {"tasks": [
            {"id": "a", "agent": "analyst"}, {"id": "b", "agent": "analyst", "dependsOn": ["a"]}],
            "budget": {"maxTokens": "60"}})
        self.ctl("submit", budget, "--wait", code=6)
        bad = self.workflow("cycle", {"tasks": [{"id": "x", "agent": "analyst", "dependsOn": ["x"]}]})
        out = subprocess.run([CTL, "--server", self.srv.target, "submit", bad], capture_output=True, text=True)
        self.assertEqual(out.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", out.stderr)
        self.assertIn("task x: depends on itself", out.stderr)
        self.ctl("frobnicate", code=2)
        self.ctl("status", code=2)

    def test_events_json_lines(self):
        wf = self.workflow("ev", {"tasks": [{"id": "a", "agent": "analyst"}]})
        wid = json.loads(self.ctl("--json", "submit", wf, "--wait"))["workflowId"]
        lines = [json.loads(l) for l in self.ctl("--json", "events", "--workflow", wid).splitlines()]
        types = [e["type"] for e in lines]
        self.assertEqual(types[0], "EVENT_TYPE_WORKFLOW_SUBMITTED")
        self.assertIn("EVENT_TYPE_WORKFLOW_COMPLETED", types)
        only = [json.loads(l) for l in self.ctl("--json", "events", "--workflow", wid, "--type",
                                                 "TASK_SUCCEEDED").splitlines()]
        self.assertEqual([e["taskId"] for e in only], ["a"])

    def test_checkpoint_cancel_resume_publish_agents(self):
        wf = self.workflow("hold", {"tasks": [{"id": "hold", "agent": "stuck"}]})
        wid = json.loads(self.ctl("--json", "submit", wf))["workflowId"]
        self.assertIn("published", self.ctl("publish", wid, "--progress", "halfway"))
        self.assertIn("published", self.ctl("publish", wid, "--finding", "risk=low"))
        out = self.ctl("checkpoint", wid, "--note", "before cancel")
        self.assertRegex(out, r"ckpt-\d+ of %s" % wid)
        self.assertIn("before cancel", self.ctl("checkpoints", wid))
        self.assertIn("CANCELLED", self.ctl("cancel", wid, "--reason", "changed plans") +
                      self.ctl("status", wid))
        budget = os.path.join(self.tmp, "budget.json")
        with open(budget, "w") as f:
            json.dump({"maxTokens": "5000"}, f)
        out = self.ctl("resume", wid, "--agent", "hold=analyst", "--total-timeout", "hold=30000",
                       "--budget", budget, "--wait")
        self.assertIn(": SUCCESS", out)
        js = json.loads(self.ctl("--json", "status", wid))
        self.assertEqual(js["spec"]["budget"]["maxTokens"], "5000")
        hold = [t for t in js["tasks"] if t["spec"]["id"] == "hold"][0]
        self.assertEqual(hold["spec"]["totalTimeoutMs"], 30000)
        self.ctl("resume", wid, "--budget", os.path.join(self.tmp, "nope.json"), code=2)
        agents = self.ctl("agents")
        self.assertRegex(agents, r"analyst\s+BUILTIN\s+CLOSED")
        js = json.loads(self.ctl("--json", "agents"))
        self.assertEqual(len(js["agents"]), 3)


if __name__ == "__main__":
    unittest.main()
