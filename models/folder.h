/* folder.h: a sentence-transformers BERT folder's facts, read from its own files:
 *   config.json                       model_type bert, sizes, positions, eps, hidden_act gelu
 *   modules.json                      Transformer, Pooling, and an optional Normalize
 *   1_Pooling/config.json             mean, CLS or max pooling (include_prompt)
 *   sentence_bert_config.json         max_seq_length, do_lower_case
 *   tokenizer.json / tokenizer_config.json   BERT normalizer: uncased (lowercase + strip accents)
 *                                     or cased (neither), Chinese characters split
 *   config_sentence_transformers.json prompts: documents' and queries'
 * Whatever cdcvec cannot run exactly is refused (CV_ERR_UNSUPPORTED) with what, why and the fix. */
#ifndef CV_FOLDER_H
#define CV_FOLDER_H

#include "../common/cv_err.h"
#include "../kernels/backend.h"

typedef struct cv_folder {
    int hidden, layers, heads, intermediate, vocab, max_positions, type_vocab;
    int max_seq; /* sentence-transformers truncation, [CLS] and [SEP] included */
    float ln_eps;
    cv_pool_mode pool;
    int normalize;      /* a Normalize module follows the pooling */
    int lowercase;      /* 1: uncased (lowercase, strip accents); 0: cased (neither) */
    char *doc_prompt;   /* prepended to documents; "" when none (owned) */
    char *query_prompt; /* prepended to searches; "" when none (owned) */
} cv_folder;

/* Reads dir's files into *f (f->doc_prompt and f->query_prompt owned: cv_folder_free). */
cv_err cv_folder_read(const char *dir, cv_folder *f);
void cv_folder_free(cv_folder *f);
const char *cv_folder_pool_name(cv_pool_mode p); /* "mean", "cls", "max" */

#endif
