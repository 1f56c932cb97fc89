/* safetensors.h: read-only, bounds-checked view of a .safetensors file through one mmap.
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data section; offsets are relative to the data section. */
#ifndef CV_SAFETENSORS_H
#define CV_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"

typedef enum { CV_DT_F32 = 0, CV_DT_F16, CV_DT_BF16, CV_DT_I64, CV_DT_I32, CV_DT_OTHER } cv_dtype;

#define CV_ST_MAX_DIMS 8

typedef struct cv_st_tensor {
    char *name;
    cv_dtype dtype;
    const char *dtype_name; /* static: "F32", "F16", ... */
    int ndim;
    int64_t shape[CV_ST_MAX_DIMS];
    const void *data; /* inside the mapping; valid until cv_st_close */
    size_t nbytes;
} cv_st_tensor;

typedef struct cv_st cv_st;

/* Maps path and validates the header: every tensor's dtype, shape and byte range must be
 * consistent and inside the file. Errors are logged with the path and the offending tensor.
 * On success *out is owned by the caller (cv_st_close). */
cv_err cv_st_open(const char *path, cv_st **out);
void cv_st_close(cv_st *st);

/* Borrowed pointer into st, or NULL when absent. */
const cv_st_tensor *cv_st_find(const cv_st *st, const char *name);
int cv_st_count(const cv_st *st);

#endif
