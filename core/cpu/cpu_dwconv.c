// Depthwise convolutions on the CPU by effnet's own kernels, vectorized over channels with the bits of
// core/dwconv.h's twin for any thread count: the forward a row of output points at a time (also
// EXPAND_DW's depthwise half), the filter gradient in fixed splits of dy's rows (details below).
#include <stdio.h>
#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

#define BLOCK 16 // channels a step of a work item sums at once

// The filter gradient: per channel, f32 fmaf sums over dy's rows in fixed splits, each in order of
// (row, ox), then the splits in order, with every tap's sum live at once, parallel over (split, group
// of channel blocks), the blocks taking turns over short runs of rows so that the input stays in
// cache. oneDNN 2.6 runs it through its generic grouped kernel at 1-6 GFLOP/s on the small spatial
// sizes of EfficientNet's late stages (41 of the 180 ms of the main job's step on the Xeon).
//
// Inputs of at most this many points: below, oneDNN 2.6 runs the filter gradient through its
// generic grouped kernel; on B0's 112x112 inputs its jit_dw kernel beats this one (B0 at 224, batch
// 32, on the Xeon, the depthwise convolutions' time a step: 200 ms with this rule, 207 with 32x32,
// 222 with this kernel everywhere; on the AMD EPYC still so for B0's 32 channels at stride 1).
#define OWN_MAX_POINTS (64 * 64)

// With AVX-512, also stride-2 ones of whole channel blocks on larger inputs. On the AMD EPYC, in turn
// with jit_dw: B0 at 224, batch 32, 96 channels at 112x112 took 9.7-10.4 ms against 15.1-15.2; B3 at
// 300, batch 16, 144 at 150x150 14.1-14.2 against 16.7-19.5. An AVX2 build under the cap there: B0's
// 6.1-6.3 against 5.8-6.0 with jit_dw:avx2 (docs/perf.md, "Issue 19, eleventh pass"). The other
// filter gradients that oneDNN has no depthwise kernel for take this one too (ef_cpu_conv_prepare).
bool ef_cpu_dw_own(const ef_tensor *node) {
  if (node->op != EF_OP_CONV2D_BWD_WEIGHT || !ef_dw_is_depthwise(node)) return false;
  bool wide_s2 = false;
#if defined(VEC) && VEC == 16
  wide_s2 = node->p.conv.stride[0] == 2 && node->p.conv.stride[1] == 2 && node->shape[0] % BLOCK == 0;
#endif
  return wide_s2 || node->src[1]->shape[1] * node->src[1]->shape[2] <= OWN_MAX_POINTS;
}

bool ef_cpu_dw_forward_can(const ef_tensor *node) {
  const ef_conv_params *p = &node->p.conv;
  bool folded = node->op == EF_OP_CONV2D_BN && node->n_src == 4; // not gated
  return (node->op == EF_OP_CONV2D || folded) && ef_dw_is_depthwise(node) && p->dilation[0] == 1 && p->dilation[1] == 1;
}

// Inference's folded forwards (3x3 and 5x5, strides 1 and 2) with AVX-512. On the AMD EPYC, in turn
// with oneDNN's brdgmm_dw, the nodes' time a step: B3 at 300, batch 32, 117-122 ms against 147-164;
// at batch 1 4.4-4.8 against 4.8-6.9; B0 at 224, batch 1, 1.14-1.22 against 1.41-1.53; B0 at batch 32
// 23-27 against 26-28 (docs/perf.md, "Issue 19, tenth pass"). With AVX2 alone oneDNN's jit_dw stays
// faster (an AVX2 build on that EPYC, B0's 11 nodes at batch 32: 38-39 ms against 27-35). Plain
// forwards (CONV2D: training's, no bias, no activation) only with 5x5 kernels: B0 at 224, batch 32, its nine 20.9
// and 19.7 ms against 25.3 and 22.6, where its 3x3 ones were 4-25% slower; B3 at 300, batch 16, its
// 5x5 ones on 19x19 and 10x10 maps 7-30% faster, on 38x38 even (docs/perf.md, "Issue 19, eleventh
// pass").
bool ef_cpu_dw_forward_fast(const ef_tensor *node) {
#if defined(VEC) && VEC == 16
  const ef_conv_params *p = &node->p.conv;
  const ef_tensor *w = node->src[1];
  bool k = w->shape[1] == w->shape[2] && (w->shape[1] == 5 || (w->shape[1] == 3 && node->op == EF_OP_CONV2D_BN));
  return ef_cpu_dw_forward_can(node) && k && p->stride[0] == p->stride[1] && (p->stride[1] == 1 || p->stride[1] == 2);
#else
  (void)node;
  return false;
#endif
}

