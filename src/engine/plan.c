/*
 * Memory planning, see plan.h for the design. This file holds the liveness
 * analysis, the block table with its reference counts, and the plans: the
 * recorder, the offline packing and the replay check.
 *
 * Events of a run are numbered takes and gives: take k is the k-th buffer
 * taken in the run (its id), and an event is id << 1 for a take, id << 1 | 1
 * for a give. A recorded run gives each take an interval [take event, give
 * event) and a size; two takes may share bytes only if their intervals are
 * disjoint. A replay walks the recording: each take must be the next
 * recorded event, with the recorded size, and every give recorded before it
 * must have happened. A give may come earlier than recorded (an If that
 * took the other branch lets a tensor go sooner): the block is marked given
 * and its recorded event is skipped when the walk reaches it. So while a
 * replay matches, every live take was live at the same point of the
 * recording, and the offsets cannot collide.
 *
 * In-place decisions (exec_mem_inplace) are recorded beside the events, one
 * flag per decision in the order they were made, and a replay makes the
 * same ones: a reuse takes nothing, so a replay that reused where the
 * recording took (or the reverse) would shift every later take. When the
 * recording reused and the replay cannot, the output's block comes from the
 * heap and is UNTRACKED: it has no id, and its give is no event.
 */
#include "engine/plan.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_OFF, MODE_DYNAMIC, MODE_RECORD, MODE_REPLAY };

#define ALIGN 64
#define UNTRACKED UINT32_MAX /* id of a block outside the plan's events */

static size_t round_up(size_t n)
{
    return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

static tern_status *oom(void)
{
    return tern_error(TERN_ERR_NO_MEMORY, "out of memory planning tensor memory");
}

/* ---- liveness ------------------------------------------------------------ */

/* Values of g's parent captured by subgraph sub: they are read by node i. */
static void mark_captures(const graph *sub, int i, int *last)
{
    for (int v = 0; v < sub->n_values; v++)
        if (sub->values[v].outer >= 0) last[sub->values[v].outer] = i;
}

tern_status *exec_live_build(const graph *g, exec_live **out)
{
    *out = NULL;
    int nv = g->n_values, nn = g->n_nodes;
    exec_live *l = calloc(1, sizeof *l);
    int *last = malloc((size_t)(nv ? nv : 1) * sizeof *last);
    if (l) l->kill_at = calloc((size_t)nn + 2, sizeof *l->kill_at);
    if (l) l->kill = malloc((size_t)(nv ? nv : 1) * sizeof *l->kill);
    if (!l || !last || !l->kill_at || !l->kill) {
        free(last);
        exec_live_free(l);
        return oom();
    }
    l->g = g;
    for (int v = 0; v < nv; v++) last[v] = -1;
    for (int i = 0; i < nn; i++) {
        const graph_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0) last[n->in[k]] = i;
        for (int a = 0; a < n->op.n_attrs; a++) {
            const op_attr *at = &n->op.attrs[a];
            if (at->type == ATTR_GRAPH && at->g) mark_captures(at->g, i, last);
            if (at->type == ATTR_GRAPHS)
                for (int j = 0; j < at->n; j++)
                    if (at->graphs[j]) mark_captures(at->graphs[j], i, last);
        }
    }
    for (int i = 0; i < g->n_outputs; i++) last[g->outputs[i]] = INT_MAX;
    /* only node outputs are ever freed; one nobody reads dies at once */
    for (int v = 0; v < nv; v++) {
        int p = g->values[v].producer;
        if (p < 0 || last[v] == INT_MAX)
            last[v] = -1;
        else if (last[v] < p)
            last[v] = p;
    }
    for (int v = 0; v < nv; v++)
        if (last[v] >= 0) l->kill_at[last[v] + 1]++;
    for (int i = 0; i < nn; i++) l->kill_at[i + 1] += l->kill_at[i];
    int *fill = calloc((size_t)nn + 1, sizeof *fill);
    if (!fill) {
        free(last);
        exec_live_free(l);
        return oom();
    }
    for (int v = 0; v < nv; v++)
        if (last[v] >= 0) l->kill[l->kill_at[last[v]] + fill[last[v]]++] = v;
    free(fill);
    free(last);
    *out = l;
    return NULL;
}

bool exec_live_dies_at(const exec_live *l, int node, int v)
{
    for (int k = l->kill_at[node]; k < l->kill_at[node + 1]; k++)
        if (l->kill[k] == v) return true;
    return false;
}

void exec_live_free(exec_live *l)
{
    if (!l) return;
    free(l->kill_at);
    free(l->kill);
    free(l);
}

