/*
 * proto3 JSON mapping over protobuf-c descriptors. See pbjson.h.
 */
#include "pbjson.h"

#include "mem.h"
#include "pbutil.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))

/* ---- field paths for error messages ---------------------------------- */

typedef struct path {
    char buf[256];
    size_t len;
    unsigned flags;
} path_t;

static size_t path_push(path_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(path_t *p, const char *fmt, ...)
{
    size_t saved = p->len;
    if (p->len < sizeof p->buf - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(p->buf + p->len, sizeof p->buf - p->len, fmt, ap);
        va_end(ap);
        if (n > 0) p->len += (size_t)n;
        if (p->len > sizeof p->buf - 1) p->len = sizeof p->buf - 1;
    }
    return saved;
}

static void path_pop(path_t *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

static int fail(ao_status_t *st, const path_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ao_status_t *st, const path_t *p, const char *fmt, ...)
{
    char what[AO_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ao_status_set(st, AO_EINVAL, "%s: %s", p->len ? p->buf : "(top level)", what);
}

static const char *json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

/* ---- names ------------------------------------------------------------ */

void ao_pbjson_camel(const char *name, char *out)
{
    int up = 0;
    for (; *name; name++) {
        if (*name == '_') {
            up = 1;
            continue;
        }
        *out++ = up && *name >= 'a' && *name <= 'z' ? (char)(*name - 'a' + 'A') : *name;
        up = 0;
    }
    *out = '\0';
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key)
{
    char camel[256];
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!strcmp(f->name, key)) return f;
        if (strlen(f->name) < sizeof camel) {
            ao_pbjson_camel(f->name, camel);
            if (!strcmp(camel, key)) return f;
        }
    }
    return NULL;
}

/* protobuf-c has no map flag: a map field is a repeated message whose type
 * is the generated "...Entry" with key = 1 and value = 2. */
static int is_map_field(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    const ProtobufCMessageDescriptor *md = f->descriptor;
    size_t nl = strlen(md->name);
    return md->n_fields == 2 && nl > 5 && !strcmp(md->name + nl - 5, "Entry") &&
           !strcmp(md->fields[0].name, "key") && md->fields[0].id == 1 &&
           !strcmp(md->fields[1].name, "value") && md->fields[1].id == 2;
}

/* ---- base64 ----------------------------------------------------------- */

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes standard or URL-safe base64, padding optional. Returns 0 or -1. */
static int b64_decode(const char *s, size_t n, ProtobufCBinaryData *out)
{
    while (n > 0 && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    uint8_t *buf = ao_xmalloc(n * 3 / 4 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = buf;
    out->len = o;
    return 0;
}

static void b64_encode(ao_sb_t *sb, const uint8_t *d, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < n) v |= d[i + 2];
        char q[4] = {tbl[(v >> 18) & 63], tbl[(v >> 12) & 63],
                     i + 1 < n ? tbl[(v >> 6) & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
        ao_sb_append(sb, q, 4);
    }
}

/* ---- decoding --------------------------------------------------------- */

static int decode_message(const ProtobufCMessageDescriptor *d, json_t *j, ProtobufCMessage **out,
                          path_t *p, ao_status_t *st);

/* An integer from a JSON number (integral) or a decimal string. */
static int json_to_i64(json_t *j, int64_t *v, path_t *p, ao_status_t *st)
{
    if (json_is_integer(j)) {
        *v = json_integer_value(j);
        return 0;
    }
    if (json_is_real(j)) {
        double r = json_real_value(j);
        if (r != floor(r) || r < -9.2233720368547758e18 || r >= 9.2233720368547758e18)
            return fail(st, p, "expected an integer, got %g", r);
        *v = (int64_t)r;
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (!*s || *end || errno) return fail(st, p, "expected an integer, got \"%.40s\"", s);
        *v = x;
        return 0;
    }
    return fail(st, p, "expected an integer, got %s", json_type_name(j));
}

static int json_to_u64(json_t *j, uint64_t *v, path_t *p, ao_status_t *st)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        char *end;
        errno = 0;
        if (*s == '-') return fail(st, p, "expected a non-negative integer, got \"%.40s\"", s);
        unsigned long long x = strtoull(s, &end, 10);
        if (!*s || *end || errno) return fail(st, p, "expected an integer, got \"%.40s\"", s);
        *v = x;
        return 0;
    }
    if (json_is_real(j)) {
        double r = json_real_value(j);
        if (r != floor(r) || r < 0 || r >= 1.8446744073709552e19)
            return fail(st, p, "expected a non-negative integer, got %g", r);
        *v = (uint64_t)r;
        return 0;
    }
    int64_t x;
    int rc = json_to_i64(j, &x, p, st);
    if (rc) return rc;
    if (x < 0) return fail(st, p, "expected a non-negative integer, got %" PRId64, x);
    *v = (uint64_t)x;
    return 0;
}

static int json_to_double(json_t *j, double *v, path_t *p, ao_status_t *st)
{
    if (json_is_number(j)) {
        *v = json_number_value(j);
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (!strcmp(s, "NaN")) *v = NAN;
        else if (!strcmp(s, "Infinity")) *v = INFINITY;
        else if (!strcmp(s, "-Infinity")) *v = -INFINITY;
        else {
            char *end;
            errno = 0;
            *v = strtod(s, &end);
            if (!*s || *end || errno) return fail(st, p, "expected a number, got \"%.40s\"", s);
        }
        return 0;
    }
    return fail(st, p, "expected a number, got %s", json_type_name(j));
}

/* Decodes one scalar (or message) value into the storage at dst. */
static int decode_value(const ProtobufCFieldDescriptor *f, json_t *j, void *dst, path_t *p,
                        ao_status_t *st)
{
    int rc;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: {
        int64_t v;
        if ((rc = json_to_i64(j, &v, p, st))) return rc;
        if (v < INT32_MIN || v > INT32_MAX)
            return fail(st, p, "%" PRId64 " is out of range for int32", v);
        *(int32_t *)dst = (int32_t)v;
        return 0;
    }
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: {
        uint64_t v;
        if ((rc = json_to_u64(j, &v, p, st))) return rc;
        if (v > UINT32_MAX) return fail(st, p, "%" PRIu64 " is out of range for uint32", v);
        *(uint32_t *)dst = (uint32_t)v;
        return 0;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_to_i64(j, (int64_t *)dst, p, st);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_to_u64(j, (uint64_t *)dst, p, st);
    case PROTOBUF_C_TYPE_FLOAT: {
        double v;
        if ((rc = json_to_double(j, &v, p, st))) return rc;
        if (isfinite(v) && fabs(v) > 3.4028234663852886e38)
            return fail(st, p, "%g is out of range for float", v);
        *(float *)dst = (float)v;
        return 0;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_to_double(j, (double *)dst, p, st);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j)) return fail(st, p, "expected a boolean, got %s", json_type_name(j));
        *(protobuf_c_boolean *)dst = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_is_string(j)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(j));
            if (!ev)
                return fail(st, p, "\"%.60s\" is not a value of enum %s", json_string_value(j),
                            ed->name);
            *(int *)dst = ev->value;
            return 0;
        }
        if (json_is_integer(j)) {
            json_int_t v = json_integer_value(j);
            if (v < INT32_MIN || v > INT32_MAX || !protobuf_c_enum_descriptor_get_value(ed, (int)v))
                return fail(st, p, "%" JSON_INTEGER_FORMAT " is not a value of enum %s", v,
                            ed->name);
            *(int *)dst = (int)v;
            return 0;
        }
        return fail(st, p, "expected an enum name, got %s", json_type_name(j));
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(j)) return fail(st, p, "expected a string, got %s", json_type_name(j));
        size_t n = json_string_length(j);
        const char *s = json_string_value(j);
        if (memchr(s, '\0', n)) return fail(st, p, "a string may not contain a NUL character");
        *(char **)dst = ao_xstrndup(s, n);
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string(j)) return fail(st, p, "expected base64 bytes, got %s", json_type_name(j));
        if (b64_decode(json_string_value(j), json_string_length(j), (ProtobufCBinaryData *)dst))
            return fail(st, p, "not valid base64");
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return decode_message(f->descriptor, j, (ProtobufCMessage **)dst, p, st);
    }
    return fail(st, p, "unsupported field type");
}

