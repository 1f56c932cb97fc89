/* folder.c: a sentence-transformers BERT folder's facts (folder.h). Every refusal names the file,
 * the key, what it says, why cdcvec cannot run it exactly, and the fix. */
#define _POSIX_C_SOURCE 200809L
#include "folder.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"

#define REFUSE_FIX                                                                                           \
    "use a BERT-family sentence-transformers model (e.g. all-MiniLM-L6-v2, bge-small-en-v1.5, e5-small-v2)"

const char *cv_folder_pool_name(cv_pool_mode p) {
    return p == CV_POOL_CLS ? "cls" : p == CV_POOL_MAX ? "max" : "mean";
}

static cv_err json_int(json_t *o, const char *path, const char *key, int *out, int lo, int hi) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        cv_error("event=config_invalid path=%s key=%s error=\"missing or not an integer in "
                 "[%d, %d]\"",
                 path, key, lo, hi);
        return CV_ERR_FORMAT;
    }
    *out = (int)json_integer_value(v);
    return CV_OK;
}

static cv_err unsupported(const char *path, const char *key, const char *value, const char *why,
                          const char *fix) {
    cv_error("event=model_unsupported path=%s key=%s value=\"%s\" error=\"%s\" fix=\"%s\"", path, key, value,
             why, fix);
    return CV_ERR_UNSUPPORTED;
}

/* A JSON file of the folder; NULL when absent (*missing = 1) or unreadable (logged, *err set). */
static json_t *load(const char *dir, const char *name, char *path, size_t cap, int *missing, cv_err *err) {
    snprintf(path, cap, "%s/%s", dir, name);
    *missing = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        *missing = 1;
        return NULL;
    }
    json_error_t jerr;
    json_t *o = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    fclose(fp);
    if (!o || !json_is_object(o)) {
        cv_error("event=config_read path=%s error=\"%s\" line=%d fix=\"repair or re-fetch the model folder\"",
                 path, o ? "not a JSON object" : jerr.text, o ? 0 : jerr.line);
        json_decref(o);
        *err = CV_ERR_FORMAT;
        return NULL;
    }
    return o;
}

