/*
 * .npy reader and writer, see npy.h. The header is a Python dict literal; we
 * parse just the three keys numpy writes (descr, fortran_order, shape) and
 * refuse anything else we cannot represent rather than guess.
 */
#include "cli/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"

static const struct {
    const char *descr;
    tern_dtype dt;
} descrs[] = {
    {"<f4", TERN_FLOAT},
    {"<f8", TERN_DOUBLE},
    {"<f2", TERN_FLOAT16},
    {"|b1", TERN_BOOL},
    {"|u1", TERN_UINT8},
    {"|i1", TERN_INT8},
    {"<u2", TERN_UINT16},
    {"<i2", TERN_INT16},
    {"<u4", TERN_UINT32},
    {"<i4", TERN_INT32},
    {"<u8", TERN_UINT64},
    {"<i8", TERN_INT64},
    /* numpy has no bfloat16: ml_dtypes writes it as "<V2"; we use the same */
    {"<V2", TERN_BFLOAT16},
    {"|V2", TERN_BFLOAT16},
};

static tern_status *bad(const char *path, const char *why)
{
    return tern_error(TERN_ERR_INVALID_ARGUMENT, "%s: not a valid .npy file: %s", path, why);
}

/* Finds 'key': in the header dict and returns the text after the colon. */
static const char *dict_value(const char *hdr, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p = strchr(p + strlen(pat), ':');
    if (!p) return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static uint32_t utf8_decode(const unsigned char **s)
{
    const unsigned char *p = *s;
    uint32_t c = *p++;
    int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (extra) c &= (0x3f >> extra);
    for (int i = 0; i < extra && (*p & 0xc0) == 0x80; i++) c = (c << 6) | (*p++ & 0x3f);
    *s = p;
    return c;
}

static size_t utf8_encode(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

tern_status *npy_read(const char *path, tern_tensor **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tern_error(TERN_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    tern_status *st = NULL;
    char *hdr = NULL;
    unsigned char pre[12];
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = bad(path, "missing magic");
        goto done;
    }
    size_t hlen;
    if (pre[6] == 1) {
        if (fread(pre + 8, 1, 2, f) != 2) {
            st = bad(path, "truncated header");
            goto done;
        }
        hlen = pre[8] | (size_t)pre[9] << 8;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (fread(pre + 8, 1, 4, f) != 4) {
            st = bad(path, "truncated header");
            goto done;
        }
        hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    } else {
        st = bad(path, "unknown format version");
        goto done;
    }
    if (hlen > (1u << 20)) {
        st = bad(path, "header too large");
        goto done;
    }
    hdr = malloc(hlen + 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) {
        st = bad(path, "truncated header");
        goto done;
    }
    hdr[hlen] = 0;
    const char *d = dict_value(hdr, "descr"), *fo = dict_value(hdr, "fortran_order"),
               *sh = dict_value(hdr, "shape");
    if (!d || !fo || !sh || *d != '\'' || *sh != '(') {
        st = bad(path, "header lacks descr, fortran_order or shape");
        goto done;
    }
    if (strncmp(fo, "False", 5) != 0) {
        st = bad(path, "Fortran order is not supported");
        goto done;
    }
    char descr[32];
    size_t dl = strcspn(d + 1, "'");
    if (dl == 0 || dl >= sizeof descr) {
        st = bad(path, "bad descr");
        goto done;
    }
    memcpy(descr, d + 1, dl);
    descr[dl] = 0;
    int64_t dims[TERN_MAX_RANK];
    int rank = 0;
    const char *p = sh + 1;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0) {
            st = bad(path, "bad shape");
            goto done;
        }
        if (rank == TERN_MAX_RANK) {
            st = bad(path, "too many dimensions");
            goto done;
        }
        dims[rank++] = v;
        p = end;
    }
    if (shape_numel(rank, dims) < 0) {
        st = bad(path, "shape too large");
        goto done;
    }
    if (descr[1] == 'U' && (descr[0] == '<' || descr[0] == '|')) {
        long width = strtol(descr + 2, NULL, 10);
        if (width < 0 || width > (1 << 20)) {
            st = bad(path, "bad string width");
            goto done;
        }
        TERN_TRY(tern_tensor_create(TERN_STRING, rank, dims, out));
        uint32_t *buf = malloc((size_t)(width ? width : 1) * 4);
        char *s = malloc((size_t)width * 4 + 1);
        if (!buf || !s) {
            free(buf);
            free(s);
            st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < (*out)->numel && !st; i++) {
            if (fread(buf, 4, (size_t)width, f) != (size_t)width) {
                st = bad(path, "data is shorter than the shape");
                break;
            }
            size_t o = 0;
            for (long k = 0; k < width && buf[k]; k++) o += utf8_encode(buf[k], s + o);
            s[o] = 0;
            st = tern_tensor_set_string(*out, i, s);
        }
        free(buf);
        free(s);
        goto done;
    }
    tern_dtype dt = TERN_UNDEFINED;
    for (size_t i = 0; i < sizeof descrs / sizeof *descrs; i++)
        if (strcmp(descrs[i].descr, descr) == 0) dt = descrs[i].dt;
    if (dt == TERN_UNDEFINED) {
        st = tern_error(TERN_ERR_UNSUPPORTED, "%s: .npy dtype '%s' is not supported", path, descr);
        goto done;
    }
    st = tern_tensor_create(dt, rank, dims, out);
    if (st) goto done;
    size_t nb = tern_tensor_nbytes(*out);
    if (nb && fread(tern_tensor_data(*out), 1, nb, f) != nb)
        st = bad(path, "data is shorter than the shape");
done:
    if (st && *out) {
        tern_tensor_free(*out);
        *out = NULL;
    }
    free(hdr);
    fclose(f);
    return st;
}