static int decode_map(const ProtobufCFieldDescriptor *f, json_t *j, ProtobufCMessage *msg,
                      path_t *p, ao_status_t *st)
{
    if (!json_is_object(j)) return fail(st, p, "expected an object (a map), got %s", json_type_name(j));
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t n = json_object_size(j);
    if (!n) return 0; /* as an empty array */
    ProtobufCMessage **arr = ao_xcalloc(n, sizeof *arr);
    *(ProtobufCMessage ***)MEMBER(msg, f->offset) = arr;
    size_t *count = MEMBER(msg, f->quantifier_offset);
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        size_t saved = path_push(p, "[\"%.40s\"]", key);
        ProtobufCMessage *entry = ao_xmalloc(ed->sizeof_message);
        ed->message_init(entry);
        arr[(*count)++] = entry;
        json_t *kj = json_string(key);
        int rc = decode_value(&ed->fields[0], kj, MEMBER(entry, ed->fields[0].offset), p, st);
        json_decref(kj);
        if (!rc) {
            if (json_is_null(val)) rc = fail(st, p, "a map value may not be null");
            else rc = decode_value(&ed->fields[1], val, MEMBER(entry, ed->fields[1].offset), p, st);
        }
        if (rc) return rc;
        path_pop(p, saved);
    }
    return 0;
}

