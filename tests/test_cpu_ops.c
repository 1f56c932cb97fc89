/* test_cpu_ops.c: every CPU op against a naive double-precision version on random inputs
 * of several shapes (never zeros; outputs poisoned with NaN first). Tolerances are stated
 * per op as max |got - want| relative to max(1, |want|). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../kernels/cpu/cpu_ops.h"
#include "../kernels/cpu/vmath.h"
#include "test_util.h"

static float *poisoned(size_t n) {
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static double max_rel_err(const float *got, const double *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) return INFINITY;
        double e = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
        if (e > worst) worst = e;
    }
    return worst;
}

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* x in [-2, 2], w in [-0.1, 0.1], b in [-1, 1]: a linear layer's inputs */
static void fill_linear(float *x, float *w, float *b, int M, int N, int K, uint64_t *seed) {
    tu_fill(x, (size_t)M * K, -2, 2, seed);
    tu_fill(w, (size_t)N * K, -0.1f, 0.1f, seed);
    tu_fill(b, (size_t)N, -1, 1, seed);
}

/* want[M x N] = act(x w^T + b) in double; with bf16, of the bf16-rounded inputs (so that only the
 * fp32 accumulation differs) */
static void linear_ref(const float *x, const float *w, const float *b, int M, int N, int K, int act, int bf16,
                       double *want) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b[j];
            for (int k = 0; k < K; k++) {
                float xv = x[(size_t)i * K + k], wv = w[(size_t)j * K + k];
                if (bf16)
                    xv = cv_cpu_from_bf16(cv_cpu_to_bf16(xv)), wv = cv_cpu_from_bf16(cv_cpu_to_bf16(wv));
                acc += (double)xv * wv;
            }
            want[(size_t)i * N + j] = act ? gelu_ref(acc) : acc;
        }
}

/* A linear layer (x: M x K, w: N x K) packed as fp32 (or bf16), computed with and without GELU as
 * two column ranges split at a multiple of 16 (as the thread pool does), against linear_ref:
 * relative error under 2e-5, printed as "WHAT=NAME M=.. N=.. K=.. act=.. max_rel_err=..". */
static void run_linear(int bf16, int M, int N, int K, uint64_t *seed, const char *what, const char *name) {
    float *x = malloc(sizeof(float) * (size_t)M * K), *w = malloc(sizeof(float) * (size_t)N * K),
          *b = malloc(sizeof(float) * (size_t)N), *y = poisoned((size_t)M * N);
    void *wp = NULL;
    size_t wp_bytes = bf16 ? cv_cpu_pack_bf16_bytes(N, K) : sizeof(float) * cv_cpu_pack_floats(N, K);
    assert_int_equal(posix_memalign(&wp, 64, wp_bytes), 0);
    fill_linear(x, w, b, M, N, K, seed);
    if (bf16)
        cv_cpu_pack_linear_bf16(w, N, K, wp);
    else
        cv_cpu_pack_linear(w, N, K, wp);
    double *want = malloc(sizeof(double) * (size_t)M * N);
    const int mid = (N / 2) & ~15;
    for (int act = 0; act < 2; act++) {
        linear_ref(x, w, b, M, N, K, act, bf16, want);
        for (int part = 0; part < 2; part++) {
            int n0 = part ? mid : 0, n1 = part ? N : mid;
            if (bf16)
                cv_cpu_linear_bf16(x, wp, b, M, N, K, (cv_act)act, y, n0, n1);
            else
                cv_cpu_linear_packed(x, wp, b, M, N, K, (cv_act)act, y, n0, n1);
        }
        double err = max_rel_err(y, want, (size_t)M * N);
        print_message("%s=%s M=%d N=%d K=%d act=%d max_rel_err=%.2e\n", what, name, M, N, K, act, err);
        assert_true(err < 2e-5);
        for (size_t j = 0; j < (size_t)M * N; j++)
            y[j] = NAN;
    }
    free(x), free(w), free(b), free(y), free(wp), free(want);
}

static void ln_ref(double *row, const float *g, const float *b, int D, double eps) {
    double mean = 0, var = 0;
    for (int j = 0; j < D; j++)
        mean += row[j];
    mean /= D;
    for (int j = 0; j < D; j++)
        var += (row[j] - mean) * (row[j] - mean);
    var /= D;
    for (int j = 0; j < D; j++)
        row[j] = (row[j] - mean) / sqrt(var + eps) * g[j] + b[j];
}

