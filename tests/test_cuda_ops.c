/* test_cuda_ops.c: every CUDA op against the CPU reference on random inputs of several
 * shapes (never zeros; device outputs poisoned with NaN first). Tolerance, as max
 * |got - want| / max(1, max |want|): 5e-3 for linear (fp16 inputs, fp32 accumulation),
 * 1e-5 for the fp32 ops. SKIPPED (exit 77) without a CUDA device. Also built as
 * test_cuda_ops_sim on the CPU execution layer (tests/cuda_sim/), which runs in every build. */
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
#include "test_util.h"

static cv_backend *gpu;
static uint64_t seed = 77;

static float *dev_from(const float *host, size_t n) {
    float *d = gpu->alloc(gpu, n * sizeof(float));
    assert_non_null(d);
    assert_int_equal(gpu->upload(gpu, d, host, n * sizeof(float)), CV_OK);
    return d;
}

static int32_t *dev_from_i32(const int32_t *host, size_t n) {
    int32_t *d = gpu->alloc(gpu, n * sizeof(int32_t));
    assert_non_null(d);
    assert_int_equal(gpu->upload(gpu, d, host, n * sizeof(int32_t)), CV_OK);
    return d;
}

static float *dev_poisoned(size_t n) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    float *d = dev_from(h, n);
    free(h);
    return d;
}

static float *host_rand(size_t n, float lo, float hi) {
    float *h = malloc(n * sizeof(float));
    tu_fill(h, n, lo, hi, &seed);
    return h;
}

/* Downloads d (n floats), compares with want, frees d. */
static double compare(float *d, const float *want, size_t n) {
    float *got = malloc(n * sizeof(float));
    assert_int_equal(gpu->download(gpu, got, d, n * sizeof(float)), CV_OK);
    assert_int_equal(gpu->sync(gpu), CV_OK);
    double scale = 1, err = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            err = INFINITY;
            break;
        }
        err = fmax(err, fabs((double)got[i] - want[i]) / scale);
    }
    free(got);
    gpu->release(gpu, d);
    return err;
}

static void test_linear(void **state) {
    (void)state;
    static const int shapes[][3] = {
        {1, 384, 384}, {37, 1152, 384}, {300, 1536, 384}, {129, 384, 1536}, {3, 5, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int act = 0; act < 2; act++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *x = host_rand((size_t)M * K, -2, 2), *w = host_rand((size_t)N * K, -0.1f, 0.1f),
                  *b = host_rand((size_t)N, -1, 1), *want = malloc(sizeof(float) * (size_t)M * N);
            cv_cpu_linear(x, w, b, M, N, K, (cv_act)act, want);
            float *dx = dev_from(x, (size_t)M * K), *db = dev_from(b, (size_t)N),
                  *dy = dev_poisoned((size_t)M * N);
            const float *dw = gpu->weights(gpu, w, (size_t)N * K); /* registered: fp16 copy */
            gpu->linear(gpu, dx, dw, db, M, N, K, (cv_act)act, dy);
            double err = compare(dy, want, (size_t)M * N);
            print_message("cuda linear M=%d N=%d K=%d act=%d err=%.2e\n", M, N, K, act, err);
            assert_true(err < 5e-3);
            gpu->release(gpu, dx), gpu->release(gpu, db);
            free(x), free(w), free(b), free(want);
        }
}

static void test_add_ln(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 384}, {1000, 384}, {7, 512}, {3, 33}};
    for (size_t s = 0; s < 4; s++) {
        const int M = shapes[s][0], D = shapes[s][1];
        float *x = host_rand((size_t)M * D, -3, 5), *r = host_rand((size_t)M * D, -4, 4),
              *g = host_rand(D, 0.5f, 1.5f), *b = host_rand(D, -0.5f, 0.5f);
        float *dx = dev_from(x, (size_t)M * D), *dr = dev_from(r, (size_t)M * D), *dg = dev_from(g, D),
              *dbb = dev_from(b, D);
        cv_cpu_add_ln(x, r, g, b, M, D, 1e-12f);
        gpu->add_ln(gpu, dx, dr, dg, dbb, M, D, 1e-12f);
        double err = compare(dx, x, (size_t)M * D);
        print_message("cuda add_ln M=%d D=%d err=%.2e\n", M, D, err);
        assert_true(err < 1e-5);
        gpu->release(gpu, dr), gpu->release(gpu, dg), gpu->release(gpu, dbb);
        free(x), free(r), free(g), free(b);
    }
}

