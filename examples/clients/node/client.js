// A Node client of agentos: submits a workflow, follows its events live,
// takes a checkpoint and prints the result. The service definition is
// loaded at run time from idl/ with @grpc/proto-loader (no generated code
// to keep in sync).
//
// usage: node client.js [--server HOST:PORT] [--token TOKEN] WORKFLOW.json
'use strict';

const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const IDL = process.env.AGENTOS_IDL || path.join(__dirname, '..', '..', '..', 'idl');

function parseArgs(argv) {
  const args = { server: process.env.AGENTOS_SERVER || '127.0.0.1:7700', token: process.env.AGENTOS_TOKEN };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--server') args.server = argv[++i];
    else if (argv[i] === '--token') args.token = argv[++i];
    else rest.push(argv[i]);
  }
  if (rest.length !== 1) {
    console.error('usage: node client.js [--server HOST:PORT] [--token TOKEN] WORKFLOW.json');
    process.exit(2);
  }
  args.workflow = rest[0];
  return args;
}

function loadService() {
  const def = protoLoader.loadSync(path.join(IDL, 'agentos/v1/orchestrator.proto'), {
    includeDirs: [IDL], keepCase: false, longs: String, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(def).agentos.v1.Orchestrator;
}

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const Orchestrator = loadService();
  const client = new Orchestrator(args.server, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (args.token) md.set('authorization', 'Bearer ' + args.token);

  const workflow = JSON.parse(fs.readFileSync(args.workflow, 'utf8'));
  const submitted = await call(client, 'Orchestrate', { workflow, wait: false }, md);
  console.log(`submitted ${submitted.workflowId}`);

  // Follow the workflow's events until it completes.
  let events = 0;
  await new Promise((resolve, reject) => {
    const stream = client.StreamEvents({ workflowId: submitted.workflowId }, md);
    stream.on('data', (ev) => {
      events++;
      console.log(`#${ev.seq} ${ev.type.replace('EVENT_TYPE_', '')} ${ev.taskId}`);
      if (ev.type === 'EVENT_TYPE_WORKFLOW_COMPLETED') {
        stream.cancel();
        resolve();
      }
    });
    stream.on('error', (err) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
    stream.on('end', resolve);
  });

  const checkpoint = await call(client, 'Checkpoint', { workflowId: submitted.workflowId, note: 'from node' }, md);
  const wf = await call(client, 'GetWorkflow', { workflowId: submitted.workflowId }, md);
  console.log(`checkpoint ${checkpoint.id}: ${checkpoint.completedTasks.length} tasks completed`);
  console.log(`workflow ${wf.id}: ${wf.status} ${wf.result ? wf.result.summary : ''}`);
  console.log('RESULT ' + JSON.stringify({
    workflowId: wf.id, status: wf.status, events, checkpoint: checkpoint.id,
    completed: wf.result ? wf.result.completedTasks : [],
  }));
  client.close();
  const ok = wf.status === 'WORKFLOW_STATUS_SUCCESS' || wf.status === 'WORKFLOW_STATUS_PARTIAL_SUCCESS';
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(`error: ${err.code !== undefined ? grpc.status[err.code] : ''} ${err.details || err.message}`);
  process.exit(1);
});
