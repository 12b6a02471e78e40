/*
 * A fair queue: FIFO per key (a workflow), keys served round-robin, so that
 * a workflow with 10,000 ready tasks does not starve one with 3.
 *
 * Not thread-safe: the owner locks.
 */
#ifndef AO_FAIRQ_H
#define AO_FAIRQ_H

#include <stddef.h>

typedef struct ao_fairq ao_fairq_t;

ao_fairq_t *ao_fairq_create(void);
/* Frees the queue; items still in it are not freed. */
void ao_fairq_destroy(ao_fairq_t *q);

void ao_fairq_push(ao_fairq_t *q, const char *key, void *item);
/* The next item (round-robin over keys), or NULL when empty. */
void *ao_fairq_pop(ao_fairq_t *q);
/* Removes one item (compared by pointer); returns 1 if it was there. */
int ao_fairq_remove(ao_fairq_t *q, const char *key, void *item);
size_t ao_fairq_len(const ao_fairq_t *q);

#endif
