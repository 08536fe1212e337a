/*
 * Einsum by the generic loop: every index of the equation (each letter, and
 * each broadcast dimension "..." stands for) gets an id and a size; each
 * input gets a stride per id (the sum of its axes' strides for a letter it
 * repeats, which walks the diagonal; 0 for a broadcast dimension of size 1).
 * The output is then the sum, over all values of the ids not in the output,
 * of the product of the inputs' elements. Inputs are widened to double (float
 * types) or int64 (integer types, wrapping) once, so the loop reads plain
 * arrays.
 *
 * Implicit mode ("ij,jk") outputs the broadcast dimensions, then the letters
 * used exactly once, in alphabetical (ASCII) order, as numpy does.
 */
#include <string.h>

#include "ops/linalg_ops.h"

#define N_LETTERS 52
#define MAX_IDS (TERN_MAX_RANK + N_LETTERS)
#define ELLIPSIS (-1)

static int letter_id(char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return 26 + (ch - 'a');
    return -2;
}

static char id_char(int id)
{
    return (char)(id < 26 ? 'A' + id : 'a' + (id - 26));
}

/* Parses one term into labels (letter ids or ELLIPSIS); returns the count or
 * -1 on a bad character or a second "...". */
static int parse_term(const char *s, size_t len, int *labels, int max)
{
    int n = 0;
    bool ell = false;
    for (size_t i = 0; i < len;) {
        if (s[i] == '.') {
            if (ell || i + 3 > len || s[i + 1] != '.' || s[i + 2] != '.') return -1;
            ell = true;
            if (n == max) return -1;
            labels[n++] = ELLIPSIS;
            i += 3;
            continue;
        }
        int id = letter_id(s[i]);
        if (id < 0 || n == max) return -1;
        labels[n++] = id;
        i++;
    }
    return n;
}

typedef struct einsum_term {
    int n;                         /* labels */
    int labels[TERN_MAX_RANK + 1]; /* letter ids, ELLIPSIS */
} einsum_term;

