/* The codec's fast lane for numeric data (kserve_fast.c) against libc's
 * strtod, the reference the full path uses: every float and double must come
 * out bit-identical, integers must be exact, and irregular lists must be
 * declined (left to the full path) rather than decoded differently. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/kserve.h"
#include "server/kserve_fast.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t next_u64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Builds {"inputs":[{"name":"x","shape":[n],"datatype":DT,"data":[...]}]}. */
static char *request(const char *dt, char **tokens, int n)
{
    size_t cap = 256;
    for (int i = 0; i < n; i++) cap += strlen(tokens[i]) + 2;
    char *b = malloc(cap);
    size_t o = (size_t)sprintf(
        b, "{\"inputs\":[{\"name\":\"x\",\"shape\":[%d],\"datatype\":\"%s\",\"data\":[", n, dt);
    for (int i = 0; i < n; i++) o += (size_t)sprintf(b + o, i ? ", %s" : "%s", tokens[i]);
    sprintf(b + o, "]}]}");
    return b;
}

static void test_floats_match_strtod(void **state)
{
    (void)state;
    enum { N = 4000 };
    char *tok[N];
    for (int rep = 0; rep < 25; rep++) {
        for (int i = 0; i < N; i++) {
            char buf[64];
            uint64_t r = next_u64();
            switch (r % 6) {
            case 0: { /* a float32 printed as a double, as Python clients do */
                uint32_t bits = (uint32_t)(next_u64() >> 32);
                float f;
                memcpy(&f, &bits, 4);
                if (!isfinite(f)) f = 1.5f;
                snprintf(buf, sizeof buf, "%.17g", (double)f);
                break;
            }
            case 1:
                snprintf(buf, sizeof buf, "%.9g", ldexp((double)(next_u64() >> 11), -53));
                break;
            case 2:
                snprintf(buf, sizeof buf, "%.19e",
                         ldexp((double)(next_u64() >> 11), (int)(next_u64() % 180) - 110));
                break;
            case 3:
                snprintf(buf, sizeof buf, "%lld", (long long)(next_u64() >> (next_u64() % 64)));
                break;
            case 4: snprintf(buf, sizeof buf, "-%.3f", (double)(next_u64() % 100000) / 7.0); break;
            default:
                snprintf(buf, sizeof buf, "%.25g", ldexp((double)(next_u64() >> 11), -60));
                break;
            }
            /* %g may print "inf"/"nan"-free forms only; JSON needs a digit before '.' */
            tok[i] = strdup(buf);
        }
        char *body = request("FP32", tok, N);
        kserve_request *r = NULL;
        tern_status *st = kserve_decode_request(body, strlen(body), -1, NULL, &r);
        if (st) fail_msg("%s", tern_status_message(st));
        const float *got = tern_tensor_cdata(r->inputs[0]);
        for (int i = 0; i < N; i++) {
            float want = (float)strtod(tok[i], NULL);
            if (memcmp(&got[i], &want, 4) != 0)
                fail_msg("'%s': got %.9g, strtod gives %.9g", tok[i], got[i], want);
        }
        kserve_request_free(r);
        free(body);
        body = request("FP64", tok, N);
        assert_null(kserve_decode_request(body, strlen(body), -1, NULL, &r));
        const double *gd = tern_tensor_cdata(r->inputs[0]);
        for (int i = 0; i < N; i++) {
            double want = strtod(tok[i], NULL);
            if (memcmp(&gd[i], &want, 8) != 0) fail_msg("'%s': double differs", tok[i]);
        }
        kserve_request_free(r);
        free(body);
        for (int i = 0; i < N; i++) free(tok[i]);
    }
}

