// The CUDA backend's own kernels: elementwise ops, padding, per-channel reductions, batch norm and
// the loss, each the twin of a CPU kernel in core/cpu (same formulas; sums in double in a fixed
// order, so every run gives the same bits). Each is instantiated per dtype with 16-byte accesses
// (kernel_util.cuh's by_dtype), tensors of mixed types going through a scalar instantiation;
// per-channel work is laid out as (row, channel vector), so no thread divides 64-bit indices.
#include "core/philox.h"
#include "core/pixels.h"
#include "cuda/kernel_util.cuh"

using namespace ef;

namespace {

// ---- elementwise over n elements --------------------------------------------------------------

// Operands of the flat kernels: the result y, up to two inputs, a scalar, and an activation.
struct flat_args {
  ef_dref y, a, b;
  int64_t n;
  float value;
  ef_act act;
  cudaStream_t st;
};

// y = f(a, b) lane by lane, L lanes a thread; F a stateless function object.
template <ef_dtype DT, int L, class F> void flat(const flat_args &a, F f) {
  ef_dref y = a.y, x = a.a, z = a.b;
  float value = a.value;
  ef_act act = a.act;
  for_each(a.n / L, a.st, [=] __device__(int64_t v) {
    float p[L], q[L] = {0}, r[L];
    if (x.p) ef_lanes_load(x.p, type_in(DT, x.dt), v * L, L, p);
    if (z.p) ef_lanes_load(z.p, type_in(DT, z.dt), v * L, L, q);
    for (int l = 0; l < L; l++) r[l] = f(x.p ? p[l] : 0.0f, q[l], value, act);
    ef_lanes_store(y.p, type_in(DT, y.dt), v * L, L, r);
  });
}

struct op_copy {
  __device__ float operator()(float a, float, float, ef_act) const { return a; }
};
struct op_fill {
  __device__ float operator()(float, float, float value, ef_act) const { return value; }
};
struct op_act {
  __device__ float operator()(float a, float, float, ef_act act) const { return ef_act_fwd(act, a); }
};
struct op_act_bwd {
  __device__ float operator()(float dy, float x, float, ef_act act) const { return dy * ef_act_grad(act, x); }
};
struct op_add {
  __device__ float operator()(float a, float b, float, ef_act) const { return a + b; }
};

template <class F> struct flat_kernel {
  template <ef_dtype DT, int L> struct k {
    static void run(const flat_args &a) { flat<DT, L>(a, F{}); }
  };
};

template <class F> void run_flat(const flat_args &a) {
  if (a.n <= 0) return;
  if (a.b.p) by_dtype<flat_kernel<F>::template k>({a.y, a.a, a.b}, a.n, a);
  else if (a.a.p) by_dtype<flat_kernel<F>::template k>({a.y, a.a}, a.n, a);
  else by_dtype<flat_kernel<F>::template k>({a.y}, a.n, a);
}

} // namespace

void ef_k_cast(ef_dref y, ef_dref x, int64_t n, cudaStream_t s) {
  run_flat<op_copy>(flat_args{y, x, {nullptr, EF_F32}, n, 0, EF_ACT_NONE, s});
}

void ef_k_fill(ef_dref y, float value, int64_t n, cudaStream_t s) {
  run_flat<op_fill>(flat_args{y, {nullptr, EF_F32}, {nullptr, EF_F32}, n, value, EF_ACT_NONE, s});
}

void ef_k_broadcast(ef_dref y, ef_dref d, float value, int64_t n, cudaStream_t s) {
  // y = d[0] * value: the scalar read once a thread, as a second operand of stride 0 would be
  for_each(n, s, [=] __device__(int64_t i) {
    float v;
    ef_lanes_load(d.p, d.dt, 0, 1, &v);
    v *= value;
    ef_lanes_store(y.p, y.dt, i, 1, &v);
  });
}

