#include "util.h"

#include "mem.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t ao_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ao_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void ao_random_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    if (nbytes > sizeof buf) ao_fatal("ao_random_hex: %zu bytes is too many", nbytes);
    if (RAND_bytes(buf, (int)nbytes) != 1) ao_fatal("the OS random generator failed");
    hex_encode(buf, nbytes, out);
}

void ao_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        ao_fatal("SHA-256 failed");
    hex_encode(md, 32, out);
}

int ao_const_time_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return 0;
    return CRYPTO_memcmp(a, b, la) == 0;
}

int ao_valid_id(const char *s, size_t max)
{
    if (!s) return 0;
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-' || c == '/'))
            return 0;
    }
    return 1;
}

static void sb_reserve(ao_sb_t *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1) cap *= 2;
    sb->data = ao_xrealloc(sb->data, cap);
    sb->cap = cap;
}

void ao_sb_append(ao_sb_t *sb, const char *s, size_t n)
{
    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void ao_sb_puts(ao_sb_t *sb, const char *s)
{
    ao_sb_append(sb, s, strlen(s));
}

void ao_sb_printf(ao_sb_t *sb, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        sb_reserve(sb, (size_t)n);
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap2);
        sb->len += (size_t)n;
    }
    va_end(ap2);
}

char *ao_sb_take(ao_sb_t *sb)
{
    char *s = sb->data ? sb->data : ao_xstrdup("");
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return s;
}

void ao_sb_free(ao_sb_t *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

size_t ao_utf8_seq(const unsigned char *s, size_t n)
{
    if (!n) return 0;
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    /* The second byte's range depends on the first (Unicode 15, table 3-7). */
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < need; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return need;
}

int ao_utf8_valid(const char *s, size_t len, size_t *bad)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t k = 0; k < len;) {
        /* ASCII, most text, a byte at a time without a call. */
        if (u[k] < 0x80) {
            k++;
            continue;
        }
        size_t n = ao_utf8_seq(u + k, len - k);
        if (!n) {
            if (bad) *bad = k;
            return 0;
        }
        k += n;
    }
    return 1;
}

size_t ao_utf8_fix(char *s)
{
    unsigned char *u = (unsigned char *)s;
    size_t len = strlen(s), fixed = 0;
    for (size_t k = 0; k < len;) {
        /* ASCII, most text, a byte at a time without a call. */
        if (u[k] < 0x80) {
            k++;
            continue;
        }
        size_t n = ao_utf8_seq(u + k, len - k);
        if (n) {
            k += n;
            continue;
        }
        u[k++] = '?';
        fixed++;
    }
    return fixed;
}

size_t ao_varint_put(unsigned char *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (unsigned char)v;
    return n;
}

int ao_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

const char *ao_malloc_name(char *buf, size_t len)
{
    /* jemalloc's control entry point, if jemalloc is loaded: linked into
     * the program, it serves every malloc of the process. Otherwise the C
     * library's malloc, or a sanitizer's. */
    typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    const char *version = NULL;
    size_t vlen = sizeof version;
    if (!mallctl) {
        snprintf(buf, len, "system");
        return buf;
    }
    if (mallctl("version", &version, &vlen, NULL, 0) || !version) version = "";
    /* On unless MALLOC_CONF turned it off (server/malloc_conf.c). */
    bool background = false;
    size_t blen = sizeof background;
    if (mallctl("background_thread", &background, &blen, NULL, 0)) background = false;
    snprintf(buf, len, "jemalloc%s%s%s", *version ? " " : "", version,
             background ? " background_thread" : "");
    return buf;
}
