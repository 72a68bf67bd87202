// Pointwise filter gradients on the CPU over many rows: dW (O,I) = dy^T (O,M) x (M,I), dy (M,O) and x
// (M,I) row-major, for the 1x1 convolutions of EfficientNet's early stages. Register tiles of OB
// outputs by one or two vectors of inputs sum the rows of fixed chunks (their count set by the
// shape alone), each row in order by one FMA, a short step of rows at a time while the next step is
// prefetched; the chunks are then added in order: the same bits for any thread count and vector
// width.
#include <stdio.h>
#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

// Where this kernel runs instead of oneDNN 2.6's matmul, which reads dy transposed: at least
// OWN_MIN_ROWS rows, at most OWN_MAX_OUT outputs (O*I). Per node on the Xeon, in the training step:
// B0 at 32x32, batch 128, the ten nodes of 2048-32768 rows, 4.3 -> 3.3 ms; B0 at 224, batch 32, the
// ten of 25088-401408 rows, 61 -> 44 ms. With larger outputs oneDNN is faster (672 x 112 on 6272
// rows: 3.5 against 4.2 ms).
#define OWN_MIN_ROWS 2048
#define OWN_MAX_OUT 24576
// Chunks of rows: one per CHUNK_ROWS rows, at most MAX_CHUNKS (their partial sums: at most 64 x
// 24576 floats, 6 MiB of scratch).
#define CHUNK_ROWS 512
#define MAX_CHUNKS 64
_Static_assert(OWN_MIN_ROWS >= CHUNK_ROWS, "every node this kernel takes has a whole chunk");

static int64_t chunks(int64_t m) { return m / CHUNK_ROWS < MAX_CHUNKS ? m / CHUNK_ROWS : MAX_CHUNKS; }

ef_status ef_cpu_pw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  (void)cpu;
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  snprintf(s->impl, sizeof s->impl, "effnet pointwise filter gradient");
  int64_t m = ef_rows(node->src[0]), o = node->shape[0], i = node->shape[3];
  *scratch = sizeof(float) * (size_t)(chunks(m) * o * i);
  return EF_OK;
}

// Outputs a tile: 16 sums in registers, of AVX-512's 32 (or AVX2's 16).
#ifdef VEC
#define OB (VEC / 2)
#endif

#ifdef OB
// Prefetches [*pf, end) into L2, n lines, moving *pf on.
static inline __attribute__((always_inline)) void prefetch_lines(const char **pf, const char *end, int64_t n) {
  for (int64_t k = 0; k < n && *pf < end; k++, *pf += 64) __builtin_prefetch(*pf, 0, 2);
}

// part[o0 .. o0+OB, i0 .. i0+w) += the sums over rows [r0, r1), one FMA a row in order, in nv vectors
// (a constant: 2, or 1 where w <= VEC); w <= nv * VEC. Prefetches [*pf, pf_end) on the way,
// pf_per_row lines a row.
static inline __attribute__((always_inline)) void tile_nv(const float *dy, const float *x, int64_t o, int64_t i,
                                                          int64_t r0, int64_t r1, int64_t o0, int64_t i0, int w,
                                                          float *part, const char **pf, const char *pf_end,
                                                          int64_t pf_per_row, const int nv) {
  int n[2] = {w < VEC ? w : VEC, w < VEC ? 0 : w - VEC};
  vec acc[2 * OB];
#pragma GCC unroll 16
  for (int t = 0; t < OB * nv; t++) acc[t] = vec_load_n(part + (o0 + t / nv) * i + i0 + t % nv * VEC, n[t % nv]);
  for (int64_t r = r0; r < r1; r++) {
    prefetch_lines(pf, pf_end, pf_per_row);
    const float *xr = x + r * i + i0, *g = dy + r * o + o0;
    vec xv[2];
    for (int v = 0; v < nv; v++) xv[v] = vec_load_n(xr + v * VEC, n[v]);
#pragma GCC unroll 16
    for (int t = 0; t < OB * nv; t++) acc[t] = vec_fma(vec_bcast(g[t / nv]), xv[t % nv], acc[t]);
  }
#pragma GCC unroll 16
  for (int t = 0; t < OB * nv; t++) vec_store_n(part + (o0 + t / nv) * i + i0 + t % nv * VEC, acc[t], n[t % nv]);
}

static void tile(const float *dy, const float *x, int64_t o, int64_t i, int64_t r0, int64_t r1, int64_t o0, int64_t i0,
                 int w, float *part, const char **pf, const char *pf_end, int64_t pf_per_row) {
  if (w <= VEC) tile_nv(dy, x, o, i, r0, r1, o0, i0, w, part, pf, pf_end, pf_per_row, 1);
  else tile_nv(dy, x, o, i, r0, r1, o0, i0, w, part, pf, pf_end, pf_per_row, 2);
}