/* ---- plans --------------------------------------------------------------- */

struct mem_plan {
    int64_t *key;
    int key_n;
    uint32_t *ev; /* events, see the top of the file */
    int n_ev;
    size_t *size;         /* per take, rounded */
    size_t *off;          /* per take, from the region's start */
    unsigned char *given; /* per take: returned in the current replay */
    int n_req;
    unsigned char *reuse; /* per in-place decision: 1 if it reused an input */
    int n_reuse;
    size_t total;
    bool unstable; /* replays kept diverging: run this signature on the heap */
    bool rerecord; /* a replay diverged: record the next run again */
    int replans;   /* how often that happened */
};

/* A plan that diverges is recorded again this many times (kernels may
 * settle on a different plan on a shape's second run, as oneDNN's Winograd
 * convolutions do) before the signature is left on the heap for good. */
#define MEM_REPLANS 1

static void plan_drop_arrays(mem_plan *p)
{
    free(p->ev);
    free(p->size);
    free(p->off);
    free(p->given);
    free(p->reuse);
    p->ev = NULL;
    p->size = p->off = NULL;
    p->given = p->reuse = NULL;
    p->n_ev = p->n_req = p->n_reuse = 0;
}

static void plan_free(mem_plan *p)
{
    if (!p) return;
    plan_drop_arrays(p);
    free(p->key);
    free(p);
}

typedef struct pack_item {
    size_t size;
    int start, end; /* event interval */
    int id;
} pack_item;

static int by_size_desc(const void *a, const void *b)
{
    const pack_item *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return (x->start > y->start) - (x->start < y->start);
}

typedef struct placed {
    size_t off, size;
} placed;