static void test_linear(void **state) {
    (void)state;
    static const int shapes[][3] = {
        {1, 384, 384}, {7, 1152, 384}, {33, 1536, 384}, {65, 384, 1536}, {3, 5, 7}};
    uint64_t seed = 11;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int act = 0; act < 2; act++) {
            float *x = malloc(sizeof(float) * (size_t)M * K), *w = malloc(sizeof(float) * (size_t)N * K),
                  *b = malloc(sizeof(float) * (size_t)N), *y = poisoned((size_t)M * N);
            tu_fill(x, (size_t)M * K, -2, 2, &seed);
            tu_fill(w, (size_t)N * K, -0.1f, 0.1f, &seed);
            tu_fill(b, (size_t)N, -1, 1, &seed);
            cv_cpu_linear(x, w, b, M, N, K, (cv_act)act, y);
            double *want = malloc(sizeof(double) * (size_t)M * N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = b[j];
                    for (int k = 0; k < K; k++)
                        acc += (double)x[(size_t)i * K + k] * w[(size_t)j * K + k];
                    want[(size_t)i * N + j] = act ? gelu_ref(acc) : acc;
                }
            double err = max_rel_err(y, want, (size_t)M * N);
            print_message("linear M=%d N=%d K=%d act=%d max_rel_err=%.2e\n", M, N, K, act, err);
            assert_true(err < 2e-5);
            free(x), free(w), free(b), free(y), free(want);
        }
    }
}

/* cv_cpu_linear_packed with every kernel set this CPU runs, on shapes that exercise row and
 * column tails (N not a multiple of 16, M not a multiple of any sliver), k blocks (K > 256),
 * and column ranges as the thread split makes them. */
static void test_linear_packed(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 384, 384},  {7, 1152, 384}, {35, 1536, 384}, {13, 384, 1536},
                                    {150, 40, 300}, {3, 5, 7},      {12, 33, 17},    {25, 16, 513}};
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    const char *best = cv_cpu_gemm_isa();
    uint64_t seed = 13;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (cv_cpu_gemm_use(isas[i]) != CV_OK) {
            print_message("linear_packed isa=%s not supported by this CPU\n", isas[i]);
            continue;
        }
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            run_linear(0, shapes[s][0], shapes[s][1], shapes[s][2], &seed, "linear_packed isa", isas[i]);
        }
    }
    assert_int_equal(cv_cpu_gemm_use(best), CV_OK);
    assert_int_equal(cv_cpu_gemm_use("sse9"), CV_ERR_ARG);
}

/* GELU as the packed GEMM applies it (each kernel set has its own): K = 1, w = 1, so that
 * y = GELU(x) for x over [-20, 20]. */
static void test_linear_packed_gelu_range(void **state) {
    (void)state;
    static const char *const isas[] = {"scalar", "avx2", "avx512"};
    const char *best = cv_cpu_gemm_isa();
    const int M = 4001, N = 16;
    float *x = malloc(sizeof(float) * M), *w = malloc(sizeof(float) * N), *y = poisoned((size_t)M * N), *wp;
    assert_int_equal(posix_memalign((void **)&wp, 64, sizeof(float) * cv_cpu_pack_floats(N, 1)), 0);
    for (int i = 0; i < M; i++)
        x[i] = (float)(i - 2000) * 1e-2f;
    for (int j = 0; j < N; j++)
        w[j] = 1.0f;
    cv_cpu_pack_linear(w, N, 1, wp);
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (cv_cpu_gemm_use(isas[i]) != CV_OK) continue;
        cv_cpu_linear_packed(x, wp, NULL, M, N, 1, CV_ACT_GELU, y, 0, N);
        double worst = 0;
        for (int r = 0; r < M; r++)
            for (int j = 0; j < N; j++) {
                double want = gelu_ref(x[r]), got = y[(size_t)r * N + j];
                double e = isfinite(got) ? fabs(got - want) / fmax(1.0, fabs(want)) : INFINITY;
                if (e > worst) worst = e;
            }
        print_message("linear_packed gelu isa=%s max_rel_err over [-20,20]=%.2e\n", isas[i], worst);
        assert_true(worst < 1e-6);
    }
    assert_int_equal(cv_cpu_gemm_use(best), CV_OK);
    free(x), free(w), free(y), free(wp);
}

