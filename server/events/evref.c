/* Reference-counted durable events shared between the processor, the hub
 * and the streams that write them. */
#include "mem.h"
#include "processor.h"

#include <stdlib.h>
#include <string.h>

ao_evref_t *ao_evref_new(uint64_t seq, int type, const char *tenant, const char *workflow_id,
                         const char *task_id, const void *data, size_t len)
{
    ao_evref_t *e = ao_xcalloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    e->seq = seq;
    e->type = type;
    e->tenant = ao_xstrdup(tenant ? tenant : "");
    e->workflow_id = ao_xstrdup(workflow_id ? workflow_id : "");
    e->task_id = ao_xstrdup(task_id ? task_id : "");
    e->bytes = grpc_slice_malloc(len);
    memcpy(GRPC_SLICE_START_PTR(e->bytes), data, len);
    return e;
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
    free(e->tenant);
    free(e->workflow_id);
    free(e->task_id);
    free(e);
}
