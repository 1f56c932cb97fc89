/* sim_runtime.cpp: the CUDA runtime on the CPU: device memory (guard pages, poison, leak
 * report, host access trapped), copies checked for direction and size, streams as queues run
 * as late as CUDA allows (so an unordered use sees stale memory), events, graph capture as
 * record and replay. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <string>

#include "sim_internal.h"

struct cusim_stream {
    cusim_stream(bool nb, bool leg) : nonblocking(nb), legacy(leg) {}
    bool nonblocking, legacy, capturing = false, invalidated = false;
    std::deque<cusim::Op> q;
    unsigned long long enq = 0, done = 0;
    struct cusim_graph *cap = nullptr;
};
struct cusim_event {
    cusim_stream *s = nullptr;
    unsigned long long seq = 0;
};
struct cusim_graph {
    std::vector<cusim::Op> ops;
};
struct cusim_graph_exec {
    std::vector<cusim::Op> ops;
};

namespace cusim {

long launches;
static cudaError_t last_error = cudaSuccess;
void set_last_error(cudaError_t e) {
    if (last_error == cudaSuccess) last_error = e;
}

static const size_t PAGE = 4096;
struct Alloc {
    size_t bytes;
    char *map;
    size_t map_len;
    bool pinned;
};
static std::map<uintptr_t, Alloc> allocs; /* by start */
static cusim_stream legacy_stream(false, true);
static std::vector<cusim_stream *> streams;
static long fail_malloc_at = -1, graph_launches;
static bool protect = true, accessible = true, in_drain;

static void set_access(bool on) {
    if (!protect || on == accessible) return;
    for (auto &a : allocs)
        if (!a.second.pinned)
            mprotect(a.second.map, a.second.map_len - PAGE, on ? PROT_READ | PROT_WRITE : PROT_NONE);
    accessible = on;
}

static const Alloc *find(const void *p, uintptr_t *start) {
    auto it = allocs.upper_bound((uintptr_t)p);
    if (it == allocs.begin()) return nullptr;
    --it;
    if ((uintptr_t)p >= it->first + (it->second.bytes ? it->second.bytes : 1)) return nullptr;
    if (start) *start = it->first;
    return &it->second;
}

static bool in_alloc(const void *p, size_t bytes, bool pinned) {
    uintptr_t st;
    const Alloc *a = find(p, &st);
    return a && a->pinned == pinned && (uintptr_t)p + bytes <= st + a->bytes;
}
bool is_device(const void *p, size_t bytes) { return in_alloc(p, bytes, false); }
bool is_pinned(const void *p, size_t bytes) { return in_alloc(p, bytes, true); }

void need_device(const void *p, size_t bytes, const char *what) {
    uintptr_t st;
    const Alloc *a = find(p, &st);
    if (!a || a->pinned) fault("%s: %p is not device memory", what, p);
    if ((uintptr_t)p + bytes > st + a->bytes)
        fault("%s: %zu bytes at offset %zu overrun the device allocation of %zu bytes", what, bytes,
              (size_t)((uintptr_t)p - st), a->bytes);
}

static void report_leaks() {
    size_t n = 0, bytes = 0;
    for (auto &a : allocs) {
        if (n < 10)
            fprintf(stderr, "cuda_sim: LEAK: %s allocation of %zu bytes at %p never freed\n",
                    a.second.pinned ? "pinned host" : "device", a.second.bytes, (void *)a.first);
        n++, bytes += a.second.bytes;
    }
    size_t pending = legacy_stream.q.size();
    for (auto *s : streams)
        pending += s->q.size();
    if (pending) fprintf(stderr, "cuda_sim: %zu queued operations never waited for at exit\n", pending);
    if (n) {
        fprintf(stderr, "cuda_sim: LEAK: %zu allocations, %zu bytes, live at exit\n", n, bytes);
        const char *e = getenv("CUDA_SIM_LEAKS");
        if (!e || strcmp(e, "warn") != 0) _exit(3);
    }
}

