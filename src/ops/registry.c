/*
 * The operator registry: every family's table, searched by (domain, op_type,
 * opset). Tables are small and lookups happen once per node at load time, so
 * a linear scan is enough.
 */
#include <string.h>

#include "ops/op.h"

/* One table per family file; each ends with an entry whose op_type is NULL. */
extern const op_def ops_elementwise[];
extern const op_def ops_linalg[];
extern const op_def ops_conv[];
extern const op_def ops_pool[];
extern const op_def ops_reduce[];
extern const op_def ops_norm[];
extern const op_def ops_shape[];
extern const op_def ops_gather[];
extern const op_def ops_control[];
extern const op_def ops_sequence[];
extern const op_def ops_rnn[];
extern const op_def ops_quant[];
extern const op_def ops_image[];
extern const op_def ops_signal[];
extern const op_def ops_text[];
extern const op_def ops_random[];
extern const op_def ops_training[];
extern const op_def ops_fused[];
extern const op_def ops_fused_attn[];

static const op_def *const tables[] = {
    ops_elementwise, ops_linalg, ops_conv,    ops_pool,     ops_reduce,   ops_norm,
    ops_shape,       ops_gather, ops_control, ops_sequence, ops_rnn,      ops_quant,
    ops_image,       ops_signal, ops_text,    ops_random,   ops_training, ops_fused,
    ops_fused_attn,
};

static const char *canon(const char *domain)
{
    if (!domain || strcmp(domain, "ai.onnx") == 0) return "";
    return domain;
}

const op_def *op_lookup(const char *domain, const char *op_type, int64_t opset)
{
    domain = canon(domain);
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++)
        for (const op_def *d = tables[t]; d->op_type; d++)
            if (strcmp(d->op_type, op_type) == 0 && strcmp(canon(d->domain), domain) == 0 &&
                opset >= d->since && opset <= d->until)
                return d;
    return NULL;
}

bool op_known(const char *domain, const char *op_type)
{
    domain = canon(domain);
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++)
        for (const op_def *d = tables[t]; d->op_type; d++)
            if (strcmp(d->op_type, op_type) == 0 && strcmp(canon(d->domain), domain) == 0)
                return true;
    return false;
}

int op_domain_max_opset(const char *domain)
{
    domain = canon(domain);
    if (strcmp(domain, "") == 0) return 17;
    if (strcmp(domain, "ai.onnx.ml") == 0) return 3;
    if (strcmp(domain, "ai.onnx.preview.training") == 0) return 1;
    return -1;
}

void op_foreach(void (*fn)(const op_def *d, void *arg), void *arg)
{
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++)
        for (const op_def *d = tables[t]; d->op_type; d++) fn(d, arg);
}
