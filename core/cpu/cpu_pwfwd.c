// Pointwise convolutions by effnet's own kernel: inference's over few input channels (CONV2D_BN, its
// batch norm folded) and plain ones over few rows (squeeze-excite's): y (M,O) = act(x (M,I) W^T +
// bias), M = N*H*W rows of NHWC pixels. A register tile of P rows by up to NV vectors of outputs
// starts from the bias and adds the inputs in order, one FMA each, then is activated in registers
// (cpu_vec.h's vec_act_fwd: core/act.h's ef_act_fwd in vectors) and stored. EXPAND_DW's expansion
// (cpu_expand_dw.c) runs the same rows into its bands.
#include <stdio.h>

#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

// Where this kernel runs instead of oneDNN 2.6's matmul with its activation post-op: at most
// OWN_MAX_IN input channels, EfficientNets' early expansions (16 -> 96 at 112x112, 24 -> 144 at
// 56x56). There the outputs' stores bound both; oneDNN's post-op takes a second pass over each block
// of outputs. B0 at 224, batch 32, on the Xeon, per node: see docs/perf.md ("Issue 19, fifth pass").
#define OWN_MAX_IN 24
// And plain 1x1 convolutions (CONV2D, forward) over at most OWN_MAX_ROWS rows: squeeze-excite's, on
// pooled (N,1,1,C) values, where oneDNN's call costs more than the product (B0 at 224, batch 1: 32
// of them took 13 us each; see docs/perf.md).
#define OWN_MAX_ROWS 32
// Rows a work item: a tile's rows take every output vector before the next tile's.
#define ITEM_ROWS 64

#ifdef VEC
// Rows a tile, and at most this many output vectors: AVX-512's 32 registers hold 4 x 6 sums, the
// rows' broadcast inputs and a weight vector; AVX2's 16 hold 3 x 3.
#if VEC == 16
#define P 4
#define NV 6
#else
#define P 3
#define NV 3
#endif

bool ef_cpu_pwf_own(const ef_tensor *node) {
  if (node->op == EF_OP_CONV2D) return ef_cpu_pointwise(node) && ef_rows(node) <= OWN_MAX_ROWS;
  return node->op == EF_OP_CONV2D_BN && node->n_src == 4 && ef_cpu_pointwise(node) &&
         node->src[0]->shape[3] <= OWN_MAX_IN;
}

int64_t ef_cpu_pwf_padded(int64_t o) { return (o + VEC - 1) / VEC * VEC; }

// Rows [m, m + rows) (rows <= P) by output vectors [v0, v0 + nv) (nv a constant <= NV): the sums in
// registers, activated and stored (lanes at or past `o` masked off).
static inline __attribute__((always_inline)) void tile(const float *x, const float *wt, const float *bias, float *y,
                                                       int64_t i, int64_t op, int64_t ldy, int64_t o, int64_t m,
                                                       int rows, int64_t v0, const ef_act act, const int nv) {
  vec acc[P][NV];
  const float *xr[P];
  for (int p = 0; p < P; p++) {
    xr[p] = x + (m + (p < rows ? p : 0)) * i; // past the last row: row m again, not stored
    for (int v = 0; v < nv; v++) acc[p][v] = vec_load(bias + (v0 + v) * VEC);
  }
  for (int64_t k = 0; k < i; k++) {
    vec b[P];
    for (int p = 0; p < P; p++) b[p] = vec_bcast(xr[p][k]);
    for (int v = 0; v < nv; v++) {
      vec w = vec_load(wt + k * op + (v0 + v) * VEC);
      for (int p = 0; p < P; p++) acc[p][v] = vec_fma(b[p], w, acc[p][v]);
    }
  }
  for (int p = 0; p < rows; p++)
    for (int v = 0; v < nv; v++) {
      int64_t c = (v0 + v) * VEC;
      vec out = vec_act_fwd(act, acc[p][v]);
      if (c + VEC <= o) vec_store(y + (m + p) * ldy + c, out);
      else if (c < o) vec_store_n(y + (m + p) * ldy + c, out, (int)(o - c));
    }
}

