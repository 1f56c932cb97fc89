/* minilm.c: a sentence-transformers BERT model's forward pass (all-MiniLM-L6-v2 by default; the
 * sizes, pooling, normalization and prompts its folder declares, models/folder.h), composed from
 * backend ops.
 *
 * Per batch: tokenize (threads split the texts), pack the sequences without padding, split
 * them into one contiguous group per thread balanced by token count, and run the encoder
 * on each group with that thread's own backend and scratch:
 *
 *   h = LN(word[id] + pos[p] + type[0])
 *   per layer:  qkv = h Wqkv^T + b            (one fused GEMM, weights packed at load)
 *               ctx = attention(qkv)          (per sequence, real tokens only)
 *               a   = LN(ctx Wo^T + bo + h)
 *               t   = GELU(a W1^T + b1)
 *               h   = LN(t W2^T + b2 + a)
 *   out = L2(pool over each sequence's rows of h)    (mean, [CLS] row or max)
 *   then, for a model without a Normalize module, out * its norm (what sentence-transformers
 *   returns)
 */
#define _POSIX_C_SOURCE 200809L
#include "minilm.h"
#include "../kernels/blas.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cv_half.h"
#include "../common/cv_log.h"
#include "../common/cv_mem.h"
#include "../common/cv_pool.h"
#include "../kernels/backend.h"
#include "../kernels/cpu/cpu_ops.h"
#include "safetensors.h"

#define MAX_CHUNK_TOKENS 4096 /* rows per forward call: bounds scratch memory per thread */
#ifndef MAX_CHUNK_TOKENS_GPU  /* tests/cuda_sim sets it small: many batches, pipelined */
#define MAX_CHUNK_TOKENS_GPU 65536
#endif
/* below this many tokens per thread, one forward with ops split across threads beats one
 * forward per thread (measured with cdcvec bench embed, bench/RESULTS.md) */
#define INTRA_OP_TOKENS 256

typedef cv_encoder_layer layer_w; /* kernels/backend.h */

typedef struct {
    const float *word;  /* (V, D) */
    const float *pos;   /* (P, D) */
    const float *type0; /* (D): token type 0 */
    const float *ln_g, *ln_b;
    layer_w *layer; /* (L) */
} model_w;

typedef struct {
    cv_backend *be;
    model_w w;      /* in the backend's memory */
    cv_encoder enc; /* the same for be->encode */
    int cap;        /* token capacity of the scratch below */
    int seq_cap;
    float *h, *qkv, *ctx, *a, *inter; /* (cap, D|3D|D|D|NI) */
    int32_t *ids, *pos, *offs;        /* (cap), (cap), (seq_cap+1) */
    float *out;                       /* (seq_cap, D), then (seq_cap) norms */
    cv_err err;
} worker;

struct cv_minilm {
    cv_minilm_config cfg;
    cv_model_facts facts; /* model.h; revision points at rev, id at id */
    char rev[65];
    char id[256];
    const char *prompt; /* the prompt of the texts being tokenized (document or query) */
    size_t prompt_len;
    cv_tok *tok;
    cv_st *st;
    model_w host; /* host pointers: into the mapping or into owned[] */
    void **owned; /* buffers we allocated for weights (packed QKV, converted dtypes) */
    int nowned, owned_cap;
    cv_pool *pool;
    worker *wk;   /* (nthreads) */
    int nthreads; /* tokenizer threads, and CPU workers */
    int nworkers; /* CPU: nthreads; CUDA: 1 */
    int chunk_tokens;
    /* per-call staging */
    int32_t *tok_ids; /* (n_cap * max_seq) */
    int32_t *tok_len; /* (n_cap) */
    int32_t *packed, *offs;
    float *norms; /* (n_cap): models without Normalize */
    int n_cap;
};

/* ---- config ---------------------------------------------------------------------------- */

const char *cv_minilm_fetch_fix(void) {
    const char *c = getenv("CDCVEC_CONTAINER");
    if (c && *c && strcmp(c, "0") != 0)
        return "this image has no model and cannot fetch one: mount an all-MiniLM-L6-v2 folder (made by "
               "models/fetch_model.py) read-only at CDCVEC_MODEL_DIR, e.g. docker run -v "
               "/path/to/all-MiniLM-L6-v2:/opt/cdcvec/model:ro (compose: a volume on the service), or use "
               "the "
               "image built with the model (Dockerfile target runtime)";
    return "python3 models/fetch_model.py";
}

/* ---- weights --------------------------------------------------------------------------- */

static void *own(cv_minilm *m, size_t bytes) {
    if (m->nowned == m->owned_cap) {
        int cap = m->owned_cap ? m->owned_cap * 2 : 64;
        void **p = realloc(m->owned, sizeof(void *) * (size_t)cap);
        if (!p) return NULL;
        m->owned = p;
        m->owned_cap = cap;
    }
    void *p = cv_mem_alloc(bytes);
    if (!p) return NULL;
    m->owned[m->nowned++] = p;
    return p;
}

