// The commands' --device and --precision: the backend they run on (the CPU's OpenMP threads, or a
// CUDA device with TF32 allowed or not) and the type of the activations (ef_graph_set_precision).
#ifndef EF_TOOLS_DEVICE_H
#define EF_TOOLS_DEVICE_H

#include <stdbool.h>

#include "core/backend.h"

typedef struct {
  ef_backend *be;
  ef_dtype activations;  // EF_F32, EF_BF16 or EF_F16
  bool cuda;
  int index;             // the CUDA device
  const char *precision; // as given: f32, tf32, bf16, f16
} ef_device;

// "--device D" and "--precision P" help lines.
#define EF_DEVICE_USAGE                                                                        \
  "  --device D            cpu, or cuda / cuda:N (GPU N)  [cpu]\n"                              \
  "  --precision P         f32; on CUDA also tf32 (f32 through tensor cores), bf16 or f16\n"    \
  "                        (16-bit activations, f32 weights, statistics and loss; f16 scales\n" \
  "                        the loss dynamically)  [f32]\n"

// Checks the flags of command `cmd` (no backend yet); on a mistake prints "effnet <cmd>: ..." and
// returns 2.
int ef_device_parse(ef_device *d, const char *cmd, const char *device, const char *precision);
// The same, then the backend; returns 2 (bad flags) or 1 (the device cannot start) after a message.
int ef_device_open(ef_device *d, const char *cmd, const char *device, const char *precision, int threads);
// The CUDA backend's algorithm cache file (ef_cuda_opts.algo_cache): `flag` (--algo-cache FILE,
// "off" for none) if given, else $EFFNET_ALGO_CACHE if set, else `run_file` (the trainer's: a file
// in its run folder, shared by its ranks and its resumes) if given, else NULL: the user's cache
// folder. Processes that must compute the same bits need the same file.
const char *ef_device_algo_cache(const char *flag, const char *run_file);
// ef_device_open with that choice.
int ef_device_open_algos(ef_device *d, const char *cmd, const char *device, const char *precision, int threads,
                         const char *flag, const char *run_file);
void ef_device_close(ef_device *d);
// "cpu, 2 threads" or "NVIDIA H100 80GB HBM3 (sm_90, ...), bf16"
const char *ef_device_describe(const ef_device *d, char *buf, size_t len);

#endif
