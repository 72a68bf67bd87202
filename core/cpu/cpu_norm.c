// Batch norm on the CPU over rows of (R = N*H*W, C) NHWC data: batch statistics (one pass, shifted
// sums in double), the affine transform with a fused activation, the two backward kernels, the
// running-statistics update, and the per-channel row sum used for bias gradients.
// Row reductions use fixed chunks (core/cpu/cpu_internal.h): results do not depend on threads.
// Within a chunk, each call adds ROWS rows' terms (summed in double; the backward reduction for swish
// and sigmoid, in vectors, VROWS rows' in f32) to the partial sums at once:
// half the partials' loads and stores, which bounded the backward reduction (B0 at 224 on the Xeon:
// 265 -> 167 ms a step). Threads take tiles of a chunk's rows by a block of channels, so that
// few rows of many channels (B0's late stages) still split over threads with few chunks.
#include <string.h>

#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

#define F(t) ((float *)(t)->data)

// Scratch layout: per-chunk partials of up to two per-channel sums (double [chunks][2][C]), their
// totals (double [2][C]), then four f32 per-channel coefficient rows ([4][C]).
ef_status ef_cpu_rows_scratch(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  const ef_tensor *x = node->src[node->op == EF_OP_BN_BWD_REDUCE || node->op == EF_OP_BN_BWD_DATA ? 1 : 0];
  size_t c = (size_t)ef_cols(x);
  *scratch = ((size_t)ef_cpu_chunks(ef_rows(x)) + 1) * 2 * c * sizeof(double) + 4 * c * sizeof(float);
  return EF_OK;
}

static double *totals(void *scratch, int64_t rows, int64_t c) {
  return (double *)scratch + ef_cpu_chunks(rows) * 2 * c;
}

static float *coeff_rows(void *scratch, int64_t rows, int64_t c) { return (float *)(totals(scratch, rows, c) + 2 * c); }

// Adds the chunks' partials part[ch][j][k] (j < nsum) in order into out[j][k], scaled.
static void sum_chunks(const double *part, int64_t nch, int nsum, int64_t c, double *out) {
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < c; k++)
    for (int j = 0; j < nsum; j++) {
      double acc = 0;
      for (int64_t ch = 0; ch < nch; ch++) acc += part[(ch * nsum + j) * c + k];
      out[j * c + k] = acc;
    }
}

// Adds the contributions of rows [r0, r1), channels [k0, k1), to `nsum` per-channel sums s[k], s[c + k]:
// per channel, ROWS rows' terms at a time summed in order in double, then added to the sum.
#define ROWS 2
typedef void (*row_sums_fn)(const void *args, int64_t r0, int64_t r1, int64_t k0, int64_t k1, double *s);

// Tiles wanted for two threads' shares to even out: when the chunks are fewer, each chunk's channels
// are split into blocks (whole vectors, at least TILE_COLS wide).
#define MIN_TILES 16
#define TILE_COLS 64

// Per-channel sums over all rows: each chunk of rows accumulates into its own partials, then the
// chunks are added in order. Returns the totals (nsum rows of c), kept in the scratch.
static const double *chunked_row_sums(int64_t rows, int64_t c, int nsum, void *scratch, row_sums_fn fn,
                                      const void *args) {
  int64_t nch = ef_cpu_chunks(rows), per = (MIN_TILES + nch - 1) / nch, cols = ((c + per - 1) / per + 15) / 16 * 16;
  cols = cols < TILE_COLS ? TILE_COLS : cols;
  int64_t ncb = (c + cols - 1) / cols;
  double *part = scratch, *sums = totals(scratch, rows, c);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < nch * ncb; t++) {
    int64_t ch = t / ncb, k0 = t % ncb * cols, k1 = k0 + cols < c ? k0 + cols : c, r0, r1;
    double *s = part + ch * nsum * c;
    for (int j = 0; j < nsum; j++) memset(s + j * c + k0, 0, sizeof(double) * (size_t)(k1 - k0));
    ef_cpu_chunk_range(rows, ch, &r0, &r1);
    fn(args, r0, r1, k0, k1, s);
  }
  sum_chunks(part, nch, nsum, c, sums);
  return sums;
}

typedef struct {
  const float *x;
  int64_t c;
} rows_args;

// Shifted sums for the statistics: x - x[0] and its square.
EF_INLINE void stats_rows_n(const rows_args *a, int64_t r, int n, int64_t k0, int64_t k1, double *s) {
  const float *x = a->x, *xr = a->x + r * a->c;
  for (int64_t k = k0; k < k1; k++) {
    double d = 0, q = 0;
    for (int i = 0; i < n; i++) {
      double v = (double)xr[i * a->c + k] - x[k];
      d += v, q += v * v;
    }
    s[k] += d;
    s[a->c + k] += q;
  }
}