static void test_embed_ln(void **state) {
    (void)state;
    const int V = 1000, P = 512, D = 384, T = 777;
    float *word = host_rand((size_t)V * D, -1, 1), *pos = host_rand((size_t)P * D, -1, 1),
          *type0 = host_rand(D, -1, 1), *g = host_rand(D, 0.5f, 1.5f), *b = host_rand(D, -0.5f, 0.5f),
          *want = malloc(sizeof(float) * T * D);
    int32_t *ids = malloc(sizeof(int32_t) * T), *pids = malloc(sizeof(int32_t) * T);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(tu_rand(&seed) % V), pids[t] = t % P;
    cv_cpu_embed_ln(ids, pids, T, D, word, pos, type0, g, b, 1e-12f, want);
    float *dword = dev_from(word, (size_t)V * D), *dpos = dev_from(pos, (size_t)P * D),
          *dt = dev_from(type0, D), *dg = dev_from(g, D), *dbb = dev_from(b, D),
          *dout = dev_poisoned((size_t)T * D);
    int32_t *dids = dev_from_i32(ids, T), *dpids = dev_from_i32(pids, T);
    gpu->embed_ln(gpu, dids, dpids, T, D, dword, dpos, dt, dg, dbb, 1e-12f, dout);
    double err = compare(dout, want, (size_t)T * D);
    print_message("cuda embed_ln T=%d err=%.2e\n", T, err);
    assert_true(err < 1e-5);
    gpu->release(gpu, dword), gpu->release(gpu, dpos), gpu->release(gpu, dt), gpu->release(gpu, dg);
    gpu->release(gpu, dbb), gpu->release(gpu, dids), gpu->release(gpu, dpids);
    free(word), free(pos), free(type0), free(g), free(b), free(want), free(ids), free(pids);
}