/* Finds name with the expected shape and returns float32 host data (converted if stored
 * as F16/BF16, copied if misaligned). */
static cv_err tensor(cv_minilm *m, const char *path, const char *name, int64_t d0, int64_t d1,
                     const float **out) {
    const cv_st_tensor *t = cv_st_find(m->st, name);
    if (!t) {
        cv_error("event=model_invalid path=%s tensor=%s error=\"missing\"", path, name);
        return CV_ERR_NOTFOUND;
    }
    int want_ndim = d1 ? 2 : 1;
    if (t->ndim != want_ndim || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        cv_error("event=model_invalid path=%s tensor=%s error=\"shape mismatch\" expected=[%lld%s%lld] "
                 "ndim=%d first=%lld",
                 path, name, (long long)d0, d1 ? "," : "", (long long)d1, t->ndim,
                 (long long)(t->ndim ? t->shape[0] : -1));
        return CV_ERR_MISMATCH;
    }
    size_t count = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    if (t->dtype == CV_DT_F32) {
        if (((uintptr_t)t->data & 3u) == 0) {
            *out = t->data;
            return CV_OK;
        }
        float *p = own(m, count * 4);
        if (!p) return CV_ERR_NOMEM;
        memcpy(p, t->data, count * 4);
        *out = p;
        return CV_OK;
    }
    if (t->dtype == CV_DT_F16 || t->dtype == CV_DT_BF16) {
        float *p = own(m, count * 4);
        if (!p) return CV_ERR_NOMEM;
        const uint8_t *src = t->data;
        for (size_t i = 0; i < count; i++) {
            uint16_t v = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            if (t->dtype == CV_DT_F16) {
                p[i] = cv_half_to_float(v);
            } else {
                uint32_t bits = (uint32_t)v << 16;
                memcpy(&p[i], &bits, 4);
            }
        }
        *out = p;
        return CV_OK;
    }
    cv_error("event=model_invalid path=%s tensor=%s error=\"dtype %s, expected F32, F16 or BF16\"", path,
             name, t->dtype_name);
    return CV_ERR_MISMATCH;
}

static cv_err load_weights(cv_minilm *m, const char *dir) {
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cv_err err = cv_st_open(path, &m->st);
    if (err) return err;
    const cv_minilm_config *c = &m->cfg;
    const int64_t D = c->hidden, NI = c->intermediate;
    model_w *w = &m->host;
    const float *type;
    if ((err = tensor(m, path, "embeddings.word_embeddings.weight", c->vocab, D, &w->word)) ||
        (err = tensor(m, path, "embeddings.position_embeddings.weight", c->max_positions, D, &w->pos)) ||
        (err = tensor(m, path, "embeddings.token_type_embeddings.weight", c->type_vocab, D, &type)) ||
        (err = tensor(m, path, "embeddings.LayerNorm.weight", D, 0, &w->ln_g)) ||
        (err = tensor(m, path, "embeddings.LayerNorm.bias", D, 0, &w->ln_b)))
        return err;
    w->type0 = type;
    w->layer = own(m, sizeof(layer_w) * (size_t)c->layers);
    if (!w->layer) return CV_ERR_NOMEM;
    for (int l = 0; l < c->layers; l++) {
        layer_w *L = &w->layer[l];
        const float *q, *k, *v, *bq, *bk, *bv;
#define T(suffix, d0, d1, dst)                                                                               \
    (snprintf(name, sizeof name, "encoder.layer.%d.%s", l, suffix),                                          \
     (err = tensor(m, path, name, d0, d1, dst)))
        if (T("attention.self.query.weight", D, D, &q) || T("attention.self.key.weight", D, D, &k) ||
            T("attention.self.value.weight", D, D, &v) || T("attention.self.query.bias", D, 0, &bq) ||
            T("attention.self.key.bias", D, 0, &bk) || T("attention.self.value.bias", D, 0, &bv) ||
            T("attention.output.dense.weight", D, D, &L->wo) ||
            T("attention.output.dense.bias", D, 0, &L->bo) ||
            T("attention.output.LayerNorm.weight", D, 0, &L->ln1_g) ||
            T("attention.output.LayerNorm.bias", D, 0, &L->ln1_b) ||
            T("intermediate.dense.weight", NI, D, &L->w1) || T("intermediate.dense.bias", NI, 0, &L->b1) ||
            T("output.dense.weight", D, NI, &L->w2) || T("output.dense.bias", D, 0, &L->b2) ||
            T("output.LayerNorm.weight", D, 0, &L->ln2_g) || T("output.LayerNorm.bias", D, 0, &L->ln2_b))
            return err;
#undef T
        float *wqkv = own(m, sizeof(float) * (size_t)(3 * D * D)),
              *bqkv = own(m, sizeof(float) * (size_t)(3 * D));
        if (!wqkv || !bqkv) return CV_ERR_NOMEM;
        memcpy(wqkv, q, sizeof(float) * (size_t)(D * D));
        memcpy(wqkv + D * D, k, sizeof(float) * (size_t)(D * D));
        memcpy(wqkv + 2 * D * D, v, sizeof(float) * (size_t)(D * D));
        memcpy(bqkv, bq, sizeof(float) * (size_t)D);
        memcpy(bqkv + D, bk, sizeof(float) * (size_t)D);
        memcpy(bqkv + 2 * D, bv, sizeof(float) * (size_t)D);
        L->wqkv = wqkv;
        L->bqkv = bqkv;
    }
    return CV_OK;
}