static void stats_rows(const void *args, int64_t r0, int64_t r1, int64_t k0, int64_t k1, double *s) {
  int64_t r = r0;
  for (; r + ROWS <= r1; r += ROWS) stats_rows_n(args, r, ROWS, k0, k1, s); // a constant count: the rows unroll
  if (r < r1) stats_rows_n(args, r, (int)(r1 - r), k0, k1, s);
}

// (2,C) [mean; biased variance], from sums of x - x[0] (shifted, so no cancellation).
void ef_cpu_bn_stats(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *xt = node->src[0];
  const float *x = F(xt);
  float *out = F(node);
  int64_t rows = ef_rows(xt), c = ef_cols(xt);
  const double *sums = chunked_row_sums(rows, c, 2, scratch, stats_rows, &(rows_args){x, c});
  for (int64_t k = 0; k < c; k++) {
    double m = sums[k] / (double)rows, var = sums[c + k] / (double)rows - m * m;
    out[k] = (float)(x[k] + m);
    out[c + k] = (float)(var > 0 ? var : 0);
  }
}

// Per channel: invstd, and the affine transform z = x * scale + shift of the normalized input.
static void bn_coeffs(const ef_tensor *node, const float *stats, const float *affine, int64_t c, float *invstd,
                      float *scale, float *shift) {
  double eps = node->p.bn.eps;
  for (int64_t k = 0; k < c; k++) {
    double is = 1.0 / sqrt((double)stats[c + k] + eps), sc = affine[k] * is;
    invstd[k] = (float)is;
    scale[k] = (float)sc;
    shift[k] = (float)(affine[c + k] - stats[k] * sc);
  }
}

// One row of y = act(x * scale + shift).
EF_INLINE void bn_row(ef_act a, const float *x, float *y, int64_t c, const float *scale, const float *shift) {
#ifdef VEC
  // Swish and sigmoid in vectors (vec_act_fwd: AVX-512's reciprocal estimate and AVX2's divide,
  // where GCC's loop divided and blended ef_expf's clamps). An AVX2 build under ONEDNN_MAX_CPU_ISA=AVX2
  // on the AMD EPYC: the main job's step spent 13.1-13.7 ms in bn, 6.9-7.3 this way (docs/perf.md,
  // "Issue 19, seventh pass").
  if (a == EF_ACT_SWISH || a == EF_ACT_SIGMOID) {
    for (int64_t k = 0; k < c; k += VEC) {
      int m = c - k < VEC ? (int)(c - k) : VEC;
      vec z = vec_fma(vec_load_upto(x + k, m), vec_load_upto(scale + k, m), vec_load_upto(shift + k, m));
      vec_store_upto(y + k, vec_act_fwd(a, z), m);
    }
    return;
  }
#endif
  for (int64_t k = 0; k < c; k++) y[k] = ef_act_fwd(a, x[k] * scale[k] + shift[k]);
}

void ef_cpu_bn(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *xt = node->src[0];
  const float *x = F(xt);
  float *y = F(node);
  int64_t rows = ef_rows(xt), c = ef_cols(xt);
  float *invstd = coeff_rows(scratch, rows, c), *scale = invstd + c, *shift = scale + c;
  bn_coeffs(node, F(node->src[1]), F(node->src[2]), c, invstd, scale, shift);
  ef_act a = node->p.bn.act;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) EF_ACT_SPECIALIZE(a, bn_row, x + r * c, y + r * c, c, scale, shift);
}

// The gradient at the normalized, affine-transformed value z (before the fused activation).
EF_INLINE float bn_dz(ef_act a, float dy, float z) { return a == EF_ACT_NONE ? dy : dy * ef_act_grad(a, z); }

// n rows (of c), channels [k0, k1), of the two gradient sums (gamma: dz * xhat, beta: dz), in double.
EF_INLINE void bn_reduce_rows(ef_act a, int n, const float *dy, const float *x, int64_t c, int64_t k0, int64_t k1,
                              const float *scale, const float *shift, const float *mean, const float *invstd,
                              double *sg, double *sb) {
  for (int64_t k = k0; k < k1; k++) {
    double g = 0, b = 0;
    for (int i = 0; i < n; i++) {
      float xv = x[i * c + k], dz = bn_dz(a, dy[i * c + k], xv * scale[k] + shift[k]);
      g += (double)dz * ((xv - mean[k]) * invstd[k]);
      b += dz;
    }
    sg[k] += g;
    sb[k] += b;
  }
}

