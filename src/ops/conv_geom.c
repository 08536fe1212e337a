/* Sliding-window geometry from node attributes, see conv_geom.h. */
#include "ops/conv_geom.h"

#include <string.h>

bool conv_mul_ok(int64_t *acc, int64_t v)
{
    if (v < 0 || (v > 0 && *acc > INT64_MAX / v)) return false;
    *acc *= v;
    return true;
}

tern_status *conv_ints_attr(const op_ctx *c, const char *name, int n, int64_t dflt, int64_t lo,
                            int64_t *v)
{
    const int64_t *a;
    int na = op_attr_ints(c, name, &a);
    if (na < 0) {
        for (int i = 0; i < n; i++) v[i] = dflt;
        return NULL;
    }
    if (na != n) return op_error(c, "attribute '%s' has %d values, expected %d", name, na, n);
    for (int i = 0; i < n; i++) {
        if (a[i] < lo || a[i] > (INT64_C(1) << 24))
            return op_error(c, "attribute '%s' value %lld is out of range", name, (long long)a[i]);
        v[i] = a[i];
    }
    return NULL;
}

tern_status *conv_geom_make(const op_ctx *c, const tern_tensor *x, const int64_t *kernel,
                            bool ceil_mode, conv_geom *g)
{
    if (x->kind != TENSOR_DENSE || x->rank < 3)
        return op_error(c, "input must be [N, C, spatial...], got rank %d", x->rank);
    int n = g->nsp = x->rank - 2;
    int64_t pads[2 * CONV_MAX_SP];
    TERN_TRY(conv_ints_attr(c, "strides", n, 1, 1, g->stride));
    TERN_TRY(conv_ints_attr(c, "dilations", n, 1, 1, g->dil));
    TERN_TRY(conv_ints_attr(c, "pads", 2 * n, 0, 0, pads));
    const char *ap = op_attr_str(c, "auto_pad", "NOTSET");
    bool same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    bool valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0])
        return op_error(c, "unknown auto_pad '%s'", ap);
    g->in_size = g->out_size = g->k_size = 1;
    for (int d = 0; d < n; d++) {
        int64_t in = x->dims[d + 2], k = kernel[d], s = g->stride[d];
        if (k < 1) return op_error(c, "kernel size %lld is invalid", (long long)k);
        int64_t ek = (k - 1) * g->dil[d] + 1, out;
        g->in[d] = in;
        g->k[d] = k;
        if (same_upper || same_lower) {
            out = (in + s - 1) / s;
            int64_t total = (out - 1) * s + ek - in;
            if (total < 0) total = 0;
            g->pad0[d] = same_upper ? total / 2 : total - total / 2;
            g->pad1[d] = total - g->pad0[d];
        } else {
            g->pad0[d] = valid ? 0 : pads[d];
            g->pad1[d] = valid ? 0 : pads[d + n];
            int64_t span = in + g->pad0[d] + g->pad1[d] - ek;
            if (span < 0)
                return op_error(c, "window %lld is larger than the padded input %lld",
                                (long long)ek, (long long)(in + g->pad0[d] + g->pad1[d]));
            out = (ceil_mode && !valid ? (span + s - 1) / s : span / s) + 1;
            if (ceil_mode && !valid && (out - 1) * s >= in + g->pad0[d]) out--;
        }
        g->out[d] = out;
        if (!conv_mul_ok(&g->in_size, in) || !conv_mul_ok(&g->out_size, out) ||
            !conv_mul_ok(&g->k_size, k))
            return op_error(c, "window geometry overflows");
    }
    return NULL;
}

void conv_geom_as_2d(const conv_geom *g, conv_geom *g2)
{
    *g2 = *g;
    if (g->nsp != 1) return;
    g2->nsp = 2;
    g2->in[1] = g->in[0], g2->out[1] = g->out[0], g2->k[1] = g->k[0];
    g2->stride[1] = g->stride[0], g2->dil[1] = g->dil[0];
    g2->pad0[1] = g->pad0[0], g2->pad1[1] = g->pad1[0];
    g2->in[0] = g2->out[0] = g2->k[0] = g2->stride[0] = g2->dil[0] = 1;
    g2->pad0[0] = g2->pad1[0] = 0;
}
