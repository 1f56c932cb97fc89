/* safetensors.c: mmap + jansson header parse, with every offset checked before use. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "minilm.h"

#define MAX_HEADER (100u << 20)

struct cv_st {
    void *map;
    size_t map_len;
    cv_st_tensor *t; /* (n) */
    int n;
};

static cv_dtype dtype_of(const char *s, size_t *elsize, const char **static_name) {
    static const struct {
        const char *name;
        cv_dtype dt;
        size_t size;
    } known[] = {{"F32", CV_DT_F32, 4},   {"F16", CV_DT_F16, 2},  {"BF16", CV_DT_BF16, 2},
                 {"I64", CV_DT_I64, 8},   {"I32", CV_DT_I32, 4},  {"F64", CV_DT_OTHER, 8},
                 {"I16", CV_DT_OTHER, 2}, {"I8", CV_DT_OTHER, 1}, {"U8", CV_DT_OTHER, 1},
                 {"BOOL", CV_DT_OTHER, 1}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(s, known[i].name) == 0) {
            *elsize = known[i].size;
            *static_name = known[i].name;
            return known[i].dt;
        }
    *elsize = 0;
    *static_name = "?";
    return CV_DT_OTHER;
}

static cv_err bad(const char *path, const char *tensor, const char *what) {
    cv_error("event=safetensors_invalid path=%s tensor=%s error=\"%s\" fix=\"re-fetch the model: "
             "python3 models/fetch_model.py --force\"",
             path, tensor ? tensor : "-", what);
    return CV_ERR_FORMAT;
}

/* Parses one tensor entry; data_len is the size of the data section. */
static cv_err parse_entry(const char *path, const char *name, json_t *v, const uint8_t *data, size_t data_len,
                          cv_st_tensor *out) {
    if (!json_is_object(v)) return bad(path, name, "entry is not an object");
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return bad(path, name, "dtype missing or not a string");
    if (!json_is_array(sh) || json_array_size(sh) > CV_ST_MAX_DIMS)
        return bad(path, name, "shape missing, not an array, or more than 8 dimensions");
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return bad(path, name, "data_offsets must be [begin, end]");
    size_t elsize;
    out->dtype = dtype_of(json_string_value(dt), &elsize, &out->dtype_name);
    if (elsize == 0) return bad(path, name, "unknown dtype");
    out->ndim = (int)json_array_size(sh);
    uint64_t count = 1;
    for (int i = 0; i < out->ndim; i++) {
        json_t *d = json_array_get(sh, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return bad(path, name, "shape entries must be non-negative integers");
        out->shape[i] = json_integer_value(d);
        if (out->shape[i] != 0 && count > UINT64_MAX / (uint64_t)out->shape[i])
            return bad(path, name, "shape overflows");
        count *= (uint64_t)out->shape[i];
    }
    json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b || (uint64_t)e > data_len)
        return bad(path, name, "data_offsets outside the file (truncated?)");
    if (count > UINT64_MAX / elsize || count * elsize != (uint64_t)(e - b))
        return bad(path, name, "byte length does not match dtype x shape");
    out->data = data + b;
    out->nbytes = (size_t)(e - b);
    return CV_OK;
}

cv_err cv_st_open(const char *path, cv_st **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cv_error("event=safetensors_open path=%s error=\"cannot open\" fix=\"%s\"", path,
                 cv_minilm_fetch_fix());
        return CV_ERR_NOTFOUND;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 8) {
        close(fd);
        return bad(path, NULL, "file shorter than the 8-byte header length");
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        cv_error("event=safetensors_mmap path=%s error=\"mmap failed\"", path);
        return CV_ERR_IO;
    }
    cv_st *st = calloc(1, sizeof *st);
    if (!st) {
        munmap(map, len);
        return CV_ERR_NOMEM;
    }
    st->map = map;
    st->map_len = len;
    const uint8_t *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    cv_err err = CV_OK;
    json_t *root = NULL;
    if (hlen < 2 || hlen > MAX_HEADER || hlen > len - 8) {
        err = bad(path, NULL, "header length is larger than the file (truncated or not safetensors)");
        goto done;
    }
    json_error_t jerr;
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        cv_error("event=safetensors_invalid path=%s error=\"header is not a JSON object: %s at "
                 "byte %d\"",
                 path, root ? "not an object" : jerr.text, root ? 0 : jerr.position);
        err = CV_ERR_FORMAT;
        goto done;
    }
    size_t n = json_object_size(root);
    st->t = calloc(n ? n : 1, sizeof *st->t);
    if (!st->t) {
        err = CV_ERR_NOMEM;
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        cv_st_tensor *t = &st->t[st->n];
        if ((err = parse_entry(path, key, v, p + 8 + hlen, len - 8 - hlen, t))) goto done;
        if (!(t->name = strdup(key))) {
            err = CV_ERR_NOMEM;
            goto done;
        }
        st->n++;
    }
done:
    json_decref(root);
    if (err) {
        cv_st_close(st);
        return err;
    }
    *out = st;
    return CV_OK;
}

void cv_st_close(cv_st *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++)
        free(st->t[i].name);
    free(st->t);
    if (st->map) munmap(st->map, st->map_len);
    free(st);
}

const cv_st_tensor *cv_st_find(const cv_st *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

int cv_st_count(const cv_st *st) { return st->n; }