/* cv_cpu_linear_bf16 against double products of the bf16-rounded inputs (so only the fp32
 * accumulation differs): SKIPPED on CPUs without AVX512-BF16. */
static void test_linear_bf16(void **state) {
    (void)state;
    if (!cv_cpu_bf16_supported()) {
        print_message("linear_bf16: this CPU has no AVX512-BF16\n");
        skip();
    }
    static const int shapes[][3] = {{1, 384, 384}, {35, 1152, 384}, {13, 384, 1536}, {150, 40, 301},
                                    {3, 5, 7},     {12, 33, 17},    {25, 16, 513},   {600, 48, 384}};
    static const char *const kernels[] = {"avx512bf16", "amx"};
    const char *best = cv_cpu_bf16_kernel();
    uint64_t seed = 17;
    for (size_t s = 0; s < 2 * sizeof shapes / sizeof shapes[0]; s++) {
        const char *kernel = kernels[s % 2];
        if (cv_cpu_bf16_use(kernel) != CV_OK) {
            print_message("linear_bf16 kernel=%s not supported here\n", kernel);
            continue;
        }
        run_linear(1, shapes[s / 2][0], shapes[s / 2][1], shapes[s / 2][2], &seed, "linear_bf16 kernel",
                   kernel);
    }
    assert_int_equal(cv_cpu_bf16_use(best), CV_OK);
    /* rounding: to nearest even, NaN stays NaN */
    assert_int_equal(cv_cpu_to_bf16(1.0f), 0x3f80);
    assert_int_equal(cv_cpu_to_bf16(1.00390625f), 0x3f80); /* tie, to even */
    assert_int_equal(cv_cpu_to_bf16(1.01171875f), 0x3f82); /* tie, to even (up) */
    assert_true(isnan(cv_cpu_from_bf16(cv_cpu_to_bf16(NAN))));
}

/* cv_cpu_linear_amx3 (bf16x3) against double products of the fp32 inputs: ~2e-5 relative
 * (16 bits of each operand; bf16 alone is ~1e-2 off), odd shapes, columns split in two
 * calls; SKIPPED without AMX. */
static void test_linear_bf16x3(void **state) {
    (void)state;
    if (!cv_cpu_bf16_supported() || strcmp(cv_cpu_bf16_kernel(), "amx") != 0) {
        print_message("linear_bf16x3: no AMX-BF16 here\n");
        skip();
    }
    static const int shapes[][3] = {{1, 384, 384}, {35, 1152, 384}, {13, 384, 1536}, {150, 40, 301},
                                    {3, 5, 7},     {12, 33, 17},    {25, 16, 513},   {600, 48, 384}};
    uint64_t seed = 19;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = malloc(sizeof(float) * (size_t)M * K), *w = malloc(sizeof(float) * (size_t)N * K),
              *b = malloc(sizeof(float) * (size_t)N), *y = poisoned((size_t)M * N);
        uint16_t *wp = NULL;
        assert_int_equal(posix_memalign((void **)&wp, 64, cv_cpu_pack_bf16x3_bytes(N, K)), 0);
        tu_fill(x, (size_t)M * K, -2, 2, &seed);
        tu_fill(w, (size_t)N * K, -0.1f, 0.1f, &seed);
        tu_fill(b, (size_t)N, -1, 1, &seed);
        cv_cpu_pack_linear_bf16x3(w, N, K, wp);
        double *want = malloc(sizeof(double) * (size_t)M * N);
        for (int act = 0; act < 2; act++) {
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = b[j];
                    for (int k = 0; k < K; k++)
                        acc += (double)x[(size_t)i * K + k] * w[(size_t)j * K + k];
                    want[(size_t)i * N + j] = act ? gelu_ref(acc) : acc;
                }
            const int mid = (N / 2) & ~15;
            cv_cpu_linear_amx3(x, wp, b, M, N, K, (cv_act)act, y, 0, mid);
            cv_cpu_linear_amx3(x, wp, b, M, N, K, (cv_act)act, y, mid, N);
            double err = max_rel_err(y, want, (size_t)M * N);
            print_message("linear_bf16x3 M=%d N=%d K=%d act=%d max_rel_err=%.2e\n", M, N, K, act, err);
            assert_true(err < 5e-5);
            for (size_t j = 0; j < (size_t)M * N; j++)
                y[j] = NAN;
        }
        free(x), free(w), free(b), free(y), free(wp), free(want);
    }
}

