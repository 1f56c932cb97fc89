/* sim_exec.cpp: runs kernels on the CPU: every CUDA thread a fiber, blocks in turn, barriers
 * and warp exchanges checked, launches checked against sm_90 limits. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <unordered_map>

#include "sim_internal.h"

namespace cusim {

Fiber *cur;
uint3 cur_tid, block_idx;
dim3 block_dim, grid_dim;
void *dyn_smem;
size_t dyn_smem_bytes;
const char *cur_kernel;

enum { F_RUN, F_BAR, F_WARP, F_DONE, F_NEW };

struct Fiber {
    void *sp;
    int state;
    uint3 tid;
    unsigned lin;
    const char *file; /* where it waits */
    int line;
    int wkind, warg, wwidth;
    unsigned wmask;
    uint64_t wval, wres;
    char *stack;
};

extern "C" void cusim_ctx_switch(void **save, void *to);
#if defined(__x86_64__)
/* callee-saved registers (MXCSR and the x87 control word are never changed by kernels, so
 * they are not switched); rdi = where to save sp, rsi = new sp */
asm(R"(
.text
.globl cusim_ctx_switch
.type cusim_ctx_switch,@function
cusim_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size cusim_ctx_switch, .-cusim_ctx_switch
.section .note.GNU-stack,"",@progbits
.text
)");
#else
#error "cuda_sim: fibers are implemented for x86-64 only (see README.md)"
#endif

static void *sched_sp;              /* the scheduler's saved stack pointer */
static std::vector<Fiber> fibers;   /* the running block's threads */
static std::function<void()> *body; /* the running kernel */
static size_t stack_bytes = 64 * 1024;
static char *stack_pool;
static size_t pool_n;
static bool reverse_order;
static std::string drop_barrier; /* "file.cu:line" of a __syncthreads to skip (self-test) */
static unsigned bar_arrived, done_count;
static unsigned warp_waiting; /* threads blocked in a warp exchange */

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

void fault(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda_sim: FAULT: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cur_kernel)
        fprintf(stderr, " [kernel %s, block (%u,%u,%u), thread (%u,%u,%u)]", cur_kernel, block_idx.x,
                block_idx.y, block_idx.z, cur_tid.x, cur_tid.y, cur_tid.z);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

static void yield_to_sched() {
    Fiber *f = cur;
    cusim_ctx_switch(&f->sp, sched_sp);
    cur = f;
    cur_tid = f->tid;
}

static void fiber_start() {
    (*body)();
    Fiber *f = cur;
    f->state = F_DONE;
    /* a thread that exits while others wait for it at a barrier or a shuffle */
    done_count++;
    if (bar_arrived)
        for (auto &o : fibers)
            if (o.state == F_BAR)
                fault(
                    "thread exited while %u threads wait at __syncthreads (%s:%d): a barrier not reached by "
                    "the whole block",
                    bar_arrived, base(o.file), o.line);
    unsigned w0 = f->lin & ~31u, lane = f->lin & 31u;
    for (unsigned i = w0; warp_waiting && i < w0 + 32 && i < fibers.size(); i++)
        if (fibers[i].state == F_WARP && (fibers[i].wmask >> lane & 1))
            fault("thread exited while lane %u waits for it at a warp exchange (%s:%d, mask 0x%08x)", i & 31,
                  base(fibers[i].file), fibers[i].line, fibers[i].wmask);
    cusim_ctx_switch(&f->sp, sched_sp);
    abort(); /* never resumed */
}

static void init_fiber(Fiber &f, char *stack) {
    uintptr_t top = ((uintptr_t)stack + stack_bytes) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                      /* fiber_start's (absent) return address */
    *--sp = (uint64_t)&fiber_start; /* popped by ret */
    for (int i = 0; i < 6; i++)
        *--sp = 0; /* rbp rbx r12-r15 */
    f.sp = sp;
}

static void ensure_pool(size_t n) {
    if (n <= pool_n) return;
    if (stack_pool) munmap(stack_pool, pool_n * (stack_bytes + 4096));
    size_t len = n * (stack_bytes + 4096);
    stack_pool =
        (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack_pool == MAP_FAILED) fault("cannot map %zu fiber stacks", n);
    for (size_t i = 0; i < n; i++) /* a guard page below each stack: overflow faults */
        mprotect(stack_pool + i * (stack_bytes + 4096), 4096, PROT_NONE);
    pool_n = n;
}

/* ---- barriers and warp exchanges -------------------------------------------------------- */

void syncthreads(const char *file, int line) {
    if (!cur) fault("__syncthreads outside a kernel (%s:%d)", base(file), line);
    if (!drop_barrier.empty() && drop_barrier == std::string(base(file)) + ":" + std::to_string(line)) return;
    Fiber *f = cur;
    if (done_count)
        for (auto &o : fibers)
            if (o.state == F_DONE)
                fault("__syncthreads (%s:%d) reached after thread %u exited: the whole block must reach it",
                      base(file), line, o.lin);
    f->state = F_BAR, f->file = file, f->line = line;
    if (++bar_arrived == fibers.size()) {
        for (auto &o : fibers) {
            if (o.line != line || o.file != file)
                fault("threads wait at different __syncthreads: %s:%d and %s:%d", base(o.file), o.line,
                      base(file), line);
            o.state = F_RUN;
        }
        bar_arrived = 0;
        return;
    }
    yield_to_sched();
}

