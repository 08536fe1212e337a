/*
 * tern infer: a KServe v2 client over libcurl.
 *
 *   tern infer MODEL --input NAME=FILE.npy [--input ...] [--binary] [--url URL]
 *              [--version N] [--output NAME]... [--output-dir DIR] [--timeout-secs S]
 *
 * One request, one response: the inputs are read from .npy files, encoded
 * (infer_codec.c) as JSON or with Triton's binary tensor extension, POSTed to
 * URL/v2/models/MODEL[/versions/N]/infer, and the response decoded back into
 * tensors, which are printed or written as DIR/<output>.npy. The whole
 * response is held in memory: this is a tool for people and scripts, not a
 * load generator. A server error is one line, "HTTP <status>: <message>",
 * and exit status 1; usage errors exit 2.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/infer_codec.h"
#include "cli/npy.h"
#include "core/dtype.h"
#include "server/kserve.h"

#define DEFAULT_URL "http://127.0.0.1:8000"
#define DEFAULT_TIMEOUT_SECS 60.0
#define PRINT_MAX 20

static int usage(FILE *f)
{
    fprintf(f,
            "usage: tern infer MODEL --input NAME=FILE.npy [--input ...] [options]\n"
            "  call a KServe v2 server (tern serve, Triton, KServe) and print the outputs\n\n"
            "  --input NAME=FILE.npy  an input tensor (repeatable)\n"
            "  --binary               send and receive tensors as binary data (Triton's binary\n"
            "                         tensor extension) instead of JSON\n"
            "  --url URL              server address (default " DEFAULT_URL ")\n"
            "  --version N            ask for model version N (default: the server's choice)\n"
            "  --output NAME          ask for this output only (repeatable; default: all)\n"
            "  --output-dir DIR       write DIR/<output>.npy instead of printing values\n"
            "  --timeout-secs S       give up after S seconds (default %g; 0: never)\n",
            DEFAULT_TIMEOUT_SECS);
    return f == stderr ? 2 : 0;
}

/* ---- HTTP -------------------------------------------------------------- */

typedef struct reply {
    char *body;
    size_t len, cap;
    long long header_len; /* Inference-Header-Content-Length, -1 if absent */
    bool bad_header;
    bool no_memory;
} reply;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    reply *r = arg;
    size_t n = size * nmemb;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) {
            r->no_memory = true;
            return 0; /* makes curl stop with CURLE_WRITE_ERROR */
        }
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = 0;
    return n;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
    reply *r = arg;
    size_t n = size * nmemb;
    static const char key[] = "Inference-Header-Content-Length:";
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response (after 100 Continue) */
        r->header_len = -1;
        r->bad_header = false;
    } else if (n > sizeof key - 1 && !strncasecmp(line, key, sizeof key - 1)) {
        char val[32];
        size_t k = 0;
        for (size_t i = sizeof key - 1; i < n && k + 1 < sizeof val; i++)
            if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n')
                val[k++] = line[i];
        val[k] = 0;
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        r->header_len = v;
        r->bad_header = !k || *end || errno || v < 0;
    }
    return n;
}

/* URL/v2/models/MODEL[/versions/N]/infer with the names percent-encoded. */
static char *infer_url(CURL *c, const char *base, const char *model, const char *version)
{
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    char *m = curl_easy_escape(c, model, 0);
    char *v = version ? curl_easy_escape(c, version, 0) : NULL;
    char *url = NULL;
    if (m && (v || !version) &&
        asprintf(&url, "%.*s/v2/models/%s%s%s/infer", (int)bl, base, m, v ? "/versions/" : "",
                 v ? v : "") < 0)
        url = NULL;
    curl_free(m);
    curl_free(v);
    return url;
}