void ef_k_act(ef_dref y, ef_dref x, ef_act act, int64_t n, cudaStream_t s) {
  run_flat<op_act>(flat_args{y, x, {nullptr, EF_F32}, n, 0, act, s});
}

void ef_k_act_bwd(ef_dref dx, ef_dref dy, ef_dref x, ef_act act, int64_t n, cudaStream_t s) {
  run_flat<op_act_bwd>(flat_args{dx, dy, x, n, 0, act, s});
}

void ef_k_add(ef_dref y, ef_dref a, ef_dref b, int64_t n, cudaStream_t s) {
  run_flat<op_add>(flat_args{y, a, b, n, 0, EF_ACT_NONE, s});
}

void ef_k_accum(ef_dref y, ef_dref x, int64_t n, cudaStream_t s) {
  run_flat<op_add>(flat_args{y, y, x, n, 0, EF_ACT_NONE, s});
}

void ef_k_normalize_u8(ef_dref y, const uint8_t *px, const float *lut, int channels, int64_t n, cudaStream_t s) {
  EF_ASSERT(n < (1LL << 32), "a batch of %lld pixel values", (long long)n);
  for_each(n, s, [=] __device__(int64_t i) {
    float v = ef_pixel_value(lut, channels, (uint32_t)i, px[i]);
    ef_lanes_store(y.p, y.dt, i, 1, &v);
  });
}

// ---- per (row, channel) -------------------------------------------------------------------------

