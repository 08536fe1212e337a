/*
 * Embedding libtern: load a model, describe it, run it once on zeros and
 * print the first output's top value. Build: see CMakeLists.txt (target
 * example_classify). Usage: example_classify MODEL.onnx [BATCH]
 */
#include <stdio.h>
#include <stdlib.h>

#include "tern/engine.h"

static int die(tern_status *st)
{
    fprintf(stderr, "error: %s\n", tern_status_message(st));
    tern_status_free(st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.onnx [BATCH]\n", argv[0]);
        return 2;
    }
    int64_t batch = argc > 2 ? atoll(argv[2]) : 1;
    tern_options *opt = tern_options_create();
    tern_options_set_threads(opt, 1);
    tern_session *s;
    tern_status *st = tern_session_create(argv[1], opt, &s);
    tern_options_free(opt);
    if (st) return die(st);

    int n_in = tern_session_input_count(s);
    tern_tensor **ins = calloc((size_t)n_in + 1, sizeof *ins);
    const char **names = calloc((size_t)n_in + 1, sizeof *names);
    for (int i = 0; i < n_in; i++) {
        const tern_io_info *io = tern_session_input(s, i);
        int64_t dims[TERN_MAX_RANK];
        for (int d = 0; d < io->rank; d++) dims[d] = io->dims[d] >= 0 ? io->dims[d] : batch;
        printf("input %s: %s rank %d\n", io->name, tern_dtype_name(io->dtype), io->rank);
        st = tern_tensor_create(io->dtype, io->rank < 0 ? 0 : io->rank, dims, &ins[i]);
        if (st) return die(st);
        names[i] = io->name;
    }
    int n_out = tern_session_output_count(s);
    tern_tensor **outs = calloc((size_t)n_out + 1, sizeof *outs);
    st = tern_session_run(s, n_in, names, (const tern_tensor *const *)ins, outs);
    if (st) return die(st);
    for (int j = 0; j < n_out; j++) {
        printf("output %s: %s, %lld elements", tern_session_output(s, j)->name,
               tern_dtype_name(tern_tensor_dtype(outs[j])), (long long)tern_tensor_numel(outs[j]));
        if (tern_tensor_dtype(outs[j]) == TERN_FLOAT && tern_tensor_numel(outs[j]) > 0) {
            const float *v = tern_tensor_cdata(outs[j]);
            int64_t best = 0;
            for (int64_t k = 1; k < tern_tensor_numel(outs[j]); k++)
                if (v[k] > v[best]) best = k;
            printf(", argmax %lld (%g)", (long long)best, v[best]);
        }
        printf("\n");
        tern_tensor_free(outs[j]);
    }
    for (int i = 0; i < n_in; i++) tern_tensor_free(ins[i]);
    free(ins);
    free(names);
    free(outs);
    tern_session_free(s);
    return 0;
}
