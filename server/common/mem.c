#include "mem.h"

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ao_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("agentos: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *ao_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) ao_fatal("out of memory allocating %zu bytes", n);
    return p;
}

void *ao_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ao_fatal("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *ao_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) ao_fatal("out of memory reallocating %zu bytes", n);
    return q;
}

char *ao_xstrdup(const char *s)
{
    return s ? ao_xstrndup(s, strlen(s)) : NULL;
}

char *ao_xstrndup(const char *s, size_t n)
{
    if (!s) return NULL;
    char *d = ao_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ao_xvasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) ao_fatal("out of memory formatting a string");
    return s;
}

char *ao_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = ao_xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

static void *pb_alloc(void *ud, size_t n)
{
    (void)ud;
    return ao_xmalloc(n);
}

static void pb_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

ProtobufCAllocator ao_pb_allocator = {pb_alloc, pb_free, NULL};