namespace {

// Operands of the row kernels over (rows, C) with per-channel (or per-sample) values. Activations
// and the coefficients (in the scratch) are read as 16-byte vectors; per-channel values from the
// store (biases, statistics) lane by lane, since the store packs vectors on 4 bytes (core/store.h).
struct row_args {
  ef_dref y, x, z;   // the result, the input and a second input
  ef_dref per;       // per-channel or per-(sample, channel) values (channel_mul's scale, spread's dy, a bias)
  const float *coef; // batch norm's coefficients (5,C)
  const float *mean;
  int64_t rows, c, hw; // hw: rows a sample, for per-(sample, channel) values
  float value;
  ef_act act;
  cudaStream_t st;
};

// y = x * per[n, c] (channel_mul), + z[n, c] * value where z is given (channel_mul with an addend:
// squeeze-excite's input gradient), or y = per[n, c] * value (spread: x absent), over (N*HW, C).
template <ef_dtype DT, int L> struct k_sample_channel {
  static void run(const row_args &a) {
    ef_dref y = a.y, x = a.x, per = a.per, z = a.z;
    int64_t c = a.c;
    uint32_t hw = (uint32_t)a.hw;
    float value = a.value;
    for_rows(a.rows, c / L, a.st, "per-sample channel scale", [=] __device__(int64_t row, int64_t v) {
      int64_t n = (uint32_t)row / hw;
      float s[L], r[L];
      for (int l = 0; l < L; l++) ef_lanes_load(per.p, per.dt, n * c + v * L + l, 1, &s[l]); // per's own type
      if (x.p) {
        ef_lanes_load(x.p, type_in(DT, x.dt), row * c + v * L, L, r);
        for (int l = 0; l < L; l++) r[l] *= s[l];
        if (z.p)
          for (int l = 0; l < L; l++) {
            float d;
            ef_lanes_load(z.p, z.dt, n * c + v * L + l, 1, &d); // z's own type, as per's
            r[l] += d * value;
          }
      } else {
        for (int l = 0; l < L; l++) r[l] = s[l] * value;
      }
      ef_lanes_store(y.p, type_in(DT, y.dt), row * c + v * L, L, r);
    });
  }
};

// y += bias[c] over (rows, C).
template <ef_dtype DT, int L> struct k_add_bias {
  static void run(const row_args &a) {
    ef_dref y = a.y, bias = a.per;
    int64_t c = a.c;
    for_rows(a.rows, c / L, a.st, "bias", [=] __device__(int64_t row, int64_t v) {
      float r[L], b[L];
      ef_lanes_load(y.p, type_in(DT, y.dt), row * c + v * L, L, r);
      for (int l = 0; l < L; l++) ef_lanes_load(bias.p, bias.dt, v * L + l, 1, &b[l]);
      for (int l = 0; l < L; l++) r[l] += b[l];
      ef_lanes_store(y.p, type_in(DT, y.dt), row * c + v * L, L, r);
    });
  }
};

// Batch norm: y = act(x * scale + shift) (coef rows 1 and 2).
template <ef_dtype DT, int L> struct k_bn {
  static void run(const row_args &a) {
    ef_dref y = a.y, x = a.x;
    int64_t c = a.c;
    const float *scale = a.coef + c, *shift = a.coef + 2 * c;
    ef_act act = a.act;
    for_rows(a.rows, c / L, a.st, "batch norm", [=] __device__(int64_t row, int64_t v) {
      float r[L], sc[L], sh[L];
      ef_lanes_load(x.p, type_in(DT, x.dt), row * c + v * L, L, r);
      ef_lanes_load(scale, EF_F32, v * L, L, sc);
      ef_lanes_load(shift, EF_F32, v * L, L, sh);
      for (int l = 0; l < L; l++) r[l] = ef_act_fwd(act, fmaf(r[l], sc[l], sh[l]));
      ef_lanes_store(y.p, type_in(DT, y.dt), row * c + v * L, L, r);
    });
  }
};

// Batch norm's data gradient: dx = scale * dz + k3 * (x - mean) + k2.
template <ef_dtype DT, int L> struct k_bn_bwd_data {
  static void run(const row_args &a) {
    ef_dref dx = a.y, dy = a.z, x = a.x;
    int64_t c = a.c;
    const float *coef = a.coef, *mean = a.mean;
    ef_act act = a.act;
    for_rows(a.rows, c / L, a.st, "batch norm's data gradient", [=] __device__(int64_t row, int64_t v) {
      float xv[L], g[L], sc[L], sh[L], k3[L], k2[L], m[L];
      ef_lanes_load(x.p, type_in(DT, x.dt), row * c + v * L, L, xv);
      ef_lanes_load(dy.p, type_in(DT, dy.dt), row * c + v * L, L, g);
      ef_lanes_load(coef + c, EF_F32, v * L, L, sc);
      ef_lanes_load(coef + 2 * c, EF_F32, v * L, L, sh);
      ef_lanes_load(coef + 3 * c, EF_F32, v * L, L, k3);
      ef_lanes_load(coef + 4 * c, EF_F32, v * L, L, k2);
      for (int l = 0; l < L; l++) m[l] = mean[v * L + l]; // store vectors may be packed: 4-byte aligned
      for (int l = 0; l < L; l++) {
        float dz = act == EF_ACT_NONE ? g[l] : g[l] * ef_act_grad(act, xv[l] * sc[l] + sh[l]);
        g[l] = sc[l] * dz + k3[l] * (xv[l] - m[l]) + k2[l];
      }
      ef_lanes_store(dx.p, type_in(DT, dx.dt), row * c + v * L, L, g);
    });
  }
};

// Zero padding and its crop for cuDNN's asymmetric ("SAME") convolutions: a pixel's channels a row.
struct pad_args {
  ef_dref y, x;
  int64_t n, h, w, c, ph, pw;
  int top, left;
  bool crop;
  cudaStream_t st;
};

template <ef_dtype DT, int L> struct k_pad {
  static void run(const pad_args &a) {
    ef_dref y = a.y, x = a.x;
    uint32_t h = (uint32_t)a.h, w = (uint32_t)a.w, ph = (uint32_t)a.ph, pw = (uint32_t)a.pw;
    int64_t c = a.c;
    int top = a.top, left = a.left;
    bool crop = a.crop;
    // pad: rows of y's (N,PH,PW) pixels, reading x where inside; crop: rows of y's (N,H,W) pixels.
    for_rows(a.n * (crop ? a.h * a.w : a.ph * a.pw), c / L, a.st, crop ? "crop" : "pad",
             [=] __device__(int64_t row, int64_t v) {
               uint32_t q = (uint32_t)row, ow = crop ? w : pw, oh = crop ? h : ph;
               uint32_t px = q % ow, py = q / ow % oh, b = q / ow / oh;
               float r[L] = {0};
               int64_t src;
               if (crop) src = ((int64_t)(b * ph + py + top) * pw + px + left) * c;
               else {
                 int yy = (int)py - top, xx = (int)px - left;
                 src = yy >= 0 && yy < (int)h && xx >= 0 && xx < (int)w ? ((int64_t)(b * h + yy) * w + xx) * c : -1;
               }
               if (src >= 0) ef_lanes_load(x.p, type_in(DT, x.dt), src + v * L, L, r);
               ef_lanes_store(y.p, type_in(DT, y.dt), row * c + v * L, L, r);
             });
  }
};

} // namespace