static void test_midpoints_and_edges(void **state)
{
    (void)state;
    /* float rounding midpoints and their neighbours, written exactly */
    const char *cases[] = {"16777217",
                           "16777216.000000001",
                           "16777216.999999999",
                           "0.1",
                           "3.4028234663852886e38",
                           "1.1754943508222875e-38",
                           "1e-45",
                           "-0",
                           "0.000000000000000000000000000000000000000000001",
                           "1.00000005960464477539062",
                           "1.0000000596046447753906250000001",
                           "1e27",
                           "12345678901234567890.5"};
    int n = (int)(sizeof cases / sizeof *cases);
    char *body = request("FP32", (char **)cases, n);
    kserve_request *r = NULL;
    tern_status *st = kserve_decode_request(body, strlen(body), -1, NULL, &r);
    if (st) fail_msg("%s", tern_status_message(st));
    const float *got = tern_tensor_cdata(r->inputs[0]);
    for (int i = 0; i < n; i++) {
        float want = (float)strtod(cases[i], NULL);
        if (memcmp(&got[i], &want, 4) != 0)
            fail_msg("'%s': got %.9g want %.9g", cases[i], got[i], want);
    }
    kserve_request_free(r);
    free(body);
}

static void test_integers_exact_and_checked(void **state)
{
    (void)state;
    const char *ok[] = {"0", "-9223372036854775808", "9223372036854775807", "42", "-1"};
    char *body = request("INT64", (char **)ok, 5);
    kserve_request *r = NULL;
    assert_null(kserve_decode_request(body, strlen(body), -1, NULL, &r));
    const int64_t *v = tern_tensor_cdata(r->inputs[0]);
    assert_true(v[1] == INT64_MIN && v[2] == INT64_MAX && v[3] == 42 && v[4] == -1);
    kserve_request_free(r);
    free(body);
    /* values the lane must not accept: the full path's error comes back */
    const char *bad8[] = {"1", "300"};
    body = request("UINT8", (char **)bad8, 2);
    tern_status *st = kserve_decode_request(body, strlen(body), -1, NULL, &r);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "input 'x'"));
    tern_status_free(st);
    free(body);
    const char *frac[] = {"1.5"};
    body = request("INT32", (char **)frac, 1);
    st = kserve_decode_request(body, strlen(body), -1, NULL, &r);
    assert_non_null(st);
    tern_status_free(st);
    free(body);
}

static void test_scan_declines_irregular_lists(void **state)
{
    (void)state;
    kfast f;
    /* nested lists and strings are the full path's: values still right */
    const char *nested = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\","
                         "\"data\":[[1,2],[3,4]]},{\"name\":\"y\",\"shape\":[1],"
                         "\"datatype\":\"BYTES\",\"data\":[\"a]\"]}]}";
    kserve_request *nr = NULL;
    tern_status *nst = kserve_decode_request(nested, strlen(nested), -1, NULL, &nr);
    if (nst) fail_msg("%s", tern_status_message(nst));
    const float *nv = tern_tensor_cdata(nr->inputs[0]);
    assert_true(nv[0] == 1 && nv[1] == 2 && nv[2] == 3 && nv[3] == 4);
    assert_string_equal(((char *const *)tern_tensor_cdata(nr->inputs[1]))[0], "a]");
    kserve_request_free(nr);
    /* lists that only look numeric: the scan may take them, but decoding
     * must end in the full path's JSON error, never in numbers */
    const char *fake[] = {"[01]", "[1 2]", "[1,]", "[,1]",  "[1.]", "[-]",
                          "[1e]", "[+1]",  "[.5]", "[1e+]", "[-01]"};
    const char *dts[] = {"FP32", "FP64", "INT32", "UINT64", "FP16"};
    for (size_t q = 0; q < sizeof fake / sizeof *fake * 5; q++) {
        char b[256];
        snprintf(b, sizeof b,
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"%s\","
                 "\"data\":%s}]}",
                 dts[q % 5], fake[q / 5]);
        kserve_request *r = NULL;
        tern_status *st = kserve_decode_request(b, strlen(b), -1, NULL, &r);
        if (!st) fail_msg("%s decoded as %s", fake[q / 5], dts[q % 5]);
        assert_non_null(strstr(tern_status_message(st), "not valid JSON"));
        tern_status_free(st);
    }
    const char *other = "{\"parameters\":{\"data\":[1,2]},\"inputs\":[{\"name\":\"y\",\"data\":[1, "
                        "2 ,3]},{\"name\":\"x\",\"data\":[5]}]}";
    assert_true(kfast_scan(other, strlen(other), &f));
    assert_int_equal(f.n_lists, 2);
    float v[3];
    assert_true(kfast_convert(&f.lists[0], TERN_FLOAT, 3, v));
    assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3);
    assert_false(kfast_convert(&f.lists[0], TERN_FLOAT, 2, v)); /* count must match */
    assert_true(kfast_convert(&f.lists[1], TERN_FLOAT, 1, v));
    size_t len;
    char *s = kfast_strip(other, strlen(other), &f, &len);
    assert_string_equal(s, "{\"parameters\":{\"data\":[1,2]},\"inputs\":[{\"name\":\"y\",\"data\":["
                           "]},{\"name\":\"x\",\"data\":[]}]}");
    assert_int_equal(len, strlen(s));
    free(s);
    /* strings containing brackets and escaped quotes do not confuse the walk */
    const char *tricky =
        "{\"id\":\"a]\\\"[{\",\"inputs\":[{\"name\":\"x]\",\"data\":[1e3,-2.5E-1]}]}";
    assert_true(kfast_scan(tricky, strlen(tricky), &f));
    assert_true(kfast_convert(&f.lists[0], TERN_FLOAT, 2, v));
    assert_true(v[0] == 1000 && v[1] == -0.25f);
}

