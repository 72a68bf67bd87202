// The CUDA backend's own kernels: elementwise ops, padding, per-channel reductions, batch norm and
// the loss, each the twin of a CPU kernel in core/cpu (same formulas, sums in double in a fixed
// order so that every run gives the same bits). Tensors are read and written in their own dtype.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/philox.h"
#include "cuda/kernels.h"

namespace {

constexpr int THREADS = 256;
constexpr int64_t MAX_BLOCKS = 1 << 20; // grid-stride beyond this

__device__ __forceinline__ float ld(const ef_dref &r, int64_t i) {
  switch (r.dt) {
  case EF_BF16: return __bfloat162float(static_cast<const __nv_bfloat16 *>(r.p)[i]);
  case EF_F16: return __half2float(static_cast<const __half *>(r.p)[i]);
  default: return static_cast<const float *>(r.p)[i];
  }
}

__device__ __forceinline__ void st(const ef_dref &r, int64_t i, float v) {
  switch (r.dt) {
  case EF_BF16: static_cast<__nv_bfloat16 *>(r.p)[i] = __float2bfloat16_rn(v); break;
  case EF_F16: static_cast<__half *>(r.p)[i] = __float2half_rn(v); break;
  default: static_cast<float *>(r.p)[i] = v; break;
  }
}

// Activations and derivatives: core/cpu/cpu_internal.h's ef_act_fwd / ef_act_grad.
__device__ __forceinline__ float act_fwd(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: return x / (1.0f + expf(-x));
  case EF_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
  case EF_ACT_RELU: return x > 0.0f ? x : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
  default: return x;
  }
}

__device__ __forceinline__ float act_grad(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: {
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  case EF_ACT_SIGMOID: {
    float s = 1.0f / (1.0f + expf(-x));
    return s * (1.0f - s);
  }
  case EF_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
  default: return 1.0f;
  }
}

template <typename F> __global__ void k_map(int64_t n, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) f(i);
}

// Runs f(i) for i in [0, n) on the stream.
template <typename F> void map(int64_t n, cudaStream_t s, F f) {
  if (n <= 0) return;
  int64_t blocks = (n + THREADS - 1) / THREADS;
  k_map<<<(unsigned)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS), THREADS, 0, s>>>(n, f);
}

// The sum of every thread's v over the block (blockDim.x == THREADS), the same tree every time;
// valid in thread 0.
__device__ double block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int half = THREADS / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) sh[threadIdx.x] += sh[threadIdx.x + half];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

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

} // namespace

// ---- elementwise ---------------------------------------------------------------------------------

void ef_k_cast(ef_dref y, ef_dref x, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, ld(x, i)); });
}

void ef_k_fill(ef_dref y, float value, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, value); });
}

void ef_k_broadcast(ef_dref y, ef_dref d, float value, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, ld(d, 0) * value); });
}

void ef_k_act(ef_dref y, ef_dref x, ef_act act, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, act_fwd(act, ld(x, i))); });
}

void ef_k_act_bwd(ef_dref dx, ef_dref dy, ef_dref x, ef_act act, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(dx, i, ld(dy, i) * act_grad(act, ld(x, i))); });
}

void ef_k_add(ef_dref y, ef_dref a, ef_dref b, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, ld(a, i) + ld(b, i)); });
}

void ef_k_accum(ef_dref y, ef_dref x, int64_t n, cudaStream_t s) {
  map(n, s, [=] __device__(int64_t i) { st(y, i, ld(y, i) + ld(x, i)); });
}

void ef_k_channel_mul(ef_dref y, ef_dref x, ef_dref sc, int64_t n, int64_t hw, int64_t c, cudaStream_t s) {
  map(n * hw * c, s, [=] __device__(int64_t i) { st(y, i, ld(x, i) * ld(sc, i / (hw * c) * c + i % c)); });
}

void ef_k_spread(ef_dref dx, ef_dref dy, float scale, int64_t n, int64_t hw, int64_t c, cudaStream_t s) {
  map(n * hw * c, s, [=] __device__(int64_t i) { st(dx, i, ld(dy, i / (hw * c) * c + i % c) * scale); });
}

void ef_k_add_bias(ef_dref y, ef_dref bias, int64_t rows, int64_t c, cudaStream_t s) {
  map(rows * c, s, [=] __device__(int64_t i) { st(y, i, ld(y, i) + ld(bias, i % c)); });
}