tern_status *npy_write(const char *path, const tern_tensor *t)
{
    char descr[32] = "";
    long width = 0;
    tern_dtype dt = tern_tensor_dtype(t);
    if (t->kind != TENSOR_DENSE)
        return tern_error(TERN_ERR_UNSUPPORTED, "%s: only tensors can be written as .npy", path);
    if (dt == TERN_STRING) {
        char *const *s = t->data;
        for (int64_t i = 0; i < t->numel; i++) {
            long n = 0;
            const unsigned char *p = (const unsigned char *)(s[i] ? s[i] : "");
            while (*p) {
                utf8_decode(&p);
                n++;
            }
            if (n > width) width = n;
        }
        snprintf(descr, sizeof descr, "<U%ld", width ? width : 1);
        if (!width) width = 1;
    } else {
        for (size_t i = 0; i < sizeof descrs / sizeof *descrs; i++)
            if (descrs[i].dt == dt) {
                snprintf(descr, sizeof descr, "%s", descrs[i].descr);
                break;
            }
    }
    if (!*descr)
        return tern_error(TERN_ERR_UNSUPPORTED, "%s: dtype %s has no .npy form", path,
                          tern_dtype_name(dt));
    char shape[TERN_MAX_RANK * 24 + 8];
    size_t o = 0;
    o += (size_t)snprintf(shape + o, sizeof shape - o, "(");
    for (int i = 0; i < t->rank; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, "%lld,%s", (long long)t->dims[i],
                              i + 1 < t->rank ? " " : "");
    if (t->rank > 1) o--; /* numpy writes (2, 3) but (4,) */
    snprintf(shape + o, sizeof shape - o, ")");
    char hdr[512];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
    /* pad with spaces so that magic + len + header + '\n' is a multiple of 64 */
    int total = 10 + hl + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return tern_error(TERN_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int len = hl + pad + 1;
    pre[8] = (unsigned char)(len & 0xff);
    pre[9] = (unsigned char)(len >> 8);
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    if (ok && dt == TERN_STRING) {
        uint32_t *buf = calloc((size_t)width, 4);
        char *const *s = t->data;
        for (int64_t i = 0; ok && buf && i < t->numel; i++) {
            memset(buf, 0, (size_t)width * 4);
            const unsigned char *p = (const unsigned char *)(s[i] ? s[i] : "");
            for (long k = 0; *p && k < width; k++) buf[k] = utf8_decode(&p);
            ok = fwrite(buf, 4, (size_t)width, f) == (size_t)width;
        }
        if (!buf) ok = 0;
        free(buf);
    } else if (ok) {
        size_t nb = tern_tensor_nbytes(t);
        ok = !nb || fwrite(tern_tensor_cdata(t), 1, nb, f) == nb;
    }
    if (fclose(f) != 0) ok = 0;
    if (!ok) return tern_error(TERN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return NULL;
}

void npy_safe_name(const char *name, int index, char *buf, size_t size)
{
    size_t k = 0;
    for (; name[k] && k + 1 < size; k++) {
        char ch = name[k];
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        buf[k] = ok ? ch : '_';
    }
    buf[k] = 0;
    if (!k || !strcmp(buf, ".") || !strcmp(buf, "..")) snprintf(buf, size, "output_%d", index);
}
