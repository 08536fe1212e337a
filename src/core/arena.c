/*
 * Bump arena: a chain of blocks, each filled front to back. reset() rewinds to
 * the first block without freeing; a request larger than what remains moves
 * to the next block in the chain (or a new one at least as big as the
 * request, doubling the arena's size so the chain stays short).
 *
 * Heap (second half of the file): blocks cut into chunks, each a 64-byte
 * header followed by its payload, ending in a zero-size sentinel header.
 * Headers know their own size and their left neighbour's, so a returned
 * chunk merges with free neighbours in O(1).
 */
#include "core/arena.h"

#include <stdbool.h>
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

/* ---- heap ---------------------------------------------------------------- */

#define HEAP_HDR 64
#define HEAP_MIN_BLOCK ((size_t)1 << 20)

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
void arena_poison(void *p, size_t n)
{
    ASAN_POISON_MEMORY_REGION(p, n);
}
void arena_unpoison(void *p, size_t n)
{
    ASAN_UNPOISON_MEMORY_REGION(p, n);
}
#else
void arena_poison(void *p, size_t n)
{
    (void)p, (void)n;
}
void arena_unpoison(void *p, size_t n)
{
    (void)p, (void)n;
}
#endif

struct heap_chunk {
    size_t size;      /* whole chunk, header included; 0 for a block's sentinel */
    size_t prev_size; /* size of the chunk to the left, 0 for a block's first */
    heap_chunk *next_free, *prev_free;
    bool free;
};
_Static_assert(sizeof(heap_chunk) <= HEAP_HDR, "heap chunk header must fit its slot");

struct heap_block {
    heap_block *next;
    size_t size;
    unsigned char *mem;
};

static heap_chunk *chunk_right(heap_chunk *c)
{
    return (heap_chunk *)((unsigned char *)c + c->size);
}

static void free_push(arena_heap *h, heap_chunk *c)
{
    c->free = true;
    c->prev_free = NULL;
    c->next_free = h->free_list;
    if (h->free_list) h->free_list->prev_free = c;
    h->free_list = c;
}

static void free_unlink(arena_heap *h, heap_chunk *c)
{
    if (c->prev_free)
        c->prev_free->next_free = c->next_free;
    else
        h->free_list = c->next_free;
    if (c->next_free) c->next_free->prev_free = c->prev_free;
    c->free = false;
}

/* Makes the whole of b one free chunk followed by the sentinel. */
static void block_format(arena_heap *h, heap_block *b)
{
    heap_chunk *c = (heap_chunk *)b->mem, *end = (heap_chunk *)(b->mem + b->size - HEAP_HDR);
    c->size = b->size - HEAP_HDR;
    c->prev_size = 0;
    end->size = 0;
    end->prev_size = c->size;
    end->free = false;
    free_push(h, c);
    arena_poison((unsigned char *)c + HEAP_HDR, c->size - HEAP_HDR);
}

static heap_block *block_new(arena_heap *h, size_t size)
{
    heap_block *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->mem = aligned_alloc(HEAP_HDR, size);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->next = h->blocks;
    h->blocks = b;
    h->n_blocks++;
    h->reserved += size;
    block_format(h, b);
    return b;
}

static void blocks_release(arena_heap *h)
{
    for (heap_block *b = h->blocks, *n; b; b = n) {
        n = b->next;
        arena_unpoison(b->mem, b->size);
        free(b->mem);
        free(b);
    }
    h->blocks = NULL;
    h->free_list = NULL;
    h->n_blocks = 0;
    h->reserved = 0;
}

void arena_heap_init(arena_heap *h)
{
    memset(h, 0, sizeof *h);
}

void arena_heap_free(arena_heap *h)
{
    blocks_release(h);
    memset(h, 0, sizeof *h);
}

int arena_heap_free_chunks(const arena_heap *h)
{
    int n = 0;
    for (const heap_chunk *c = h->free_list; c; c = c->next_free) n++;
    return n;
}

size_t arena_heap_footprint(size_t n)
{
    return align_up(n ? n : 1) + HEAP_HDR;
}

void arena_heap_reset(arena_heap *h, size_t min_bytes, bool fit)
{
    h->in_use = h->peak = 0;
    size_t want = arena_heap_footprint(min_bytes) + HEAP_HDR; /* + the sentinel */
    if (fit ? h->n_blocks != 1 || h->blocks->size != want
            : h->n_blocks > 1 || (min_bytes && (!h->blocks || h->blocks->size < want))) {
        if (!fit && want < h->reserved) want = h->reserved;
        blocks_release(h);
        block_new(h, want);
        return;
    }
    h->free_list = NULL;
    if (h->blocks) block_format(h, h->blocks);
}

void *arena_heap_take(arena_heap *h, size_t n)
{
    size_t need = align_up(n ? n : 1);
    if (need == 0 || need > SIZE_MAX - 2 * HEAP_HDR) return NULL;
    need += HEAP_HDR;
    heap_chunk *best = NULL;
    for (heap_chunk *c = h->free_list; c; c = c->next_free)
        if (c->size >= need && (!best || c->size < best->size)) {
            best = c;
            if (c->size == need) break;
        }
    if (!best) {
        size_t sz = need + HEAP_HDR;
        if (sz < HEAP_MIN_BLOCK) sz = HEAP_MIN_BLOCK;
        if (!block_new(h, sz)) return NULL;
        best = h->free_list;
    }
    free_unlink(h, best);
    arena_unpoison((unsigned char *)best + HEAP_HDR, need - HEAP_HDR);
    if (best->size - need >= 2 * HEAP_HDR) { /* split; the rest stays free */
        heap_chunk *rest = (heap_chunk *)((unsigned char *)best + need);
        arena_unpoison(rest, HEAP_HDR);
        rest->size = best->size - need;
        rest->prev_size = need;
        chunk_right(rest)->prev_size = rest->size;
        best->size = need;
        free_push(h, rest);
    }
    h->in_use += best->size;
    if (h->in_use > h->peak) h->peak = h->in_use;
    return (unsigned char *)best + HEAP_HDR;
}

void arena_heap_give(arena_heap *h, void *p)
{
    if (!p) return;
    heap_chunk *c = (heap_chunk *)((unsigned char *)p - HEAP_HDR);
    h->in_use -= c->size;
    arena_poison(p, c->size - HEAP_HDR);
    heap_chunk *r = chunk_right(c);
    if (r->free) {
        free_unlink(h, r);
        c->size += r->size;
    }
    if (c->prev_size) {
        heap_chunk *l = (heap_chunk *)((unsigned char *)c - c->prev_size);
        if (l->free) {
            free_unlink(h, l);
            l->size += c->size;
            c = l;
        }
    }
    chunk_right(c)->prev_size = c->size;
    free_push(h, c);
}
