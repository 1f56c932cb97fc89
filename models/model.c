/* model.c: the model interface's shared parts (model.h). */
#include "model.h"

#ifndef CV_MODEL_NO_REVISION
#include <openssl/evp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"

int cv_model_name_ok(const char *name) {
    return name && (!strcmp(name, CV_MODEL_ID) || !strcmp(name, CV_MODEL_SHORT_ID));
}

#ifdef CV_MODEL_NO_REVISION /* the engine-only build (no OpenSSL) writes no store */
cv_err cv_model_file_sha256(const char *path, char hex[65]) {
    (void)path;
    snprintf(hex, 65, "unknown");
    return CV_OK;
}
#else
cv_err cv_model_file_sha256(const char *path, char hex[65]) {
    hex[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        cv_error("event=model_invalid path=%s error=\"cannot read the weights to compute their revision\"",
                 path);
        return CV_ERR_IO;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    cv_err e = ctx && buf && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? CV_OK : CV_ERR_NOMEM;
    size_t n;
    while (!e && (n = fread(buf, 1, cap, f)) > 0)
        if (!EVP_DigestUpdate(ctx, buf, n)) e = CV_ERR_IO;
    if (!e && ferror(f)) e = CV_ERR_IO;
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!e && !EVP_DigestFinal_ex(ctx, md, &mdlen)) e = CV_ERR_IO;
    if (!e)
        for (unsigned i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (e)
        cv_error("event=model_invalid path=%s error=\"reading the weights to compute their revision failed\"",
                 path);
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(f);
    return e;
}
#endif
