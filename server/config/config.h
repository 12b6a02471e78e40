/*
 * The server configuration: agentos.v1.ServerConfig read from proto3 JSON,
 * overridden by command-line flags, completed with defaults and validated
 * before anything starts.
 */
#ifndef AO_CONFIG_H
#define AO_CONFIG_H

#include "agentos/v1/config.pb-c.h"
#include "err.h"

/* Defaults (also documented in config.proto). */
#define AO_DEFAULT_LISTEN "127.0.0.1:7700"
#define AO_DEFAULT_DATA_DIR "./var/agentos"

/* Parses agentosd's command line (argv[1..]) on top of the config file named
 * by --config (if any), fills defaults and validates. On success *out is a
 * config the caller frees with ao_config_free. Returns AO_EINVAL with a
 * message naming the flag or field; 1 (not an error) when --help or
 * --version was printed and the program should exit 0. */
int ao_config_from_args(int argc, char **argv, Agentos__V1__ServerConfig **out, ao_status_t *st);

/* Loads a config file (NULL: an empty config). */
int ao_config_load(const char *path, Agentos__V1__ServerConfig **out, ao_status_t *st);

/* Fills unset fields with their defaults. */
void ao_config_defaults(Agentos__V1__ServerConfig *cfg);

/* Most RPC or worker threads a config may ask for. */
#define AO_CONFIG_MAX_THREADS 1024u

/* Checks the config: addresses (non-loopback needs TLS unless insecure),
 * TLS files given in pairs, token digests, agent backends (unique valid
 * names, a kind, a URL where one is needed), thread counts (at most
 * AO_CONFIG_MAX_THREADS). Errors name the field. */
int ao_config_validate(const Agentos__V1__ServerConfig *cfg, ao_status_t *st);

/* Whether a listening address is loopback-only (127/8, ::1, localhost,
 * unix:). */
int ao_config_is_loopback(const char *addr);

/* The agent backend named `name`, or NULL. */
const Agentos__V1__AgentBackend *ao_config_find_agent(const Agentos__V1__ServerConfig *cfg,
                                                      const char *name);

void ao_config_free(Agentos__V1__ServerConfig *cfg);

/* The usage text of agentosd. */
extern const char ao_config_usage[];

#endif
