#include "auth.h"

#include "mem.h"
#include "metrics.h"
#include "util.h"

#include <ctype.h>
#include <grpc/grpc_security.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct token {
    char sha256[65];
    char *tenant;
    char *name;
} token_t;

typedef struct cert_map {
    char *identity;
    char *tenant;
} cert_map_t;

struct ao_auth {
    token_t *tokens;
    size_t n_tokens;
    cert_map_t *certs;
    size_t n_certs;
};

static int is_hex64(const char *s)
{
    if (strlen(s) != 64) return 0;
    for (const char *p = s; *p; p++)
        if (!isxdigit((unsigned char)*p)) return 0;
    return 1;
}

int ao_auth_create(const Agentos__V1__ServerConfig *cfg, ao_auth_t **out, ao_status_t *st)
{
    ao_auth_t *a = ao_xcalloc(1, sizeof *a);
    a->tokens = ao_xcalloc(cfg->n_tokens, sizeof *a->tokens);
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        const Agentos__V1__TenantToken *t = cfg->tokens[i];
        if (!is_hex64(t->token_sha256)) {
            ao_auth_destroy(a);
            return ao_status_set(st, AO_EINVAL,
                                 "tokens[%zu].token_sha256: expected 64 hex characters (the "
                                 "SHA-256 of the token, `printf %%s TOKEN | sha256sum`)",
                                 i);
        }
        if (!ao_valid_id(t->tenant, 128)) {
            ao_auth_destroy(a);
            return ao_status_set(st, AO_EINVAL,
                                 "tokens[%zu].tenant: 1 to 128 characters of [A-Za-z0-9_.:/-]",
                                 i);
        }
        token_t *k = &a->tokens[a->n_tokens++];
        for (int j = 0; j < 64; j++) k->sha256[j] = (char)tolower((unsigned char)t->token_sha256[j]);
        k->sha256[64] = '\0';
        k->tenant = ao_xstrdup(t->tenant);
        k->name = ao_xstrdup(t->name);
    }
    a->certs = ao_xcalloc(cfg->n_cert_tenants, sizeof *a->certs);
    for (size_t i = 0; i < cfg->n_cert_tenants; i++) {
        const Agentos__V1__CertTenant *c = cfg->cert_tenants[i];
        if (!*c->identity || !ao_valid_id(c->tenant, 128)) {
            ao_auth_destroy(a);
            return ao_status_set(st, AO_EINVAL,
                                 "cert_tenants[%zu]: needs an identity and a tenant of 1 to 128 "
                                 "characters of [A-Za-z0-9_.:/-]",
                                 i);
        }
        a->certs[a->n_certs].identity = ao_xstrdup(c->identity);
        a->certs[a->n_certs++].tenant = ao_xstrdup(c->tenant);
    }
    *out = a;
    return 0;
}

void ao_auth_destroy(ao_auth_t *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n_tokens; i++) {
        free(a->tokens[i].tenant);
        free(a->tokens[i].name);
    }
    for (size_t i = 0; i < a->n_certs; i++) {
        free(a->certs[i].identity);
        free(a->certs[i].tenant);
    }
    free(a->tokens);
    free(a->certs);
    free(a);
}

int ao_auth_required(const ao_auth_t *a)
{
    return a->n_tokens > 0 || a->n_certs > 0;
}

int ao_auth_resolve(const ao_auth_t *a, const char *bearer, const char *identity, char **tenant,
                    ao_status_t *st)
{
    *tenant = NULL;
    if (identity) {
        for (size_t i = 0; i < a->n_certs; i++) {
            if (!strcmp(a->certs[i].identity, identity)) {
                *tenant = ao_xstrdup(a->certs[i].tenant);
                return 0;
            }
        }
    }
    if (!ao_auth_required(a)) {
        *tenant = ao_xstrdup(AO_DEFAULT_TENANT);
        return 0;
    }
    if (!bearer || !*bearer)
        return ao_status_set(st, AO_EUNAUTH,
                             "missing credentials: send metadata `authorization: Bearer TOKEN`");
    if (strncasecmp(bearer, "Bearer ", 7) != 0)
        return ao_status_set(st, AO_EUNAUTH,
                             "the authorization metadata must be `Bearer TOKEN`");
    const char *token = bearer + 7;
    while (*token == ' ') token++;
    char digest[65];
    ao_sha256_hex(token, strlen(token), digest);
    /* Compare against every entry so that timing does not tell which
     * position matched. */
    const token_t *match = NULL;
    for (size_t i = 0; i < a->n_tokens; i++)
        if (ao_const_time_streq(digest, a->tokens[i].sha256) && !match) match = &a->tokens[i];
    if (!match) return ao_status_set(st, AO_EUNAUTH, "invalid bearer token");
    *tenant = ao_xstrdup(match->tenant);
    return 0;
}

int ao_auth_rpc_hook(void *ud, grpc_call *call, const grpc_metadata_array *md, char **tenant,
                     ao_status_t *st)
{
    const ao_auth_t *a = ud;
    char *bearer = NULL;
    for (size_t i = 0; i < md->count; i++) {
        if (!grpc_slice_str_cmp(md->metadata[i].key, "authorization")) {
            grpc_slice v = md->metadata[i].value;
            bearer = ao_xstrndup((const char *)GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v));
            break;
        }
    }
    char *identity = NULL;
    grpc_auth_context *ctx = grpc_call_auth_context(call);
    if (ctx) {
        if (grpc_auth_context_peer_is_authenticated(ctx)) {
            static const char *names[] = {"x509_subject_alternative_name", "x509_common_name"};
            for (size_t n = 0; n < 2 && !identity; n++) {
                grpc_auth_property_iterator it =
                    grpc_auth_context_find_properties_by_name(ctx, names[n]);
                const grpc_auth_property *p;
                /* Any listed SAN may match a mapping. */
                while (!identity && (p = grpc_auth_property_iterator_next(&it))) {
                    for (size_t i = 0; i < a->n_certs; i++)
                        if (strlen(a->certs[i].identity) == p->value_length &&
                            !memcmp(a->certs[i].identity, p->value, p->value_length))
                            identity = ao_xstrndup(p->value, p->value_length);
                }
            }
        }
        grpc_auth_context_release(ctx);
    }
    int rc = ao_auth_resolve(a, bearer, identity, tenant, st);
    if (rc) AO_METRIC_INC(rpc_unauthenticated);
    free(bearer);
    free(identity);
    return rc;
}
