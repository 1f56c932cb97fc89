/* models_gen.c: small BERT sentence-transformers folders with random weights, written
 * deterministically (a seeded splitmix64, no Python), for golden tests on models no one here
 * trained (models_gen.h). tests/golden/gen_models_ref.py computes sentence-transformers'
 * vectors once from these same files. */
#define _POSIX_C_SOURCE 200809L
#include "models_gen.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* paths under a short test folder */

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *name;
    int D, H, L, NI, P, max_seq;
    int cased, normalize;
    const char *pool; /* pooling_mode_*: "cls_token", "mean_tokens", ... */
    const char *doc_prompt, *query_prompt;
    const char *model_type, *act;
    uint64_t seed;
} spec;

static const spec SPECS[] = {
    /* (a) hidden 128, 4 heads of 32, 2 layers, CLS pooling, no Normalize, cased vocabulary */
    {"tiny-cls-cased", 128, 4, 2, 512, 512, 256, 1, 0, "cls_token", NULL, NULL, "bert", "gelu", 24001},
    /* (b) hidden 768, 12 heads of 64, 3 layers, mean pooling, Normalize, prompts (e5's) */
    {"base-mean-prompt", 768, 12, 3, 3072, 512, 128, 0, 1, "mean_tokens", "passage: ", "query: ", "bert",
     "gelu", 24002},
    /* (c) hidden 384 (all-MiniLM-L6-v2's dimension), 6 heads of 64, 1 layer, mean pooling,
     * Normalize: another model of the same dimension, for the stores' stamp (no reference vectors) */
    {"mini-384", 384, 6, 1, 1536, 512, 256, 0, 1, "mean_tokens", NULL, NULL, "bert", "gelu", 24003},
    /* refused: another architecture, an unsupported pooling, another activation */
    {"bad-roberta", 128, 4, 2, 512, 512, 256, 1, 0, "cls_token", NULL, NULL, "roberta", "gelu", 0},
    {"bad-weightedmean", 128, 4, 2, 512, 512, 256, 1, 0, "weightedmean_tokens", NULL, NULL, "bert", "gelu",
     0},
    {"bad-relu", 128, 4, 2, 512, 512, 256, 1, 0, "cls_token", NULL, NULL, "bert", "relu", 0},
};

static const char *const WORDS[] = {
    "the",     "a",         "an",           "of",       "and",      "to",
    "in",      "is",        "was",          "for",      "on",       "with",
    "as",      "by",        "at",           "from",     "his",      "her",
    "their",   "its",       "that",         "are",      "be",       "time",
    "world",   "humanity",  "alien",        "aliens",   "invasion", "planet",
    "desert",  "political", "intrigue",     "power",    "struggle", "mathematician",
    "science", "future",    "civilization", "collapse", "virtual",  "reality",
    "earth",   "chaos",     "society",      "people",   "young",    "woman",
    "man",     "city",      "new",          "york",     "war",      "life",
    "end",     "small",     "town",         "ocean",    "plant",    "mind",
    "minds",   "travel",    "evolution",    "internet", "death",    "fight",
    "peace",   "cafe",      "book",         "books",    "story",    "text",
    "test",    "data",      "quantum",      "space",    "star",     "stars",
    "night",   "light",     "water",        "fire",     "one",      "two",
    "##s",     "##es",      "##ed",         "##ing",    "##ly",     "##er",
    "##ion",   "##tion",    "##al",         "##ic",     "##ity",    "##ment"};
static const char *const CASED_WORDS[] = {"The",  "A",    "An",      "Earth", "Humanity", "New",
                                          "York", "City", "Martian", "Alien", "In",       "After",
                                          "Slug", "Caf",  "##é",     "Ω"};
static const char *const EXTRA[] = {"é",  "è",  "à",  "ç", "ü", "ö", "ß", "ñ", "中",  "文",  "日", "本",
                                    "語", "한", "국", "α", "β", "ε", "и", "е", "##e", "##é", "##ü"};

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi) from the top 24 bits, computed in double and rounded once (the same
 * floats with or without FMA contraction) */
static float unif(uint64_t *s, float lo, float hi) {
    volatile double u = (double)(next(s) >> 40) * (1.0 / 16777216.0), span = (double)hi - (double)lo;
    volatile double scaled = span * u;
    return (float)((double)lo + scaled);
}

