// Matrix products on the CPU through oneDNN's matmul: the linear layer y = x w^T + b and its two
// backward products, and the same three for pointwise convolutions (1x1, stride 1, no padding, one
// group; cpu_conv.c sends them here), inference's folded ones (CONV2D_BN) included, with their bias
// and activation post-op (gated ones as a batch of products, one per image). x is read as rows (M,I)
// whatever its leading shape; w is (O,I) row-major ((O,1,1,I) for a convolution), and the
// transposes are strided views, never copies. The linear layer over few rows runs as effnet's dot
// products instead.
#include <stdio.h>

#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

// The linear layer's forward over at most DOT_MAX_ROWS rows (the classifier at batch 1 to 4): dot
// products of x's rows with w's rows (O,I) as they lie, DOT_OUTS of w's rows at a time, split over
// the outputs. oneDNN's matmul takes w^T as a strided view and its brgemm copies it into its own
// layout at every call: on the AMD EPYC, 2 threads, B0's 1280 -> 1000 at batch 1 took 0.28-0.43 ms
// there against 0.18-0.25 here, B3's 1536 -> 1000 0.27-0.34 against 0.16-0.17, B0's at batch 4
// 0.26-0.29 against 0.21-0.23. An AVX2 build with oneDNN capped to AVX2 (its gemm:jit): even at batch
// 1, 0.18 against 0.26-0.27 at batch 2, 0.22-0.28 against 0.26-0.31 at batch 4, though 4 rows by 4
// outputs spill AVX2's 16 registers (docs/perf.md, "Issue 19, twelfth pass"). Builds without FMA
// vectors leave the layer to oneDNN.
#define DOT_MAX_ROWS 4
#define DOT_OUTS 4

#ifdef VEC
static bool linear_own(const ef_tensor *node) { return node->op == EF_OP_LINEAR && ef_rows(node) <= DOT_MAX_ROWS; }

// y (nr, o)'s outputs [j, j + no) = x (nr, i) w[j .. j + no)^T + b (b NULL: none), nr and no constants
// where inlined: nr x no sums of vectors over the inputs in order (the last vector masked), each then
// summed across its lanes.
static inline __attribute__((always_inline)) void dots(const float *x, int64_t i, const float *w, const float *b,
                                                       float *y, int64_t o, int64_t j, const int nr, const int no) {
  vec acc[DOT_MAX_ROWS * DOT_OUTS];
  for (int a = 0; a < nr * no; a++) acc[a] = vec_bcast(0.0f);
  for (int64_t k = 0; k < i; k += VEC) {
    int n = i - k < VEC ? (int)(i - k) : VEC;
    vec xv[DOT_MAX_ROWS];
    for (int r = 0; r < nr; r++) xv[r] = vec_load_upto(x + r * i + k, n);
    for (int c = 0; c < no; c++) {
      vec wv = vec_load_upto(w + (j + c) * i + k, n);
      for (int r = 0; r < nr; r++) acc[r * no + c] = vec_fma(xv[r], wv, acc[r * no + c]);
    }
  }
  for (int r = 0; r < nr; r++)
    for (int c = 0; c < no; c++) y[r * o + j + c] = vec_hsum(acc[r * no + c]) + (b ? b[j + c] : 0.0f);
}

// Outputs [j, j + DOT_OUTS), or those of them below o one at a time, for nr rows (a constant).
static inline __attribute__((always_inline)) void dot_block(const float *x, int64_t i, const float *w, const float *b,
                                                            float *y, int64_t o, int64_t j, const int nr) {
  if (j + DOT_OUTS <= o) dots(x, i, w, b, y, o, j, nr, DOT_OUTS);
  else
    for (int64_t c = j; c < o; c++) dots(x, i, w, b, y, o, c, nr, 1);
}

