/*
 * Seeded mutations of JSON, for the unit tests that feed what comes from
 * outside (config files, workflow files, agents' replies) to a decoder or
 * a validator thousands of times: the same mutations every run, so a
 * failure repeats.
 *
 * jm_mutate_text changes the text (a byte, a cut, a JSON token inserted):
 * mostly syntax errors. jm_mutate_tree changes a parsed value (a member
 * replaced, removed or added; an array entry repeated or removed), which
 * gets past the syntax into each field's checks. A test's own strings
 * (task ids, agent names, template marks) join the values it picks.
 */
#ifndef AO_TEST_JSONMUT_H
#define AO_TEST_JSONMUT_H

#include "pbjson.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

typedef struct jm {
    uint64_t state;             /* the generator's (xorshift64*), not 0 */
    const char *const *strings; /* the test's own string values, or NULL */
    size_t n_strings;
} jm_t;

static inline unsigned jm_rnd(jm_t *m, unsigned n)
{
    m->state ^= m->state >> 12;
    m->state ^= m->state << 25;
    m->state ^= m->state >> 27;
    return (unsigned)((m->state * 0x2545f4914f6cdd1du) >> 33) % n;
}

/* One mutation of text (len bytes) into out (room for len + 64): a byte
 * replaced, the text cut, or a JSON token inserted. Returns the new length. */
static inline size_t jm_mutate_text(jm_t *m, const char *text, size_t len, char *out)
{
    static const char *const tokens[] = {
        "{",
        "}",
        "[",
        "]",
        "\"",
        ",",
        ":",
        "null",
        "true",
        "-",
        "1e999",
        "-0",
        "1.5e-400",
        "18446744073709551616",
        "\"-9223372036854775809\"",
        "\\u0000",
        "\\ud800",
        "\\",
        "\"\":1,",
        "{\"a\":{\"b\":[[[[]]]]}}",
        "\"AAEC/w=\"",
        "\"COLOR_NOPE\"",
        "2147483648",
        "NaN",
        "\xc3\x28",
    };
    static const char chars[] = " {}[]\",:0123456789-.etrufnlaEx\\";
    size_t at = len ? jm_rnd(m, (unsigned)len) : 0;
    switch (jm_rnd(m, 3)) {
    case 0:
        memcpy(out, text, len);
        if (len) out[at] = chars[jm_rnd(m, sizeof chars - 1)];
        return len;
    case 1:
        memcpy(out, text, at);
        return at;
    default: {
        const char *t = tokens[jm_rnd(m, sizeof tokens / sizeof *tokens)];
        size_t tl = strlen(t);
        memcpy(out, text, at);
        memcpy(out + at, t, tl);
        memcpy(out + at + tl, text + at, len - at);
        return len + tl;
    }
    }
}

/* A JSON value that a field's decoder or validator has to think about. */
static inline json_t *jm_value(jm_t *m)
{
    static const json_int_t ints[] = {0,          -1,         1,          2,
                                      100,        2147483647, 2147483648, -2147483649,
                                      4294967296, INT64_MAX,  INT64_MIN,  9007199254740993};
    static const double reals[] = {0.5, -0.0, 1e300, -1e300, 4294967295.5, 1e-320, 3.0, 1.5};
    static const char *const strs[] = {"",
                                       "COLOR_RED",
                                       "COLOR_NOPE",
                                       "NaN",
                                       "Infinity",
                                       "-Infinity",
                                       "-9223372036854775809",
                                       "18446744073709551616",
                                       "12x",
                                       " 7",
                                       "AAEC/w==",
                                       "not base64!",
                                       "_-8=",
                                       "1e5",
                                       "0x10",
                                       "h\xc3\xa9",
                                       "DURABILITY_SYNC",
                                       "BACKEND_KIND_HTTPS"};
    unsigned pick = jm_rnd(m, m->n_strings ? 11 : 9);
    switch (pick) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(jm_rnd(m, 2));
    case 2:
        return json_integer(ints[jm_rnd(m, sizeof ints / sizeof *ints)]);
    case 3:
        return json_real(reals[jm_rnd(m, sizeof reals / sizeof *reals)]);
    case 4:
        return json_stringn("a\0b", 3);
    case 5:
        return json_object();
    case 6:
        return json_pack("[i,s]", 1, "x");
    case 7:
    case 8:
        return json_string(strs[jm_rnd(m, sizeof strs / sizeof *strs)]);
    default: {
        /* The test's own strings, alone or as an array (ids to depend on). */
        json_t *s = json_string(m->strings[jm_rnd(m, (unsigned)m->n_strings)]);
        if (pick == 9) return s;
        json_t *a = json_array();
        json_array_append_new(a, s);
        return a;
    }
    }
}

/* Changes one node somewhere in v: a member replaced, removed, or added
 * (an unknown one); an array entry repeated, removed or replaced. */
static inline void jm_mutate_tree(jm_t *m, json_t *v, int depth)
{
    if (json_is_object(v) && json_object_size(v)) {
        size_t pick = jm_rnd(m, (unsigned)json_object_size(v)), i = 0;
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
        {
            if (i++ != pick) continue;
            unsigned what = jm_rnd(m, 6);
            if (what == 0)
                json_object_del(v, key);
            else if (what == 1)
                json_object_set_new(v, "unknownField", jm_value(m));
            else if (what == 2 || depth > 6 || !(json_is_object(val) || json_is_array(val)))
                json_object_set_new(v, key, jm_value(m));
            else
                jm_mutate_tree(m, val, depth + 1);
            return;
        }
    } else if (json_is_array(v) && json_array_size(v)) {
        size_t i = jm_rnd(m, (unsigned)json_array_size(v));
        json_t *val = json_array_get(v, i);
        unsigned what = jm_rnd(m, 4);
        if (what == 0)
            json_array_append(v, val);
        else if (what == 1)
            json_array_remove(v, i);
        else if (what == 2 || depth > 6 || !(json_is_object(val) || json_is_array(val)))
            json_array_set_new(v, i, jm_value(m));
        else
            jm_mutate_tree(m, val, depth + 1);
    }
}

/* seed (JSON text) with one to three jm_mutate_tree changes, decoded as
 * a d: the message, or NULL if it does not decode (a wrong type, say). */
static inline ProtobufCMessage *jm_mutated_message(jm_t *m, const char *seed,
                                                   const ProtobufCMessageDescriptor *d)
{
    json_t *root = json_loads(seed, 0, NULL);
    if (!root) return NULL;
    for (unsigned j = 0, stack = 1 + jm_rnd(m, 3); j < stack; j++)
        jm_mutate_tree(m, root, 0);
    ProtobufCMessage *msg = NULL;
    ao_status_t st = {0};
    int rc = ao_pbjson_decode(d, root, &msg, &st);
    json_decref(root);
    return rc ? NULL : msg;
}

#endif
