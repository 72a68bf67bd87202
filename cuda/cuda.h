// The CUDA backend: one device, one compute stream, cuDNN for convolutions, cuBLAS for matrix
// products and effnet's own kernels for everything else, at f32 (optionally TF32) and, for graphs
// whose activations ef_graph_set_precision made 16-bit, bf16 or f16 with f32 statistics and sums.
#ifndef EF_CUDA_H
#define EF_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

typedef struct {
  int device;           // CUDA device index  [0]
  bool allow_tf32;      // f32 convolutions and products may round their inputs to TF32
  bool debug_sync;      // synchronize and check after every node, naming it (also EFFNET_CUDA_SYNC=1)
  size_t workspace_mib; // the most cuDNN workspace one convolution may use  [0: 512]
  // The file of convolution algorithms chosen (cuda/algo_cache.h), read at start and appended to,
  // so that every process on the card makes the same choices: "off" keeps them in memory; NULL:
  // $EFFNET_ALGO_CACHE, else the user's cache folder (~/.cache/effnet/cuda-algos.tsv). The
  // trainer gives its run folder's; processes that compare results must share one file.
  const char *algo_cache;
} ef_cuda_opts;

// The number of usable CUDA devices; 0 with the reason in why (no driver, no device, ...).
int ef_cuda_device_count(char *why, size_t len);

// The backend on opts->device (NULL opts: the defaults); NULL with a message (ef_last_error)
// when the device, cuDNN or cuBLAS cannot start.
ef_backend *ef_cuda_backend_new(const ef_cuda_opts *opts);

bool ef_backend_is_cuda(const ef_backend *be);
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, cuDNN 91900)"
const char *ef_cuda_describe(const ef_backend *be);
// The most device memory effnet's own allocations held at once (arenas, scratch), and what the
// device reported in use at that moment (the libraries' workspaces and the context included).
size_t ef_cuda_peak_bytes(const ef_backend *be);
size_t ef_cuda_peak_device_bytes(const ef_backend *be);
// The device memory free now.
size_t ef_cuda_free_bytes(const ef_backend *be);
// The backend's stream (a cudaStream_t), which every node's work is queued on: what the NCCL
// communicator orders its collectives after (train/comm_nccl.c).
void *ef_cuda_stream(const ef_backend *be);

#endif
