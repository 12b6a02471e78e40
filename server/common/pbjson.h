/*
 * proto3 JSON <-> protobuf-c messages, driven by the message descriptors, so
 * that one converter serves the server configuration, workflow files,
 * agentosctl's --json output and the https agent protocol.
 *
 * Decoding accepts lowerCamelCase and original field names, enums by name
 * (or number), 64-bit integers as strings or numbers, bytes as base64
 * (standard or URL-safe), maps as objects, null as "unset". Unknown fields,
 * duplicate keys, wrong types, out-of-range numbers, two members of one
 * oneof and strings with NUL bytes are rejected with AO_EINVAL and a message
 * that starts with the field's path ("tasks[2].retry.maxAttempts: ...").
 *
 * Encoding writes lowerCamelCase names (or original names), omits fields at
 * their default value unless asked, writes 64-bit integers as strings and
 * doubles in their shortest round-trip form.
 *
 * Thread-safe (no shared state).
 */
#ifndef AO_PBJSON_H
#define AO_PBJSON_H

#include "err.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* Decodes `json` (an object) into a new message of type `desc`, allocated
 * with malloc; the caller frees it with protobuf_c_message_free_unpacked(m,
 * NULL). On error returns AO_EINVAL, *out is NULL and st names the field. */
int ao_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *json, ProtobufCMessage **out,
                     ao_status_t *st);

enum {
    /* Decoding: skip unknown fields instead of rejecting them (for replies of
     * remote agents, which may be newer than this server). */
    AO_PBJSON_IGNORE_UNKNOWN = 8,
};

/* ao_pbjson_decode with options (AO_PBJSON_IGNORE_UNKNOWN). */
int ao_pbjson_decode_ex(const ProtobufCMessageDescriptor *desc, json_t *json, unsigned flags,
                        ProtobufCMessage **out, ao_status_t *st);

/* The same from JSON text (len bytes; need not be NUL-terminated). Syntax
 * errors name the line and column. */
int ao_pbjson_decode_text(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                          ProtobufCMessage **out, ao_status_t *st);
int ao_pbjson_decode_text_ex(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                             unsigned flags, ProtobufCMessage **out, ao_status_t *st);

/* The same from a file; errors name the file. */
int ao_pbjson_decode_file(const ProtobufCMessageDescriptor *desc, const char *path,
                          ProtobufCMessage **out, ao_status_t *st);

enum {
    /* Emit fields at their default value too (repeated as [], maps as {}). */
    AO_PBJSON_EMIT_DEFAULTS = 1,
    /* Use the .proto field names instead of lowerCamelCase. */
    AO_PBJSON_ORIGINAL_NAMES = 2,
    /* Indent with two spaces (else compact, one line). */
    AO_PBJSON_PRETTY = 4,
};

/* Encodes msg as JSON text; the caller frees the result. Never fails. */
char *ao_pbjson_encode(const ProtobufCMessage *msg, unsigned flags);

/* The lowerCamelCase JSON name of a .proto field name ("max_tokens" ->
 * "maxTokens") into out (at least strlen(name)+1 bytes). */
void ao_pbjson_camel(const char *name, char *out);

#endif
