/*
 * Bump arena: a chain of blocks, each filled front to back. reset() rewinds to
 * the first block without freeing; a request larger than what remains moves
 * to the next block in the chain (or a new one at least as big as the
 * request, doubling the arena's size so the chain stays short).
 */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64
#define ARENA_MIN_BLOCK (1u << 20)

struct arena_block {
    arena_block *next;
    size_t size, used;
    unsigned char *mem;
};

void arena_init(arena *a)
{
    memset(a, 0, sizeof *a);
}

void arena_free(arena *a)
{
    arena_block *b = a->first;
    while (b) {
        arena_block *n = b->next;
        free(b->mem);
        free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}

static size_t align_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

void *arena_alloc(arena *a, size_t n)
{
    n = align_up(n ? n : 1);
    if (n == 0) return NULL; /* align_up overflowed */
    arena_block *b = a->head;
    while (b && b->size - b->used < n) {
        /* the rest of this block is wasted until the next reset */
        b = b->next;
        if (b) b->used = 0;
    }
    if (!b) {
        size_t sz = a->total > n ? a->total : n;
        if (sz < ARENA_MIN_BLOCK) sz = ARENA_MIN_BLOCK;
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        b->mem = aligned_alloc(ARENA_ALIGN, sz);
        if (!b->mem) {
            free(b);
            return NULL;
        }
        b->size = sz;
        a->total += sz;
        /* append after the current head so that reset order is kept */
        if (!a->first) {
            a->first = b;
        } else {
            arena_block *t = a->head ? a->head : a->first;
            while (t->next) t = t->next;
            t->next = b;
        }
    }
    a->head = b;
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

void *arena_calloc(arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

char *arena_strdup(arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(a, n);
    if (p) memcpy(p, s, n);
    return p;
}

void arena_reset(arena *a)
{
    a->head = a->first;
    if (a->first) a->first->used = 0;
}

arena_mark arena_get_mark(const arena *a)
{
    arena_mark m = {a->head, a->head ? a->head->used : 0};
    return m;
}

void arena_release(arena *a, arena_mark m)
{
    if (!m.block) {
        arena_reset(a);
        return;
    }
    a->head = m.block;
    m.block->used = m.used;
}