static const char *str_or(json_t *o, const char *key, const char *dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static cv_err read_config(const char *dir, cv_folder *c) {
    char path[4096];
    int missing;
    cv_err err = CV_OK;
    json_t *o = load(dir, "config.json", path, sizeof path, &missing, &err);
    if (!o) {
        if (missing)
            cv_error("event=config_read path=%s error=\"missing\" fix=\"a sentence-transformers model folder "
                     "has one\"",
                     path);
        return missing ? CV_ERR_NOTFOUND : err;
    }
    const char *type = str_or(o, "model_type", "bert");
    if (strcmp(type, "bert") != 0)
        err = unsupported(path, "model_type", type,
                          "cdcvec runs BERT encoders only (embeddings, post-LN layers, absolute positions, "
                          "token type 0)",
                          REFUSE_FIX);
    const char *pet = str_or(o, "position_embedding_type", "absolute");
    if (!err && strcmp(pet, "absolute") != 0)
        err = unsupported(path, "position_embedding_type", pet,
                          "only absolute position embeddings are implemented", REFUSE_FIX);
    if (!err) err = json_int(o, path, "hidden_size", &c->hidden, 1, 4096);
    if (!err) err = json_int(o, path, "num_hidden_layers", &c->layers, 1, 256);
    if (!err) err = json_int(o, path, "num_attention_heads", &c->heads, 1, 1024);
    if (!err) err = json_int(o, path, "intermediate_size", &c->intermediate, 1, 1 << 20);
    if (!err) err = json_int(o, path, "vocab_size", &c->vocab, 1, 1 << 24);
    if (!err) err = json_int(o, path, "max_position_embeddings", &c->max_positions, 2, 1 << 16);
    if (!err) err = json_int(o, path, "type_vocab_size", &c->type_vocab, 1, 1 << 16);
    json_t *eps = json_object_get(o, "layer_norm_eps");
    if (!err && (!json_is_number(eps) || json_number_value(eps) <= 0)) {
        cv_error("event=config_invalid path=%s key=layer_norm_eps error=\"missing or not > 0\"", path);
        err = CV_ERR_FORMAT;
    }
    const char *act = str_or(o, "hidden_act", "(missing)");
    if (!err && strcmp(act, "gelu") != 0)
        err = unsupported(path, "hidden_act", act,
                          "only the exact erf 'gelu' activation is implemented (not gelu_new, relu, silu...)",
                          REFUSE_FIX);
    if (!err && c->hidden % c->heads != 0) {
        cv_error(
            "event=config_invalid path=%s error=\"hidden_size %d not divisible by num_attention_heads %d\"",
            path, c->hidden, c->heads);
        err = CV_ERR_FORMAT;
    }
    if (!err) c->ln_eps = (float)json_number_value(eps);
    json_decref(o);
    return err;
}

/* modules.json: Transformer, Pooling, then an optional Normalize; *pool_dir gets the Pooling
 * module's folder (relative). */
static cv_err read_modules(const char *dir, cv_folder *c, char *pool_dir, size_t cap) {
    char path[4096];
    int missing;
    cv_err err = CV_OK;
    snprintf(pool_dir, cap, "1_Pooling");
    json_t *o = NULL;
    snprintf(path, sizeof path, "%s/modules.json", dir);
    FILE *fp = fopen(path, "rb");
    missing = !fp;
    if (fp) {
        json_error_t jerr;
        o = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
        fclose(fp);
        if (!json_is_array(o)) {
            cv_error("event=config_read path=%s error=\"not a JSON array\" fix=\"repair or re-fetch the "
                     "model folder\"",
                     path);
            json_decref(o);
            return CV_ERR_FORMAT;
        }
    }
    if (missing) { /* what cdcvec always assumed: mean pooling, normalized */
        cv_warn("event=config_default path=%s modules=\"Transformer,Pooling,Normalize\" reason=missing",
                path);
        c->normalize = 1;
        return CV_OK;
    }
    static const char *const want[] = {"sentence_transformers.models.Transformer",
                                       "sentence_transformers.models.Pooling",
                                       "sentence_transformers.models.Normalize"};
    size_t n = json_array_size(o);
    c->normalize = 0;
    for (size_t i = 0; i < n && !err; i++) {
        json_t *m = json_array_get(o, i);
        const char *type = str_or(m, "type", "(missing)");
        /* sentence-transformers 5+ names them sentence_transformers.models.X too; tolerate the
         * module's bare class name */
        const char *bare = strrchr(type, '.') ? strrchr(type, '.') + 1 : type;
        if (i < 3 && (strcmp(type, want[i]) == 0 || strcmp(bare, strrchr(want[i], '.') + 1) == 0)) {
            const char *mp = str_or(m, "path", "");
            if (i == 0 && *mp) {
                err = unsupported(
                    path, "[0].path", mp,
                    "the Transformer lives in a subfolder (an early sentence-transformers layout); "
                    "cdcvec reads config.json and model.safetensors from the folder itself",
                    "re-save the model with a current sentence-transformers (model.save(DIR))");
                break;
            }
            if (i == 1) snprintf(pool_dir, cap, "%s", *mp ? mp : "1_Pooling");
            if (i == 2) c->normalize = 1;
            continue;
        }
        char what[64];
        snprintf(what, sizeof what, "[%zu].type", i);
        err = unsupported(path, what, type,
                          "cdcvec runs Transformer -> Pooling -> optional Normalize; another module (Dense, "
                          "LayerNorm, a custom one) or another order would change the vectors",
                          REFUSE_FIX);
    }
    if (!err && n < 2)
        err = unsupported(path, "modules", "fewer than Transformer and Pooling",
                          "cdcvec needs the Pooling module to know how to pool", REFUSE_FIX);
    json_decref(o);
    return err;
}

static cv_err read_pooling(const char *dir, const char *pool_dir, cv_folder *c, int *include_prompt) {
    char path[4096], sub[4200];
    int missing;
    cv_err err = CV_OK;
    snprintf(sub, sizeof sub, "%s/config.json", pool_dir);
    json_t *o = load(dir, sub, path, sizeof path, &missing, &err);
    c->pool = CV_POOL_MEAN;
    *include_prompt = 1;
    if (!o) {
        if (missing) cv_warn("event=config_default path=%s pooling=mean reason=missing", path);
        return missing ? CV_OK : err;
    }
    json_t *dim = json_object_get(o, "word_embedding_dimension");
    if (json_is_integer(dim) && json_integer_value(dim) != c->hidden) {
        cv_error("event=config_invalid path=%s key=word_embedding_dimension error=\"%lld, config.json's "
                 "hidden_size is %d\" fix=\"repair or re-fetch the model folder\"",
                 path, (long long)json_integer_value(dim), c->hidden);
        json_decref(o);
        return CV_ERR_MISMATCH;
    }
    json_t *ip = json_object_get(o, "include_prompt");
    if (json_is_boolean(ip)) *include_prompt = json_is_true(ip);
    /* one mode: the flags of sentence-transformers 2-5, or pooling_mode as a string */
    static const struct {
        const char *flag, *name;
        int mode; /* -1: not implemented */
    } modes[] = {{"pooling_mode_mean_tokens", "mean", CV_POOL_MEAN},
                 {"pooling_mode_cls_token", "cls", CV_POOL_CLS},
                 {"pooling_mode_max_tokens", "max", CV_POOL_MAX},
                 {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens", -1},
                 {"pooling_mode_weightedmean_tokens", "weightedmean", -1},
                 {"pooling_mode_lasttoken", "lasttoken", -1}};
    int found = 0, mode = CV_POOL_MEAN;
    char names[256] = "";
    const char *pm = str_or(o, "pooling_mode", NULL);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int on = pm ? strcmp(pm, modes[i].name) == 0 : json_is_true(json_object_get(o, modes[i].flag));
        if (!on) continue;
        found++;
        mode = modes[i].mode;
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", found > 1 ? "+" : "",
                 modes[i].name);
    }
    if (found != 1 || mode < 0)
        err = unsupported(path, pm ? "pooling_mode" : "pooling_mode_*", found ? names : "(none)",
                          "cdcvec pools with exactly one of mean, cls (the [CLS] token) or max", REFUSE_FIX);
    else
        c->pool = (cv_pool_mode)mode;
    json_decref(o);
    return err;
}

