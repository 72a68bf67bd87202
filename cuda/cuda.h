// The CUDA backend: one device, one compute stream, cuDNN for convolutions, cuBLAS for matrix
// products and effnet's own kernels for everything else, at f32 (optionally TF32) and, for graphs
// whose activations ef_graph_set_precision made 16-bit, bf16 or f16 with f32 statistics and sums.
#ifndef EF_CUDA_H
#define EF_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

// Depthwise convolutions: the faster of cuDNN and effnet's kernels (timed once, cached), or one.
typedef enum { EF_CUDA_DW_AUTO, EF_CUDA_DW_CUDNN, EF_CUDA_DW_EFFNET } ef_cuda_dw;

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
  ef_cuda_dw depthwise; // [auto]; the tests run both paths
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

// ---- a training loop that never waits for the GPU (cuda/cuda_feed.c) -----------------------------
// The feed uploads uint8 batches and their labels through two pinned buffers on a copy stream of
// its own, and normalizes the pixels on the GPU into the plan's image input (f32 or 16-bit) with
// the loader's table (ef_transform_lut), the same values the loader's f32 batches hold. A loop:
//   put(batch 0); for each step k: put(batch k + 1) if any, take(images, labels), queue step k.
typedef struct ef_cuda_feed ef_cuda_feed;
// Batches of `pixels` uint8 values (N*H*W*C, C = channels: 1 or 3) and `batch` int32 labels.
ef_status ef_cuda_feed_new(ef_cuda_feed **out, ef_backend *be, int64_t pixels, int channels, int64_t batch,
                           const float lut[3 * 256]);
void ef_cuda_feed_free(ef_cuda_feed *f);
// Starts the upload of the next batch (host memory of any kind, free again on return): waits only
// for the upload two batches back. At most two batches put and not taken.
void ef_cuda_feed_put(ef_cuda_feed *f, const uint8_t *pixels, const int32_t *labels);
// Queues on the backend's stream, after the oldest batch put and not taken: its pixels normalized
// into `images` and its labels copied into `labels` (a plan's inputs, on this GPU). Outside any
// capture, before the step that reads them.
void ef_cuda_feed_take(ef_cuda_feed *f, const ef_tensor *images, const ef_tensor *labels);

// The readback copies a step's small results (the loss, the logits) into pinned memory after the
// step, to be read one step later: two slots, step numbers in order from 0, the step `seq` in
// slot seq % 2, so queue step k + 1's only after reading step k - 1's.
typedef struct ef_cuda_readback ef_cuda_readback;
ef_status ef_cuda_readback_new(ef_cuda_readback **out, ef_backend *be, size_t bytes);
void ef_cuda_readback_free(ef_cuda_readback *r);
// Queues, after the work queued so far, copies of n device ranges into slot seq % 2, one after
// the other (`bytes` in all at most).
void ef_cuda_readback_queue(ef_cuda_readback *r, uint32_t seq, const void *const *src, const size_t *bytes, int n);
// 1 when step seq's copies are done, 0 not yet, -1 after a CUDA error (why): for a poll with a
// timeout (ef_comm_poll's `done`, through a closure holding r and seq).
int ef_cuda_readback_ready(ef_cuda_readback *r, uint32_t seq, char *why, size_t len);
// Waits for step seq's copies and returns its slot.
const void *ef_cuda_readback_wait(ef_cuda_readback *r, uint32_t seq);

#endif