static void test_attention_and_pool(void **state) {
    (void)state;
    static const int lens_sets[][6] = {{1, 0}, {256, 0}, {5, 64, 65, 1, 200, 0}, {512, 3, 0}};
    for (size_t c = 0; c < 4; c++) {
        int32_t offs[8] = {0};
        int nseq = 0, max_len = 0;
        for (; lens_sets[c][nseq]; nseq++) {
            offs[nseq + 1] = offs[nseq] + lens_sets[c][nseq];
            if (lens_sets[c][nseq] > max_len) max_len = lens_sets[c][nseq];
        }
        const int H = 12, hd = c % 2 ? 64 : 32, D = H * hd, T = offs[nseq]; /* head sizes 32 and 64 */
        float *qkv = host_rand((size_t)T * 3 * D, -2, 2), *want = malloc(sizeof(float) * (size_t)T * D),
              *pwant = malloc(sizeof(float) * (size_t)nseq * D),
              *nwant = malloc(sizeof(float) * (size_t)nseq);
        cv_cpu_attention(qkv, offs, nseq, H, hd, want);
        cv_cpu_pool_l2(want, offs, nseq, D, CV_POOL_MEAN, pwant, nwant);
        float *dq = dev_from(qkv, (size_t)T * 3 * D), *dout = dev_poisoned((size_t)T * D),
              *dpool = dev_poisoned((size_t)nseq * D), *dpool2 = dev_poisoned((size_t)nseq * D),
              *dnorms = dev_poisoned((size_t)nseq);
        int32_t *doffs = dev_from_i32(offs, (size_t)nseq + 1);
        gpu->attention(gpu, dq, doffs, nseq, max_len, H, hd, dout);
        gpu->pool_l2(gpu, dout, doffs, nseq, D, CV_POOL_MEAN, dpool, NULL);
        gpu->pool_l2(gpu, dout, doffs, nseq, D, CV_POOL_MEAN, dpool2, dnorms);
        for (int mode = CV_POOL_CLS; mode <= CV_POOL_MAX; mode++) { /* [CLS] and max pooling */
            float *pm = malloc(sizeof(float) * (size_t)nseq * D), *nm = malloc(sizeof(float) * (size_t)nseq);
            float *dpm = dev_poisoned((size_t)nseq * D), *dnm = dev_poisoned((size_t)nseq);
            cv_cpu_pool_l2(want, offs, nseq, D, (cv_pool_mode)mode, pm, nm);
            gpu->pool_l2(gpu, dout, doffs, nseq, D, (cv_pool_mode)mode, dpm, dnm);
            double merr = compare(dpm, pm, (size_t)nseq * D), mnerr = compare(dnm, nm, (size_t)nseq);
            print_message("cuda pool_l2 mode=%d hd=%d err=%.2e norms err=%.2e\n", mode, hd, merr, mnerr);
            assert_true(merr < 1e-5 && mnerr < 1e-5);
            free(pm), free(nm);
        }
        double perr = compare(dpool, pwant, (size_t)nseq * D),
               perr2 = compare(dpool2, pwant, (size_t)nseq * D);
        double nerr = compare(dnorms, nwant, (size_t)nseq);
        double err = compare(dout, want, (size_t)T * D);
        print_message("cuda attention nseq=%d T=%d max_len=%d err=%.2e pool_l2 err=%.2e (with norms %.2e) "
                      "norms err=%.2e\n",
                      nseq, T, max_len, err, perr, perr2, nerr);
        assert_true(err < 1e-5);
        assert_true(perr < 1e-5 && perr2 < 1e-5);
        assert_true(nerr < 1e-5);
        gpu->release(gpu, dq), gpu->release(gpu, doffs);
        free(qkv), free(want), free(pwant), free(nwant);
    }
}

/* A failed copy is reported and leaves the backend usable: the next copies, ops and sync work
 * (it used to leave the error set, and every later forward failed). */
static void test_error_recovery(void **state) {
    (void)state;
    float h[4] = {1, 2, 3, 4}, back[4] = {0};
    assert_int_equal(gpu->upload(gpu, NULL, h, sizeof h), CV_ERR_DEVICE);
    float *d = gpu->alloc(gpu, sizeof h);
    assert_non_null(d);
    assert_int_equal(gpu->upload(gpu, d, h, sizeof h), CV_OK);
    assert_int_equal(gpu->download(gpu, back, d, sizeof h), CV_OK);
    assert_int_equal(gpu->sync(gpu), CV_OK);
    assert_memory_equal(back, h, sizeof h);
    assert_int_equal(gpu->download(gpu, NULL, d, sizeof h), CV_ERR_DEVICE);
    assert_int_equal(gpu->download(gpu, back, d, sizeof h), CV_OK);
    assert_int_equal(gpu->sync(gpu), CV_OK);
    gpu->release(gpu, d);
}

/* Linears queued back to back without a sync, the staging buffers growing between them (the
 * second's K is 4x the first's): each must read its own input. */