static void test_gelu_range(void **state) {
    (void)state;
    double worst = 0;
    for (int i = -20000; i <= 20000; i++) {
        float x = (float)i * 1e-3f;
        double e = fabs(cv_cpu_gelu(x) - gelu_ref(x)) / fmax(1.0, fabs(gelu_ref(x)));
        if (e > worst) worst = e;
    }
    print_message("gelu max_rel_err over [-20,20]=%.2e\n", worst);
    assert_true(worst < 1e-6);
}

static void test_expf(void **state) {
    (void)state;
    double worst = 0;
    for (int i = -870000; i <= 880000; i++) {
        float x = (float)i * 1e-4f;
        double want = exp((double)x), e = fabs(cv_expf(x) - want) / want;
        if (e > worst) worst = e;
    }
    print_message("expf max_rel_err over [-87,88]=%.2e\n", worst);
    assert_true(worst < 3e-7);
    assert_true(cv_expf(-1000.0f) >= 0.0f && cv_expf(-1000.0f) < 1e-37f); /* clamped, no NaN */
}

static void test_add_ln(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 384}, {17, 384}, {5, 1536}, {3, 31}};
    uint64_t seed = 12;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], D = shapes[s][1];
        float *x = malloc(sizeof(float) * (size_t)M * D), *r = malloc(sizeof(float) * (size_t)M * D),
              *g = malloc(sizeof(float) * (size_t)D), *b = malloc(sizeof(float) * (size_t)D);
        tu_fill(x, (size_t)M * D, -3, 5, &seed);
        tu_fill(r, (size_t)M * D, -4, 4, &seed);
        tu_fill(g, (size_t)D, 0.5f, 1.5f, &seed);
        tu_fill(b, (size_t)D, -0.5f, 0.5f, &seed);
        double *want = malloc(sizeof(double) * (size_t)M * D);
        for (size_t i = 0; i < (size_t)M * D; i++)
            want[i] = (double)x[i] + r[i];
        for (int i = 0; i < M; i++)
            ln_ref(want + (size_t)i * D, g, b, D, 1e-12);
        cv_cpu_add_ln(x, r, g, b, M, D, 1e-12f);
        double err = max_rel_err(x, want, (size_t)M * D);
        print_message("add_ln M=%d D=%d max_rel_err=%.2e\n", M, D, err);
        assert_true(err < 1e-5);
        free(x), free(r), free(g), free(b), free(want);
    }
}

static void test_embed_ln(void **state) {
    (void)state;
    const int V = 50, P = 20, D = 48, T = 13;
    uint64_t seed = 13;
    float *word = malloc(sizeof(float) * V * D), *pos = malloc(sizeof(float) * P * D),
          *type0 = malloc(sizeof(float) * D), *g = malloc(sizeof(float) * D), *b = malloc(sizeof(float) * D),
          *out = poisoned((size_t)T * D);
    tu_fill(word, (size_t)V * D, -1, 1, &seed);
    tu_fill(pos, (size_t)P * D, -1, 1, &seed);
    tu_fill(type0, D, -1, 1, &seed);
    tu_fill(g, D, 0.5f, 1.5f, &seed);
    tu_fill(b, D, -0.5f, 0.5f, &seed);
    int32_t ids[13], pids[13];
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(tu_rand(&seed) % V), pids[t] = t % 7;
    cv_cpu_embed_ln(ids, pids, T, D, word, pos, type0, g, b, 1e-12f, out);
    double want[13 * 48];
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < D; j++)
            want[t * D + j] = (double)word[ids[t] * D + j] + pos[pids[t] * D + j] + type0[j];
        ln_ref(want + t * D, g, b, D, 1e-12);
    }
    double err = max_rel_err(out, want, (size_t)T * D);
    print_message("embed_ln max_rel_err=%.2e\n", err);
    assert_true(err < 1e-5);
    free(word), free(pos), free(type0), free(g), free(b), free(out);
}

