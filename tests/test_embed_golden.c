/* test_embed_golden.c: cosine >= 0.99999 to sentence-transformers' vectors for every
 * golden text (tests/data/embed_texts.jsonl + embed_golden.f32 from
 * tests/golden/gen_golden.py); reports min/mean cosine and max |difference|. Also checks
 * that batching and thread count do not change the vectors.
 * Built a second time with CV_TEST_CUDA as test_embed_golden_cuda: the same texts on the
 * CUDA backend (fp16 GEMMs), cosine >= 0.9999, SKIPPED (exit 77) without a device. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../kernels/backend.h"
#include "../kernels/cpu/cpu_ops.h"
#include "../models/minilm.h"
#include "test_util.h"

#define DIM 384

#ifdef CV_TEST_CUDA_SIM
void cusim_fail_malloc_at(long n); /* tests/cuda_sim: the n-th cudaMalloc from now fails */
long cusim_live_allocations(void);
long cusim_graph_launch_count(void);
#endif

/* test_embed_golden_cudasim (tests/cuda_sim/): the CUDA build on the CPU execution layer, on
 * every 3rd text (all the truncated ones among them) and a shorter batching check, to keep CI
 * time small. */
#ifdef CV_TEST_CUDA_SIM
#define STEP      3
#define BATCH_N   8
#define MIN_TEXTS 70
#define MIN_LONG  7
#else
#define STEP      1
#define BATCH_N   40
#define MIN_TEXTS 200
#define MIN_LONG  20
#endif

#ifdef CV_TEST_CUDA
#define DEVICE    CV_DEVICE_CUDA
#define MIN_COS   0.9999
#define BATCH_TOL 2e-4f /* cuBLAS may choose other kernels for other batch shapes */
#else
#define DEVICE    CV_DEVICE_CPU
#define MIN_COS   0.99999
#define BATCH_TOL 1e-5f
#endif

static char **texts;
static size_t *lens;
static int ntexts;
static float *golden;

static int setup(void **state) {
    (void)state;
    FILE *f = fopen(CV_TEST_DATA "/embed_texts.jsonl", "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int capn = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        if (!o) return -1;
        json_t *s = json_object_get(o, "text");
        if (ntexts == capn) {
            capn = capn ? 2 * capn : 256;
            texts = realloc(texts, sizeof(char *) * (size_t)capn);
            lens = realloc(lens, sizeof(size_t) * (size_t)capn);
        }
        lens[ntexts] = json_string_length(s);
        texts[ntexts] = malloc(lens[ntexts] + 1);
        memcpy(texts[ntexts], json_string_value(s), lens[ntexts] + 1);
        ntexts++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    size_t len;
    golden = (float *)tu_read_file(CV_TEST_DATA "/embed_golden.f32", &len);
    if (!golden || len != sizeof(float) * DIM * (size_t)ntexts) {
        fprintf(stderr, "embed_golden.f32 has %zu bytes for %d texts\n", len, ntexts);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < ntexts; i++)
        free(texts[i]);
    free(texts), free(lens), free(golden);
    return 0;
}

static cv_minilm *load(int threads) {
    cv_minilm_opts o = {.threads = threads, .device = DEVICE};
    cv_minilm *m = NULL;
    cv_err err = cv_minilm_load(cv_minilm_default_dir(), &o, &m);
    if (err)
        fprintf(stderr, "cannot load the model from %s: %s; run python3 models/fetch_model.py\n",
                cv_minilm_default_dir(), cv_strerror(err));
    assert_int_equal(err, CV_OK);
    return m;
}

static void golden_cosine(const char *what, double min_required) {
    cv_minilm *m = load(0);
    /* the texts checked: every STEP-th */
    int n = 0;
    char **sel = malloc(sizeof(char *) * (size_t)ntexts);
    size_t *sel_len = malloc(sizeof(size_t) * (size_t)ntexts);
    for (int i = 0; i < ntexts; i += STEP)
        sel[n] = texts[i], sel_len[n++] = lens[i];
    assert_true(n >= MIN_TEXTS);
    float *out = malloc(sizeof(float) * DIM * (size_t)n);
    assert_int_equal(cv_minilm_embed(m, (const char *const *)sel, sel_len, n, out, NULL), CV_OK);
    double min_cos = 1, sum_cos = 0, max_abs = 0;
    int worst = -1, long_texts = 0;
    int32_t ids[256];
    for (int k = 0; k < n; k++) {
        const int i = k * STEP;
        const float *a = out + (size_t)k * DIM, *b = golden + (size_t)i * DIM;
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < DIM; j++) {
            dot += (double)a[j] * b[j], na += (double)a[j] * a[j], nb += (double)b[j] * b[j];
            max_abs = fmax(max_abs, fabs((double)a[j] - b[j]));
        }
        double cos = dot / sqrt(na * nb);
        sum_cos += cos;
        if (cos < min_cos) min_cos = cos, worst = i;
        long_texts += cv_tok_encode(cv_minilm_tok(m), texts[i], lens[i], ids, 256) == 256;
    }
    print_message("golden embeddings%s: texts=%d (%d truncated at 256 tokens) min_cos=%.9f "
                  "mean_cos=%.9f max_abs_diff=%.3e worst_index=%d\n",
                  what, n, long_texts, min_cos, sum_cos / n, max_abs, worst);
    assert_true(long_texts >= MIN_LONG);
    assert_true(min_cos >= min_required);
    free(out), free(sel), free(sel_len);
    cv_minilm_free(m);
}

