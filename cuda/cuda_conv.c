// Convolutions on the GPU: cuDNN's convolution API (forward, backward data, backward filter on NHWC
// activations with (O,KH,KW,I/groups) filters, used in place), or for depthwise ones effnet's own
// kernels (cuda/dwconv.cu) where they are faster. The choice per shape is timed once and kept in the
// algorithm cache's file (cuda/algo_cache.h), so every process on a card makes the same one. For
// cuDNN, an operand of another type than the one it computes in is converted in the scratch, and
// asymmetric ("SAME") padding pads the input explicitly; effnet's kernels need neither.
#include <stdio.h>
#include <string.h>

#include "cuda/cuda_internal.h"

// The type the convolution computes in: its activation output's (forward) or the incoming
// gradient's (backward).
static ef_dtype conv_dtype(const ef_tensor *node) {
  return node->op == EF_OP_CONV2D ? node->dtype : node->src[0]->dtype;
}

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

// The alignment of an address, up to 256 bytes.
static unsigned align_of(const void *p) {
  unsigned a = 256;
  while (a > 1 && (uintptr_t)p % a) a /= 2;
  return a;
}

// ---- effnet's depthwise kernels ---------------------------------------------------------------

// Whether effnet's kernels can run the node: a convolution or one of its gradients (CONV2D_BN reaches
// here as a CONV2D), depthwise, with its activations of one type.
static bool own_eligible(const ef_tensor *node) {
  if (node->op == EF_OP_CONV2D_BN || !ef_dw_is_depthwise(node)) return false;
  ef_conv_io io = ef_conv_io_of(node);
  bool bias_f32 = node->op != EF_OP_CONV2D || node->n_src < 3 || node->src[2]->dtype == EF_F32;
  return io.x->dtype == io.y->dtype && bias_f32;
}

// Their scratch: the transposed weights, or the filter gradient's partial sums.
static size_t own_scratch(const ef_tensor *node) {
  ef_dw_shape sh = ef_dw_shape_of(node);
  size_t per = sizeof(float) * (size_t)sh.kh * sh.kw * sh.c;
  return node->op == EF_OP_CONV2D_BWD_WEIGHT ? per * (size_t)ef_dw_wgrad_splits(&sh) : per;
}

static void own_run(ef_cuda *cu, const ef_tensor *node, void *scratch) {
  ef_conv_io io = ef_conv_io_of(node);
  ef_dw_shape sh = ef_dw_shape_of(node);
  cudaStream_t st = cu->stream;
  switch (node->op) {
  case EF_OP_CONV2D:
    ef_k_dw_weights(scratch, ef_cuda_ref(io.w), &sh, st);
    ef_k_dw_forward(ef_cuda_ref(node), ef_cuda_ref(io.x), scratch, node->n_src == 3 ? node->src[2]->data : NULL, &sh,
                    st);
    break;
  case EF_OP_CONV2D_BWD_DATA:
    ef_k_dw_weights(scratch, ef_cuda_ref(io.w), &sh, st);
    ef_k_dw_bwd_data(ef_cuda_ref(node), ef_cuda_ref(io.y), scratch, &sh, st);
    break;
  default: ef_k_dw_bwd_filter(ef_cuda_ref(node), ef_cuda_ref(io.y), ef_cuda_ref(io.x), scratch, &sh, st); break;
  }
}

// The mean milliseconds of effnet's kernels on the node's own buffers (3 runs after one).
static float own_time(ef_cuda *cu, const ef_tensor *node, void *scratch) {
  cudaEvent_t t0, t1;
  EF_CUDA_CHECK(cudaEventCreate(&t0));
  EF_CUDA_CHECK(cudaEventCreate(&t1));
  own_run(cu, node, scratch);
  EF_CUDA_CHECK(cudaEventRecord(t0, cu->stream));
  for (int i = 0; i < 3; i++) own_run(cu, node, scratch);
  EF_CUDA_CHECK(cudaEventRecord(t1, cu->stream));
  EF_CUDA_CHECK(cudaEventSynchronize(t1));
  EF_CUDA_CHECK(cudaGetLastError());
  float ms = 0;
  EF_CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
  EF_CUDA_CHECK(cudaEventDestroy(t0));
  EF_CUDA_CHECK(cudaEventDestroy(t1));
  return ms / 3;
}

