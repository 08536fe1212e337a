/*
 * Pattern passes: subgraphs that exporters emit op by op, replaced by one
 * node that computes the same thing in one pass over memory.
 *
 * pass_patterns (first backward sweep):
 *   - Conv -> BatchNormalization: the normalisation is an affine map per
 *     output channel, folded into the Conv's weights and bias (new
 *     initializers, computed in double);
 *   - LayerNorm as torch < opset 17 exports it: ReduceMean, Sub, Pow 2 (or
 *     Mul by itself), ReduceMean, Add eps, Sqrt, Div, then optionally Mul
 *     gamma and Add beta -> LayerNormalization (ai.onnx at opset >= 17,
 *     com.tern's below);
 *   - exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)) with its three Muls in any
 *     of the orders exporters write (and Mul by 1/sqrt 2 for the Div) ->
 *     com.tern Gelu.
 * pass_fuse (second sweep, after GELU exists as one op):
 *   - Conv [+ Add of a same-shape tensor] [+ activation] -> com.tern FusedConv
 *     (when a kernel for it is registered);
 *   - MatMul + Add of a constant bias over the last dim -> Gemm when A is
 *     2-D, com.tern FusedMatMul otherwise; with an activation after it
 *     FusedGemm / FusedMatMul; Gemm + activation -> FusedGemm.
 *
 * Every intermediate value of a pattern must be read by the pattern alone
 * (pass_single); the replacement takes the slot and the output value of the
 * pattern's last node, so nothing that reads the result notices.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "graph/passes.h"

/* v is want rounded to float (within 2 ulp). */
static bool near(double v, double want)
{
    return fabs(v - want) <= 2.5e-7 * fabs(want);
}

/* The producer of v if v is read only by the pattern and it is op_type. */
static int single_from(const pass_ctx *c, int v, const char *op_type)
{
    if (!pass_single(c, v)) return -1;
    int p = pass_producer(c, v);
    return p >= 0 && pass_is(&c->g->nodes[p], op_type) ? p : -1;
}

/* For a binary node n with one constant scalar input equal to want: the
 * other input, else -1. */
static int with_scalar(const pass_ctx *c, const graph_node *n, double want)
{
    if (n->n_in != 2) return -1;
    for (int k = 0; k < 2; k++) {
        double s;
        if (pass_const_scalar(c, n->in[k], &s) && near(s, want)) return n->in[1 - k];
    }
    return -1;
}

static tern_status *new_attr_list(pass_ctx *c, int n, op_attr **a)
{
    *a = arena_calloc(c->mem, (size_t)(n + 1) * sizeof **a);
    return *a ? NULL : tern_error(TERN_ERR_NO_MEMORY, "out of memory");
}

static tern_status *floats_attr(pass_ctx *c, const char *name, const float *v, int n, op_attr *a)
{
    float *f = arena_alloc(c->mem, (size_t)(n ? n : 1) * sizeof *f);
    if (!f) return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    memcpy(f, v, (size_t)n * sizeof *f);
    *a = (op_attr){.name = name, .type = ATTR_FLOATS, .n = n, .floats = f};
    return NULL;
}

static void kill_all(pass_ctx *c, const int *nodes, int n)
{
    for (int k = 0; k < n; k++)
        if (nodes[k] >= 0) pass_kill(c, nodes[k]);
}

/* ---- Conv + BatchNormalization --------------------------------------------- */

static const float *f32_vec(const pass_ctx *c, int v, int64_t n)
{
    const tern_tensor *t = pass_const(c, v);
    return t && t->dtype == TERN_FLOAT && t->numel == n ? t->data : NULL;
}

