#include "pbutil.h"

#include "mem.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t ao_pb_elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

static ProtobufCMessage *deep_copy(const ProtobufCMessage *m);

/* Replaces the borrowed pointer at `slot` (one value of field f, copied
 * bit for bit from the source) with a copy of what it points to, leaving
 * protobuf-c's shared defaults shared (free_unpacked skips them). */
static void own_value(const ProtobufCFieldDescriptor *f, void *slot)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        char **p = slot;
        if (*p && *p != (const char *)f->default_value) *p = ao_xstrdup(*p);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = slot;
        const ProtobufCBinaryData *def = f->default_value;
        if (b->data && (!def || b->data != def->data)) {
            uint8_t *copy = ao_xmalloc(b->len ? b->len : 1);
            memcpy(copy, b->data, b->len);
            b->data = copy;
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage **p = slot;
        *p = deep_copy(*p);
        break;
    }
    default:
        break;
    }
}

static ProtobufCMessage *deep_copy(const ProtobufCMessage *m)
{
    if (!m) return NULL;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    /* Scalars, has_ flags, counts and oneof cases come across as they are;
     * then every pointer is replaced by a copy of its own. */
    ProtobufCMessage *c = ao_xmalloc(d->sizeof_message);
    memcpy(c, m, d->sizeof_message);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *member = (char *)c + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)c + f->quantifier_offset);
            void **arr = member;
            if (!n || !*arr) {
                *arr = NULL;
                *(size_t *)((char *)c + f->quantifier_offset) = 0;
                continue;
            }
            size_t es = ao_pb_elem_size(f->type);
            void *copy = ao_xmalloc(n * es);
            memcpy(copy, *arr, n * es);
            *arr = copy;
            if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES ||
                f->type == PROTOBUF_C_TYPE_MESSAGE)
                for (size_t k = 0; k < n; k++) own_value(f, (char *)copy + k * es);
            continue;
        }
        /* A oneof's members share their storage: only the set one owns it. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)c + f->quantifier_offset) != f->id)
            continue;
        own_value(f, member);
    }
    if (m->n_unknown_fields) {
        c->unknown_fields = ao_xmalloc(m->n_unknown_fields * sizeof *c->unknown_fields);
        for (unsigned k = 0; k < m->n_unknown_fields; k++) {
            c->unknown_fields[k] = m->unknown_fields[k];
            uint8_t *data = ao_xmalloc(m->unknown_fields[k].len ? m->unknown_fields[k].len : 1);
            memcpy(data, m->unknown_fields[k].data, m->unknown_fields[k].len);
            c->unknown_fields[k].data = data;
        }
    } else {
        c->unknown_fields = NULL;
    }
    return c;
}

ProtobufCMessage *ao_pb_clone(const ProtobufCMessage *m)
{
    return deep_copy(m);
}

/* ---- UTF-8 ------------------------------------------------------------------------- */

static int str_ok(const char *s)
{
    return !s || ao_utf8_valid(s, strlen(s), NULL);
}

/* Writes "prefix.name" or "prefix.name[k]" (k >= 0) into path. */
static void path_join(char *path, size_t len, const char *prefix, const char *name, long k)
{
    if (k >= 0)
        snprintf(path, len, "%s%s%s[%ld]", prefix, *prefix ? "." : "", name, k);
    else
        snprintf(path, len, "%s%s%s", prefix, *prefix ? "." : "", name);
}

static int check_utf8(const ProtobufCMessage *m, const char *prefix, char *path, size_t len,
                      int depth);

/* One value of field f (k: its index in a repeated field, -1 if single). */
static int check_value(const ProtobufCFieldDescriptor *f, const void *v, long k, const char *prefix,
                       char *path, size_t len, int depth)
{
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        if (str_ok(v)) return 1;
        path_join(path, len, prefix, f->name, k);
        return 0;
    }
    if (!v) return 1;
    char sub[256];
    path_join(sub, sizeof sub, prefix, f->name, k);
    return check_utf8(v, sub, path, len, depth + 1);
}

static int check_utf8(const ProtobufCMessage *m, const char *prefix, char *path, size_t len,
                      int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    /* Deeper than any agentos message; protobuf-c's own limit is higher. */
    if (depth > 64) return 1;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        void *const *member = (void *const *)((const char *)m + f->offset);
        const void *quantifier = (const char *)m + f->quantifier_offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            void *const *arr = *(void *const *const *)member;
            for (size_t k = 0; arr && k < *(const size_t *)quantifier; k++)
                if (!check_value(f, arr[k], (long)k, prefix, path, len, depth)) return 0;
        } else if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || *(const uint32_t *)quantifier == f->id) {
            if (!check_value(f, *member, -1, prefix, path, len, depth)) return 0;
        }
    }
    return 1;
}

