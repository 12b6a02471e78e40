#include "pbutil.h"

#include "mem.h"

#include <stdlib.h>
#include <string.h>

ProtobufCMessage *ao_pb_clone(const ProtobufCMessage *m)
{
    if (!m) return NULL;
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t stackbuf[512];
    uint8_t *buf = len <= sizeof stackbuf ? stackbuf : ao_xmalloc(len);
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *c = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
    if (buf != stackbuf) free(buf);
    if (!c) ao_fatal("cloning a %s failed", m->descriptor->name);
    return c;
}

void ao_pb_free(void *m)
{
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

void ao_pb_set_str(char **field, const char *v)
{
    char *copy = ao_xstrdup(v ? v : "");
    if (*field && *field != protobuf_c_empty_string) free(*field);
    *field = copy;
}

void ao_pb_clear_str(char **field)
{
    if (*field && *field != protobuf_c_empty_string) free(*field);
    *field = (char *)protobuf_c_empty_string;
}

void *ao_pb_push(void *arr_field, size_t *n, size_t elem_size)
{
    char **arr = arr_field;
    *arr = ao_xrealloc(*arr, (*n + 1) * elem_size);
    void *slot = *arr + *n * elem_size;
    memset(slot, 0, elem_size);
    (*n)++;
    return slot;
}

void ao_pb_push_str(char ***arr, size_t *n, const char *s)
{
    char **slot = ao_pb_push(arr, n, sizeof(char *));
    *slot = ao_xstrdup(s ? s : "");
}

void ao_pb_free_strs(char ***arr, size_t *n)
{
    for (size_t i = 0; i < *n; i++) free((*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
}
