// The CPU backend: oneDNN (C API) for convolutions and matrix products, plain C loops with
// OpenMP for everything else, all in f32 on NHWC activations.
#ifndef EF_CPU_H
#define EF_CPU_H

#include "core/backend.h"

// The CPU backend with `threads` OpenMP threads (<= 0: one per available core).
// NULL, with a message (ef_last_error), if oneDNN cannot start.
ef_backend *ef_cpu_backend_new(int threads);
// The number of threads a CPU backend runs with.
int ef_cpu_threads(const ef_backend *be);
// The machine's limits on the backend's threads, measured (about a second): f32 GFLOP/s of FMA
// chains in the widest vectors this build uses, and GB/s of a scaled copy (read + write) between two
// 256 MiB arrays, larger than usual caches (a VM may report more: the Xeon's says 480 MiB of L3,
// shared with its other guests); 0 where the memory for it is missing.
typedef struct {
  double gflops, gbs;
} ef_cpu_peak;
ef_cpu_peak ef_cpu_peak_measure(const ef_backend *be);

#endif
