// Convolutions on the CPU through oneDNN: forward, backward data and backward weights on NHWC
// activations, any kernel, stride, dilation, groups (depthwise included) and asymmetric padding,
// and inference's convolution with its batch norm folded in (CONV2D_BN: folded weights and a bias,
// the activation as oneDNN's post-op). Weights stay in our plain (O,KH,KW,I/groups) layout and are
// reordered to the format oneDNN picks (format `any`), which selects its fast jit/brgemm kernels.
// Pointwise convolutions run as matrix products (cpu_matmul.c; gated ones, with squeeze-excite's
// scale folded in per image, too), but for inference's folded ones on a single image, those over few
// input channels (effnet's own kernel, cpu_pwfwd.c) and the filter gradients over many rows
// (cpu_pwgrad.c); the filter gradients of depthwise ones on small inputs, inference's folded
// depthwise forwards with AVX-512, and those oneDNN would run as GEMM, run by effnet's own kernels
// (cpu_dwconv.c).
#include "core/cpu/cpu_internal.h"

// (N,H,W,C) as oneDNN's logical (N,C,H,W) in nhwc order.
static void act_md(dnnl_memory_desc_t *md, const int64_t *s) {
  dnnl_dims_t dims = {s[0], s[3], s[1], s[2]};
  EF_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, dnnl_nhwc));
}

// (O,KH,KW,I/g) as (O,I,KH,KW) ohwi, or (G,O/G,I/G,KH,KW) gohwi when grouped.
static void weights_md(dnnl_memory_desc_t *md, const int64_t *w, int groups, bool any) {
  if (groups == 1) {
    dnnl_dims_t dims = {w[0], w[3], w[1], w[2]};
    EF_DNNL(dnnl_memory_desc_init_by_tag(md, 4, dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_ohwi));
  } else {
    dnnl_dims_t dims = {groups, w[0] / groups, w[3], w[1], w[2]};
    EF_DNNL(dnnl_memory_desc_init_by_tag(md, 5, dims, dnnl_f32, any ? dnnl_format_tag_any : dnnl_gohwi));
  }
}

// The activation after the folded batch norm as the convolution's post-op (swish: x * sigmoid(1 * x)).
dnnl_status_t ef_cpu_post_act(dnnl_primitive_attr_t attr, ef_act act) {
  dnnl_alg_kind_t alg = dnnl_eltwise_relu;
  float alpha = 0, beta = 0;
  switch (act) {
  case EF_ACT_SWISH: alg = dnnl_eltwise_swish, alpha = 1; break;
  case EF_ACT_SIGMOID: alg = dnnl_eltwise_logistic; break;
  case EF_ACT_RELU: alg = dnnl_eltwise_relu; break;
  case EF_ACT_RELU6: alg = dnnl_eltwise_clip, alpha = 0, beta = 6; break;
  case EF_ACT_NONE:
  case EF_ACT_COUNT: EF_FATAL("activation %d has no post-op", (int)act);
  }
  dnnl_post_ops_t po;
  dnnl_status_t st = dnnl_post_ops_create(&po);
  if (st != dnnl_success) return st;
  st = dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, beta);
  if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
  dnnl_post_ops_destroy(po);
  return st;
}

static bool stored(const ef_tensor *t) {
  return t->op == EF_OP_LEAF && (t->mem == EF_MEM_PARAM || t->mem == EF_MEM_STATE);
}

bool ef_cpu_from_store(const ef_tensor *node, int i0, int i1) {
  for (int i = i0; i < i1; i++)
    if (!stored(node->src[i])) return false;
  return true;
}

ef_status ef_cpu_fold_prepare(const ef_tensor *node, ef_dnnl_node *s) {
  s->keep_weights = ef_cpu_from_store(node, 1, 4);
  s->fold = node;
  s->fold_w = ef_aligned_alloc(ef_nbytes(node->src[1]));
  s->fold_bias = ef_aligned_alloc(sizeof(float) * (size_t)node->shape[3]);
  if (!s->fold_w || !s->fold_bias)
    return EF_ERROR(EF_ERR_NOMEM, "out of memory for the folded weights of node '%s' (%zu bytes)", node->name,
                    ef_nbytes(node->src[1]));
  return EF_OK;
}

void ef_cpu_gate_weights(const ef_dnnl_node *s, float *wg) {
  const ef_tensor *node = s->fold;
  const float *gate = s->gate->data;
  int64_t imgs = node->shape[0], o = node->shape[3], in = node->src[1]->shape[3];
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < imgs; b++)
    for (int64_t a = 0; a < o; a++) {
      const float *w = s->fold_w + a * in, *g = gate + b * in;
      float *out = wg + (b * o + a) * in;
      for (int64_t i = 0; i < in; i++) out[i] = w[i] * g[i];
    }
}