static tern_status *conv_bn(pass_ctx *c, int i)
{
    const graph_node *bn = &c->g->nodes[i];
    if (bn->n_in < 5 || bn->n_out < 1 || bn->out[0] < 0) return NULL;
    for (int k = 1; k < bn->n_out; k++)
        if (bn->out[k] >= 0 && (c->uses[bn->out[k]] || c->pinned[bn->out[k]])) return NULL;
    if (pass_attr_int(bn, "training_mode", 0) || !pass_attr_int(bn, "spatial", 1)) return NULL;
    int cv = single_from(c, bn->in[0], "Conv");
    if (cv < 0) return NULL;
    const graph_node *conv = &c->g->nodes[cv];
    const tern_tensor *w = conv->n_in > 1 ? pass_const(c, conv->in[1]) : NULL;
    if (!w || w->dtype != TERN_FLOAT || w->rank < 3 || w->dims[0] <= 0) return NULL;
    int64_t m = w->dims[0], per = w->numel / m;
    const float *cb = NULL;
    if (conv->n_in > 2 && conv->in[2] >= 0 && !(cb = f32_vec(c, conv->in[2], m))) return NULL;
    const float *scale = f32_vec(c, bn->in[1], m), *shift = f32_vec(c, bn->in[2], m);
    const float *mean = f32_vec(c, bn->in[3], m), *var = f32_vec(c, bn->in[4], m);
    if (!scale || !shift || !mean || !var) return NULL;
    double eps = pass_attr_float(bn, "epsilon", 1e-5f);

    tern_tensor *nw, *nb;
    TERN_TRY(pass_new_tensor(c, TERN_FLOAT, w->rank, w->dims, &nw));
    TERN_TRY(pass_new_tensor(c, TERN_FLOAT, 1, &m, &nb));
    const float *wd = w->data;
    float *nwd = nw->data, *nbd = nb->data;
    for (int64_t o = 0; o < m; o++) {
        double s = scale[o] / sqrt((double)var[o] + eps);
        for (int64_t j = 0; j < per; j++) nwd[o * per + j] = (float)(wd[o * per + j] * s);
        nbd[o] = (float)(((cb ? cb[o] : 0.0) - mean[o]) * s + shift[o]);
    }
    int vw, vb;
    TERN_TRY(pass_add_init(c, conv->op.name, "bn_folded_W", nw, &vw));
    TERN_TRY(pass_add_init(c, conv->op.name, "bn_folded_B", nb, &vb));
    /* the Conv, with the new weights, takes the BatchNormalization's slot */
    int in[3] = {conv->in[0], vw, vb};
    pass_kill(c, cv);
    TERN_TRY(pass_rewrite(c, i, conv->op.name, "", "Conv", conv->opset, 3, in,
                          (op_attr *)conv->op.attrs, conv->op.n_attrs, bn->out[0]));
    c->m->rewrites[GRAPH_PASS_CONV_BN]++;
    return NULL;
}

/* ---- LayerNorm ---------------------------------------------------------------- */

/* Normalised axes of a ReduceMean over a suffix of a rank-r input (r -1:
 * unknown, then the axes must be negative): how many trailing axes, or -1
 * (also for keepdims=0). */
static int reduce_suffix(const pass_ctx *c, const graph_node *n, int r)
{
    if (!pass_attr_int(n, "keepdims", 1)) return -1;
    const int64_t *ax = NULL;
    int na = pass_attr_ints(n, "axes", &ax);
    if (na < 0 && n->n_in > 1 && n->in[1] >= 0) {
        const tern_tensor *t = pass_const(c, n->in[1]);
        if (!t || t->dtype != TERN_INT64 || t->rank != 1) return -1;
        ax = t->data;
        na = (int)t->numel;
    }
    if (na < 1 || na > TERN_MAX_RANK || (r >= 0 && na > r)) return -1;
    bool seen[TERN_MAX_RANK] = {0};
    for (int k = 0; k < na; k++) {
        if (r < 0 && ax[k] >= 0) return -1;
        int64_t a = ax[k] < 0 ? ax[k] + na : ax[k] - (r - na); /* position in the suffix */
        if (a < 0 || a >= na || seen[a]) return -1;
        seen[a] = true;
    }
    return na;
}

/* gamma/beta usable as LayerNormalization's Scale/B: one element, or the
 * normalised shape (right-aligned, leading ones). With the rank of x
 * unknown, a vector (the kernel checks its length against the shape). */
static bool affine_ok(const pass_ctx *c, int v, const graph_type *x, int k)
{
    const tern_tensor *t = pass_const(c, v);
    if (!t || t->dtype != TERN_FLOAT) return false;
    if (x->rank < 0) return t->rank == 1 && k == 1;
    if (t->rank > x->rank) return false;
    if (t->numel == 1) return true;
    for (int j = 0; j < t->rank; j++) {
        int xd = x->rank - t->rank + j;
        int64_t want = xd >= x->rank - k ? x->dims[xd] : 1;
        if (want < 0 || t->dims[j] != want) return false;
    }
    return true;
}

