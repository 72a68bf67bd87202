// Depthwise filter gradients on the CPU: the arithmetic of core/dwconv.h's twin (per channel, f32
// fmaf sums over dy's rows in fixed splits, each in order of (row, ox), then the splits in order),
// vectorized over 16 channels with every tap's sum live at once, and parallel over (split, channel
// block): the same bits as ef_dw_bwd_filter_twin for any thread count. oneDNN 2.6 runs these through
// its generic grouped kernel at 1-6 GFLOP/s on the small spatial sizes of EfficientNet's late stages
// (41 of the 180 ms of the main job's step on the Xeon).
#include <omp.h>
#include <stdio.h>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "core/cpu/cpu_internal.h"
#include "core/dwconv.h"

#define BLOCK 16 // channels per work item

// Inputs of at most this many points: below, oneDNN 2.6 runs the filter gradient through its
// generic grouped kernel; on B0's 112x112 inputs its jit_dw kernel beats this one (B0 at 224, batch
// 32, on the Xeon, the depthwise convolutions' time a step: 200 ms with this rule, 207 with 32x32,
// 222 with this kernel everywhere).
#define OWN_MAX_POINTS (64 * 64)

bool ef_cpu_dw_own(const ef_tensor *node) {
  return node->op == EF_OP_CONV2D_BWD_WEIGHT && ef_dw_is_depthwise(node) &&
         node->src[1]->shape[1] * node->src[1]->shape[2] <= OWN_MAX_POINTS;
}

static size_t partial_floats(const ef_dw_shape *s) {
  return (size_t)ef_dw_wgrad_splits(s) * (size_t)(s->kh * s->kw) * (size_t)s->c;
}

// Scratch: the splits' partial sums (splits, KH*KW, C), then each thread's running sums (KH*KW, BLOCK).
ef_status ef_cpu_dw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  snprintf(s->impl, sizeof s->impl, "effnet depthwise filter gradient");
  ef_dw_shape sh = ef_dw_shape_of(node);
  *scratch = sizeof(float) * (partial_floats(&sh) + (size_t)cpu->threads * (size_t)(sh.kh * sh.kw * BLOCK));
  return EF_OK;
}

// a[l] = fmaf(g[l], x[l], a[l]) for l < lanes: one rounding each, as the twin's fmaf (the build's
// ISO C mode contracts nothing, and clang will not vectorize fmaf on request), in the widest FMA
// vectors there are when the block is whole.
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

// Split k's sums for channels c0 .. c0 + lanes of every tap into part (taps, C): acc holds them all.
static inline __attribute__((always_inline)) void split_block(const ef_dw_shape *s, const float *dy, const float *x,
                                                              int splits, int k, int64_t c0, int lanes, float *acc,
                                                              float *part) {
  int taps = s->kh * s->kw;
  for (int i = 0; i < taps * BLOCK; i++) acc[i] = 0.0f;
  int64_t r0, r1;
  ef_dw_wgrad_rows(s, splits, k, &r0, &r1);
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
          float *a = acc + (ky * s->kw + kx) * BLOCK;
          fma_lanes(a, g, xv, lanes);
        }
      }
    }
  }
  for (int t = 0; t < taps; t++)
    for (int l = 0; l < lanes; l++) part[(int64_t)t * s->c + c0 + l] = acc[t * BLOCK + l];
}

#if defined(__AVX512F__)
// split_block for a whole block of a K x K kernel (K a constant) with every tap's sum in a register:
// with the sums in memory, each point waited on the store of the point before (two thirds of the
// time went to that store).
static inline __attribute__((always_inline)) void split_block_k(const ef_dw_shape *s, const float *dy, const float *x,
                                                                int splits, int k, int64_t c0, float *part,
                                                                const int K) {
  __m512 acc[K * K];
  for (int t = 0; t < K * K; t++) acc[t] = _mm512_setzero_ps();
  int64_t r0, r1;
  ef_dw_wgrad_rows(s, splits, k, &r0, &r1);
  for (int64_t r = r0; r < r1; r++) {
    int n = (int)(r / s->oh), oy = (int)(r % s->oh);
    for (int ox = 0; ox < s->ow; ox++) {
      __m512 g = _mm512_loadu_ps(dy + (r * s->ow + ox) * s->c + c0);
#pragma GCC unroll 8
      for (int ky = 0; ky < K; ky++) {
        int iy = oy * s->sh - s->pad_t + ky * s->dh;
        bool row = iy >= 0 && iy < s->h;
#pragma GCC unroll 8
        for (int kx = 0; kx < K; kx++) {
          int ix = ox * s->sw - s->pad_l + kx * s->dw;
          if (row && ix >= 0 && ix < s->w)
            acc[ky * K + kx] = _mm512_fmadd_ps(
                g, _mm512_loadu_ps(x + (((int64_t)n * s->h + iy) * s->w + ix) * s->c + c0), acc[ky * K + kx]);
        }
      }
    }
  }
  for (int t = 0; t < K * K; t++) _mm512_storeu_ps(part + (int64_t)t * s->c + c0, acc[t]);
}
#endif

// Split k's sums for channels c0 .. c0 + lanes into part.
static void split(const ef_dw_shape *s, const float *dy, const float *x, int splits, int k, int64_t c0, int lanes,
                  float *acc, float *part) {
#if defined(__AVX512F__)
  if (lanes == BLOCK && s->kh == s->kw && s->kh == 3) return split_block_k(s, dy, x, splits, k, c0, part, 3);
  if (lanes == BLOCK && s->kh == s->kw && s->kh == 5) return split_block_k(s, dy, x, splits, k, c0, part, 5);
#endif
  if (lanes == BLOCK) split_block(s, dy, x, splits, k, c0, BLOCK, acc, part);
  else split_block(s, dy, x, splits, k, c0, lanes, acc, part);
}

void ef_cpu_dw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)state, (void)ctx;
  ef_dw_shape s = ef_dw_shape_of(node);
  const float *dy = node->src[0]->data, *x = node->src[1]->data; // (N,OH,OW,C), (N,H,W,C)
  float *dw = node->data, *part = scratch;                       // (C,KH,KW,1), (splits, KH*KW, C)
  int splits = ef_dw_wgrad_splits(&s), taps = s.kh * s.kw, blocks = (s.c + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(cpu->threads)
  {
    float *acc = part + (size_t)splits * taps * s.c + (size_t)omp_get_thread_num() * taps * BLOCK;
#pragma omp for collapse(2) schedule(dynamic)
    for (int k = 0; k < splits; k++)
      for (int b = 0; b < blocks; b++) {
        int64_t c0 = (int64_t)b * BLOCK;
        float *pk = part + (int64_t)k * taps * s.c;
        split(&s, dy, x, splits, k, c0, c0 + BLOCK <= s.c ? BLOCK : (int)(s.c - c0), acc, pk);
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
