/* gemm_impl.h: the packed-weight GEMM behind cv_cpu_linear_packed, shared by its kernel files.
 *
 * Weights (nn.Linear's w (N,K)) are packed once at load into column panels of CV_GEMM_NR
 * output columns, k-major inside a panel: panel j holds wp[j*K*16 + k*16 + c] = w[j*16+c][k]
 * (columns past N are zero). Per call, x is copied per (row block, k block) into rows of a
 * fixed stride CV_GEMM_KC, xp[r*CV_GEMM_KC + k], so kernels address a row by an immediate
 * offset (x is read in place when K == CV_GEMM_KC: its rows already have that stride). A kernel set computes
 * one such block against a range of panels (see cv_gemm_block_fn); gemm.c owns the loops, the packing and the
 * choice of set. */
#ifndef CV_GEMM_IMPL_H
#define CV_GEMM_IMPL_H

#include <stddef.h>

#define CV_GEMM_NR 16  /* output columns per weight panel */
#define CV_GEMM_KC 384 /* k per block: one block for K = 384 (y is never reloaded) */

/* y[r][c] (op)= sum over kc of xp * panel, for the mc rows of the packed block xp (taken in
 * slivers of set->mr rows, the last one shorter) and the columns [0, ncols) of the panels at
 * wp (panel p at wp + p*pstride, already offset to this k block). first: y = bias + product
 * (bias may be NULL: zero); else y += product. gelu: then y = GELU(y), for the last k block.
 * y and bias start at the first panel's column. after: the panel pair the next call will
 * start with (same pstride), for kernels that prefetch, or NULL. */
typedef void (*cv_gemm_block_fn)(const float *xp, int mc, int kc, const float *wp, size_t pstride, int ncols,
                                 float *y, size_t ldy, const float *bias, int first, int gelu,
                                 const float *after);

/* A buffer of at least bytes for the calling thread (64-byte aligned), reused by its next
 * call and freed when the thread exits: the per-call x copies of the kernels. */
void *cv_gemm_scratch(size_t bytes);

typedef struct {
    const char *name; /* "avx512", "avx2", "scalar" */
    int mr;           /* rows per x sliver */
    cv_gemm_block_fn block;
} cv_gemm_set;

extern const cv_gemm_set cv_gemm_scalar;
#if defined(__x86_64__) || defined(__i386__)
#define CV_GEMM_X86 1
extern const cv_gemm_set cv_gemm_avx2;
extern const cv_gemm_set cv_gemm_avx512;
#endif

#endif
