// The CUDA backend's interface: device start-up, memory (cudaMalloc only, tracked for the peak),
// transfers on the backend's stream, per-node preparation and dispatch to cuDNN, cuBLAS or the
// kernels in kernels.cu, graph capture and replay, and the checks after each node.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/store.h"
#include "cuda/cuda_internal.h"

#define F(t) ((float *)(t)->data)

cudnnDataType_t ef_cudnn_dtype(ef_dtype dt) {
  switch (dt) {
  case EF_BF16: return CUDNN_DATA_BFLOAT16;
  case EF_F16: return CUDNN_DATA_HALF;
  case EF_F32: return CUDNN_DATA_FLOAT;
  default: EF_FATAL("no cuDNN type for %s", ef_dtype_name(dt));
  }
}

int ef_cuda_device_count(char *why, size_t len) {
  int n = 0;
  cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    snprintf(why, len, "no usable CUDA device: %s (%s)", cudaGetErrorName(st), cudaGetErrorString(st));
    return 0;
  }
  if (n == 0) snprintf(why, len, "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
  return n;
}

// ---- the kernels' dispatch ------------------------------------------------------------------------

static bool cuda_supports_op(const ef_backend *be, const ef_tensor *node) {
  (void)be;
  for (int i = 0; i < node->n_src; i++)
    if (node->src[i]->dtype == EF_I32 && !(node->op == EF_OP_SOFTMAX_CE && i == 1) &&
        !(node->op == EF_OP_SOFTMAX_CE_BWD && i == 2))
      return false;
  if (node->dtype == EF_I32) return false;
  // Statistics, their updates and group means stay f32 (their precision class in the op table).
  if (ef_op_get(node->op)->precision == EF_PREC_F32 && node->dtype != EF_F32) return false;
  switch (node->op) {
  case EF_OP_BN: return node->src[1]->dtype == EF_F32 && node->src[2]->dtype == EF_F32;        // stats, affine
  case EF_OP_CONV2D_BN: return node->src[2]->dtype == EF_F32 && node->src[3]->dtype == EF_F32; // the gate: any
  case EF_OP_BN_BWD_DATA: return node->src[2]->dtype == EF_F32 && node->src[3]->dtype == EF_F32;
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BWD_DATA:
  case EF_OP_CONV2D_BWD_WEIGHT:
  case EF_OP_BN_STATS:
  case EF_OP_BN_BWD_REDUCE:
  case EF_OP_BN_UPDATE:
  case EF_OP_SYNC_STATS:
  case EF_OP_SYNC_MEAN:
  case EF_OP_ACT:
  case EF_OP_ACT_BWD:
  case EF_OP_ADD:
  case EF_OP_CHANNEL_MUL:
  case EF_OP_CHANNEL_MUL_BWD_S:
  case EF_OP_GAP:
  case EF_OP_GAP_BWD:
  case EF_OP_LINEAR:
  case EF_OP_LINEAR_BWD_DATA:
  case EF_OP_LINEAR_BWD_WEIGHT:
  case EF_OP_SUM_ROWS:
  case EF_OP_DROPOUT:
  case EF_OP_SOFTMAX_CE:
  case EF_OP_SOFTMAX_CE_BWD:
  case EF_OP_REDUCE:
  case EF_OP_BROADCAST:
  case EF_OP_FILL:
  case EF_OP_RESHAPE:
  case EF_OP_ACCUM: return true;
  case EF_OP_EXPAND_DW: // the CPU's fusion (eval_fusions): CUDA's graphs keep the two conv2d_bn
  case EF_OP_LEAF:
  case EF_OP_COUNT: break;
  }
  return false;
}