static size_t partial_floats(const ef_dw_shape *s) {
  return (size_t)ef_dw_wgrad_splits(s) * (size_t)(s->kh * s->kw) * (size_t)s->c;
}

// A plain forward's scratch: its weights transposed (KH*KW, C). A folded one (CONV2D_BN) keeps its
// folded weights (KH*KW, C) and bias (C), derived again only where ef_cpu_derive_now says. The filter
// gradient's scratch: the splits' partial sums (splits, KH*KW, C).
ef_status ef_cpu_dw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  (void)cpu;
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  ef_dw_shape sh = ef_dw_shape_of(node);
  size_t wfloats = (size_t)(sh.kh * sh.kw) * (size_t)sh.c;
  s->dw_forward = node->op != EF_OP_CONV2D_BWD_WEIGHT;
  s->dw_filter = !s->dw_forward;
  snprintf(s->impl, sizeof s->impl, "effnet depthwise %s", s->dw_forward ? "forward" : "filter gradient");
  *scratch = node->op == EF_OP_CONV2D              ? sizeof(float) * wfloats
             : node->op == EF_OP_CONV2D_BWD_WEIGHT ? sizeof(float) * partial_floats(&sh)
                                                   : 0;
  if (node->op != EF_OP_CONV2D_BN) return EF_OK;
  s->keep_weights = ef_cpu_from_store(node, 1, 4);
  return ef_cpu_kept_alloc(node, s, sizeof(float) * (wfloats + (size_t)sh.c));
}

// a[l] = fmaf(g[l], x[l], a[l]) for l < lanes: one rounding each, as the twin's fmaf (clang will not
// vectorize fmaf on request), in the widest FMA vectors there are when the block is whole.
static inline __attribute__((always_inline)) void fma_lanes(float *a, const float *g, const float *x, int lanes) {
#if defined(__AVX512F__)
  if (lanes == BLOCK) {
    _mm512_storeu_ps(a, _mm512_fmadd_ps(_mm512_loadu_ps(g), _mm512_loadu_ps(x), _mm512_loadu_ps(a)));
    return;
  }
#elif defined(__FMA__)
  if (lanes == BLOCK) {
    _mm256_storeu_ps(a, _mm256_fmadd_ps(_mm256_loadu_ps(g), _mm256_loadu_ps(x), _mm256_loadu_ps(a)));
    _mm256_storeu_ps(a + 8, _mm256_fmadd_ps(_mm256_loadu_ps(g + 8), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(a + 8)));
    return;
  }
#endif
  for (int l = 0; l < lanes; l++) a[l] = fmaf(g[l], x[l], a[l]);
}