// One row of dx = scale * dz + k3 * (x - mean) + k2.
EF_INLINE void bn_data_row(ef_act a, const float *dy, const float *x, float *dx, int64_t c, const float *scale,
                           const float *shift, const float *mean, const float *k3, const float *k2) {
#ifdef VEC
  if (a == EF_ACT_SWISH || a == EF_ACT_SIGMOID) { // in vectors, as bn_row
    for (int64_t k = 0; k < c; k += VEC) {
      int m = c - k < VEC ? (int)(c - k) : VEC;
      vec xv = vec_load_upto(x + k, m), sc = vec_load_upto(scale + k, m);
      vec dz = vec_mul(vec_load_upto(dy + k, m), vec_sigmoid_grad(a, vec_fma(xv, sc, vec_load_upto(shift + k, m))));
      vec d = vec_fma(vec_load_upto(k3 + k, m), vec_sub(xv, vec_load_upto(mean + k, m)), vec_load_upto(k2 + k, m));
      vec_store_upto(dx + k, vec_fma(sc, dz, d), m);
    }
    return;
  }
#endif
  for (int64_t k = 0; k < c; k++)
    dx[k] = scale[k] * bn_dz(a, dy[k], x[k] * scale[k] + shift[k]) + k3[k] * (x[k] - mean[k]) + k2[k];
}

typedef struct {
  const float *dy, *x, *scale, *shift, *mean, *invstd;
  int64_t c;
  ef_act act;
} reduce_args;

EF_INLINE void bn_reduce_span(ef_act act, const reduce_args *a, int64_t r0, int64_t r1, int64_t k0, int64_t k1,
                              double *s) {
  int64_t r = r0, c = a->c;
  for (; r + ROWS <= r1; r += ROWS)
    bn_reduce_rows(act, ROWS, a->dy + r * c, a->x + r * c, c, k0, k1, a->scale, a->shift, a->mean, a->invstd, s, s + c);
  if (r < r1)
    bn_reduce_rows(act, (int)(r1 - r), a->dy + r * c, a->x + r * c, c, k0, k1, a->scale, a->shift, a->mean, a->invstd,
                   s, s + c);
}

#ifdef VEC
// bn_reduce_span for swish and sigmoid in vectors, where GCC's vectorization of ef_act_grad divides
// and blends its clamps, prefetching 8 KiB ahead in both inputs (their rows are short streams the
// hardware's prefetchers fall behind on): per vector of channels, VROWS rows' terms summed in f32
// (dz * xhat as an FMA), then added to the double sums. B0 at 224, batch 32, a training step on the
// AMD EPYC: 101-113 -> 75-83 ms for the 49 nodes; the vectors alone gave 95-99, the prefetches
// alone nothing (docs/perf.md, "Issue 19, seventh pass").
#define VROWS 4
EF_INLINE void bn_reduce_vec(ef_act act, const reduce_args *a, int64_t r0, int64_t r1, int64_t k0, int64_t k1,
                             double *s) {
  int64_t c = a->c;
  for (int64_t r = r0; r < r1; r += VROWS) {
    int n = r1 - r < VROWS ? (int)(r1 - r) : VROWS;
    for (int64_t k = k0; k < k1; k += VEC) {
      int m = k1 - k < VEC ? (int)(k1 - k) : VEC;
      vec sc = vec_load_upto(a->scale + k, m), sh = vec_load_upto(a->shift + k, m), mu = vec_load_upto(a->mean + k, m);
      vec is = vec_load_upto(a->invstd + k, m), g = vec_bcast(0.0f), b = g;
      for (int i = 0; i < n; i++) {
        __builtin_prefetch(a->x + (r + i) * c + k + 2048), __builtin_prefetch(a->dy + (r + i) * c + k + 2048);
        vec x = vec_load_upto(a->x + (r + i) * c + k, m), dy = vec_load_upto(a->dy + (r + i) * c + k, m);
        vec dz = vec_mul(dy, vec_sigmoid_grad(act, vec_fma(x, sc, sh)));
        g = vec_fma(dz, vec_mul(vec_sub(x, mu), is), g);
        b = vec_add(b, dz);
      }
      if (m == VEC) {
        vec_add_f64(s + k, g);
        vec_add_f64(s + c + k, b);
      } else {
        float gs[VEC], bs[VEC];
        vec_store(gs, g), vec_store(bs, b);
        for (int l = 0; l < m; l++) s[k + l] += gs[l], s[c + k + l] += bs[l];
      }
    }
  }
}
#endif

static void reduce_rows(const void *args, int64_t r0, int64_t r1, int64_t k0, int64_t k1, double *s) {
  const reduce_args *a = args;
#ifdef VEC
  if (a->act == EF_ACT_SWISH || a->act == EF_ACT_SIGMOID) {
    if (a->act == EF_ACT_SWISH) bn_reduce_vec(EF_ACT_SWISH, a, r0, r1, k0, k1, s);
    else bn_reduce_vec(EF_ACT_SIGMOID, a, r0, r1, k0, k1, s);
    return;
  }
#endif
  EF_ACT_SPECIALIZE(a->act, bn_reduce_span, a, r0, r1, k0, k1, s);
}

