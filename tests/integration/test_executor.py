"""The DAG executor and the orchestration semantics, through gRPC from
Python, against a real agentosd with builtin agents (deterministic
behaviour for each scenario)."""

import json
import time
import unittest

import grpc

from harness import (EV, TS, WS, Server, builtin, epb, opb, params, spb, task, task_state,
                     wait_until, wpb)


def spec(*tasks, **kw):
    return wpb.WorkflowSpec(tasks=list(tasks), **kw)


class ExecutorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(agents=[
            builtin("fin", latencyMs=200, score=0.8, confidence=0.9, promptTokens=100, completionTokens=50),
            builtin("legal", latencyMs=100, score=0.4, confidence=0.8, findings=["compliance=issue"]),
            builtin("market", latencyMs=150, score=0.9, confidence=0.6, findings=["compliance=ok"]),
            builtin("tech", latencyMs=120, score=0.7),
            builtin("noop"),
            builtin("tokens", promptTokens=60, completionTokens=40),
            builtin("broken", failAlways=True),
            builtin("stuck", hang=True),
            {"name": "flaky", "kind": "BACKEND_KIND_BUILTIN", "builtin": {},
             "breaker": {"failureThreshold": 2, "resetTimeoutMs": 400}},
            # Fails on request without opening its breaker (the shared noop's
            # would stop the other tests' calls).
            {"name": "retrying", "kind": "BACKEND_KIND_BUILTIN", "builtin": {},
             "breaker": {"failureThreshold": 100000}},
            {"name": "extractor", "kind": "BACKEND_KIND_BUILTIN", "role": "ROLE_EXTRACTION",
             "builtin": {"promptTokens": 30, "completionTokens": 10}},
            {"name": "paid", "kind": "BACKEND_KIND_BUILTIN", "builtin": {"failAlways": True},
             "breaker": {"failureThreshold": 1, "resetTimeoutMs": 600000},
             "price": {"perCallMicros": "1000"}},
        ])
        cls.srv.start()
        cls.c = cls.srv.stub()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def test_acquisition_runs_in_its_critical_path_time(self):
        # The design note's example: legal after financial; market and
        # technical independent; synthesis after legal, market, technical.
        r = self.c.submit(spec(
            task("financial", "fin"),
            task("legal", "legal", deps=["financial"], input="Review, given {{deps.financial.output}}"),
            task("market", "market"),
            task("technical", "tech"),
            wpb.TaskSpec(id="synthesis", kind=wpb.TASK_KIND_SYNTHESIS,
                         depends_on=["legal", "market", "technical"]),
            name="acquisition"))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS, r)
        wf = self.c.get(r.workflow_id)
        fin, legal = task_state(wf, "financial"), task_state(wf, "legal")
        market, tech = task_state(wf, "market"), task_state(wf, "technical")
        # No level barrier: legal starts as soon as financial ends, while the
        # independent tasks started at once.
        self.assertLess(legal.started_unix_ms - fin.finished_unix_ms, 60)
        self.assertLess(market.started_unix_ms - wf.created_unix_ms, 60)
        self.assertLess(tech.started_unix_ms - wf.created_unix_ms, 60)
        makespan = wf.finished_unix_ms - wf.created_unix_ms
        self.assertGreaterEqual(makespan, 300)  # financial 200 + legal 100
        self.assertLess(makespan, 300 + 150, "makespan %d ms for a 300 ms critical path" % makespan)
        # The legal input carried financial's output.
        self.assertIn("fin processed financial", [t for t in r.result.results
                                                  if t.task_id == "financial"][0].output)
        # Confidence x authority synthesis over legal, market, technical.
        want = (0.4 * 0.8 + 0.9 * 0.6 + 0.7 * 0.9) / (0.8 + 0.6 + 0.9)
        self.assertAlmostEqual(r.result.score, want, places=6)
        # The conflicting compliance findings resolved: legal (0.8) beats
        # market (0.6).
        self.assertEqual([(f.key, f.value) for f in r.result.findings], [("compliance", "issue")])
        self.assertEqual(set(r.result.completed_agents), {"fin", "legal", "market", "tech"})
        self.assertGreater(wf.usage.api_calls, 0)
        self.assertEqual(wf.usage.total_tokens, 150)

    def test_validation_names_the_culprit(self):
        cases = [
            (spec(task("a", deps=["c"]), task("b", deps=["a"]), task("c", deps=["b"])),
             "cycle: a -> b -> c -> a"),
            (spec(task("a", "nobody")), 'task a: unknown agent "nobody"'),
            (spec(task("a"), task("a")), 'duplicate task id "a"'),
            (spec(task("a", deps=["zz"])), 'depends on unknown task "zz"'),
            (spec(task("a"), task("b", input="{{deps.a.output}}")), "not in its depends_on"),
            # The server's limits, named.
            (spec(*[task("t%d" % i) for i in range(10001)]), "10001 tasks is over limits.max_tasks (10000)"),
            (spec(task("a", input="x" * 70000)), "over limits.max_input_bytes (65536)"),
        ]
        for s, want in cases:
            with self.assertRaises(grpc.RpcError) as cm:
                self.c.submit(s)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(want, cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.Orchestrate(opb.OrchestrateRequest())
        self.assertIn("workflow: required", cm.exception.details())

    def test_request_id_makes_submit_idempotent(self):
        s = spec(task("a", "noop"))
        r1 = self.c.submit(s, request_id="retry-me")
        r2 = self.c.submit(s, request_id="retry-me")
        self.assertEqual(r1.workflow_id, r2.workflow_id)
        self.assertFalse(r1.deduplicated)
        self.assertTrue(r2.deduplicated)
        n = sum(1 for w in self.c.ListWorkflows(opb.ListWorkflowsRequest(page_size=1000)).workflows
                if w.id == r1.workflow_id)
        self.assertEqual(n, 1)

    def test_request_id_with_another_spec_is_refused(self):
        s = spec(task("a", "noop"))
        r1 = self.c.submit(s, request_id="mine")
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.submit(spec(task("a", "noop"), task("b", "noop")), request_id="mine")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertIn('request_id "mine" was used for workflow %s, with another workflow spec'
                      % r1.workflow_id, cm.exception.details())
        # The refusal used nothing up: the first spec is still its retry.
        r2 = self.c.submit(s, request_id="mine")
        self.assertTrue(r2.deduplicated)
        self.assertEqual(r2.workflow_id, r1.workflow_id)
        self.assertEqual(len(self.c.get(r1.workflow_id).submission_sha256), 64)

    def test_retries_then_success(self):
        r = self.c.submit(spec(task("a", "noop", params=params(fail_first=2),
                                    retry=wpb.RetryPolicy(max_attempts=3, initial_backoff_ms=10))))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        self.assertEqual(task_state(self.c.get(r.workflow_id), "a").attempts, 3)

    def test_backoff_stays_within_its_cap_with_jitter(self):
        """max_backoff_ms is the longest wait, jitter included: with a cap
        near UINT32_MAX ms and jitter 0.5, every chosen delay lies in
        [initial/2, cap] (a delay past the cap once wrapped round to a small
        one in the conversion to milliseconds)."""
        retry = wpb.RetryPolicy(max_attempts=2, initial_backoff_ms=4000000000, max_backoff_ms=4294967295,
                                jitter=0.5)
        r = self.c.submit(wpb.WorkflowSpec(tasks=[task("t%d" % i, "retrying", params=params(fail_first=1),
                                                       retry=retry) for i in range(20)]), wait=False)
        failed = []
        stream = self.c.StreamEvents(opb.StreamEventsRequest(workflow_id=r.workflow_id,
                                                             types=[EV.EVENT_TYPE_ATTEMPT_FAILED]), timeout=30)
        for ev in stream:
            failed.append(ev.attempt_failed)
            if len(failed) == 20:
                stream.cancel()
                break
        for f in failed:
            self.assertTrue(f.will_retry)
            self.assertGreaterEqual(f.retry_in_ms, 2000000000)
            self.assertLessEqual(f.retry_in_ms, 4294967295)
        self.c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=r.workflow_id))

    def test_calls_never_made_cost_nothing_and_nothing_done_is_failed(self):
        # Regression: an attempt refused by the open breaker was counted as an
        # API call and charged the backend's per-call price; and a workflow
        # whose optional tasks all failed ended PARTIAL_SUCCESS with nothing
        # done.
        once = wpb.RetryPolicy(max_attempts=1)
        r = self.c.submit(spec(
            task("a", "paid", optional=True, retry=once, impact="no a"),
            task("b", "paid", deps=["a"], optional=True, retry=once, impact="no b")))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        wf = self.c.get(r.workflow_id)
        a, b = task_state(wf, "a"), task_state(wf, "b")
        self.assertEqual((a.usage.api_calls, a.usage.cost_micros), (1, 1000))
        self.assertEqual(b.error_class, wpb.ERROR_CLASS_CIRCUIT_OPEN)
        self.assertEqual((b.usage.api_calls, b.usage.cost_micros), (0, 0))
        self.assertEqual((wf.usage.api_calls, wf.usage.cost_micros), (1, 1000))
        paid = [u for u in wf.agent_usage if u.agent == "paid"]
        self.assertEqual(paid[0].usage.api_calls, 1)
        self.assertEqual(sorted(f.task_id for f in r.result.failed_agents), ["a", "b"])

    def test_backend_default_role(self):
        # Regression: AgentBackend.role was never applied. A task without a
        # role of its own is counted under its backend's; its own wins.
        r = self.c.submit(spec(
            task("extract", "extractor"),
            wpb.TaskSpec(id="analyse", agent="extractor", role=wpb.ROLE_ANALYSIS),
            task("other", "tokens")))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        wf = self.c.get(r.workflow_id)
        by_role = {ru.role: ru.usage.total_tokens for ru in wf.role_usage}
        self.assertEqual(by_role.get(wpb.ROLE_EXTRACTION), 40)
        self.assertEqual(by_role.get(wpb.ROLE_ANALYSIS), 40 + 100)
        self.assertEqual(task_state(wf, "extract").spec.role, wpb.ROLE_EXTRACTION)

    def test_budget_warning_then_halt(self):
        # Each task uses 100 tokens; the budget is 250: 80% after the 2nd
        # (warning), past it after the 3rd (halt), the 4th never runs.
        chain = [task("t1", "tokens")] + [task("t%d" % i, "tokens", deps=["t%d" % (i - 1)]) for i in range(2, 6)]
        r = self.c.submit(spec(*chain, budget=wpb.Budget(max_tokens=250)))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_BUDGET_EXCEEDED)
        wf = self.c.get(r.workflow_id)
        self.assertEqual([task_state(wf, "t%d" % i).status for i in range(1, 6)],
                         [TS.TASK_STATUS_SUCCEEDED] * 3 + [TS.TASK_STATUS_SKIPPED] * 2)
        dims = {(a.dimension, a.exceeded) for a in wf.alerts}
        self.assertEqual(dims, {(spb.BUDGET_DIMENSION_TOKENS, True)})
        self.assertIn("budget exceeded: TOKENS 300 of 250", wf.stop_reason)
        self.assertEqual(r.result.completed_tasks, ["t1", "t2", "t3"])
        self.assertTrue(any("Raise the workflow budget" in x for x in r.result.recommendations))

    def test_partial_success_with_impact_and_recommendations(self):
        r = self.c.submit(spec(
            task("financial", "noop", params=params(score=0.8, confidence=0.9)),
            task("legal", "broken", optional=True, impact="Cannot confirm legal compliance",
                 retry=wpb.RetryPolicy(max_attempts=1)),
            task("market", "noop", params=params(score=0.6, confidence=0.9)),
            wpb.TaskSpec(id="synthesis", kind=wpb.TASK_KIND_SYNTHESIS,
                         depends_on=["financial", "legal", "market"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_PARTIAL_SUCCESS)
        res = r.result
        self.assertEqual(len(res.failed_agents), 1)
        fa = res.failed_agents[0]
        self.assertEqual((fa.task_id, fa.agent, fa.attempts, fa.required), ("legal", "broken", 1, False))
        self.assertEqual(fa.impact, "Cannot confirm legal compliance")
        self.assertIn("always fails", fa.error)
        self.assertIn("Manual review recommended: Cannot confirm legal compliance", res.recommendations)
        # Confidence reduced for the missing third of the analysis.
        self.assertAlmostEqual(res.confidence, 0.9 * 2 / 3, places=6)
        self.assertEqual(sorted(res.completed_tasks), ["financial", "market", "synthesis"])

    def test_required_failure_fails_and_skips_dependents(self):
        r = self.c.submit(spec(task("a", "broken", params=params(fail_retryable=True),
                                    retry=wpb.RetryPolicy(max_attempts=2, initial_backoff_ms=5)),
                               task("b", "noop", deps=["a"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(task_state(wf, "a").attempts, 2)
        self.assertEqual(task_state(wf, "b").status, TS.TASK_STATUS_SKIPPED)
        self.assertIn("required task a failed", r.result.summary)

    def test_optional_failure_skip_policy(self):
        r = self.c.submit(spec(task("a", "broken", optional=True, on_failure=wpb.DEPENDENTS_SKIP,
                                    retry=wpb.RetryPolicy(max_attempts=1)),
                               task("b", "noop", deps=["a"]), task("c", "noop")))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_PARTIAL_SUCCESS)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(task_state(wf, "b").status, TS.TASK_STATUS_SKIPPED)
        self.assertIn("dependency a failed", task_state(wf, "b").error)
        # The default policy runs the dependent with the input marked missing.
        r = self.c.submit(spec(task("a", "broken", optional=True, retry=wpb.RetryPolicy(max_attempts=1)),
                               task("b", "noop", deps=["a"], input="got: {{deps.a.output}}",
                                    params=params(output="{{input}}"))))
        wf = self.c.get(r.workflow_id)
        b = task_state(wf, "b")
        self.assertEqual(b.status, TS.TASK_STATUS_SUCCEEDED)
        self.assertEqual(list(b.missing_dependencies), ["a"])
        self.assertIn("[missing: a failed:", b.output)

    def test_fallback_agent(self):
        r = self.c.submit(spec(task("a", "broken", fallback_agent="noop", params=params(fail_retryable=True),
                                    retry=wpb.RetryPolicy(max_attempts=2, initial_backoff_ms=5))))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        a = task_state(self.c.get(r.workflow_id), "a")
        self.assertTrue(a.fell_back)
        self.assertEqual(a.agent, "noop")
        self.assertEqual((a.attempts, a.primary_attempts), (3, 2))

    def test_attempt_timeout_and_recommendation(self):
        r = self.c.submit(spec(task("slow", "stuck", attempt_timeout_ms=80,
                                    retry=wpb.RetryPolicy(max_attempts=2, initial_backoff_ms=5))))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        fa = r.result.failed_agents[0]
        self.assertEqual(fa.error_class, wpb.ERROR_CLASS_TIMEOUT)
        self.assertIn("timed out after 80 ms", fa.error)
        self.assertTrue(any("Retry slow with a longer timeout" in x for x in r.result.recommendations))

    def test_cancel(self):
        r = self.c.submit(spec(task("hang", "stuck"), task("after", "noop", deps=["hang"])), wait=False)
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_RUNNING)
        wait_until(lambda: task_state(self.c.get(r.workflow_id), "hang").status == TS.TASK_STATUS_RUNNING,
                   what="the task to run")
        wf = self.c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=r.workflow_id, reason="not needed"))
        wf = self.c.wait_status(r.workflow_id, [WS.WORKFLOW_STATUS_CANCELLED])
        self.assertEqual(task_state(wf, "hang").status, TS.TASK_STATUS_CANCELLED)
        self.assertEqual(task_state(wf, "after").status, TS.TASK_STATUS_SKIPPED)
        self.assertIn("not needed", wf.stop_reason)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.CancelWorkflow(opb.CancelWorkflowRequest(workflow_id=r.workflow_id))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_resume_from_checkpoint_reruns_only_the_failed_task(self):
        r = self.c.submit(spec(task("a", "noop"), task("b", "broken", deps=["a"],
                                                       retry=wpb.RetryPolicy(max_attempts=1)),
                               task("c", "noop", deps=["b"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        before = self.c.get(r.workflow_id)
        ck = self.c.ListCheckpoints(opb.ListCheckpointsRequest(workflow_id=r.workflow_id)).checkpoints
        self.assertTrue(ck, "a final checkpoint is taken automatically")
        latest = ck[-1]
        self.assertEqual([t.spec.id for t in latest.completed_tasks], ["a"])
        self.assertEqual(list(latest.next_steps), ["b", "c"])
        res = self.c.ResumeWorkflow(opb.ResumeWorkflowRequest(
            workflow_id=r.workflow_id, checkpoint_id=latest.id, wait=True,
            overrides=[epb.TaskOverride(task_id="b", agent="noop")]))
        self.assertEqual(res.status, WS.WORKFLOW_STATUS_SUCCESS)
        after = self.c.get(r.workflow_id)
        a0, a1 = task_state(before, "a"), task_state(after, "a")
        self.assertEqual((a1.attempts, a1.attempt_id, a1.finished_unix_ms),
                         (a0.attempts, a0.attempt_id, a0.finished_unix_ms), "a did not run again")
        self.assertEqual(task_state(after, "b").agent, "noop")
        self.assertEqual(task_state(after, "b").attempts, 1)
        self.assertEqual(after.resumes, 1)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.ResumeWorkflow(opb.ResumeWorkflowRequest(workflow_id=r.workflow_id))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_breaker_opens_and_recovers(self):
        fail = params(fail_always=True)
        r = self.c.submit(spec(*[task("f%d" % i, "flaky", optional=True, params=fail,
                                      retry=wpb.RetryPolicy(max_attempts=1)) for i in range(2)]))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)  # optional, but nothing succeeded
        h = self.c.GetAgentHealth(opb.GetAgentHealthRequest(agent="flaky")).agents[0]
        self.assertEqual(h.breaker, epb.BREAKER_STATE_OPEN)
        # While open, calls fail at once (no call made) with CIRCUIT_OPEN.
        r = self.c.submit(spec(task("x", "flaky", optional=True, retry=wpb.RetryPolicy(max_attempts=1))))
        fa = r.result.failed_agents[0]
        self.assertEqual(fa.error_class, wpb.ERROR_CLASS_CIRCUIT_OPEN)
        # After the reset timeout a probe succeeds and closes it.
        wait_until(lambda: time.time() * 1000 > h.opened_unix_ms + 450, what="the reset timeout")
        r = self.c.submit(spec(task("probe", "flaky")))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        h = self.c.GetAgentHealth(opb.GetAgentHealthRequest(agent="flaky")).agents[0]
        self.assertEqual(h.breaker, epb.BREAKER_STATE_CLOSED)

    def test_planner_expands_the_dag(self):
        plan = {"tasks": [{"id": "clauses", "agent": "noop"},
                          {"id": "risks", "agent": "noop", "dependsOn": ["clauses"],
                           "input": "{{deps.clauses.output}}"}],
                "rationale": "two steps"}
        r = self.c.submit(spec(
            wpb.TaskSpec(id="plan", kind=wpb.TASK_KIND_PLANNER, agent="noop",
                         params=params(plan=json.dumps(plan))),
            wpb.TaskSpec(id="synthesis", kind=wpb.TASK_KIND_SYNTHESIS, depends_on=["plan"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        wf = self.c.get(r.workflow_id)
        risks = task_state(wf, "plan/risks")
        self.assertEqual((risks.parent_task_id, risks.depth), ("plan", 1))
        self.assertGreaterEqual(task_state(wf, "synthesis").started_unix_ms, risks.finished_unix_ms)
        syn = [t for t in r.result.results if t.task_id == "synthesis"][0]
        self.assertIn("plan/risks", syn.output)
        # A plan with a cycle is rejected: the planner's attempt fails.
        bad = {"tasks": [{"id": "x", "agent": "noop", "dependsOn": ["y"]},
                         {"id": "y", "agent": "noop", "dependsOn": ["x"]}]}
        r = self.c.submit(spec(wpb.TaskSpec(id="plan", kind=wpb.TASK_KIND_PLANNER, agent="noop",
                                            params=params(plan=json.dumps(bad)),
                                            retry=wpb.RetryPolicy(max_attempts=1))))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_FAILED)
        self.assertIn("plan rejected", r.result.failed_agents[0].error)
        self.assertIn("cycle", r.result.failed_agents[0].error)

    def test_progressive_refinement_and_early_termination(self):
        ref = wpb.RefinementSpec(areas=["contracts", "patents", "litigation"], stages=[
            wpb.RefinementStage(name="broad", agent="noop", input="scan {{area}}", threshold=0.5),
            wpb.RefinementStage(name="detailed", agent="noop", input="{{prev.output}}", threshold=0.5)])
        r = self.c.submit(spec(
            wpb.TaskSpec(id="review", kind=wpb.TASK_KIND_REFINEMENT, refinement=ref,
                         params=params(score_by_area="contracts=0.9,patents=0.2,litigation=0.7")),
            wpb.TaskSpec(id="synthesis", kind=wpb.TASK_KIND_SYNTHESIS, depends_on=["review"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        ids = {t.spec.id for t in self.c.get(r.workflow_id).tasks}
        self.assertIn("review/1/contracts", ids)
        self.assertIn("review/1/litigation", ids)
        self.assertNotIn("review/1/patents", ids)  # dropped after the broad stage
        # Regression: the synthesis took the dropped area's broad result as an
        # input. It gets the detailed results of the areas that passed, and
        # nothing counts as missing.
        syn = [e for e in self.c.events(r.workflow_id) if e.type == epb.EVENT_TYPE_SYNTHESIS_COMPUTED]
        self.assertEqual(len(syn), 1)
        self.assertEqual(sorted(i.task_id for i in syn[0].synthesis.inputs),
                         ["review/1/contracts", "review/1/litigation"])
        self.assertEqual(list(syn[0].synthesis.missing), [])
        # Nothing passes: the workflow ends early.
        r = self.c.submit(spec(
            wpb.TaskSpec(id="review", kind=wpb.TASK_KIND_REFINEMENT, refinement=ref,
                         params=params(score_by_area="contracts=0.1,patents=0.2,litigation=0.3")),
            task("expensive", "noop", deps=["review"])))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        self.assertTrue(r.result.early_terminated)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(task_state(wf, "expensive").status, TS.TASK_STATUS_SKIPPED)
        self.assertIn("no area passed stage 0", wf.stop_reason)

    def test_sync_point_resolves_conflicts(self):
        r = self.c.submit(spec(
            task("regulatory", "noop", authority=1.0, params=params(findings="exposure=high", confidence=0.7)),
            task("general", "noop", authority=0.6, params=params(findings="exposure=low", confidence=0.9)),
            wpb.TaskSpec(id="sync", kind=wpb.TASK_KIND_SYNC, depends_on=["regulatory", "general"]),
            task("after", "noop", deps=["sync"], input="exposure is {{findings.exposure}}",
                 params=params(output="{{input}}"))))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(task_state(wf, "after").output, "exposure is high")
        self.assertEqual([(f.key, f.value) for f in wf.findings], [("exposure", "high")])

    def test_strategy_auto_picks_a_single_agent(self):
        r = self.c.submit(spec(task("only", "noop"), strategy=wpb.STRATEGY_AUTO,
                               auto_strategy=wpb.AutoStrategy(single_agent="noop", objective="answer it")))
        self.assertEqual(r.status, WS.WORKFLOW_STATUS_SUCCESS)
        wf = self.c.get(r.workflow_id)
        self.assertEqual(wf.strategy, wpb.STRATEGY_SINGLE_AGENT)
        self.assertIn("complexity 0.00 < 0.30", wf.strategy_reason)
        self.assertEqual(task_state(wf, "auto.single").status, TS.TASK_STATUS_SUCCEEDED)
        self.assertEqual(task_state(wf, "only").status, TS.TASK_STATUS_SKIPPED)

    def test_small_workflow_is_not_starved(self):
        # Both on one backend with room for 64 calls at once: the big
        # workflow's 300 calls (200 ms each) queue, and the small one's are
        # served round-robin between them, not after all of them.
        big = self.c.submit(spec(*[task("b%d" % i, "fin") for i in range(300)]), wait=False)
        small = self.c.submit(spec(task("s1", "fin"), task("s2", "fin"), task("s3", "fin")))
        self.assertEqual(small.status, WS.WORKFLOW_STATUS_SUCCESS)
        self.assertNotEqual(self.c.get(big.workflow_id).status, WS.WORKFLOW_STATUS_SUCCESS)
        # Served after about the calls in flight (64), not after the big
        # workflow's whole queue (300): count the big one's calls that
        # finished first (by the log's order, not by time).
        self.c.wait_status(big.workflow_id, [WS.WORKFLOW_STATUS_SUCCESS], timeout=60)
        succeeded = lambda wf: [e.seq for e in self.c.events(wf) if e.type == EV.EVENT_TYPE_TASK_SUCCEEDED]
        last_small = max(succeeded(small.workflow_id))
        before = sum(1 for seq in succeeded(big.workflow_id) if seq < last_small)
        self.assertLess(before, 150, "%d of the big workflow's calls finished first" % before)

    def test_get_at_seq_and_list_filters(self):
        r = self.c.submit(spec(task("a", "noop"), task("b", "noop", deps=["a"]),
                               labels={"team": "risk"}))
        first = self.c.get(r.workflow_id, at_seq=r.seq)
        self.assertTrue(all(t.status == TS.TASK_STATUS_PENDING for t in first.tasks))
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.get(r.workflow_id, at_seq=10 ** 12)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        listed = self.c.ListWorkflows(opb.ListWorkflowsRequest(labels={"team": "risk"})).workflows
        self.assertIn(r.workflow_id, [w.id for w in listed])
        none = self.c.ListWorkflows(opb.ListWorkflowsRequest(labels={"team": "nobody"})).workflows
        self.assertEqual(len(none), 0)
        page = self.c.ListWorkflows(opb.ListWorkflowsRequest(page_size=2))
        self.assertEqual(len(page.workflows), 2)
        nxt = self.c.ListWorkflows(opb.ListWorkflowsRequest(page_size=2, page_token=page.next_page_token))
        self.assertTrue(set(w.id for w in page.workflows).isdisjoint(w.id for w in nxt.workflows))
        with self.assertRaises(grpc.RpcError) as cm:
            self.c.get("wf-does-not-exist")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main()