static ef_status cuda_prepare(ef_backend *be, const ef_tensor *node, void **state, size_t *scratch) {
  ef_cuda *cu = be->impl;
  ef_cuda_node *s = ef_xcalloc(1, sizeof *s);
  *state = s; // the plan owns it from here, failures included
  for (int i = 0; i < 4; i++) s->off[i] = EF_CUDA_NO_SCRATCH;
  size_t end = 0;
  const ef_tensor *x = node->n_src ? node->src[0] : NULL;
  switch (node->op) {
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BWD_DATA:
  case EF_OP_CONV2D_BWD_WEIGHT: // these lay out their own scratch
    EF_TRY(ef_cuda_conv_prepare(cu, node, s));
    *scratch = s->scratch;
    return EF_OK;
  case EF_OP_CONV2D_BN: { // the convolution (as a CONV2D node of its own), then the batch norm in place
    s->conv = ef_xmalloc(sizeof *s->conv);
    *s->conv = *node;
    s->conv->op = EF_OP_CONV2D, s->conv->n_src = 2;
    if (node->n_src == 5) { // gated: the convolution reads x * gate from the scratch (x's own bytes until then)
      s->gated_x = ef_xmalloc(sizeof *s->gated_x);
      *s->gated_x = *x;
      s->conv->src[0] = s->gated_x;
    }
    EF_TRY(ef_cuda_conv_prepare(cu, s->conv, s));
    end = s->scratch;
    if (s->gated_x) s->gate_off = ef_cuda_reserve(&end, ef_nbytes(x));
    s->off[3] = ef_cuda_reserve(&end, 5 * sizeof(float) * (size_t)node->shape[3]);
    *scratch = end;
    return EF_OK;
  }
  case EF_OP_LINEAR:
  case EF_OP_LINEAR_BWD_DATA:
  case EF_OP_LINEAR_BWD_WEIGHT:
    EF_TRY(ef_cuda_linear_prepare(cu, node, s));
    *scratch = s->scratch;
    return EF_OK;
  case EF_OP_BN_STATS: s->ws_off = ef_cuda_reserve(&end, ef_k_reduce_scratch(1, ef_rows(x), ef_cols(x))); break;
  case EF_OP_BN:
  case EF_OP_BN_BWD_DATA: // coefficients (5,C)
    s->off[0] = ef_cuda_reserve(&end, 5 * sizeof(float) * (size_t)ef_cols(node->src[node->op == EF_OP_BN ? 0 : 1]));
    break;
  case EF_OP_BN_BWD_REDUCE: {
    const ef_tensor *xt = node->src[1];
    s->off[0] = ef_cuda_reserve(&end, 5 * sizeof(float) * (size_t)ef_cols(xt));
    s->ws_off = ef_cuda_reserve(&end, ef_k_reduce_scratch(1, ef_rows(xt), ef_cols(xt)));
    break;
  }
  case EF_OP_SUM_ROWS: s->ws_off = ef_cuda_reserve(&end, ef_k_reduce_scratch(1, ef_rows(x), ef_cols(x))); break;
  case EF_OP_GAP:
  case EF_OP_CHANNEL_MUL_BWD_S:
    s->ws_off = ef_cuda_reserve(&end, ef_k_reduce_scratch(x->shape[0], x->shape[1] * x->shape[2], x->shape[3]));
    break;
  case EF_OP_SOFTMAX_CE: s->ws_off = ef_cuda_reserve(&end, sizeof(double) * (size_t)x->shape[0]); break;
  case EF_OP_REDUCE: s->ws_off = ef_cuda_reserve(&end, ef_k_total_scratch(ef_numel(x))); break;
  case EF_OP_SYNC_STATS:
  case EF_OP_SYNC_MEAN: s->host = ef_xmalloc(2 * ef_nbytes(node)); break;
  case EF_OP_BN_UPDATE:
  case EF_OP_ACT:
  case EF_OP_ACT_BWD:
  case EF_OP_ADD:
  case EF_OP_CHANNEL_MUL:
  case EF_OP_GAP_BWD:
  case EF_OP_DROPOUT:
  case EF_OP_SOFTMAX_CE_BWD:
  case EF_OP_BROADCAST:
  case EF_OP_FILL:
  case EF_OP_RESHAPE:
  case EF_OP_ACCUM:
  case EF_OP_EXPAND_DW: // not supported (cuda_supports_op)
  case EF_OP_LEAF:
  case EF_OP_COUNT: // no scratch
    break;
  }
  *scratch = s->scratch = end;
  snprintf(s->impl, sizeof s->impl, "cuda");
  return EF_OK;
}

static void cuda_release(ef_backend *be, void *state) {
  (void)be;
  ef_cuda_node *s = state;
  if (!s) return;
  if (s->xd) cudnnDestroyTensorDescriptor(s->xd);
  if (s->yd) cudnnDestroyTensorDescriptor(s->yd);
  if (s->wd) cudnnDestroyFilterDescriptor(s->wd);
  if (s->cd) cudnnDestroyConvolutionDescriptor(s->cd);
  free(s->host);
  free(s->conv);
  free(s->gated_x);
  free(s);
}