/* Frees p, a buffer from own(), early. */
static void disown(cv_minilm *m, const void *p) {
    for (int i = 0; i < m->nowned; i++)
        if (m->owned[i] == p) {
            free(m->owned[i]);
            m->owned[i] = m->owned[--m->nowned];
            return;
        }
}

/* Rewrites the GEMM weights of host into the layout be->linear() reads (be->linear_pack),
 * all of them in one buffer. */
static cv_err pack_linear_weights(cv_minilm *m, const cv_backend *be) {
    const cv_minilm_config *c = &m->cfg;
    const int D = c->hidden, NI = c->intermediate;
    const size_t per_layer = be->linear_pack_floats(3 * D, D) + be->linear_pack_floats(D, D) +
                             be->linear_pack_floats(NI, D) + be->linear_pack_floats(D, NI);
    float *p = own(m, sizeof(float) * per_layer * (size_t)c->layers);
    if (!p) return CV_ERR_NOMEM;
    for (int l = 0; l < c->layers; l++) {
        layer_w *L = &m->host.layer[l];
        const float *wqkv = L->wqkv;
        struct {
            const float **w;
            int N, K;
        } mats[] = {{&L->wqkv, 3 * D, D}, {&L->wo, D, D}, {&L->w1, NI, D}, {&L->w2, D, NI}};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            be->linear_pack(*mats[i].w, mats[i].N, mats[i].K, p);
            *mats[i].w = p;
            p += be->linear_pack_floats(mats[i].N, mats[i].K);
        }
        disown(m, wqkv); /* the Q|K|V concatenation from load_weights */
    }
    return CV_OK;
}

/* ---- workers --------------------------------------------------------------------------- */

/* Gives worker k the backend be (owned from now on) and the weights in its memory. */
static cv_err worker_init(cv_minilm *m, worker *k, cv_backend *be) {
    k->be = be;
    const cv_minilm_config *c = &m->cfg;
    const size_t D = (size_t)c->hidden, NI = (size_t)c->intermediate;
    const model_w *h = &m->host;
    k->w.word = be->weights(be, h->word, (size_t)c->vocab * D);
    k->w.pos = be->weights(be, h->pos, (size_t)c->max_positions * D);
    k->w.type0 = be->weights(be, h->type0, D);
    k->w.ln_g = be->weights(be, h->ln_g, D);
    k->w.ln_b = be->weights(be, h->ln_b, D);
    /* a device backend returns NULL when an upload fails: every weight is checked */
    if (!k->w.word || !k->w.pos || !k->w.type0 || !k->w.ln_g || !k->w.ln_b) return CV_ERR_DEVICE;
    k->w.layer = calloc((size_t)c->layers, sizeof(layer_w));
    if (!k->w.layer) return CV_ERR_NOMEM;
    for (int l = 0; l < c->layers; l++) {
        const layer_w *s = &h->layer[l];
        layer_w *d = &k->w.layer[l];
        d->wqkv = be->weights(be, s->wqkv, 3 * D * D);
        d->bqkv = be->weights(be, s->bqkv, 3 * D);
        d->wo = be->weights(be, s->wo, D * D);
        d->bo = be->weights(be, s->bo, D);
        d->ln1_g = be->weights(be, s->ln1_g, D);
        d->ln1_b = be->weights(be, s->ln1_b, D);
        d->w1 = be->weights(be, s->w1, NI * D);
        d->b1 = be->weights(be, s->b1, NI);
        d->w2 = be->weights(be, s->w2, D * NI);
        d->b2 = be->weights(be, s->b2, D);
        d->ln2_g = be->weights(be, s->ln2_g, D);
        d->ln2_b = be->weights(be, s->ln2_b, D);
        if (!d->wqkv || !d->bqkv || !d->wo || !d->bo || !d->ln1_g || !d->ln1_b || !d->w1 || !d->b1 ||
            !d->w2 || !d->b2 || !d->ln2_g || !d->ln2_b)
            return CV_ERR_DEVICE;
    }
    k->enc = (cv_encoder){.word = k->w.word,
                          .pos = k->w.pos,
                          .type0 = k->w.type0,
                          .ln_g = k->w.ln_g,
                          .ln_b = k->w.ln_b,
                          .layer = k->w.layer,
                          .layers = c->layers,
                          .D = c->hidden,
                          .H = c->heads,
                          .NI = c->intermediate,
                          .eps = c->ln_eps,
                          .pool = c->pool};
    return CV_OK;
}