// ef_cpu_pwf_rows with the activation a constant.
EF_INLINE void rows_act(const ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias,
                        int64_t op, float *y, int64_t ldy, int64_t o) {
  // The output vectors in even groups of at most NV: 9 as 5 + 4, not 6 + 3.
  int64_t vecs = op / VEC, groups = (vecs + NV - 1) / NV, per = (vecs + groups - 1) / groups;
  for (int64_t v0 = 0; v0 < vecs; v0 += per) {
    int nv = (int)(vecs - v0 < per ? vecs - v0 : per);
    for (int64_t r = 0; r < m; r += P) {
      int rows = (int)(m - r < P ? m - r : P);
      switch (nv) {
      case 1: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, 1); break;
      case 2: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, 2); break;
#if NV > 3
      case 3: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, 3); break;
      case 4: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, 4); break;
      case 5: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, 5); break;
#endif
      default: tile(x, wt, bias, y, i, op, ldy, o, r, rows, v0, act, NV); break;
      }
    }
  }
}

void ef_cpu_pwf_rows(ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias, int64_t op,
                     float *y, int64_t ldy, int64_t o) {
  EF_ACT_SPECIALIZE(act, rows_act, x, m, i, wt, bias, op, y, ldy, o);
}

#else
// Without FMA vectors oneDNN runs these (no node is taken); EXPAND_DW's bands take the plain loop.
bool ef_cpu_pwf_own(const ef_tensor *node) {
  (void)node;
  return false;
}

int64_t ef_cpu_pwf_padded(int64_t o) { return o; }

void ef_cpu_pwf_rows(ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias, int64_t op,
                     float *y, int64_t ldy, int64_t o) {
  for (int64_t r = 0; r < m; r++)
    for (int64_t a = 0; a < op; a++) {
      float acc = bias[a];
      for (int64_t k = 0; k < i; k++) acc = fmaf(x[r * i + k], wt[k * op + a], acc);
      if (a < o) y[r * ldy + a] = ef_act_fwd(act, acc);
    }
}

#endif

// The weights (folded, for CONV2D_BN) transposed, (I, OP) with OP = ef_cpu_pwf_padded(O), then the
// bias (OP), zeros past O: the node's kept weights.
ef_status ef_cpu_pwf_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  (void)cpu;
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  snprintf(s->impl, sizeof s->impl, "effnet pointwise, few inputs");
  s->keep_weights = ef_cpu_from_store(node, 1, node->n_src);
  int64_t i = node->src[0]->shape[3], op = ef_cpu_pwf_padded(node->shape[3]);
  size_t bytes = sizeof(float) * (size_t)((i + 1) * op);
  *scratch = 0;
  return ef_cpu_kept_alloc(node, s, bytes);
}

void ef_cpu_pwf_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)scratch;
  ef_dnnl_node *s = state;
  int64_t m = ef_rows(node), o = node->shape[3], i = node->src[0]->shape[3], op = ef_cpu_pwf_padded(o);
  float *wt = s->kept_w, *bias = wt + i * op;
  if (ef_cpu_derive_now(s, ctx)) {
    if (node->op == EF_OP_CONV2D_BN) {
      ef_cpu_fold(node->src[1], node->src[2], node->src[3], node->p.conv.bn_eps, wt, 1, op, bias);
    } else { // w (O,1,1,I) transposed, and the bias if there is one
      const float *w = node->src[1]->data, *b = node->n_src == 3 ? node->src[2]->data : NULL;
      for (int64_t a = 0; a < o; a++) {
        for (int64_t k = 0; k < i; k++) wt[k * op + a] = w[a * i + k];
        bias[a] = b ? b[a] : 0.0f;
      }
    }
  }
  const float *x = node->src[0]->data;
  float *y = node->data;
#pragma omp parallel for num_threads(cpu->threads) schedule(static) if (m > ITEM_ROWS)
  for (int64_t m0 = 0; m0 < m; m0 += ITEM_ROWS)
    ef_cpu_pwf_rows(node->op == EF_OP_CONV2D_BN ? node->p.conv.act : EF_ACT_NONE, x + m0 * i,
                    m - m0 < ITEM_ROWS ? m - m0 : ITEM_ROWS, i, wt, bias, op, y + m0 * o, o, o);
}
