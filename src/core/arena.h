/*
 * Memory for one inference, in two allocators that keep their memory across
 * resets, so once they have grown to what a model needs for a given input
 * shape, later inferences allocate nothing from the heap.
 *
 * arena: a bump allocator. Allocations live until the next reset (or until a
 * mark is released); there is no per-allocation free. Used for small
 * bookkeeping (tensor headers, frame arrays), for subgraph bodies, and as
 * the store of a loaded model.
 *
 * arena_heap: a best-fit heap with boundary tags, for the tensors of the
 * main graph, which the executor returns as soon as their last reader has
 * run. Each chunk carries a 64-byte header (size, size of the chunk before,
 * free-list links); a returned chunk is merged with free neighbours, so the
 * free list stays short and a linear best-fit scan is cheap. When no free
 * chunk fits, the heap grows by a block just big enough (at least 1 MiB);
 * at the next reset several blocks are folded into one, so in the steady
 * state the heap is one contiguous block and allocation never grows it.
 *
 * Both hand out 64-byte aligned memory (AVX-512 loads), not zero-filled.
 */
#ifndef TERN_CORE_ARENA_H
#define TERN_CORE_ARENA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct arena {
    arena_block *head; /* block being filled */
    arena_block *first;
    size_t total; /* bytes reserved in all blocks */
} arena;

typedef struct arena_mark {
    arena_block *block;
    size_t used;
} arena_mark;

void arena_init(arena *a);
void arena_free(arena *a);
/* NULL only if the heap is exhausted. */
void *arena_alloc(arena *a, size_t n);
void *arena_calloc(arena *a, size_t n);
char *arena_strdup(arena *a, const char *s);
/* Forgets every allocation but keeps the blocks. */
void arena_reset(arena *a);
arena_mark arena_get_mark(const arena *a);
void arena_release(arena *a, arena_mark m);

typedef struct heap_chunk heap_chunk;
typedef struct heap_block heap_block;

typedef struct arena_heap {
    heap_block *blocks;
    heap_chunk *free_list; /* doubly linked, any order */
    int n_blocks;
    size_t reserved; /* bytes in all blocks */
    size_t in_use;   /* bytes in taken chunks, headers included */
    size_t peak;     /* high-water mark of in_use since the last reset */
} arena_heap;

void arena_heap_init(arena_heap *h);
void arena_heap_free(arena_heap *h);
/* Forgets every chunk taken. If the heap has several blocks, or one smaller
 * than min_bytes, they are replaced by one block of at least that size and
 * of the bytes reserved so far; with `fit`, by one block that holds exactly
 * min_bytes (to give back what a first, unplanned run needed). Only then
 * does a reset touch the system heap; on failure the heap is left empty and
 * grows again on demand. */
void arena_heap_reset(arena_heap *h, size_t min_bytes, bool fit);
/* NULL only if the system heap is exhausted. */
void *arena_heap_take(arena_heap *h, size_t n);
/* Returns memory from arena_heap_take (NULL is ignored). */
void arena_heap_give(arena_heap *h, void *p);
/* Bytes a take of n uses, header included (what a block must hold). */
size_t arena_heap_footprint(size_t n);
/* Number of free chunks (for tests: all returned = one per block). */
int arena_heap_free_chunks(const arena_heap *h);

/* In the ASan build, marks memory as unusable / usable again, so that a
 * read of a tensor after its memory was returned is reported; the heap
 * poisons what it holds free. No-ops otherwise. */
void arena_poison(void *p, size_t n);
void arena_unpoison(void *p, size_t n);

#endif