static void worker_release_scratch(worker *k) {
    cv_backend *be = k->be;
    void *bufs[] = {k->h, k->qkv, k->ctx, k->a, k->inter, k->ids, k->pos, k->offs, k->out};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->release(be, bufs[i]);
    k->h = k->qkv = k->ctx = k->a = k->inter = k->out = NULL;
    k->ids = k->pos = k->offs = NULL;
    k->cap = k->seq_cap = 0;
}

static cv_err worker_reserve(const cv_minilm_config *c, worker *k, int tokens, int seqs) {
    if (tokens <= k->cap && seqs <= k->seq_cap) return CV_OK;
    if (tokens < k->cap) tokens = k->cap;
    if (seqs < k->seq_cap) seqs = k->seq_cap;
    worker_release_scratch(k);
    cv_backend *be = k->be;
    const size_t T = (size_t)tokens, D = (size_t)c->hidden, F = sizeof(float);
    k->h = be->alloc(be, T * D * F);
    k->qkv = be->alloc(be, T * 3 * D * F);
    k->ctx = be->alloc(be, T * D * F);
    k->a = be->alloc(be, T * D * F);
    k->inter = be->alloc(be, T * (size_t)c->intermediate * F);
    k->ids = be->alloc(be, T * sizeof(int32_t));
    k->pos = be->alloc(be, T * sizeof(int32_t));
    k->offs = be->alloc(be, ((size_t)seqs + 1) * sizeof(int32_t));
    k->out = be->alloc(be, (size_t)seqs * (D + 1) * F);
    if (!k->h || !k->qkv || !k->ctx || !k->a || !k->inter || !k->ids || !k->pos || !k->offs || !k->out) {
        worker_release_scratch(k);
        return CV_ERR_NOMEM;
    }
    k->cap = tokens;
    k->seq_cap = seqs;
    return CV_OK;
}

/* Runs the encoder on nseq packed sequences (host ids/offs, offs[0] may be nonzero). With wait
 * 0 and a backend that has encode(), returns once the batch is queued: out is written at
 * be->encode_wait(). norms (nseq, host) may be NULL: else it gets each vector's norm before
 * the L2 normalization. */
static cv_err forward(const cv_minilm_config *c, worker *k, const int32_t *ids, const int32_t *offs, int nseq,
                      float *out, float *norms, int wait) {
    const int T = offs[nseq] - offs[0], D = c->hidden, H = c->heads, hd = D / H;
    cv_backend *be = k->be;
    cv_err err = be->encode ? CV_OK : worker_reserve(c, k, T, nseq);
    if (err) return err;
    /* positions restart at 0 for every sequence; offsets rebased to 0 */
    int32_t *pos = malloc(sizeof(int32_t) * ((size_t)T + (size_t)nseq + 1));
    if (!pos) return CV_ERR_NOMEM;
    int32_t *roffs = pos + T;
    int max_len = 0;
    for (int s = 0; s <= nseq; s++)
        roffs[s] = offs[s] - offs[0];
    for (int s = 0; s < nseq; s++) {
        if (roffs[s + 1] - roffs[s] > max_len) max_len = roffs[s + 1] - roffs[s];
        for (int t = roffs[s]; t < roffs[s + 1]; t++)
            pos[t] = t - roffs[s];
    }
    if (be->encode) { /* the backend runs the whole encoder (CUDA: fp16, fused, graphs) */
        err = be->encode(be, &k->enc, ids + offs[0], pos, roffs, T, nseq, max_len, out, norms);
        free(pos);
        return err || !wait ? err : be->encode_wait(be);
    }
    if ((err = be->upload(be, k->ids, ids + offs[0], sizeof(int32_t) * (size_t)T)) ||
        (err = be->upload(be, k->pos, pos, sizeof(int32_t) * (size_t)T)) ||
        (err = be->upload(be, k->offs, roffs, sizeof(int32_t) * ((size_t)nseq + 1)))) {
        free(pos);
        return err;
    }
    const model_w *w = &k->w;
    be->embed_ln(be, k->ids, k->pos, T, D, w->word, w->pos, w->type0, w->ln_g, w->ln_b, c->ln_eps, k->h);
    for (int l = 0; l < c->layers; l++) {
        const layer_w *L = &w->layer[l];
        be->linear(be, k->h, L->wqkv, L->bqkv, T, 3 * D, D, CV_ACT_NONE, k->qkv);
        be->attention(be, k->qkv, k->offs, nseq, max_len, H, hd, k->ctx);
        be->linear(be, k->ctx, L->wo, L->bo, T, D, D, CV_ACT_NONE, k->a);
        be->add_ln(be, k->a, k->h, L->ln1_g, L->ln1_b, T, D, c->ln_eps);
        be->linear(be, k->a, L->w1, L->b1, T, c->intermediate, D, CV_ACT_GELU, k->inter);
        be->linear(be, k->inter, L->w2, L->b2, T, D, c->intermediate, CV_ACT_NONE, k->h);
        be->add_ln(be, k->h, k->a, L->ln2_g, L->ln2_b, T, D, c->ln_eps);
    }
    float *dnorms = norms ? k->out + (size_t)nseq * D : NULL;
    be->pool_l2(be, k->h, k->offs, nseq, D, c->pool, k->out, dnorms);
    err = be->download(be, out, k->out, sizeof(float) * (size_t)nseq * (size_t)D);
    if (!err && norms) err = be->download(be, norms, dnorms, sizeof(float) * (size_t)nseq);
    if (!err) err = be->sync(be);
    free(pos);
    return err;
}

