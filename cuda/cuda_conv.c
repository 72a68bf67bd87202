// Convolutions on the GPU through cuDNN's convolution API: forward, backward data and backward
// filter on NHWC activations with (O,KH,KW,I/groups) filters (cuDNN's NHWC filter layout, so
// weights are used in place), grouped and depthwise included. An operand in another type than
// the one the convolution computes in is converted in the scratch; asymmetric ("SAME") padding
// pads the input explicitly. Algorithms are found once per shape (deterministic ones first,
// within the workspace cap) and cached.
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_internal.h"

// The forward convolution's input, weights and output as the node sees them.
typedef struct {
  const ef_tensor *x, *w, *y;
} conv_io;

static conv_io conv_tensors(const ef_tensor *node) {
  switch (node->op) {
  case EF_OP_CONV2D: return (conv_io){node->src[0], node->src[1], node};
  case EF_OP_CONV2D_BWD_DATA: return (conv_io){node, node->src[1], node->src[0]};
  default: return (conv_io){node->src[1], node, node->src[0]};
  }
}

// The type the convolution computes in: its activation output's (forward) or the incoming
// gradient's (backward).
static ef_dtype conv_dtype(const ef_tensor *node) { return node->op == EF_OP_CONV2D ? node->dtype : node->src[0]->dtype; }

static cudnnMathType_t wanted_math(const ef_cuda *cu, ef_dtype cdt) {
  if (cdt != EF_F32) return CUDNN_TENSOR_OP_MATH;
  return cu->opts.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; // FMA: no TF32 rounding
}

// Operand slots in ef_cuda_node.off.
enum { OP_X, OP_W, OP_Y };

static size_t bytes_of(int64_t n, ef_dtype dt) { return (size_t)n * ef_dtype_size(dt); }

static const char *dir_name(ef_op op) {
  return op == EF_OP_CONV2D ? "fwd" : op == EF_OP_CONV2D_BWD_DATA ? "bwd-data" : "bwd-filter";
}

// Runs cuDNN's timed search for one direction on real buffers; fills perf, returns the count.
typedef struct {
  int algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
} found_algo;

#define MAX_ALGOS 16

static ef_status find_algos(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, void *x, void *w, void *y, void *ws,
                            size_t ws_bytes, found_algo *out, int *n_out) {
  int n = 0;
  switch (node->op) {
  case EF_OP_CONV2D: {
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
    EF_CUDNN_TRY(cudnnFindConvolutionForwardAlgorithmEx(cu->cudnn, s->xd, x, s->wd, w, s->cd, s->yd, y, MAX_ALGOS, &n, perf,
                                                        ws, ws_bytes),
                 node);
    for (int i = 0; i < n; i++)
      out[i] = (found_algo){(int)perf[i].algo, perf[i].status, perf[i].time, perf[i].memory, perf[i].determinism, perf[i].mathType};
    break;
  }
  case EF_OP_CONV2D_BWD_DATA: {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    EF_CUDNN_TRY(cudnnFindConvolutionBackwardDataAlgorithmEx(cu->cudnn, s->wd, w, s->yd, y, s->cd, s->xd, x, MAX_ALGOS, &n,
                                                             perf, ws, ws_bytes),
                 node);
    for (int i = 0; i < n; i++)
      out[i] = (found_algo){(int)perf[i].algo, perf[i].status, perf[i].time, perf[i].memory, perf[i].determinism, perf[i].mathType};
    break;
  }
  default: {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    EF_CUDNN_TRY(cudnnFindConvolutionBackwardFilterAlgorithmEx(cu->cudnn, s->xd, x, s->yd, y, s->cd, s->wd, w, MAX_ALGOS,
                                                               &n, perf, ws, ws_bytes),
                 node);
    for (int i = 0; i < n; i++)
      out[i] = (found_algo){(int)perf[i].algo, perf[i].status, perf[i].time, perf[i].memory, perf[i].determinism, perf[i].mathType};
    break;
  }
  }
  *n_out = n;
  return EF_OK;
}