void ef_k_channel_mul(ef_dref y, ef_dref x, ef_dref sc, ef_dref add, int64_t n, int64_t hw, int64_t c, cudaStream_t s) {
  row_args a = {.y = y,
                .x = x,
                .z = add,
                .per = sc,
                .rows = n * hw,
                .c = c,
                .hw = hw,
                .value = (float)(1.0 / (double)hw),
                .st = s};
  by_dtype<k_sample_channel>({y, x}, c, a);
}

void ef_k_spread(ef_dref dx, ef_dref dy, float scale, int64_t n, int64_t hw, int64_t c, cudaStream_t s) {
  row_args a = {.y = dx, .x = {nullptr, dx.dt}, .per = dy, .rows = n * hw, .c = c, .hw = hw, .value = scale, .st = s};
  by_dtype<k_sample_channel>({dx}, c, a);
}

void ef_k_add_bias(ef_dref y, ef_dref bias, int64_t rows, int64_t c, cudaStream_t s) {
  by_dtype<k_add_bias>({y}, c, row_args{.y = y, .per = bias, .rows = rows, .c = c, .st = s});
}

void ef_k_pad(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph,
              int64_t pw, cudaStream_t s) {
  by_dtype<k_pad>({y, x}, c, pad_args{y, x, n, h, w, c, ph, pw, top, left, false, s});
}

void ef_k_crop(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph,
               int64_t pw, cudaStream_t s) {
  by_dtype<k_pad>({y, x}, c, pad_args{y, x, n, h, w, c, ph, pw, top, left, true, s});
}

// ---- dropout --------------------------------------------------------------------------------------

// Word `index` of the Philox stream (seed, stream, step) as a uniform, as ef_philox_uniform.
__device__ __forceinline__ float philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  uint64_t block = index >> 2;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), stream, step};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return ef_u32_to_uniform(ef_philox4x32(ctr, key).v[index & 3]);
}

namespace {

struct dropout_args {
  ef_dref y, x;
  float rate;
  int64_t n, per; // per: elements a sample (drop-path), 0 per element
  uint64_t seed;
  uint32_t stream;
  const uint32_t *step;
  cudaStream_t st;
};

// Per element: lane l of vector v keeps word v*L + l; per sample: row n keeps word n.
template <ef_dtype DT, int L> struct k_dropout {
  static void run(const dropout_args &a) {
    ef_dref y = a.y, x = a.x;
    float rate = a.rate, scale = 1.0f / (1.0f - a.rate);
    uint64_t seed = a.seed;
    uint32_t stream = a.stream;
    const uint32_t *step = a.step;
    if (a.per) {
      int64_t per = a.per;
      for_rows(a.n / per, per / L, a.st, "drop-path", [=] __device__(int64_t n, int64_t v) {
        float k = philox_uniform(seed, stream, *step, (uint64_t)n) >= rate ? scale : 0.0f, r[L];
        ef_lanes_load(x.p, type_in(DT, x.dt), n * per + v * L, L, r);
        for (int l = 0; l < L; l++) r[l] *= k;
        ef_lanes_store(y.p, type_in(DT, y.dt), n * per + v * L, L, r);
      });
      return;
    }
    for_each(a.n / L, a.st, [=] __device__(int64_t v) {
      float r[L];
      ef_lanes_load(x.p, type_in(DT, x.dt), v * L, L, r);
      for (int l = 0; l < L; l++)
        r[l] = philox_uniform(seed, stream, *step, (uint64_t)(v * L + l)) >= rate ? r[l] * scale : 0.0f;
      ef_lanes_store(y.p, type_in(DT, y.dt), v * L, L, r);
    });
  }
};

} // namespace

