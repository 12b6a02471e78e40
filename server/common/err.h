/*
 * Errors as values: one table of agentos error codes, each mapped to one
 * gRPC status code, and a status object that carries the code plus a message
 * naming the task, field or limit at fault.
 *
 * Functions return int: 0 on success, a negative AO_E* code on failure. When
 * they take an `ao_status_t *`, they also fill it with the message.
 */
#ifndef AO_ERR_H
#define AO_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* XX(name, grpc status code, default text) */
#define AO_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, 3, "invalid argument")                                                              \
    XX(ENOTFOUND, 5, "not found")                                                                  \
    XX(EEXIST, 6, "already exists")                                                                \
    XX(EPERM, 7, "permission denied")                                                              \
    XX(ELIMIT, 8, "limit exceeded")                                                                \
    XX(ESTATE, 9, "wrong state for this operation")                                                \
    XX(ECANCELLED, 1, "cancelled")                                                                 \
    XX(ETIMEDOUT, 4, "deadline exceeded")                                                          \
    XX(EUNIMPL, 12, "not implemented by this server")                                              \
    XX(EINTERNAL, 13, "internal error")                                                            \
    XX(EUNAVAIL, 14, "unavailable")                                                                \
    XX(EBUSY, 14, "in use by another process")                                                     \
    XX(EIO, 13, "storage I/O error")                                                               \
    XX(ECORRUPT, 15, "corrupt data")                                                               \
    XX(ESCHEMA, 9, "unsupported storage schema version")                                           \
    XX(EUNAUTH, 16, "unauthenticated")

enum {
    AO_OK = 0,
#define AO__ERR_ENUM(name, grpc, text) AO_##name,
    AO__ERR_FIRST = -100,
    AO_ERRNO_MAP(AO__ERR_ENUM) AO__ERR_END
#undef AO__ERR_ENUM
};

/* The default text of an error code ("invalid argument"). Never NULL. */
const char *ao_strerror(int code);
/* The code's name ("EINVAL"). Never NULL. */
const char *ao_errname(int code);
/* The gRPC status code (grpc_status_code value) a code maps to; 0 for AO_OK. */
int ao_err_grpc_status(int code);

#define AO_STATUS_MSG_MAX 512

/* A status: an error code and the message for the caller. Plain value; no
 * ownership. */
typedef struct ao_status {
    int code;
    char msg[AO_STATUS_MSG_MAX];
} ao_status_t;

/* Sets *st (if st is not NULL) to code and the formatted message; returns
 * code, so that `return ao_status_set(st, AO_EINVAL, "...")` reads well. */
int ao_status_set(ao_status_t *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ao_status_vset(ao_status_t *st, int code, const char *fmt, va_list ap);
/* Resets *st to AO_OK with an empty message. */
void ao_status_clear(ao_status_t *st);

#endif
