/*
 * One unary call on the gRPC core C API, started as a single batch of its
 * six ops: the benchmarks' clients (bench/rpc, bench/eventlog) start every
 * call this way, with grpc_channel_create_registered_call's call.
 */
#ifndef AO_BENCH_UNARY_H
#define AO_BENCH_UNARY_H

#include <grpc/grpc.h>
#include <string.h>

/* Sends req (the caller keeps it until the tag completes) and receives into
 * *resp, md, trailing, *status and *details, which this initialises; tag
 * comes back on the call's completion queue when all is done. */
static inline grpc_call_error ao_bench_unary_start(grpc_call *call, uint32_t md_flags,
                                                   grpc_byte_buffer *req, grpc_byte_buffer **resp,
                                                   grpc_metadata_array *md,
                                                   grpc_metadata_array *trailing,
                                                   grpc_status_code *status, grpc_slice *details,
                                                   void *tag)
{
    grpc_metadata_array_init(md);
    grpc_metadata_array_init(trailing);
    *details = grpc_empty_slice();
    *resp = NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = md_flags;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = resp;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = trailing;
    ops[5].data.recv_status_on_client.status = status;
    ops[5].data.recv_status_on_client.status_details = details;
    return grpc_call_start_batch(call, ops, 6, tag, NULL);
}

#endif
