/* Secrets (API keys) from a file or an environment variable. Errors name
 * where the secret was looked for, never its value. */
#include "agent.h"
#include "mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ao_secret_load(const Agentos__V1__Secret *secret, char **out, ao_status_t *st)
{
    *out = NULL;
    if (!secret) return 0;
    if (*secret->file) {
        FILE *f = fopen(secret->file, "r");
        if (!f) return ao_status_set(st, AO_EINVAL, "api_key.file %s: %s", secret->file, strerror(errno));
        char buf[4096];
        char *line = fgets(buf, sizeof buf, f);
        fclose(f);
        if (!line) return ao_status_set(st, AO_EINVAL, "api_key.file %s is empty", secret->file);
        size_t n = strlen(buf);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
            buf[--n] = '\0';
        if (!n) return ao_status_set(st, AO_EINVAL, "api_key.file %s is empty", secret->file);
        *out = ao_xstrdup(buf);
        memset(buf, 0, sizeof buf);
        return 0;
    }
    if (*secret->env) {
        const char *v = getenv(secret->env);
        if (!v || !*v)
            return ao_status_set(st, AO_EINVAL, "api_key.env: the environment variable %s is not set",
                                 secret->env);
        *out = ao_xstrdup(v);
    }
    return 0;
}