/* ---- public ---------------------------------------------------------------------------- */

const char *cv_minilm_default_dir(void) {
    static char buf[4096];
    const char *env = getenv("CDCVEC_MODEL_DIR");
    if (env && *env) return env;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/cdcvec/all-MiniLM-L6-v2", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.cache/cdcvec/all-MiniLM-L6-v2", home ? home : ".");
    return buf;
}

/* Picks the backend for opts->device: CUDA when asked or (auto) when a device initializes,
 * else the CPU. *gpu is NULL for the CPU; why says which and why. */
static cv_err pick_device(cv_device dev, cv_backend **gpu, char *why, size_t why_len) {
    *gpu = NULL;
    if (dev == CV_DEVICE_CPU) {
        snprintf(why, why_len, "requested");
        return CV_OK;
    }
#ifdef CV_HAVE_CUDA
    char reason[256];
    if (cv_backend_cuda_new(0, gpu, reason, sizeof reason) == CV_OK) {
        snprintf(why, why_len, "%s", reason);
        return CV_OK;
    }
    if (dev == CV_DEVICE_CUDA) {
        cv_error("event=device_unavailable device=cuda error=\"%s\" fix=\"use --device cpu or auto\"",
                 reason);
        return CV_ERR_DEVICE;
    }
    snprintf(why, why_len, "CUDA unavailable: %s", reason);
    if (cv_cuda_device_count() > 0) /* a GPU is there but failed: worth a warning */
        cv_warn("event=device_fallback device=cpu reason=\"%s\"", reason);
#else
    if (dev == CV_DEVICE_CUDA) {
        cv_error("event=device_unavailable device=cuda error=\"this build has no CUDA backend (no nvcc at "
                 "build time)\" fix=\"use --device cpu or auto, or rebuild where nvcc is installed\"");
        return CV_ERR_UNSUPPORTED;
    }
    snprintf(why, why_len, "built without CUDA");
#endif
    return CV_OK;
}

/* The model's id: CV_MODEL_ID for all-MiniLM-L6-v2 (its weights, or a folder of that name:
 * the fp16 pack, an engine-only build without revisions), else the folder's name. */
static void model_id(cv_minilm *m, const char *dir) {
    static const char minilm_sha[] = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/')
        b--;
    snprintf(m->id, sizeof m->id, "%.*s", (int)(n - b), dir + b);
    const cv_minilm_config *c = &m->cfg;
    const int minilm_shape = c->hidden == 384 && c->layers == 6 && c->heads == 12 && c->vocab == 30522 &&
                             c->pool == CV_POOL_MEAN && c->normalize && c->lowercase && !*c->doc_prompt;
    if (!strcmp(m->rev, minilm_sha) || !strncmp(m->id, CV_MODEL_SHORT_ID, strlen(CV_MODEL_SHORT_ID)) ||
        (minilm_shape && !strcmp(m->rev, "unknown")) || !m->id[0])
        snprintf(m->id, sizeof m->id, "%s", CV_MODEL_ID);
}