static const char *cuda_describe_node(const ef_backend *be, const void *state) {
  (void)be;
  return state ? ((const ef_cuda_node *)state)->impl : NULL;
}

// SyncBN: the node's (C) or (2,C) floats averaged over the group through ctx->group_mean. NCCL's
// groups work on device buffers, in stream order (capturable); MPI's on host buffers, so the data
// goes down and up again (not capturable: runs with it stay eager).
static void sync_node(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, const ef_run_ctx *ctx) {
  EF_ASSERT(ctx->group_mean, "node '%s' needs a communicator (ef_run_ctx.group_mean)", node->name);
  size_t n = (size_t)ef_numel(node), c = (size_t)node->shape[node->ndim - 1];
  const float *own = node->src[0]->data;
  float *out = node->data;
  if (ctx->group_device) {
    EF_CUDA_CHECK(cudaMemcpyAsync(out, own, sizeof(float) * (node->op == EF_OP_SYNC_MEAN ? n : c),
                                  cudaMemcpyDeviceToDevice, cu->stream));
    if (node->op == EF_OP_SYNC_MEAN) {
      ctx->group_mean(ctx->group, out, n);
      return;
    }
    ctx->group_mean(ctx->group, out, c); // as ef_sync_stats_combine
    ef_k_sync_var_term(out + c, own, out, (int64_t)c, cu->stream);
    ctx->group_mean(ctx->group, out + c, c);
    return;
  }
  float *h_own = s->host, *h_out = s->host + n;
  EF_CUDA_CHECK(cudaMemcpyAsync(h_own, own, ef_nbytes(node), cudaMemcpyDeviceToHost, cu->stream));
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  if (node->op == EF_OP_SYNC_MEAN) {
    memcpy(h_out, h_own, ef_nbytes(node));
    ctx->group_mean(ctx->group, h_out, n);
  } else {
    ef_sync_stats_combine(ctx->group_mean, ctx->group, h_own, h_out, c);
  }
  EF_CUDA_CHECK(cudaMemcpyAsync(out, h_out, ef_nbytes(node), cudaMemcpyHostToDevice, cu->stream));
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
}

static void check_error_word(ef_cuda *cu) {
  int err = 0;
  EF_CUDA_CHECK(cudaMemcpyAsync(&err, cu->d_error, sizeof err, cudaMemcpyDeviceToHost, cu->stream));
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  if (err == EF_CUDA_ERR_LABEL)
    EF_FATAL("a label outside [0, classes) reached the loss on the GPU: labels must be class indices below the model's "
             "class count (validate them when loading the data)");
  EF_ASSERT(err == EF_CUDA_ERR_NONE, "unknown device error word %d", err);
}