void ef_k_dropout(ef_dref y, ef_dref x, float rate, bool per_sample, int64_t per, uint64_t seed, uint32_t stream,
                  const uint32_t *step, int64_t n, cudaStream_t s) {
  dropout_args a = {y, x, rate, n, per_sample ? per : 0, seed, stream, step, s};
  by_dtype<k_dropout>({y, x}, per_sample ? per : n, a);
}

void ef_k_set_u32(uint32_t *dst, uint32_t value, cudaStream_t s) {
  for_each(1, s, [=] __device__(int64_t) { *dst = value; });
}

// ---- per-channel reductions ------------------------------------------------------------------------
// Stage 1: blocks of (EF_RED_TX channels, EF_RED_TY rows) over one (group, channel tile) (block x,
// cuda/launch.h) and one split of the group's rows (block y); thread (tx, ty) sums rows ty,
// ty + EF_RED_TY, ... of its channel, and the EF_RED_TY sums are added in order into the partials
// part[group][split][2][C]. Stage 2: a thread per (group, channel) adds the splits in order.

namespace {

template <ef_dtype DT>
__device__ __forceinline__ void red_values(const ef_red_args &a, int64_t idx, int64_t c, double *v0, double *v1) {
  float xv, yv = 0;
  ef_lanes_load(a.x.p, type_in(DT, a.x.dt), idx, 1, &xv);
  if (a.kind == EF_RED_BN_BWD || a.kind == EF_RED_DOT) ef_lanes_load(a.y.p, type_in(DT, a.y.dt), idx, 1, &yv);
  switch (a.kind) {
  case EF_RED_STATS: {
    float x0;
    ef_lanes_load(a.x.p, type_in(DT, a.x.dt), c, 1, &x0);
    double d = (double)xv - (double)x0;
    *v0 = d, *v1 = d * d;
    break;
  }
  case EF_RED_BN_BWD: {
    const float *invstd = a.coef, *scale = a.coef + a.c, *shift = a.coef + 2 * a.c;
    float z = xv * scale[c] + shift[c], dz = a.act == EF_ACT_NONE ? yv : yv * ef_act_grad(a.act, z);
    *v0 = (double)dz * ((xv - a.mean[c]) * invstd[c]);
    *v1 = dz;
    break;
  }
  case EF_RED_SUM: *v0 = xv, *v1 = 0; break;
  case EF_RED_DOT: *v0 = (double)xv * yv, *v1 = 0; break;
  }
}

template <ef_dtype DT> __global__ void k_reduce_partial(ef_red_args a, int splits, double *part) {
  __shared__ double sh[2][EF_RED_TY][EF_RED_TX];
  int64_t g, c0;
  ef_reduce_block(blockIdx.x, a.c, &g, &c0);
  int64_t c = c0 + threadIdx.x;
  int64_t per = (a.rows + splits - 1) / splits, r0 = blockIdx.y * per, r1 = r0 + per < a.rows ? r0 + per : a.rows;
  double s0 = 0, s1 = 0;
  if (c < a.c)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += EF_RED_TY) {
      double v0, v1;
      red_values<DT>(a, (g * a.rows + r) * a.c + c, c, &v0, &v1);
      s0 += v0, s1 += v1;
    }
  sh[0][threadIdx.y][threadIdx.x] = s0;
  sh[1][threadIdx.y][threadIdx.x] = s1;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.c) {
    double t0 = 0, t1 = 0;
    for (int j = 0; j < EF_RED_TY; j++) t0 += sh[0][j][threadIdx.x], t1 += sh[1][j][threadIdx.x];
    double *p = part + ((g * splits + blockIdx.y) * 2) * a.c;
    p[c] = t0, p[a.c + c] = t1;
  }
}