tern_status *linalg_einsum(op_ctx *c)
{
    const char *eq_attr = op_attr_str(c, "equation", NULL);
    if (!eq_attr) return op_error(c, "attribute 'equation' is missing");
    if (c->n_in < 1) return op_error(c, "needs at least one input");
    size_t eqlen = strlen(eq_attr);
    char *eq;
    TERN_TRY(op_scratch(c, eqlen + 1, (void **)&eq));
    size_t len = 0;
    for (size_t i = 0; i < eqlen; i++)
        if (eq_attr[i] != ' ') eq[len++] = eq_attr[i];
    eq[len] = 0;

    int nin = c->n_in;
    tern_dtype dt = TERN_UNDEFINED;
    for (int i = 0; i < nin; i++) {
        TERN_TRY(op_need_input(c, i));
        const tern_tensor *t = c->in[i];
        if (t->kind != TENSOR_DENSE) return op_error(c, "input %d is not a tensor", i);
        if (i == 0) dt = t->dtype;
        if (t->dtype != dt) return op_error(c, "inputs have different types");
    }
    if (!dtype_is_float(dt) && !dtype_is_int(dt))
        return op_error(c, "unsupported type %s", tern_dtype_name(dt));

    einsum_term *terms, out;
    TERN_TRY(op_scratch(c, (size_t)nin * sizeof *terms, (void **)&terms));
    const char *arrow = strstr(eq, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - eq) : len;
    const char *p = eq;
    for (int i = 0; i < nin; i++) {
        const char *end = memchr(p, ',', lhs_len - (size_t)(p - eq));
        size_t tl = end ? (size_t)(end - p) : lhs_len - (size_t)(p - eq);
        if (i < nin - 1 && !end)
            return op_error(c, "equation '%s' has fewer terms than inputs", eq);
        if (i == nin - 1 && end) return op_error(c, "equation '%s' has more terms than inputs", eq);
        terms[i].n = parse_term(p, tl, terms[i].labels, TERN_MAX_RANK + 1);
        if (terms[i].n < 0) return op_error(c, "bad term %d in equation '%s'", i, eq);
        p += tl + 1;
    }

    /* Broadcast dims: ids 0..E-1, right-aligned; letter l: id E + l. */
    int ell_rank[64] = {0}, E = 0;
    if (nin > 64) return op_error(c, "too many inputs");
    for (int i = 0; i < nin; i++) {
        int letters = 0;
        bool ell = false;
        for (int j = 0; j < terms[i].n; j++) {
            if (terms[i].labels[j] == ELLIPSIS)
                ell = true;
            else
                letters++;
        }
        int r = c->in[i]->rank;
        if (ell ? r < letters : r != letters)
            return op_error(c, "input %d has rank %d, equation term has %d labels", i, r, letters);
        ell_rank[i] = ell ? r - letters : 0;
        if (ell_rank[i] > E) E = ell_rank[i];
    }
    int nids = E + N_LETTERS;
    int64_t size[MAX_IDS];
    int count[MAX_IDS] = {0};
    for (int id = 0; id < nids; id++) size[id] = -1;
    int64_t *stride;
    TERN_TRY(op_scratch(c, (size_t)nin * MAX_IDS * sizeof *stride, (void **)&stride));
    memset(stride, 0, (size_t)nin * MAX_IDS * sizeof *stride);
    for (int i = 0; i < nin; i++) {
        const tern_tensor *t = c->in[i];
        int64_t *st = stride + (size_t)i * MAX_IDS, s = 1, axis_stride[TERN_MAX_RANK];
        for (int a = t->rank - 1; a >= 0; a--) {
            axis_stride[a] = s;
            s *= t->dims[a];
        }
        for (int j = 0, axis = 0; j < terms[i].n; j++) {
            if (terms[i].labels[j] == ELLIPSIS) {
                for (int e = 0; e < ell_rank[i]; e++, axis++) {
                    int id = E - ell_rank[i] + e;
                    int64_t d = t->dims[axis];
                    if (size[id] != -1 && size[id] != 1 && d != 1 && d != size[id])
                        return op_error(c, "broadcast dimensions %lld and %lld differ",
                                        (long long)d, (long long)size[id]);
                    if (d != 1 || size[id] == -1) size[id] = d;
                    if (d != 1) st[id] += axis_stride[axis];
                    count[id]++;
                }
                continue;
            }
            int id = E + terms[i].labels[j];
            int64_t d = t->dims[axis];
            if (size[id] != -1 && size[id] != d)
                return op_error(c, "label '%c' has sizes %lld and %lld",
                                id_char(terms[i].labels[j]), (long long)size[id], (long long)d);
            size[id] = d;
            st[id] += axis_stride[axis];
            count[id]++;
            axis++;
        }
    }

    /* Output ids. */
    int out_ids[MAX_IDS], nout = 0;
    if (arrow) {
        out.n = parse_term(arrow + 2, strlen(arrow + 2), out.labels, TERN_MAX_RANK + 1);
        if (out.n < 0) return op_error(c, "bad output term in equation '%s'", eq);
        bool seen[MAX_IDS] = {false};
        for (int j = 0; j < out.n; j++) {
            if (out.labels[j] == ELLIPSIS) {
                for (int e = 0; e < E; e++) out_ids[nout++] = e;
                continue;
            }
            int id = E + out.labels[j];
            if (size[id] == -1 || seen[id])
                return op_error(c, "output label %d of '%s' is unknown or repeated", j, eq);
            seen[id] = true;
            out_ids[nout++] = id;
        }
    } else {
        for (int e = 0; e < E; e++) out_ids[nout++] = e;
        for (int l = 0; l < N_LETTERS; l++)
            if (count[E + l] == 1) out_ids[nout++] = E + l;
    }
    if (nout > TERN_MAX_RANK) return op_error(c, "output rank %d is too large", nout);
    bool in_out[MAX_IDS] = {false};
    int64_t odims[TERN_MAX_RANK];
    for (int j = 0; j < nout; j++) {
        in_out[out_ids[j]] = true;
        odims[j] = size[out_ids[j]] < 0 ? 1 : size[out_ids[j]];
    }
    int sum_ids[MAX_IDS], nsum = 0;
    int64_t sum_total = 1;
    for (int id = 0; id < nids; id++)
        if (!in_out[id] && size[id] >= 0) {
            sum_ids[nsum++] = id;
            sum_total *= size[id];
        }

    tern_tensor *y;
    TERN_TRY(op_out(c, 0, dt, nout, odims, &y));

    /* Widen the inputs once. */
    bool fl = dtype_is_float(dt);
    void **data;
    TERN_TRY(op_scratch(c, (size_t)nin * sizeof *data, (void **)&data));
    for (int i = 0; i < nin; i++) {
        const tern_tensor *t = c->in[i];
        TERN_TRY(op_scratch(c, (size_t)(t->numel ? t->numel : 1) * 8, &data[i]));
        for (int64_t e = 0; e < t->numel; e++) {
            if (fl)
                ((double *)data[i])[e] = op_get_f64(t, e);
            else
                ((int64_t *)data[i])[e] = op_get_i64(t, e);
        }
    }

    int64_t *base, *off;
    TERN_TRY(op_scratch(c, 2 * (size_t)nin * sizeof *base, (void **)&base));
    off = base + nin;
    int64_t oidx[TERN_MAX_RANK] = {0}, sidx[MAX_IDS];
    for (int i = 0; i < nin; i++) base[i] = 0;
    for (int64_t o = 0; o < y->numel; o++) {
        double facc = 0;
        uint64_t iacc = 0;
        for (int i = 0; i < nin; i++) off[i] = base[i];
        for (int s = 0; s < nsum; s++) sidx[s] = 0;
        for (int64_t s = 0; s < sum_total; s++) {
            if (fl) {
                double prod = 1;
                for (int i = 0; i < nin; i++) prod *= ((const double *)data[i])[off[i]];
                facc += prod;
            } else {
                uint64_t prod = 1;
                for (int i = 0; i < nin; i++) prod *= (uint64_t)((const int64_t *)data[i])[off[i]];
                iacc += prod;
            }
            for (int q = nsum - 1; q >= 0; q--) { /* odometer over the summed ids */
                int id = sum_ids[q];
                for (int i = 0; i < nin; i++) off[i] += stride[(size_t)i * MAX_IDS + id];
                if (++sidx[q] < size[id]) break;
                for (int i = 0; i < nin; i++) off[i] -= stride[(size_t)i * MAX_IDS + id] * sidx[q];
                sidx[q] = 0;
            }
        }
        if (fl)
            dtype_set_f64(dt, y->data, o, facc);
        else
            dtype_set_i64(dt, y->data, o, (int64_t)iacc);
        for (int q = nout - 1; q >= 0; q--) { /* odometer over the output ids */
            int id = out_ids[q];
            for (int i = 0; i < nin; i++) base[i] += stride[(size_t)i * MAX_IDS + id];
            if (++oidx[q] < odims[q]) break;
            for (int i = 0; i < nin; i++) base[i] -= stride[(size_t)i * MAX_IDS + id] * oidx[q];
            oidx[q] = 0;
        }
    }
    return NULL;
}