static void test_huge_shape_small_list_allocates_nothing(void **state)
{
    (void)state;
    /* 2^39 elements declared, 3 given: the count error, not a 2 TB malloc
     * (ASan refuses allocations that large, so this test would abort) */
    const char *b = "{\"inputs\":[{\"name\":\"x\",\"shape\":[549755813888],"
                    "\"datatype\":\"FP32\",\"data\":[1,2,3]}]}";
    kserve_request *r = NULL;
    tern_status *st = kserve_decode_request(b, strlen(b), -1, NULL, &r);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "3 elements"));
    tern_status_free(st);
}

static void test_numbers_for_bytes_and_bool_inputs(void **state)
{
    (void)state;
    /* numeric lists for BYTES/BOOL inputs: the full path's type error */
    const char *dts[] = {"BYTES", "BOOL"};
    for (int q = 0; q < 2; q++) {
        char b[200];
        snprintf(b, sizeof b,
                 "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"%s\","
                 "\"data\":[1,2]}]}",
                 dts[q]);
        kserve_request *r = NULL;
        tern_status *st = kserve_decode_request(b, strlen(b), -1, NULL, &r);
        assert_non_null(st);
        assert_non_null(strstr(tern_status_message(st), "input 'x'"));
        tern_status_free(st);
    }
}

static void test_count_mismatch_gives_full_error(void **state)
{
    (void)state;
    const char *b = "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\",\"data\":["
                    "1,2,3,4,5]}]}";
    kserve_request *r = NULL;
    tern_status *st = kserve_decode_request(b, strlen(b), -1, NULL, &r);
    assert_non_null(st);
    assert_non_null(strstr(tern_status_message(st), "5 elements"));
    assert_non_null(strstr(tern_status_message(st), "needs 6"));
    tern_status_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floats_match_strtod),
        cmocka_unit_test(test_midpoints_and_edges),
        cmocka_unit_test(test_integers_exact_and_checked),
        cmocka_unit_test(test_scan_declines_irregular_lists),
        cmocka_unit_test(test_count_mismatch_gives_full_error),
        cmocka_unit_test(test_numbers_for_bytes_and_bool_inputs),
        cmocka_unit_test(test_huge_shape_small_list_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
