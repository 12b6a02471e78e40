"""kill -9 at any moment loses no acknowledged event; unfinished workflows
resume after a restart and finish with every task's result exactly once."""

import json
import os
import random
import subprocess
import threading
import time
import unittest

import grpc

from harness import (TS, WS, Server, builtin, epb, opb, task, task_state, wait_until, wpb)

LOGDUMP = os.environ.get("AO_LOGDUMP", "ao-logdump")


def logdump(data_dir, *args):
    return subprocess.run([LOGDUMP, data_dir] + list(args), capture_output=True, text=True, timeout=120)


class RecoveryTest(unittest.TestCase):
    def setUp(self):
        self.srv = Server(agents=[builtin("step", latencyMs=300), builtin("noop"), builtin("stuck", hang=True),
                                  builtin("nope", failAlways=True)])
        self.srv.start()

    def tearDown(self):
        if self.srv.proc is not None:
            self.srv.stop()
        self.srv.cleanup()

    def test_kill9_mid_workflow_then_complete_exactly_once(self):
        c = self.srv.stub()
        chain = [task("a", "step")] + [task(x, "step", deps=[p]) for p, x in zip("abc", "bcd")]
        fan = [task("f%d" % i, "step", deps=["a"]) for i in range(3)]
        r = c.submit(wpb.WorkflowSpec(tasks=chain + fan + [
            wpb.TaskSpec(id="synthesis", kind=wpb.TASK_KIND_SYNTHESIS, depends_on=["d", "f0", "f1", "f2"])]),
            wait=False)
        wf_id = r.workflow_id

        def mid():
            wf = c.get(wf_id)
            done = sum(t.status == TS.TASK_STATUS_SUCCEEDED for t in wf.tasks)
            running = [t.spec.id for t in wf.tasks if t.status == TS.TASK_STATUS_RUNNING]
            return running if done >= 1 and running else None
        running = wait_until(mid, 20, "a task running after one succeeded")
        lost = {t.spec.id: t.attempt_id for t in c.get(wf_id).tasks if t.spec.id in running}
        self.srv.kill9()

        self.srv.start()
        # The events after the workflow index's last catch-up were indexed
        # at the start, before recovery read them.
        self.assertRegex(self.srv.log(), r"indexed the \d+ events after indexed_through 0 in ")
        c = self.srv.stub()
        wf = c.wait_status(wf_id, [WS.WORKFLOW_STATUS_SUCCESS], timeout=30)
        ids = [t.spec.id for t in wf.tasks]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertTrue(all(t.status == TS.TASK_STATUS_SUCCEEDED for t in wf.tasks))
        res = wf.result
        self.assertEqual(sorted(res.completed_tasks), sorted(ids))
        self.assertEqual(sorted(o.task_id for o in res.results), sorted(ids))
        # The tasks running at the crash ran again with a new attempt id and
        # the lost attempt did not count against their retries.
        for tid, old in lost.items():
            t = task_state(wf, tid)
            self.assertNotEqual(t.attempt_id, old)
            self.assertEqual(t.attempts, 1)
        self.srv.stop()
        out = logdump(self.srv.data_dir, "--json", "--workflow", wf_id)
        self.assertEqual(out.returncode, 0, out.stderr)
        events = [json.loads(line) for line in out.stdout.splitlines()]
        recovered = [e["taskId"] for e in events if e["type"] == "EVENT_TYPE_TASK_RECOVERED"]
        self.assertEqual(sorted(recovered), sorted(lost))
        completed = [e for e in events if e["type"] == "EVENT_TYPE_WORKFLOW_COMPLETED"]
        self.assertEqual(len(completed), 1)
        check = logdump(self.srv.data_dir)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.srv.proc = None

    def test_resumed_workflow_survives_restart(self):
        # Regression: a resumed workflow came back from a restart in its old
        # finished state (its snapshot said FAILED; nothing replayed past it).
        c = self.srv.stub()
        r = c.submit(wpb.WorkflowSpec(tasks=[task("a", "noop"), task("b", "nope", deps=["a"])]), wait=True)
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        res = c.ResumeWorkflow(opb.ResumeWorkflowRequest(
            workflow_id=r.workflow_id, overrides=[epb.TaskOverride(task_id="b", agent="step")]))
        self.assertEqual(res.workflow_id, r.workflow_id)
        wait_until(lambda: task_state(c.get(r.workflow_id), "b").status == TS.TASK_STATUS_RUNNING, 20,
                   "b to run again")
        self.srv.kill9()
        self.srv.start()
        c = self.srv.stub()
        wf = c.wait_status(r.workflow_id, [WS.WORKFLOW_STATUS_SUCCESS], timeout=30)
        self.assertEqual(task_state(wf, "b").status, TS.TASK_STATUS_SUCCEEDED)
        self.assertEqual(wf.resumes, 1)
        # A clean restart keeps it too.
        self.srv.stop()
        self.srv.start()
        self.assertEqual(self.srv.stub().get(r.workflow_id).status, WS.WORKFLOW_STATUS_SUCCESS)

    def test_crash_loop_loses_no_acknowledged_event(self):
        c = self.srv.stub()
        r = c.submit(wpb.WorkflowSpec(tasks=[task("hold", "stuck")]), wait=False)
        wf_id = r.workflow_id
        acked = []
        lock = threading.Lock()
        rng = random.Random(7)

        def publisher(n, stop):
            stub = self.srv.stub()
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    resp = stub.PublishEvent(opb.PublishEventRequest(
                        workflow_id=wf_id, custom=epb.CustomPayload(
                            name="load", data="client %d event %d %s" % (n, i, "x" * 150))), timeout=5)
                except grpc.RpcError:
                    return
                with lock:
                    acked.append(resp.seq)

        rounds = 5
        for rnd in range(rounds):
            stop = threading.Event()
            threads = [threading.Thread(target=publisher, args=(n, stop)) for n in range(4)]
            for t in threads:
                t.start()
            # Kill at a random moment once appends are flowing.
            base = len(acked)
            wait_until(lambda: len(acked) > base + 20, 20, "appends to flow")
            time.sleep(rng.uniform(0.0, 0.4))  # the random moment of the crash
            self.srv.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=20)
            self.srv.start()
            c = self.srv.stub()
            self.assertEqual(c.get(wf_id).status, WS.WORKFLOW_STATUS_RUNNING)

        self.srv.stop()
        check = logdump(self.srv.data_dir)
        self.assertEqual(check.returncode, 0, check.stderr + check.stdout)
        stored = set(int(x) for x in logdump(self.srv.data_dir, "--seqs").stdout.split())
        self.assertEqual(len(acked), len(set(acked)), "a sequence number was acknowledged twice")
        missing = sorted(set(acked) - stored)
        self.assertEqual(missing, [], "acknowledged events missing after kill -9")
        self.assertGreater(len(acked), rounds * 20)
        self.srv.proc = None


if __name__ == "__main__":
    unittest.main()