static void cuda_compute(ef_backend *be, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  ef_cuda *cu = be->impl;
  ef_cuda_node *s = state;
  cudaStream_t st = cu->stream;
  char *sc = scratch;
  const ef_tensor *a = node->n_src > 0 ? node->src[0] : NULL, *b = node->n_src > 1 ? node->src[1] : NULL;
  ef_dref y = ef_cuda_ref(node);
  int64_t n = ef_numel(node);
  switch (node->op) {
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BWD_DATA:
  case EF_OP_CONV2D_BWD_WEIGHT: ef_cuda_conv_run(cu, node, s, sc); break;
  case EF_OP_CONV2D_BN: {
    if (s->gated_x) {
      s->gated_x->data = sc + s->gate_off;
      ef_k_channel_mul(ef_cuda_ref(s->gated_x), ef_cuda_ref(a), ef_cuda_ref(node->src[4]), (ef_dref){0}, a->shape[0],
                       a->shape[1] * a->shape[2], a->shape[3], st);
    }
    ef_cuda_conv_run(cu, s->conv, s, sc);
    float *coef = (float *)(sc + s->off[3]);
    ef_k_bn_coeffs(coef, F(node->src[2]), F(node->src[3]), NULL, 0, node->p.conv.bn_eps, node->shape[3], st);
    ef_k_bn(y, y, coef, node->p.conv.act, ef_rows(node), node->shape[3], st);
    break;
  }
  case EF_OP_LINEAR:
  case EF_OP_LINEAR_BWD_DATA:
  case EF_OP_LINEAR_BWD_WEIGHT: ef_cuda_linear_run(cu, node, s, sc); break;
  case EF_OP_BN_STATS: {
    ef_red_args r = {.kind = EF_RED_STATS, .groups = 1, .rows = ef_rows(a), .c = ef_cols(a), .x = ef_cuda_ref(a)};
    ef_k_reduce(y, &r, sc + s->ws_off, st);
    break;
  }
  case EF_OP_BN: {
    float *coef = (float *)(sc + s->off[0]);
    ef_k_bn_coeffs(coef, F(node->src[1]), F(node->src[2]), NULL, 0, node->p.bn.eps, ef_cols(a), st);
    ef_k_bn(y, ef_cuda_ref(a), coef, node->p.bn.act, ef_rows(a), ef_cols(a), st);
    break;
  }
  case EF_OP_BN_BWD_REDUCE: {
    float *coef = (float *)(sc + s->off[0]);
    ef_k_bn_coeffs(coef, F(node->src[2]), F(node->src[3]), NULL, 0, node->p.bn.eps, ef_cols(b), st);
    ef_red_args r = {.kind = EF_RED_BN_BWD,
                     .groups = 1,
                     .rows = ef_rows(b),
                     .c = ef_cols(b),
                     .x = ef_cuda_ref(b),
                     .y = ef_cuda_ref(a),
                     .coef = coef,
                     .mean = F(node->src[2]),
                     .act = node->p.bn.act};
    ef_k_reduce(y, &r, sc + s->ws_off, st);
    break;
  }
  case EF_OP_BN_BWD_DATA: {
    float *coef = (float *)(sc + s->off[0]);
    const float *red = node->n_src == 5 ? F(node->src[4]) : NULL;
    ef_k_bn_coeffs(coef, F(node->src[2]), F(node->src[3]), red, ef_rows(b), node->p.bn.eps, ef_cols(b), st);
    ef_k_bn_bwd_data(y, ef_cuda_ref(a), ef_cuda_ref(b), coef, F(node->src[2]), node->p.bn.act, ef_rows(b), ef_cols(b),
                     st);
    break;
  }
  case EF_OP_BN_UPDATE:
    ef_k_bn_update(F(node), F(b), node->p.bn_update.momentum, ef_bn_update_bessel(node), b->shape[1], st);
    break;
  case EF_OP_SYNC_STATS:
  case EF_OP_SYNC_MEAN: sync_node(cu, node, s, ctx); break;
  case EF_OP_ACT: ef_k_act(y, ef_cuda_ref(a), node->p.act.act, n, st); break;
  case EF_OP_ACT_BWD: ef_k_act_bwd(y, ef_cuda_ref(a), ef_cuda_ref(b), node->p.act.act, n, st); break;
  case EF_OP_ADD: ef_k_add(y, ef_cuda_ref(a), ef_cuda_ref(b), n, st); break;
  case EF_OP_CHANNEL_MUL:
    ef_k_channel_mul(y, ef_cuda_ref(a), ef_cuda_ref(b), node->n_src == 3 ? ef_cuda_ref(node->src[2]) : (ef_dref){0},
                     node->shape[0], node->shape[1] * node->shape[2], node->shape[3], st);
    break;
  case EF_OP_CHANNEL_MUL_BWD_S: {
    ef_red_args r = {.kind = EF_RED_DOT,
                     .groups = a->shape[0],
                     .rows = a->shape[1] * a->shape[2],
                     .c = a->shape[3],
                     .x = ef_cuda_ref(a),
                     .y = ef_cuda_ref(b),
                     .scale = 1.0};
    ef_k_reduce(y, &r, sc + s->ws_off, st);
    break;
  }
  case EF_OP_GAP: {
    int64_t hw = a->shape[1] * a->shape[2];
    ef_red_args r = {.kind = EF_RED_SUM,
                     .groups = a->shape[0],
                     .rows = hw,
                     .c = a->shape[3],
                     .x = ef_cuda_ref(a),
                     .scale = 1.0 / (double)hw};
    ef_k_reduce(y, &r, sc + s->ws_off, st);
    break;
  }
  case EF_OP_GAP_BWD: {
    int64_t hw = node->shape[1] * node->shape[2];
    ef_k_spread(y, ef_cuda_ref(a), (float)(1.0 / (double)hw), node->shape[0], hw, node->shape[3], st);
    break;
  }
  case EF_OP_SUM_ROWS: {
    ef_red_args r = {
        .kind = EF_RED_SUM, .groups = 1, .rows = ef_rows(a), .c = ef_cols(a), .x = ef_cuda_ref(a), .scale = 1.0};
    ef_k_reduce(y, &r, sc + s->ws_off, st);
    break;
  }
  case EF_OP_DROPOUT: {
    const ef_dropout_params *p = &node->p.dropout;
    ef_k_dropout(y, ef_cuda_ref(a), p->rate, p->per_sample, n / node->shape[0], p->seed, p->stream, cu->d_step, n, st);
    break;
  }
  case EF_OP_SOFTMAX_CE:
    ef_k_softmax_ce(y, ef_cuda_ref(a), b->dtype == EF_I32 ? b->data : NULL, b->dtype == EF_F32 ? b->data : NULL,
                    node->p.ce.smoothing, a->shape[0], a->shape[1], sc + s->ws_off, cu->d_error, st);
    break;
  case EF_OP_SOFTMAX_CE_BWD: {
    const ef_tensor *t = node->src[2];
    ef_k_softmax_ce_bwd(y, ef_cuda_ref(a), ef_cuda_ref(b), t->dtype == EF_I32 ? t->data : NULL,
                        t->dtype == EF_F32 ? t->data : NULL, node->p.ce.smoothing, b->shape[0], b->shape[1],
                        cu->d_error, st);
    break;
  }
  case EF_OP_REDUCE: ef_k_total(y, ef_cuda_ref(a), node->p.value.value, ef_numel(a), sc + s->ws_off, st); break;
  case EF_OP_BROADCAST: ef_k_broadcast(y, ef_cuda_ref(a), node->p.value.value, n, st); break;
  case EF_OP_FILL: ef_k_fill(y, node->p.value.value, n, st); break;
  case EF_OP_ACCUM: ef_k_accum(y, ef_cuda_ref(b), n, st); break;
  case EF_OP_EXPAND_DW: // not supported (cuda_supports_op)
  case EF_OP_LEAF:
  case EF_OP_RESHAPE:
  case EF_OP_COUNT: EF_FATAL("op %s is not computed", ef_op_name(node->op));
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    EF_FATAL("CUDA kernel launch for op %s (node '%s') failed: %s (%s)", ef_op_name(node->op), node->name,
             cudaGetErrorName(err), cudaGetErrorString(err));
  if (cu->opts.debug_sync && !cu->capturing) {
    err = cudaStreamSynchronize(st);
    if (err != cudaSuccess)
      EF_FATAL("op %s (node '%s') failed on the GPU: %s (%s)", ef_op_name(node->op), node->name, cudaGetErrorName(err),
               cudaGetErrorString(err));
    check_error_word(cu);
  }
}

// ---- memory and transfers -------------------------------------------------------------------------

static void track_peak(ef_cuda *cu) {
  if (cu->live <= cu->peak) return;
  cu->peak = cu->live;
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) == cudaSuccess) cu->peak_device = total - free_b;
}