static void test_golden_cosine(void **state) {
    (void)state;
    golden_cosine("", MIN_COS);
}

#ifdef CV_TEST_CUDA
/* cuBLASLt's GELU_BIAS epilogue computes the tanh approximation of GELU (BERT's is the erf
 * form): what that costs in fidelity, against the same bound. */
static void test_golden_gelu_tanh(void **state) {
    (void)state;
    cv_cuda_set_gelu_tanh(1);
    golden_cosine(" (cuBLASLt GELU epilogue, tanh approximation)", MIN_COS);
    cv_cuda_set_gelu_tanh(0);
}
#endif

/* The same batch three times on one model gives the same vectors bit for bit (on CUDA: op by
 * op, then captured into a graph and launched, then the graph replayed). */
static void test_repeat(void **state) {
    (void)state;
    cv_minilm *m = load(1);
    float *a = malloc(sizeof(float) * DIM * 4), *b = malloc(sizeof(float) * DIM * 4);
    for (int round = 0; round < 2; round++) {
        const int n = round ? 1 : 4;
        assert_int_equal(cv_minilm_embed(m, (const char *const *)texts, lens, n, a, NULL), CV_OK);
#ifdef CV_TEST_CUDA_SIM
        const long graphs = cusim_graph_launch_count();
#endif
        for (int again = 0; again < 2; again++) {
            memset(b, 0, sizeof(float) * DIM * 4);
            assert_int_equal(cv_minilm_embed(m, (const char *const *)texts, lens, n, b, NULL), CV_OK);
            assert_memory_equal(a, b, sizeof(float) * DIM * (size_t)n);
        }
#ifdef CV_TEST_CUDA_SIM
        assert_int_equal(cusim_graph_launch_count() - graphs, 2); /* captured, then replayed */
#endif
    }
    free(a), free(b);
    cv_minilm_free(m);
}

/* Same vectors whatever the batch split and thread count. */
static void test_batching_invariant(void **state) {
    (void)state;
    cv_minilm *m1 = load(1), *m2 = load(2);
    const int n = BATCH_N;
    float *all = malloc(sizeof(float) * DIM * n), *one = malloc(sizeof(float) * DIM);
    assert_int_equal(cv_minilm_embed(m2, (const char *const *)texts, lens, n, all, NULL), CV_OK);
    for (int i = 0; i < n; i++) {
        /* one thread, one text */
        assert_int_equal(cv_minilm_embed(m1, (const char *const *)&texts[i], &lens[i], 1, one, NULL), CV_OK);
        for (int j = 0; j < DIM; j++)
            assert_true(fabsf(one[j] - all[(size_t)i * DIM + j]) < BATCH_TOL);
        /* two threads, one text: GEMMs and attention split across threads */
        assert_int_equal(cv_minilm_embed(m2, (const char *const *)&texts[i], &lens[i], 1, one, NULL), CV_OK);
        for (int j = 0; j < DIM; j++)
            assert_true(fabsf(one[j] - all[(size_t)i * DIM + j]) < BATCH_TOL);
    }
    /* the long texts (truncated at 256) through the split path too */
    for (int i = ntexts - 35; i < ntexts; i += 7 * STEP) {
        float *ref = malloc(sizeof(float) * DIM);
        assert_int_equal(cv_minilm_embed(m1, (const char *const *)&texts[i], &lens[i], 1, ref, NULL), CV_OK);
        assert_int_equal(cv_minilm_embed(m2, (const char *const *)&texts[i], &lens[i], 1, one, NULL), CV_OK);
        for (int j = 0; j < DIM; j++)
            assert_true(fabsf(one[j] - ref[j]) < BATCH_TOL);
        free(ref);
    }
    free(all), free(one);
    cv_minilm_free(m1);
    cv_minilm_free(m2);
}