static void linear_dots(ef_cpu *cpu, const ef_tensor *node) {
  const float *x = node->src[0]->data, *w = node->src[1]->data, *b = node->n_src == 3 ? node->src[2]->data : NULL;
  int64_t m = ef_rows(node), i = ef_cols(node->src[0]), o = node->src[1]->shape[0],
          blocks = (o + DOT_OUTS - 1) / DOT_OUTS;
  float *y = node->data;
#pragma omp parallel for num_threads(cpu->threads) schedule(static)
  for (int64_t q = 0; q < blocks; q++) switch (m) {
    case 1: dot_block(x, i, w, b, y, o, q * DOT_OUTS, 1); break;
    case 2: dot_block(x, i, w, b, y, o, q * DOT_OUTS, 2); break;
    case 3: dot_block(x, i, w, b, y, o, q * DOT_OUTS, 3); break;
    default: dot_block(x, i, w, b, y, o, q * DOT_OUTS, 4); break;
    }
}
#else
static bool linear_own(const ef_tensor *node) {
  (void)node;
  return false;
}
#endif

// An (rows, cols) f32 matrix with the given strides.
static void matrix_md(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  EF_DNNL(dnnl_memory_desc_init_by_strides(md, 2, (dnnl_dims_t){rows, cols}, dnnl_f32,
                                           (dnnl_dims_t){row_stride, col_stride}));
}

// `batch` (rows, cols) f32 matrices with the given strides.
static void batch_md(dnnl_memory_desc_t *md, int64_t batch, int64_t rows, int64_t cols, int64_t batch_stride,
                     int64_t row_stride, int64_t col_stride) {
  EF_DNNL(dnnl_memory_desc_init_by_strides(md, 3, (dnnl_dims_t){batch, rows, cols}, dnnl_f32,
                                           (dnnl_dims_t){batch_stride, row_stride, col_stride}));
}

// The primitive descriptor of matmul md, with the user scratchpad and `act` (EF_ACT_NONE: none) as
// an eltwise post-op.
static ef_status matmul_pd(ef_cpu *cpu, const ef_tensor *node, const dnnl_matmul_desc_t *md, ef_act act,
                           dnnl_primitive_desc_t *pd) {
  dnnl_primitive_attr_t attr;
  EF_DNNL_TRY(dnnl_primitive_attr_create(&attr), node);
  dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (st == dnnl_success && act != EF_ACT_NONE) st = ef_cpu_post_act(attr, act);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, md, attr, cpu->engine, NULL);
  dnnl_primitive_attr_destroy(attr);
  EF_DNNL_TRY(st, node);
  return EF_OK;
}

// A gated CONV2D_BN (squeeze-excite's scale folded in): per image n, (H*W, I) x ((O, I) * gate[n])^T,
// the weights scaled at every run into the start of the scratch (ef_cpu_gate_weights), plus the
// folded bias and the activation.
static ef_status gated_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  int64_t imgs = node->shape[0], hw = node->shape[1] * node->shape[2], k = node->src[0]->shape[3], n = node->shape[3];
  dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
  batch_md(&a_md, imgs, hw, k, hw * k, k, 1);
  batch_md(&b_md, imgs, k, n, k * n, 1, k);
  batch_md(&bias_md, 1, 1, n, n, n, 1);
  batch_md(&c_md, imgs, hw, n, hw * n, n, 1);
  dnnl_matmul_desc_t md;
  EF_DNNL_TRY(dnnl_matmul_desc_init(&md, &a_md, &b_md, &bias_md, &c_md), node);
  dnnl_primitive_desc_t pd;
  EF_TRY(matmul_pd(cpu, node, &md, node->p.conv.act, &pd));

  ef_dnnl_node *s = ef_dnnl_node_new(state);
  s->gate = node->src[4];
  ef_status es = ef_cpu_fold_prepare(node, s);
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_SRC, &a_md, node->src[0]->data);
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_WEIGHTS, &b_md, NULL);
  if (es == EF_OK) s->gated_w = s->args[s->nargs - 1].memory;
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_BIAS, &bias_md, s->fold_bias);
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DST, &c_md, node->data);
  if (es == EF_OK) es = ef_dnnl_finish(cpu, node, s, pd, 0, NULL, NULL, scratch);
  dnnl_primitive_desc_destroy(pd);
  EF_TRY(es);
  size_t wbytes = EF_ALIGN64(sizeof(float) * (size_t)(imgs * n * k)); // the scaled weights, before the scratchpad
  s->scratchpad_offset += wbytes;
  *scratch += wbytes;
  return EF_OK;
}

