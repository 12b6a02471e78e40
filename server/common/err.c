#include "err.h"

#include <stdio.h>
#include <string.h>

const char *ao_strerror(int code)
{
    switch (code) {
    case AO_OK:
        return "ok";
#define AO__ERR_TEXT(name, grpc, text)                                                             \
    case AO_##name:                                                                                \
        return text;
        AO_ERRNO_MAP(AO__ERR_TEXT)
#undef AO__ERR_TEXT
    default:
        return "unknown error";
    }
}

const char *ao_errname(int code)
{
    switch (code) {
    case AO_OK:
        return "OK";
#define AO__ERR_NAME(name, grpc, text)                                                             \
    case AO_##name:                                                                                \
        return #name;
        AO_ERRNO_MAP(AO__ERR_NAME)
#undef AO__ERR_NAME
    default:
        return "EUNKNOWN";
    }
}

int ao_err_grpc_status(int code)
{
    switch (code) {
    case AO_OK:
        return 0;
#define AO__ERR_GRPC(name, grpc, text)                                                             \
    case AO_##name:                                                                                \
        return grpc;
        AO_ERRNO_MAP(AO__ERR_GRPC)
#undef AO__ERR_GRPC
    default:
        return 2; /* UNKNOWN */
    }
}

int ao_status_vset(ao_status_t *st, int code, const char *fmt, va_list ap)
{
    if (st) {
        st->code = code;
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    }
    return code;
}

int ao_status_set(ao_status_t *st, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ao_status_vset(st, code, fmt, ap);
    va_end(ap);
    return code;
}

void ao_status_clear(ao_status_t *st)
{
    if (st) {
        st->code = AO_OK;
        st->msg[0] = '\0';
    }
}