static void on_segv(int sig, siginfo_t *si, void *) {
    uintptr_t a = (uintptr_t)si->si_addr;
    const char *what = "an address outside every live device allocation (out of bounds, freed, or garbage)";
    for (auto &x : allocs) {
        if (a >= (uintptr_t)x.second.map && a < (uintptr_t)x.second.map + x.second.map_len) {
            what = a >= (uintptr_t)x.second.map + x.second.map_len - PAGE
                       ? "the guard page after a device allocation (read or write past its end)"
                       : "device memory from host code (device memory is only reachable from kernels, "
                         "cuBLAS and copies)";
            break;
        }
    }
    fprintf(stderr, "cuda_sim: FAULT: memory access at %p: %s", si->si_addr, what);
    if (cur_kernel)
        fprintf(stderr, " [kernel %s, block (%u,%u,%u), thread (%u,%u,%u)]", cur_kernel, block_idx.x,
                block_idx.y, block_idx.z, cur_tid.x, cur_tid.y, cur_tid.z);
    fprintf(stderr, "\n");
    signal(sig, SIG_DFL);
    abort();
}

static void init() {
    static bool done;
    if (done) return;
    done = true;
    const char *p = getenv("CUDA_SIM_PROTECT");
    protect = !(p && strcmp(p, "0") == 0);
    accessible = !protect; /* device memory is out of the host's reach outside operations */
    static char altstack[1 << 16];
    stack_t ss = {};
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    sigaltstack(&ss, NULL);
    atexit(report_leaks);
    struct sigaction sa = {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL); /* test frameworks may install theirs per test: drain() reinstalls */
    sigaction(SIGBUS, &sa, NULL);
}

/* ---- streams ---------------------------------------------------------------------------- */

cusim_stream *resolve(cudaStream_t s) {
    if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread) return &legacy_stream;
    for (auto *x : streams)
        if (x == s) return x;
    return nullptr;
}

static void drain(cusim_stream *s, unsigned long long upto = ~0ull) {
    if (in_drain) return; /* ops never wait on streams themselves */
    in_drain = true;
    /* our fault handler while operations run (test frameworks install their own per test) */
    struct sigaction sa = {}, old_segv, old_bus;
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    set_access(true);
    while (!s->q.empty() && s->done < upto) {
        Op op = std::move(s->q.front());
        s->q.pop_front();
        op.run();
        s->done++;
    }
    set_access(false);
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    in_drain = false;
}

static void drain_all() {
    drain(&legacy_stream);
    for (auto *s : streams)
        drain(s);
}

static bool capture_active() {
    for (auto *s : streams)
        if (s->capturing) return true;
    return false;
}

cudaError_t enqueue(cudaStream_t h, Op op) {
    init();
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    if (s->capturing) {
        s->cap->ops.push_back(std::move(op));
        return cudaSuccess;
    }
    if (s->legacy && capture_active()) {
        fprintf(stderr, "cuda_sim: %s on the legacy stream while a stream is being captured\n",
                op.what.c_str());
        for (auto *x : streams)
            if (x->capturing) x->invalidated = true;
        return cudaErrorStreamCaptureUnsupported;
    }
    /* the legacy stream waits for blocking streams and they wait for it; non-blocking streams
     * are ordered with nothing but themselves */
    if (s->legacy) {
        for (auto *x : streams)
            if (!x->nonblocking) drain(x);
    } else if (!s->nonblocking)
        drain(&legacy_stream);
    s->q.push_back(std::move(op));
    s->enq++;
    return cudaSuccess;
}

static bool pending_use(uintptr_t st, size_t bytes, std::string *what) {
    auto check = [&](cusim_stream *s) {
        for (auto &op : s->q)
            for (const void *u : op.uses)
                if ((uintptr_t)u >= st && (uintptr_t)u < st + (bytes ? bytes : 1)) {
                    *what = op.what;
                    return true;
                }
        return false;
    };
    if (check(&legacy_stream)) return true;
    for (auto *s : streams)
        if (check(s)) return true;
    return false;
}

/* ---- copies ------------------------------------------------------------------------------ */

static const char *kind_name(cudaMemcpyKind k) {
    static const char *n[] = {"HostToHost", "HostToDevice", "DeviceToHost", "DeviceToDevice", "Default"};
    return (unsigned)k <= 4 ? n[k] : "invalid";
}

