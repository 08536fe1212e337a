/*
 * Operator family: text (StringNormalizer, TfIdfVectorizer).
 *
 * StringNormalizer drops stopwords (compared case-insensitively unless
 * is_case_sensitive) and then changes case. Case mapping is done on UTF-8
 * code points for the scripts whose cases map one to one within the same
 * encoded length: ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
 * Other characters (and malformed bytes) pass through unchanged, so a
 * string's byte length never changes; no locale is consulted.
 *
 * TfIdfVectorizer counts the n-grams of each row that appear in the pool.
 * An n-gram with skip distance d is x[i], x[i+d], ..., x[i+(n-1)d], for
 * d = 1 .. max_skip_count + 1; unigrams are counted once, not once per d
 * (as ONNX Runtime does). The pool's n-grams of each length are sorted once
 * per call so each candidate is a binary search. Output column j is the
 * count of the n-gram whose ngram_indexes entry is j, then weighted by mode:
 * TF = count, IDF = (count > 0) * weight, TFIDF = count * weight, with
 * weights indexed by output column (as ONNX Runtime does) and 1 by default.
 */
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

/* ---- StringNormalizer --------------------------------------------------- */

/* The other case of code point u, or u. */
static uint32_t case_map(uint32_t u, bool upper)
{
    if (u < 0x80) {
        if (upper && u >= 'a' && u <= 'z') return u - 32;
        if (!upper && u >= 'A' && u <= 'Z') return u + 32;
        return u;
    }
    if (u >= 0xC0 && u <= 0xFE && u != 0xD7 && u != 0xF7 && u != 0xDF) { /* Latin-1 */
        bool is_upper = u < 0xE0;
        return upper == is_upper ? u : upper ? u - 0x20 : u + 0x20;
    }
    if (u >= 0x100 && u <= 0x17F) { /* Latin Extended-A: adjacent pairs */
        bool even_upper = (u <= 0x137 && u != 0x130 && u != 0x131) || (u >= 0x14A && u <= 0x177);
        bool odd_upper = (u >= 0x139 && u <= 0x148) || (u >= 0x179 && u <= 0x17E);
        if (even_upper) return upper ? (u & ~1u) : (u | 1u);
        if (odd_upper) return upper ? (u % 2 ? u : u - 1) : (u % 2 ? u + 1 : u);
        return u;
    }
    if (u >= 0x391 && u <= 0x3C9 && u != 0x3A2 && (u <= 0x3A9 || u >= 0x3B1)) { /* Greek */
        if (u == 0x3C2) return upper ? 0x3A3 : u;                               /* final sigma */
        bool is_upper = u <= 0x3A9;
        return upper == is_upper ? u : upper ? u - 0x20 : u + 0x20;
    }
    if (u >= 0x400 && u <= 0x45F) { /* Cyrillic */
        if (u <= 0x40F) return upper ? u : u + 0x50;
        if (u <= 0x42F) return upper ? u : u + 0x20;
        if (u <= 0x44F) return upper ? u - 0x20 : u;
        return upper ? u - 0x50 : u;
    }
    return u;
}

/* Maps the case of NUL-terminated UTF-8 s in place. */
static void case_change(char *s, bool upper)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        if (*p < 0x80) {
            *p = (unsigned char)case_map(*p, upper);
            p++;
        } else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
            uint32_t u = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            uint32_t m = case_map(u, upper);
            if (m >= 0x80 && m < 0x800) { /* same length: re-encode */
                p[0] = (unsigned char)(0xC0 | (m >> 6));
                p[1] = (unsigned char)(0x80 | (m & 0x3F));
            }
            p += 2;
        } else {
            p++; /* longer sequences and stray bytes pass through */
        }
    }
}

/* strcmp after lower-casing both sides (ASCII and the 2-byte scripts). */
static bool equal_nocase(const char *a, const char *b, char *buf_a, char *buf_b)
{
    strcpy(buf_a, a);
    strcpy(buf_b, b);
    case_change(buf_a, false);
    case_change(buf_b, false);
    return strcmp(buf_a, buf_b) == 0;
}

