/* cv_mem.h: large aligned buffers on transparent huge pages.
 *
 * On the virtual machines cdcvec was measured on, a TLB miss on a 4 KB page costs
 * microseconds: streaming 42 MB of weights ran at ~1 GB/s on 4 KB pages and ~25 GB/s on
 * 2 MB pages. Weights and activation buffers of a few MB or more therefore live on huge
 * pages when the kernel offers them (THP "always" or "madvise"); elsewhere this is a plain
 * aligned allocation. */
#ifndef CV_MEM_H
#define CV_MEM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* bytes (0 allowed), 64-byte aligned; 2 MB aligned and advised MADV_HUGEPAGE when bytes >=
 * 2 MB. NULL when out of memory. Owned by the caller: release with free(). */
void *cv_mem_alloc(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
