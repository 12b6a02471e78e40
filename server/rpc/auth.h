/*
 * Who is calling: bearer tokens and client certificates mapped to tenants.
 *
 * Tokens are stored as SHA-256 hex digests in the config and compared in
 * constant time; a verified client-certificate identity listed in
 * cert_tenants maps to its tenant without a token. With no tokens and no
 * certificate mappings configured the server is open (tenant "default"),
 * which the server allows on loopback addresses only.
 *
 * Thread-safe after creation (read-only).
 */
#ifndef AO_AUTH_H
#define AO_AUTH_H

#include "agentos/v1/config.pb-c.h"
#include "err.h"

#include <grpc/grpc.h>

typedef struct ao_auth ao_auth_t;

/* The tenant of unauthenticated callers of an open server. */
#define AO_DEFAULT_TENANT "default"

/* Builds the token table from cfg (copied; cfg may go away). Token digests
 * that are not 64 hex characters are AO_EINVAL naming the token's entry. */
int ao_auth_create(const Agentos__V1__ServerConfig *cfg, ao_auth_t **out, ao_status_t *st);
void ao_auth_destroy(ao_auth_t *auth);

/* Whether callers need credentials (any token or certificate mapping). */
int ao_auth_required(const ao_auth_t *auth);

/* Resolves a caller. `bearer` is the authorization metadata value (or NULL),
 * `identity` the verified client-certificate identity (or NULL). Sets
 * *tenant (malloc'd) or returns AO_EUNAUTH with a message that says what
 * is missing or wrong, never echoing the token. */
int ao_auth_resolve(const ao_auth_t *auth, const char *bearer, const char *identity,
                    char **tenant, ao_status_t *st);

/* An ao_rpc_auth_fn over ao_auth_resolve (ud is the ao_auth_t). */
int ao_auth_rpc_hook(void *ud, grpc_call *call, const grpc_metadata_array *md, char **tenant,
                     ao_status_t *st);

#endif
