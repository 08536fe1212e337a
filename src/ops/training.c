/*
 * Operator family: training (ai.onnx.preview.training opset 1): the
 * optimizer steps Adagrad, Adam and Momentum. Gradient is not implemented.
 *
 * Each takes a scalar learning rate R (float or double), a scalar int64
 * iteration count T, then n parameter groups laid out tensor-kind-major:
 *   Adagrad   X1..Xn, G1..Gn, H1..Hn          -> X1'..Xn', H1'..Hn'
 *   Momentum  X1..Xn, G1..Gn, V1..Vn          -> X1'..Xn', V1'..Vn'
 *   Adam      X1..Xn, G1..Gn, V1..Vn, H1..Hn  -> X1'..Xn', V1'..Vn', H1'..Hn'
 * Within a group every tensor has X's dtype (float or double) and shape; the
 * update is elementwise. Arithmetic is done in double and rounded on store,
 * so float and double share one formula per optimizer (the formulas are the
 * ones of onnx/backend/test/case/node/{adagrad,adam,momentum}.py).
 */
#include <math.h>
#include <string.h>

#include "ops/op.h"

enum { MAX_STATES = 2 };

/* One parameter group: the inputs X, G, states S[] and the outputs X', S'[]. */
typedef struct group {
    const tern_tensor *x, *g, *s[MAX_STATES];
    tern_tensor *xo, *so[MAX_STATES];
} group;

/* Validates the layout of a node with `ns` state tensors per parameter and
 * returns R, T and the group count n. */
static tern_status *optim_check(op_ctx *c, int ns, double *r, int64_t *t, int *n)
{
    int per = 2 + ns;
    if (c->n_in < 2 + per || (c->n_in - 2) % per)
        return op_error(c, "expected R, T and groups of %d inputs, got %d inputs", per, c->n_in);
    *n = (c->n_in - 2) / per;
    if (c->n_out != (1 + ns) * *n)
        return op_error(c, "expected %d outputs for %d parameters, got %d", (1 + ns) * *n, *n,
                        c->n_out);
    for (int i = 0; i < c->n_in; i++) {
        TERN_TRY(op_need_input(c, i));
        if (c->in[i]->kind != TENSOR_DENSE) return op_error(c, "input %d is not a tensor", i);
    }
    const tern_tensor *R = c->in[0], *T = c->in[1];
    if ((R->dtype != TERN_FLOAT && R->dtype != TERN_DOUBLE) || R->numel != 1)
        return op_error(c, "R must be a float or double scalar");
    if (T->dtype != TERN_INT64 || T->numel != 1) return op_error(c, "T must be an int64 scalar");
    *r = op_get_f64(R, 0);
    *t = op_get_i64(T, 0);
    return NULL;
}

/* Checks group k's tensors and allocates its outputs. */
static tern_status *optim_group(op_ctx *c, int ns, int n, int k, group *gr)
{
    const tern_tensor *const *in = c->in + 2;
    gr->x = in[k];
    gr->g = in[n + k];
    for (int j = 0; j < ns; j++) gr->s[j] = in[(2 + j) * n + k];
    const tern_tensor *x = gr->x;
    if (x->dtype != TERN_FLOAT && x->dtype != TERN_DOUBLE)
        return op_error(c, "X%d must be float or double, got %s", k + 1, tern_dtype_name(x->dtype));
    for (int j = -1; j < ns; j++) {
        const tern_tensor *o = j < 0 ? gr->g : gr->s[j];
        if (o->dtype != x->dtype || !shape_equal(o, x))
            return op_error(c, "tensors of parameter %d differ from X%d in dtype or shape", k + 1,
                            k + 1);
    }
    TERN_TRY(op_out(c, k, x->dtype, x->rank, x->dims, &gr->xo));
    for (int j = 0; j < ns; j++)
        TERN_TRY(op_out(c, (1 + j) * n + k, x->dtype, x->rank, x->dims, &gr->so[j]));
    return NULL;
}

/* Runs BODY over every element of a group with double locals x, g, s0, s1
 * read from the inputs and xn, s0n, s1n stored to the outputs. */
#define OPTIM_LOOP(T, gr, ns, BODY)                                                                \
    do {                                                                                           \
        const T *X_ = (gr)->x->data, *G_ = (gr)->g->data;                                          \
        const T *S0_ = (gr)->s[0]->data, *S1_ = (ns) > 1 ? (gr)->s[1]->data : NULL;                \
        T *XO_ = (gr)->xo->data, *SO0_ = (gr)->so[0]->data;                                        \
        T *SO1_ = (ns) > 1 ? (gr)->so[1]->data : NULL;                                             \
        for (int64_t i_ = 0; i_ < (gr)->x->numel; i_++) {                                          \
            double x = X_[i_], g = G_[i_], s0 = S0_[i_], s1 = S1_ ? S1_[i_] : 0;                   \
            double xn, s0n, s1n = 0;                                                               \
            BODY;                                                                                  \
            XO_[i_] = (T)xn;                                                                       \
            SO0_[i_] = (T)s0n;                                                                     \
            if (SO1_) SO1_[i_] = (T)s1n;                                                           \
        }                                                                                          \
    } while (0)

