/* sim_internal.h: what the CPU execution layer's files share. */
#ifndef CUDA_SIM_INTERNAL_H
#define CUDA_SIM_INTERNAL_H

#include <string>

#include "include/cublas_v2.h"
#include "include/cuda_runtime.h"

namespace cusim {

void set_last_error(cudaError_t e);
bool check_launch(const void *fn, const char *name, const char *file, int line, const LaunchCfg &c);
void run_kernel(const char *name, const LaunchCfg &c, std::function<void()> &fn);

/* A device operation queued on a stream: run at the latest when something waits for it. */
struct Op {
    std::string what;               /* for messages */
    std::vector<const void *> uses; /* device (and pinned) memory it reads or writes */
    std::function<void()> run;
    std::function<Op()> again; /* graphs: a fresh copy for another launch */
};
/* Queues op on stream s (NULL: legacy), or adds it to the graph s is capturing. */
cudaError_t enqueue(cudaStream_t s, Op op);
/* The stream a handle names (legacy for 0), or NULL when the handle is not a live stream. */
struct cusim_stream *resolve(cudaStream_t s);
/* Checks [p, p+bytes) lies in one live device allocation; faults naming what otherwise. */
void need_device(const void *p, size_t bytes, const char *what);
extern long launches;

} /* namespace cusim */

#endif