cv_err cv_minilm_load(const char *model_dir, const cv_minilm_opts *opts, cv_minilm **out) {
    *out = NULL;
    cv_minilm_opts o = opts ? *opts : (cv_minilm_opts){0};
    cv_minilm *m = calloc(1, sizeof *m);
    if (!m) return CV_ERR_NOMEM;
    char path[4096];
    cv_err err = cv_folder_read(model_dir, &m->cfg);
    if (!err) {
        snprintf(path, sizeof path, "%s/vocab.txt", model_dir);
        err = cv_tok_load(path, &m->tok);
    }
    if (!err) cv_tok_set_cased(m->tok, !m->cfg.lowercase);
    if (!err && cv_tok_vocab_size(m->tok) != m->cfg.vocab) {
        cv_error("event=model_invalid path=%s error=\"vocab.txt has %d tokens, config.json says "
                 "%d\"",
                 path, cv_tok_vocab_size(m->tok), m->cfg.vocab);
        err = CV_ERR_MISMATCH;
    }
    if (!err) err = load_weights(m, model_dir);
    if (!err) {
        snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
        err = cv_model_file_sha256(path, m->rev);
        model_id(m, model_dir);
        m->facts = (cv_model_facts){.id = m->id,
                                    .revision = m->rev,
                                    .dim = m->cfg.hidden,
                                    .pooling = cv_folder_pool_name(m->cfg.pool),
                                    .max_seq = m->cfg.max_seq,
                                    .normalize = m->cfg.normalize,
                                    .doc_prompt = m->cfg.doc_prompt,
                                    .query_prompt = m->cfg.query_prompt};
    }
    if (err) {
        cv_minilm_free(m);
        return err;
    }
    int nt = o.threads > 0 ? o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nt < 1) nt = 1;
    if (nt > 256) nt = 256;
    /* parallelism is ours: one sequence group per thread, single-threaded BLAS in each */
    openblas_set_num_threads(1);
    m->nthreads = nt;
    char why[320];
    cv_backend *gpu = NULL;
    if ((err = pick_device(o.device, &gpu, why, sizeof why))) {
        cv_minilm_free(m);
        return err;
    }
    m->nworkers = gpu ? 1 : nt;
    m->chunk_tokens = gpu ? MAX_CHUNK_TOKENS_GPU : MAX_CHUNK_TOKENS;
    m->wk = calloc((size_t)m->nworkers, sizeof(worker));
    if (!m->wk || (err = cv_pool_new(nt, &m->pool))) {
        if (gpu) gpu->destroy(gpu);
        cv_minilm_free(m);
        return err ? err : CV_ERR_NOMEM;
    }
    if (o.precision == CV_PRECISION_BF16 && gpu) {
        cv_error("event=precision_unsupported precision=bf16 device=cuda error=\"bf16 is a CPU backend "
                 "option\" fix=\"use --device cpu, or fp32\"");
        gpu->destroy(gpu);
        cv_minilm_free(m);
        return CV_ERR_UNSUPPORTED;
    }
    if (o.precision == CV_PRECISION_BF16 && !cv_cpu_bf16_supported()) {
        cv_error(
            "event=precision_unsupported precision=bf16 device=cpu error=\"this CPU has no AVX512-BF16\" "
            "fix=\"use fp32\"");
        cv_minilm_free(m);
        return CV_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < m->nworkers && !err; i++) {
        cv_backend *be = gpu;
        if (!be &&
            (err = o.precision == CV_PRECISION_BF16 ? cv_backend_cpu_new_bf16(&be) : cv_backend_cpu_new(&be)))
            break;
        if (i == 0 && be->linear_pack && (err = pack_linear_weights(m, be))) {
            be->destroy(be);
            break;
        }
        err = worker_init(m, &m->wk[i], be);
    }
    if (err) {
        cv_minilm_free(m);
        return err;
    }
    if (o.precision == CV_PRECISION_BF16)
        cv_info("event=gemm_precision precision=bf16 kernel=%s", cv_cpu_bf16_kernel());
    cv_blas_info bi;
    cv_blas_info_get(&bi);
    cv_info("event=model_loaded dir=%s model=%s revision=%s device=%s reason=\"%s\" threads=%d layers=%d "
            "hidden=%d heads=%d max_seq=%d pooling=%s normalize=%d cased=%d doc_prompt=\"%s\" "
            "query_prompt=\"%s\" gemm=%s blas_kernel=%s blas_chosen_by=%s openblas_default=%s cpu_best=%s",
            model_dir, m->facts.id, m->rev, m->wk[0].be->name, why, nt, m->cfg.layers, m->cfg.hidden,
            m->cfg.heads, m->cfg.max_seq, m->facts.pooling, m->cfg.normalize, !m->cfg.lowercase,
            m->cfg.doc_prompt, m->cfg.query_prompt, cv_cpu_gemm_isa(), bi.kernel, bi.chosen_by,
            bi.openblas_default, bi.best);
    *out = m;
    return CV_OK;
}

void cv_minilm_free(cv_minilm *m) {
    if (!m) return;
    cv_pool_free(m->pool);
    if (m->wk) {
        for (int i = 0; i < m->nworkers; i++) {
            worker *k = &m->wk[i];
            if (!k->be) continue;
            worker_release_scratch(k);
            free(k->w.layer);
            k->be->destroy(k->be);
        }
        free(m->wk);
    }
    for (int i = 0; i < m->nowned; i++)
        free(m->owned[i]);
    free(m->owned);
    cv_st_close(m->st);
    cv_tok_free(m->tok);
    free(m->tok_ids);
    free(m->tok_len);
    free(m->packed);
    free(m->offs);
    free(m->norms);
    cv_folder_free(&m->cfg);
    free(m);
}