struct reduce_args {
  ef_red_args r;
  void *scratch;
  cudaStream_t st;
};

template <ef_dtype DT, int L> struct k_reduce {
  static void run(const reduce_args &a) {
    ef_launch l = ef_launch_reduce(a.r.groups, a.r.rows, a.r.c);
    check_launch(l, "a per-channel reduction");
    k_reduce_partial<DT><<<grid_of(l), block_of(l), 0, a.st>>>(a.r, (int)l.grid.y, (double *)a.scratch);
  }
};

} // namespace

size_t ef_k_reduce_scratch(int64_t groups, int64_t rows, int64_t c) {
  return (size_t)(groups * ef_reduce_splits(groups, rows, c) * 2 * c) * sizeof(double);
}

void ef_k_reduce(ef_dref out, const ef_red_args *a, void *scratch, cudaStream_t s) {
  // Stage 1, per dtype; its lanes go unused (a thread walks one channel down the rows).
  ef_dref in2 = a->kind == EF_RED_BN_BWD || a->kind == EF_RED_DOT ? a->y : a->x;
  by_dtype<k_reduce>({a->x, in2}, 8, reduce_args{*a, scratch, s});
  // Stage 2: the splits in order.
  ef_red_args r = *a;
  int splits = ef_reduce_splits(r.groups, r.rows, r.c);
  const double *part = (const double *)scratch;
  for_rows(r.groups, r.c, s, "a reduction's sum", [=] __device__(int64_t g, int64_t c) {
    double s0 = 0, s1 = 0;
    for (int k = 0; k < splits; k++) {
      const double *p = part + ((g * splits + k) * 2) * r.c;
      s0 += p[c], s1 += p[r.c + c];
    }
    float v0, v1;
    switch (r.kind) {
    case EF_RED_STATS: { // as ef_cpu_bn_stats
      float x0;
      ef_lanes_load(r.x.p, r.x.dt, c, 1, &x0);
      double m = s0 / (double)r.rows, var = s1 / (double)r.rows - m * m;
      v0 = (float)((double)x0 + m), v1 = (float)(var > 0 ? var : 0);
      ef_lanes_store(out.p, out.dt, c, 1, &v0);
      ef_lanes_store(out.p, out.dt, r.c + c, 1, &v1);
      break;
    }
    case EF_RED_BN_BWD:
      v0 = (float)s0, v1 = (float)s1;
      ef_lanes_store(out.p, out.dt, c, 1, &v0);
      ef_lanes_store(out.p, out.dt, r.c + c, 1, &v1);
      break;
    default:
      v0 = (float)(s0 * r.scale);
      ef_lanes_store(out.p, out.dt, g * r.c + c, 1, &v0);
      break;
    }
  });
}

// Whole-tensor sums: `chunks` blocks each sum a contiguous range (block tree), then one block adds
// the chunks (each thread its stride in order, then the tree).
namespace {

int64_t total_chunks(int64_t n) {
  int64_t c = (n + 4095) / 4096;
  return c < 1 ? 1 : c > 1024 ? 1024 : c;
}

__global__ void k_total_partial(ef_dref x, int64_t n, double *part) {
  __shared__ double sh[THREADS];
  int64_t per = (n + gridDim.x - 1) / gridDim.x, i0 = blockIdx.x * per, i1 = i0 + per < n ? i0 + per : n;
  double acc = 0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += THREADS) {
    float v;
    ef_lanes_load(x.p, x.dt, i, 1, &v);
    acc += v;
  }
  double t = block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

__global__ void k_sum_parts(ef_dref out, const double *part, int64_t n, double scale) {
  __shared__ double sh[THREADS];
  double t = block_sum_of(part, n, sh);
  if (threadIdx.x == 0) {
    float v = (float)(t * scale);
    ef_lanes_store(out.p, out.dt, 0, 1, &v);
  }
}

} // namespace

