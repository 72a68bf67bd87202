// Pointwise convolutions by effnet's own kernel, over few input channels or onto few output channels
// (and inference's expansions over many rows): inference's (CONV2D_BN, its batch norm folded; gated
// ones with squeeze-excite's scale folded into the weights per image), training's forwards and data
// gradients (dx = dy w, the same product), and plain ones over few rows (squeeze-excite's):
// y (M,O) = act(x (M,I) W^T + bias), M = N*H*W rows of NHWC pixels. A register tile of rows by up to
// NV vectors of outputs starts from the bias and adds the inputs in order, one FMA each, then is
// activated in registers (cpu_vec.h's vec_act_fwd: core/act.h's ef_act_fwd in vectors) and stored.
// EXPAND_DW's expansion (cpu_expand_dw.c) runs the same rows into its bands.
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

// Where this kernel runs instead of oneDNN 2.6's matmul (with its activation post-op in inference):
// at most OWN_MAX_IN input channels, EfficientNets' early expansions (16 -> 96 at 112x112, 24 -> 144
// at 56x56). There the outputs' stores bound both; oneDNN's post-op takes a second pass over each
// block of outputs (B0 at 224, batch 32, on the Xeon, per node: see docs/perf.md, "Issue 19, fifth
// pass"). Training's plain ones only onto at most one tile's outputs (NV vectors): B0's 16 -> 96
// took 20.5 ms in oneDNN and 8.8 here, its 24 -> 144 5.5 and 7.0, each row's outputs stored in two
// passes (on the AMD EPYC, batch 32: docs/perf.md, "Issue 19, seventh pass").
#define OWN_MAX_IN 24
// And the projections onto few outputs (inference's and training's): at most one vector of them (B0's
// 16, from 32 at 112x112), or at most OWN_MAX_OUT (three vectors) from at least OWN_MIN_IN inputs
// (B0's 144 -> 24 at 56x56 and 240 -> 40 at 28x28), gated or not, where oneDNN's matmul ran at a
// third of the FMA peak (B0 at 224, batch 32, on the AMD EPYC: in inference 26.8 -> 16.4 ms for the
// five; see docs/perf.md, "Issue 19, seventh pass"). From fewer inputs onto two or three vectors
// only forwards over at least OWN_MIN_ROWS_NARROW rows, where the operands outgrow the last-level
// cache (on the AMD EPYC, 2 threads; docs/perf.md, "Issue 19, twelfth pass"): B3's gated 40 -> 24
// and 24 -> 24 at 150x150 in inference, batch 32, 9.6-9.8 and 6.4 ms against brg's 14.6-15.9 and
// 8.1-8.3; training's 40 -> 24 at batch 8 2.4-2.7 against 3.6-3.8. An AVX2 build with oneDNN capped
// to AVX2, inference's two at batch 8: 1.9-2.9 and 1.2-1.5 against gemm:jit's 3.4-3.6 and 2.2-2.4.
// At batch 2 (45,000 rows) the two were even, at batch 1 oneDNN was faster (0.31 and 0.24 ms
// against 0.28 and 0.18), and training's data gradients at batch 8 were not faster here (24 -> 40:
// 2.3-4.6 against 2.9-3.3).
#define OWN_MAX_OUT (3 * VEC)
#define OWN_MIN_IN 64
#define OWN_MIN_ROWS_NARROW 65536
// And inference's expansions (folded, not gated, onto more outputs than inputs) from at most
// OWN_MAX_IN_EXPAND inputs over at least OWN_MIN_ROWS_EXPAND rows, where oneDNN's matmul with its
// swish post-op ran at 67-75% of the FMA peak: on the AMD EPYC, 2 threads, B3's 48 -> 288 at 38x38,
// batch 32, took 9.1-10.1 ms against 10.4-14.6, 136 -> 816 at 19x19 13.6-14.7 against 14.6-16.0,
// 232 -> 1392 at 10x10 2-4% less; B0's at batch 32 0-13% less a node, 8% in sum. From 384 inputs
// (B3's 384 -> 2304) the two were even, and over fewer rows oneDNN won (B0's 40 -> 240 at 28x28,
// batch 1, 784 rows: 0.124-0.126 ms against 0.130-0.147; B3's at 10x10, batch 1, 0.36-0.40 against
// 0.61-0.84; docs/perf.md, "Issue 19, ninth pass").
#define OWN_MAX_IN_EXPAND 256
#define OWN_MIN_ROWS_EXPAND 1024
// And plain 1x1 convolutions (CONV2D, forward) over at most OWN_MAX_ROWS rows: squeeze-excite's, on
// pooled (N,1,1,C) values, where oneDNN's call costs more than the product (B0 at 224, batch 1: 32
// of them took 13 us each; see docs/perf.md).
#define OWN_MAX_ROWS 32
// Over at most SPLIT_MAX_ROWS rows the output vectors split over the threads from SPLIT_MIN_WEIGHTS
// weights on (i x op floats): squeeze-excite's larger products at batch 1 (B0's 1152 -> 48 and 48 ->
// 1152), whose weights one thread streamed alone. B0's 32 at batch 1 took 0.17 ms against
// 0.22-0.26, B3's 52 0.64-0.67 against 0.67-0.76; at batch 32 (32 rows) the split was no faster
// (on the AMD EPYC, 2 threads; docs/perf.md, "Issue 19, twelfth pass").
#define SPLIT_MAX_ROWS 8
#define SPLIT_MIN_WEIGHTS 16384
// Rows a work item (a multiple of every tile's rows): a tile's rows take every output vector before
// the next tile's.
#define ITEM_ROWS 96