/* POSTs body to url; on return *status holds the HTTP status. */
static tern_status *http_post(const char *url, const char *body, size_t len, long long header_len,
                              double timeout_secs, long *status, reply *r)
{
    CURL *c = curl_easy_init();
    if (!c) return tern_error(TERN_ERR_NO_MEMORY, "cannot start libcurl");
    char errbuf[CURL_ERROR_SIZE] = "", hdr[96];
    struct curl_slist *headers = NULL, *h = NULL;
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %lld", header_len);
    /* no "Expect: 100-continue" round trip before large bodies */
    headers = curl_slist_append(NULL, "Expect:");
    if (headers)
        h = curl_slist_append(headers, header_len >= 0 ? "Content-Type: application/octet-stream"
                                                       : "Content-Type: application/json");
    if (headers && h && header_len >= 0) h = curl_slist_append(headers, hdr);
    if (!headers || !h) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        return tern_error(TERN_ERR_NO_MEMORY, "out of memory");
    }
    long timeout_ms = timeout_secs > 0 ? (long)ceil(timeout_secs * 1000) : 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tern-infer");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (timeout_ms && timeout_ms < 10000)
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return cli_curl_result(rc, url, errbuf, r->no_memory);
}

/* ---- printing ---------------------------------------------------------- */

/* Shortest text that reads back as the same value. */
static void print_real(double v, bool single)
{
    char buf[40];
    for (int p = single ? 6 : 15; p <= (single ? 9 : 17); p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    fputs(isnan(v) ? "nan" : buf, stdout);
}

static void print_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void print_element(const tern_tensor *t, int64_t i)
{
    const void *d = tern_tensor_cdata(t);
    switch (t->dtype) {
    case TERN_BOOL: fputs(((const bool *)d)[i] ? "true" : "false", stdout); break;
    case TERN_STRING: print_string(((const char *const *)d)[i]); break;
    case TERN_UINT64: printf("%" PRIu64, ((const uint64_t *)d)[i]); break;
    case TERN_FLOAT: print_real(((const float *)d)[i], true); break;
    case TERN_DOUBLE: print_real(((const double *)d)[i], false); break;
    case TERN_FLOAT16: print_real(f16_to_f32(((const uint16_t *)d)[i]), true); break;
    case TERN_BFLOAT16: print_real(bf16_to_f32(((const uint16_t *)d)[i]), true); break;
    default: printf("%" PRId64, dtype_get_i64(t->dtype, d, i)); break;
    }
}

static void print_header(const char *label, const tern_tensor *t)
{
    char shape[256];
    printf("%s %s %s\n", label, kserve_dtype_name(t->dtype),
           shape_str(t->rank, t->dims, shape, sizeof shape));
}

/* name DATATYPE [shape], then up to PRINT_MAX values on one line. */
static void print_output(const char *name, const tern_tensor *t)
{
    print_header(name, t);
    int64_t n = t->numel, shown = n < PRINT_MAX ? n : PRINT_MAX;
    printf(" ");
    for (int64_t i = 0; i < shown; i++) {
        putchar(' ');
        print_element(t, i);
    }
    if (n > shown || n == 0) printf("%s(%" PRId64 " values)", n ? " ... " : " ", n);
    putchar('\n');
}

static tern_status *write_outputs(const char *dir, const infer_response *res)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return tern_error(TERN_ERR_IO, "--output-dir %s: %s", dir, strerror(errno));
    for (int i = 0; i < res->n; i++) {
        char safe[256], path[4096];
        npy_safe_name(res->names[i], i, safe, sizeof safe);
        snprintf(path, sizeof path, "%s/%s.npy", dir, safe);
        TERN_TRY(tern_error_wrap(npy_write(path, res->outputs[i]), "output '%s'", res->names[i]));
        print_header(path, res->outputs[i]);
    }
    return NULL;
}

/* ---- command ----------------------------------------------------------- */

typedef struct args {
    const char *model, *url, *version, *outdir;
    double timeout_secs;
    bool binary;
    int n_in, n_out;
    const char **in_names, **out_names;
    tern_tensor **ins;
} args;