// (2,C) [sum dz * xhat; sum dz]: the gradients of gamma and beta.
void ef_cpu_bn_bwd_reduce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *xt = node->src[1];
  const float *stats = F(node->src[2]);
  float *out = F(node);
  int64_t rows = ef_rows(xt), c = ef_cols(xt);
  float *invstd = coeff_rows(scratch, rows, c), *scale = invstd + c, *shift = scale + c;
  bn_coeffs(node, stats, F(node->src[3]), c, invstd, scale, shift);
  reduce_args args = {F(node->src[0]), F(xt), scale, shift, stats, invstd, c, node->p.bn.act};
  const double *sums = chunked_row_sums(rows, c, 2, scratch, reduce_rows, &args);
  for (int64_t k = 0; k < 2 * c; k++) out[k] = (float)sums[k];
}

// dx. With batch statistics: gamma*invstd * (dz - mean(dz) - xhat * mean(dz * xhat));
// with fixed (running) statistics: gamma*invstd * dz.
void ef_cpu_bn_bwd_data(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *xt = node->src[1];
  const float *dy = F(node->src[0]), *x = F(xt), *stats = F(node->src[2]), *affine = F(node->src[3]);
  float *dx = F(node);
  int64_t rows = ef_rows(xt), c = ef_cols(xt);
  float *invstd = coeff_rows(scratch, rows, c), *scale = invstd + c, *shift = scale + c, *k2 = shift + c;
  bn_coeffs(node, stats, affine, c, invstd, scale, shift);
  // dx = scale * dz + k3 * (x - mean) + k2, with k3 kept in invstd's row once it is used.
  float *k3 = invstd;
  const float *red = node->n_src == 5 ? F(node->src[4]) : NULL;
  for (int64_t k = 0; k < c; k++) {
    double s = scale[k], is = invstd[k];
    k3[k] = red ? (float)(-s * is * red[k] / (double)rows) : 0.0f;
    k2[k] = red ? (float)(-s * red[c + k] / (double)rows) : 0.0f;
  }
  ef_act a = node->p.bn.act;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++)
    EF_ACT_SPECIALIZE(a, bn_data_row, dy + r * c, x + r * c, dx + r * c, c, scale, shift, stats, k3, k2);
}

// running = (1 - m) * running + m * batch, with the unbiased variance (PyTorch and TF agree).
void ef_cpu_bn_update(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *st = node->src[1];
  const float *batch = F(st);
  float *run = F(node); // == node->src[0]->data: in place
  int64_t c = st->shape[1];
  double m = node->p.bn_update.momentum, bessel = ef_bn_update_bessel(node);
  for (int64_t k = 0; k < c; k++) {
    run[k] = (float)((1 - m) * run[k] + m * batch[k]);
    run[c + k] = (float)((1 - m) * run[c + k] + m * batch[c + k] * bessel);
  }
}

// SyncBN over a group of ranks with equal row counts (ef_sync_stats_combine).
void ef_cpu_sync_stats(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  EF_ASSERT(ctx->group_mean, "node '%s' needs a communicator (ef_run_ctx.group_mean)", node->name);
  ef_sync_stats_combine(ctx->group_mean, ctx->group, F(node->src[0]), F(node), (size_t)node->shape[1]);
}

void ef_cpu_sync_mean(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  EF_ASSERT(ctx->group_mean, "node '%s' needs a communicator (ef_run_ctx.group_mean)", node->name);
  memcpy(F(node), F(node->src[0]), ef_nbytes(node));
  ctx->group_mean(ctx->group, F(node), (size_t)ef_numel(node));
}

EF_INLINE void plain_rows_n(const rows_args *a, int64_t r, int n, int64_t k0, int64_t k1, double *s) {
  const float *xr = a->x + r * a->c;
  for (int64_t k = k0; k < k1; k++) {
    double v = 0;
    for (int i = 0; i < n; i++) v += xr[i * a->c + k];
    s[k] += v;
  }
}

static void plain_rows(const void *args, int64_t r0, int64_t r1, int64_t k0, int64_t k1, double *s) {
  int64_t r = r0;
  for (; r + ROWS <= r1; r += ROWS) plain_rows_n(args, r, ROWS, k0, k1, s);
  if (r < r1) plain_rows_n(args, r, (int)(r1 - r), k0, k1, s);
}

void ef_cpu_sum_rows(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *xt = node->src[0];
  int64_t c = ef_cols(xt);
  const double *sums = chunked_row_sums(ef_rows(xt), c, 1, scratch, plain_rows, &(rows_args){F(xt), c});
  float *out = F(node);
  for (int64_t k = 0; k < c; k++) out[k] = (float)sums[k];
}