#ifdef VEC
// At most this many output vectors a tile, and its rows for nv of them (TILE_ROWS(nv) <= PMAX):
// AVX-512's 32 registers hold 4 x 6 sums, or 8 x 2 and 8 x 3 for narrow outputs, so that the sums
// outnumber the rows' broadcast inputs (B0's 144 -> 24 projection, see above: 4 rows took about twice
// as long as 8 or 12, and 12 were slower than 8 on B3's 150x150 maps); AVX2's 16 hold 3 x 3.
#if VEC == 16
#define NV 6
#define PMAX 8
#define SUMS 24 // at most TILE_ROWS(nv) * nv
#define TILE_ROWS(nv) ((nv) == 2 || (nv) == 3 ? 8 : 4)
#else
#define NV 3
#define PMAX 3
#define SUMS 9
#define TILE_ROWS(nv) 3
#endif

bool ef_cpu_pwf_own(const ef_tensor *node) {
  bool fwd = node->op == EF_OP_CONV2D, bwd = node->op == EF_OP_CONV2D_BWD_DATA, bn = node->op == EF_OP_CONV2D_BN;
  if (!(fwd || bwd || bn) || !ef_cpu_pointwise(node)) return false;
  int64_t i = node->src[0]->shape[3], o = node->shape[3], rows = ef_rows(node);
  bool few_rows = rows <= OWN_MAX_ROWS;
  bool narrow = o <= VEC || (o <= OWN_MAX_OUT && (i >= OWN_MIN_IN || (!bwd && rows >= OWN_MIN_ROWS_NARROW)));
  if (bwd) return narrow && !few_rows; // from few inputs, and on pooled rows, oneDNN was faster
  if (fwd && few_rows) return true;
  bool expansion = bn && node->n_src == 4 && o > i && i <= OWN_MAX_IN_EXPAND && rows >= OWN_MIN_ROWS_EXPAND;
  return narrow || expansion || (i <= OWN_MAX_IN && (bn ? node->n_src == 4 : o <= NV * VEC)); // few inputs: not gated
}

int64_t ef_cpu_pwf_padded(int64_t o) { return (o + VEC - 1) / VEC * VEC; }