bool ef_cpu_pw_own(const ef_tensor *node) {
  return node->op == EF_OP_CONV2D_BWD_WEIGHT && ef_cpu_pointwise(node) && ef_rows(node->src[0]) >= OWN_MIN_ROWS &&
         node->shape[0] * node->shape[3] <= OWN_MAX_OUT;
}

// The same for outputs [o0, o1), inputs [i0, i0 + w): the rows in order, one fmaf each.
static void tile_scalar(const float *dy, const float *x, int64_t o, int64_t i, int64_t r0, int64_t r1, int64_t o0,
                        int64_t o1, int64_t i0, int w, float *part) {
  for (int64_t a = o0; a < o1; a++)
    for (int64_t b = i0; b < i0 + w; b++) {
      float acc = part[a * i + b];
      for (int64_t r = r0; r < r1; r++) acc = fmaf(dy[r * o + a], x[r * i + b], acc);
      part[a * i + b] = acc;
    }
}

// Rows a step of a chunk: every tile takes them before the next step, so that they stay in cache,
// while the step prefetches the next one's rows (whole rows of x and dy: contiguous, where a tile
// reads 128 bytes of each of x's rows, a stride the hardware's prefetchers do not follow).
#define STEP_ROWS 64

// Rows [r, re) into a chunk's partial sums pc, tile by tile, prefetching rows [re, rn) of x, then
// of dy, a share during each tile.
static void step(const float *dy, const float *x, int64_t o, int64_t i, int64_t r, int64_t re, int64_t rn, float *pc) {
  int64_t wide = 2 * VEC, icols = (i + wide - 1) / wide;
  const char *pf[2] = {(const char *)(x + re * i), (const char *)(dy + re * o)};
  const char *pe[2] = {(const char *)(x + rn * i), (const char *)(dy + rn * o)};
  int64_t tiles = icols * (o / OB), lines = (pe[0] - pf[0] + pe[1] - pf[1]) / 64 + 2;
  int64_t per_row = tiles ? (lines + tiles * (re - r) - 1) / (tiles * (re - r)) : 0;
  for (int64_t ic = 0; ic < icols; ic++) {
    int64_t i0 = ic * wide, a = 0;
    int w = (int)(i - i0 < wide ? i - i0 : wide);
    for (; a + OB <= o; a += OB) {
      int k = pf[0] < pe[0] ? 0 : 1;
      tile(dy, x, o, i, r, re, a, i0, w, pc, &pf[k], pe[k], per_row);
    }
    tile_scalar(dy, x, o, i, r, re, a, o, i0, w, pc); // outputs past the last whole tile
  }
}

void ef_cpu_pw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)state, (void)ctx;
  const float *dy = node->src[0]->data, *x = node->src[1]->data; // (M,O), (M,I)
  float *dw = node->data, *part = scratch;                       // (O,I), (chunks, O, I)
  int64_t m = ef_rows(node->src[0]), o = node->shape[0], i = node->shape[3], nch = chunks(m);
  int64_t per = (m + nch - 1) / nch;
#pragma omp parallel num_threads(cpu->threads)
  {
#pragma omp for schedule(dynamic)
    for (int64_t ch = 0; ch < nch; ch++) {
      int64_t r0 = ch * per < m ? ch * per : m, r1 = r0 + per < m ? r0 + per : m;
      float *pc = part + ch * o * i;
      memset(pc, 0, sizeof(float) * (size_t)(o * i));
      for (int64_t r = r0; r < r1; r += STEP_ROWS) {
        int64_t re = r + STEP_ROWS < r1 ? r + STEP_ROWS : r1;
        step(dy, x, o, i, r, re, re + STEP_ROWS < r1 ? re + STEP_ROWS : r1, pc);
      }
    }
#pragma omp for schedule(static)
    for (int64_t e = 0; e < o * i; e++) {
      float total = part[e];
      for (int64_t ch = 1; ch < nch; ch++) total += part[ch * o * i + e];
      dw[e] = total;
    }
  }
}
#else
// Without FMA vectors only the scalar loop would run, far slower than oneDNN: no node is taken.
bool ef_cpu_pw_own(const ef_tensor *node) {
  (void)node;
  return false;
}

void ef_cpu_pw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)cpu, (void)state, (void)scratch, (void)ctx;
  EF_FATAL("node '%s': no pointwise filter-gradient kernel without FMA vectors", node->name);
}
#endif