/* Both attention kernels (sgemm, and the fused AVX-512 one where the CPU has it) against
 * double precision: head sizes 8 to 128 (multiples of 16 and not: the masked tails), lengths
 * around the fused kernel's tiles (12, 16, 32, 48) and a split of the heads. */
static void test_attention(void **state) {
    (void)state;
    static const int lens_sets[][5] = {{1, 0, 0, 0, 0},   {2, 5, 0, 0, 0},    {31, 1, 64, 3, 0},
                                       {256, 7, 0, 0, 0}, {13, 47, 49, 0, 0}, {100, 17, 0, 0, 0},
                                       {33, 12, 0, 0, 0}, {50, 0, 0, 0, 0},   {97, 0, 0, 0, 0}};
    static const int hh[][2] = {{12, 32}, {4, 8},  {2, 16},  {12, 32}, {6, 64},
                                {3, 24},  {2, 80}, {2, 128}, {4, 40}};
    const int ncase = (int)(sizeof hh / sizeof hh[0]);
    uint64_t seed = 14;
    for (int c = 0; c < ncase; c++) {
        int offs[6] = {0}, nseq = 0;
        for (int s = 0; s < 5 && lens_sets[c][s]; s++, nseq++)
            offs[nseq + 1] = offs[nseq] + lens_sets[c][s];
        const int H = hh[c][0], hd = hh[c][1], D = H * hd, T = offs[nseq];
        float *qkv = malloc(sizeof(float) * (size_t)T * 3 * D), *out = poisoned((size_t)T * D);
        tu_fill(qkv, (size_t)T * 3 * D, -2, 2, &seed);
        int32_t o32[6];
        for (int i = 0; i <= nseq; i++)
            o32[i] = offs[i];
        double *want = malloc(sizeof(double) * (size_t)T * D), *p = malloc(sizeof(double) * 256);
        for (int s = 0; s < nseq; s++)
            for (int h = 0; h < H; h++)
                for (int i = offs[s]; i < offs[s + 1]; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int j = offs[s]; j < offs[s + 1]; j++) {
                        double acc = 0;
                        for (int d = 0; d < hd; d++)
                            acc += (double)qkv[(size_t)i * 3 * D + h * hd + d] *
                                   qkv[(size_t)j * 3 * D + D + h * hd + d];
                        p[j - offs[s]] = acc / sqrt((double)hd);
                        mx = fmax(mx, p[j - offs[s]]);
                    }
                    for (int j = 0; j < offs[s + 1] - offs[s]; j++)
                        sum += (p[j] = exp(p[j] - mx));
                    for (int d = 0; d < hd; d++) {
                        double acc = 0;
                        for (int j = offs[s]; j < offs[s + 1]; j++)
                            acc += p[j - offs[s]] / sum * qkv[(size_t)j * 3 * D + 2 * D + h * hd + d];
                        want[(size_t)i * D + h * hd + d] = acc;
                    }
                }
        for (int kernel = 0; kernel < 3; kernel++) {
            if (kernel == 2 && !cv_cpu_attention_avx512_ok()) continue;
            for (size_t i = 0; i < (size_t)T * D; i++)
                out[i] = NAN;
            if (kernel == 0) {
                cv_cpu_attention(qkv, o32, nseq, H, hd, out);
            } else {
                /* heads in two calls, as the backend splits them across threads */
                void (*f)(const float *, const int32_t *, int, int, int, int, int, float *) =
                    kernel == 1 ? cv_cpu_attention_heads_blas : cv_cpu_attention_heads_avx512;
                f(qkv, o32, nseq, H, hd, 0, H / 2, out);
                f(qkv, o32, nseq, H, hd, H / 2, H, out);
            }
            double err = max_rel_err(out, want, (size_t)T * D);
            print_message("attention %s nseq=%d T=%d H=%d hd=%d max_rel_err=%.2e\n",
                          kernel == 0   ? "default"
                          : kernel == 1 ? "blas"
                                        : "avx512",
                          nseq, T, H, hd, err);
            assert_true(err < 2e-5);
        }
        free(qkv), free(out), free(want), free(p);
    }
}

