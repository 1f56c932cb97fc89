/* model.h: the model interface: what every room outside models/ asks the model, never writes
 * down itself (id, revision, dimension, pooling, token limit, prompts). Any sentence-transformers
 * BERT folder (minilm.h, folder.h); the default model's id is defined here once. */
#ifndef CV_MODEL_H
#define CV_MODEL_H

#include "../common/cv_err.h"

/* The model cdcvec runs: its Hugging Face id, and the short name clients may use for it. */
#define CV_MODEL_ID       "sentence-transformers/all-MiniLM-L6-v2"
#define CV_MODEL_SHORT_ID "all-MiniLM-L6-v2"
/* The dimension its config.json declares, for what has no model loaded: a sync with --embed
 * (a remote cdcvec serve of CV_MODEL_ID; answers of another dimension are refused) and bench
 * sink's random vectors. Everything that loads the model asks it (cv_model_facts). */
#define CV_MODEL_DIM 384

typedef struct cv_model_facts {
    const char *id;           /* CV_MODEL_ID for all-MiniLM-L6-v2, else the folder's name */
    const char *revision;     /* lowercase hex SHA-256 of the weights file (model.safetensors) */
    int dim;                  /* vector dimension (config.json hidden_size) */
    const char *pooling;      /* "mean", "cls" or "max" (1_Pooling/config.json) */
    int max_seq;              /* tokens read per text, [CLS] and [SEP] included */
    int normalize;            /* 1: vectors L2-normalized (a Normalize module) */
    const char *doc_prompt;   /* prepended to documents ("" none) */
    const char *query_prompt; /* prepended to searches ("" none) */
} cv_model_facts;

/* 1 when name is the running model's id or short name (what /v1/embeddings accepts). */
int cv_model_name_ok(const char *name);

/* The SHA-256 of the file at path, as 64 hex digits and a NUL, into hex ("unknown" in the
 * engine-only build, which has no OpenSSL and writes no store). Read once at load
 * (about 70 ms for the 90 MB weights, from the page cache, on a 2-core VM with SHA-NI). */
cv_err cv_model_file_sha256(const char *path, char hex[65]);

#endif
