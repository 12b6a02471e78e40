#include "fairq.h"

#include "mem.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct node {
    struct node *next;
    void *item;
} node_t;

/* One key's FIFO, linked into the ring while non-empty. */
typedef struct lane {
    struct lane *prev, *next;
    node_t *head, *tail;
    char *key;
} lane_t;

struct ao_fairq {
    json_t *lanes; /* key -> lane */
    lane_t *ring;  /* the lane served next */
    size_t len;
};

ao_fairq_t *ao_fairq_create(void)
{
    ao_fairq_t *q = ao_xcalloc(1, sizeof *q);
    q->lanes = json_object();
    return q;
}

static void lane_free(lane_t *l)
{
    node_t *n = l->head;
    while (n) {
        node_t *next = n->next;
        free(n);
        n = next;
    }
    free(l->key);
    free(l);
}

void ao_fairq_destroy(ao_fairq_t *q)
{
    if (!q) return;
    const char *k;
    json_t *v;
    json_object_foreach(q->lanes, k, v) lane_free((lane_t *)(intptr_t)json_integer_value(v));
    json_decref(q->lanes);
    free(q);
}

static void ring_insert_last(ao_fairq_t *q, lane_t *l)
{
    if (!q->ring) {
        l->prev = l->next = l;
        q->ring = l;
        return;
    }
    /* Before the current head: the last to be served in this round. */
    l->next = q->ring;
    l->prev = q->ring->prev;
    q->ring->prev->next = l;
    q->ring->prev = l;
}

static void ring_unlink(ao_fairq_t *q, lane_t *l)
{
    if (l->next == l) q->ring = NULL;
    else {
        l->prev->next = l->next;
        l->next->prev = l->prev;
        if (q->ring == l) q->ring = l->next;
    }
    json_object_del(q->lanes, l->key);
    lane_free(l);
}

void ao_fairq_push(ao_fairq_t *q, const char *key, void *item)
{
    json_t *v = json_object_get(q->lanes, key);
    lane_t *l;
    if (v) {
        l = (lane_t *)(intptr_t)json_integer_value(v);
    } else {
        l = ao_xcalloc(1, sizeof *l);
        l->key = ao_xstrdup(key);
        json_object_set_new(q->lanes, key, json_integer((json_int_t)(intptr_t)l));
        ring_insert_last(q, l);
    }
    node_t *n = ao_xmalloc(sizeof *n);
    n->next = NULL;
    n->item = item;
    if (l->tail) l->tail->next = n;
    else l->head = n;
    l->tail = n;
    q->len++;
}

void *ao_fairq_pop(ao_fairq_t *q)
{
    lane_t *l = q->ring;
    if (!l) return NULL;
    node_t *n = l->head;
    void *item = n->item;
    l->head = n->next;
    if (!l->head) l->tail = NULL;
    free(n);
    q->len--;
    if (!l->head) ring_unlink(q, l);
    else q->ring = l->next; /* the next lane goes next */
    return item;
}

int ao_fairq_remove(ao_fairq_t *q, const char *key, void *item)
{
    json_t *v = json_object_get(q->lanes, key);
    if (!v) return 0;
    lane_t *l = (lane_t *)(intptr_t)json_integer_value(v);
    node_t *prev = NULL;
    for (node_t *n = l->head; n; prev = n, n = n->next) {
        if (n->item != item) continue;
        if (prev) prev->next = n->next;
        else l->head = n->next;
        if (l->tail == n) l->tail = prev;
        free(n);
        q->len--;
        if (!l->head) ring_unlink(q, l);
        return 1;
    }
    return 0;
}

size_t ao_fairq_len(const ao_fairq_t *q)
{
    return q->len;
}