/* Checks a copy's direction and extents; says which ends are device memory. */
static cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, bool *src_dev,
                              bool *dst_dev, const char *fn) {
    init();
    *src_dev = find(src, nullptr) && !find(src, nullptr)->pinned;
    *dst_dev = find(dst, nullptr) && !find(dst, nullptr)->pinned;
    const char *why = nullptr;
    if (!dst || !src)
        why = "a NULL pointer";
    else
        switch (kind) {
        case cudaMemcpyHostToDevice:
            if (!*dst_dev)
                why = "kind HostToDevice but dst is not device memory";
            else if (*src_dev)
                why = "kind HostToDevice but src is device memory";
            break;
        case cudaMemcpyDeviceToHost:
            if (!*src_dev)
                why = "kind DeviceToHost but src is not device memory";
            else if (*dst_dev)
                why = "kind DeviceToHost but dst is device memory";
            break;
        case cudaMemcpyDeviceToDevice:
            if (!*src_dev || !*dst_dev) why = "kind DeviceToDevice but an end is not device memory";
            break;
        case cudaMemcpyHostToHost:
            if (*src_dev || *dst_dev) why = "kind HostToHost but an end is device memory";
            break;
        case cudaMemcpyDefault: break;
        default: why = "invalid kind";
        }
    if (!why && *dst_dev && !is_device(dst, bytes)) why = "dst range overruns its device allocation";
    if (!why && *src_dev && !is_device(src, bytes)) why = "src range overruns its device allocation";
    if (why) {
        fprintf(stderr, "cuda_sim: %s(dst=%p, src=%p, bytes=%zu, %s) refused: %s\n", fn, dst, src, bytes,
                kind_name(kind), why);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

static Op copy_op(void *dst, const void *src, size_t bytes, bool snapshot) {
    Op op;
    op.what = "copy of " + std::to_string(bytes) + " bytes";
    op.uses = {dst, src};
    if (snapshot) { /* pageable source: staged when the call is made */
        auto buf = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src,
                                                                (const unsigned char *)src + bytes);
        op.run = [dst, buf]() { memcpy(dst, buf->data(), buf->size()); };
    } else if (is_pinned(src, bytes)) {
        /* pinned source: read when the copy runs; the host must not change it before then */
        auto buf = std::make_shared<std::vector<unsigned char>>((const unsigned char *)src,
                                                                (const unsigned char *)src + bytes);
        op.run = [dst, src, bytes, buf]() {
            if (memcmp(src, buf->data(), bytes) != 0)
                fault("pinned host buffer %p changed after cudaMemcpyAsync was queued and before it ran "
                      "(the host must wait for the copy before reusing the buffer)",
                      src);
            memcpy(dst, src, bytes);
        };
        op.again = [dst, src, bytes]() { return copy_op(dst, src, bytes, false); };
    } else {
        op.run = [dst, src, bytes]() { memmove(dst, src, bytes); };
        op.again = [dst, src, bytes]() { return copy_op(dst, src, bytes, false); };
    }
    return op;
}

} /* namespace cusim */

using namespace cusim;

extern "C" {
void cusim_fail_malloc_at(long n) { fail_malloc_at = n; }
long cusim_live_allocations(void) { return (long)allocs.size(); }
long cusim_launch_count(void) { return launches; }
long cusim_graph_launch_count(void) { return graph_launches; }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error";
    }
}
const char *cudaGetErrorName(cudaError_t e) { return cudaGetErrorString(e); }
cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error; }
cudaError_t cudaGetDeviceCount(int *n) {
    init();
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "cuda_sim (CPU execution layer, sm_90 limits)");
    p->totalGlobalMem = (size_t)80 << 30;
    p->sharedMemPerBlock = CUSIM_SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = CUSIM_SMEM_OPTIN;
    p->major = 9, p->minor = 0, p->multiProcessorCount = 132, p->maxThreadsPerBlock = 1024, p->warpSize = 32;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
    init();
    if (capture_active()) return cudaErrorStreamCaptureUnsupported;
    drain_all();
    return cudaSuccess;
}

static cudaError_t dev_alloc(void **p, size_t bytes, bool pinned) {
    init();
    *p = nullptr;
    if (!pinned && fail_malloc_at >= 0 && fail_malloc_at-- == 0) return cudaErrorMemoryAllocation;
    if (!pinned && capture_active()) return cudaErrorStreamCaptureUnsupported;
    const size_t rounded = (bytes + 15) & ~(size_t)15, len = (rounded + PAGE - 1) / PAGE * PAGE + PAGE;
    char *m = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return cudaErrorMemoryAllocation;
    mprotect(m + len - PAGE, PAGE, PROT_NONE); /* guard page: an access past the end faults */
    char *start = m + len - PAGE - rounded;
    memset(start, 0xff, bytes);                   /* poison: uninitialized floats read as NaN */
    memset(start + bytes, 0xa5, rounded - bytes); /* canary in the alignment slack */
    allocs[(uintptr_t)start] = Alloc{bytes, m, len, pinned};
    if (!pinned && !accessible) mprotect(m, len - PAGE, PROT_NONE);
    *p = start;
    return cudaSuccess;
}

