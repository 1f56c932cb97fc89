/* models_gen.h: writes small sentence-transformers BERT folders with deterministic random weights
 * under outdir: tiny-cls-cased (hidden 128, 4 heads, 2 layers, CLS pooling, no Normalize, cased),
 * base-mean-prompt (hidden 768, 12 heads, 3 layers, mean pooling, Normalize, "passage: " /
 * "query: " prompts), mini-384 (hidden 384, 6 heads, 1 layer, mean pooling, Normalize), and the config files
 * of three folders cdcvec must refuse (bad-roberta, bad-weightedmean, bad-relu). Returns 0 on success. */
#ifndef TM_MODELS_GEN_H
#define TM_MODELS_GEN_H
int tm_gen_models(const char *outdir);
/* Only the folder named only (NULL: all), e.g. mini-384 (hidden 384, 6 heads, 1 layer, mean
 * pooling, Normalize: another model of all-MiniLM-L6-v2's dimension). */
int tm_gen_model(const char *outdir, const char *only);
#endif
