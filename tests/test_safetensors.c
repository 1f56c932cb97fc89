/* test_safetensors.c: the loader accepts a well-formed file and rejects corrupt, truncated
 * or mismatched ones with an error, never reading outside the file; the model loader
 * rejects tensors whose name, dtype or shape disagree with config.json. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../models/minilm.h"
#include "../models/safetensors.h"
#include "test_util.h"

static char dir[] = "/tmp/cdcvec-st-XXXXXX";

/* Writes header json + data_len bytes (pattern) as a safetensors file; header_len_override
 * replaces the length prefix when nonzero; data_len may exceed what is written (sparse). */
static const char *write_st(const char *name, const char *json, size_t data_len, uint64_t header_len_override,
                            size_t truncate_to) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = header_len_override ? header_len_override : strlen(json);
    for (int i = 0; i < 8; i++)
        fputc((int)((hl >> (8 * i)) & 0xFF), f);
    fputs(json, f);
    size_t small = data_len < 4096 ? data_len : 4096;
    for (size_t i = 0; i < small; i++)
        fputc((int)(i * 7 + 1), f);
    fclose(f);
    if (data_len > small) assert_int_equal(truncate(path, (off_t)(8 + strlen(json) + data_len)), 0);
    if (truncate_to) assert_int_equal(truncate(path, (off_t)truncate_to), 0);
    return path;
}

static void test_good_file(void **state) {
    (void)state;
    const char *p =
        write_st("good.safetensors",
                 "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                 "\"data_offsets\":[0,24]},\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}",
                 32, 0, 0);
    cv_st *st = NULL;
    assert_int_equal(cv_st_open(p, &st), CV_OK);
    assert_int_equal(cv_st_count(st), 2);
    const cv_st_tensor *a = cv_st_find(st, "a");
    assert_non_null(a);
    assert_int_equal(a->dtype, CV_DT_F32);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->nbytes, 24);
    assert_int_equal(((const uint8_t *)a->data)[1], 8);
    assert_null(cv_st_find(st, "missing"));
    cv_st_close(st);
}

static void expect_reject(const char *name, const char *json, size_t data_len, uint64_t hl, size_t trunc) {
    const char *p = write_st(name, json, data_len, hl, trunc);
    cv_st *st = (cv_st *)0x1;
    cv_err err = cv_st_open(p, &st);
    print_message("%s -> %s\n", name, cv_strerror(err));
    assert_int_equal(err, CV_ERR_FORMAT);
    assert_null(st);
}

static void test_rejects(void **state) {
    (void)state;
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    expect_reject("short.safetensors", "", 0, 0, 5);                    /* < 8 bytes */
    expect_reject("hlen.safetensors", ok, 24, 1u << 30, 0);             /* header past EOF */
    expect_reject("hlen_huge.safetensors", ok, 24, UINT64_MAX, 0);      /* overflow bait */
    expect_reject("trunc.safetensors", ok, 24, 0, 8 + strlen(ok) + 10); /* data cut short */
    expect_reject("json.safetensors", "{\"a\":{\"dtype\":", 0, 0, 0);
    expect_reject("array.safetensors", "[1,2,3]", 0, 0, 0);
    expect_reject("dtype.safetensors", "{\"a\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                  0, 0);
    expect_reject("nbytes.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
                  24, 0, 0);
    expect_reject("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,3],\"data_offsets\":[0,24]}}",
                  24, 0, 0);
    expect_reject("order.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 24,
                  0, 0);
    expect_reject("dup.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\","
                  "\"shape\":[1],"
                  "\"data_offsets\":[0,4]}}",
                  4, 0, 0);
    expect_reject("overflow.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,0]}}", 0,
                  0, 0);
    expect_reject("noobj.safetensors", "{\"a\":[1,2]}", 0, 0, 0);
    cv_st *st;
    assert_int_equal(cv_st_open("/nonexistent/model.safetensors", &st), CV_ERR_NOTFOUND);
}

/* A model folder with the real config and vocab and a crafted model.safetensors. */
static cv_err load_with(const char *json, size_t data_len, const char *config_edit) {
    char src[4096], dst[4096];
    const char *files[] = {"config.json", "vocab.txt", "sentence_bert_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", cv_minilm_default_dir(), files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        size_t len;
        char *buf = tu_read_file(src, &len);
        assert_non_null(buf);
        FILE *f = fopen(dst, "wb");
        if (i == 0 && config_edit) {
            char *at = strstr(buf, "\"gelu\"");
            assert_non_null(at);
            fwrite(buf, 1, (size_t)(at - buf), f);
            fputs(config_edit, f);
            fputs(at + strlen("\"gelu\""), f);
        } else {
            fwrite(buf, 1, len, f);
        }
        fclose(f);
        free(buf);
    }
    write_st("model.safetensors", json, data_len, 0, 0);
    cv_minilm *m = NULL;
    cv_minilm_opts o = {.threads = 1, .device = CV_DEVICE_CPU};
    cv_err err = cv_minilm_load(dir, &o, &m);
    assert_null(m);
    return err;
}

static void test_model_mismatch(void **state) {
    (void)state;
    /* wrong shape */
    assert_int_equal(load_with("{\"embeddings.word_embeddings.weight\":{\"dtype\":\"F32\",\"shape\":[10,384],"
                               "\"data_offsets\":[0,15360]}}",
                               15360, NULL),
                     CV_ERR_MISMATCH);
    /* wrong dtype (sparse data section of the right size) */
    assert_int_equal(
        load_with("{\"embeddings.word_embeddings.weight\":{\"dtype\":\"I64\",\"shape\":[30522,384],"
                  "\"data_offsets\":[0,93763584]}}",
                  93763584, NULL),
        CV_ERR_MISMATCH);
    /* missing tensor */
    assert_int_equal(
        load_with("{\"other\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NULL),
        CV_ERR_NOTFOUND);
    /* unsupported activation in config.json */
    assert_int_equal(load_with("{}", 0, "\"relu\""), CV_ERR_UNSUPPORTED);
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_model_mismatch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
