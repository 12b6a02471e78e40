/*
 * Input templates: `{{ key }}` placeholders replaced by values. Keys are
 * 1 to 200 characters of [A-Za-z0-9_.:/-]; spaces inside the braces are
 * ignored. Text that is not a well-formed placeholder is kept as it is.
 *
 * Keys used by tasks (see TaskSpec.input): deps.ID.output, deps.ID.score,
 * deps.ID.confidence, context.KEY, findings.KEY, workflow.name,
 * workflow.id, task.id, area, prev.output, input.
 */
#ifndef AO_TEMPLATE_H
#define AO_TEMPLATE_H

#include "err.h"

#include <stddef.h>

/* Looks a key up: returns the value (borrowed, valid until the render
 * returns) or NULL if the key is unknown, with st set naming why. */
typedef const char *(*ao_template_lookup_fn)(void *ud, const char *key, ao_status_t *st);

/* Renders tpl. Returns a malloc'd string, or NULL with st set: an unknown
 * key (the lookup's message), or the result larger than max bytes
 * (AO_ELIMIT naming the limit). */
char *ao_template_render(const char *tpl, ao_template_lookup_fn lookup, void *ud, size_t max,
                         ao_status_t *st);

/* Calls fn for every placeholder key of tpl, stopping at the first nonzero
 * return (which it returns). For validation before anything runs. */
typedef int (*ao_template_key_fn)(void *ud, const char *key);
int ao_template_scan(const char *tpl, ao_template_key_fn fn, void *ud);

/* Rewrites placeholder keys: fn returns a malloc'd new key, or NULL to keep
 * the key. Returns the new template (malloc'd). */
typedef char *(*ao_template_rewrite_fn)(void *ud, const char *key);
char *ao_template_rewrite(const char *tpl, ao_template_rewrite_fn fn, void *ud);

#endif