// ---- cuDNN's search -----------------------------------------------------------------------------

typedef struct {
  int algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
} found_algo;

#define MAX_ALGOS 16
#define COPY_PERF(perf, n, out)                                                                                        \
  for (int i_ = 0; i_ < (n); i_++) (out)[i_] = (found_algo) {                                                          \
      (int)(perf)[i_].algo, (perf)[i_].status, (perf)[i_].time, (perf)[i_].memory, (perf)[i_].determinism,             \
          (perf)[i_].mathType                                                                                          \
    }

// cuDNN's timed search for the node's direction on real buffers: its results, fastest first.
static cudnnStatus_t find_algos(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, void *x, void *w, void *y,
                                void *ws, size_t ws_bytes, found_algo *out, int *n) {
  cudnnStatus_t st;
  *n = 0;
  if (node->op == EF_OP_CONV2D) {
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
    st = cudnnFindConvolutionForwardAlgorithmEx(cu->cudnn, s->xd, x, s->wd, w, s->cd, s->yd, y, MAX_ALGOS, n, perf, ws,
                                                ws_bytes);
    COPY_PERF(perf, *n, out);
  } else if (node->op == EF_OP_CONV2D_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    st = cudnnFindConvolutionBackwardDataAlgorithmEx(cu->cudnn, s->wd, w, s->yd, y, s->cd, s->xd, x, MAX_ALGOS, n, perf,
                                                     ws, ws_bytes);
    COPY_PERF(perf, *n, out);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    st = cudnnFindConvolutionBackwardFilterAlgorithmEx(cu->cudnn, s->xd, x, s->yd, y, s->cd, s->wd, w, MAX_ALGOS, n,
                                                       perf, ws, ws_bytes);
    COPY_PERF(perf, *n, out);
  }
  return st;
}

// The fastest of cuDNN's results that fits the workspace and the math wanted: deterministic when
// `deterministic`; -1 if none.
static int fastest(const found_algo *f, int n, size_t ws_bytes, cudnnMathType_t want, bool deterministic) {
  for (int i = 0; i < n; i++)
    if (f[i].status == CUDNN_STATUS_SUCCESS && f[i].memory <= ws_bytes &&
        (want != CUDNN_FMA_MATH || f[i].math == want) && (!deterministic || f[i].determinism == CUDNN_DETERMINISTIC))
      return i;
  return -1;
}

// The node's problem as the algorithm cache keys it (after the card and cuDNN's version): direction,
// types, shapes as cuDNN sees them, parameters, math, layout, the operands' alignment, and whether
// effnet's kernels may run it.
static void problem(const ef_cuda *cu, const ef_tensor *node, const ef_cuda_node *s, bool own, char *desc, size_t len) {
  const ef_conv_params *p = &node->p.conv;
  ef_conv_io io = ef_conv_io_of(node);
  const int64_t *xs = io.x->shape, *ws = io.w->shape, *ys = io.y->shape;
  unsigned a = align_of(io.x->data), aw = align_of(io.w->data), ay = align_of(io.y->data);
  a = aw < a ? aw : a, a = ay < a ? ay : a;
  int pad[4];
  for (int i = 0; i < 4; i++) pad[i] = s->pad ? 0 : p->pad[i];
  snprintf(
      desc, len,
      "%s %s x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) y(%lld,%lld,%lld,%lld) s%d,%d d%d,%d p%d,%d,%d,%d g%d m%d "
      "nhwc a%u%s",
      dir_name(node->op), ef_dtype_name(s->cdt), (long long)xs[0], (long long)s->ph, (long long)s->pw, (long long)xs[3],
      (long long)ws[0], (long long)ws[1], (long long)ws[2], (long long)ws[3], (long long)ys[0], (long long)ys[1],
      (long long)ys[2], (long long)ys[3], p->stride[0], p->stride[1], p->dilation[0], p->dilation[1], pad[0], pad[1],
      pad[2], pad[3], p->groups, (int)wanted_math(cu, s->cdt), a, own ? " own" : "");
}