static int by_off(const void *a, const void *b)
{
    const placed *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

/* Offsets for the recorded takes: biggest first, each in the smallest gap
 * left by the already placed takes whose lifetimes overlap its own (or
 * above them all). */
static tern_status *plan_pack(const uint32_t *ev, int n_ev, const size_t *size, int n_req,
                              size_t *off, size_t *total)
{
    pack_item *it = malloc((size_t)(n_req ? n_req : 1) * sizeof *it);
    placed *tmp = malloc((size_t)(n_req ? n_req : 1) * sizeof *tmp);
    if (!it || !tmp) {
        free(it);
        free(tmp);
        return oom();
    }
    for (int i = 0; i < n_req; i++) it[i] = (pack_item){size[i], n_ev, n_ev, i};
    for (int e = 0; e < n_ev; e++) {
        uint32_t id = ev[e] >> 1;
        if (ev[e] & 1)
            it[id].end = e;
        else
            it[id].start = e;
    }
    qsort(it, (size_t)n_req, sizeof *it, by_size_desc);
    *total = 0;
    for (int i = 0; i < n_req; i++) {
        int nt = 0;
        for (int j = 0; j < i; j++)
            if (it[j].start < it[i].end && it[i].start < it[j].end)
                tmp[nt++] = (placed){off[it[j].id], it[j].size};
        qsort(tmp, (size_t)nt, sizeof *tmp, by_off);
        size_t cur = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
        for (int j = 0; j < nt; j++) {
            if (tmp[j].off > cur) {
                size_t gap = tmp[j].off - cur;
                if (gap >= it[i].size && gap < best_gap) best = cur, best_gap = gap;
            }
            if (tmp[j].off + tmp[j].size > cur) cur = tmp[j].off + tmp[j].size;
        }
        if (best == SIZE_MAX) best = cur;
        off[it[i].id] = best;
        if (best + it[i].size > *total) *total = best + it[i].size;
    }
    free(it);
    free(tmp);
    return NULL;
}

/* Turns the recording of the run that just ended into a plan. */
static tern_status *plan_build(exec_mem *m)
{
    mem_plan *p = calloc(1, sizeof *p);
    if (!p) return oom();
    p->key_n = m->key_n;
    p->n_ev = m->n_rec_ev;
    p->n_req = m->n_rec_size;
    p->key = malloc((size_t)(m->key_n ? m->key_n : 1) * sizeof *p->key);
    p->ev = malloc((size_t)(p->n_ev ? p->n_ev : 1) * sizeof *p->ev);
    p->size = malloc((size_t)(p->n_req ? p->n_req : 1) * sizeof *p->size);
    p->off = malloc((size_t)(p->n_req ? p->n_req : 1) * sizeof *p->off);
    p->given = malloc((size_t)(p->n_req ? p->n_req : 1));
    p->n_reuse = m->n_rec_reuse;
    p->reuse = malloc((size_t)(p->n_reuse ? p->n_reuse : 1));
    mem_plan **plans = realloc(m->plans, (size_t)(m->n_plans + 1) * sizeof *plans);
    if (plans) m->plans = plans;
    if (!p->key || !p->ev || !p->size || !p->off || !p->given || !p->reuse || !plans) {
        plan_free(p);
        return oom();
    }
    /* (a graph with no input or no node records nothing: the sources may
     * be NULL, which memcpy does not take even for 0 bytes) */
    if (m->key_n) memcpy(p->key, m->key, (size_t)m->key_n * sizeof *p->key);
    if (p->n_ev) memcpy(p->ev, m->rec_ev, (size_t)p->n_ev * sizeof *p->ev);
    if (p->n_req) memcpy(p->size, m->rec_size, (size_t)p->n_req * sizeof *p->size);
    if (p->n_reuse) memcpy(p->reuse, m->rec_reuse, (size_t)p->n_reuse);
    tern_status *st = plan_pack(p->ev, p->n_ev, p->size, p->n_req, p->off, &p->total);
    if (st) {
        plan_free(p);
        return st;
    }
    m->fit_pending = true;
    for (int i = 0; i < m->n_plans; i++)
        if (m->plans[i]->key_n == p->key_n &&
            !memcmp(m->plans[i]->key, p->key, (size_t)p->key_n * sizeof *p->key)) {
            p->replans = m->plans[i]->replans; /* a re-recording replaces its plan */
            plan_free(m->plans[i]);
            m->plans[i] = p;
            return NULL;
        }
    m->plans[m->n_plans++] = p;
    return NULL;
}

static mem_plan *plan_find(const exec_mem *m, const int64_t *key, int n)
{
    for (int i = 0; i < m->n_plans; i++) {
        mem_plan *p = m->plans[i];
        if (p->key_n == n && !memcmp(p->key, key, (size_t)n * sizeof *key)) return p;
    }
    return NULL;
}

/* Appends to a growable array; false if out of memory. */
static bool grow(void **v, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int nc = *cap ? 2 * *cap : 256;
    while (nc < need) nc *= 2;
    void *nv = realloc(*v, (size_t)nc * elem);
    if (!nv) return false;
    *v = nv;
    *cap = nc;
    return true;
}

/* A recording that cannot grow is abandoned: the run goes on unplanned. */
static void record(exec_mem *m, uint32_t ev, size_t size)
{
    if (!grow((void **)&m->rec_ev, &m->cap_rec_ev, m->n_rec_ev + 1, sizeof *m->rec_ev)) {
        m->mode = MODE_DYNAMIC;
        return;
    }
    m->rec_ev[m->n_rec_ev++] = ev;
    if (ev & 1) return;
    if (!grow((void **)&m->rec_size, &m->cap_rec_size, m->n_rec_size + 1, sizeof *m->rec_size)) {
        m->mode = MODE_DYNAMIC;
        return;
    }
    m->rec_size[m->n_rec_size++] = size;
}

/* ---- runs ---------------------------------------------------------------- */

/* Moves the replay past recorded gives that already happened. */
static void skip_given(exec_mem *m)
{
    const mem_plan *pl = m->cur;
    while (m->ev < pl->n_ev && (pl->ev[m->ev] & 1) && pl->given[pl->ev[m->ev] >> 1]) m->ev++;
}

void exec_mem_init(exec_mem *m)
{
    memset(m, 0, sizeof *m);
    arena_heap_init(&m->heap);
    m->policy = MEM_PLAN;
    const char *e = getenv("TERN_MEMPLAN");
    if (e && !strcmp(e, "off")) m->policy = MEM_OFF;
    if (e && !strcmp(e, "dynamic")) m->policy = MEM_DYNAMIC;
    e = getenv("TERN_ARENA_STATS");
    m->stats = e && *e && strcmp(e, "0") != 0;
    e = getenv("TERN_INPLACE");
    m->inplace = !e || (strcmp(e, "0") != 0 && strcmp(e, "off") != 0);
}

void exec_mem_free(exec_mem *m)
{
    arena_heap_free(&m->heap);
    for (int i = 0; i < m->n_plans; i++) plan_free(m->plans[i]);
    free(m->plans);
    free(m->blocks);
    free(m->rec_ev);
    free(m->rec_size);
    free(m->rec_reuse);
    free(m->key);
    memset(m, 0, sizeof *m);
}

tern_status *exec_mem_begin(exec_mem *m, const int64_t *key, int n)
{
    m->n_blocks = m->node_first = 0;
    m->next_id = 0;
    m->live_bytes = m->peak_bytes = 0;
    m->n_reuse = m->n_reused = 0;
    m->cur = NULL;
    m->base = NULL;
    m->ev = 0;
    m->diverged = false;
    m->mode = m->policy == MEM_OFF ? MODE_OFF : MODE_DYNAMIC;
    if (m->policy != MEM_PLAN) {
        arena_heap_reset(&m->heap, 0, false);
        return NULL;
    }
    mem_plan *p = plan_find(m, key, n);
    if (p && !p->unstable && !p->rerecord) {
        /* after a new plan, shrink the heap to the biggest plan: the
         * unplanned first run may have left it much larger */
        size_t need = p->total;
        bool fit = m->fit_pending;
        for (int i = 0; fit && i < m->n_plans; i++)
            if (!m->plans[i]->unstable && m->plans[i]->total > need) need = m->plans[i]->total;
        m->fit_pending = false;
        arena_heap_reset(&m->heap, need, fit);
        m->base = arena_heap_take(&m->heap, p->total);
        if (!m->base) return oom();
        arena_poison(m->base, p->total);
        memset(p->given, 0, (size_t)p->n_req);
        m->cur = p;
        m->mode = MODE_REPLAY;
        return NULL;
    }
    arena_heap_reset(&m->heap, 0, false);
    if (p ? !p->rerecord : m->n_plans >= MEM_MAX_PLANS) return NULL;
    if (!grow((void **)&m->key, &m->cap_key, n, sizeof *m->key)) return NULL;
    if (n) memcpy(m->key, key, (size_t)n * sizeof *key);
    m->key_n = n;
    m->n_rec_ev = m->n_rec_size = m->n_rec_reuse = 0;
    m->mode = MODE_RECORD;
    return NULL;
}

void exec_mem_end(exec_mem *m, bool ok)
{
    if (m->mode == MODE_RECORD && ok) {
        tern_status *st = plan_build(m);
        tern_status_free(st); /* no plan: the signature stays unplanned */
    }
    if (m->mode == MODE_REPLAY && !m->diverged) skip_given(m);
    if (m->mode == MODE_REPLAY && (m->diverged || (ok && m->ev != m->cur->n_ev))) {
        if (m->cur->replans < MEM_REPLANS) {
            m->cur->rerecord = true;
            m->cur->replans++;
        } else {
            m->cur->unstable = true;
        }
        plan_drop_arrays(m->cur);
    }
}

void exec_mem_stats(const exec_mem *m, mem_stats *st)
{
    static const char *names[] = {"off", "dynamic", "record", "replay"};
    st->mode = m->mode == MODE_REPLAY && m->diverged ? "replay-diverged" : names[m->mode];
    st->peak = m->peak_bytes;
    st->end_bytes = m->live_bytes;
    st->heap_reserved = m->heap.reserved;
    st->plan_bytes = m->mode == MODE_REPLAY ? m->cur->total : 0;
    st->n_plans = m->n_plans;
    st->inplace = m->n_reused;
}

void *exec_mem_take(exec_mem *m, size_t n)
{
    if (!n) n = 1;
    size_t r = round_up(n);
    m->live_bytes += r;
    if (m->live_bytes > m->peak_bytes) m->peak_bytes = m->live_bytes;
    if (m->mode == MODE_OFF) return arena_heap_take(&m->heap, n);

    if (!grow((void **)&m->blocks, &m->cap_blocks, m->n_blocks + 1, sizeof *m->blocks)) return NULL;
    uint32_t id = m->next_id++;
    unsigned char *p = NULL;
    bool planned = false;
    if (m->mode == MODE_REPLAY && !m->diverged) {
        const mem_plan *pl = m->cur;
        skip_given(m);
        if (m->ev < pl->n_ev && pl->ev[m->ev] == id << 1 && pl->size[id] == r) {
            p = m->base + pl->off[id];
            arena_unpoison(p, r);
            planned = true;
            m->ev++;
        } else {
            m->diverged = true;
        }
    }
    if (!p) {
        p = arena_heap_take(&m->heap, n);
        if (!p) return NULL;
        if (m->mode == MODE_RECORD) record(m, id << 1, r);
    }
    m->blocks[m->n_blocks++] = (mem_block){p, n, id, 0, planned};
    return p;
}

/* Returns block i to where it came from and drops it from the table. */
static void give(exec_mem *m, int i)
{
    mem_block b = m->blocks[i];
    m->blocks[i] = m->blocks[--m->n_blocks];
    m->live_bytes -= round_up(b.n);
    uint32_t ev = b.id << 1 | 1;
    if (m->mode == MODE_RECORD) record(m, ev, 0);
    if (m->mode == MODE_REPLAY && !m->diverged && b.id != UNTRACKED) {
        m->cur->given[b.id] = 1; /* on time or early; the next take checks */
        skip_given(m);
    }
    if (b.planned)
        arena_poison(b.p, round_up(b.n));
    else
        arena_heap_give(&m->heap, b.p);
}

/* The block that holds the byte at p, or -1 (newest first: a value is
 * most often read soon after it was made). */
static int find(const exec_mem *m, const void *p)
{
    const unsigned char *q = p;
    for (int i = m->n_blocks - 1; i >= 0; i--)
        if (q >= m->blocks[i].p && q < m->blocks[i].p + m->blocks[i].n) return i;
    return -1;
}

static void ref(exec_mem *m, const void *p, int d)
{
    int i = p ? find(m, p) : -1;
    if (i < 0) return;
    m->blocks[i].refs += d;
    if (d < 0 && m->blocks[i].refs == 0) give(m, i);
}

/* Every pointer of t to memory it needs: a zero-size tensor needs none
 * (its data pointer may sit at the end of a block). Pointers are read from
 * a block before that block is let go, as dropping may return it. */
static void ref_dense(exec_mem *m, const tern_tensor *t, int d)
{
    if (t->kind != TENSOR_DENSE || !t->data || tensor_nbytes(t) == 0) return;
    if (t->dtype == TERN_STRING)
        for (int64_t i = 0; i < t->numel; i++) ref(m, ((char *const *)t->data)[i], d);
    ref(m, t->data, d);
}

static void ref_value(exec_mem *m, const tern_tensor *t, int d)
{
    if (!t || m->mode == MODE_OFF) return;
    if (t->kind != TENSOR_SEQUENCE) {
        ref_dense(m, t, d);
        return;
    }
    if (!t->data || t->numel <= 0) return;
    tern_tensor *const *el = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        if (!el[i]) continue;
        ref_dense(m, el[i], d);
        ref(m, el[i], d);
    }
    ref(m, el, d);
}