// Adds rows [r0, r1) of dy's (N*OH) to the sums of channels c0 .. c0 + lanes of every tap, kept in
// sums (taps, C) between calls: the points in order of (row, ox), as the twin.
static inline __attribute__((always_inline)) void rows_block(const ef_dw_shape *s, const float *dy, const float *x,
                                                             int64_t r0, int64_t r1, int64_t c0, int lanes,
                                                             float *sums) {
  for (int64_t r = r0; r < r1; r++) {
    int n = (int)(r / s->oh), oy = (int)(r % s->oh);
    for (int ox = 0; ox < s->ow; ox++) {
      const float *g = dy + (r * s->ow + ox) * s->c + c0;
      for (int ky = 0; ky < s->kh; ky++) {
        int iy = oy * s->sh - s->pad_t + ky * s->dh;
        if (iy < 0 || iy >= s->h) continue;
        for (int kx = 0; kx < s->kw; kx++) {
          int ix = ox * s->sw - s->pad_l + kx * s->dw;
          if (ix < 0 || ix >= s->w) continue;
          const float *xv = x + (((int64_t)n * s->h + iy) * s->w + ix) * s->c + c0;
          fma_lanes(sums + (int64_t)(ky * s->kw + kx) * s->c + c0, g, xv, lanes);
        }
      }
    }
  }
}

#ifdef VEC
// rows_block for VEC channels of a K x K kernel (K a constant) with every tap's sum in a vector
// while the rows run, prefetching [pf, pf_end) into L2, pf_per_point lines a point. Masked: a tap
// outside the input adds nothing through vec_fma_if on a clamped, valid address; no update is
// conditional, so GCC keeps the sums in registers (with an `if` around each FMA it keeps them on the
// stack, each point's update waiting on the store of the point before). AVX2's 16 registers hold a
// 3x3's sums, not a 5x5's. Unmasked, the outside taps are skipped: for maps smaller than the kernel,
// where most taps are outside.
static inline __attribute__((always_inline)) void rows_block_k(const ef_dw_shape *s, const float *dy, const float *x,
                                                               int64_t r0, int64_t r1, int64_t c0, float *sums,
                                                               const int K, const bool masked, const char *pf,
                                                               const char *pf_end, int64_t pf_per_point) {
  vec acc[K * K];
  for (int t = 0; t < K * K; t++) acc[t] = vec_load(sums + (int64_t)t * s->c + c0);
  for (int64_t r = r0; r < r1; r++) {
    int n = (int)(r / s->oh), oy = (int)(r % s->oh);
    for (int ox = 0; ox < s->ow; ox++) {
      for (int64_t i = 0; i < pf_per_point && pf < pf_end; i++, pf += 64) __builtin_prefetch(pf, 0, 2);
      vec g = vec_load(dy + (r * s->ow + ox) * s->c + c0);
#pragma GCC unroll 8
      for (int ky = 0; ky < K; ky++) {
        int iy = oy * s->sh - s->pad_t + ky * s->dh;
        bool row = iy >= 0 && iy < s->h;
        const float *xrow = x + ((int64_t)n * s->h + (row ? iy : 0)) * s->w * s->c + c0;
#pragma GCC unroll 8
        for (int kx = 0; kx < K; kx++) {
          int ix = ox * s->sw - s->pad_l + kx * s->dw;
          bool in = row && ix >= 0 && ix < s->w;
          if (masked)
            acc[ky * K + kx] = vec_fma_if(g, vec_load(xrow + (int64_t)(in ? ix : 0) * s->c), acc[ky * K + kx], in);
          else if (in) acc[ky * K + kx] = vec_fma(g, vec_load(xrow + (int64_t)ix * s->c), acc[ky * K + kx]);
        }
      }
    }
  }
  for (int t = 0; t < K * K; t++) vec_store(sums + (int64_t)t * s->c + c0, acc[t]);
}
#endif

