/* cpu_backend.c: the CPU backend: host memory, ops run in the calling thread. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "../../common/cv_mem.h"
#include "../../common/cv_pool.h"
#include "cpu_ops.h"

/* impl: the intra-op pool, or NULL */
typedef struct {
    const float *x, *w, *bias, *qkv;
    const int32_t *offs;
    int M, N, K, nseq, H, hd, parts, bf16;
    cv_act act;
    float *y;
} split_job;

static void linear_part(void *arg, int t) {
    split_job *j = arg;
    /* column slices aligned to 32 floats (a panel pair of the packed kernels) */
    int n0 = (int)((long)j->N * t / j->parts) & ~31,
        n1 = t + 1 == j->parts ? j->N : (int)((long)j->N * (t + 1) / j->parts) & ~31;
    if (j->bf16)
        cv_cpu_linear_bf16(j->x, (const uint16_t *)j->w, j->bias, j->M, j->N, j->K, j->act, j->y, n0, n1);
    else
        cv_cpu_linear_packed(j->x, j->w, j->bias, j->M, j->N, j->K, j->act, j->y, n0, n1);
}

static void attention_part(void *arg, int t) {
    split_job *j = arg;
    cv_cpu_attention_heads(j->qkv, j->offs, j->nseq, j->H, j->hd, j->H * t / j->parts,
                           j->H * (t + 1) / j->parts, j->y);
}

/* Tasks per split op: twice the threads, so that a thread that starts late (a busy
 * machine) costs half a slice instead of stalling the op; the pool balances them. */
static int split_parts(const cv_pool *pool, int units) {
    int parts = 2 * cv_pool_size(pool);
    return parts < units ? parts : units;
}

void cv_backend_cpu_set_pool(cv_backend *be, struct cv_pool *pool) { be->impl = pool; }

static void *cpu_alloc(cv_backend *be, size_t bytes) {
    (void)be;
    return cv_mem_alloc(bytes);
}
static void cpu_release(cv_backend *be, void *p) {
    (void)be;
    free(p);
}
static const float *cpu_weights(cv_backend *be, const float *host, size_t count) {
    (void)be;
    (void)count;
    return host;
}
static cv_err cpu_copy(cv_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (dst != src && bytes) memcpy(dst, src, bytes);
    return CV_OK;
}
static cv_err cpu_sync(cv_backend *be) {
    (void)be;
    return CV_OK;
}
static void cpu_embed_ln(cv_backend *be, const int32_t *ids, const int32_t *pos_ids, int T, int D,
                         const float *word, const float *pos, const float *type0, const float *gamma,
                         const float *beta, float eps, float *out) {
    (void)be;
    cv_cpu_embed_ln(ids, pos_ids, T, D, word, pos, type0, gamma, beta, eps, out);
}
static void linear_split(cv_backend *be, const float *x, const float *w, const float *bias, int M, int N,
                         int K, cv_act act, float *y, int bf16) {
    cv_pool *pool = be->impl;
    split_job j = {.x = x,
                   .w = w,
                   .bias = bias,
                   .M = M,
                   .N = N,
                   .K = K,
                   .act = act,
                   .y = y,
                   .bf16 = bf16,
                   .parts = pool && N >= 64 ? split_parts(pool, N / 32) : 1};
    if (j.parts == 1)
        linear_part(&j, 0);
    else
        cv_pool_run(pool, j.parts, linear_part, &j);
}
static void cpu_linear(cv_backend *be, const float *x, const float *w, const float *bias, int M, int N, int K,
                       cv_act act, float *y) {
    linear_split(be, x, w, bias, M, N, K, act, y, 0);
}
static void cpu_linear_bf16(cv_backend *be, const float *x, const float *w, const float *bias, int M, int N,
                            int K, cv_act act, float *y) {
    linear_split(be, x, w, bias, M, N, K, act, y, 1);
}
static size_t pack_bf16_floats(int N, int K) { return (cv_cpu_pack_bf16_bytes(N, K) + 3) / sizeof(float); }
static void pack_bf16(const float *w, int N, int K, float *dst) {
    cv_cpu_pack_linear_bf16(w, N, K, (uint16_t *)dst);
}
static void cpu_add_ln(cv_backend *be, float *x, const float *res, const float *gamma, const float *beta,
                       int M, int D, float eps) {
    (void)be;
    cv_cpu_add_ln(x, res, gamma, beta, M, D, eps);
}
static void cpu_attention(cv_backend *be, const float *qkv, const int32_t *offs, int nseq, int max_len, int H,
                          int hd, float *out) {
    cv_pool *pool = be->impl;
    if (!pool || H < 2) {
        cv_cpu_attention(qkv, offs, nseq, H, hd, out);
        return;
    }
    split_job j = {
        .qkv = qkv, .offs = offs, .nseq = nseq, .H = H, .hd = hd, .y = out, .parts = split_parts(pool, H)};
    cv_pool_run(pool, j.parts, attention_part, &j);
}
static void cpu_pool_l2(cv_backend *be, const float *x, const int32_t *offs, int nseq, int D,
                        cv_pool_mode mode, float *out, float *norms) {
    (void)be;
    cv_cpu_pool_l2(x, offs, nseq, D, mode, out, norms);
}
static void cpu_destroy(cv_backend *be) { free(be); }

cv_err cv_backend_cpu_new(cv_backend **out) {
    cv_backend *be = calloc(1, sizeof *be);
    if (!be) return CV_ERR_NOMEM;
    *be = (cv_backend){
        .name = "cpu",
        .alloc = cpu_alloc,
        .release = cpu_release,
        .weights = cpu_weights,
        .upload = cpu_copy,
        .download = cpu_copy,
        .sync = cpu_sync,
        .embed_ln = cpu_embed_ln,
        .linear_pack_floats = cv_cpu_pack_floats,
        .linear_pack = cv_cpu_pack_linear,
        .linear = cpu_linear,
        .add_ln = cpu_add_ln,
        .attention = cpu_attention,
        .pool_l2 = cpu_pool_l2,
        .destroy = cpu_destroy,
    };
    *out = be;
    return CV_OK;
}

cv_err cv_backend_cpu_new_bf16(cv_backend **out) {
    if (!cv_cpu_bf16_supported()) return CV_ERR_UNSUPPORTED;
    (void)cv_cpu_bf16_kernel(); /* AMX or not, decided (and permitted) now, not at the first text */
    cv_err err = cv_backend_cpu_new(out);
    if (err) return err;
    (*out)->linear_pack_floats = pack_bf16_floats;
    (*out)->linear_pack = pack_bf16;
    (*out)->linear = cpu_linear_bf16;
    return CV_OK;
}
