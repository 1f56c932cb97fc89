/* test_embed_models.c: cdcvec on sentence-transformers BERT models no one here trained.
 * tests/models_gen.c writes two folders with deterministic random weights (other sizes, head
 * sizes 32 and 64, CLS pooling without Normalize on a cased vocabulary; mean pooling with a
 * document and a query prompt); tests/data/models_golden.f32 holds sentence-transformers'
 * vectors for the golden texts from those same files (tests/golden/gen_models_ref.py, once).
 * CPU: min cosine >= 0.99999. Also: folders cdcvec cannot run exactly are refused with what and
 * the fix. Built again with CV_TEST_CUDA (test_embed_models_cuda: the CUDA backend, cosine >=
 * 0.9995, SKIPPED (77) without a device) and in tests/cuda_sim (test_embed_models_cudasim).
 * `test_embed_models --generate DIR` only writes the folders (for gen_models_ref.py);
 * `--generate-one NAME DIR` the folder NAME alone (the shell tests' other models). */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../models/minilm.h"
#include "models_gen.h"
#include "test_util.h"

#if defined(CV_TEST_CUDA) || defined(CV_TEST_CUDA_SIM)
#define DEVICE  CV_DEVICE_CUDA
#define MIN_COS 0.9995 /* fp16 activations and GEMMs */
#else
#define DEVICE  CV_DEVICE_CPU
#define MIN_COS 0.99999
#endif
#ifdef CV_TEST_CUDA_SIM
#define STEP 9 /* every 9th text: the simulator is slow */
#else
#define STEP 1
#endif

#define NQUERY 16 /* queries: the first 16 texts with the query prompt */
#define D_A    128
#define D_B    768

static char **texts;
static size_t *lens;
static int ntexts;
static float *ref; /* (ntexts, D_A) | (ntexts, D_B) documents | (NQUERY, D_B) queries */
static char dir[256];

static int setup(void **state) {
    (void)state;
    FILE *f = fopen(CV_TEST_DATA "/embed_texts.jsonl", "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int capn = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        if (!o) return -1;
        json_t *s = json_object_get(o, "text");
        if (ntexts == capn) {
            capn = capn ? 2 * capn : 256;
            texts = realloc(texts, sizeof(char *) * (size_t)capn);
            lens = realloc(lens, sizeof(size_t) * (size_t)capn);
        }
        lens[ntexts] = json_string_length(s);
        texts[ntexts] = malloc(lens[ntexts] + 1);
        memcpy(texts[ntexts], json_string_value(s), lens[ntexts] + 1);
        ntexts++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    size_t len;
    ref = (float *)tu_read_file(CV_TEST_DATA "/models_golden.f32", &len);
    if (!ref || len != sizeof(float) * ((size_t)ntexts * (D_A + D_B) + NQUERY * D_B)) {
        fprintf(stderr, "models_golden.f32 has %zu bytes for %d texts\n", len, ntexts);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s/cdcvec-models-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir) || tm_gen_models(dir)) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < ntexts; i++)
        free(texts[i]);
    free(texts), free(lens), free(ref);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) ? -1 : 0;
}

/* Loads the generated folder name; its weights must be those the reference vectors were made
 * from (models_golden.json), else the generator changed and gen_models_ref.py must be rerun. */
static cv_minilm *load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cv_minilm_opts o = {.device = DEVICE};
    cv_minilm *m = NULL;
    assert_int_equal(cv_minilm_load(path, &o, &m), CV_OK);
    json_error_t je;
    json_t *meta = json_load_file(CV_TEST_DATA "/models_golden.json", 0, &je);
    const char *want = json_string_value(json_object_get(json_object_get(meta, "weights_sha256"), name));
    const char *got = cv_minilm_facts(m)->revision; /* "unknown" in the engine-only build */
    if (strcmp(got, "unknown") != 0 && (!want || strcmp(want, got) != 0))
        fail_msg(
            "%s: generated weights %s, the reference was made from %s: tests/models_gen.c changed; rerun "
            "tests/golden/gen_models_ref.py (see its header)",
            name, cv_minilm_facts(m)->revision, want ? want : "(none)");
    json_decref(meta);
    return m;
}

/* embeds every STEP-th of n texts as kind, compares with want (n, D) */
static void compare(cv_minilm *m, cv_text_kind kind, int n, const float *want, int D, const char *what) {
    const char **sel = malloc(sizeof(char *) * (size_t)n);
    size_t *sl = malloc(sizeof(size_t) * (size_t)n);
    int k = 0;
    for (int i = 0; i < n; i += STEP)
        sel[k] = texts[i], sl[k++] = lens[i];
    float *out = malloc(sizeof(float) * (size_t)k * D);
    assert_int_equal(cv_minilm_embed_kind(m, kind, sel, sl, k, out, NULL), CV_OK);
    double min_cos = 2, sum = 0, max_norm_err = 0;
    int worst = -1;
    for (int j = 0; j < k; j++) {
        const float *a = out + (size_t)j * D, *b = want + (size_t)j * STEP * D;
        double ab = 0, aa = 0, bb = 0;
        for (int d = 0; d < D; d++)
            ab += (double)a[d] * b[d], aa += (double)a[d] * a[d], bb += (double)b[d] * b[d];
        double c = ab / sqrt(aa * bb);
        sum += c;
        max_norm_err = fmax(max_norm_err, fabs(sqrt(aa) - sqrt(bb)) / sqrt(bb));
        if (c < min_cos) min_cos = c, worst = j * STEP;
    }
    print_message("%s: %d texts min_cos=%.7f (text %d) mean_cos=%.7f max_norm_rel_err=%.2e\n", what, k,
                  min_cos, worst, sum / k, max_norm_err);
    assert_true(min_cos >= MIN_COS);
    assert_true(max_norm_err < 1e-3); /* the vectors themselves, normalized or not */
    free(out), free(sel), free(sl);
}