// Word `index` of the Philox stream (seed, stream, step), as uniform: ef_philox_uniform.
__device__ __forceinline__ float philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  uint64_t block = index >> 2;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), stream, step};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return ef_u32_to_uniform(ef_philox4x32(ctr, key).v[index & 3]);
}

void ef_k_dropout(ef_dref y, ef_dref x, float rate, bool per_sample, int64_t per, uint64_t seed, uint32_t stream,
                  const uint32_t *step, int64_t n, cudaStream_t s) {
  float scale = 1.0f / (1.0f - rate);
  if (per_sample)
    map(n, s, [=] __device__(int64_t i) {
      float k = philox_uniform(seed, stream, *step, (uint64_t)(i / per)) >= rate ? scale : 0.0f;
      st(y, i, ld(x, i) * k);
    });
  else
    map(n, s, [=] __device__(int64_t i) {
      st(y, i, philox_uniform(seed, stream, *step, (uint64_t)i) >= rate ? ld(x, i) * scale : 0.0f);
    });
}

void ef_k_set_u32(uint32_t *dst, uint32_t value, cudaStream_t s) {
  map(1, s, [=] __device__(int64_t) { *dst = value; });
}

void ef_k_pad(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph, int64_t pw,
              cudaStream_t s) {
  map(n * ph * pw * c, s, [=] __device__(int64_t i) {
    int64_t k = i % c, px = i / c % pw, py = i / (c * pw) % ph, b = i / (c * pw * ph);
    int64_t yy = py - top, xx = px - left;
    st(y, i, yy >= 0 && yy < h && xx >= 0 && xx < w ? ld(x, ((b * h + yy) * w + xx) * c + k) : 0.0f);
  });
}

void ef_k_crop(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph, int64_t pw,
               cudaStream_t s) {
  map(n * h * w * c, s, [=] __device__(int64_t i) {
    int64_t k = i % c, xx = i / c % w, yy = i / (c * w) % h, b = i / (c * w * h);
    st(y, i, ld(x, ((b * ph + yy + top) * pw + xx + left) * c + k));
  });
}

// ---- per-channel reductions ------------------------------------------------------------------------
// Stage 1: block (32, 8) over a tile of 32 channels and one split of a group's rows; thread (tx, ty)
// sums rows ty, ty + 8, ... of its channel; the 8 sums are added in order into the partials
// part[group][split][2][C]. Stage 2: one thread per (group, channel) adds the splits in order and
// writes the result.

namespace {

constexpr int RED_TX = 32, RED_TY = 8;

__device__ __forceinline__ void red_values(const ef_red_args &a, int64_t idx, int64_t c, double *v0, double *v1) {
  switch (a.kind) {
  case EF_RED_STATS: {
    double d = (double)ld(a.x, idx) - (double)ld(a.x, c);
    *v0 = d, *v1 = d * d;
    break;
  }
  case EF_RED_BN_BWD: {
    const float *invstd = a.coef, *scale = a.coef + a.c, *shift = a.coef + 2 * a.c;
    float xv = ld(a.x, idx), dyv = ld(a.y, idx), z = xv * scale[c] + shift[c];
    float dz = a.act == EF_ACT_NONE ? dyv : dyv * act_grad(a.act, z);
    *v0 = (double)dz * ((xv - a.mean[c]) * invstd[c]);
    *v1 = dz;
    break;
  }
  case EF_RED_SUM: *v0 = ld(a.x, idx), *v1 = 0; break;
  case EF_RED_DOT: *v0 = (double)ld(a.x, idx) * ld(a.y, idx), *v1 = 0; break;
  }
}

__global__ void k_reduce_partial(ef_red_args a, int splits, double *part) {
  __shared__ double sh[2][RED_TY][RED_TX];
  int64_t c = (int64_t)blockIdx.x * RED_TX + threadIdx.x, g = blockIdx.z;
  int64_t per = (a.rows + splits - 1) / splits, r0 = blockIdx.y * per, r1 = r0 + per < a.rows ? r0 + per : a.rows;
  double s0 = 0, s1 = 0;
  if (c < a.c)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += RED_TY) {
      double v0, v1;
      red_values(a, (g * a.rows + r) * a.c + c, c, &v0, &v1);
      s0 += v0, s1 += v1;
    }
  sh[0][threadIdx.y][threadIdx.x] = s0;
  sh[1][threadIdx.y][threadIdx.x] = s1;
  __syncthreads();
  if (threadIdx.y == 0 && c < a.c) {
    double t0 = 0, t1 = 0;
    for (int j = 0; j < RED_TY; j++) t0 += sh[0][j][threadIdx.x], t1 += sh[1][j][threadIdx.x];
    double *p = part + ((g * splits + blockIdx.y) * 2) * a.c;
    p[c] = t0, p[a.c + c] = t1;
  }
}

