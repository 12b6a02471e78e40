/*
 * Small helpers used across agentos: clocks, identifiers, hashing, a
 * growable string buffer.
 */
#ifndef AO_UTIL_H
#define AO_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, Unix epoch milliseconds. */
int64_t ao_now_ms(void);

/* The malloc this process runs on, for logs and benchmark output:
 * "jemalloc <version>" when jemalloc has taken the C library's place
 * (agentosd and the benchmarks are linked with it: ao_malloc in
 * CMakeLists.txt), followed by " background_thread" when its background
 * purging is on; else "system" (the C library's, or a sanitizer's).
 * Writes into buf (truncating to len); returns it. */
const char *ao_malloc_name(char *buf, size_t len);
/* Monotonic clock, microseconds since an arbitrary origin. */
int64_t ao_mono_us(void);

/* Writes `nbytes` random bytes as lowercase hex (2*nbytes chars + NUL) into
 * out; uses the OS's CSPRNG. */
void ao_random_hex(char *out, size_t nbytes);

/* SHA-256 of data as 64 lowercase hex chars + NUL. */
void ao_sha256_hex(const void *data, size_t len, char out[65]);

/* Constant-time equality of two NUL-terminated strings of the same length
 * (different lengths compare unequal, leaking only the length). */
int ao_const_time_streq(const char *a, const char *b);

/* The length of the valid UTF-8 sequence at s (1 to 4 bytes, of the n
 * left), or 0 if none starts there: strict, as protobuf's other
 * implementations check proto3 strings (no overlong forms, no surrogates,
 * nothing past U+10FFFF). */
size_t ao_utf8_seq(const unsigned char *s, size_t n);
/* Whether s (len bytes) is valid UTF-8; if not, *bad (if given) is the
 * offset of the first invalid byte. */
int ao_utf8_valid(const char *s, size_t len, size_t *bad);
/* Replaces each byte of s that starts no valid UTF-8 sequence with '?'.
 * Returns how many it replaced. */
size_t ao_utf8_fix(char *s);

/* Base-128 varints, as protobuf and RocksDB write them: ao_varint_put
 * writes v at out (at most 10 bytes) and returns how many it wrote;
 * ao_varint_get reads one at *p (before end) into *v and moves *p past
 * it, or returns -1 if none decodes there. */
size_t ao_varint_put(unsigned char *out, uint64_t v);
int ao_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *v);

/* Whether s (len bytes) is 1..max bytes of [A-Za-z0-9_.:/-]. */
int ao_valid_id(const char *s, size_t max);

/* A growable NUL-terminated buffer. Zero-initialise, append, then take
 * ownership of .data (or ao_sb_free). */
typedef struct ao_sb {
    char *data;
    size_t len;
    size_t cap;
} ao_sb_t;

void ao_sb_append(ao_sb_t *sb, const char *s, size_t n);
void ao_sb_puts(ao_sb_t *sb, const char *s);
void ao_sb_printf(ao_sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Detaches the string (never NULL) and resets the buffer. */
char *ao_sb_take(ao_sb_t *sb);
void ao_sb_free(ao_sb_t *sb);

#endif