/* appends s unless already there (a vocabulary's tokens are distinct) */
static void add_token(json_t *v, json_t *seen, const char *s) {
    if (json_object_get(seen, s)) return;
    json_object_set_new(seen, s, json_true());
    json_array_append_new(v, json_string(s));
}

/* the vocabulary: specials, printable ASCII, ## continuations, words, a few non-ASCII */
static json_t *vocab_list(int cased) {
    json_t *v = json_array(), *seen = json_object();
    const char *specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++)
        add_token(v, seen, specials[i]);
    char buf[8];
    for (int c = 33; c < 127; c++) {
        if (!cased && c >= 'A' && c <= 'Z') continue;
        snprintf(buf, sizeof buf, "%c", c);
        add_token(v, seen, buf);
    }
    for (int c = '0'; c <= 'z'; c++) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (cased && c >= 'A' && c <= 'Z'))) continue;
        snprintf(buf, sizeof buf, "##%c", c);
        add_token(v, seen, buf);
    }
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++)
        add_token(v, seen, WORDS[i]);
    for (size_t i = 0; cased && i < sizeof CASED_WORDS / sizeof CASED_WORDS[0]; i++)
        add_token(v, seen, CASED_WORDS[i]);
    for (size_t i = 0; i < sizeof EXTRA / sizeof EXTRA[0]; i++)
        add_token(v, seen, EXTRA[i]);
    json_decref(seen);
    return v;
}

static int put_json(const char *dir, const char *name, json_t *o) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    return rc;
}

static json_t *special(int id, const char *s) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

static int write_tokenizer(const char *dir, const spec *sp, json_t *vocab) {
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    json_t *map = json_object();
    for (size_t i = 0; i < json_array_size(vocab); i++) {
        fprintf(f, "%s\n", json_string_value(json_array_get(vocab, i)));
        json_object_set_new(map, json_string_value(json_array_get(vocab, i)), json_integer((json_int_t)i));
    }
    fclose(f);
    json_t *added = json_array();
    const char *specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++)
        json_array_append_new(added, special(i, specials[i]));
    json_t *cls = json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", "[CLS]", "type_id", 0),
           *sep = json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", "[SEP]", "type_id", 0);
    json_t *post =
        json_pack("{s:s, s:[O, {s:{s:s, s:i}}, O], s:[O, {s:{s:s, s:i}}, O, {s:{s:s, s:i}}, {s:{s:s, s:i}}], "
                  "s:{s:{s:s, s:[i], s:[s]}, s:{s:s, s:[i], s:[s]}}}",
                  "type", "TemplateProcessing", "single", cls, "Sequence", "id", "A", "type_id", 0, sep,
                  "pair", cls, "Sequence", "id", "A", "type_id", 0, sep, "Sequence", "id", "B", "type_id", 1,
                  "SpecialToken", "id", "[SEP]", "type_id", 1, "special_tokens", "[CLS]", "id", "[CLS]",
                  "ids", 2, "tokens", "[CLS]", "[SEP]", "id", "[SEP]", "ids", 3, "tokens", "[SEP]");
    json_t *tok = json_pack(
        "{s:s, s:n, s:n, s:o, s:{s:s, s:b, s:b, s:n, s:b}, s:{s:s}, s:o, s:{s:s, s:s, s:b}, "
        "s:{s:s, s:s, s:s, s:i, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "type",
        "BertNormalizer", "clean_text", 1, "handle_chinese_chars", 1, "strip_accents", "lowercase",
        !sp->cased, "pre_tokenizer", "type", "BertPreTokenizer", "post_processor", post, "decoder", "type",
        "WordPiece", "prefix", "##", "cleanup", 1, "model", "type", "WordPiece", "unk_token", "[UNK]",
        "continuing_subword_prefix", "##", "max_input_chars_per_word", 100, "vocab", map);
    if (!tok || put_json(dir, "tokenizer.json", tok)) return -1;
    json_t *tc = json_pack("{s:b, s:n, s:b, s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "do_lower_case", !sp->cased,
                           "strip_accents", "tokenize_chinese_chars", 1, "tokenizer_class", "BertTokenizer",
                           "model_max_length", sp->P, "unk_token", "[UNK]", "sep_token", "[SEP]", "pad_token",
                           "[PAD]", "cls_token", "[CLS]", "mask_token", "[MASK]");
    json_t *stm = json_pack("{s:s, s:s, s:s, s:s, s:s}", "unk_token", "[UNK]", "sep_token", "[SEP]",
                            "pad_token", "[PAD]", "cls_token", "[CLS]", "mask_token", "[MASK]");
    return put_json(dir, "tokenizer_config.json", tc) || put_json(dir, "special_tokens_map.json", stm);
}