__global__ void k_reduce_final(ef_dref out, ef_red_args a, int splits, const double *part) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= a.groups * a.c) return;
  int64_t g = i / a.c, c = i % a.c;
  double s0 = 0, s1 = 0;
  for (int k = 0; k < splits; k++) {
    const double *p = part + ((g * splits + k) * 2) * a.c;
    s0 += p[c], s1 += p[a.c + c];
  }
  switch (a.kind) {
  case EF_RED_STATS: { // as ef_cpu_bn_stats
    double m = s0 / (double)a.rows, var = s1 / (double)a.rows - m * m;
    st(out, c, (float)((double)ld(a.x, c) + m));
    st(out, a.c + c, (float)(var > 0 ? var : 0));
    break;
  }
  case EF_RED_BN_BWD:
    st(out, c, (float)s0);
    st(out, a.c + c, (float)s1);
    break;
  default: st(out, g * a.c + c, (float)(s0 * a.scale)); break;
  }
}

} // namespace

int ef_k_reduce_splits(int64_t groups, int64_t rows, int64_t c) {
  int64_t tiles = (c + RED_TX - 1) / RED_TX, blocks = groups * tiles;
  int64_t want = (2048 + blocks - 1) / blocks, most = (rows + 63) / 64; // about 2048 blocks, 64+ rows each
  int64_t s = want < most ? want : most;
  return (int)(s < 1 ? 1 : s > 1024 ? 1024 : s);
}

size_t ef_k_reduce_scratch(int64_t groups, int64_t rows, int64_t c) {
  return (size_t)(groups * ef_k_reduce_splits(groups, rows, c) * 2 * c) * sizeof(double);
}

void ef_k_reduce(ef_dref out, const ef_red_args *a, void *scratch, cudaStream_t s) {
  int splits = ef_k_reduce_splits(a->groups, a->rows, a->c);
  dim3 grid((unsigned)((a->c + RED_TX - 1) / RED_TX), (unsigned)splits, (unsigned)a->groups);
  k_reduce_partial<<<grid, dim3(RED_TX, RED_TY), 0, s>>>(*a, splits, (double *)scratch);
  int64_t n = a->groups * a->c;
  k_reduce_final<<<(unsigned)((n + THREADS - 1) / THREADS), THREADS, 0, s>>>(out, *a, splits, (const double *)scratch);
}

// Whole-tensor sums: `chunks` blocks each sum a contiguous range (block tree), one thread adds them.
namespace {

int64_t total_chunks(int64_t n) {
  int64_t c = (n + 4095) / 4096;
  return c < 1 ? 1 : c > 1024 ? 1024 : c;
}

__global__ void k_total_partial(ef_dref x, int64_t n, double *part) {
  __shared__ double sh[THREADS];
  int64_t per = (n + gridDim.x - 1) / gridDim.x, i0 = blockIdx.x * per, i1 = i0 + per < n ? i0 + per : n;
  double acc = 0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += THREADS) acc += ld(x, i);
  double t = block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

__global__ void k_total_final(ef_dref out, const double *part, int64_t chunks, double scale) {
  double t = 0;
  for (int64_t k = 0; k < chunks; k++) t += part[k];
  st(out, 0, (float)(t * scale));
}

} // namespace

size_t ef_k_total_scratch(int64_t n) { return (size_t)total_chunks(n) * sizeof(double); }

void ef_k_total(ef_dref out, ef_dref x, double scale, int64_t n, void *scratch, cudaStream_t s) {
  int64_t chunks = total_chunks(n);
  k_total_partial<<<(unsigned)chunks, THREADS, 0, s>>>(x, n, (double *)scratch);
  k_total_final<<<1, 1, 0, s>>>(out, (const double *)scratch, chunks, scale);
}

// ---- batch norm ------------------------------------------------------------------------------------