// Rows [m, m + rows) (rows <= pr, a constant) by output vectors [v0, v0 + nv) (nv a constant <= NV):
// the sums in registers, activated and stored (lanes at or past `o` masked off).
static inline __attribute__((always_inline)) void tile(const float *x, const float *wt, const float *bias, float *y,
                                                       int64_t i, int64_t op, int64_t ldy, int64_t o, int64_t m,
                                                       int rows, int64_t v0, const ef_act act, const int nv,
                                                       const int pr) {
  // The sums, acc[p * nv + v]: a flat array of at most SUMS vectors (as [PMAX][NV], 48, B0's 16 -> 96
  // expansion at 112x112, batch 32, took 19.3-19.5 ms in its expand_dw node against 18.4-18.6).
  vec acc[SUMS];
  const float *xr[PMAX];
  for (int p = 0; p < pr; p++) {
    xr[p] = x + (m + (p < rows ? p : 0)) * i; // past the last row: row m again, not stored
    for (int v = 0; v < nv; v++) acc[p * nv + v] = vec_load(bias + (v0 + v) * VEC);
  }
  // The next tile's rows, one cache line an input: each row is a short stream (B0's 144 inputs: 9
  // lines) that the hardware's prefetchers do not pick up before the tile needs it.
  const float *next = x + (m + pr) * i;
  for (int64_t k = 0; k < i; k++) {
    if (k * 16 < pr * i) __builtin_prefetch(next + k * 16);
    vec b[PMAX];
    for (int p = 0; p < pr; p++) b[p] = vec_bcast(xr[p][k]);
    for (int v = 0; v < nv; v++) {
      // Each weight vector is loaded once, into a register, for the tile's rows: the empty asm keeps
      // GCC from folding the load into every row's FMA, one 64-byte load an FMA, which bound the tile
      // on the AMD EPYC (one thread, a 1 MiB band: 24 -> 144 with swish 42.9 -> 40.1 ms, without an
      // activation 30.8 -> 27.0; 96 -> 96 92 -> 108 GFLOP/s; docs/perf.md, "Issue 19, eighth pass").
      vec w = vec_load(wt + k * op + (v0 + v) * VEC);
      __asm__("" : "+v"(w));
      for (int p = 0; p < pr; p++) acc[p * nv + v] = vec_fma(b[p], w, acc[p * nv + v]);
    }
  }
  for (int p = 0; p < pr && p < rows; p++)
    for (int v = 0; v < nv; v++) {
      int64_t c = (v0 + v) * VEC;
      vec out = vec_act_fwd(act, acc[p * nv + v]);
      if (c + VEC <= o) vec_store(y + (m + p) * ldy + c, out);
      else if (c < o) vec_store_n(y + (m + p) * ldy + c, out, (int)(o - c));
    }
}

// All m rows by output vectors [v0, v0 + nv), the activation and nv constants. Callers switch on nv
// outside the rows' loop: with the switch inside it, a case for each tile, the expansion above took
// 20.7-21.8 ms.
EF_INLINE void group(const ef_act act, const int nv, const float *x, int64_t m, int64_t i, const float *wt,
                     const float *bias, int64_t op, float *y, int64_t ldy, int64_t o, int64_t v0) {
  for (int64_t r = 0; r < m; r += TILE_ROWS(nv))
    tile(x, wt, bias, y, i, op, ldy, o, r, (int)(m - r < TILE_ROWS(nv) ? m - r : TILE_ROWS(nv)), v0, act, nv,
         TILE_ROWS(nv));
}

// ef_cpu_pwf_rows with the activation a constant, over output vectors [va, vb).
EF_INLINE void rows_act(const ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias,
                        int64_t op, float *y, int64_t ldy, int64_t o, int64_t va, int64_t vb) {
  // The output vectors in even groups of at most NV: 9 as 5 + 4, not 6 + 3.
  int64_t vecs = vb - va, groups = (vecs + NV - 1) / NV, per = (vecs + groups - 1) / groups;
  for (int64_t v0 = va; v0 < vb; v0 += per) {
    switch (vb - v0 < per ? vb - v0 : per) {
    case 1: group(act, 1, x, m, i, wt, bias, op, y, ldy, o, v0); break;
    case 2: group(act, 2, x, m, i, wt, bias, op, y, ldy, o, v0); break;
#if NV > 3
    case 3: group(act, 3, x, m, i, wt, bias, op, y, ldy, o, v0); break;
    case 4: group(act, 4, x, m, i, wt, bias, op, y, ldy, o, v0); break;
    case 5: group(act, 5, x, m, i, wt, bias, op, y, ldy, o, v0); break;
#endif
    default: group(act, NV, x, m, i, wt, bias, op, y, ldy, o, v0); break;
    }
  }
}

void ef_cpu_pwf_rows(ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias, int64_t op,
                     float *y, int64_t ldy, int64_t o) {
  EF_ACT_SPECIALIZE(act, rows_act, x, m, i, wt, bias, op, y, ldy, o, 0, op / VEC);
}