static void *cuda_alloc(ef_backend *be, size_t bytes) {
  ef_cuda *cu = be->impl;
  void *p = NULL;
  cudaError_t st = cudaMalloc(&p, bytes ? bytes : 1);
  if (st == cudaErrorMemoryAllocation) {
    cudaGetLastError(); // clear it: running out is the caller's to report
    return NULL;
  }
  EF_CUDA_CHECK(st);
  if (cu->n_allocs == cu->cap_allocs) {
    cu->cap_allocs = cu->cap_allocs ? 2 * cu->cap_allocs : 16;
    cu->allocs = ef_xrealloc(cu->allocs, sizeof *cu->allocs * (size_t)cu->cap_allocs);
  }
  cu->allocs[cu->n_allocs++] = (ef_cuda_alloc){p, bytes};
  cu->live += bytes;
  track_peak(cu);
  return p;
}

static void cuda_free(ef_backend *be, void *p) {
  ef_cuda *cu = be->impl;
  for (int i = 0; i < cu->n_allocs; i++)
    if (cu->allocs[i].p == p) {
      cu->live -= cu->allocs[i].bytes;
      cu->allocs[i] = cu->allocs[--cu->n_allocs];
      EF_CUDA_CHECK(cudaFree(p));
      return;
    }
  EF_FATAL("freeing %p, which the CUDA backend did not allocate", p);
}

static void cuda_upload(ef_backend *be, void *dst, const void *host, size_t bytes) {
  ef_cuda *cu = be->impl;
  EF_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, cu->stream));
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
}

static void cuda_download(ef_backend *be, void *host, const void *src, size_t bytes) {
  ef_cuda *cu = be->impl;
  EF_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, cu->stream));
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  check_error_word(cu);
}