int ao_pb_check_utf8(const ProtobufCMessage *m, char *path, size_t len)
{
    if (len) path[0] = 0;
    return !m || check_utf8(m, "", path, len, 0);
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t ao_pb_field_size(uint32_t field, size_t len)
{
    return varint_size(((uint64_t)field << 3) | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) +
           varint_size(len) + len;
}

size_t ao_pb_put_field(uint8_t *buf, uint32_t field, const void *data, size_t len)
{
    size_t n = ao_varint_put(buf, ((uint64_t)field << 3) | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    n += ao_varint_put(buf + n, len);
    if (len) memcpy(buf + n, data, len);
    return n + len;
}

/* ---- narrowed packing ---------------------------------------------------- */

typedef struct narrowed {
    ProtobufCMessageDescriptor d;
    ProtobufCFieldDescriptor *fields;
    unsigned *by_name;
    ProtobufCIntRange *ranges;
} narrowed_t;

struct ao_pb_narrow {
    const ProtobufCMessageDescriptor *full;
    size_t case_offset;   /* the oneof's case, in the message */
    uint32_t max_case;    /* by_case has max_case + 1 entries */
    narrowed_t **by_case; /* NULL: that case packs through full */
    narrowed_t *none;     /* no member set */
    narrowed_t **all;
    size_t n_all;
};

/* The descriptor with the fields keep[i] != 0, in their order; its name
 * index and id ranges made for them, as protoc-c makes them. */
static narrowed_t *narrow_to(const ProtobufCMessageDescriptor *full, const char *keep)
{
    narrowed_t *n = ao_xcalloc(1, sizeof *n);
    n->d = *full;
    n->fields = ao_xcalloc(full->n_fields ? full->n_fields : 1, sizeof *n->fields);
    unsigned k = 0;
    for (unsigned i = 0; i < full->n_fields; i++)
        if (keep[i]) n->fields[k++] = full->fields[i];
    n->by_name = ao_xcalloc(k ? k : 1, sizeof *n->by_name);
    for (unsigned i = 0; i < k; i++) { /* insertion sort: a few dozen fields */
        unsigned j = i;
        while (j && strcmp(n->fields[n->by_name[j - 1]].name, n->fields[i].name) > 0) {
            n->by_name[j] = n->by_name[j - 1];
            j--;
        }
        n->by_name[j] = i;
    }
    n->ranges = ao_xcalloc(k + 1, sizeof *n->ranges);
    unsigned nr = 0;
    for (unsigned i = 0; i < k; i++)
        if (!i || n->fields[i].id != n->fields[i - 1].id + 1)
            n->ranges[nr++] = (ProtobufCIntRange){(int)n->fields[i].id, (int)i};
    n->ranges[nr] = (ProtobufCIntRange){0, (int)k};
    n->d.n_fields = k;
    n->d.fields = n->fields;
    n->d.fields_sorted_by_name = n->by_name;
    n->d.n_field_ranges = nr;
    n->d.field_ranges = n->ranges;
    return n;
}

ao_pb_narrow_t *ao_pb_narrow_create(const ProtobufCMessageDescriptor *d)
{
    ao_pb_narrow_t *n = ao_xcalloc(1, sizeof *n);
    n->full = d;
    size_t off = 0;
    int oneofs = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
        if (!oneofs || f->quantifier_offset != off) oneofs++;
        off = f->quantifier_offset;
        if (f->id > n->max_case) n->max_case = f->id;
    }
    if (oneofs != 1 || n->max_case > 4096) return n;
    n->case_offset = off;
    n->by_case = ao_xcalloc(n->max_case + 1, sizeof *n->by_case);
    n->all = ao_xcalloc(d->n_fields + 1, sizeof *n->all);
    char *keep = ao_xcalloc(d->n_fields ? d->n_fields : 1, 1);
    for (unsigned i = 0; i < d->n_fields; i++) keep[i] = !(d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
    n->none = n->all[n->n_all++] = narrow_to(d, keep);
    for (unsigned m = 0; m < d->n_fields; m++) {
        if (!(d->fields[m].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
        keep[m] = 1;
        n->by_case[d->fields[m].id] = n->all[n->n_all++] = narrow_to(d, keep);
        keep[m] = 0;
    }
    free(keep);
    return n;
}

void ao_pb_narrow_destroy(ao_pb_narrow_t *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n_all; i++) {
        free(n->all[i]->fields);
        free(n->all[i]->by_name);
        free(n->all[i]->ranges);
        free(n->all[i]);
    }
    free(n->all);
    free(n->by_case);
    free(n);
}

static const ProtobufCMessageDescriptor *narrow_pick(const ao_pb_narrow_t *n, const ProtobufCMessage *m)
{
    if (m->descriptor != n->full) ao_fatal("ao_pb_narrow: a %s given to the packer of %s", m->descriptor->name, n->full->name);
    if (!n->by_case) return n->full;
    uint32_t c = *(const uint32_t *)((const char *)m + n->case_offset);
    if (!c) return &n->none->d;
    return c <= n->max_case && n->by_case[c] ? &n->by_case[c]->d : n->full;
}

size_t ao_pb_narrow_size(const ao_pb_narrow_t *n, ProtobufCMessage *m)
{
    m->descriptor = narrow_pick(n, m);
    size_t len = protobuf_c_message_get_packed_size(m);
    m->descriptor = n->full;
    return len;
}

size_t ao_pb_narrow_pack(const ao_pb_narrow_t *n, ProtobufCMessage *m, uint8_t *out)
{
    m->descriptor = narrow_pick(n, m);
    size_t len = protobuf_c_message_pack(m, out);
    m->descriptor = n->full;
    return len;
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