static void complete_warp(unsigned w0, unsigned mask) {
    Fiber *l = &fibers[w0];
    const Fiber &me = *cur;
    for (unsigned i = 0; i < 32; i++) {
        if (!(mask >> i & 1)) continue;
        Fiber &o = l[i];
        if (o.wmask != mask || o.wkind != me.wkind)
            fault("lanes of one warp meet at different warp exchanges: lane %u at %s:%d (mask 0x%08x), lane "
                  "%u at %s:%d (mask 0x%08x)",
                  i, base(o.file), o.line, o.wmask, me.lin & 31, base(me.file), me.line, mask);
    }
    uint64_t ballot = 0;
    for (unsigned i = 0; i < 32; i++)
        if (mask >> i & 1) ballot |= (l[i].wval & 1) << i;
    for (unsigned i = 0; i < 32; i++) {
        if (!(mask >> i & 1)) continue;
        Fiber &o = l[i];
        const int width = o.wwidth, seg = i & ~(unsigned)(width - 1);
        int src = -1;
        switch (o.wkind) {
        case W_SHFL: src = seg + (o.warg & (width - 1)); break;
        case W_SHFL_XOR:
            src = (int)(i ^ (unsigned)o.warg);
            if (src >= seg + width) src = i;
            break;
        case W_SHFL_DOWN:
            src = (int)i + o.warg;
            if (src >= seg + width) src = i;
            break;
        case W_SHFL_UP:
            src = (int)i - o.warg;
            if (src < seg) src = i;
            break;
        case W_BALLOT: o.wres = ballot; break;
        case W_ANY: o.wres = ballot != 0; break;
        case W_ALL: o.wres = ballot == (uint64_t)mask; break;
        default: o.wres = 0;
        }
        if (src >= 0) {
            if (src > 31 || !(mask >> src & 1))
                fault("lane %u reads lane %d, which is not in the shuffle's mask 0x%08x (%s:%d): undefined "
                      "value",
                      i, src, mask, base(o.file), o.line);
            o.wres = l[src].wval;
        }
        if (&o != cur) warp_waiting--;
        o.state = F_RUN;
    }
}

uint64_t warp_op(int kind, unsigned mask, uint64_t v, int arg, int width, const char *file, int line) {
    if (!cur) fault("warp intrinsic outside a kernel (%s:%d)", base(file), line);
    Fiber *f = cur;
    const unsigned lane = f->lin & 31, w0 = f->lin & ~31u;
    if (!(mask >> lane & 1))
        fault("lane %u calls a warp intrinsic with mask 0x%08x that does not name it (%s:%d)", lane, mask,
              base(file), line);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fault("shuffle width %d is not a power of two <= 32 (%s:%d)", width, base(file), line);
    for (unsigned i = 0; i < 32; i++)
        if ((mask >> i & 1) && w0 + i >= fibers.size())
            fault("warp intrinsic mask 0x%08x names lane %u, which does not exist (block of %zu threads) "
                  "(%s:%d)",
                  mask, i, fibers.size(), base(file), line);
    f->state = F_WARP, f->wkind = kind, f->wmask = mask, f->wval = v, f->warg = arg, f->wwidth = width;
    f->file = file, f->line = line;
    bool all = true;
    for (unsigned i = 0; i < 32 && all; i++)
        if (mask >> i & 1) {
            const Fiber &o = fibers[w0 + i];
            if (o.state == F_DONE)
                fault("warp intrinsic (%s:%d, mask 0x%08x) names lane %u, which has exited", base(file), line,
                      mask, i);
            all = o.state == F_WARP;
        }
    if (all)
        complete_warp(w0, mask);
    else {
        warp_waiting++;
        yield_to_sched();
    }
    return f->wres;
}

/* ---- blocks ------------------------------------------------------------------------------ */

static void describe_deadlock() {
    for (auto &o : fibers)
        if (o.state == F_BAR || o.state == F_WARP)
            fprintf(stderr, "cuda_sim:   thread %u waits at %s %s:%d\n", o.lin,
                    o.state == F_BAR ? "__syncthreads" : "a warp exchange", base(o.file), o.line);
    fault("deadlock: no thread can go on (a barrier or shuffle not reached by all the threads it names)");
}