static void test_linear_queued(void **state) {
    (void)state;
    const int M = 33, N = 96, K1 = 64, K2 = 256;
    float *x1 = host_rand((size_t)M * K1, -2, 2), *w1 = host_rand((size_t)N * K1, -0.1f, 0.1f),
          *x2 = host_rand((size_t)M * K2, -2, 2), *w2 = host_rand((size_t)N * K2, -0.1f, 0.1f),
          *b = host_rand(N, -1, 1), *want1 = malloc(sizeof(float) * (size_t)M * N),
          *want2 = malloc(sizeof(float) * (size_t)M * N);
    cv_cpu_linear(x1, w1, b, M, N, K1, CV_ACT_GELU, want1);
    cv_cpu_linear(x2, w2, b, M, N, K2, CV_ACT_NONE, want2);
    float *dx1 = dev_from(x1, (size_t)M * K1), *dx2 = dev_from(x2, (size_t)M * K2), *db = dev_from(b, N),
          *dy1 = dev_poisoned((size_t)M * N), *dy2 = dev_poisoned((size_t)M * N);
    /* unregistered weights: converted per call into the growing fp16 staging buffer */
    float *dw1 = dev_from(w1, (size_t)N * K1), *dw2 = dev_from(w2, (size_t)N * K2);
    gpu->linear(gpu, dx1, dw1, db, M, N, K1, CV_ACT_GELU, dy1);
    gpu->linear(gpu, dx2, dw2, db, M, N, K2, CV_ACT_NONE, dy2);
    double e1 = compare(dy1, want1, (size_t)M * N), e2 = compare(dy2, want2, (size_t)M * N);
    print_message("cuda linear queued err=%.2e %.2e\n", e1, e2);
    assert_true(e1 < 5e-3 && e2 < 5e-3);
    gpu->release(gpu, dx1), gpu->release(gpu, dx2), gpu->release(gpu, db);
    gpu->release(gpu, dw1), gpu->release(gpu, dw2);
    free(x1), free(w1), free(x2), free(w2), free(b), free(want1), free(want2);
}

/* encode() (fp16 activations, cuBLASLt epilogues, graphs) against the fp32 CPU ops composed,
 * on a small random 2-layer encoder: a batch of a few sequences three times (eager, captured,
 * replayed) and one over the graph limit. Pooled vectors: max |diff| < 5e-3, cosine > 0.9999. */