void ef_cpu_fold(const ef_tensor *w, const ef_tensor *stats, const ef_tensor *affine, double eps, float *out,
                 int64_t sa, int64_t si, float *bias) {
  const float *wv = w->data, *st = stats->data, *af = affine->data; // (2,O) pairs
  int64_t o = w->shape[0], per = ef_numel(w) / o;
#pragma omp parallel for schedule(static)
  for (int64_t a = 0; a < o; a++) { // W * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps)
    double scale = af[a] / sqrt((double)st[o + a] + eps);
    bias[a] = (float)(af[o + a] - st[a] * scale);
    for (int64_t i = 0; i < per; i++) out[a * sa + i * si] = (float)(wv[a * per + i] * scale);
  }
}

void ef_cpu_conv_fold(const ef_dnnl_node *s) {
  const ef_tensor *node = s->fold;
  ef_cpu_fold(node->src[1], node->src[2], node->src[3], node->p.conv.bn_eps, s->fold_w,
              ef_numel(node->src[1]) / node->shape[3], 1, s->fold_bias);
}

bool ef_cpu_pointwise(const ef_tensor *node) {
  const ef_conv_params *p = &node->p.conv;
  const ef_tensor *w = node->op == EF_OP_CONV2D_BWD_WEIGHT ? node : node->src[1];
  return w->shape[1] == 1 && w->shape[2] == 1 && p->groups == 1 && p->stride[0] == 1 && p->stride[1] == 1 &&
         !p->pad[0] && !p->pad[1] && !p->pad[2] && !p->pad[3];
}

