/*
 * float32 convolution through oneDNN (inference forward), for Conv and
 * com.tern FusedConv with constant weights; conv.c decides when to call.
 *
 * The plan for one input shape: the convolution primitive with the
 * weights in the format it prefers (reordered once, kept in the cache),
 * the bias and FusedConv's residual Z and activation as post-ops, and
 * reorders only where the tensors' layouts differ from what the primitive
 * takes. Activations stay in the channel-blocked layout LAYOUT_C16 between
 * convolutions: a C16 input is taken as is, an output with a multiple of 16
 * channels is written C16 (the executor unblocks it for the kernels that
 * want plain tensors). A plain input is given as "any" and reordered into
 * what the primitive picks, except that a primitive which takes it directly
 * (few channels: the first layer of a network) reads it in place.
 *
 * Z is added by a binary post-op reading it in place when oneDNN has one
 * for its layout, else by copying it into the destination first and a sum
 * post-op. oneDNN's reference implementations are never used: the
 * portable kernels are faster than those, so a plan that would need one is
 * refused and the node runs its portable path for that shape.
 */
#include <math.h>
#include <string.h>

#include "ops/dnnl.h"

static dnnl_status_t append_act(dnnl_post_ops_t po, conv_act a)
{
    switch (a.kind) {
    case ACT_NONE: return dnnl_success;
    case ACT_RELU: return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    case ACT_LEAKY_RELU: return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, a.a, 0);
    case ACT_CLIP: return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, a.a, a.b);
    case ACT_SIGMOID: return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_logistic, 0, 0);
    case ACT_TANH: return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_tanh, 0.0f, 0.0f);
    case ACT_HARD_SIGMOID: {
        dnnl_status_t st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, a.a, a.b);
        if (st != dnnl_success) return st;
        return dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_clip, 0.0f, 1.0f);
    }
    }
    return dnnl_unimplemented;
}

/* The descriptors of one convolution. */
typedef struct conv_mds {
    dnnl_memory_desc_t x, src, w, w_plain, b, dst, y, z;
    dnnl_dims_t stride, dil, pad0, pad1;
} conv_mds;

static dnnl_status_t conv_mds_make(const dnn_conv *cv, dnnl_format_tag_t src_tag,
                                   dnnl_format_tag_t dst_tag, conv_mds *d)
{
    static const dnnl_format_tag_t oi[] = {dnnl_oiw, dnnl_oihw, dnnl_oidhw};
    static const dnnl_format_tag_t goi[] = {dnnl_goiw, dnnl_goihw, dnnl_goidhw};
    const tern_tensor *x = cv->x;
    const conv_geom *g = cv->g;
    int rank = x->rank, nsp = rank - 2;
    int64_t ydims[TERN_MAX_RANK] = {x->dims[0], cv->m}, wdims[TERN_MAX_RANK + 1];
    for (int i = 0; i < nsp; i++) {
        ydims[i + 2] = g->out[i];
        d->stride[i] = g->stride[i];
        d->dil[i] = g->dil[i] - 1;
        d->pad0[i] = g->pad0[i];
        d->pad1[i] = g->pad1[i];
    }
    tensor_layout yl = cv->m % 16 == 0 ? LAYOUT_C16 : LAYOUT_PLAIN;
    dnnl_status_t st;
    if ((st = dnn_md(&d->x, rank, x->dims, dnn_tag(rank, x->layout))) ||
        (st = dnn_md(&d->src, rank, x->dims, src_tag)) ||
        (st = dnn_md(&d->y, rank, ydims, dnn_tag(rank, yl))) ||
        (st = dnn_md(&d->dst, rank, ydims, dst_tag)))
        return st;
    if (cv->z && (st = dnn_md(&d->z, rank, ydims, dnn_tag(rank, cv->z->layout)))) return st;
    int wr = rank;
    if (cv->group > 1) { /* [G, M/G, C/G, k...]: the same bytes as ONNX's [M, C/G, k...] */
        wdims[0] = cv->group;
        wdims[1] = cv->m / cv->group;
        for (int i = 1; i < rank; i++) wdims[i + 1] = cv->w->dims[i];
        wr++;
    } else {
        memcpy(wdims, cv->w->dims, (size_t)rank * sizeof *wdims);
    }
    if ((st = dnn_md(&d->w, wr, wdims, dnnl_format_tag_any)) ||
        (st = dnn_md(&d->w_plain, wr, wdims, cv->group > 1 ? goi[nsp - 1] : oi[nsp - 1])))
        return st;
    int64_t m = cv->m;
    return cv->b ? dnn_md(&d->b, 1, &m, dnnl_x) : dnnl_success;
}