ef_status ef_cpu_product_prepare(ef_cpu *cpu, const ef_tensor *node, ef_product kind, void **state, size_t *scratch) {
  if (node->op == EF_OP_CONV2D_BN && node->n_src == 5) return gated_prepare(cpu, node, state, scratch);
  const ef_tensor *a = node->src[0], *b = node->src[1];
  dnnl_memory_desc_t a_md, b_md, c_md, bias_md, b_any;
  bool folded = node->op == EF_OP_CONV2D_BN, bias = kind == EF_PRODUCT_FORWARD && (folded || node->n_src == 3);
  int64_t m = 0, k = 0, n = 0;
  switch (kind) {
  case EF_PRODUCT_FORWARD: // (M,I) x (O,I)^T -> (M,O)
    m = ef_rows(a), k = ef_cols(a), n = b->shape[0];
    matrix_md(&a_md, m, k, k, 1);
    matrix_md(&b_md, k, n, 1, k);
    if (bias) matrix_md(&bias_md, 1, n, n, 1);
    break;
  case EF_PRODUCT_DATA: // dy (M,O) x w (O,I) -> (M,I)
    m = ef_rows(a), k = ef_cols(a), n = ef_numel(b) / b->shape[0];
    matrix_md(&a_md, m, k, k, 1);
    matrix_md(&b_md, k, n, n, 1);
    break;
  case EF_PRODUCT_WEIGHT: // dy^T (O,M) x x (M,I) -> (O,I)
    m = ef_cols(a), k = ef_rows(a), n = ef_cols(b);
    matrix_md(&a_md, m, k, 1, m);
    matrix_md(&b_md, k, n, n, 1);
    break;
  }
  matrix_md(&c_md, m, n, n, 1);
  // Folded inference weights change only with the store: matmul takes them in its own format,
  // reordered once with the fold (ef_dnnl_finish).
  if (folded) EF_DNNL(dnnl_memory_desc_init_by_tag(&b_any, 2, (dnnl_dims_t){k, n}, dnnl_f32, dnnl_format_tag_any));
  dnnl_matmul_desc_t md;
  EF_DNNL_TRY(dnnl_matmul_desc_init(&md, &a_md, folded ? &b_any : &b_md, bias ? &bias_md : NULL, &c_md), node);
  dnnl_primitive_desc_t pd;
  EF_TRY(matmul_pd(cpu, node, &md, folded ? node->p.conv.act : EF_ACT_NONE, &pd));

  ef_dnnl_node *s = ef_dnnl_node_new(state);
  ef_status es = folded ? ef_cpu_fold_prepare(node, s) : EF_OK;
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_SRC, &a_md, a->data);
  if (es == EF_OK && !folded) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_WEIGHTS, &b_md, b->data);
  if (es == EF_OK && bias)
    es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_BIAS, &bias_md, folded ? s->fold_bias : node->src[2]->data);
  if (es == EF_OK) es = ef_dnnl_arg(cpu, node, s, DNNL_ARG_DST, &c_md, node->data);
  if (es == EF_OK)
    es = folded ? ef_dnnl_finish(cpu, node, s, pd, DNNL_ARG_WEIGHTS, &b_md, s->fold_w, scratch)
                : ef_dnnl_finish(cpu, node, s, pd, 0, NULL, NULL, scratch);
  dnnl_primitive_desc_destroy(pd);
  return es;
}

ef_status ef_cpu_linear_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  if (linear_own(node)) { // no primitive (what the run dispatches on): the name for describe()
    ef_dnnl_node *s = ef_dnnl_node_new(state);
    snprintf(s->impl, sizeof s->impl, "effnet dot products");
    return EF_OK;
  }
  ef_product kind = node->op == EF_OP_LINEAR            ? EF_PRODUCT_FORWARD
                    : node->op == EF_OP_LINEAR_BWD_DATA ? EF_PRODUCT_DATA
                                                        : EF_PRODUCT_WEIGHT;
  return ef_cpu_product_prepare(cpu, node, kind, state, scratch);
}

void ef_cpu_linear_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
#ifdef VEC
  if (!((ef_dnnl_node *)state)->prim) { // linear_own's
    linear_dots(cpu, node);
    return;
  }
#endif
  ef_cpu_dnnl_run(cpu, node, state, scratch, ctx);
}