/* tokenizer.json's normalizer (or tokenizer_config.json's flags): uncased or cased BERT. */
static cv_err read_tokenizer(const char *dir, cv_folder *c) {
    char path[4096];
    int missing;
    cv_err err = CV_OK;
    int lower = 1, strip = -1, chinese = 1, clean = 1;
    json_t *o = load(dir, "tokenizer.json", path, sizeof path, &missing, &err);
    if (err) return err;
    if (o) {
        json_t *model = json_object_get(o, "model"), *norm = json_object_get(o, "normalizer");
        const char *mt = str_or(model, "type", "(missing)"), *nt = str_or(norm, "type", "(none)");
        const char *pt = str_or(json_object_get(o, "pre_tokenizer"), "type", "BertPreTokenizer");
        if (strcmp(mt, "WordPiece") != 0)
            err = unsupported(path, "model.type", mt, "cdcvec implements the WordPiece tokenizer only",
                              REFUSE_FIX);
        else if (strcmp(str_or(model, "continuing_subword_prefix", "##"), "##") != 0 ||
                 strcmp(str_or(model, "unk_token", "[UNK]"), "[UNK]") != 0)
            err = unsupported(path, "model", "continuing_subword_prefix/unk_token",
                              "cdcvec's WordPiece uses '##' and '[UNK]'", REFUSE_FIX);
        else if (strcmp(nt, "BertNormalizer") != 0)
            err = unsupported(path, "normalizer.type", nt, "cdcvec implements BERT's normalizer only",
                              REFUSE_FIX);
        else if (strcmp(pt, "BertPreTokenizer") != 0)
            err = unsupported(path, "pre_tokenizer.type", pt, "cdcvec implements BERT's pre-tokenizer only",
                              REFUSE_FIX);
        if (!err) {
            json_t *v;
            if (json_is_boolean(v = json_object_get(norm, "lowercase"))) lower = json_is_true(v);
            if (json_is_boolean(v = json_object_get(norm, "strip_accents"))) strip = json_is_true(v);
            if (json_is_boolean(v = json_object_get(norm, "handle_chinese_chars"))) chinese = json_is_true(v);
            if (json_is_boolean(v = json_object_get(norm, "clean_text"))) clean = json_is_true(v);
        }
        json_decref(o);
    } else {
        o = load(dir, "tokenizer_config.json", path, sizeof path, &missing, &err);
        if (err) return err;
        if (o) {
            json_t *v;
            if (json_is_boolean(v = json_object_get(o, "do_lower_case"))) lower = json_is_true(v);
            if (json_is_boolean(v = json_object_get(o, "strip_accents"))) strip = json_is_true(v);
            if (json_is_boolean(v = json_object_get(o, "tokenize_chinese_chars"))) chinese = json_is_true(v);
            json_decref(o);
        }
    }
    if (err) return err;
    if (strip < 0) strip = lower; /* BERT's rule: accents follow the case */
    if (strip != lower)
        return unsupported(path, "strip_accents", strip ? "true" : "false",
                           "cdcvec's tokenizer is uncased (lowercase and strip accents) or cased (neither), "
                           "not one without the other",
                           REFUSE_FIX);
    if (!chinese || !clean)
        return unsupported(path, chinese ? "clean_text" : "handle_chinese_chars", "false",
                           "cdcvec's BERT normalizer always cleans text and splits Chinese characters",
                           REFUSE_FIX);
    c->lowercase = lower;
    return CV_OK;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

/* config_sentence_transformers.json: documents get prompts "document" (or "passage", "doc"),
 * searches "query"; either falls back on default_prompt_name's prompt. */
static cv_err read_prompts(const char *dir, cv_folder *c, int include_prompt) {
    char path[4096];
    int missing;
    cv_err err = CV_OK;
    json_t *o = load(dir, "config_sentence_transformers.json", path, sizeof path, &missing, &err);
    if (err) return err;
    json_t *p = o ? json_object_get(o, "prompts") : NULL;
    const char *dflt_name = o ? str_or(o, "default_prompt_name", NULL) : NULL;
    const char *dflt = dflt_name ? str_or(p, dflt_name, NULL) : NULL;
    const char *doc = str_or(p, "document", str_or(p, "passage", str_or(p, "doc", dflt)));
    const char *query = str_or(p, "query", dflt);
    if (!include_prompt && ((doc && *doc) || (query && *query)))
        err = unsupported(path, "prompts", doc && *doc ? doc : query,
                          "1_Pooling/config.json has include_prompt false (the prompt's tokens left out of "
                          "the pooling), which cdcvec does not implement",
                          REFUSE_FIX);
    if (!err) {
        c->doc_prompt = dup_or_empty(doc);
        c->query_prompt = dup_or_empty(query);
        if (!c->doc_prompt || !c->query_prompt) err = CV_ERR_NOMEM;
    }
    json_decref(o);
    return err;
}

cv_err cv_folder_read(const char *dir, cv_folder *c) {
    memset(c, 0, sizeof *c);
    char pool_dir[1024], path[4096];
    int include_prompt = 1, missing;
    cv_err err = read_config(dir, c);
    if (!err) err = read_modules(dir, c, pool_dir, sizeof pool_dir);
    if (!err) err = read_pooling(dir, pool_dir, c, &include_prompt);
    if (!err) err = read_tokenizer(dir, c);
    if (!err) err = read_prompts(dir, c, include_prompt);
    if (err) {
        cv_folder_free(c);
        return err;
    }
    /* sentence-transformers' truncation (its default 256 when the file is missing) and its own
     * lowercasing of the text */
    c->max_seq = c->max_positions < 256 ? c->max_positions : 256;
    json_t *o = load(dir, "sentence_bert_config.json", path, sizeof path, &missing, &err);
    if (o) {
        json_t *msl = json_object_get(o, "max_seq_length");
        if (msl && !json_is_null(msl))
            err = json_int(o, path, "max_seq_length", &c->max_seq, 2, c->max_positions);
        if (!err && json_is_true(json_object_get(o, "do_lower_case")) && !c->lowercase)
            err = unsupported(path, "do_lower_case", "true",
                              "sentence-transformers lowercases the text before a cased tokenizer, which "
                              "cdcvec does not implement",
                              REFUSE_FIX);
        json_decref(o);
    } else if (missing) {
        cv_warn("event=config_default path=%s max_seq_length=%d reason=missing", path, c->max_seq);
    }
    if (err) cv_folder_free(c);
    return err;
}

void cv_folder_free(cv_folder *c) {
    free(c->doc_prompt);
    free(c->query_prompt);
    c->doc_prompt = c->query_prompt = NULL;
}