const cv_minilm_config *cv_minilm_cfg(const cv_minilm *m) { return &m->cfg; }
const cv_model_facts *cv_minilm_facts(const cv_minilm *m) { return &m->facts; }
const cv_tok *cv_minilm_tok(const cv_minilm *m) { return m->tok; }
const char *cv_minilm_device(const cv_minilm *m) { return m->wk[0].be->name; }
int cv_minilm_threads(const cv_minilm *m) { return m->nthreads; }

typedef struct {
    cv_minilm *m;
    const int32_t *ids, *offs;
    int nseq, ngroups;
    int *group_start;   /* (ngroups+1) sequence indices */
    float *out, *norms; /* norms may be NULL */
} run_arg;

/* One thread's group, in chunks of at most MAX_CHUNK_TOKENS tokens. */
static void run_group(void *p, int g) {
    run_arg *a = p;
    worker *k = &a->m->wk[g];
    const int D = a->m->cfg.hidden;
    int s = a->group_start[g], end = a->group_start[g + 1];
    k->err = CV_OK;
    while (s < end && !k->err) {
        int e = s + 1;
        while (e < end && a->offs[e + 1] - a->offs[s] <= a->m->chunk_tokens)
            e++;
        k->err = forward(&a->m->cfg, k, a->ids, a->offs + s, e - s, a->out + (size_t)s * D,
                         a->norms ? a->norms + s : NULL, 1);
        s = e;
    }
}

cv_err cv_minilm_embed_ids(cv_minilm *m, const int32_t *ids, const int32_t *offs, int nseq, float *out) {
    return cv_minilm_embed_ids_norms(m, ids, offs, nseq, out, NULL);
}

cv_err cv_minilm_embed_ids_norms(cv_minilm *m, const int32_t *ids, const int32_t *offs, int nseq, float *out,
                                 float *norms) {
    if (nseq <= 0) return nseq == 0 ? CV_OK : CV_ERR_ARG;
    for (int s = 0; s < nseq; s++) {
        int len = offs[s + 1] - offs[s];
        if (len < 1 || len > m->cfg.max_positions) return CV_ERR_ARG;
    }
    for (int t = offs[0]; t < offs[nseq]; t++)
        if (ids[t] < 0 || ids[t] >= m->cfg.vocab) return CV_ERR_ARG;
    const long total = offs[nseq] - offs[0];
    if (m->nworkers > 1 && (nseq < m->nworkers || total < (long)INTRA_OP_TOKENS * m->nworkers)) {
        /* few tokens: one forward, every GEMM and attention split across the threads */
        worker *k = &m->wk[0];
        cv_backend_cpu_set_pool(k->be, m->pool);
        int group_start[2] = {0, nseq};
        run_arg a = {m, ids, offs, nseq, 1, group_start, out, norms};
        run_group(&a, 0);
        cv_backend_cpu_set_pool(k->be, NULL);
        return k->err;
    }
    int ng = m->nworkers < nseq ? m->nworkers : nseq;
    int group_start[257];
    /* contiguous groups with about equal token counts */
    group_start[0] = 0;
    int s = 0;
    for (int g = 1; g < ng; g++) {
        long target = total * g / ng + offs[0];
        while (s < nseq - (ng - g) && offs[s + 1] <= target)
            s++;
        if (s < group_start[g - 1] + 1) s = group_start[g - 1] + 1;
        group_start[g] = s;
    }
    group_start[ng] = nseq;
    run_arg a = {m, ids, offs, nseq, ng, group_start, out, norms};
    cv_pool_run(m->pool, ng, run_group, &a);
    for (int g = 0; g < ng; g++)
        if (m->wk[g].err) return m->wk[g].err;
    return CV_OK;
}

typedef struct {
    cv_minilm *m;
    const char *const *texts;
    const size_t *lens;
    int start, n, nt; /* texts start .. n-1 */
} tok_arg;

static void tok_task(void *p, int task) {
    tok_arg *a = p;
    const int ms = a->m->cfg.max_seq;
    for (int i = a->start + task; i < a->n; i += a->nt)
        a->m->tok_len[i] = cv_tok_encode_prefixed(a->m->tok, a->m->prompt, a->m->prompt_len, a->texts[i],
                                                  a->lens[i], a->m->tok_ids + (size_t)i * ms, ms);
}