static tern_status *op_string_normalizer(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || x->dtype != TERN_STRING)
        return op_error(c, "input must be a string tensor");
    if (!(x->rank == 1 || (x->rank == 2 && x->dims[0] == 1)))
        return op_error(c, "input must have shape [C] or [1, C]");
    const char *action = op_attr_str(c, "case_change_action", "NONE");
    int change = strcmp(action, "LOWER") == 0 ? 1 : strcmp(action, "UPPER") == 0 ? 2 : 0;
    if (!change && strcmp(action, "NONE") != 0)
        return op_error(c, "unknown case_change_action '%s'", action);
    bool sensitive = op_attr_int(c, "is_case_sensitive", 0) != 0;
    const op_attr *sw = op_attr_get(c, "stopwords");
    int n_stop = sw && sw->type == ATTR_STRINGS ? sw->n : 0;

    const char *const *in = x->data;
    size_t longest = 0;
    for (int i = 0; i < n_stop; i++)
        if (strlen(sw->strings[i]) > longest) longest = strlen(sw->strings[i]);
    for (int64_t i = 0; i < x->numel; i++)
        if (in[i] && strlen(in[i]) > longest) longest = strlen(in[i]);
    char *buf_a, *buf_b;
    bool *keep;
    TERN_TRY(op_scratch(c, 2 * (longest + 1), (void **)&buf_a));
    buf_b = buf_a + longest + 1;
    TERN_TRY(op_scratch(c, (size_t)(x->numel ? x->numel : 1), (void **)&keep));

    int64_t n_keep = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        const char *s = in[i] ? in[i] : "";
        keep[i] = true;
        for (int k = 0; k < n_stop && keep[i]; k++)
            keep[i] = sensitive ? strcmp(s, sw->strings[k]) != 0
                                : !equal_nocase(s, sw->strings[k], buf_a, buf_b);
        n_keep += keep[i];
    }
    int64_t dims[2] = {1, n_keep ? n_keep : 1};
    tern_tensor *y;
    TERN_TRY(op_out(c, 0, TERN_STRING, x->rank, x->rank == 2 ? dims : dims + 1, &y));
    char **out = y->data;
    if (n_keep == 0) return op_strdup(c, "", &out[0]);
    for (int64_t i = 0, o = 0; i < x->numel; i++) {
        if (!keep[i]) continue;
        TERN_TRY(op_strdup(c, in[i] ? in[i] : "", &out[o]));
        if (change) case_change(out[o], change == 2);
        o++;
    }
    return NULL;
}

/* ---- TfIdfVectorizer ----------------------------------------------------- */

/* The pool as one table per n-gram length n = 1..L: count n-grams starting
 * at token offset start, order[] their ordinals sorted by tokens. */
typedef struct tf_level {
    int64_t start, count, first_ordinal;
    int64_t *order;
} tf_level;

typedef struct tf_pool {
    bool strings;
    const int64_t *ints;
    const char *const *strs;
    int L;
    tf_level *lv;
} tf_pool;

/* Compares pool n-gram k of length n with pool n-gram j. */
static int tf_cmp_pool(const tf_pool *p, const tf_level *lv, int n, int64_t k, int64_t j)
{
    for (int t = 0; t < n; t++) {
        int64_t a = lv->start + k * n + t, b = lv->start + j * n + t;
        int r = p->strings ? strcmp(p->strs[a], p->strs[b])
                           : (p->ints[a] > p->ints[b]) - (p->ints[a] < p->ints[b]);
        if (r) return r;
    }
    return 0;
}

/* Heap sort of lv->order (no qsort_r in C17). */
static void tf_sift(const tf_pool *p, const tf_level *lv, int n, int64_t root, int64_t end)
{
    int64_t *o = lv->order;
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= end) return;
        if (child + 1 < end && tf_cmp_pool(p, lv, n, o[child], o[child + 1]) < 0) child++;
        if (tf_cmp_pool(p, lv, n, o[root], o[child]) >= 0) return;
        int64_t t = o[root];
        o[root] = o[child], o[child] = t;
        root = child;
    }
}

static void tf_sort(const tf_pool *p, const tf_level *lv, int n)
{
    int64_t *o = lv->order, cnt = lv->count;
    for (int64_t i = 0; i < cnt; i++) o[i] = i;
    for (int64_t i = cnt / 2 - 1; i >= 0; i--) tf_sift(p, lv, n, i, cnt);
    for (int64_t e = cnt - 1; e > 0; e--) {
        int64_t t = o[0];
        o[0] = o[e], o[e] = t;
        tf_sift(p, lv, n, 0, e);
    }
}

/* Compares the row's n-gram x[i], x[i+d], ... with pool n-gram k. */
static int tf_cmp_row(const tf_pool *p, const tf_level *lv, int n, const tern_tensor *x, int64_t i,
                      int64_t d, int64_t k)
{
    for (int t = 0; t < n; t++) {
        int64_t a = i + t * d, b = lv->start + k * n + t;
        int r;
        if (p->strings) {
            const char *s = ((const char *const *)x->data)[a];
            r = strcmp(s ? s : "", p->strs[b]);
        } else {
            int64_t v = op_get_i64(x, a);
            r = (v > p->ints[b]) - (v < p->ints[b]);
        }
        if (r) return r;
    }
    return 0;
}