size_t ef_k_total_scratch(int64_t n) { return (size_t)total_chunks(n) * sizeof(double); }

void ef_k_total(ef_dref out, ef_dref x, double scale, int64_t n, void *scratch, cudaStream_t s) {
  int64_t chunks = total_chunks(n);
  k_total_partial<<<(unsigned)chunks, THREADS, 0, s>>>(x, n, (double *)scratch);
  k_sum_parts<<<1, THREADS, 0, s>>>(out, (const double *)scratch, chunks, scale);
}

// ---- batch norm ------------------------------------------------------------------------------------

void ef_k_bn_coeffs(float *coef, const float *stats, const float *affine, const float *red, int64_t rows, float eps,
                    int64_t c, cudaStream_t s) {
  for_each(c, s, [=] __device__(int64_t k) {
    double is = 1.0 / sqrt((double)stats[c + k] + (double)eps), sc = affine[k] * is;
    float fis = (float)is, fsc = (float)sc;
    coef[k] = fis;
    coef[c + k] = fsc;
    coef[2 * c + k] = (float)(affine[c + k] - stats[k] * sc);
    double ds = fsc, dis = fis; // as the CPU: from the rounded scale and invstd
    coef[3 * c + k] = red ? (float)(-ds * dis * red[k] / (double)rows) : 0.0f;
    coef[4 * c + k] = red ? (float)(-ds * red[c + k] / (double)rows) : 0.0f;
  });
}

void ef_k_bn(ef_dref y, ef_dref x, const float *coef, ef_act act, int64_t rows, int64_t c, cudaStream_t s) {
  by_dtype<k_bn>({y, x}, c, row_args{.y = y, .x = x, .coef = coef, .rows = rows, .c = c, .act = act, .st = s});
}

void ef_k_bn_bwd_data(ef_dref dx, ef_dref dy, ef_dref x, const float *coef, const float *mean, ef_act act, int64_t rows,
                      int64_t c, cudaStream_t s) {
  row_args a = {.y = dx, .x = x, .z = dy, .coef = coef, .mean = mean, .rows = rows, .c = c, .act = act, .st = s};
  by_dtype<k_bn_bwd_data>({dx, dy, x}, c, a);
}

void ef_k_sync_var_term(float *term, const float *own, const float *group_mean, int64_t c, cudaStream_t s) {
  for_each(c, s, [=] __device__(int64_t k) {
    float d = own[k] - group_mean[k];
    term[k] = own[c + k] + d * d;
  });
}

void ef_k_bn_update(float *running, const float *batch, float momentum, double bessel, int64_t c, cudaStream_t s) {
  double m = momentum;
  for_each(c, s, [=] __device__(int64_t k) {
    running[k] = (float)((1 - m) * running[k] + m * batch[k]);
    running[c + k] = (float)((1 - m) * running[c + k] + m * batch[c + k] * bessel);
  });
}

// ---- the loss --------------------------------------------------------------------------------------

namespace {

// One block per row: the row's max and sum of exp(z - max) (double), as ef_cpu_softmax_ce.
struct row_stats {
  float mx;
  double sum, zsum;
};

__device__ float block_max(float v, float *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int half = THREADS / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + half]);
    __syncthreads();
  }
  float r = sh[0];
  __syncthreads();
  return r;
}

__device__ float logit(const ef_dref &z, int64_t i) {
  float v;
  ef_lanes_load(z.p, z.dt, i, 1, &v);
  return v;
}