#ifndef CV_TEST_CUDA
/* The golden texts at a GEMM precision other than fp32: min cosine >= gate. */
static void golden_at(cv_precision precision, const char *name, double gate) {
    cv_minilm_opts o = {.threads = 0, .device = CV_DEVICE_CPU, .precision = precision};
    cv_minilm *m = NULL;
    assert_int_equal(cv_minilm_load(cv_minilm_default_dir(), &o, &m), CV_OK);
    float *out = malloc(sizeof(float) * DIM * (size_t)ntexts);
    assert_int_equal(cv_minilm_embed(m, (const char *const *)texts, lens, ntexts, out, NULL), CV_OK);
    double min_cos = 1, sum_cos = 0;
    int worst = -1;
    for (int i = 0; i < ntexts; i++) {
        const float *a = out + (size_t)i * DIM, *b = golden + (size_t)i * DIM;
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < DIM; j++)
            dot += (double)a[j] * b[j], na += (double)a[j] * a[j], nb += (double)b[j] * b[j];
        double cos = dot / sqrt(na * nb);
        sum_cos += cos;
        if (cos < min_cos) min_cos = cos, worst = i;
    }
    print_message("golden embeddings %s (kernel %s): texts=%d min_cos=%.7f mean_cos=%.7f worst_index=%d\n",
                  name, cv_cpu_bf16_kernel(), ntexts, min_cos, sum_cos / ntexts, worst);
    assert_true(min_cos >= gate);
    free(out);
    cv_minilm_free(m);
}

/* precision bf16 (GEMM inputs rounded to bfloat16): min cosine >= 0.9995; SKIPPED on CPUs
 * without AVX512-BF16. */
static void test_golden_bf16(void **state) {
    (void)state;
    if (!cv_cpu_bf16_supported()) {
        print_message("golden bf16: this CPU has no AVX512-BF16\n");
        skip();
    }
    golden_at(CV_PRECISION_BF16, "bf16", 0.9995);
}

/* precision bf16x3 (fp32 GEMMs as three bf16 products on AMX): fp32's gate, min cosine >=
 * 0.99999; SKIPPED without AMX (and the load refuses it there). */
static void test_golden_bf16x3(void **state) {
    (void)state;
    if (!cv_cpu_bf16_supported() || strcmp(cv_cpu_bf16_kernel(), "amx") != 0) {
        cv_minilm_opts o = {.threads = 1, .device = CV_DEVICE_CPU, .precision = CV_PRECISION_BF16X3};
        cv_minilm *m = NULL;
        assert_int_equal(cv_minilm_load(cv_minilm_default_dir(), &o, &m), CV_ERR_UNSUPPORTED);
        print_message("golden bf16x3: this CPU gives no AMX-BF16 tiles\n");
        skip();
    }
    golden_at(CV_PRECISION_BF16X3, "bf16x3", MIN_COS);
}
#endif

static void test_bad_ids(void **state) {
    (void)state;
    cv_minilm *m = load(1);
    float out[DIM];
    int32_t ids[] = {101, 999999, 102}, offs[] = {0, 3};
    assert_int_equal(cv_minilm_embed_ids(m, ids, offs, 1, out), CV_ERR_ARG);
    int32_t offs_bad[] = {0, 0};
    assert_int_equal(cv_minilm_embed_ids(m, ids, offs_bad, 1, out), CV_ERR_ARG);
    cv_minilm_free(m);
}

#ifdef CV_TEST_CUDA_SIM
/* A weight whose upload fails (any of them: a vector, a matrix's fp32 or fp16 copy, the last
 * one) fails the load with an error instead of a model that reads NULL later. */
static void test_weight_upload_failure(void **state) {
    (void)state;
    const long before = cusim_live_allocations();
    cv_minilm *m = load(1);
    const long n = cusim_live_allocations() - before; /* device allocations of one load */
    cv_minilm_free(m);
    assert_int_equal(cusim_live_allocations(), before);
    const long which[] = {4, 9, 13, n - 1}; /* vectors' fp32 and fp16 copies, a matrix's, the last */
    for (size_t i = 0; i < sizeof which / sizeof which[0]; i++) {
        cusim_fail_malloc_at(which[i]);
        cv_minilm_opts o = {.threads = 1, .device = DEVICE};
        cv_err err = cv_minilm_load(cv_minilm_default_dir(), &o, &m);
        cusim_fail_malloc_at(-1);
        print_message("upload of allocation %ld of %ld fails: load returns %s\n", which[i], n,
                      cv_strerror(err));
        assert_int_not_equal(err, CV_OK);
        assert_int_equal(cusim_live_allocations(), before);
    }
}
#endif

int main(void) {
#ifdef CV_TEST_CUDA
    if (cv_cuda_device_count() == 0) {
        printf("SKIPPED: no CUDA device (GPU golden embeddings need one)\n");
        return 77;
    }
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_cosine),
        cmocka_unit_test(test_batching_invariant),
        cmocka_unit_test(test_repeat),
#ifdef CV_TEST_CUDA
        cmocka_unit_test(test_golden_gelu_tanh),
#endif
#ifndef CV_TEST_CUDA
        cmocka_unit_test(test_golden_bf16),
        cmocka_unit_test(test_golden_bf16x3),
#endif
        cmocka_unit_test(test_bad_ids),
#ifdef CV_TEST_CUDA_SIM
        cmocka_unit_test(test_weight_upload_failure),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
