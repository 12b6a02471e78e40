/*
 * Helpers for building and changing protobuf-c messages whose parts are all
 * malloc'd (so that protobuf_c_message_free_unpacked(m, NULL) frees them).
 */
#ifndef AO_PBUTIL_H
#define AO_PBUTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* A deep copy, walking the descriptor (no pack/unpack), freed with
 * protobuf_c_message_free_unpacked(c, NULL): every string, bytes value,
 * array, submessage and unknown field is the copy's own. NULL in, NULL out.
 * Any thread; m is only read. */
ProtobufCMessage *ao_pb_clone(const ProtobufCMessage *m);
#define AO_PB_CLONE(type, m) ((type *)ao_pb_clone(&(m)->base))

/* Whether every string in m (its fields, repeated fields, map entries and
 * submessages, at any depth) is valid UTF-8, as proto3 requires and as
 * protobuf's other implementations check when they parse; protobuf-c does
 * not. Returns 1 if so; else 0, with the first invalid string's path in
 * path ("workflow.tasks[2].id", truncated to len). Any thread. */
int ao_pb_check_utf8(const ProtobufCMessage *m, char *path, size_t len);

/* One length-delimited field on the wire (a submessage packed elsewhere):
 * the bytes it takes, and writing it at buf (which has that many bytes
 * free); returns the bytes written. For appending parts packed once and
 * kept (see ao_wf_pack) to what protobuf-c packs. */
size_t ao_pb_field_size(uint32_t field, size_t len);
size_t ao_pb_put_field(uint8_t *buf, uint32_t field, const void *data, size_t len);

/* Packing a message whose oneof has many members: protobuf-c visits every
 * field of the descriptor, set or not, in each of its passes (the size,
 * then the pack, then the size of each submessage again), and the 25
 * unset payload members of an agentos.v1.Event cost a sixth of packing
 * one. A narrowed packer keeps, for each member of the message's oneof, a
 * copy of the descriptor without the oneof's other members: packing through
 * it writes the same bytes, since the fields keep their order. A message
 * with no oneof, or with more than one, is packed through its own
 * descriptor. Built once; read-only after, so any thread may use it. */
typedef struct ao_pb_narrow ao_pb_narrow_t;
ao_pb_narrow_t *ao_pb_narrow_create(const ProtobufCMessageDescriptor *d);
void ao_pb_narrow_destroy(ao_pb_narrow_t *n);
/* As protobuf_c_message_get_packed_size and protobuf_c_message_pack for m
 * (a message of n's descriptor). m's descriptor pointer is swapped for the
 * length of the call: no other thread may read m meanwhile. */
size_t ao_pb_narrow_size(const ao_pb_narrow_t *n, ProtobufCMessage *m);
size_t ao_pb_narrow_pack(const ao_pb_narrow_t *n, ProtobufCMessage *m, uint8_t *out);

/* Bytes one value of a field of type t takes in a message struct (an
 * element of a repeated field's array). */
size_t ao_pb_elem_size(ProtobufCType t);

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
