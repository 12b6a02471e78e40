/*
 * The result of a finished workflow: completed and failed agents with the
 * impact of each failure, the outputs, a confidence reduced for what is
 * missing, merged findings and recommendations derived from the failures.
 *
 * Pure (reads the state); thread-safe.
 */
#ifndef AO_RESULT_H
#define AO_RESULT_H

#include "wf.h"

/* Builds the result of wf ending with `status` (a WorkflowStatus). The
 * caller frees it (ao_pb_free). */
Agentos__V1__WorkflowResult *ao_result_build(const ao_wf_t *wf, int status);

/* "TIMEOUT" for ERROR_CLASS_TIMEOUT, ... */
const char *ao_result_class_name(int error_class);

#endif