static void cuda_memset(ef_backend *be, void *dst, int byte, size_t bytes) {
  ef_cuda *cu = be->impl;
  EF_CUDA_CHECK(cudaMemsetAsync(dst, byte, bytes, cu->stream));
}

static void cuda_synchronize(ef_backend *be) {
  ef_cuda *cu = be->impl;
  EF_CUDA_CHECK(cudaStreamSynchronize(cu->stream));
  check_error_word(cu);
}

// ---- runs and graphs ------------------------------------------------------------------------------

// The step reaches the dropout kernels through device memory, written by a kernel launched with
// the value: ordered on the stream before the run, and never inside a captured graph (where the
// value would be frozen): ef_capture_run writes it before each replay.
static void cuda_begin_run(ef_backend *be, const ef_run_ctx *ctx) {
  ef_cuda *cu = be->impl;
  if (cu->capturing) return;
  ef_k_set_u32(cu->d_step, ctx->step, cu->stream);
  EF_CUDA_CHECK(cudaGetLastError());
}

// Planning is over once a run is captured: the search space goes (a free synchronizes, which a
// capture must not contain).
static void release_search_space(ef_cuda *cu) {
  if (cu->search) EF_CUDA_CHECK(cudaFree(cu->search));
  cu->search = NULL, cu->search_bytes = 0;
}

char *ef_cuda_search_space(ef_cuda *cu, size_t bytes) {
  if (bytes <= cu->search_bytes) return cu->search;
  release_search_space(cu);
  if (cudaMalloc((void **)&cu->search, bytes) != cudaSuccess) {
    cudaGetLastError(); // clear it: the caller asks for less or reports
    cu->search = NULL;
    return NULL;
  }
  cu->search_bytes = bytes;
  return cu->search;
}

static void cuda_capture_begin(ef_backend *be) {
  ef_cuda *cu = be->impl;
  EF_ASSERT(!cu->capturing, "a capture inside a capture");
  release_search_space(cu);
  EF_CUDA_CHECK(cudaStreamBeginCapture(cu->stream, cudaStreamCaptureModeThreadLocal));
  cu->capturing = true;
}

static void *cuda_capture_end(ef_backend *be) {
  ef_cuda *cu = be->impl;
  cudaGraph_t graph;
  cu->capturing = false;
  EF_CUDA_CHECK(cudaStreamEndCapture(cu->stream, &graph));
  cudaGraphExec_t exec;
  EF_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  EF_CUDA_CHECK(cudaGraphDestroy(graph));
  return exec;
}

static void cuda_replay(ef_backend *be, void *graph) {
  ef_cuda *cu = be->impl;
  EF_CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, cu->stream));
  if (cu->opts.debug_sync) cuda_synchronize(be);
}

static void cuda_graph_free(ef_backend *be, void *graph) {
  (void)be;
  EF_CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)graph));
}

// ---- the training step's update (train/update.c) ----------------------------------------------