__device__ row_stats softmax_row(const ef_dref &z, int64_t row, int64_t k) {
  __shared__ double shd[THREADS];
  __shared__ float shf[THREADS];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) mx = fmaxf(mx, logit(z, row * k + j));
  mx = block_max(mx, shf);
  double sum = 0, zsum = 0;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) {
    float v = logit(z, row * k + j);
    sum += exp((double)v - mx);
    zsum += v;
  }
  row_stats r;
  r.mx = mx;
  r.sum = block_sum(sum, shd);
  r.zsum = block_sum(zsum, shd);
  return r;
}

__device__ int32_t checked_label(const int32_t *labels, int64_t i, int64_t k, int *err) {
  int32_t y = labels[i];
  if (y < 0 || y >= k) {
    atomicExch(err, EF_CUDA_ERR_LABEL);
    return -1;
  }
  return y;
}

// Targets: labels (soft NULL) smoothed by eps, or soft probabilities (N,K), as ef_cpu_softmax_ce.
__global__ void k_softmax_ce_rows(double *row_loss, ef_dref z, const int32_t *labels, const float *soft, float eps,
                                  int64_t k, int *err) {
  __shared__ double shd[THREADS];
  int64_t i = blockIdx.x;
  row_stats r = softmax_row(z, i, k);
  double lse = r.mx + log(r.sum);
  if (soft) { // sum_j t_j (lse - z_j), the block's partial sums added in the order of block_sum
    double acc = 0;
    for (int64_t j = threadIdx.x; j < k; j += THREADS) acc += (double)soft[i * k + j] * (lse - logit(z, i * k + j));
    acc = block_sum(acc, shd);
    if (threadIdx.x == 0) row_loss[i] = acc;
    return;
  }
  if (threadIdx.x == 0) {
    int32_t y = checked_label(labels, i, k, err);
    double e = eps;
    row_loss[i] = y < 0 ? NAN : lse - (1 - e) * logit(z, i * k + y) - e / (double)k * r.zsum;
  }
}

__global__ void k_softmax_ce_bwd(ef_dref dz, ef_dref dloss, ef_dref z, const int32_t *labels, const float *soft,
                                 float eps, int64_t n, int64_t k, int *err) {
  __shared__ double shd[THREADS];
  int64_t i = blockIdx.x;
  row_stats r = softmax_row(z, i, k);
  __shared__ int32_t label;
  if (threadIdx.x == 0) label = soft ? -1 : checked_label(labels, i, k, err);
  __syncthreads();
  double tsum = 1;
  if (soft) {
    double part = 0;
    for (int64_t j = threadIdx.x; j < k; j += THREADS) part += soft[i * k + j];
    tsum = block_sum(part, shd);
  }
  double e = eps, g = logit(dloss, 0) / (double)n;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) {
    double t = soft ? (double)soft[i * k + j] : e / (double)k + (j == label ? 1 - e : 0);
    float v = (float)(g * (exp((double)logit(z, i * k + j) - r.mx) / r.sum * tsum - t));
    ef_lanes_store(dz.p, dz.dt, i * k + j, 1, &v);
  }
}

} // namespace

void ef_k_softmax_ce(ef_dref out, ef_dref logits, const int32_t *labels, const float *soft, float eps, int64_t n,
                     int64_t k, void *scratch, int *err, cudaStream_t s) {
  k_softmax_ce_rows<<<(unsigned)n, THREADS, 0, s>>>((double *)scratch, logits, labels, soft, eps, k, err);
  k_sum_parts<<<1, THREADS, 0, s>>>(out, (const double *)scratch, n, 1.0 / (double)n);
}

void ef_k_softmax_ce_bwd(ef_dref dz, ef_dref dloss, ef_dref logits, const int32_t *labels, const float *soft, float eps,
                         int64_t n, int64_t k, int *err, cudaStream_t s) {
  k_softmax_ce_bwd<<<(unsigned)n, THREADS, 0, s>>>(dz, dloss, logits, labels, soft, eps, n, k, err);
}
