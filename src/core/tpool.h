/*
 * Intra-op thread pool. tpool_for() splits [0, n) into contiguous chunks and
 * runs them on the calling thread plus the pool's workers, returning when all
 * are done. A pool of one thread (or NULL) runs everything inline, so kernels
 * call tpool_for unconditionally. One tpool_for runs at a time per pool.
 */
#ifndef TERN_CORE_TPOOL_H
#define TERN_CORE_TPOOL_H

#include <stdint.h>

typedef struct tpool tpool;
typedef void (*tpool_fn)(void *arg, int64_t begin, int64_t end);

/* threads <= 1 gives a pool that runs inline; NULL on allocation failure. */
tpool *tpool_create(int threads);
void tpool_free(tpool *p);
int tpool_threads(const tpool *p);
/* Runs fn over [0, n) in chunks of at least `grain` items. */
void tpool_for(tpool *p, int64_t n, int64_t grain, tpool_fn fn, void *arg);

#endif