static void check_launch(const char *what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    EF_FATAL("CUDA launch of %s failed: %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err));
}

// A step's values reach the device as a kernel's argument, copied at the launch: the caller may
// write the next step's at once, and a captured step (which does not contain this) reads the
// values of the latest launch before its replay.
static void cuda_set_values(ef_backend *be, const ef_step_values *v) {
  ef_cuda *cu = be->impl;
  EF_ASSERT(!cu->capturing, "step values queued inside a capture would be frozen into it");
  EF_ASSERT(v->slot == 0 || v->slot == 1, "result slot %d", v->slot);
  ef_k_set_values(cu->d_values, *v, cu->stream);
  check_launch("the step's values");
}

static const ef_step_values *cuda_result(ef_backend *be, int k) {
  ef_cuda *cu = be->impl;
  EF_ASSERT(k == 0 || k == 1, "result slot %d", k);
  return &cu->results[k];
}

// The first of a step's update: the norm, written with skip to the step's result slot.
static void cuda_grad_norm(ef_backend *be, const float *grad, size_t n) {
  ef_cuda *cu = be->impl;
  ef_k_grad_norm(cu->d_values, cu->d_gmul, grad, (int64_t)n, cu->d_norm_part, cu->d_results, cu->stream);
  check_launch("the gradient norm");
}

static void cuda_update(ef_backend *be, const ef_update_pass *u) {
  ef_cuda *cu = be->impl;
  ef_k_update(u, cu->d_values, cu->d_gmul, cu->stream);
  check_launch("the optimizer's update");
}

static void cuda_ema(ef_backend *be, float *shadow, const float *value, size_t n) {
  ef_cuda *cu = be->impl;
  ef_k_ema(shadow, value, (int64_t)n, cu->d_values, cu->stream);
  check_launch("the moving average's update");
}

static void cuda_swap(ef_backend *be, float *a, float *b, size_t n) {
  ef_cuda *cu = be->impl;
  ef_k_swap(a, b, (int64_t)n, cu->stream);
  check_launch("a swap");
}

static void cuda_fill(ef_backend *be, float *dst, float value, size_t n) {
  ef_cuda *cu = be->impl;
  ef_k_fill((ef_dref){dst, EF_F32}, value, (int64_t)n, cu->stream);
  check_launch("a fill");
}

// ---- lifetime -----------------------------------------------------------------------------------

static void cuda_destroy(ef_backend *be) {
  ef_cuda *cu = be->impl;
  if (cu->stream) cudaStreamSynchronize(cu->stream);
  if (cu->cublas) cublasDestroy(cu->cublas);
  if (cu->cudnn) cudnnDestroy(cu->cudnn);
  if (cu->cublas_ws) cudaFree(cu->cublas_ws);
  if (cu->d_step) cudaFree(cu->d_step);
  if (cu->d_error) cudaFree(cu->d_error);
  if (cu->d_gmul) cudaFree(cu->d_gmul);
  if (cu->d_norm_part) cudaFree(cu->d_norm_part);
  if (cu->results) cudaFreeHost(cu->results);
  if (cu->d_values) cudaFree(cu->d_values);
  if (cu->stream) cudaStreamDestroy(cu->stream);
  free(cu->allocs);
  if (cu->search) cudaFree(cu->search);
  ef_algo_cache_close(&cu->algos);
  free(cu);
  free(be);
}

bool ef_backend_is_cuda(const ef_backend *be) { return be && be->destroy == cuda_destroy; }

const char *ef_cuda_describe(const ef_backend *be) { return ((const ef_cuda *)be->impl)->describe; }
size_t ef_cuda_peak_bytes(const ef_backend *be) { return ((const ef_cuda *)be->impl)->peak; }
size_t ef_cuda_peak_device_bytes(const ef_backend *be) { return ((const ef_cuda *)be->impl)->peak_device; }
void *ef_cuda_stream(const ef_backend *be) { return ((const ef_cuda *)be->impl)->stream; }

size_t ef_cuda_free_bytes(const ef_backend *be) {
  (void)be;
  size_t free_b = 0, total = 0;
  EF_CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
  return free_b;
}

#define CUBLAS_WORKSPACE (32u << 20)

// Start-up failures are the user's to fix (no device, a driver too old): a message, not an abort.
#define START(expr, what)                                                                                              \
  do {                                                                                                                 \
    if (!(expr)) {                                                                                                     \
      cuda_destroy(be);                                                                                                \
      EF_ERROR(EF_ERR_UNSUPPORTED, "%s", what);                                                                        \
      return NULL;                                                                                                     \
    }                                                                                                                  \
  } while (0)

ef_backend *ef_cuda_backend_new(const ef_cuda_opts *opts) {
  ef_backend *be = ef_xcalloc(1, sizeof *be);
  ef_cuda *cu = ef_xcalloc(1, sizeof *cu);
  *be = (ef_backend){.name = "cuda",
                     .supports_op = cuda_supports_op,
                     .prepare = cuda_prepare,
                     .release = cuda_release,
                     .describe = cuda_describe_node,
                     .compute = cuda_compute,
                     .alloc = cuda_alloc,
                     .free = cuda_free,
                     .upload = cuda_upload,
                     .download = cuda_download,
                     .memset = cuda_memset,
                     .synchronize = cuda_synchronize,
                     .destroy = cuda_destroy,
                     .begin_run = cuda_begin_run,
                     .capture_begin = cuda_capture_begin,
                     .capture_end = cuda_capture_end,
                     .replay = cuda_replay,
                     .graph_free = cuda_graph_free,
                     .arena = &cu->arena,
                     .impl = cu};
  cu->arena = (ef_arena_ops){.set_values = cuda_set_values,
                             .result = cuda_result,
                             .grad_norm = cuda_grad_norm,
                             .update = cuda_update,
                             .ema = cuda_ema,
                             .swap = cuda_swap,
                             .fill = cuda_fill};
  if (opts) cu->opts = *opts;
  if (!cu->opts.workspace_mib) cu->opts.workspace_mib = 512;
  const char *sync_env = getenv("EFFNET_CUDA_SYNC");
  if (sync_env && !strcmp(sync_env, "1")) cu->opts.debug_sync = true;

  char why[256];
  int count = ef_cuda_device_count(why, sizeof why);
  START(count > 0, why);
  if (cu->opts.device < 0 || cu->opts.device >= count) {
    snprintf(why, sizeof why, "CUDA device %d does not exist: %d visible (0..%d)", cu->opts.device, count, count - 1);
    START(false, why);
  }
  cudaError_t st = cudaSetDevice(cu->opts.device);
  if (st == cudaSuccess) st = cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking);
  if (st == cudaSuccess) st = cudaMalloc((void **)&cu->d_step, sizeof(uint32_t));
  if (st == cudaSuccess) st = cudaMalloc((void **)&cu->d_error, sizeof(int));
  if (st == cudaSuccess) st = cudaMemsetAsync(cu->d_error, 0, sizeof(int), cu->stream);
  if (st == cudaSuccess) st = cudaMemsetAsync(cu->d_step, 0, sizeof(uint32_t), cu->stream);
  if (st == cudaSuccess) st = cudaStreamSynchronize(cu->stream);
  if (st == cudaSuccess) st = cudaMalloc(&cu->cublas_ws, CUBLAS_WORKSPACE);
  if (st == cudaSuccess) st = cudaMalloc((void **)&cu->d_gmul, sizeof(float));
  if (st == cudaSuccess) st = cudaMalloc((void **)&cu->d_norm_part, EF_K_NORM_CHUNKS * sizeof(double));
  if (st == cudaSuccess) st = cudaHostAlloc((void **)&cu->results, 2 * sizeof *cu->results, cudaHostAllocMapped);
  if (st == cudaSuccess) st = cudaHostGetDevicePointer((void **)&cu->d_results, cu->results, 0);
  if (st == cudaSuccess) st = cudaMalloc((void **)&cu->d_values, sizeof *cu->d_values);
  if (st == cudaSuccess) memset(cu->results, 0, 2 * sizeof *cu->results);
  if (st != cudaSuccess)
    snprintf(why, sizeof why, "CUDA device %d could not start: %s", cu->opts.device, cudaGetErrorString(st));
  START(st == cudaSuccess, why);
  cudnnStatus_t ds = cudnnCreate(&cu->cudnn);
  if (ds == CUDNN_STATUS_SUCCESS) ds = cudnnSetStream(cu->cudnn, cu->stream);
  if (ds != CUDNN_STATUS_SUCCESS)
    snprintf(why, sizeof why, "cuDNN could not start: %s (is libcudnn.so.9 on LD_LIBRARY_PATH?)",
             cudnnGetErrorString(ds));
  START(ds == CUDNN_STATUS_SUCCESS, why);
  cublasStatus_t bs = cublasCreate(&cu->cublas);
  if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(cu->cublas, cu->stream);
  if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetWorkspace(cu->cublas, cu->cublas_ws, CUBLAS_WORKSPACE);
  if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetPointerMode(cu->cublas, CUBLAS_POINTER_MODE_HOST);
  if (bs != CUBLAS_STATUS_SUCCESS) snprintf(why, sizeof why, "cuBLAS could not start: %s", cublasGetStatusString(bs));
  START(bs == CUBLAS_STATUS_SUCCESS, why);

  struct cudaDeviceProp prop;
  EF_CUDA_CHECK(cudaGetDeviceProperties(&prop, cu->opts.device));
  snprintf(cu->card, sizeof cu->card, "%.120s sm_%d%d %d SMs", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount);
  char default_cache[4096];
  const char *cache = cu->opts.algo_cache ? (strcmp(cu->opts.algo_cache, "off") ? cu->opts.algo_cache : NULL)
                                          : ef_algo_cache_default(default_cache, sizeof default_cache);
  if (ef_algo_cache_open(&cu->algos, cache) != EF_OK) {
    snprintf(why, sizeof why, "%s", ef_last_error());
    START(false, why);
  }
  snprintf(cu->describe, sizeof cu->describe, "%.200s (sm_%d%d, %d SMs, %.0f GiB, cuDNN %zu%s)", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30), cudnnGetVersion(),
           cu->opts.allow_tf32 ? ", TF32 allowed" : "");
  return be;
}
