// The device a model runs on: the backend (the CPU's OpenMP threads, or a CUDA device with TF32
// allowed or not) and the type of the activations (ef_graph_set_precision), from the names users
// give ("cpu", "cuda:1"; "f32", "tf32", "bf16", "f16").
#ifndef EF_TRAIN_DEVICE_H
#define EF_TRAIN_DEVICE_H

#include <stdbool.h>

#include "core/backend.h"

// What a user asks for: "cpu", "cuda" or "cuda:N"; "f32", "tf32", "bf16" or "f16"; CPU threads
// (0: one per core); the CUDA backend's algorithm cache file ("off": none; NULL: see
// ef_device_algo_cache).
typedef struct {
  const char *device, *precision;
  long threads;
  const char *algo_cache;
} ef_device_spec;
#define EF_DEVICE_SPEC_DEFAULT ((ef_device_spec){"cpu", "f32", 0, NULL})

typedef struct {
  ef_backend *be;
  ef_dtype activations; // EF_F32, EF_BF16 or EF_F16
  bool cuda;
  int index;         // the CUDA device
  char precision[8]; // as given: f32, tf32, bf16, f16
} ef_device;

// Checks the names (no backend yet): EF_ERR_INVALID with a message on a mistake.
ef_status ef_device_parse(ef_device *d, const ef_device_spec *s);
// The same, then the backend: EF_ERR_INVALID (bad names) or EF_ERR_UNSUPPORTED (the device
// cannot start), with a message. run_file: the algorithm cache a run shares with its ranks and
// resumes (a file in its folder), or NULL.
ef_status ef_device_open(ef_device *d, const ef_device_spec *s, const char *run_file);
// The CUDA backend's algorithm cache file (ef_cuda_opts.algo_cache): `flag` (--algo-cache FILE,
// "off" for none) if given, else $EFFNET_ALGO_CACHE if set, else `run_file` if given, else NULL:
// the user's cache folder. Processes that must compute the same bits need the same file.
const char *ef_device_algo_cache(const char *flag, const char *run_file);
void ef_device_close(ef_device *d);
// "cpu, 2 threads" or "NVIDIA H100 80GB HBM3 (sm_90, ...), bf16"
const char *ef_device_describe(const ef_device *d, char *buf, size_t len);

#endif