void ef_k_bn_coeffs(float *coef, const float *stats, const float *affine, const float *red, int64_t rows, float eps,
                    int64_t c, cudaStream_t s) {
  map(c, s, [=] __device__(int64_t k) {
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
  const float *scale = coef + c, *shift = coef + 2 * c;
  map(rows * c, s, [=] __device__(int64_t i) {
    int64_t k = i % c;
    st(y, i, act_fwd(act, ld(x, i) * scale[k] + shift[k]));
  });
}

void ef_k_bn_bwd_data(ef_dref dx, ef_dref dy, ef_dref x, const float *coef, const float *mean, ef_act act, int64_t rows,
                      int64_t c, cudaStream_t s) {
  const float *scale = coef + c, *shift = coef + 2 * c, *k3 = coef + 3 * c, *k2 = coef + 4 * c;
  map(rows * c, s, [=] __device__(int64_t i) {
    int64_t k = i % c;
    float xv = ld(x, i), dyv = ld(dy, i);
    float dz = act == EF_ACT_NONE ? dyv : dyv * act_grad(act, xv * scale[k] + shift[k]);
    st(dx, i, scale[k] * dz + k3[k] * (xv - mean[k]) + k2[k]);
  });
}

void ef_k_sync_var_term(float *term, const float *own, const float *group_mean, int64_t c, cudaStream_t s) {
  map(c, s, [=] __device__(int64_t k) {
    float d = own[k] - group_mean[k];
    term[k] = own[c + k] + d * d;
  });
}

void ef_k_bn_update(float *running, const float *batch, float momentum, double bessel, int64_t c, cudaStream_t s) {
  double m = momentum;
  map(c, s, [=] __device__(int64_t k) {
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

__device__ row_stats softmax_row(const ef_dref &z, int64_t row, int64_t k) {
  __shared__ double shd[THREADS];
  __shared__ float shf[THREADS];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) mx = fmaxf(mx, ld(z, row * k + j));
  mx = block_max(mx, shf);
  double sum = 0, zsum = 0;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) {
    float v = ld(z, row * k + j);
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

__global__ void k_softmax_ce_rows(double *row_loss, ef_dref z, const int32_t *labels, float eps, int64_t k, int *err) {
  int64_t i = blockIdx.x;
  row_stats r = softmax_row(z, i, k);
  if (threadIdx.x == 0) {
    int32_t y = checked_label(labels, i, k, err);
    double lse = r.mx + log(r.sum), e = eps;
    row_loss[i] = y < 0 ? NAN : lse - (1 - e) * ld(z, i * k + y) - e / (double)k * r.zsum;
  }
}

__global__ void k_mean_rows(ef_dref out, const double *row_loss, int64_t n) {
  double t = 0;
  for (int64_t i = 0; i < n; i++) t += row_loss[i];
  st(out, 0, (float)(t / (double)n));
}

__global__ void k_softmax_ce_bwd(ef_dref dz, ef_dref dloss, ef_dref z, const int32_t *labels, float eps, int64_t n,
                                 int64_t k, int *err) {
  int64_t i = blockIdx.x;
  row_stats r = softmax_row(z, i, k);
  __shared__ int32_t label;
  if (threadIdx.x == 0) label = checked_label(labels, i, k, err);
  __syncthreads();
  double e = eps, g = ld(dloss, 0) / (double)n;
  for (int64_t j = threadIdx.x; j < k; j += THREADS) {
    double t = e / (double)k + (j == label ? 1 - e : 0);
    st(dz, i * k + j, (float)(g * (exp((double)ld(z, i * k + j) - r.mx) / r.sum - t)));
  }
}

} // namespace

void ef_k_softmax_ce(ef_dref out, ef_dref logits, const int32_t *labels, float eps, int64_t n, int64_t k, void *scratch,
                     int *err, cudaStream_t s) {
  k_softmax_ce_rows<<<(unsigned)n, THREADS, 0, s>>>((double *)scratch, logits, labels, eps, k, err);
  k_mean_rows<<<1, 1, 0, s>>>(out, (const double *)scratch, n);
}

void ef_k_softmax_ce_bwd(ef_dref dz, ef_dref dloss, ef_dref logits, const int32_t *labels, float eps, int64_t n,
                         int64_t k, int *err, cudaStream_t s) {
  k_softmax_ce_bwd<<<(unsigned)n, THREADS, 0, s>>>(dz, dloss, logits, labels, eps, n, k, err);
}