static int decode_repeated(const ProtobufCFieldDescriptor *f, json_t *j, ProtobufCMessage *msg,
                           path_t *p, ao_status_t *st)
{
    if (!json_is_array(j)) return fail(st, p, "expected an array, got %s", json_type_name(j));
    size_t n = json_array_size(j);
    if (!n) return 0; /* an empty array is the field unset: nothing held */
    size_t es = ao_pb_elem_size(f->type);
    char *arr = ao_xcalloc(n, es);
    *(void **)MEMBER(msg, f->offset) = arr;
    size_t *count = MEMBER(msg, f->quantifier_offset);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(j, i);
        size_t saved = path_push(p, "[%zu]", i);
        if (json_is_null(e)) return fail(st, p, "an array element may not be null");
        (*count)++; /* counted first: a half-decoded element is freed with the message */
        int rc = decode_value(f, e, arr + i * es, p, st);
        if (rc) return rc;
        path_pop(p, saved);
    }
    return 0;
}

static int decode_message(const ProtobufCMessageDescriptor *d, json_t *j, ProtobufCMessage **out,
                          path_t *p, ao_status_t *st)
{
    if (!json_is_object(j)) return fail(st, p, "expected an object, got %s", json_type_name(j));
    ProtobufCMessage *msg = ao_xmalloc(d->sizeof_message);
    d->message_init(msg);
    *out = msg; /* partially built messages are freed by the caller's cleanup */

    unsigned char *seen = ao_xcalloc(d->n_fields, 1);
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(j, key, val)
    {
        size_t saved = path_push(p, "%s%s", p->len ? "." : "", key);
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (!f) {
            if (p->flags & AO_PBJSON_IGNORE_UNKNOWN) {
                path_pop(p, saved);
                continue;
            }
            rc = fail(st, p, "unknown field of %s", d->name);
            break;
        }
        if (seen[f - d->fields]++) {
            rc = fail(st, p, "given twice (by both of its names)");
            break;
        }
        if (json_is_null(val)) {
            path_pop(p, saved);
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = MEMBER(msg, f->quantifier_offset);
            if (*which) {
                const char *other = "?";
                for (unsigned i = 0; i < d->n_fields; i++)
                    if (d->fields[i].id == *which) other = d->fields[i].name;
                rc = fail(st, p, "only one of a oneof may be set, and %s is set already", other);
                break;
            }
            /* Set the case first so that a half-decoded member is freed. */
            *which = f->id;
            rc = decode_value(f, val, MEMBER(msg, f->offset), p, st);
        } else if (is_map_field(f)) {
            rc = decode_map(f, val, msg, p, st);
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            rc = decode_repeated(f, val, msg, p, st);
        } else {
            rc = decode_value(f, val, MEMBER(msg, f->offset), p, st);
        }
        if (rc) break;
        path_pop(p, saved);
    }
    free(seen);
    return rc;
}

