"""A Python client of agentos: submits a workflow, follows its events live,
takes a checkpoint and prints the result.

The stubs are generated from idl/ (the CMake build puts them in BUILD/py;
`generate.sh OUTDIR` does the same by hand): put them on PYTHONPATH.

usage: python3 client.py [--server HOST:PORT] [--token TOKEN] WORKFLOW.json
"""

import argparse
import json
import os
import sys

import grpc
from google.protobuf import json_format

from agentos.v1 import event_pb2, orchestrator_pb2, orchestrator_pb2_grpc, state_pb2, workflow_pb2


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default=os.environ.get("AGENTOS_SERVER", "127.0.0.1:7700"))
    p.add_argument("--token", default=os.environ.get("AGENTOS_TOKEN"))
    p.add_argument("workflow")
    args = p.parse_args()

    metadata = [("authorization", "Bearer " + args.token)] if args.token else None
    with grpc.insecure_channel(args.server) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorStub(channel)
        with open(args.workflow) as f:
            spec = json_format.Parse(f.read(), workflow_pb2.WorkflowSpec())
        submitted = stub.Orchestrate(orchestrator_pb2.OrchestrateRequest(workflow=spec, wait=False),
                                     metadata=metadata, timeout=30)
        print("submitted", submitted.workflow_id)

        events = 0
        stream = stub.StreamEvents(orchestrator_pb2.StreamEventsRequest(workflow_id=submitted.workflow_id),
                                   metadata=metadata, timeout=300)
        for ev in stream:
            events += 1
            print("#%d %s %s" % (ev.seq, event_pb2.EventType.Name(ev.type)[len("EVENT_TYPE_"):], ev.task_id))
            if ev.type == event_pb2.EVENT_TYPE_WORKFLOW_COMPLETED:
                stream.cancel()
                break

        checkpoint = stub.Checkpoint(orchestrator_pb2.CheckpointRequest(workflow_id=submitted.workflow_id,
                                                                        note="from python"),
                                     metadata=metadata, timeout=30)
        wf = stub.GetWorkflow(orchestrator_pb2.GetWorkflowRequest(workflow_id=submitted.workflow_id),
                              metadata=metadata, timeout=30)
        status = state_pb2.WorkflowStatus.Name(wf.status)
        print("checkpoint %s: %d tasks completed" % (checkpoint.id, len(checkpoint.completed_tasks)))
        print("workflow %s: %s %s" % (wf.id, status, wf.result.summary))
        print("RESULT " + json.dumps({"workflowId": wf.id, "status": status, "events": events,
                                      "checkpoint": checkpoint.id,
                                      "completed": list(wf.result.completed_tasks)}))
    ok = wf.status in (state_pb2.WORKFLOW_STATUS_SUCCESS, state_pb2.WORKFLOW_STATUS_PARTIAL_SUCCESS)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