/* Parses argv; returns 0 on success, else the exit status. */
static int parse_args(int argc, char **argv, args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            return -1;
        } else if (!strcmp(s, "--binary")) {
            a->binary = true;
        } else if (!strcmp(s, "--input") && has_val) {
            int rc = cli_read_input(argv[++i], &a->in_names[a->n_in], &a->ins[a->n_in]);
            if (rc) return rc;
            a->n_in++;
        } else if (!strcmp(s, "--output") && has_val) {
            a->out_names[a->n_out++] = argv[++i];
        } else if (!strcmp(s, "--url") && has_val) {
            a->url = argv[++i];
        } else if (!strcmp(s, "--version") && has_val) {
            a->version = argv[++i];
            if (!*a->version) {
                fprintf(stderr, "tern: error: --version must not be empty\n");
                return 2;
            }
        } else if (!strcmp(s, "--output-dir") && has_val) {
            a->outdir = argv[++i];
        } else if (!strcmp(s, "--timeout-secs") && has_val) {
            char *end;
            const char *v = argv[++i];
            errno = 0;
            a->timeout_secs = strtod(v, &end);
            if (errno || end == v || *end || !(a->timeout_secs >= 0) || a->timeout_secs > 1e6) {
                fprintf(stderr,
                        "tern: error: --timeout-secs must be a number of seconds from 0 to "
                        "1000000, got '%s'\n",
                        v);
                return 2;
            }
        } else if (s[0] == '-' || a->model) {
            static const char *const valued[] = {"--input",   "--output",     "--url",
                                                 "--version", "--output-dir", "--timeout-secs"};
            cli_bad_argument(s, valued, sizeof valued / sizeof *valued);
            return usage(stderr);
        } else {
            a->model = s;
        }
    }
    if (!a->model || !*a->model) {
        fprintf(stderr, "tern: error: infer wants a MODEL name\n");
        return usage(stderr);
    }
    return 0;
}

static int infer(const args *a)
{
    char *body = NULL, *url = NULL;
    size_t len;
    long long header_len;
    reply r = {.header_len = -1};
    infer_response *res = NULL;
    int rc = 1;
    tern_status *st =
        infer_encode_request(a->n_in, a->in_names, (const tern_tensor *const *)a->ins, a->n_out,
                             a->out_names, a->binary, &body, &len, &header_len);
    if (st) goto out;
    CURL *c = curl_easy_init();
    url = c ? infer_url(c, a->url, a->model, a->version) : NULL;
    curl_easy_cleanup(c);
    if (!url) {
        st = tern_error(TERN_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    long status = 0;
    st = http_post(url, body, len, header_len, a->timeout_secs, &status, &r);
    if (st) goto out;
    if (status < 200 || status > 299) {
        char *msg = infer_error_message(r.body ? r.body : "", r.len);
        st = tern_error(TERN_ERR_RUNTIME, "HTTP %ld: %s", status, msg ? msg : "out of memory");
        free(msg);
        goto out;
    }
    if (r.bad_header) {
        st = tern_error(TERN_ERR_INVALID_ARGUMENT,
                        "malformed response: Inference-Header-Content-Length is not a byte count");
        goto out;
    }
    st = infer_decode_response(r.body ? r.body : "", r.len, r.header_len, &res);
    if (st) goto out;
    if (a->outdir) {
        st = write_outputs(a->outdir, res);
        if (st) goto out;
    } else {
        for (int i = 0; i < res->n; i++) print_output(res->names[i], res->outputs[i]);
    }
    rc = 0;
out:
    if (st) rc = cli_fail(st);
    infer_response_free(res);
    free(r.body);
    free(url);
    free(body);
    return rc;
}

int cmd_infer(int argc, char **argv)
{
    args a = {.url = DEFAULT_URL, .timeout_secs = DEFAULT_TIMEOUT_SECS};
    a.in_names = calloc((size_t)argc + 1, sizeof *a.in_names);
    a.out_names = calloc((size_t)argc + 1, sizeof *a.out_names);
    a.ins = calloc((size_t)argc + 1, sizeof *a.ins);
    int rc = 1;
    if (!a.in_names || !a.out_names || !a.ins) {
        fprintf(stderr, "tern: error: out of memory\n");
        goto out;
    }
    rc = parse_args(argc, argv, &a);
    if (rc) {
        if (rc < 0) rc = 0; /* --help */
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tern: error: cannot initialise libcurl\n");
        rc = 1;
        goto out;
    }
    rc = infer(&a);
    curl_global_cleanup();
out:
    for (int i = 0; i < a.n_in; i++) tern_tensor_free(a.ins[i]);
    free(a.ins);
    free(a.in_names);
    free(a.out_names);
    return rc;
}