static void run_block(unsigned nthreads) {
    fibers.resize(nthreads);
    bar_arrived = done_count = warp_waiting = 0;
    /* A thread gets a stack when it starts and gives it back when it ends: threads that never
     * wait (elementwise kernels) all run on one warm stack. */
    static std::vector<char *> free_stacks;
    free_stacks.clear();
    for (unsigned i = 0; i < nthreads; i++)
        free_stacks.push_back(stack_pool + (size_t)(nthreads - 1 - i) * (stack_bytes + 4096) + 4096);
    for (unsigned i = 0; i < nthreads; i++) {
        Fiber &f = fibers[i];
        f.lin = i;
        f.state = F_NEW;
    }
    const unsigned bx = block_dim.x, bxy = block_dim.x * block_dim.y;
    unsigned left = nthreads;
    while (left) {
        bool ran = false;
        for (unsigned k = 0; k < nthreads; k++) {
            Fiber &f = fibers[reverse_order ? nthreads - 1 - k : k];
            if (f.state == F_NEW) {
                f.tid = uint3{f.lin % bx, f.lin / bx % block_dim.y, f.lin / bxy};
                f.stack = free_stacks.back();
                free_stacks.pop_back();
                init_fiber(f, f.stack);
                f.state = F_RUN;
            } else if (f.state != F_RUN)
                continue;
            ran = true;
            cur = &f;
            cur_tid = f.tid;
            cusim_ctx_switch(&sched_sp, f.sp);
            if (f.state == F_DONE) {
                left--;
                free_stacks.push_back(f.stack);
            }
        }
        if (!ran && left) describe_deadlock();
    }
    cur = nullptr;
}

static std::unordered_map<const void *, int> smem_attr;

cudaError_t func_set_attr(const void *fn, int a, int v) {
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
    if (v < 0 || v > CUSIM_SMEM_OPTIN) return cudaErrorInvalidValue;
    smem_attr[fn] = v;
    return cudaSuccess;
}

static void init_env() {
    static bool done;
    if (done) return;
    done = true;
    const char *o = getenv("CUDA_SIM_ORDER");
    reverse_order = o && strcmp(o, "reverse") == 0;
    const char *d = getenv("CUDA_SIM_DROP_BARRIER");
    if (d) drop_barrier = d;
    const char *s = getenv("CUDA_SIM_STACK_KB");
    if (s && atoi(s) >= 16) stack_bytes = (size_t)atoi(s) * 1024;
}

bool check_launch(const void *fn, const char *name, const char *file, int line, const LaunchCfg &c) {
    init_env();
    const char *why = NULL;
    char buf[200];
    const unsigned long long threads = (unsigned long long)c.block.x * c.block.y * c.block.z;
    if (c.grid.x < 1 || c.grid.x > 2147483647u || c.grid.y < 1 || c.grid.y > 65535 || c.grid.z < 1 ||
        c.grid.z > 65535)
        why = "grid out of sm_90 limits (x 1..2^31-1, y and z 1..65535)";
    else if (c.block.x < 1 || c.block.y < 1 || c.block.z < 1 || c.block.x > 1024 || c.block.y > 1024 ||
             c.block.z > 64 || threads > CUSIM_MAX_THREADS)
        why = "block out of sm_90 limits (x,y <= 1024, z <= 64, x*y*z <= 1024)";
    else {
        auto it = smem_attr.find(fn);
        const size_t lim = it != smem_attr.end() && it->second > CUSIM_SMEM_DEFAULT ? (size_t)it->second
                                                                                    : CUSIM_SMEM_DEFAULT;
        if (c.smem > lim) {
            snprintf(buf, sizeof buf,
                     "dynamic shared memory %zu bytes over the kernel's limit %zu (48 KiB unless "
                     "cudaFuncAttributeMaxDynamicSharedMemorySize raises it, at most 227 KiB)",
                     c.smem, lim);
            why = buf;
        }
    }
    if (why) {
        fprintf(stderr,
                "cuda_sim: launch of %s at %s:%d refused: grid (%u,%u,%u) block (%u,%u,%u) smem %zu: %s\n",
                name, base(file), line, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.smem,
                why);
        set_last_error(why[0] == 'd' ? cudaErrorInvalidValue : cudaErrorInvalidConfiguration);
        return false;
    }
    return true;
}

void run_kernel(const char *name, const LaunchCfg &c, std::function<void()> &fn) {
    const unsigned nthreads = c.block.x * c.block.y * c.block.z;
    ensure_pool(nthreads);
    std::vector<unsigned char> smem(c.smem + 16);
    memset(smem.data(), 0xff, smem.size()); /* uninitialized shared memory reads as NaN */
    cur_kernel = name;
    block_dim = c.block, grid_dim = c.grid;
    dyn_smem = c.smem ? smem.data() : nullptr, dyn_smem_bytes = c.smem;
    body = &fn;
    const unsigned long long nb = (unsigned long long)c.grid.x * c.grid.y * c.grid.z;
    for (unsigned long long b = 0; b < nb; b++) {
        const unsigned long long k = reverse_order ? nb - 1 - b : b;
        block_idx = uint3{(unsigned)(k % c.grid.x), (unsigned)(k / c.grid.x % c.grid.y),
                          (unsigned)(k / ((unsigned long long)c.grid.x * c.grid.y))};
        run_block(nthreads);
    }
    cur_kernel = nullptr;
    body = nullptr;
}

} /* namespace cusim */

cudaError_t cusim_func_set_attr(const void *fn, int a, int v) { return cusim::func_set_attr(fn, a, v); }