// Times the candidates (cuDNN's, and effnet's kernels where eligible) on the node's buffers, in the
// backend's search space, and returns the fastest deterministic one (a nondeterministic one only
// when there is no other). *log gets the runner-up for the log line.
static ef_status search(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, bool own, size_t xbytes, size_t wbytes,
                        ef_algo_entry *best, char *log, size_t len) {
  ef_conv_io io = ef_conv_io_of(node);
  bool tx = s->off[OP_X] != EF_CUDA_NO_SCRATCH, tw = s->off[OP_W] != EF_CUDA_NO_SCRATCH;
  size_t front = ef_cuda_align(tx ? xbytes : 0) + ef_cuda_align(tw ? wbytes : 0);
  size_t ws_bytes = cu->opts.workspace_mib << 20;
  char *space = NULL;
  while (!(space = ef_cuda_search_space(cu, front + ws_bytes)) && ws_bytes) ws_bytes /= 2;
  if (!space)
    return EF_ERROR(EF_ERR_NOMEM,
                    "out of GPU memory while choosing the algorithm of convolution '%s'; reduce the batch size",
                    node->name);
  void *x = tx ? space : io.x->data, *w = tw ? space + ef_cuda_align(tx ? xbytes : 0) : io.w->data;
  found_algo found[MAX_ALGOS];
  int n = 0;
  cudnnStatus_t st = find_algos(cu, node, s, x, w, io.y->data, space + front, ws_bytes, found, &n);
  if (st != CUDNN_STATUS_SUCCESS && !own) // effnet's kernels stand in for a refusal on depthwise shapes
    return EF_ERROR(st == CUDNN_STATUS_ALLOC_FAILED ? EF_ERR_NOMEM : EF_ERR_UNSUPPORTED,
                    "cuDNN's search for convolution '%s' (%s %s) failed: %s", node->name, dir_name(node->op),
                    ef_dtype_name(s->cdt), cudnnGetErrorString(st));
  cudnnMathType_t want = wanted_math(cu, s->cdt);
  int det = fastest(found, n, ws_bytes, want, true), any = fastest(found, n, ws_bytes, want, false);
  float own_ms = own ? own_time(cu, node, ef_cuda_search_space(cu, own_scratch(node))) : -1;
  int pick = det >= 0 ? det : any;
  if (own && (pick < 0 || det < 0 || own_ms < found[det].time)) {
    *best = (ef_algo_entry){.algo = EF_ALGO_EFFNET,
                            .math = CUDNN_FMA_MATH,
                            .workspace = own_scratch(node),
                            .deterministic = true,
                            .ms = own_ms};
    if (pick >= 0) snprintf(log, len, "; cuDNN algo %d: %.3f ms", found[pick].algo, found[pick].time);
    else snprintf(log, len, "; cuDNN: %s", st == CUDNN_STATUS_SUCCESS ? "no algorithm" : cudnnGetErrorString(st));
    return EF_OK;
  }
  if (pick < 0)
    return EF_ERROR(EF_ERR_UNSUPPORTED,
                    "cuDNN has no %s algorithm for convolution '%s' (%s) within %zu MiB of workspace",
                    dir_name(node->op), node->name, ef_dtype_name(s->cdt), ws_bytes >> 20);
  *best = (ef_algo_entry){.algo = found[pick].algo,
                          .math = found[pick].math,
                          .workspace = found[pick].memory,
                          .deterministic = found[pick].determinism == CUDNN_DETERMINISTIC,
                          .ms = found[pick].time};
  int next = -1;
  for (int i = 0; i < n && next < 0; i++)
    if (i != pick && found[i].status == CUDNN_STATUS_SUCCESS) next = i;
  if (own) snprintf(log, len, "; effnet: %.3f ms", own_ms);
  else if (next >= 0) snprintf(log, len, "; next: algo %d, %.3f ms", found[next].algo, found[next].time);
  return EF_OK;
}