static void test_encode(void **state) {
    (void)state;
    const int V = 50, P = 300, D = 64, H = 2, NI = 128, NL = 2;
    const float eps = 1e-12f;
    float *word = host_rand((size_t)V * D, -1, 1), *pos = host_rand((size_t)P * D, -1, 1),
          *type0 = host_rand(D, -1, 1), *g = host_rand(D, 0.5f, 1.5f), *b = host_rand(D, -0.5f, 0.5f);
    cv_encoder_layer hl[2], dl[2];
    for (int l = 0; l < NL; l++) {
        float **f = (float **)&hl[l];
        const size_t n[12] = {3 * D * D, 3 * D, D * D, D, D, D, (size_t)NI * D, NI, (size_t)D * NI, D, D, D};
        for (int i = 0; i < 12; i++) { /* wqkv bqkv wo bo ln1_g ln1_b w1 b1 w2 b2 ln2_g ln2_b */
            const int gain = i == 4 || i == 10;
            f[i] = gain ? host_rand(n[i], 0.5f, 1.5f) : host_rand(n[i], -0.2f, 0.2f);
            ((const float **)&dl[l])[i] = gpu->weights(gpu, f[i], n[i]);
            assert_non_null(((const float **)&dl[l])[i]);
        }
    }
    cv_encoder m = {gpu->weights(gpu, word, (size_t)V * D),
                    gpu->weights(gpu, pos, (size_t)P * D),
                    gpu->weights(gpu, type0, D),
                    gpu->weights(gpu, g, D),
                    gpu->weights(gpu, b, D),
                    dl,
                    NL,
                    D,
                    H,
                    NI,
                    eps,
                    CV_POOL_MEAN};
    static const int lens_sets[][8] = {{5, 17, 1, 64, 0}, {300, 280, 290, 250, 0}};
    for (int c = 0; c < 2; c++) {
        int32_t offs[9] = {0};
        int nseq = 0, max_len = 0;
        for (; lens_sets[c][nseq]; nseq++) {
            offs[nseq + 1] = offs[nseq] + lens_sets[c][nseq];
            if (lens_sets[c][nseq] > max_len) max_len = lens_sets[c][nseq];
        }
        const int T = offs[nseq];
        int32_t *ids = malloc(sizeof(int32_t) * T), *pids = malloc(sizeof(int32_t) * T);
        for (int s = 0; s < nseq; s++)
            for (int t = offs[s]; t < offs[s + 1]; t++)
                ids[t] = (int32_t)(tu_rand(&seed) % V), pids[t] = t - offs[s];
        /* the CPU reference, fp32 throughout */
        float *h = malloc(sizeof(float) * T * D), *qkv = malloc(sizeof(float) * T * 3 * D),
              *ctx = malloc(sizeof(float) * T * D), *a = malloc(sizeof(float) * T * D),
              *inter = malloc(sizeof(float) * T * NI), *want = malloc(sizeof(float) * nseq * D),
              *got = malloc(sizeof(float) * nseq * D), *nwant = malloc(sizeof(float) * nseq),
              *ngot = malloc(sizeof(float) * nseq);
        cv_cpu_embed_ln(ids, pids, T, D, word, pos, type0, g, b, eps, h);
        for (int l = 0; l < NL; l++) {
            const cv_encoder_layer *L = &hl[l];
            cv_cpu_linear(h, L->wqkv, L->bqkv, T, 3 * D, D, CV_ACT_NONE, qkv);
            cv_cpu_attention(qkv, offs, nseq, H, D / H, ctx);
            cv_cpu_linear(ctx, L->wo, L->bo, T, D, D, CV_ACT_NONE, a);
            cv_cpu_add_ln(a, h, L->ln1_g, L->ln1_b, T, D, eps);
            cv_cpu_linear(a, L->w1, L->b1, T, NI, D, CV_ACT_GELU, inter);
            cv_cpu_linear(inter, L->w2, L->b2, T, D, NI, CV_ACT_NONE, h);
            cv_cpu_add_ln(h, a, L->ln2_g, L->ln2_b, T, D, eps);
        }
        cv_cpu_pool_l2(h, offs, nseq, D, CV_POOL_MEAN, want, nwant);
        for (int round = 0; round < 3; round++) {
            memset(got, 0, sizeof(float) * nseq * D);
            for (int s = 0; s < nseq; s++)
                ngot[s] = NAN;
            /* round 1 without the norms: a graph replay then writes none */
            assert_int_equal(
                gpu->encode(gpu, &m, ids, pids, offs, T, nseq, max_len, got, round == 1 ? NULL : ngot),
                CV_OK);
            assert_int_equal(gpu->encode_wait(gpu), CV_OK);
            double nerr = 0;
            for (int s = 0; s < nseq; s++)
                nerr = round == 1 ? (isnan(ngot[s]) ? nerr : INFINITY)
                                  : fmax(nerr, fabs((double)ngot[s] - nwant[s]) / nwant[s]);
            double err = 0, min_cos = 1;
            for (int s = 0; s < nseq; s++) {
                double dot = 0;
                for (int j = 0; j < D; j++) {
                    err = fmax(err, fabs((double)got[s * D + j] - want[s * D + j]));
                    dot += (double)got[s * D + j] * want[s * D + j]; /* both unit length */
                }
                min_cos = fmin(min_cos, dot);
            }
            print_message(
                "cuda encode T=%d nseq=%d round=%d max_abs_err=%.2e min_cos=%.7f norms max_rel_err=%.2e\n", T,
                nseq, round, err, min_cos, nerr);
            assert_true(err < 5e-3 && min_cos > 0.9999);
            assert_true(nerr < 5e-3); /* fp16 activations, as the vectors */
        }
        free(ids), free(pids), free(h), free(qkv), free(ctx), free(a), free(inter), free(want), free(got);
        free(nwant), free(ngot);
    }
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < 12; i++)
            free(((float **)&hl[l])[i]);
    free(word), free(pos), free(type0), free(g), free(b);
}

int main(void) {
    char why[256];
    if (cv_cuda_device_count() == 0 || cv_backend_cuda_new(0, &gpu, why, sizeof why) != CV_OK) {
        printf("SKIPPED: no usable CUDA device (%s)\n", cv_cuda_device_count() ? why : "none found");
        return 77;
    }
    printf("device: %s\n", why);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),         cmocka_unit_test(test_add_ln),
        cmocka_unit_test(test_embed_ln),       cmocka_unit_test(test_attention_and_pool),
        cmocka_unit_test(test_error_recovery), cmocka_unit_test(test_linear_queued),
        cmocka_unit_test(test_encode),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gpu->destroy(gpu);
    return rc;
}
