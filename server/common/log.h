/*
 * Structured logs on stderr: one line per record, as text
 *   2026-11-24T03:48:24.123Z INFO rpc listening addr=127.0.0.1:7700
 * or as one JSON object per line ({"ts","level","comp","msg"} and the
 * key=value pairs of the message as fields).
 *
 * Thread-safe. Secrets never go through here: callers log names of
 * secrets, not their values.
 */
#ifndef AO_LOG_H
#define AO_LOG_H

typedef enum { AO_LOG_DEBUG = 0, AO_LOG_INFO, AO_LOG_WARN, AO_LOG_ERROR } ao_log_level_t;

/* Sets the threshold and format ("text" or "json"). Returns 0, or AO_EINVAL
 * for an unknown level or format name (NULL/"" keep the current one). Call
 * before other threads log. */
int ao_log_configure(const char *level, const char *format);
int ao_log_enabled(ao_log_level_t level);

/* Logs a record. `comp` names the subsystem ("rpc", "storage", ...); the
 * message should be "what happened key=value key=value". */
void ao_log(ao_log_level_t level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AO_DEBUG(comp, ...)                                                                        \
    do {                                                                                           \
        if (ao_log_enabled(AO_LOG_DEBUG)) ao_log(AO_LOG_DEBUG, comp, __VA_ARGS__);                 \
    } while (0)
#define AO_INFO(comp, ...) ao_log(AO_LOG_INFO, comp, __VA_ARGS__)
#define AO_WARN(comp, ...) ao_log(AO_LOG_WARN, comp, __VA_ARGS__)
#define AO_ERROR(comp, ...) ao_log(AO_LOG_ERROR, comp, __VA_ARGS__)

#endif