static tern_status *layernorm(pass_ctx *c, int i)
{
    const graph_node *e = &c->g->nodes[i];
    int nodes[9], nn = 0, beta = -1, gamma = -1, cur = i;
    if (e->n_out != 1 || e->out[0] < 0) return NULL;
    if (pass_is(e, "Add") && e->n_in == 2) { /* + beta */
        for (int k = 0; k < 2 && beta < 0; k++) {
            int p = pass_const(c, e->in[k]) ? pass_producer(c, e->in[1 - k]) : -1;
            if (p >= 0 && pass_single(c, e->in[1 - k]) &&
                (pass_is(&c->g->nodes[p], "Mul") || pass_is(&c->g->nodes[p], "Div"))) {
                beta = e->in[k];
                nodes[nn++] = i;
                cur = p;
            }
        }
        if (beta < 0) return NULL;
    }
    const graph_node *mul = &c->g->nodes[cur];
    if (pass_is(mul, "Mul") && mul->n_in == 2) { /* * gamma */
        for (int k = 0; k < 2 && gamma < 0; k++) {
            int p = pass_const(c, mul->in[k]) ? pass_producer(c, mul->in[1 - k]) : -1;
            if (p >= 0 && pass_single(c, mul->in[1 - k]) && pass_is(&c->g->nodes[p], "Div")) {
                gamma = mul->in[k];
                nodes[nn++] = cur;
                cur = p;
            }
        }
        if (gamma < 0) return NULL;
    }
    const graph_node *div = &c->g->nodes[cur];
    if (!pass_is(div, "Div") || div->n_in != 2) return NULL;
    nodes[nn++] = cur;
    int d = div->in[0];
    int sq = single_from(c, div->in[1], "Sqrt");
    int ae = sq >= 0 ? single_from(c, pass_in(&c->g->nodes[sq], 0), "Add") : -1;
    if (ae < 0) return NULL;
    double eps = 0;
    const graph_node *an = &c->g->nodes[ae];
    int vk = -1;
    for (int k = 0; k < 2 && an->n_in == 2; k++)
        if (pass_const_scalar(c, an->in[k], &eps)) vk = an->in[1 - k];
    int rm2 = vk >= 0 ? single_from(c, vk, "ReduceMean") : -1;
    if (rm2 < 0) return NULL;
    int sqv = pass_in(&c->g->nodes[rm2], 0), pw = -1, d_uses = 0;
    if ((pw = single_from(c, sqv, "Pow")) >= 0) {
        double two;
        const graph_node *pn = &c->g->nodes[pw];
        if (pass_in(pn, 0) != d || !pass_const_scalar(c, pass_in(pn, 1), &two) || two != 2.0)
            return NULL;
        d_uses = 2;
    } else if ((pw = single_from(c, sqv, "Mul")) >= 0) {
        const graph_node *pn = &c->g->nodes[pw];
        if (pass_in(pn, 0) != d || pass_in(pn, 1) != d) return NULL;
        d_uses = 3;
    } else {
        return NULL;
    }
    if (d < 0 || c->uses[d] != d_uses || c->pinned[d] || c->g->values[d].is_input) return NULL;
    int sub = pass_producer(c, d);
    if (sub < 0 || !pass_is(&c->g->nodes[sub], "Sub")) return NULL;
    int x = pass_in(&c->g->nodes[sub], 0);
    int rm1 = single_from(c, pass_in(&c->g->nodes[sub], 1), "ReduceMean");
    if (rm1 < 0 || pass_in(&c->g->nodes[rm1], 0) != x || !pass_is_f32(c, x)) return NULL;
    const graph_type *xt = pass_type(c, x);
    int k = reduce_suffix(c, &c->g->nodes[rm1], xt->rank);
    if (k < 1 || reduce_suffix(c, &c->g->nodes[rm2], xt->rank) != k) return NULL;
    if ((gamma >= 0 && !affine_ok(c, gamma, xt, k)) || (beta >= 0 && !affine_ok(c, beta, xt, k)))
        return NULL;
    if (gamma < 0) { /* LayerNormalization needs a Scale */
        tern_tensor *one;
        int64_t n1 = 1;
        TERN_TRY(pass_new_tensor(c, TERN_FLOAT, 1, &n1, &one));
        *(float *)one->data = 1.0f;
        TERN_TRY(pass_add_init(c, c->g->nodes[cur].op.name, "ln_scale", one, &gamma));
    }
    nodes[nn++] = sq;
    nodes[nn++] = ae;
    nodes[nn++] = rm2;
    nodes[nn++] = pw;
    nodes[nn++] = sub;
    nodes[nn++] = rm1;
    op_attr *a;
    TERN_TRY(new_attr_list(c, 2, &a));
    a[0] = (op_attr){.name = "axis", .type = ATTR_INT, .i = -k};
    a[1] = (op_attr){.name = "epsilon", .type = ATTR_FLOAT, .f = (float)eps};
    int in[3] = {x, gamma, beta};
    int out = c->g->nodes[i].out[0];
    const char *name = c->g->nodes[rm1].op.name;
    /* ai.onnx's where the model imports it, else com.tern's (the same op) */
    int opset = (int)graph_model_opset(c->m, "");
    const char *dom = "";
    if (!op_lookup("", "LayerNormalization", opset)) {
        dom = "com.tern";
        opset = 1;
    }
    kill_all(c, nodes + 1, nn - 1);
    TERN_TRY(pass_rewrite(c, i, name, dom, "LayerNormalization", opset, beta >= 0 ? 3 : 2, in, a, 2,
                          out));
    c->m->rewrites[GRAPH_PASS_LAYERNORM]++;
    return NULL;
}

