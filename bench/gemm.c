/*
 * bench/gemm: tern's float32 GEMM against oneDNN's dnnl_sgemm (the peer
 * DESIGN.md names for matmul/gemm), same process, same inputs, on the
 * shapes of the served models: MLP layers at batch 1/8/32, BERT-base
 * projections, an LSTM step. A benchmark, not a test. For each shape it
 * prints the median of tern's sgemm() (packs both operands per call),
 * tern's prepacked path (B packed once, as MatMul/Gemm weights are at
 * load; A packed per call) and dnnl_sgemm, and the prepacked/dnnl ratio.
 *
 *   build/bench_gemm [THREADS]
 */
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/tpool.h"
#include "ops/linalg_gemm.h"
#include "timing.h"

int main(int argc, char **argv)
{
    int th = argc > 1 ? atoi(argv[1]) : 1;
    if (th < 1) th = 1;
    omp_set_num_threads(th);
    tpool *pool = tpool_create(th);
    static const int shapes[][3] = {{1, 512, 784},    {8, 512, 784},     {32, 512, 784},
                                    {32, 256, 512},   {128, 768, 768},   {128, 3072, 768},
                                    {1024, 768, 768}, {32, 512, 128}};
    printf("threads %d\n%6s %6s %6s  %10s %10s %10s  %s\n", th, "m", "n", "k", "tern ms",
           "prepacked", "dnnl ms", "prepacked/dnnl");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *a = malloc(sizeof(float) * (size_t)m * (size_t)k);
        float *b = malloc(sizeof(float) * (size_t)k * (size_t)n);
        float *c = malloc(sizeof(float) * (size_t)m * (size_t)n);
        float *work = malloc(sizeof(float) * (sgemm_work_floats(m, n, k) + 16));
        float *pa = malloc(sizeof(float) * (sgemm_pa_floats(m, k) + 16));
        float *pb = malloc(sizeof(float) * (sgemm_pb_all_floats(n, k) + 16));
        if (!a || !b || !c || !work || !pa || !pb) return 1;
        for (long i = 0; i < (long)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
        for (long i = 0; i < (long)k * n; i++) b[i] = (float)(i % 5) * 0.1f;
        sgemm_view v = {b, n, 1};
        sgemm_pack_b_all(n, k, sgemm_pack_view, &v, pb);
        sgemm_out o = {c, n, false, NULL};
        enum { MAX_RUNS = 200 };
        int runs = (double)m * n * k > 5e7 ? 15 : MAX_RUNS;
        double t_plain[MAX_RUNS], t_pre[MAX_RUNS], t_dnnl[MAX_RUNS];
        for (int r = 0; r < runs; r++) {
            double t = now();
            sgemm(pool, m, n, k, 1, a, k, 1, b, n, 1, 0, c, n, work);
            t_plain[r] = now() - t;
            t = now();
            sgemm_pack_a(pool, m, k, a, k, 1, pa);
            sgemm_prepacked(pool, m, n, k, 1, pa, pb, 0, &o);
            t_pre[r] = now() - t;
            t = now();
            dnnl_sgemm('N', 'N', m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
            t_dnnl[r] = now() - t;
        }
        double tp = median(t_plain, runs), tq = median(t_pre, runs), td = median(t_dnnl, runs);
        printf("%6d %6d %6d  %10.4f %10.4f %10.4f  %.2fx\n", m, n, k, tp * 1e3, tq * 1e3, td * 1e3,
               tq / td);
        free(a), free(b), free(c), free(work), free(pa), free(pb);
    }
    tpool_free(pool);
    return 0;
}