/* Ordinal of the row's n-gram in the pool, or -1. */
static int64_t tf_find(const tf_pool *p, int n, const tern_tensor *x, int64_t i, int64_t d)
{
    const tf_level *lv = &p->lv[n - 1];
    int64_t lo = 0, hi = lv->count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = tf_cmp_row(p, lv, n, x, i, d, lv->order[mid]);
        if (r == 0) return lv->first_ordinal + lv->order[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static tern_status *op_tfidf(op_ctx *c)
{
    TERN_TRY(op_need_input(c, 0));
    const tern_tensor *x = c->in[0];
    if (x->kind != TENSOR_DENSE || (x->rank != 1 && x->rank != 2))
        return op_error(c, "input must be a 1-D or 2-D tensor");
    const int64_t min_n = op_attr_int(c, "min_gram_length", 0);
    const int64_t max_n = op_attr_int(c, "max_gram_length", 0);
    const int64_t max_skip = op_attr_int(c, "max_skip_count", 0);
    const char *mode_s = op_attr_str(c, "mode", "");
    int mode = strcmp(mode_s, "TF") == 0      ? 0
               : strcmp(mode_s, "IDF") == 0   ? 1
               : strcmp(mode_s, "TFIDF") == 0 ? 2
                                              : -1;
    if (mode < 0) return op_error(c, "unknown mode '%s'", mode_s);
    if (min_n < 1 || max_n < min_n || max_skip < 0)
        return op_error(c, "bad min_gram_length / max_gram_length / max_skip_count");

    tf_pool p = {0};
    const int64_t *counts, *indexes;
    const float *weights = NULL;
    int L = op_attr_ints(c, "ngram_counts", &counts);
    int n_idx = op_attr_ints(c, "ngram_indexes", &indexes);
    int n_w = op_attr_floats(c, "weights", &weights);
    int64_t pool_len = op_attr_ints(c, "pool_int64s", &p.ints);
    const op_attr *ps = op_attr_get(c, "pool_strings");
    if (ps && ps->type == ATTR_STRINGS) {
        p.strings = true;
        p.strs = ps->strings;
        pool_len = ps->n;
    }
    if (L < 0 || n_idx < 0 || pool_len < 0)
        return op_error(c, "ngram_counts, ngram_indexes and a pool are required");
    if (p.strings != (x->dtype == TERN_STRING) ||
        (!p.strings && x->dtype != TERN_INT32 && x->dtype != TERN_INT64))
        return op_error(c, "input type %s does not match the pool", tern_dtype_name(x->dtype));

    p.L = L;
    TERN_TRY(op_scratch(c, (size_t)(L ? L : 1) * sizeof(tf_level), (void **)&p.lv));
    int64_t ordinal = 0;
    for (int k = 0; k < L; k++) {
        int64_t s = counts[k], e = k + 1 < L ? counts[k + 1] : pool_len;
        if (s < 0 || e < s || e > pool_len || (e - s) % (k + 1))
            return op_error(c, "ngram_counts[%d] does not delimit whole %d-grams", k, k + 1);
        tf_level *lv = &p.lv[k];
        lv->start = s, lv->count = (e - s) / (k + 1), lv->first_ordinal = ordinal;
        ordinal += lv->count;
        TERN_TRY(op_scratch(c, (size_t)(lv->count ? lv->count : 1) * sizeof(int64_t),
                            (void **)&lv->order));
        tf_sort(&p, lv, k + 1);
    }
    if (ordinal != n_idx)
        return op_error(c, "ngram_indexes has %d entries for %lld n-grams", n_idx,
                        (long long)ordinal);
    int64_t width = 0;
    for (int i = 0; i < n_idx; i++) {
        if (indexes[i] < 0 || indexes[i] >= ((int64_t)1 << 30))
            return op_error(c, "ngram_indexes[%d] = %lld is invalid", i, (long long)indexes[i]);
        if (indexes[i] + 1 > width) width = indexes[i] + 1;
    }
    if (n_w >= 0 && n_w < width)
        return op_error(c, "weights has %d entries for %lld outputs", n_w, (long long)width);

    const int64_t rows = x->rank == 2 ? x->dims[0] : 1,
                  len = x->rank == 2 ? x->dims[1] : x->dims[0];
    tern_tensor *y;
    int64_t ydims[2] = {rows, width};
    TERN_TRY(op_out(c, 0, TERN_FLOAT, x->rank, x->rank == 2 ? ydims : ydims + 1, &y));
    float *out = y->data;
    memset(out, 0, (size_t)y->numel * sizeof(float));
    const int64_t top_n = max_n < L ? max_n : L;
    for (int64_t r = 0; r < rows; r++) {
        float *f = out + r * width;
        for (int64_t d = 1; d <= max_skip + 1; d++) {
            int64_t lo_n = d > 1 && min_n == 1 ? 2 : min_n; /* unigrams once */
            for (int64_t i = 0; i < len; i++)
                for (int64_t n = lo_n; n <= top_n && i + (n - 1) * d < len; n++) {
                    int64_t k = tf_find(&p, (int)n, x, r * len + i, d);
                    if (k >= 0) f[indexes[k]] += 1;
                }
        }
        for (int64_t j = 0; j < width; j++) {
            float w = weights && n_w > 0 ? weights[j] : 1.0f;
            f[j] = mode == 0 ? f[j] : mode == 1 ? (f[j] > 0 ? w : 0) : f[j] * w;
        }
    }
    return NULL;
}

const op_def ops_text[] = {
    {"", "StringNormalizer", 10, 17, op_string_normalizer},
    {"", "TfIdfVectorizer", 9, 17, op_tfidf},
    {0},
};