#define OPTIM_RUN(gr, ns, BODY)                                                                    \
    do {                                                                                           \
        if ((gr)->x->dtype == TERN_FLOAT)                                                          \
            OPTIM_LOOP(float, gr, ns, BODY);                                                       \
        else                                                                                       \
            OPTIM_LOOP(double, gr, ns, BODY);                                                      \
    } while (0)

static tern_status *op_adagrad(op_ctx *c)
{
    double r;
    int64_t t;
    int n;
    TERN_TRY(optim_check(c, 1, &r, &t, &n));
    double decay = op_attr_float(c, "decay_factor", 0.0f);
    double eps = op_attr_float(c, "epsilon", 1e-6f);
    double norm = op_attr_float(c, "norm_coefficient", 0.0f);
    double rate = r / (1.0 + (double)t * decay);
    for (int k = 0; k < n; k++) {
        group gr = {0};
        TERN_TRY(optim_group(c, 1, n, k, &gr));
        OPTIM_RUN(&gr, 1, {
            double gn = norm * x + g;
            s0n = s0 + gn * gn;
            xn = x - rate * gn / (sqrt(s0n) + eps);
            (void)s1;
        });
    }
    return NULL;
}

static tern_status *op_momentum(op_ctx *c)
{
    double r;
    int64_t t;
    int n;
    TERN_TRY(optim_check(c, 1, &r, &t, &n));
    static const char *const req[] = {"alpha", "beta", "norm_coefficient", "mode"};
    for (size_t i = 0; i < sizeof req / sizeof *req; i++)
        if (!op_attr_get(c, req[i])) return op_error(c, "attribute '%s' is required", req[i]);
    double alpha = op_attr_float(c, "alpha", 0.0f);
    double beta = op_attr_float(c, "beta", 0.0f);
    double norm = op_attr_float(c, "norm_coefficient", 0.0f);
    const char *mode = op_attr_str(c, "mode", "");
    bool nesterov = !strcmp(mode, "nesterov");
    if (!nesterov && strcmp(mode, "standard"))
        return op_error(c, "mode must be 'standard' or 'nesterov', got '%s'", mode);
    double b = t > 0 ? beta : 1.0; /* the first step takes the whole gradient */
    for (int k = 0; k < n; k++) {
        group gr = {0};
        TERN_TRY(optim_group(c, 1, n, k, &gr));
        OPTIM_RUN(&gr, 1, {
            double gn = norm * x + g;
            s0n = alpha * s0 + b * gn;
            xn = x - r * (nesterov ? gn + alpha * s0n : s0n);
            (void)s1;
        });
    }
    return NULL;
}

static tern_status *op_adam(op_ctx *c)
{
    double r;
    int64_t t;
    int n;
    TERN_TRY(optim_check(c, 2, &r, &t, &n));
    double alpha = op_attr_float(c, "alpha", 0.9f);
    double beta = op_attr_float(c, "beta", 0.999f);
    double eps = op_attr_float(c, "epsilon", 1e-6f);
    double norm = op_attr_float(c, "norm_coefficient", 0.0f);
    double post = op_attr_float(c, "norm_coefficient_post", 0.0f);
    /* Bias correction of both momentums, from the second step on. */
    double rate = t > 0 ? r * sqrt(1.0 - pow(beta, (double)t)) / (1.0 - pow(alpha, (double)t)) : r;
    for (int k = 0; k < n; k++) {
        group gr = {0};
        TERN_TRY(optim_group(c, 2, n, k, &gr));
        OPTIM_RUN(&gr, 2, {
            double gn = norm * x + g;
            s0n = alpha * s0 + (1.0 - alpha) * gn;
            s1n = beta * s1 + (1.0 - beta) * gn * gn;
            xn = (1.0 - post) * (x - rate * s0n / (sqrt(s1n) + eps));
        });
    }
    return NULL;
}

const op_def ops_training[] = {
    {"ai.onnx.preview.training", "Adagrad", 1, 1, op_adagrad},
    {"ai.onnx.preview.training", "Adam", 1, 1, op_adam},
    {"ai.onnx.preview.training", "Momentum", 1, 1, op_momentum},
    {0},
};