// Rows [r0, r1) for channels c0 .. c0 + lanes, into sums (taps, C), prefetching [pf, pf_end) on the
// way (the vector kernels; the scalar one does not). Maps smaller than the kernel (B0's 1x1 and 2x2
// maps under 5x5 kernels: most taps outside) skip the outside taps instead of masking them (a 5x5
// on 1x1 maps, batch 128, 1152 channels: 0.06 against 0.17 ms).
static void rows(const ef_dw_shape *s, const float *dy, const float *x, int64_t r0, int64_t r1, int64_t c0, int lanes,
                 float *sums, const char *pf, const char *pf_end) {
#ifdef VEC
  bool small = s->h < s->kh || s->w < s->kw; // with 8-lane vectors: the block's 16 lanes at once, below
  if (lanes == BLOCK && s->kh == s->kw && (s->kh == 3 || s->kh == 5) && !(small && VEC < BLOCK)) {
    int64_t points = (r1 - r0) * s->ow * (BLOCK / VEC), per = ((pf_end - pf) / 64 + points - 1) / points;
    for (int v = 0; v < BLOCK; v += VEC) {
      const char *p = pf + (pf_end - pf) * v / BLOCK / 64 * 64, *pe = pf + (pf_end - pf) * (v + VEC) / BLOCK / 64 * 64;
      if (s->kh == 3 && !small) rows_block_k(s, dy, x, r0, r1, c0 + v, sums, 3, true, p, pe, per);
      else if (s->kh == 3) rows_block_k(s, dy, x, r0, r1, c0 + v, sums, 3, false, p, pe, per);
      else if (!small) rows_block_k(s, dy, x, r0, r1, c0 + v, sums, 5, true, p, pe, per);
      else rows_block_k(s, dy, x, r0, r1, c0 + v, sums, 5, false, p, pe, per);
    }
    return;
  }
#endif
  (void)pf, (void)pf_end;
  if (lanes == BLOCK) rows_block(s, dy, x, r0, r1, c0, BLOCK, sums);
  else rows_block(s, dy, x, r0, r1, c0, lanes, sums);
}

// Output points per step of a work item: every block of its channels takes these rows before the
// next step, so that their input stays in cache (B0's 8x8 maps at batch 128: a split's input is
// 6 MiB, read again for each block when a block ran its whole split). While a step computes, it
// prefetches the next step's input into L2, a few lines a point: each block reads 64 of a pixel's
// C * 4 bytes, a stride the hardware's prefetchers do not follow. In the main job's step the input
// comes from memory; there this took the depthwise convolutions from 17.9-18.2 to 14.1-14.4 ms.
#define STEP_POINTS 256

// Part `part` of `parts` of the input bytes that dy's rows [ra, rb) read (whole pixels), 64-byte
// aligned, in [*begin, *end): for the step before to prefetch, point by point, while it computes.
static void input_span(const ef_dw_shape *s, const float *x, int64_t ra, int64_t rb, int part, int parts,
                       const char **begin, const char **end) {
  *begin = *end = (const char *)x;
  if (ra >= rb) return;
  int64_t na = ra / s->oh, nb = (rb - 1) / s->oh;
  int64_t ya = (ra % s->oh) * s->sh - s->pad_t, yb = ((rb - 1) % s->oh) * s->sh - s->pad_t + (s->kh - 1) * s->dh;
  ya = ya < 0 ? 0 : ya > s->h - 1 ? s->h - 1 : ya, yb = yb < 0 ? 0 : yb > s->h - 1 ? s->h - 1 : yb;
  int64_t b0 = (na * s->h + ya) * s->w * s->c * 4, b1 = (nb * s->h + yb + 1) * s->w * s->c * 4, n = b1 - b0;
  if (n <= 0) return; // padding past the input: nothing to read
  *begin = (const char *)x + (b0 + n * part / parts) / 64 * 64;
  *end = (const char *)x + (b0 + n * (part + 1) / parts) / 64 * 64;
}

void ef_cpu_dw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)state, (void)ctx;
  ef_dw_shape s = ef_dw_shape_of(node);
  const float *dy = node->src[0]->data, *x = node->src[1]->data; // (N,OH,OW,C), (N,H,W,C)
  float *dw = node->data, *part = scratch;                       // (C,KH,KW,1), (splits, KH*KW, C)
  int splits = ef_dw_wgrad_splits(&s), taps = s.kh * s.kw, blocks = (s.c + BLOCK - 1) / BLOCK;
  // Work items: a split by a group of blocks, enough of them for the threads to share.
  int per = (2 * cpu->threads + splits - 1) / splits, groups = per < blocks ? per : blocks;
  int64_t step = STEP_POINTS / s.ow > 1 ? STEP_POINTS / s.ow : 1;