static int write_configs(const char *dir, const spec *sp, int vocab) {
    char sub[4096];
    json_t *cfg = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:s, s:f, s:f, s:i, s:i, s:f, s:f, s:i, s:s, "
        "s:s, s:b}",
        "architectures", "BertModel", "model_type", sp->model_type, "hidden_size", sp->D, "num_hidden_layers",
        sp->L, "num_attention_heads", sp->H, "intermediate_size", sp->NI, "hidden_act", sp->act,
        "hidden_dropout_prob", 0.1, "attention_probs_dropout_prob", 0.1, "max_position_embeddings", sp->P,
        "type_vocab_size", 2, "initializer_range", 0.02, "layer_norm_eps", 1e-12, "vocab_size", vocab,
        "position_embedding_type", "absolute", "torch_dtype", "float32", "use_cache", 1);
    if (put_json(dir, "config.json", cfg)) return -1;
    json_t *mods = json_pack("[{s:i, s:s, s:s, s:s}, {s:i, s:s, s:s, s:s}]", "idx", 0, "name", "0", "path",
                             "", "type", "sentence_transformers.models.Transformer", "idx", 1, "name", "1",
                             "path", "1_Pooling", "type", "sentence_transformers.models.Pooling");
    if (sp->normalize) {
        json_array_append_new(mods,
                              json_pack("{s:i, s:s, s:s, s:s}", "idx", 2, "name", "2", "path", "2_Normalize",
                                        "type", "sentence_transformers.models.Normalize"));
        snprintf(sub, sizeof sub, "%s/2_Normalize", dir);
        mkdir(sub, 0755);
    }
    if (put_json(dir, "modules.json", mods)) return -1;
    snprintf(sub, sizeof sub, "%s/1_Pooling", dir);
    mkdir(sub, 0755);
    json_t *pool = json_pack("{s:i, s:b}", "word_embedding_dimension", sp->D, "include_prompt", 1);
    const char *modes[] = {"cls_token",           "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                           "weightedmean_tokens", "lasttoken"};
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "pooling_mode_%s", modes[i]);
        json_object_set_new(pool, key, json_boolean(strcmp(modes[i], sp->pool) == 0));
    }
    if (put_json(sub, "config.json", pool)) return -1;
    if (put_json(dir, "sentence_bert_config.json",
                 json_pack("{s:i, s:b}", "max_seq_length", sp->max_seq, "do_lower_case", 0)))
        return -1;
    json_t *prompts = json_object();
    if (sp->doc_prompt) json_object_set_new(prompts, "document", json_string(sp->doc_prompt));
    if (sp->query_prompt) json_object_set_new(prompts, "query", json_string(sp->query_prompt));
    return put_json(dir, "config_sentence_transformers.json",
                    json_pack("{s:o, s:n, s:s}", "prompts", prompts, "default_prompt_name",
                              "similarity_fn_name", "cosine"));
}

typedef struct {
    char name[96];
    int64_t d0, d1; /* d1 0: 1-D */
    int kind;       /* 0 weight (fan-in d1), 1 bias, 2 LN gamma, 3 LN beta, 4 embedding */
} tensor_spec;