// Few rows (y (m, o), m <= ITEM_ROWS) on one thread, or with the output vectors split evenly over the
// threads (see SPLIT_MAX_ROWS), so that both cores stream the weights.
static void rows_split(ef_cpu *cpu, ef_act act, const float *x, int64_t m, int64_t i, const float *wt,
                       const float *bias, int64_t op, float *y, int64_t o) {
  int64_t vecs = op / VEC, parts = m <= SPLIT_MAX_ROWS && i * op >= SPLIT_MIN_WEIGHTS ? cpu->threads : 1;
  if (parts > vecs) parts = vecs;
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
  for (int64_t t = 0; t < parts; t++)
    EF_ACT_SPECIALIZE(act, rows_act, x, m, i, wt, bias, op, y, o, o, vecs * t / parts, vecs * (t + 1) / parts);
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

static void rows_split(ef_cpu *cpu, ef_act act, const float *x, int64_t m, int64_t i, const float *wt,
                       const float *bias, int64_t op, float *y, int64_t o) {
  (void)cpu;
  ef_cpu_pwf_rows(act, x, m, i, wt, bias, op, y, o, o);
}
#endif

// The weights (folded, for CONV2D_BN) transposed, (I, OP) with OP = ef_cpu_pwf_padded(O), then the
// bias (OP), zeros past O: the node's kept weights. A gated node's scratch: each thread's copy of
// them scaled by one image's gate, (I, OP).
ef_status ef_cpu_pwf_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  bool gated = node->op == EF_OP_CONV2D_BN && node->n_src == 5;
  snprintf(s->impl, sizeof s->impl, "effnet pointwise%s", gated ? ", gated" : "");
  s->keep_weights = ef_cpu_from_store(node, 1, node->op == EF_OP_CONV2D_BN ? 4 : node->n_src); // not the gate
  int64_t i = node->src[0]->shape[3], op = ef_cpu_pwf_padded(node->shape[3]);
  size_t bytes = sizeof(float) * (size_t)((i + 1) * op);
  *scratch = gated ? sizeof(float) * (size_t)(i * op) * (size_t)cpu->threads : 0;
  return ef_cpu_kept_alloc(node, s, bytes);
}

void ef_cpu_pwf_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  ef_dnnl_node *s = state;
  int64_t m = ef_rows(node), o = node->shape[3], i = node->src[0]->shape[3], op = ef_cpu_pwf_padded(o);
  float *wt = s->kept_w, *bias = wt + i * op;
  if (ef_cpu_derive_now(s, ctx)) {
    if (node->op == EF_OP_CONV2D_BN) {
      ef_cpu_fold(node->src[1], node->src[2], node->src[3], node->p.conv.bn_eps, wt, 1, op, bias);
    } else if (node->op == EF_OP_CONV2D_BWD_DATA) { // dx = dy w: w (O,1,1,I) as it is; the bias stays 0
      const float *w = node->src[1]->data;
      for (int64_t k = 0; k < i; k++) memcpy(wt + k * op, w + k * o, sizeof(float) * (size_t)o);
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
  ef_act act = node->op == EF_OP_CONV2D_BN ? node->p.conv.act : EF_ACT_NONE;
  if (node->n_src == 5 && node->op == EF_OP_CONV2D_BN) { // gated: items within one image, its weights scaled
    const float *gate = node->src[4]->data;
    int64_t hw = node->shape[1] * node->shape[2], per = (hw + ITEM_ROWS - 1) / ITEM_ROWS;
#pragma omp parallel num_threads(cpu->threads)
    {
      float *wg = (float *)scratch + i * op * omp_get_thread_num();
      int64_t have = -1; // the image whose gate wg holds
#pragma omp for schedule(static)
      for (int64_t it = 0; it < node->shape[0] * per; it++) {
        int64_t n = it / per, r0 = n * hw + it % per * ITEM_ROWS, rows = (n + 1) * hw - r0;
        if (n != have) {
          for (int64_t k = 0; k < i; k++)
            for (int64_t a = 0; a < op; a++) wg[k * op + a] = wt[k * op + a] * gate[n * i + k];
          have = n;
        }
        ef_cpu_pwf_rows(act, x + r0 * i, rows < ITEM_ROWS ? rows : ITEM_ROWS, i, wg, bias, op, y + r0 * o, o, o);
      }
    }
    return;
  }
  if (m <= ITEM_ROWS) {
    rows_split(cpu, act, x, m, i, wt, bias, op, y, o);
    return;
  }
#pragma omp parallel for num_threads(cpu->threads) schedule(static)
  for (int64_t m0 = 0; m0 < m; m0 += ITEM_ROWS)
    ef_cpu_pwf_rows(act, x + m0 * i, m - m0 < ITEM_ROWS ? m - m0 : ITEM_ROWS, i, wt, bias, op, y + m0 * o, o, o);
}
