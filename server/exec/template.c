#include "template.h"

#include "mem.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static int key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '/' || c == '-';
}

/* Parses a placeholder at p ("{{"): on success copies the key into key[]
 * and returns the length of the whole placeholder, else 0. */
static size_t parse_placeholder(const char *p, char key[201])
{
    if (p[0] != '{' || p[1] != '{') return 0;
    const char *q = p + 2;
    while (*q == ' ') q++;
    const char *k = q;
    while (key_char(*q)) q++;
    size_t klen = (size_t)(q - k);
    while (*q == ' ') q++;
    if (klen == 0 || klen > 200 || q[0] != '}' || q[1] != '}') return 0;
    memcpy(key, k, klen);
    key[klen] = '\0';
    return (size_t)(q + 2 - p);
}

char *ao_template_render(const char *tpl, ao_template_lookup_fn lookup, void *ud, size_t max,
                         ao_status_t *st)
{
    ao_sb_t sb = {0};
    const char *p = tpl;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            ao_sb_puts(&sb, p);
            break;
        }
        ao_sb_append(&sb, p, (size_t)(open - p));
        char key[201];
        size_t n = parse_placeholder(open, key);
        if (!n) {
            ao_sb_append(&sb, open, 2);
            p = open + 2;
            continue;
        }
        const char *v = lookup(ud, key, st);
        if (!v) {
            ao_sb_free(&sb);
            return NULL;
        }
        ao_sb_puts(&sb, v);
        p = open + n;
        if (sb.len > max) break;
    }
    if (sb.len > max) {
        ao_status_set(st, AO_ELIMIT, "rendered input is larger than limits.max_input_bytes (%zu)",
                      max);
        ao_sb_free(&sb);
        return NULL;
    }
    return ao_sb_take(&sb);
}

int ao_template_scan(const char *tpl, ao_template_key_fn fn, void *ud)
{
    const char *p = tpl;
    while ((p = strstr(p, "{{"))) {
        char key[201];
        size_t n = parse_placeholder(p, key);
        if (!n) {
            p += 2;
            continue;
        }
        int rc = fn(ud, key);
        if (rc) return rc;
        p += n;
    }
    return 0;
}

char *ao_template_rewrite(const char *tpl, ao_template_rewrite_fn fn, void *ud)
{
    ao_sb_t sb = {0};
    const char *p = tpl;
    for (;;) {
        const char *open = strstr(p, "{{");
        if (!open) {
            ao_sb_puts(&sb, p);
            break;
        }
        ao_sb_append(&sb, p, (size_t)(open - p));
        char key[201];
        size_t n = parse_placeholder(open, key);
        if (!n) {
            ao_sb_append(&sb, open, 2);
            p = open + 2;
            continue;
        }
        char *nk = fn(ud, key);
        if (nk) {
            ao_sb_printf(&sb, "{{%s}}", nk);
            free(nk);
        } else {
            ao_sb_append(&sb, open, n);
        }
        p = open + n;
    }
    return ao_sb_take(&sb);
}
