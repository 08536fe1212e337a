/*
 * Bump allocator for the tensors of one inference. Memory comes in blocks
 * that are kept across resets, so once an arena has grown to the size a
 * model needs for a given input shape, later inferences allocate nothing
 * from the heap. Allocations are 64-byte aligned (AVX-512 loads) and
 * zero-filled is NOT guaranteed. A mark/release pair frees everything
 * allocated after the mark (used by loops that run a body many times).
 */
#ifndef TERN_CORE_ARENA_H
#define TERN_CORE_ARENA_H

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

#endif