int ao_pbjson_decode(const ProtobufCMessageDescriptor *desc, json_t *json, ProtobufCMessage **out,
                     ao_status_t *st)
{
    return ao_pbjson_decode_ex(desc, json, 0, out, st);
}

int ao_pbjson_decode_ex(const ProtobufCMessageDescriptor *desc, json_t *json, unsigned flags,
                        ProtobufCMessage **out, ao_status_t *st)
{
    path_t p = {{0}, 0, flags};
    ProtobufCMessage *msg = NULL;
    int rc = decode_message(desc, json, &msg, &p, st);
    if (rc) {
        protobuf_c_message_free_unpacked(msg, NULL);
        *out = NULL;
        return rc;
    }
    *out = msg;
    return 0;
}

int ao_pbjson_decode_text(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                          ProtobufCMessage **out, ao_status_t *st)
{
    return ao_pbjson_decode_text_ex(desc, text, len, 0, out, st);
}

int ao_pbjson_decode_text_ex(const ProtobufCMessageDescriptor *desc, const char *text, size_t len,
                             unsigned flags, ProtobufCMessage **out, ao_status_t *st)
{
    json_error_t jerr;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        *out = NULL;
        return ao_status_set(st, AO_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
    }
    int rc = ao_pbjson_decode_ex(desc, j, flags, out, st);
    json_decref(j);
    return rc;
}

int ao_pbjson_decode_file(const ProtobufCMessageDescriptor *desc, const char *path,
                          ProtobufCMessage **out, ao_status_t *st)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ao_status_set(st, AO_EINVAL, "%s: %s", path, strerror(errno));
    ao_sb_t sb = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) ao_sb_append(&sb, buf, n);
    int rd_err = ferror(fp);
    fclose(fp);
    if (rd_err) {
        ao_sb_free(&sb);
        return ao_status_set(st, AO_EINVAL, "%s: read error", path);
    }
    ao_status_t inner;
    int rc = ao_pbjson_decode_text(desc, sb.data ? sb.data : "", sb.len, out, &inner);
    ao_sb_free(&sb);
    if (rc) return ao_status_set(st, rc, "%s: %s", path, inner.msg);
    return 0;
}

/* ---- encoding --------------------------------------------------------- */

typedef struct enc {
    ao_sb_t sb;
    unsigned flags;
    int depth;
} enc_t;

static void put_string(ao_sb_t *sb, const char *s, size_t n)
{
    ao_sb_append(sb, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            ao_sb_append(sb, s + i - run, run);
            run = 0;
            ao_sb_puts(sb, esc);
        } else {
            run++;
        }
    }
    ao_sb_append(sb, s + n - run, run);
    ao_sb_append(sb, "\"", 1);
}

static void put_double(ao_sb_t *sb, double v, int is_float)
{
    if (isnan(v)) {
        ao_sb_puts(sb, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        ao_sb_puts(sb, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    if (v == 0 && signbit(v)) {
        /* Not "-0": JSON parsers (jansson among them) read that as the
         * integer 0, and the sign would not survive a round trip. */
        ao_sb_puts(sb, "-0.0");
        return;
    }
    char buf[40];
    for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (is_float ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    ao_sb_puts(sb, buf);
}

static void newline(enc_t *e)
{
    if (!(e->flags & AO_PBJSON_PRETTY)) return;
    ao_sb_append(&e->sb, "\n", 1);
    for (int i = 0; i < e->depth; i++) ao_sb_append(&e->sb, "  ", 2);
}

static void encode_message(enc_t *e, const ProtobufCMessage *m);

static void encode_value(enc_t *e, const ProtobufCFieldDescriptor *f, const void *v)
{
    ao_sb_t *sb = &e->sb;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        ao_sb_printf(sb, "%" PRId32, *(const int32_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        ao_sb_printf(sb, "%" PRIu32, *(const uint32_t *)v);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        ao_sb_printf(sb, "\"%" PRId64 "\"", *(const int64_t *)v);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        ao_sb_printf(sb, "\"%" PRIu64 "\"", *(const uint64_t *)v);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        put_double(sb, *(const float *)v, 1);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        put_double(sb, *(const double *)v, 0);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        ao_sb_puts(sb, *(const protobuf_c_boolean *)v ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int x = *(const int *)v;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, x);
        if (ev) put_string(sb, ev->name, strlen(ev->name));
        else ao_sb_printf(sb, "%d", x);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        s = s ? s : "";
        put_string(sb, s, strlen(s));
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = v;
        ao_sb_append(sb, "\"", 1);
        b64_encode(sb, b->data, b->len);
        ao_sb_append(sb, "\"", 1);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)v;
        if (sub) encode_message(e, sub);
        else ao_sb_puts(sb, "{}");
        break;
    }
    }
}

static int is_default(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const void *v = MEMBER(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return *(const size_t *)MEMBER(m, f->quantifier_offset) == 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)MEMBER(m, f->quantifier_offset) != f->id;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)v == NULL;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v == 0 && !signbit(*(const float *)v);
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)v == 0 && !signbit(*(const double *)v);
    default: {
        size_t sz = ao_pb_elem_size(f->type);
        static const char zero[8];
        return memcmp(v, zero, sz) == 0;
    }
    }
}