ef_status ef_cpu_conv_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  if (ef_cpu_dw_own(node) || ef_cpu_dw_forward_fast(node)) return ef_cpu_dw_prepare(cpu, node, state, scratch);
  if (ef_cpu_pw_own(node)) return ef_cpu_pw_prepare(cpu, node, state, scratch);
  if (ef_cpu_pwf_own(node)) return ef_cpu_pwf_prepare(cpu, node, state, scratch);
  // oneDNN's matmul runs pointwise products (training's, and squeeze-excite's) faster than its
  // convolutions (the main job's 1x1 convolutions on the Xeon: 35 -> 25 ms a step; neutral at 224),
  // on our plain weights without reorders. Inference's folded ones too, on several images:
  // brgconv_1x1 blocks the rows of one image at a time, so on small maps its blocks are tiny (the
  // main job's validation, batch 128 at 32x32: 15.6 -> 10.3 ms; B0 at 224, batch 32: 142 -> 140).
  // A single image keeps brgconv_1x1 (B0 at 224, batch 1: 6.1-6.3 against 6.3-6.5 ms).
  // A gated one (squeeze-excite's scale folded in per image) is a matmul at any batch.
  if (ef_cpu_pointwise(node) && (node->op != EF_OP_CONV2D_BN || node->shape[0] > 1 || node->n_src == 5)) {
    ef_product kind = node->op == EF_OP_CONV2D_BWD_WEIGHT ? EF_PRODUCT_WEIGHT
                      : node->op == EF_OP_CONV2D_BWD_DATA ? EF_PRODUCT_DATA
                                                          : EF_PRODUCT_FORWARD;
    return ef_cpu_product_prepare(cpu, node, kind, state, scratch);
  }
  const ef_conv_params *p = &node->p.conv;
  const ef_tensor *x, *w, *y; // the forward convolution's input, weights and output
  bool forward = node->op == EF_OP_CONV2D || node->op == EF_OP_CONV2D_BN;
  switch (node->op) {
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BN: x = node->src[0], w = node->src[1], y = node; break;
  case EF_OP_CONV2D_BWD_DATA: y = node->src[0], w = node->src[1], x = node; break;
  default: y = node->src[0], x = node->src[1], w = node; break;
  }
  dnnl_memory_desc_t x_md, y_md, w_plain, w_any, b_md;
  act_md(&x_md, x->shape);
  act_md(&y_md, y->shape);
  weights_md(&w_plain, w->shape, p->groups, false);
  weights_md(&w_any, w->shape, p->groups, true);
  bool folded = node->op == EF_OP_CONV2D_BN, bias = folded || (node->op == EF_OP_CONV2D && node->n_src == 3);
  if (bias) EF_DNNL(dnnl_memory_desc_init_by_tag(&b_md, 1, (dnnl_dims_t){w->shape[0]}, dnnl_f32, dnnl_a));
  dnnl_dims_t strides = {p->stride[0], p->stride[1]}, dilates = {p->dilation[0] - 1, p->dilation[1] - 1};
  dnnl_dims_t pad_l = {p->pad[0], p->pad[2]}, pad_r = {p->pad[1], p->pad[3]};

  dnnl_convolution_desc_t fwd, bwd;
  EF_DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(&fwd, folded ? dnnl_forward_inference : dnnl_forward_training,
                                                         dnnl_convolution_direct, &x_md, &w_any, bias ? &b_md : NULL,
                                                         &y_md, strides, dilates, pad_l, pad_r),
              node);
  dnnl_primitive_attr_t attr;
  EF_DNNL_TRY(dnnl_primitive_attr_create(&attr), node);
  dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success && folded && p->act != EF_ACT_NONE) st = ef_cpu_post_act(attr, p->act);
  dnnl_primitive_desc_t hint = NULL, pd = NULL;
  if (st == dnnl_success && forward) {
    st = dnnl_primitive_desc_create(&pd, &fwd, attr, cpu->engine, NULL);
  } else if (st == dnnl_success) {
    st = dnnl_primitive_desc_create(&hint, &fwd, NULL, cpu->engine, NULL);
    if (st == dnnl_success && node->op == EF_OP_CONV2D_BWD_DATA)
      st = dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &x_md, &w_any, &y_md,
                                                            strides, dilates, pad_l, pad_r);
    else if (st == dnnl_success)
      st = dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &x_md, &w_any, NULL,
                                                               &y_md, strides, dilates, pad_l, pad_r);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bwd, attr, cpu->engine, hint);
  }
  dnnl_primitive_attr_destroy(attr);
  if (hint) dnnl_primitive_desc_destroy(hint);
  EF_DNNL_TRY(st, node);
  // Effnet's depthwise forward also where oneDNN 2.6 would run im2col GEMM ("x64:gemm:jit"): with
  // AVX2 alone it does for B0's 5x5 forwards onto 1x1 maps, about 95 ms of the main job's 231 ms step
  // together (an AVX2 build under ONEDNN_MAX_CPU_ISA=AVX2 on the EPYC), where effnet's kernel takes
  // 0.1-0.2 ms a node, and the validation's folded ones (a batch of 128: 177-240 -> 27-39 ms).
  // Elsewhere oneDNN's direct kernels (brdgmm_dw, jit_dw) stay, but for ef_cpu_dw_forward_fast's (above).
  // And effnet's filter gradient where oneDNN has no depthwise kernel for the shape and runs its
  // generic one ("jit:"): on the AMD EPYC, B3 at 300, batch 16, its 5x5 stride-2 one on 75x75 maps
  // took 33.6 ms there and 6.8 here (docs/perf.md, "Issue 19, eleventh pass").
  const char *impl = "";
  bool dw_filter = node->op == EF_OP_CONV2D_BWD_WEIGHT && ef_dw_is_depthwise(node);
  if ((ef_cpu_dw_forward_can(node) || dw_filter) &&
      dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
      (dw_filter ? !strstr(impl, "_dw:") : strstr(impl, "gemm:") != NULL)) {
    dnnl_primitive_desc_destroy(pd);
    return ef_cpu_dw_prepare(cpu, node, state, scratch);
  }

  ef_dnnl_node *s = ef_dnnl_node_new(state);
  ef_status es = EF_OK;
  switch (node->op) {
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BN:
    // What it derives is kept only from the store's tensors, which change only where a run says so.
    if (folded) es = ef_cpu_fold_prepare(node, s);
    else s->keep_weights = stored(w);
    if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_SRC, &x_md, x->data);
    if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DST, &y_md, y->data);
    if (es == EF_OK && bias)
      es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_BIAS, &b_md, folded ? s->fold_bias : node->src[2]->data);
    if (es == EF_OK)
      es = ef_dnnl_finish(cpu, node, s, pd, DNNL_ARG_WEIGHTS, &w_plain, folded ? s->fold_w : w->data, scratch);
    break;
  case EF_OP_CONV2D_BWD_DATA:
    es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DIFF_DST, &y_md, y->data);
    if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DIFF_SRC, &x_md, x->data);
    if (es == EF_OK) es = ef_dnnl_finish(cpu, node, s, pd, DNNL_ARG_WEIGHTS, &w_plain, w->data, scratch);
    break;
  default:
    es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_SRC, &x_md, x->data);
    if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DIFF_DST, &y_md, y->data);
    if (es == EF_OK) es = ef_dnnl_finish(cpu, node, s, pd, DNNL_ARG_DIFF_WEIGHTS, &w_plain, w->data, scratch);
    break;
  }
  dnnl_primitive_desc_destroy(pd);
  return es;
}

void ef_cpu_conv_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  if (((ef_dnnl_node *)state)->dw_forward) ef_cpu_dw_forward(cpu, node, state, scratch, ctx);
  else if (((ef_dnnl_node *)state)->dw_filter) ef_cpu_dw_bwd_filter(cpu, node, state, scratch, ctx);
  else if (ef_cpu_pw_own(node)) ef_cpu_pw_bwd_filter(cpu, node, state, scratch, ctx);
  else if (ef_cpu_pwf_own(node)) ef_cpu_pwf_run(cpu, node, state, scratch, ctx);
  else ef_cpu_dnnl_run(cpu, node, state, scratch, ctx);
}