void exec_mem_hold(exec_mem *m, const tern_tensor *t)
{
    ref_value(m, t, +1);
}

void exec_mem_drop(exec_mem *m, const tern_tensor *t)
{
    ref_value(m, t, -1);
}

/* May the current node write n bytes over the input at p (see plan.h)? */
static bool can_reuse(const exec_mem *m, const void *p, size_t n, bool dying)
{
    int i = p && n ? find(m, p) : -1;
    if (i < 0) return false;
    const mem_block *b = &m->blocks[i];
    if (i >= m->node_first) /* taken by this node: a copy made for it alone */
        return b->refs == 0 && (const unsigned char *)p + n <= b->p + b->n;
    return dying && b->refs == 1 && b->p == p && b->n == n;
}

void *exec_mem_inplace(exec_mem *m, const void *const *in, const bool *dying, int n_in, size_t n)
{
    if (m->mode == MODE_OFF || !m->inplace) return NULL;
    int d = m->n_reuse++;
    void *p = NULL;
    for (int k = 0; k < n_in && !p; k++)
        if (can_reuse(m, in[k], n, dying[k])) p = (void *)in[k];
    if (m->mode == MODE_RECORD) {
        if (!grow((void **)&m->rec_reuse, &m->cap_rec_reuse, m->n_rec_reuse + 1, 1))
            m->mode = MODE_DYNAMIC;
        else
            m->rec_reuse[m->n_rec_reuse++] = p != NULL;
    }
    if (m->mode == MODE_REPLAY && !m->diverged && (d >= m->cur->n_reuse || !m->cur->reuse[d]))
        return NULL; /* the recording took */
    if (p || m->mode != MODE_REPLAY || m->diverged) {
        m->n_reused += p != NULL;
        return p;
    }
    /* the recording reused, this run cannot: a block outside the plan */
    if (!grow((void **)&m->blocks, &m->cap_blocks, m->n_blocks + 1, sizeof *m->blocks)) return NULL;
    if (!n) n = 1;
    p = arena_heap_take(&m->heap, n);
    if (!p) return NULL;
    m->live_bytes += round_up(n);
    if (m->live_bytes > m->peak_bytes) m->peak_bytes = m->live_bytes;
    m->blocks[m->n_blocks++] = (mem_block){p, n, UNTRACKED, 0, false};
    return p;
}

void exec_mem_node_begin(exec_mem *m)
{
    m->node_first = m->n_blocks;
}

void exec_mem_node_done(exec_mem *m)
{
    /* gives swap the last block in, which is also one of this node's */
    for (int i = m->n_blocks - 1; i >= m->node_first; i--)
        if (m->blocks[i].refs == 0) give(m, i);
}