static void encode_field(enc_t *e, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    ao_sb_t *sb = &e->sb;
    if (is_map_field(f)) {
        size_t n = *(const size_t *)MEMBER(m, f->quantifier_offset);
        ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)MEMBER(m, f->offset);
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        ao_sb_append(sb, "{", 1);
        e->depth++;
        for (size_t i = 0; i < n; i++) {
            if (i) ao_sb_append(sb, ",", 1);
            newline(e);
            const void *kv = MEMBER(arr[i], ed->fields[0].offset);
            if (ed->fields[0].type == PROTOBUF_C_TYPE_STRING) {
                encode_value(e, &ed->fields[0], kv);
            } else {
                /* Non-string keys are quoted numbers or booleans. */
                ao_sb_t tmp = {0};
                enc_t sub = {tmp, e->flags, 0};
                encode_value(&sub, &ed->fields[0], kv);
                char *txt = ao_sb_take(&sub.sb);
                if (txt[0] == '"') ao_sb_puts(sb, txt);
                else ao_sb_printf(sb, "\"%s\"", txt);
                free(txt);
            }
            ao_sb_puts(sb, (e->flags & AO_PBJSON_PRETTY) ? ": " : ":");
            encode_value(e, &ed->fields[1], MEMBER(arr[i], ed->fields[1].offset));
        }
        e->depth--;
        if (n) newline(e);
        ao_sb_append(sb, "}", 1);
    } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)MEMBER(m, f->quantifier_offset);
        const char *arr = *(char *const *)MEMBER(m, f->offset);
        size_t es = ao_pb_elem_size(f->type);
        ao_sb_append(sb, "[", 1);
        e->depth++;
        for (size_t i = 0; i < n; i++) {
            if (i) ao_sb_append(sb, ",", 1);
            newline(e);
            encode_value(e, f, arr + i * es);
        }
        e->depth--;
        if (n) newline(e);
        ao_sb_append(sb, "]", 1);
    } else {
        encode_value(e, f, MEMBER(m, f->offset));
    }
}

static void encode_message(enc_t *e, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    ao_sb_t *sb = &e->sb;
    ao_sb_append(sb, "{", 1);
    e->depth++;
    int any = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        int dflt = is_default(f, m);
        if (dflt) {
            if (!(e->flags & AO_PBJSON_EMIT_DEFAULTS)) continue;
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) continue;
            if (f->label != PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE)
                continue;
        }
        if (any) ao_sb_append(sb, ",", 1);
        any = 1;
        newline(e);
        char name[256];
        if ((e->flags & AO_PBJSON_ORIGINAL_NAMES) || strlen(f->name) >= sizeof name)
            put_string(sb, f->name, strlen(f->name));
        else {
            ao_pbjson_camel(f->name, name);
            put_string(sb, name, strlen(name));
        }
        ao_sb_puts(sb, (e->flags & AO_PBJSON_PRETTY) ? ": " : ":");
        encode_field(e, f, m);
    }
    e->depth--;
    if (any) newline(e);
    ao_sb_append(sb, "}", 1);
}

char *ao_pbjson_encode(const ProtobufCMessage *msg, unsigned flags)
{
    enc_t e = {{0}, flags, 0};
    encode_message(&e, msg);
    return ao_sb_take(&e.sb);
}