// Device memory for the search: the node's own buffer where the operand is used in place, else a
// temporary one of the converted size. Returns NULL (with *tmp NULL) only when out of memory.
static void *search_buffer(void *own, bool converted, size_t bytes, void **tmp) {
  *tmp = NULL;
  if (!converted) return own;
  if (cudaMalloc(tmp, bytes) != cudaSuccess) {
    cudaGetLastError();
    *tmp = NULL;
  }
  return *tmp;
}

// The algorithm for this node's shape: from the cache, or found now (the fastest deterministic one
// that fits the workspace cap and the math wanted; else the fastest that fits).
static ef_status choose_algo(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, const conv_io *io, size_t xbytes,
                             size_t wbytes, ef_cuda_algo *chosen) {
  const ef_conv_params *p = &node->p.conv;
  char key[sizeof chosen->key];
  snprintf(key, sizeof key, "%s %s x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) s%d,%d d%d,%d p%d,%d,%d,%d g%d m%d",
           dir_name(node->op), ef_dtype_name(s->cdt), (long long)io->x->shape[0], (long long)s->ph, (long long)s->pw,
           (long long)io->x->shape[3], (long long)io->w->shape[0], (long long)io->w->shape[1], (long long)io->w->shape[2],
           (long long)io->w->shape[3], p->stride[0], p->stride[1], p->dilation[0], p->dilation[1], s->pad ? 0 : p->pad[0],
           s->pad ? 0 : p->pad[1], s->pad ? 0 : p->pad[2], s->pad ? 0 : p->pad[3], p->groups, (int)wanted_math(cu, s->cdt));
  for (int i = 0; i < cu->n_algos; i++)
    if (!strcmp(cu->algos[i].key, key)) {
      *chosen = cu->algos[i];
      return EF_OK;
    }
  // Buffers: x converted when padded or of another type; w and y likewise.
  void *tx, *tw;
  void *x = search_buffer(io->x->data, s->off[OP_X] != EF_CUDA_NO_SCRATCH, xbytes, &tx);
  void *w = search_buffer(io->w->data, s->off[OP_W] != EF_CUDA_NO_SCRATCH, wbytes, &tw);
  size_t ws_bytes = cu->opts.workspace_mib << 20;
  void *ws = NULL;
  while (ws_bytes && cudaMalloc(&ws, ws_bytes) != cudaSuccess) {
    cudaGetLastError();
    ws = NULL;
    ws_bytes /= 2;
  }
  ef_status st = EF_OK;
  found_algo found[MAX_ALGOS];
  int n = 0;
  if (!x || !w)
    st = EF_ERROR(EF_ERR_NOMEM, "out of GPU memory while choosing the algorithm of convolution '%s'; reduce the batch size",
                  node->name);
  else
    st = find_algos(cu, node, s, x, w, io->y->data, ws, ws_bytes, found, &n);
  if (tx) cudaFree(tx);
  if (tw) cudaFree(tw);
  if (ws) cudaFree(ws);
  EF_TRY(st);
  cudnnMathType_t want = wanted_math(cu, s->cdt);
  int best = -1;
  for (int pass = 0; pass < 2 && best < 0; pass++) // deterministic first
    for (int i = 0; i < n && best < 0; i++) {
      const found_algo *f = &found[i];
      bool math_ok = want != CUDNN_FMA_MATH || f->math == CUDNN_FMA_MATH;
      if (f->status == CUDNN_STATUS_SUCCESS && f->memory <= ws_bytes && math_ok &&
          (pass == 1 || f->determinism == CUDNN_DETERMINISTIC))
        best = i;
    }
  if (best < 0)
    return EF_ERROR(EF_ERR_UNSUPPORTED, "cuDNN has no %s algorithm for convolution '%s' (%s) within %zu MiB of workspace",
                    dir_name(node->op), node->name, ef_dtype_name(s->cdt), ws_bytes >> 20);
  *chosen = (ef_cuda_algo){.algo = found[best].algo, .math = found[best].math, .workspace = found[best].memory,
                           .deterministic = found[best].determinism == CUDNN_DETERMINISTIC};
  snprintf(chosen->key, sizeof chosen->key, "%s", key);
  if (cu->n_algos == cu->cap_algos) {
    cu->cap_algos = cu->cap_algos ? 2 * cu->cap_algos : 64;
    cu->algos = ef_xrealloc(cu->algos, sizeof *cu->algos * (size_t)cu->cap_algos);
  }
  cu->algos[cu->n_algos++] = *chosen;
  return EF_OK;
}

