/* Reference-counted durable events shared between the processor, the hub
 * and the streams that write them. */
#include "mem.h"
#include "processor.h"

#include <stdlib.h>
#include <string.h>

ao_evref_t *ao_evref_take(uint64_t seq, int type, const char *tenant, const char *workflow_id,
                          const char *task_id, grpc_slice bytes)
{
    /* One allocation: the struct, then its three strings. */
    if (!tenant) tenant = "";
    if (!workflow_id) workflow_id = "";
    if (!task_id) task_id = "";
    size_t lt = strlen(tenant) + 1, lw = strlen(workflow_id) + 1, lk = strlen(task_id) + 1;
    ao_evref_t *e = ao_xmalloc(sizeof *e + lt + lw + lk);
    atomic_init(&e->refs, 1);
    e->seq = seq;
    e->type = type;
    e->tenant = (char *)(e + 1);
    e->workflow_id = e->tenant + lt;
    e->task_id = e->workflow_id + lw;
    memcpy(e->tenant, tenant, lt);
    memcpy(e->workflow_id, workflow_id, lw);
    memcpy(e->task_id, task_id, lk);
    e->bytes = bytes;
    return e;
}

ao_evref_t *ao_evref_new(uint64_t seq, int type, const char *tenant, const char *workflow_id,
                         const char *task_id, const void *data, size_t len)
{
    grpc_slice bytes = grpc_slice_malloc(len);
    memcpy(GRPC_SLICE_START_PTR(bytes), data, len);
    return ao_evref_take(seq, type, tenant, workflow_id, task_id, bytes);
}

ao_evref_t *ao_evref_ref(ao_evref_t *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void ao_evref_unref(ao_evref_t *e)
{
    if (!e || atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
    grpc_slice_unref(e->bytes);
    free(e);
}