static void test_pool_l2(void **state) {
    (void)state;
    const int D = 384;
    const int32_t offs[] = {0, 1, 9, 40, 296};
    const int nseq = 4, T = 296;
    uint64_t seed = 15;
    float *x = malloc(sizeof(float) * T * D), *out = poisoned((size_t)nseq * D),
          *out2 = poisoned((size_t)nseq * D), *norms = poisoned((size_t)nseq);
    tu_fill(x, (size_t)T * D, -3, 3, &seed);
    cv_cpu_pool_l2(x, offs, nseq, D, CV_POOL_MEAN, out, NULL);
    cv_cpu_pool_l2(x, offs, nseq, D, CV_POOL_MEAN, out2, norms);
    /* asking for the norms leaves the vectors as they were, bit for bit */
    assert_memory_equal(out, out2, sizeof(float) * (size_t)nseq * D);
    double want[4 * 384], want_norm[4];
    for (int s = 0; s < nseq; s++) {
        double norm = 0;
        for (int j = 0; j < D; j++) {
            double acc = 0;
            for (int t = offs[s]; t < offs[s + 1]; t++)
                acc += x[(size_t)t * D + j];
            want[s * D + j] = acc / (offs[s + 1] - offs[s]);
            norm += want[s * D + j] * want[s * D + j];
        }
        want_norm[s] = sqrt(norm);
        for (int j = 0; j < D; j++)
            want[s * D + j] /= sqrt(norm);
    }
    double err = max_rel_err(out, want, (size_t)nseq * D), nerr = 0, merr = 0;
    /* norms[s] is the mean's norm; out * norms gives the mean back (TEI's normalize:false) */
    for (int s = 0; s < nseq; s++) {
        nerr = fmax(nerr, fabs(norms[s] - want_norm[s]) / want_norm[s]);
        for (int j = 0; j < D; j++)
            merr = fmax(merr, fabs((double)out[s * D + j] * norms[s] - want[s * D + j] * want_norm[s]) /
                                  want_norm[s]);
    }
    print_message("pool_l2 max_rel_err=%.2e norms max_rel_err=%.2e mean back max_rel_err=%.2e\n", err, nerr,
                  merr);
    assert_true(err < 1e-6);
    assert_true(nerr < 1e-6);
    assert_true(merr < 1e-6);
    free(x), free(out), free(out2), free(norms);
}

/* [CLS] pooling takes each sequence's first row, max pooling the elementwise maximum; both then
 * L2-normalized, norms the pooled vector's norm. */
static void test_pool_cls_max(void **state) {
    (void)state;
    const int D = 96;
    const int32_t offs[] = {0, 1, 9, 40};
    const int nseq = 3, T = 40;
    uint64_t seed = 16;
    float *x = malloc(sizeof(float) * T * D), *out = poisoned((size_t)nseq * D), *norms = poisoned(nseq);
    tu_fill(x, (size_t)T * D, -3, 3, &seed);
    for (int mode = CV_POOL_CLS; mode <= CV_POOL_MAX; mode++) {
        cv_cpu_pool_l2(x, offs, nseq, D, (cv_pool_mode)mode, out, norms);
        for (int s = 0; s < nseq; s++) {
            double want[96], norm = 0;
            for (int j = 0; j < D; j++) {
                want[j] = x[(size_t)offs[s] * D + j];
                for (int t = offs[s] + 1; mode == CV_POOL_MAX && t < offs[s + 1]; t++)
                    want[j] = fmax(want[j], x[(size_t)t * D + j]);
                norm += want[j] * want[j];
            }
            norm = sqrt(norm);
            assert_true(fabs(norms[s] - norm) / norm < 1e-6);
            for (int j = 0; j < D; j++)
                assert_true(fabs(out[s * D + j] - want[j] / norm) < 1e-6);
        }
    }
    free(x), free(out), free(norms);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_cls_max),  cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_packed), cmocka_unit_test(test_linear_packed_gelu_range),
        cmocka_unit_test(test_linear_bf16),   cmocka_unit_test(test_linear_bf16x3),
        cmocka_unit_test(test_gelu_range),    cmocka_unit_test(test_expf),
        cmocka_unit_test(test_add_ln),        cmocka_unit_test(test_embed_ln),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_pool_l2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