ef_status ef_cuda_conv_prepare(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s) {
  const ef_conv_params *p = &node->p.conv;
  conv_io io = conv_tensors(node);
  const int64_t *xs = io.x->shape, *ws = io.w->shape, *ys = io.y->shape;
  s->cdt = conv_dtype(node);
  s->pad = p->pad[0] != p->pad[1] || p->pad[2] != p->pad[3];
  s->ph = xs[1] + (s->pad ? p->pad[0] + p->pad[1] : 0);
  s->pw = xs[2] + (s->pad ? p->pad[2] + p->pad[3] : 0);
  cudnnDataType_t dt = ef_cudnn_dtype(s->cdt);

  // Scratch: converted operands first, then cuDNN's workspace.
  size_t end = 0, xbytes = bytes_of(xs[0] * s->ph * s->pw * xs[3], s->cdt), wbytes = bytes_of(ef_numel(io.w), s->cdt);
  if (s->pad || io.x->dtype != s->cdt) s->off[OP_X] = ef_cuda_reserve(&end, xbytes);
  if (io.w->dtype != s->cdt) s->off[OP_W] = ef_cuda_reserve(&end, wbytes);
  EF_ASSERT(io.y->dtype == s->cdt, "convolution '%s': its output side is %s, it computes in %s", node->name,
            ef_dtype_name(io.y->dtype), ef_dtype_name(s->cdt));

  EF_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->xd), node);
  EF_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->yd), node);
  EF_CUDNN_TRY(cudnnCreateFilterDescriptor(&s->wd), node);
  EF_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&s->cd), node);
  EF_CUDNN_TRY(cudnnSetTensor4dDescriptor(s->xd, CUDNN_TENSOR_NHWC, dt, (int)xs[0], (int)xs[3], (int)s->ph, (int)s->pw), node);
  EF_CUDNN_TRY(cudnnSetTensor4dDescriptor(s->yd, CUDNN_TENSOR_NHWC, dt, (int)ys[0], (int)ys[3], (int)ys[1], (int)ys[2]), node);
  EF_CUDNN_TRY(cudnnSetFilter4dDescriptor(s->wd, dt, CUDNN_TENSOR_NHWC, (int)ws[0], (int)ws[3], (int)ws[1], (int)ws[2]), node);
  EF_CUDNN_TRY(cudnnSetConvolution2dDescriptor(s->cd, s->pad ? 0 : p->pad[0], s->pad ? 0 : p->pad[2], p->stride[0],
                                               p->stride[1], p->dilation[0], p->dilation[1], CUDNN_CROSS_CORRELATION,
                                               CUDNN_DATA_FLOAT),
               node);
  EF_CUDNN_TRY(cudnnSetConvolutionGroupCount(s->cd, p->groups), node);
  EF_CUDNN_TRY(cudnnSetConvolutionMathType(s->cd, wanted_math(cu, s->cdt)), node);
  int on, oc, oh, ow;
  EF_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->cd, s->xd, s->wd, &on, &oc, &oh, &ow), node);
  EF_ASSERT(on == ys[0] && oc == ys[3] && oh == ys[1] && ow == ys[2],
            "convolution '%s': cuDNN computes an output of (%d,%d,%d,%d), the graph has (%lld,%lld,%lld,%lld)", node->name,
            on, oh, ow, oc, (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3]);

  ef_cuda_algo a;
  EF_TRY(choose_algo(cu, node, s, &io, xbytes, wbytes, &a));
  EF_CUDNN_TRY(cudnnSetConvolutionMathType(s->cd, a.math), node);
  s->algo = a.algo;
  s->ws_off = ef_cuda_reserve(&end, a.workspace);
  s->scratch = end;
  snprintf(s->impl, sizeof s->impl, "cudnn %s algo %d%s%s%s", dir_name(node->op), a.algo,
           a.math == CUDNN_FMA_MATH ? "" : " (tensor ops)", a.deterministic ? "" : " (nondeterministic)",
           s->pad ? " + pad" : "");
  return EF_OK;
}