/* Builds the plan for the convolution with source and destination in the
 * given formats (or "any"), Z (if any) added by a binary post-op (binary)
 * or by a sum post-op over a copy of Z in the destination. */
static dnnl_status_t conv_build(dnn_cache *k, const dnn_conv *cv, dnnl_alg_kind_t alg,
                                dnnl_format_tag_t src_tag, dnnl_format_tag_t dst_tag, bool binary,
                                bool gemm, dnn_plan *p)
{
    conv_mds d;
    dnnl_status_t st = conv_mds_make(cv, src_tag, dst_tag, &d);
    if (st != dnnl_success) return st;
    dnnl_convolution_desc_t desc;
    st = dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, alg, &d.src,
                                                    &d.w, cv->b ? &d.b : NULL, &d.dst, d.stride,
                                                    d.dil, d.pad0, d.pad1);
    if (st != dnnl_success) return st;

    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if ((st = dnnl_primitive_attr_create(&attr)) || (st = dnnl_post_ops_create(&po))) goto done;
    if ((st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) goto done;
    if (cv->z) {
        st = binary ? dnnl_post_ops_append_binary(po, dnnl_binary_add, &d.z)
                    : dnnl_post_ops_append_sum(po, 1.0f);
        if (st) goto done;
    }
    if ((st = append_act(po, cv->act)) || (st = dnnl_primitive_attr_set_post_ops(attr, po)))
        goto done;
    if ((st = dnnl_primitive_desc_create(&pd, &desc, attr, dnn_engine(), NULL))) goto done;
    if (dnn_is_ref(pd) || (!gemm && dnn_is_gemm(pd))) {
        st = dnnl_unimplemented;
        goto done;
    }

    const dnnl_memory_desc_t *src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wts = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    bool src_direct = dnnl_memory_desc_equal(src, &d.x),
         dst_direct = dnnl_memory_desc_equal(dst, &d.y);
    size_t src_off = 0, dst_off = 0;
    void *wbuf;
    if ((st = dnn_cache_weights(k, wts, &d.w_plain, cv->w->data, &wbuf))) goto done;
    if (!src_direct) {
        src_off = dnn_plan_reserve(p, dnnl_memory_desc_get_size(src));
        if ((st = dnn_plan_reorder(p, &d.x, 0, 0, src, DNN_SCRATCH, src_off))) goto done;
    }
    if (!dst_direct) dst_off = dnn_plan_reserve(p, dnnl_memory_desc_get_size(dst));
    int dst_at = dst_direct ? DNN_OUT : DNN_SCRATCH;
    if (cv->z && !binary && (st = dnn_plan_reorder(p, &d.z, 3, 0, dst, dst_at, dst_off))) goto done;
    dnn_step *s;
    if ((st = dnn_plan_step(p, pd, &s)) ||
        (st = dnn_step_arg(s, DNNL_ARG_SRC, src, src_direct ? 0 : DNN_SCRATCH, src_off, NULL)) ||
        (st = dnn_step_arg(s, DNNL_ARG_WEIGHTS, wts, DNN_FIXED, 0, wbuf)) ||
        (cv->b && (st = dnn_step_arg(s, DNNL_ARG_BIAS, &d.b, 2, 0, NULL))) ||
        (st = dnn_step_arg(s, DNNL_ARG_DST, dst, dst_at, dst_off, NULL)))
        goto done;
    if (cv->z && binary &&
        (st =
             dnn_step_arg(s, DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, &d.z, 3, 0, NULL)))
        goto done;
    if (!dst_direct && (st = dnn_plan_reorder(p, dst, DNN_SCRATCH, dst_off, &d.y, DNN_OUT, 0)))
        goto done;
    p->out_layout = cv->m % 16 == 0 ? LAYOUT_C16 : LAYOUT_PLAIN;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* The first plan oneDNN has a fast implementation for. Winograd first
 * (oneDNN has it for 3x3 stride-1 convolutions with channels in blocks of
 * 16: two to three times faster than direct on AVX-512 at batch 1 and 8,
 * and resnet18's error against torch stays 4e-6 at batch 1, as direct's),
 * then direct; for each, the input
 * as it is (or "any" when plain) and a blocked output when the channels
 * allow, then both blocked (what depthwise kernels want), then both "any"
 * (groups that do not fill a block of 16). Z by binary post-op, then by sum.
 * oneDNN's im2col + GEMM implementation (the one it takes for plain layouts,
 * and for a binary post-op reading a plain Z) comes only when no direct
 * kernel fits: it is 2-3 times slower than those.
 *
 * oneDNN's Winograd weight transform (wino_reorder) is slow, ~17 ms per
 * resnet18 layer, 225 ms in all: three quarters of a one-shot `tern run`.
 * So the first run of a shape takes the direct plan, and the second, which
 * shows the shape recurs, builds the Winograd plan in its place (tern
 * serve's warm-up runs twice, so serving starts on it). */
static bool wino_shape(const dnn_conv *cv)
{
    const conv_geom *g = cv->g;
    if (g->nsp != 2 || cv->group != 1) return false;
    for (int i = 0; i < g->nsp; i++)
        if (g->k[i] != 3 || g->stride[i] != 1 || g->dil[i] != 1) return false;
    return true;
}
static bool conv_plan(dnn_cache *k, const dnn_conv *cv, bool wino, dnn_plan *p, bool *is_wino)
{
    int rank = cv->x->rank;
    dnnl_format_tag_t c16 = dnn_tag(rank, LAYOUT_C16), any = dnnl_format_tag_any;
    dnnl_format_tag_t dst = cv->m % 16 == 0 ? c16 : any;
    dnnl_format_tag_t tries[3][2] = {
        {cv->x->layout == LAYOUT_C16 ? c16 : any, dst},
        {cv->x->dims[1] % 16 == 0 ? c16 : dnn_tag(rank, LAYOUT_PLAIN), dst},
        {any, any},
    };
    dnnl_alg_kind_t algs[2] = {dnnl_convolution_winograd, dnnl_convolution_direct};
    for (int gemm = 0; gemm < 2; gemm++)
        for (int a = wino ? 0 : 1; a < 2; a++)
            for (int t = 0; t < 3; t++) {
                if (t > 0 && tries[t][0] == tries[t - 1][0] && tries[t][1] == tries[t - 1][1])
                    continue;
                for (int binary = 1; binary >= (cv->z ? 0 : 1); binary--) {
                    if (conv_build(k, cv, algs[a], tries[t][0], tries[t][1], binary, gemm, p) ==
                        dnnl_success) {
                        *is_wino = a == 0;
                        return true;
                    }
                    dnn_plan_free(p);
                }
            }
    return false;
}

tern_status *dnn_conv_run(op_ctx *c, dnn_cache *k, const dnn_conv *cv, bool *done)
{
    *done = false;
    const tern_tensor *x = cv->x, *w = cv->w;
    const conv_geom *g = cv->g;
    if (!k || x->rank < 3 || x->rank > 5 || x->dtype != TERN_FLOAT || w->dtype != TERN_FLOAT ||
        w->layout != LAYOUT_PLAIN || (cv->z && cv->z->dtype != TERN_FLOAT) ||
        (cv->act.kind == ACT_CLIP && !(cv->act.a <= cv->act.b)))
        return NULL;
    if (x->numel == 0 || w->numel == 0 || g->out_size == 0) return NULL;

    int nthr = dnn_set_threads(c), n = 0;
    int64_t key[DNN_KEY_MAX];
    key[n++] = x->rank;
    for (int i = 0; i < x->rank; i++) key[n++] = x->dims[i];
    key[n++] = x->layout;
    key[n++] = cv->b != NULL;
    key[n++] = cv->z ? 1 + cv->z->layout : 0;
    key[n++] = nthr;
    dnn_entry *e = dnn_cache_lock(k, key, n);
    bool is_wino = false;
    if (!e->built) {
        e->built = true;
        e->ok = conv_plan(k, cv, false, &e->plan, &is_wino);
        e->upgradable = e->ok && dnn_winograd() && wino_shape(cv);
    } else if (e->upgradable) {
        e->upgradable = false;
        dnn_plan w = {0};
        if (conv_plan(k, cv, true, &w, &is_wino) && is_wino) {
            dnn_plan_free(&e->plan);
            e->plan = w;
        } else {
            dnn_plan_free(&w);
        }
    }
    tern_status *st = NULL;
    if (e->ok) {
        int64_t dims[TERN_MAX_RANK] = {x->dims[0], cv->m};
        for (int i = 0; i < g->nsp; i++) dims[i + 2] = g->out[i];
        tern_tensor *y;
        const tern_tensor *in[4] = {x, w, cv->b, cv->z};
        st = op_out(c, 0, TERN_FLOAT, x->rank, dims, &y);
        if (!st) {
            y->layout = (unsigned char)e->plan.out_layout;
            st = dnn_plan_run(c, &e->plan, in, y->data);
            *done = !st;
        }
    }
    dnn_cache_unlock(k);
    return st;
}