/* Tokenizes texts start .. end-1 into tok_ids/tok_len on the pool. */
static void tokenize(cv_minilm *m, const char *const *texts, const size_t *lens, int start, int end) {
    int nt = m->nthreads < end - start ? m->nthreads : end - start;
    tok_arg ta = {m, texts, lens, start, end, nt};
    cv_pool_run(m->pool, nt, tok_task, &ta);
}

/* A device backend with encode(): batches of chunk_tokens / max_seq texts, the next one
 * tokenized while the device runs the current one. */
static cv_err embed_pipelined(cv_minilm *m, const char *const *texts, const size_t *lens, int n, float *out,
                              float *norms, long *ntokens) {
    const int ms = m->cfg.max_seq, D = m->cfg.hidden,
              step = m->chunk_tokens / ms > 0 ? m->chunk_tokens / ms : 1;
    worker *k = &m->wk[0];
    long tok = 0;
    cv_err err = CV_OK;
    tokenize(m, texts, lens, 0, step < n ? step : n);
    for (int s = 0; s < n && !err; s += step) {
        const int e = s + step < n ? s + step : n;
        m->offs[0] = 0;
        for (int i = s; i < e; i++) {
            memcpy(m->packed + m->offs[i - s], m->tok_ids + (size_t)i * ms,
                   sizeof(int32_t) * (size_t)m->tok_len[i]);
            m->offs[i - s + 1] = m->offs[i - s] + m->tok_len[i];
        }
        tok += m->offs[e - s];
        err =
            forward(&m->cfg, k, m->packed, m->offs, e - s, out + (size_t)s * D, norms ? norms + s : NULL, 0);
        if (!err && e < n) tokenize(m, texts, lens, e, e + step < n ? e + step : n); /* overlaps the device */
        cv_err werr = k->be->encode_wait(k->be);
        if (!err) err = werr;
    }
    if (ntokens) *ntokens = tok;
    return err;
}

cv_err cv_minilm_embed(cv_minilm *m, const char *const *texts, const size_t *lens, int n, float *out,
                       long *ntokens) {
    return cv_minilm_embed_kind(m, CV_TEXT_DOCUMENT, texts, lens, n, out, ntokens);
}

cv_err cv_minilm_embed_kind(cv_minilm *m, cv_text_kind kind, const char *const *texts, const size_t *lens,
                            int n, float *out, long *ntokens) {
    if (n < 0) return CV_ERR_ARG;
    if (ntokens) *ntokens = 0;
    if (n == 0) return CV_OK;
    const int ms = m->cfg.max_seq;
    if (n > m->n_cap) {
        free(m->tok_ids);
        free(m->tok_len);
        free(m->packed);
        free(m->offs);
        free(m->norms);
        m->tok_ids = malloc(sizeof(int32_t) * (size_t)n * ms);
        m->tok_len = malloc(sizeof(int32_t) * (size_t)n);
        m->packed = malloc(sizeof(int32_t) * (size_t)n * ms);
        m->offs = malloc(sizeof(int32_t) * ((size_t)n + 1));
        m->norms = malloc(sizeof(float) * (size_t)n);
        m->n_cap = n;
        if (!m->tok_ids || !m->tok_len || !m->packed || !m->offs || !m->norms) {
            m->n_cap = 0;
            return CV_ERR_NOMEM;
        }
    }
    m->prompt = kind == CV_TEXT_QUERY ? m->cfg.query_prompt : m->cfg.doc_prompt;
    m->prompt_len = strlen(m->prompt);
    float *norms = m->cfg.normalize ? NULL : m->norms; /* no Normalize: the pooled vector itself */
    cv_err err;
    if (m->nworkers == 1 && m->wk[0].be->encode && n > m->chunk_tokens / ms) {
        err = embed_pipelined(m, texts, lens, n, out, norms, ntokens);
    } else {
        tokenize(m, texts, lens, 0, n);
        m->offs[0] = 0;
        for (int i = 0; i < n; i++) {
            memcpy(m->packed + m->offs[i], m->tok_ids + (size_t)i * ms,
                   sizeof(int32_t) * (size_t)m->tok_len[i]);
            m->offs[i + 1] = m->offs[i] + m->tok_len[i];
        }
        if (ntokens) *ntokens = m->offs[n];
        err = cv_minilm_embed_ids_norms(m, m->packed, m->offs, n, out, norms);
    }
    const int D = m->cfg.hidden;
    for (int i = 0; !err && norms && i < n; i++)
        for (int j = 0; j < D; j++)
            out[(size_t)i * D + j] *= norms[i];
    return err;
}

int cv_minilm_tokenize(const cv_minilm *m, cv_text_kind kind, const char *text, size_t len, int32_t *ids) {
    const char *p = kind == CV_TEXT_QUERY ? m->cfg.query_prompt : m->cfg.doc_prompt;
    return cv_tok_encode_prefixed(m->tok, p, strlen(p), text, len, ids, m->cfg.max_seq);
}
