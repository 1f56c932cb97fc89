/* cv_mem.c: large aligned buffers on transparent huge pages (see cv_mem.h). */
#define _DEFAULT_SOURCE
#include "cv_mem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *cv_mem_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes < HUGE_PAGE) {
        size_t rounded = (bytes + 63) & ~(size_t)63;
        return posix_memalign(&p, 64, rounded ? rounded : 64) == 0 ? p : NULL;
    }
    size_t rounded = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
    if (posix_memalign(&p, HUGE_PAGE, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: fine to fail */
#endif
    return p;
}
