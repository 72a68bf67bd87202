// Internals of the CUDA backend shared by its files: the checking macro per library (each names the
// call, file:line and rank), the backend's state, per-node state, and the helpers for scratch
// layout and operand conversion.
#ifndef EF_CUDA_INTERNAL_H
#define EF_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "cuda/algo_cache.h"
#include "cuda/cuda.h"
#include "cuda/kernels.h"

// Calls that cannot fail once the backend runs: a failure is a bug or a dead device; abort naming it.
#define EF_CUDA_CHECK(expr)                                                                                            \
  do {                                                                                                                 \
    cudaError_t ef_cu_st_ = (expr);                                                                                    \
    if (ef_cu_st_ != cudaSuccess)                                                                                      \
      EF_FATAL("CUDA call %s failed: %s (%s)", #expr, cudaGetErrorName(ef_cu_st_), cudaGetErrorString(ef_cu_st_));     \
  } while (0)
#define EF_CUDNN_CHECK(expr)                                                                                           \
  do {                                                                                                                 \
    cudnnStatus_t ef_dnn_st_ = (expr);                                                                                 \
    if (ef_dnn_st_ != CUDNN_STATUS_SUCCESS)                                                                            \
      EF_FATAL("cuDNN call %s failed: %s", #expr, cudnnGetErrorString(ef_dnn_st_));                                    \
  } while (0)
#define EF_CUBLAS_CHECK(expr)                                                                                          \
  do {                                                                                                                 \
    cublasStatus_t ef_blas_st_ = (expr);                                                                               \
    if (ef_blas_st_ != CUBLAS_STATUS_SUCCESS)                                                                          \
      EF_FATAL("cuBLAS call %s failed: %s", #expr, cublasGetStatusString(ef_blas_st_));                                \
  } while (0)
// While preparing a node: return an error naming the call and the node.
#define EF_CUDNN_TRY(expr, node)                                                                                       \
  do {                                                                                                                 \
    cudnnStatus_t ef_dnn_st_ = (expr);                                                                                 \
    if (ef_dnn_st_ != CUDNN_STATUS_SUCCESS)                                                                            \
      return EF_ERROR(ef_dnn_st_ == CUDNN_STATUS_ALLOC_FAILED ? EF_ERR_NOMEM : EF_ERR_UNSUPPORTED,                     \
                      "cuDNN call %s failed for node '%s': %s", #expr, (node)->name, cudnnGetErrorString(ef_dnn_st_)); \
  } while (0)

typedef struct {
  void *p;
  size_t bytes;
} ef_cuda_alloc;

typedef struct {
  ef_cuda_opts opts;
  cudaStream_t stream;
  cudnnHandle_t cudnn;
  cublasHandle_t cublas;
  void *cublas_ws;           // cuBLAS's workspace, set once so that captured products allocate nothing
  uint32_t *d_step;          // the run's step (dropout's Philox counter), written before each run
  int *d_error;              // set by kernels that find bad data (ef_k_* EF_CUDA_ERR_*)
  ef_arena_ops arena;        // the training step's update (ef_backend.arena)
  ef_step_values *d_values;  // its per-step values on the device, which the kernels read
  ef_step_values *results;   // two result slots in mapped host memory, which the steps write
  ef_step_values *d_results; // (ef_step_values.slot), seen from the device
  float *d_gmul;             // the gradients' multiplier (unscale and clipping)
  double *d_norm_part;       // the norm's partial sums (EF_K_NORM_CHUNKS)
  bool capturing;
  ef_cuda_alloc *allocs; // effnet's live allocations, for the peak
  int n_allocs, cap_allocs;
  size_t live, peak, peak_device;
  ef_algo_cache algos; // the convolution algorithms chosen (cuda/algo_cache.h)
  char card[160];      // the card as the algorithm cache keys it: name, sm, SMs
  char *search;        // device memory for the algorithm searches (cuDNN's workspace, converted
  size_t search_bytes; // operands), kept from one search to the next, freed before a capture
  char describe[384];
} ef_cuda;

// What a node prepared: where its converted operands and library workspace sit in the plan's
// scratch, and, for convolutions, cuDNN's descriptors and algorithm.
#define EF_CUDA_NO_SCRATCH ((size_t)-1)
typedef struct {
  size_t off[4];  // per operand (conv: x, w, y, and CONV2D_BN's coefficients; linear: a, b, c), or
                  // EF_CUDA_NO_SCRATCH
  size_t ws_off;  // the library's workspace, or a kernel's own scratch
  size_t scratch; // the node's scratch bytes in all
  ef_dtype cdt;   // the type the library computes in
  cudnnTensorDescriptor_t xd, yd;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd;
  int algo;
  bool own;           // effnet's depthwise kernels instead of cuDNN
  bool pad;           // asymmetric padding done by ef_k_pad / ef_k_crop into the scratch
  int64_t ph, pw;     // the padded input's height and width
  float *host;        // SyncBN: host staging for the group's communication
  ef_tensor *conv;    // CONV2D_BN: its convolution alone (off[3]: the batch norm's coefficients after)
  ef_tensor *gated_x; // a gated CONV2D_BN: x * gate, which conv reads, at gate_off in the scratch
  size_t gate_off;    // (gated_x's data is set there at every run)
  char impl[96];      // "cudnn fwd algo 1 (tensor ops)"
} ef_cuda_node;

// Scratch layout: each piece starts on a 256-byte boundary.
static inline size_t ef_cuda_align(size_t x) { return (x + 255) & ~(size_t)255; }
// Reserves `bytes` at *end, returning its offset, and moves *end past it.
static inline size_t ef_cuda_reserve(size_t *end, size_t bytes) {
  size_t at = *end;
  *end = ef_cuda_align(at + bytes);
  return at;
}
static inline ef_dref ef_cuda_ref(const ef_tensor *t) { return (ef_dref){t->data, t->dtype}; }

// The search space with at least `bytes` (grown, never shrunk, while searches go on); NULL when the
// device is out of memory.
char *ef_cuda_search_space(ef_cuda *cu, size_t bytes);

ef_status ef_cuda_conv_prepare(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s);
void ef_cuda_conv_run(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, char *scratch);
ef_status ef_cuda_linear_prepare(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s);
void ef_cuda_linear_run(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, char *scratch);

// cuDNN's type for an effnet dtype.
cudnnDataType_t ef_cudnn_dtype(ef_dtype dt);

#endif