void ef_cuda_conv_run(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, char *scratch) {
  const ef_conv_params *p = &node->p.conv;
  conv_io io = conv_tensors(node);
  const int64_t *xs = io.x->shape;
  cudaStream_t st = cu->stream;
  void *x = s->off[OP_X] != EF_CUDA_NO_SCRATCH ? scratch + s->off[OP_X] : io.x->data;
  void *w = s->off[OP_W] != EF_CUDA_NO_SCRATCH ? scratch + s->off[OP_W] : io.w->data;
  void *ws = scratch + s->ws_off;
  size_t ws_bytes = s->scratch - s->ws_off;
  ef_dref xc = {x, s->cdt}, wc = {w, s->cdt};
  const float one = 1.0f, zero = 0.0f;
  // Inputs into the compute type (and padding) before; outputs out of it after.
  if (node->op != EF_OP_CONV2D_BWD_DATA && x != io.x->data) {
    if (s->pad) ef_k_pad(xc, ef_cuda_ref(io.x), xs[0], xs[1], xs[2], xs[3], p->pad[0], p->pad[2], s->ph, s->pw, st);
    else ef_k_cast(xc, ef_cuda_ref(io.x), ef_numel(io.x), st);
  }
  if (node->op != EF_OP_CONV2D_BWD_WEIGHT && w != io.w->data) ef_k_cast(wc, ef_cuda_ref(io.w), ef_numel(io.w), st);
  switch (node->op) {
  case EF_OP_CONV2D:
    EF_CUDNN_CHECK(cudnnConvolutionForward(cu->cudnn, &one, s->xd, x, s->wd, w, s->cd, (cudnnConvolutionFwdAlgo_t)s->algo,
                                           ws, ws_bytes, &zero, s->yd, node->data));
    if (node->n_src == 3)
      ef_k_add_bias(ef_cuda_ref(node), ef_cuda_ref(node->src[2]), ef_numel(node) / node->shape[3], node->shape[3], st);
    break;
  case EF_OP_CONV2D_BWD_DATA:
    EF_CUDNN_CHECK(cudnnConvolutionBackwardData(cu->cudnn, &one, s->wd, w, s->yd, io.y->data, s->cd,
                                                (cudnnConvolutionBwdDataAlgo_t)s->algo, ws, ws_bytes, &zero, s->xd, x));
    if (x != node->data) {
      if (s->pad) ef_k_crop(ef_cuda_ref(node), xc, xs[0], xs[1], xs[2], xs[3], p->pad[0], p->pad[2], s->ph, s->pw, st);
      else ef_k_cast(ef_cuda_ref(node), xc, ef_numel(node), st);
    }
    break;
  default:
    EF_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cu->cudnn, &one, s->xd, x, s->yd, io.y->data, s->cd,
                                                  (cudnnConvolutionBwdFilterAlgo_t)s->algo, ws, ws_bytes, &zero, s->wd, w));
    if (w != node->data) ef_k_cast(ef_cuda_ref(node), wc, ef_numel(node), st);
    break;
  }
}