#pragma omp parallel num_threads(cpu->threads)
  {
#pragma omp for collapse(2) schedule(dynamic)
    for (int k = 0; k < splits; k++)
      for (int gr = 0; gr < groups; gr++) {
        int b0 = (int)((int64_t)blocks * gr / groups), b1 = (int)((int64_t)blocks * (gr + 1) / groups);
        int64_t c0 = (int64_t)b0 * BLOCK, c1 = (int64_t)b1 * BLOCK < s.c ? (int64_t)b1 * BLOCK : s.c, r0, r1;
        float *pk = part + (int64_t)k * taps * s.c;
        for (int t = 0; t < taps; t++) memset(pk + (int64_t)t * s.c + c0, 0, sizeof(float) * (size_t)(c1 - c0));
        ef_dw_wgrad_rows(&s, splits, k, &r0, &r1);
        for (int64_t r = r0; r < r1; r += step)
          for (int64_t c = c0; c < c1; c += BLOCK) {
            const char *pf, *pf_end; // the next step's input, a part for each block of this one
            input_span(&s, x, r + step, r + 2 * step < r1 ? r + 2 * step : r1, (int)((c - c0) / BLOCK),
                       (int)((c1 - c0 + BLOCK - 1) / BLOCK), &pf, &pf_end);
            rows(&s, dy, x, r, r + step < r1 ? r + step : r1, c, c + BLOCK <= c1 ? BLOCK : (int)(c1 - c), pk, pf,
                 pf_end);
          }
      }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < s.c; c++)
      for (int t = 0; t < taps; t++) {
        float total = 0.0f;
        for (int k = 0; k < splits; k++) total += part[((int64_t)k * taps + t) * s.c + c];
        dw[c * taps + t] = total;
      }
  }
}

// ---- forward ---------------------------------------------------------------------------------
// A row of output points for a range of channels, a block of one vector's channels at a time: each
// point's taps inside the input in the twin's order (ky, kx), an FMA each from 0, + bias, then the
// activation. Groups of points share their loads (dw_points). The loops exist once per kernel size
// and stride, with swish in registers and without: the other activations follow in a second pass over
// the block's row while it is in L1. Specialized per activation as well, the groups took this file 4
// minutes to compile (docs/perf.md, eighth pass); a pass for swish too cost 11-17% on two B3 shapes.

#ifdef VEC
#if VEC == 16
#define DW_POINTS 8      // points at once: their sums, a tap row's 5 weights and an input column in registers
typedef __mmask16 lanes; // the block's channels: all 16, or the first n of a part vector
EF_INLINE lanes lanes_of(int n) { return (lanes)((1u << n) - 1); }
EF_INLINE vec lane_load(const float *p, lanes m) { return _mm512_maskz_loadu_ps(m, p); }
EF_INLINE void lane_store(float *p, vec v, lanes m) { _mm512_mask_storeu_ps(p, m, v); }
#else
#define DW_POINTS 4 // AVX2's 16 registers
typedef int lanes; // whole vectors only: AVX2's masked loads take an ALU port; part vectors go by dw_each
EF_INLINE lanes lanes_of(int n) { return n; }
EF_INLINE vec lane_load(const float *p, lanes m) { return (void)m, vec_load(p); }
EF_INLINE void lane_store(float *p, vec v, lanes m) { (void)m, vec_store(p, v); }
#endif

// count points of n channels at y, stride floats apart, through act in place (act_block: act a constant).
EF_INLINE void act_points(const ef_act act, float *y, int count, int64_t stride, int n) {
  for (int i = 0; i < count; i++) vec_store_upto(y + i * stride, vec_act_fwd(act, vec_load_upto(y + i * stride, n)), n);
}