/* ---- GELU ---------------------------------------------------------------------- */

/* If e1 is 1 + erf(x / sqrt 2), read only here: x, and the nodes in nodes[]. */
static int erf_plus_one(const pass_ctx *c, int e1, int *nodes)
{
    int add = single_from(c, e1, "Add");
    if (add < 0) return -1;
    int ev = with_scalar(c, &c->g->nodes[add], 1.0);
    int erf = ev >= 0 ? single_from(c, ev, "Erf") : -1;
    if (erf < 0) return -1;
    int sv = pass_in(&c->g->nodes[erf], 0), sc = -1, x = -1;
    if ((sc = single_from(c, sv, "Div")) >= 0) {
        double s;
        const graph_node *dn = &c->g->nodes[sc];
        if (pass_const_scalar(c, pass_in(dn, 1), &s) && near(s, M_SQRT2)) x = pass_in(dn, 0);
    } else if ((sc = single_from(c, sv, "Mul")) >= 0) {
        x = with_scalar(c, &c->g->nodes[sc], M_SQRT1_2);
    }
    if (x < 0 || !pass_is_f32(c, x)) return -1;
    nodes[0] = add;
    nodes[1] = erf;
    nodes[2] = sc;
    return x;
}

static tern_status *gelu(pass_ctx *c, int i)
{
    const graph_node *e = &c->g->nodes[i];
    if (e->n_in != 2 || e->n_out < 1 || e->out[0] < 0) return NULL;
    int nodes[5] = {-1, -1, -1, -1, -1}, x = -1;
    int t = with_scalar(c, e, 0.5);
    int pm = t >= 0 ? single_from(c, t, "Mul") : -1;
    if (pm >= 0) { /* (x * (1 + erf)) * 0.5 */
        const graph_node *m = &c->g->nodes[pm];
        for (int k = 0; k < 2 && x < 0; k++) {
            x = erf_plus_one(c, pass_in(m, k), nodes);
            if (x != pass_in(m, 1 - k)) x = -1;
        }
        nodes[3] = pm;
    }
    for (int k = 0; k < 2 && x < 0; k++) {
        int o = e->in[1 - k], q;
        if ((q = single_from(c, e->in[k], "Mul")) < 0) continue;
        int h = with_scalar(c, &c->g->nodes[q], 0.5);
        if (h < 0) continue;
        /* x * ((1 + erf) * 0.5), or (x * 0.5) * (1 + erf) */
        if ((x = erf_plus_one(c, h, nodes)) >= 0 && x == o) {
            nodes[3] = q;
            break;
        }
        if ((x = erf_plus_one(c, o, nodes)) >= 0 && x == h) {
            nodes[3] = q;
            break;
        }
        x = -1;
    }
    if (x < 0) return NULL;
    kill_all(c, nodes, 4);
    TERN_TRY(pass_rewrite(c, i, c->g->nodes[nodes[1]].op.name, "com.tern", "Gelu", 1, 1, &x, NULL,
                          0, c->g->nodes[i].out[0]));
    c->m->rewrites[GRAPH_PASS_GELU]++;
    return NULL;
}

