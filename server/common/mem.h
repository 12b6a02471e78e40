/*
 * Allocation that aborts on failure. Out-of-memory is decided once, here
 * (as Redis's zmalloc does): callers never check for NULL. Where a request's
 * size is the cause, the request is rejected before allocating (see the
 * limits in config.proto).
 */
#ifndef AO_MEM_H
#define AO_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *ao_xmalloc(size_t n);
void *ao_xcalloc(size_t count, size_t size);
void *ao_xrealloc(void *p, size_t n);
/* NULL in, NULL out. */
char *ao_xstrdup(const char *s);
char *ao_xstrndup(const char *s, size_t n);
/* A formatted string the caller frees. */
char *ao_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *ao_xvasprintf(const char *fmt, va_list ap);
/* Aborts with a message: for states that cannot happen. */
void ao_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A ProtobufCAllocator whose allocations abort on failure (for messages
 * whose lifetime is managed with protobuf_c_message_free_unpacked). */
struct ProtobufCAllocator;
extern struct ProtobufCAllocator ao_pb_allocator;

#endif
