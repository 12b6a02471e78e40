/*
 * Helpers for building and changing protobuf-c messages whose parts are all
 * malloc'd (so that protobuf_c_message_free_unpacked(m, NULL) frees them).
 */
#ifndef AO_PBUTIL_H
#define AO_PBUTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* A deep copy (pack + unpack), freed with protobuf_c_message_free_unpacked.
 * NULL in, NULL out. */
ProtobufCMessage *ao_pb_clone(const ProtobufCMessage *m);
#define AO_PB_CLONE(type, m) ((type *)ao_pb_clone(&(m)->base))

/* Frees m (NULL is fine). */
void ao_pb_free(void *m);

/* Replaces a string field with a copy of v (NULL: ""), freeing the old
 * value unless it is protobuf-c's shared empty string. */
void ao_pb_set_str(char **field, const char *v);
/* Frees a string field's value and resets it to "". */
void ao_pb_clear_str(char **field);

/* Appends to a repeated field: *arr grows by one; returns the new slot. */
void *ao_pb_push(void *arr_field, size_t *n, size_t elem_size);
/* Appends a copy of s to a repeated string field. */
void ao_pb_push_str(char ***arr, size_t *n, const char *s);
/* Frees a repeated string field's values and the array. */
void ao_pb_free_strs(char ***arr, size_t *n);

#endif
