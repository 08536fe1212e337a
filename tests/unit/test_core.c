/* Unit tests of core/: float16/bfloat16 conversion, the arena, the thread
 * pool, tensors. References are IEEE facts (bit patterns of known values),
 * not output of our own code. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/arena.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/tpool.h"

static void test_f16_known_values(void **state)
{
    (void)state;
    /* binary16 encodings from IEEE 754 */
    assert_int_equal(f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(f32_to_f16(65504.0f), 0x7bff);      /* max finite */
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);      /* rounds to inf */
    assert_int_equal(f32_to_f16(5.9604645e-8f), 0x0001); /* min subnormal */
    assert_int_equal(f32_to_f16(0.0f), 0x0000);
    assert_int_equal(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    assert_int_equal(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    assert_true(isnan(f16_to_f32(0x7e00)));
    assert_true(f16_to_f32(0x0001) == 5.9604645e-8f);
    assert_true(f16_to_f32(0x3555) == 0.333251953125f);
    /* every finite half survives a round trip through float */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        assert_int_equal(f32_to_f16(f16_to_f32((uint16_t)h)), h);
    }
}

static void test_bf16(void **state)
{
    (void)state;
    assert_int_equal(f32_to_bf16(1.0f), 0x3f80);
    assert_true(bf16_to_f32(0x4049) == 3.140625f);
    assert_int_equal(f32_to_bf16(3.14159265f), 0x4049);
    assert_true(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

static void test_arena_reuse(void **state)
{
    (void)state;
    arena a;
    arena_init(&a);
    char *p1 = arena_alloc(&a, 100), *p2 = arena_alloc(&a, 3u << 20);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_int_equal((uintptr_t)p1 % 64, 0);
    assert_int_equal((uintptr_t)p2 % 64, 0);
    size_t total = a.total;
    for (int round = 0; round < 5; round++) { /* same sizes: no new blocks */
        arena_reset(&a);
        assert_ptr_equal(arena_alloc(&a, 100), p1);
        assert_non_null(arena_alloc(&a, 3u << 20));
        assert_int_equal(a.total, total);
    }
    arena_mark m = arena_get_mark(&a);
    char *p3 = arena_alloc(&a, 10);
    arena_release(&a, m);
    assert_ptr_equal(arena_alloc(&a, 10), p3);
    arena_free(&a);
}

static void add_range(void *arg, int64_t b, int64_t e)
{
    int64_t *v = arg;
    for (int64_t i = b; i < e; i++) v[i] += i;
}

static void test_tpool_covers_range_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        tpool *p = tpool_create(threads);
        assert_non_null(p);
        static int64_t v[100003];
        for (int rep = 0; rep < 20; rep++) {
            memset(v, 0, sizeof v);
            tpool_for(p, 100003, 7, add_range, v);
            for (int64_t i = 0; i < 100003; i++) assert_int_equal(v[i], i);
        }
        tpool_free(p);
    }
}

static void test_tensor_shapes(void **state)
{
    (void)state;
    tern_tensor *t;
    int64_t dims[3] = {2, 0, 5};
    assert_null(tern_tensor_create(TERN_FLOAT, 3, dims, &t));
    assert_int_equal(tern_tensor_numel(t), 0);
    tern_tensor_free(t);
    int64_t neg[1] = {-1};
    tern_status *st = tern_tensor_create(TERN_FLOAT, 1, neg, &t);
    assert_non_null(st);
    assert_int_equal(tern_status_code(st), TERN_ERR_INVALID_ARGUMENT);
    tern_status_free(st);
    int64_t huge[2] = {INT64_MAX / 2, 4};
    st = tern_tensor_create(TERN_FLOAT, 2, huge, &t);
    assert_non_null(st);
    tern_status_free(st);
    int64_t two[1] = {2};
    assert_null(tern_tensor_create(TERN_STRING, 1, two, &t));
    assert_null(tern_tensor_set_string(t, 1, "héllo"));
    assert_string_equal(((char **)tern_tensor_data(t))[1], "héllo");
    assert_string_equal(((char **)tern_tensor_data(t))[0], "");
    tern_tensor *d;
    assert_null(tensor_dup(t, &d));
    assert_string_equal(((char **)tern_tensor_data(d))[1], "héllo");
    tern_tensor_free(d);
    tern_tensor_free(t);
}

static void test_saturating_casts(void **state)
{
    (void)state;
    int8_t i8;
    dtype_set_f64(TERN_INT8, &i8, 0, 1e9);
    assert_int_equal(i8, 127); /* saturates to the type's range: no UB */
    dtype_set_f64(TERN_INT8, &i8, 0, -1e9);
    assert_int_equal(i8, -128);
    uint8_t u8;
    dtype_set_f64(TERN_UINT8, &u8, 0, -3.0);
    assert_int_equal(u8, 0);
    int64_t i64;
    dtype_set_f64(TERN_INT64, &i64, 0, NAN);
    assert_int_equal(i64, 0);
    dtype_set_f64(TERN_INT64, &i64, 0, -1e300);
    assert_true(i64 == INT64_MIN);
}

static void test_rng_matches_reference(void **state)
{
    (void)state;
    rng r;
    rng_seed(&r, 5489); /* the reference implementation's default seed */
    assert_int_equal(rng_u32(&r), 3499211612u);
    rng_seed(&r, 0); /* numpy: np.random.seed(0); np.random.random(), normal() */
    assert_true(rng_double(&r) == 0.5488135039273248);
    rng_seed(&r, 0);
    rng_double(&r);
    assert_true(fabs(rng_gauss(&r) - 0.7415917408091613) < 1e-15);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_arena_reuse),
        cmocka_unit_test(test_tpool_covers_range_once),
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_saturating_casts),
        cmocka_unit_test(test_rng_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