static void act_block(ef_act act, float *y, int count, int64_t stride, int n) {
  EF_ACT_SPECIALIZE(act, act_points, y, count, stride, n);
}

// Points [ox, ox + P) of the row (P, K and SW constants), channels [c, c + n) where rp[ky] (tap row
// ky's input), wt and y already point at channel c: each point its own chain of FMAs, the P chains
// interleaved (one chain alone waits on the FMA's latency). A tap row's K weights are loaded once for
// the P points, and each of its input columns once: column j feeds point p's tap kx = j - p SW. Tap
// rows outside the input (rin) and columns outside it are skipped, as the twin skips them.
EF_INLINE void dw_points(const ef_act act, const ef_dw_shape *s, const float *const *rp, const bool *rin, int64_t ld,
                         const float *wt, int64_t ldw, vec b, lanes m, float *y, int ox, const int K, const int SW,
                         const int P) {
  const int ix0 = ox * SW - s->pad_l;
  vec acc[DW_POINTS], wk[5]; // sized by P and K they would be VLAs to GCC, on the stack, not in registers
#pragma GCC unroll 8
  for (int p = 0; p < P; p++) acc[p] = vec_bcast(0.0f);
#pragma GCC unroll 5
  for (int ky = 0; ky < K; ky++) {
    if (!rin[ky]) continue;
#pragma GCC unroll 5
    for (int kx = 0; kx < K; kx++) wk[kx] = lane_load(wt + (int64_t)(ky * K + kx) * ldw, m);
#pragma GCC unroll 32
    for (int j = 0; j < (P - 1) * SW + K; j++) {
      if ((unsigned)(ix0 + j) >= (unsigned)s->w) continue;
      vec v = lane_load(rp[ky] + (int64_t)(ix0 + j) * ld, m);
#pragma GCC unroll 8
      for (int p = 0; p < P; p++) {
        const int kx = j - p * SW;
        if (kx >= 0 && kx < K) acc[p] = vec_fma(v, wk[kx], acc[p]);
      }
    }
  }
#pragma GCC unroll 8
  for (int p = 0; p < P; p++) lane_store(y + (int64_t)(ox + p) * s->c, vec_act_fwd(act, vec_add(acc[p], b)), m);
}

// The row's points by dw_points: DW_POINTS at a time, the rest in groups of half as many, the last one
// ending at the row's end (over points before it again: the same bits); one at a time on rows
// shorter than half a group.
EF_INLINE void dw_groups(const ef_act act, const ef_dw_shape *s, const float *const *rp, const bool *rin, int64_t ld,
                         const float *wt, int64_t ldw, vec b, lanes m, float *y, const int K, const int SW) {
  const int ow = s->ow, half = DW_POINTS / 2;
  if (ow < half) {
    for (int ox = 0; ox < ow; ox++) dw_points(act, s, rp, rin, ld, wt, ldw, b, m, y, ox, K, SW, 1);
    return;
  }
  int ox = 0;
  for (; ox + DW_POINTS <= ow; ox += DW_POINTS) dw_points(act, s, rp, rin, ld, wt, ldw, b, m, y, ox, K, SW, DW_POINTS);
  for (; ox < ow; ox += half)
    dw_points(act, s, rp, rin, ld, wt, ldw, b, m, y, ox + half <= ow ? ox : ow - half, K, SW, half);
}

// Any kernel size and stride, and AVX2's part vectors: a point at a time, one chain.
static void dw_each(const ef_dw_shape *s, const float *const *rp, const bool *rin, int64_t ld, const float *wt,
                    int64_t ldw, vec b, int n, float *y) {
  for (int ox = 0; ox < s->ow; ox++) {
    const int ix0 = ox * s->sw - s->pad_l;
    vec acc = vec_bcast(0.0f);
    for (int ky = 0; ky < s->kh; ky++)
      for (int kx = 0; kx < s->kw && rin[ky]; kx++)
        if ((unsigned)(ix0 + kx) < (unsigned)s->w)
          acc = vec_fma(vec_load_upto(rp[ky] + (int64_t)(ix0 + kx) * ld, n),
                        vec_load_upto(wt + (int64_t)(ky * s->kw + kx) * ldw, n), acc);
    vec_store_upto(y + (int64_t)ox * s->c, vec_add(acc, b), n);
  }
}