static int write_weights(const char *dir, const spec *sp, int vocab) {
    tensor_spec *ts = calloc(5 + 16 * (size_t)sp->L, sizeof *ts);
    int n = 0;
#define ADD(nm, a, b, k)                                                                                     \
    do {                                                                                                     \
        snprintf(ts[n].name, sizeof ts[n].name, "%s", nm);                                                   \
        ts[n].d0 = (a), ts[n].d1 = (b), ts[n].kind = (k), n++;                                               \
    } while (0)
    ADD("embeddings.word_embeddings.weight", vocab, sp->D, 4);
    ADD("embeddings.position_embeddings.weight", sp->P, sp->D, 4);
    ADD("embeddings.token_type_embeddings.weight", 2, sp->D, 4);
    ADD("embeddings.LayerNorm.weight", sp->D, 0, 2);
    ADD("embeddings.LayerNorm.bias", sp->D, 0, 3);
    static const struct {
        const char *suffix;
        int out, in, kind; /* sizes: 0 D, 1 NI */
    } per[] = {{"attention.self.query.weight", 0, 0, 0},
               {"attention.self.query.bias", 0, -1, 1},
               {"attention.self.key.weight", 0, 0, 0},
               {"attention.self.key.bias", 0, -1, 1},
               {"attention.self.value.weight", 0, 0, 0},
               {"attention.self.value.bias", 0, -1, 1},
               {"attention.output.dense.weight", 0, 0, 0},
               {"attention.output.dense.bias", 0, -1, 1},
               {"attention.output.LayerNorm.weight", 0, -1, 2},
               {"attention.output.LayerNorm.bias", 0, -1, 3},
               {"intermediate.dense.weight", 1, 0, 0},
               {"intermediate.dense.bias", 1, -1, 1},
               {"output.dense.weight", 0, 1, 0},
               {"output.dense.bias", 0, -1, 1},
               {"output.LayerNorm.weight", 0, -1, 2},
               {"output.LayerNorm.bias", 0, -1, 3}};
    for (int l = 0; l < sp->L; l++)
        for (int i = 0; i < 16; i++) {
            char nm[96];
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, per[i].suffix);
            ADD(nm, per[i].out ? sp->NI : sp->D, per[i].in < 0 ? 0 : per[i].in ? sp->NI : sp->D, per[i].kind);
        }
#undef ADD
    json_t *hdr = json_object();
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = 4 * ts[i].d0 * (ts[i].d1 ? ts[i].d1 : 1);
        json_t *shape = ts[i].d1 ? json_pack("[I, I]", (json_int_t)ts[i].d0, (json_int_t)ts[i].d1)
                                 : json_pack("[I]", (json_int_t)ts[i].d0);
        json_object_set_new(hdr, ts[i].name,
                            json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *h = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    size_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t len64 = padded;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(len64 >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(h, 1, hl, f);
    for (size_t i = hl; i < padded; i++)
        fputc(' ', f);
    free(h);
    uint64_t seed = sp->seed;
    float *buf = malloc(sizeof(float) * 1 << 20);
    for (int i = 0; i < n; i++) {
        int64_t count = ts[i].d0 * (ts[i].d1 ? ts[i].d1 : 1);
        const float a = ts[i].kind == 0 ? sqrtf(3.0f / (float)ts[i].d1) : 0;
        for (int64_t done = 0; done < count;) {
            int64_t k = count - done < (1 << 20) ? count - done : (1 << 20);
            for (int64_t j = 0; j < k; j++) {
                float x;
                switch (ts[i].kind) {
                case 0: x = unif(&seed, -a, a); break;
                case 1: x = unif(&seed, -0.1f, 0.1f); break;
                case 2: x = unif(&seed, 0.8f, 1.2f); break;
                case 3: x = unif(&seed, -0.1f, 0.1f); break;
                default: x = unif(&seed, -1.0f, 1.0f); break;
                }
                buf[j] = x; /* little-endian hosts only (x86-64, arm64) */
            }
            fwrite(buf, sizeof(float), (size_t)k, f);
            done += k;
        }
    }
    free(buf);
    free(ts);
    return fclose(f) ? -1 : 0;
}

int tm_gen_models(const char *outdir) { return tm_gen_model(outdir, NULL); }

int tm_gen_model(const char *outdir, const char *only) {
    mkdir(outdir, 0755);
    int found = 0;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0]; i++) {
        const spec *sp = &SPECS[i];
        if (only && strcmp(only, sp->name)) continue;
        found = 1;
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/%s", outdir, sp->name);
        mkdir(dir, 0755);
        json_t *vocab = vocab_list(sp->cased);
        int nv = (int)json_array_size(vocab);
        int rc = write_configs(dir, sp, nv);
        if (!rc && sp->seed) rc = write_tokenizer(dir, sp, vocab) || write_weights(dir, sp, nv);
        json_decref(vocab);
        if (rc) {
            fprintf(stderr, "models_gen: cannot write %s\n", dir);
            return -1;
        }
    }
    if (!found) fprintf(stderr, "models_gen: no model named %s\n", only);
    return found ? 0 : -1;
}