static cudaError_t dev_free(void *p, bool pinned, const char *fn) {
    init();
    if (!p) return cudaSuccess;
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || it->second.pinned != pinned) {
        fprintf(stderr, "cuda_sim: %s(%p): not the start of a live %s allocation\n", fn, p,
                pinned ? "pinned host" : "device");
        return cudaErrorInvalidValue;
    }
    if (capture_active()) return cudaErrorStreamCaptureUnsupported;
    std::string what;
    if (pending_use(it->first, it->second.bytes, &what))
        fault("%s(%p) while a queued operation (%s) still uses it: wait for the stream first, or free "
              "stream-ordered (cudaFreeAsync)",
              fn, p, what.c_str());
    Alloc a = it->second;
    if (!a.pinned) mprotect(a.map, a.map_len - PAGE, PROT_READ | PROT_WRITE);
    const size_t rounded = (a.bytes + 15) & ~(size_t)15;
    for (size_t i = a.bytes; i < rounded; i++)
        if ((unsigned char)((char *)p)[i] != 0xa5)
            fault("device allocation %p of %zu bytes: a write %zu bytes past its end", p, a.bytes,
                  i - a.bytes);
    munmap(a.map, a.map_len);
    allocs.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) { return dev_alloc(p, bytes, false); }
cudaError_t cudaFree(void *p) { return dev_free(p, false, "cudaFree"); }
cudaError_t cudaMallocHost(void **p, size_t bytes) { return dev_alloc(p, bytes, true); }
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) { return dev_alloc(p, bytes, true); }
cudaError_t cudaFreeHost(void *p) { return dev_free(p, true, "cudaFreeHost"); }
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s) {
    if (!resolve(s)) return cudaErrorInvalidResourceHandle;
    return dev_alloc(p, bytes, false);
}
cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    if (!p) return cudaSuccess;
    auto it = allocs.find((uintptr_t)p);
    if (it == allocs.end() || it->second.pinned) return cudaErrorInvalidValue;
    Op op;
    op.what = "cudaFreeAsync";
    op.uses = {p};
    op.run = [p]() { dev_free(p, false, "cudaFreeAsync"); };
    return enqueue(s, std::move(op));
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t h) {
    bool sd, dd;
    cudaError_t e = check_copy(dst, src, bytes, kind, &sd, &dd, "cudaMemcpyAsync");
    if (e) return e;
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    if (bytes == 0) return cudaSuccess;
    if (!sd && dd) { /* host to device */
        bool pageable = !is_pinned(src, bytes);
        if (pageable && s->capturing) {
            s->invalidated = true;
            return cudaErrorStreamCaptureUnsupported;
        }
        return enqueue(h, copy_op(dst, src, bytes, pageable));
    }
    if (sd && !dd && !is_pinned(dst, bytes)) { /* to pageable memory: returns once done */
        if (s->capturing) {
            s->invalidated = true;
            return cudaErrorStreamCaptureUnsupported;
        }
        if ((e = enqueue(h, copy_op(dst, src, bytes, false)))) return e;
        drain(s);
        return cudaSuccess;
    }
    return enqueue(h, copy_op(dst, src, bytes, false));
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    bool sd, dd;
    cudaError_t e = check_copy(dst, src, bytes, kind, &sd, &dd, "cudaMemcpy");
    if (e) return e;
    if (capture_active()) return cudaErrorStreamCaptureUnsupported;
    if (bytes == 0) return cudaSuccess;
    /* on the legacy stream; from pageable host memory it returns once the source is staged,
     * before the device copy is done (CUDA's "API synchronization behavior") */
    if (!sd && dd) return enqueue(nullptr, copy_op(dst, src, bytes, true));
    if ((e = enqueue(nullptr, copy_op(dst, src, bytes, false)))) return e;
    drain(&legacy_stream);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s) {
    if (!is_device(p, bytes)) {
        fprintf(stderr, "cuda_sim: cudaMemset(%p, %zu bytes) refused: not device memory of that size\n", p,
                bytes);
        return cudaErrorInvalidValue;
    }
    Op op;
    op.what = "memset";
    op.uses = {p};
    op.run = [p, v, bytes]() { memset(p, v, bytes); };
    op.again = [op]() { return op; };
    return enqueue(s, std::move(op));
}
cudaError_t cudaMemset(void *p, int v, size_t bytes) { return cudaMemsetAsync(p, v, bytes, nullptr); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    init();
    auto *x = new cusim_stream((flags & cudaStreamNonBlocking) != 0, false);
    streams.push_back(x);
    *s = x;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t h) {
    cusim_stream *s = resolve(h);
    if (!s || s->legacy) return cudaErrorInvalidResourceHandle;
    drain(s); /* queued work still completes */
    for (size_t i = 0; i < streams.size(); i++)
        if (streams[i] == s) streams.erase(streams.begin() + (long)i);
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t h) {
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    if (s->capturing) {
        s->invalidated = true;
        return cudaErrorStreamCaptureUnsupported;
    }
    drain(s);
    return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t h) {
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    if (s->q.empty()) return cudaSuccess;
    drain(s); /* "not ready" once; done by the next query */
    return cudaErrorNotReady;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new cusim_event;
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t h) {
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    if (s->capturing) return cudaSuccess; /* graphs here are one stream: order is implied */
    e->s = s;
    e->seq = s->enq;
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (e->s) drain(e->s, e->seq);
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    if (!e->s || e->s->done >= e->seq) return cudaSuccess;
    drain(e->s, e->seq);
    return cudaErrorNotReady;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t h, cudaEvent_t e, unsigned) {
    if (!resolve(h)) return cudaErrorInvalidResourceHandle;
    if (e->s && e->s != resolve(h)) drain(e->s, e->seq); /* running earlier work sooner is allowed */
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t h, cudaStreamCaptureMode) {
    cusim_stream *s = resolve(h);
    if (!s || s->legacy) return cudaErrorInvalidResourceHandle; /* the legacy stream cannot capture */
    if (s->capturing) return cudaErrorStreamCaptureUnsupported;
    s->capturing = true;
    s->invalidated = false;
    s->cap = new cusim_graph;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t h, cudaGraph_t *g) {
    cusim_stream *s = resolve(h);
    if (!s || !s->capturing) return cudaErrorStreamCaptureUnmatched;
    s->capturing = false;
    if (s->invalidated) {
        delete s->cap;
        s->cap = nullptr;
        *g = nullptr;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = s->cap;
    s->cap = nullptr;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t h, cudaStreamCaptureStatus *st) {
    cusim_stream *s = resolve(h);
    if (!s) return cudaErrorInvalidResourceHandle;
    *st = !s->capturing    ? cudaStreamCaptureStatusNone
          : s->invalidated ? cudaStreamCaptureStatusInvalidated
                           : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long) {
    if (!g) return cudaErrorInvalidValue;
    for (auto &op : g->ops)
        if (!op.again) {
            fprintf(stderr, "cuda_sim: graph node '%s' cannot be replayed\n", op.what.c_str());
            return cudaErrorInvalidValue;
        }
    *x = new cusim_graph_exec{g->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t h) {
    if (!x || !resolve(h)) return cudaErrorInvalidResourceHandle;
    graph_launches++;
    for (auto &op : x->ops) {
        cudaError_t e = enqueue(h, op.again());
        if (e) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}

/* ---- kernel launches -------------------------------------------------------------------- */
namespace cusim {
void launch(const void *fn, const char *name, const char *file, int line, const LaunchCfg &cfg,
            std::vector<const void *> ptrs, std::function<void()> body) {
    init();
    if (!check_launch(fn, name, file, line, cfg)) return;
    for (size_t i = 0; i < ptrs.size(); i++)
        if (ptrs[i] && !is_device(ptrs[i], 1) && !is_pinned(ptrs[i], 1))
            fault("launch of %s (%s:%d): pointer argument %zu (%p) is not device memory", name, file, line,
                  i + 1, ptrs[i]);
    Op op;
    op.what = std::string("kernel ") + name;
    op.uses = ptrs;
    const char *nm = name;
    LaunchCfg c = cfg;
    auto b = std::make_shared<std::function<void()>>(std::move(body));
    op.run = [nm, c, b]() {
        launches++;
        run_kernel(nm, c, *b);
    };
    op.again = [op]() { return op; };
    cudaError_t e = enqueue((cudaStream_t)cfg.stream, std::move(op));
    if (e) set_last_error(e);
}
} /* namespace cusim */