// ef_cpu_dw_row by groups where K (the kernel's size) is 3 or 5 and SW (the column stride) 1 or 2, the
// activation A (swish or none) in their registers and act, where it is another, after.
EF_INLINE void dw_row(ef_act act, const ef_dw_shape *s, const float *in, int64_t ld, int iy0, int iy1, int oy,
                      const float *wt, int64_t ldw, const float *bias, int64_t c0, int64_t c1, float *y, const int K,
                      const int SW, const ef_act A) {
  const int iyb = oy * s->sh - s->pad_t;
  const float *rp[s->kh];
  bool rin[s->kh];
  for (int ky = 0; ky < s->kh; ky++) {
    rin[ky] = iyb + ky >= iy0 && iyb + ky < iy1;
    rp[ky] = in + (int64_t)((rin[ky] ? iyb + ky : iy0) - iy0) * s->w * ld;
  }
  for (int64_t c = c0; c < c1; c += VEC) {
    const int n = c1 - c < VEC ? (int)(c1 - c) : VEC;
    const float *rc[s->kh];
    for (int ky = 0; ky < s->kh; ky++) rc[ky] = rp[ky] + c;
    // Without a bias, + -0: it leaves every sum's bits, -0 included (a product that underflows
    // rounds to a zero of its sign; + +0 would turn -0 into +0, where the twin adds nothing).
    vec b = bias ? vec_load_upto(bias + c, n) : vec_bcast(-0.0f);
    if (K && (VEC == 16 || n == VEC)) {
      dw_groups(A, s, rc, rin, ld, wt + c, ldw, b, lanes_of(n), y + c, K, SW);
      if (act != A) act_block(act, y + c, s->ow, s->c, n);
    } else {
      dw_each(s, rc, rin, ld, wt + c, ldw, b, n, y + c);
      if (act != EF_ACT_NONE) act_block(act, y + c, s->ow, s->c, n);
    }
  }
}
#else
// The same, a channel at a time.
EF_INLINE void dw_row(ef_act act, const ef_dw_shape *s, const float *in, int64_t ld, int iy0, int iy1, int oy,
                      const float *wt, int64_t ldw, const float *bias, int64_t c0, int64_t c1, float *y, const int K,
                      const int SW, const ef_act A) {
  (void)K, (void)SW, (void)A;
  for (int64_t c = c0; c < c1; c++)
    for (int ox = 0; ox < s->ow; ox++) {
      float acc = 0.0f;
      for (int ky = 0; ky < s->kh; ky++) {
        int iy = oy * s->sh - s->pad_t + ky;
        for (int kx = 0; kx < s->kw; kx++) {
          int ix = ox * s->sw - s->pad_l + kx;
          if (iy >= iy0 && iy < iy1 && ix >= 0 && ix < s->w)
            acc = fmaf(in[((int64_t)(iy - iy0) * s->w + ix) * ld + c], wt[(int64_t)(ky * s->kw + kx) * ldw + c], acc);
        }
      }
      if (bias) acc += bias[c];
      y[ox * s->c + c] = ef_act_fwd(act, acc);
    }
}
#endif

// dw_row's groups in two kinds: swish (EfficientNet's) in registers, or the activation after.
#define DW_ROW(...)                                                                                                    \
  do {                                                                                                                 \
    if (act == EF_ACT_SWISH)                                                                                           \
      dw_row(act, s, in, ld, iy0, iy1, oy, wt, ldw, bias, c0, c1, y, __VA_ARGS__, EF_ACT_SWISH);                       \
    else dw_row(act, s, in, ld, iy0, iy1, oy, wt, ldw, bias, c0, c1, y, __VA_ARGS__, EF_ACT_NONE);                     \
  } while (0)