tern_status *pass_patterns(pass_ctx *c)
{
    for (int i = c->g->n_nodes - 1; i >= 0; i--) {
        if (c->dead[i]) continue;
        const graph_node *n = &c->g->nodes[i];
        if (pass_is(n, "BatchNormalization"))
            TERN_TRY(conv_bn(c, i));
        else if (pass_is(n, "Add") || pass_is(n, "Mul") || pass_is(n, "Div"))
            TERN_TRY(layernorm(c, i));
        if (!c->dead[i] && pass_is(&c->g->nodes[i], "Mul")) TERN_TRY(gelu(c, i));
    }
    return NULL;
}

/* ---- bias and activation fusion ------------------------------------------------- */

typedef struct act {
    const char *name; /* NULL: none */
    float params[2];
    int n_params;
    int node; /* the activation node, or -1 */
} act;

/* Recognises an activation node; its input in *x. */
static bool read_act(const pass_ctx *c, int i, act *a, int *x)
{
    const graph_node *n = &c->g->nodes[i];
    *a = (act){.node = i};
    if (n->n_in < 1 || n->in[0] < 0 || n->n_out != 1 || n->out[0] < 0) return false;
    *x = n->in[0];
    if (!strcmp(n->op.domain, "com.tern") && !strcmp(n->op.op_type, "Gelu")) {
        a->name = "Gelu";
        return true;
    }
    if (*n->op.domain) return false;
    const char *op = n->op.op_type;
    if (!strcmp(op, "Relu") || !strcmp(op, "Sigmoid") || !strcmp(op, "Tanh")) {
        a->name = op;
    } else if (!strcmp(op, "LeakyRelu")) {
        a->name = op;
        a->params[0] = pass_attr_float(n, "alpha", 0.01f);
        a->n_params = 1;
    } else if (!strcmp(op, "HardSigmoid")) {
        a->name = op;
        a->params[0] = pass_attr_float(n, "alpha", 0.2f);
        a->params[1] = pass_attr_float(n, "beta", 0.5f);
        a->n_params = 2;
    } else if (!strcmp(op, "Clip")) {
        double lo = -INFINITY, hi = INFINITY; /* as the Clip kernel reads them */
        if (n->opset < 11) {
            lo = pass_attr_float(n, "min", -FLT_MAX);
            hi = pass_attr_float(n, "max", FLT_MAX);
        } else {
            for (int k = 1; k < 3 && k < n->n_in; k++) {
                if (n->in[k] < 0) continue;
                const tern_tensor *b = pass_const(c, n->in[k]);
                if (!b || b->dtype != TERN_FLOAT || b->numel != 1) return false;
                *(k == 1 ? &lo : &hi) = *(const float *)b->data;
            }
        }
        a->name = op;
        a->params[0] = (float)lo;
        a->params[1] = (float)hi;
        a->n_params = 2;
    } else {
        return false;
    }
    return true;
}

/* The activation attributes appended to a[*na]. */
static tern_status *add_act_attrs(pass_ctx *c, const act *ac, op_attr *a, int *na)
{
    if (!ac->name) return NULL;
    a[(*na)++] = (op_attr){
        .name = "activation", .type = ATTR_STRING, .s = ac->name, .s_len = strlen(ac->name)};
    if (ac->n_params)
        TERN_TRY(floats_attr(c, "activation_params", ac->params, ac->n_params, &a[(*na)++]));
    return NULL;
}

