/* minilm.h: a sentence-transformers BERT model (all-MiniLM-L6-v2 by default): the encoder,
 * mean / CLS / max pooling, optional L2 normalization, prompts, any sizes the folder's files
 * declare (models/folder.h), composed from kernels/backend.h ops only. */
#ifndef CV_MINILM_H
#define CV_MINILM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "folder.h"
#include "model.h"
#include "tokenizer.h"

/* Model facts, read from the folder's files (folder.h): sizes, pooling, normalization, casing,
 * prompts. all-MiniLM-L6-v2: hidden 384, 6 layers, 12 heads, intermediate 1536, max_seq 256. */
typedef cv_folder cv_minilm_config;

/* What a text is: documents get the model's document prompt, searches its query prompt. */
typedef enum { CV_TEXT_DOCUMENT = 0, CV_TEXT_QUERY } cv_text_kind;

typedef enum { CV_DEVICE_AUTO = 0, CV_DEVICE_CPU, CV_DEVICE_CUDA } cv_device;

/* Arithmetic of the CPU backend's GEMMs. BF16 rounds weights and GEMM inputs to bfloat16
 * (fp32 accumulation, everything else fp32); CPUs with AVX512-BF16 only. */
typedef enum { CV_PRECISION_FP32 = 0, CV_PRECISION_BF16 } cv_precision;

typedef struct cv_minilm_opts {
    int threads;            /* 0 = all online CPUs */
    cv_device device;       /* AUTO picks CUDA when built in and a device initializes, else CPU */
    cv_precision precision; /* FP32 (default) or BF16 (CPU only) */
} cv_minilm_opts;

typedef struct cv_minilm cv_minilm;

/* Default model folder: $CDCVEC_MODEL_DIR, else ${XDG_CACHE_HOME:-~/.cache}/cdcvec/
 * all-MiniLM-L6-v2 (where models/fetch_model.py puts it). Static storage. */
const char *cv_minilm_default_dir(void);

/* What to do when the model's files are missing: "python3 models/fetch_model.py" from a source
 * tree; in the container images (CDCVEC_CONTAINER=1, set by docker/Dockerfile*), how to mount
 * the model folder, since the image cannot fetch it. Static storage. */
const char *cv_minilm_fetch_fix(void);

/* Loads model_dir's sentence-transformers folder (folder.h; vocab.txt, model.safetensors),
 * checking every tensor's name, dtype and shape; refuses (CV_ERR_UNSUPPORTED, logged with the
 * fix) what cdcvec cannot run exactly. On success *out is owned by the caller. */
cv_err cv_minilm_load(const char *model_dir, const cv_minilm_opts *opts, cv_minilm **out);
void cv_minilm_free(cv_minilm *m);

const cv_minilm_config *cv_minilm_cfg(const cv_minilm *m);
/* The model's facts (model.h): id, revision (computed at load), dimension, pooling, max_seq. */
const cv_model_facts *cv_minilm_facts(const cv_minilm *m);
const cv_tok *cv_minilm_tok(const cv_minilm *m);
const char *cv_minilm_device(const cv_minilm *m); /* "cpu" or "cuda" */
int cv_minilm_threads(const cv_minilm *m);

/* Embeds n documents (texts[i] has lens[i] bytes, any bytes; the model's document prompt
 * prepended) into out (n * hidden floats, caller-owned): what sentence-transformers' encode
 * returns (L2-normalized when the model has a Normalize module). If ntokens is not NULL it
 * receives the total number of tokens processed. Not reentrant on one model. */
cv_err cv_minilm_embed(cv_minilm *m, const char *const *texts, const size_t *lens, int n, float *out,
                       long *ntokens);
/* The same for kind's prompt (CV_TEXT_QUERY: searches). */
cv_err cv_minilm_embed_kind(cv_minilm *m, cv_text_kind kind, const char *const *texts, const size_t *lens,
                            int n, float *out, long *ntokens);

/* Tokenizes one text as kind (its prompt first) into ids (room for max_seq): [CLS] .. [SEP],
 * truncated to max_seq. Returns the count. Thread-safe. */
int cv_minilm_tokenize(const cv_minilm *m, cv_text_kind kind, const char *text, size_t len, int32_t *ids);

/* Same, from token ids: sequence s is ids[offs[s] .. offs[s+1]), each already framed with
 * [CLS] .. [SEP] (and any prompt) and at most max_positions long. Always L2-normalized. */
cv_err cv_minilm_embed_ids(cv_minilm *m, const int32_t *ids, const int32_t *offs, int nseq, float *out);
/* Same, and norms (nseq floats, caller-owned) gets each vector's L2 norm before the
 * normalization: out[s] * norms[s] is sequence s's mean-pooled embedding (to float rounding),
 * what sentence-transformers returns without a Normalize module. */
cv_err cv_minilm_embed_ids_norms(cv_minilm *m, const int32_t *ids, const int32_t *offs, int nseq, float *out,
                                 float *norms);

#endif