void ef_cpu_dw_row(ef_act act, const ef_dw_shape *s, const float *in, int64_t ld, int iy0, int iy1, int oy,
                   const float *wt, int64_t ldw, const float *bias, int64_t c0, int64_t c1, float *y) {
  int k = s->kh == s->kw && (s->kh == 3 || s->kh == 5) && (s->sw == 1 || s->sw == 2) ? s->kh : 0;
  if (k == 3 && s->sw == 1) DW_ROW(3, 1);
  else if (k == 3) DW_ROW(3, 2);
  else if (k == 5 && s->sw == 1) DW_ROW(5, 1);
  else if (k == 5) DW_ROW(5, 2);
  else dw_row(act, s, in, ld, iy0, iy1, oy, wt, ldw, bias, c0, c1, y, 0, 0, EF_ACT_NONE);
}

// Work items: an output row (n, oy) by a group of channel blocks, at least 8 items a thread where the
// channels allow (B3's 10x10 maps on one image: 10 rows), taken by a thread in runs of an eighth of its
// share, so that a row finds the input rows it shares with the one before in its core's L2. In runs of
// one row (the rows alternating between the threads) B3's 38x38x288 5x5 forwards at batch 32 took
// 14.8 against 8.9 ms (2 threads; its 150x150x40 3x3 24.8 against 17.9).
void ef_cpu_dw_forward_on(int threads, ef_act act, const ef_dw_shape *s, const float *x, const float *w,
                          const float *bias, float *wt, float *y) {
  int taps = s->kh * s->kw;
  int64_t n_rows = (int64_t)s->n * s->oh, vecs = (s->c + BLOCK - 1) / BLOCK, want = 8 * threads;
  int64_t groups = n_rows >= want ? 1 : (want + n_rows - 1) / n_rows < vecs ? (want + n_rows - 1) / n_rows : vecs;
  int64_t chunk = n_rows * groups / want > 1 ? n_rows * groups / want : 1;
#pragma omp parallel num_threads(threads)
  {
    if (w) {
#pragma omp for schedule(static)
      for (int t = 0; t < taps; t++) // wt (KH*KW, C): the twin's ef_dw_weights_t, on the threads
        for (int64_t c = 0; c < s->c; c++) wt[t * s->c + c] = w[c * taps + t];
    }
#pragma omp for collapse(2) schedule(dynamic, chunk)
    for (int64_t r = 0; r < n_rows; r++)
      for (int64_t gr = 0; gr < groups; gr++) {
        int64_t n = r / s->oh, c0 = vecs * gr / groups * BLOCK, c1 = vecs * (gr + 1) / groups * BLOCK;
        ef_cpu_dw_row(act, s, x + n * s->h * s->w * s->c, s->c, 0, s->h, (int)(r % s->oh), wt, s->c, bias, c0,
                      c1 < s->c ? c1 : s->c, y + r * s->ow * s->c);
      }
  }
}

void ef_cpu_dw_forward(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  ef_dnnl_node *st = state;
  ef_dw_shape s = ef_dw_shape_of(node);
  const float *x = node->src[0]->data;
  if (node->op == EF_OP_CONV2D) {
    ef_cpu_dw_forward_on(cpu->threads, EF_ACT_NONE, &s, x, node->src[1]->data,
                         node->n_src == 3 ? node->src[2]->data : NULL, scratch, node->data);
    return;
  }
  float *wt = st->kept_w, *bias = wt + (int64_t)s.kh * s.kw * s.c;
  if (ef_cpu_derive_now(st, ctx))
    ef_cpu_fold(node->src[1], node->src[2], node->src[3], node->p.conv.bn_eps, wt, 1, s.c, bias);
  ef_cpu_dw_forward_on(cpu->threads, node->p.conv.act, &s, x, NULL, bias, wt, node->data);
}