static bool same_shape(const pass_ctx *c, int u, int v)
{
    const graph_type *a = pass_type(c, u), *b = pass_type(c, v);
    if (!a || !b || a->rank < 0 || a->rank != b->rank || a->elem != b->elem) return false;
    for (int d = 0; d < a->rank; d++) {
        if (a->dims[d] >= 0 || b->dims[d] >= 0) {
            if (a->dims[d] != b->dims[d]) return false;
        } else if (!a->dim_names[d] || !b->dim_names[d] || !*a->dim_names[d] ||
                   strcmp(a->dim_names[d], b->dim_names[d]) != 0) {
            return false;
        }
    }
    return true;
}

/* Conv [+ Z] [+ act] -> FusedConv in slot `last`. */
static tern_status *fuse_conv(pass_ctx *c, int conv, int add, int z, const act *ac, int last)
{
    if (!op_lookup("com.tern", "FusedConv", 1)) return NULL;
    if (ac->name && !strcmp(ac->name, "Gelu")) return NULL; /* not in FusedConv's contract */
    const graph_node *cn = &c->g->nodes[conv];
    if (cn->n_in < 2 || !pass_is_f32(c, cn->in[0]) || cn->n_out != 1) return NULL;
    op_attr *a;
    int na;
    TERN_TRY(pass_attrs_copy(c, cn, 2, NULL, &a, &na));
    TERN_TRY(add_act_attrs(c, ac, a, &na));
    int in[4] = {cn->in[0], cn->in[1], cn->n_in > 2 ? cn->in[2] : -1, z};
    int out = c->g->nodes[last].out[0];
    const char *name = cn->op.name;
    int kill[3] = {conv, add, ac->node};
    for (int k = 0; k < 3; k++)
        if (kill[k] == last) kill[k] = -1;
    kill_all(c, kill, 3);
    int n_in = z >= 0 ? 4 : in[2] >= 0 ? 3 : 2;
    TERN_TRY(pass_rewrite(c, last, name, "com.tern", "FusedConv", 1, n_in, in, a, na, out));
    c->m->rewrites[GRAPH_PASS_FUSED_CONV]++;
    return NULL;
}

/* n of a MatMul's B [k, n] if B is known 2-D float32, else -1. */
static int64_t matmul_n(const pass_ctx *c, const graph_node *mm)
{
    if (mm->n_in != 2 || !pass_is_f32(c, mm->in[0]) || !pass_is_f32(c, mm->in[1])) return -1;
    const graph_type *b = pass_type(c, mm->in[1]);
    return b->rank == 2 && b->dims[1] >= 0 ? b->dims[1] : -1;
}

/* A constant bias of n floats broadcast over the last dim of a rank-r result
 * (r -1: unknown, then only a vector, which cannot change the rank). */
static bool bias_ok(const pass_ctx *c, int v, int64_t n, int r)
{
    const tern_tensor *t = pass_const(c, v);
    if (!t || t->dtype != TERN_FLOAT || t->numel != n || t->rank < 1) return false;
    if (r < 0 ? t->rank != 1 : t->rank > r) return false;
    return t->dims[t->rank - 1] == n;
}

/* MatMul [+ bias] [+ act] -> Gemm, FusedGemm or FusedMatMul in slot last. */
static tern_status *fuse_matmul(pass_ctx *c, int mm, int add, int bias, const act *ac, int last)
{
    const graph_node *mn = &c->g->nodes[mm];
    int64_t n = matmul_n(c, mn);
    const graph_type *at = mn->n_in == 2 ? pass_type(c, mn->in[0]) : NULL;
    if (n < 0 || !at || (at->rank >= 0 && at->rank < 2)) return NULL; /* rank -1: unknown */
    if (ac->name && (!strcmp(ac->name, "Sigmoid") || !strcmp(ac->name, "Tanh")))
        return NULL; /* the fused kernels have no vector exp: left as they are */
    if (bias >= 0 && !bias_ok(c, bias, n, at->rank)) return NULL;
    int64_t opset = graph_model_opset(c->m, "");
    const char *dom = "com.tern", *op = at->rank == 2 ? "FusedGemm" : "FusedMatMul";
    int kind = at->rank == 2 ? GRAPH_PASS_FUSED_GEMM : GRAPH_PASS_FUSED_MATMUL, ver = 1;
    if (at->rank == 2 && !ac->name && opset >= 11 && op_lookup("", "Gemm", opset)) {
        dom = "";
        op = "Gemm";
        kind = GRAPH_PASS_GEMM;
        ver = (int)opset;
    } else if (!ac->name && bias < 0) {
        return NULL; /* a bare MatMul */
    }
    op_attr *a;
    TERN_TRY(new_attr_list(c, 2, &a));
    int na = 0;
    TERN_TRY(add_act_attrs(c, ac, a, &na));
    int in[3] = {mn->in[0], mn->in[1], bias};
    int out = c->g->nodes[last].out[0];
    const char *name = mn->op.name;
    int kill[3] = {mm, add, ac->node};
    for (int k = 0; k < 3; k++)
        if (kill[k] == last) kill[k] = -1;
    kill_all(c, kill, 3);
    TERN_TRY(pass_rewrite(c, last, name, dom, op, ver, bias >= 0 ? 3 : 2, in, a, na, out));
    c->m->rewrites[kind]++;
    return NULL;
}