// The node's algorithm: from the cache (this process's, or the file's), or searched now and
// recorded. Each choice is logged once per process.
static ef_status choose_algo(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, bool own, size_t xbytes,
                             size_t wbytes, ef_algo_entry **chosen) {
  char desc[200], key[EF_ALGO_KEY_LEN], log[128] = "";
  problem(cu, node, s, own, desc, sizeof desc);
  snprintf(key, sizeof key, "%s|cudnn %zu|%s", cu->card, cudnnGetVersion(), desc);
  ef_algo_entry *e = ef_algo_cache_find(&cu->algos, key);
  const char *how = "cached";
  if (!e) {
    ef_algo_entry found;
    EF_TRY(search(cu, node, s, own, xbytes, wbytes, &found, log, sizeof log));
    snprintf(found.key, sizeof found.key, "%s", key);
    e = ef_algo_cache_put(&cu->algos, &found);
    how = "timed";
  }
  if (!e->logged) {
    char what[96];
    if (e->algo == EF_ALGO_EFFNET) snprintf(what, sizeof what, "effnet depthwise");
    else snprintf(what, sizeof what, "cuDNN algo %d%s", e->algo, e->math == CUDNN_FMA_MATH ? "" : " (tensor ops)");
    fprintf(stderr, "effnet: conv %s: %s, %.3f ms (%s%s%s)\n", desc, what, e->ms, how,
            e->deterministic ? "" : ", nondeterministic", log);
    e->logged = true;
  }
  *chosen = e;
  return EF_OK;
}

// ---- preparing and running --------------------------------------------------------------------

static ef_status describe_to_cudnn(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s) {
  const ef_conv_params *p = &node->p.conv;
  ef_conv_io io = ef_conv_io_of(node);
  const int64_t *xs = io.x->shape, *ws = io.w->shape, *ys = io.y->shape;
  cudnnDataType_t dt = ef_cudnn_dtype(s->cdt);
  EF_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->xd), node);
  EF_CUDNN_TRY(cudnnCreateTensorDescriptor(&s->yd), node);
  EF_CUDNN_TRY(cudnnCreateFilterDescriptor(&s->wd), node);
  EF_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&s->cd), node);
  EF_CUDNN_TRY(cudnnSetTensor4dDescriptor(s->xd, CUDNN_TENSOR_NHWC, dt, (int)xs[0], (int)xs[3], (int)s->ph, (int)s->pw),
               node);
  EF_CUDNN_TRY(cudnnSetTensor4dDescriptor(s->yd, CUDNN_TENSOR_NHWC, dt, (int)ys[0], (int)ys[3], (int)ys[1], (int)ys[2]),
               node);
  EF_CUDNN_TRY(cudnnSetFilter4dDescriptor(s->wd, dt, CUDNN_TENSOR_NHWC, (int)ws[0], (int)ws[3], (int)ws[1], (int)ws[2]),
               node);
  EF_CUDNN_TRY(cudnnSetConvolution2dDescriptor(s->cd, s->pad ? 0 : p->pad[0], s->pad ? 0 : p->pad[2], p->stride[0],
                                               p->stride[1], p->dilation[0], p->dilation[1], CUDNN_CROSS_CORRELATION,
                                               CUDNN_DATA_FLOAT),
               node);
  EF_CUDNN_TRY(cudnnSetConvolutionGroupCount(s->cd, p->groups), node);
  EF_CUDNN_TRY(cudnnSetConvolutionMathType(s->cd, wanted_math(cu, s->cdt)), node);
  int on, oc, oh, ow;
  EF_CUDNN_TRY(cudnnGetConvolution2dForwardOutputDim(s->cd, s->xd, s->wd, &on, &oc, &oh, &ow), node);
  EF_ASSERT(on == ys[0] && oc == ys[3] && oh == ys[1] && ow == ys[2],
            "convolution '%s': cuDNN computes an output of (%d,%d,%d,%d), the graph has (%lld,%lld,%lld,%lld)",
            node->name, on, oh, ow, oc, (long long)ys[0], (long long)ys[1], (long long)ys[2], (long long)ys[3]);
  return EF_OK;
}