static void test_tiny_cls_cased(void **state) {
    (void)state;
    cv_minilm *m = load("tiny-cls-cased");
    const cv_model_facts *f = cv_minilm_facts(m);
    assert_int_equal(f->dim, D_A);
    assert_string_equal(f->pooling, "cls");
    assert_int_equal(f->normalize, 0);
    assert_string_equal(f->id, "tiny-cls-cased");
    assert_int_equal(strlen(f->revision), 64);
    assert_string_equal(f->doc_prompt, "");
    compare(m, CV_TEXT_DOCUMENT, ntexts, ref, D_A, "tiny-cls-cased (hidden 128, 4x32, 2 layers, cls, cased)");
    cv_minilm_free(m);
}

static void test_base_mean_prompt(void **state) {
    (void)state;
    cv_minilm *m = load("base-mean-prompt");
    const cv_model_facts *f = cv_minilm_facts(m);
    assert_int_equal(f->dim, D_B);
    assert_string_equal(f->pooling, "mean");
    assert_int_equal(f->normalize, 1);
    assert_string_equal(f->doc_prompt, "passage: ");
    assert_string_equal(f->query_prompt, "query: ");
    const float *docs = ref + (size_t)ntexts * D_A, *queries = docs + (size_t)ntexts * D_B;
    compare(m, CV_TEXT_DOCUMENT, ntexts, docs, D_B,
            "base-mean-prompt documents (hidden 768, 12x64, 3 layers)");
    compare(m, CV_TEXT_QUERY, NQUERY, queries, D_B, "base-mean-prompt queries");
    /* what the embed server tokenizes (cv_job_prepare): the prompt read with the text as one string */
    int32_t a[64], want[64];
    const char *x = "Earth's ocean";
    int na = cv_minilm_tokenize(m, CV_TEXT_QUERY, x, strlen(x), a);
    assert_int_equal(na, cv_tok_encode(cv_minilm_tok(m), "query: Earth's ocean", 20, want, 64));
    assert_memory_equal(a, want, sizeof(int32_t) * (size_t)na);
    na = cv_minilm_tokenize(m, CV_TEXT_DOCUMENT, x, strlen(x), a);
    assert_int_equal(na, cv_tok_encode(cv_minilm_tok(m), "passage: Earth's ocean", 22, want, 64));
    assert_memory_equal(a, want, sizeof(int32_t) * (size_t)na);
    cv_minilm_free(m);
}

#if !defined(CV_TEST_CUDA) && !defined(CV_TEST_CUDA_SIM)
/* the load's error lines, from stderr */
static char *refusal(const char *name, cv_err *err) {
    char path[512], log[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    fflush(stderr);
    int saved = dup(2), fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    cv_minilm *m = NULL;
    *err = cv_minilm_load(path, &(cv_minilm_opts){.device = CV_DEVICE_CPU}, &m);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    cv_minilm_free(m);
    size_t len;
    char *text = tu_read_file(log, &len);
    print_message("%s: %s", name, text ? text : "(no log)\n");
    return text;
}

static void test_refusals(void **state) {
    (void)state;
    static const struct {
        const char *name, *what[3];
    } cases[] = {
        {"bad-roberta", {"key=model_type", "value=\"roberta\"", "fix="}},
        {"bad-weightedmean", {"key=pooling_mode_*", "value=\"weightedmean\"", "fix="}},
        {"bad-relu", {"key=hidden_act", "value=\"relu\"", "fix="}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cv_err err;
        char *log = refusal(cases[i].name, &err);
        assert_int_equal(err, CV_ERR_UNSUPPORTED);
        assert_non_null(log);
        assert_non_null(strstr(log, "event=model_unsupported"));
        for (int k = 0; k < 3; k++)
            assert_non_null(strstr(log, cases[i].what[k]));
        free(log);
    }
}
#endif

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--generate")) return tm_gen_models(argv[2]) ? 1 : 0;
    if (argc == 4 && !strcmp(argv[1], "--generate-one")) return tm_gen_model(argv[3], argv[2]) ? 1 : 0;
#ifdef CV_TEST_CUDA
    if (cv_cuda_device_count() == 0) {
        fprintf(stderr, "SKIPPED: no CUDA device\n");
        return 77;
    }
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_cls_cased),
        cmocka_unit_test(test_base_mean_prompt),
#if !defined(CV_TEST_CUDA) && !defined(CV_TEST_CUDA_SIM)
        cmocka_unit_test(test_refusals),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
