/* models_gen.h: writes small sentence-transformers BERT folders with deterministic random weights
 * under outdir: tiny-cls-cased (hidden 128, 4 heads, 2 layers, CLS pooling, no Normalize, cased),
 * base-mean-prompt (hidden 768, 12 heads, 3 layers, mean pooling, Normalize, "passage: " /
 * "query: " prompts), and the config files of three folders cdcvec must refuse (bad-roberta,
 * bad-weightedmean, bad-relu). Returns 0 on success. */
#ifndef TM_MODELS_GEN_H
#define TM_MODELS_GEN_H
int tm_gen_models(const char *outdir);
#endif