ef_status ef_cuda_conv_prepare(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s) {
  const ef_conv_params *p = &node->p.conv;
  ef_conv_io io = ef_conv_io_of(node);
  const int64_t *xs = io.x->shape;
  s->cdt = conv_dtype(node);
  s->pad = p->pad[0] != p->pad[1] || p->pad[2] != p->pad[3];
  s->ph = xs[1] + (s->pad ? p->pad[0] + p->pad[1] : 0);
  s->pw = xs[2] + (s->pad ? p->pad[2] + p->pad[3] : 0);
  EF_ASSERT(io.y->dtype == s->cdt, "convolution '%s': its output side is %s, it computes in %s", node->name,
            ef_dtype_name(io.y->dtype), ef_dtype_name(s->cdt));
  // cuDNN's scratch: converted operands first, then its workspace.
  size_t end = 0, xbytes = bytes_of(xs[0] * s->ph * s->pw * xs[3], s->cdt), wbytes = bytes_of(ef_numel(io.w), s->cdt);
  if (s->pad || io.x->dtype != s->cdt) s->off[OP_X] = ef_cuda_reserve(&end, xbytes);
  if (io.w->dtype != s->cdt) s->off[OP_W] = ef_cuda_reserve(&end, wbytes);
  EF_TRY(describe_to_cudnn(cu, node, s));

  bool own = own_eligible(node) && cu->opts.depthwise != EF_CUDA_DW_CUDNN;
  ef_algo_entry *a = NULL;
  if (!own || cu->opts.depthwise != EF_CUDA_DW_EFFNET) EF_TRY(choose_algo(cu, node, s, own, xbytes, wbytes, &a));
  if (!a || a->algo == EF_ALGO_EFFNET) {
    s->own = true;
    s->off[OP_X] = s->off[OP_W] = EF_CUDA_NO_SCRATCH;
    s->ws_off = 0;
    s->scratch = own_scratch(node);
    snprintf(s->impl, sizeof s->impl, "effnet depthwise %s", dir_name(node->op));
    return EF_OK;
  }
  EF_CUDNN_TRY(cudnnSetConvolutionMathType(s->cd, (cudnnMathType_t)a->math), node);
  s->algo = a->algo;
  s->ws_off = ef_cuda_reserve(&end, a->workspace);
  s->scratch = end;
  snprintf(s->impl, sizeof s->impl, "cudnn %s algo %d%s%s%s", dir_name(node->op), a->algo,
           a->math == CUDNN_FMA_MATH ? "" : " (tensor ops)", a->deterministic ? "" : " (nondeterministic)",
           s->pad ? " + pad" : "");
  return EF_OK;
}

void ef_cuda_conv_run(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, char *scratch) {
  if (s->own) {
    own_run(cu, node, scratch);
    return;
  }
  const ef_conv_params *p = &node->p.conv;
  ef_conv_io io = ef_conv_io_of(node);
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
    EF_CUDNN_CHECK(cudnnConvolutionForward(cu->cudnn, &one, s->xd, x, s->wd, w, s->cd,
                                           (cudnnConvolutionFwdAlgo_t)s->algo, ws, ws_bytes, &zero, s->yd, node->data));
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
                                                  (cudnnConvolutionBwdFilterAlgo_t)s->algo, ws, ws_bytes, &zero, s->wd,
                                                  w));
    if (w != node->data) ef_k_cast(ef_cuda_ref(node), wc, ef_numel(node), st);
    break;
  }
}