/* Gemm + act -> FusedGemm (same inputs and attributes). */
static tern_status *fuse_gemm(pass_ctx *c, int gm, const act *ac, int last)
{
    const graph_node *gn = &c->g->nodes[gm];
    if (!ac->name || !strcmp(ac->name, "Sigmoid") || !strcmp(ac->name, "Tanh")) return NULL;
    if (gn->n_in < 2 || gn->n_in > 3 || gn->n_out != 1 || !pass_is_f32(c, gn->in[0])) return NULL;
    op_attr *a;
    int na;
    TERN_TRY(pass_attrs_copy(c, gn, 2, NULL, &a, &na));
    TERN_TRY(add_act_attrs(c, ac, a, &na));
    int in[3] = {gn->in[0], gn->in[1], gn->n_in > 2 ? gn->in[2] : -1};
    int n_in = gn->n_in, out = c->g->nodes[last].out[0];
    const char *name = gn->op.name;
    pass_kill(c, gm);
    TERN_TRY(pass_rewrite(c, last, name, "com.tern", "FusedGemm", 1, n_in, in, a, na, out));
    c->m->rewrites[GRAPH_PASS_FUSED_GEMM]++;
    return NULL;
}

/* An Add (node `add`, `last` the slot for the result): Conv + Z or MatMul +
 * bias on either side. */
static tern_status *fuse_add(pass_ctx *c, int add, const act *ac, int last)
{
    const graph_node *an = &c->g->nodes[add];
    if (an->n_in != 2) return NULL;
    for (int k = 0; k < 2; k++) {
        int v = an->in[k], z = an->in[1 - k];
        int p = pass_single(c, v) ? pass_producer(c, v) : -1;
        if (p < 0 || z < 0 || z == v) continue;
        const graph_node *pn = &c->g->nodes[p];
        if (pass_is(pn, "Conv") && same_shape(c, v, z)) return fuse_conv(c, p, add, z, ac, last);
        if (pass_is(pn, "MatMul") && pass_const(c, z)) return fuse_matmul(c, p, add, z, ac, last);
    }
    return NULL;
}

tern_status *pass_fuse(pass_ctx *c)
{
    for (int i = c->g->n_nodes - 1; i >= 0; i--) {
        if (c->dead[i]) continue;
        act ac;
        int x;
        if (read_act(c, i, &ac, &x)) {
            int p = pass_single(c, x) ? pass_producer(c, x) : -1;
            if (p < 0) continue;
            const graph_node *pn = &c->g->nodes[p];
            if (pass_is(pn, "Add"))
                TERN_TRY(fuse_add(c, p, &ac, i));
            else if (pass_is(pn, "Conv"))
                TERN_TRY(fuse_conv(c, p, -1, -1, &ac, i));
            else if (pass_is(pn, "MatMul"))
                TERN_TRY(fuse_matmul(c, p, -1, -1, &ac, i));
            else if (pass_is(pn, "Gemm"))
                TERN_TRY(fuse_gemm(c, p, &ac, i));
        } else if (pass_is(&c->g->nodes[i], "Add") && c->g->nodes[i].n_out == 1 &&
                   c->g->nodes[i].out[0] >= 0) {
            act none = {.node = -1};
            TERN_TRY(fuse_add(c, i, &none, i));
        }
    }
    return NULL;
}
