// The training step's update on the GPU, the twin of train/optim.c and train/ema.c: the global
// gradient norm (fixed chunks in double, added in order), clipping and f16 unscaling folded into
// one multiplier, the optimizer over every segment of the flat arenas in one launch, and the EMA.
// Per-step scalars are read from the device's copy of ef_step_values (core/update.h).
#include "cuda/kernel_util.cuh"

using namespace ef;

namespace {

__global__ void k_sumsq_partial(const float *g, int64_t n, double *part) {
  __shared__ double sh[THREADS];
  int64_t per = (n + gridDim.x - 1) / gridDim.x, i0 = blockIdx.x * per, i1 = i0 + per < n ? i0 + per : n;
  double acc = 0;
  for (int64_t i = i0 + threadIdx.x; i < i1; i += THREADS) acc += (double)g[i] * g[i];
  double t = block_sum(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = t;
}

// As ef_grad_global_norm and ef_grad_clip: the multiplier is clip / (norm + 1e-6) in f32 when
// that is below 1, else 1; times unscale. One block adds the chunks in a fixed order.
__global__ void k_norm_final(ef_step_values *v, float *gmul, const double *part, ef_step_values *results) {
  __shared__ double sh[THREADS];
  double total = block_sum_of(part, EF_K_NORM_CHUNKS, sh);
  if (threadIdx.x) return;
  double norm = sqrt(total) * v->unscale;
  v->norm = norm;
  v->skip = isfinite(norm) ? 0 : 1;
  double coef = v->clip > 0 ? v->clip / (norm + 1e-6) : 1.0;
  *gmul = coef < 1 ? (float)(v->unscale * coef) : (float)v->unscale;
  results[v->slot] = *v;
}

// Block b works on EF_UPDATE_CHUNK elements of the segment whose blocks hold b (a binary search
// of first_block).
__global__ void k_update(ef_update_pass u, const ef_step_values *v, const float *gmul) {
  if (v->skip) return;
  int64_t b = blockIdx.x;
  const ef_update_segment sg = u.segments[ef_update_segment_of(u.segments, u.n_segments, b)];
  int64_t start = (b - sg.first_block) * EF_UPDATE_CHUNK,
          end = start + EF_UPDATE_CHUNK < sg.numel ? start + EF_UPDATE_CHUNK : sg.numel;
  double lr = v->lr * (double)sg.lr_scale;
  float flr = (float)lr, wd = (float)sg.weight_decay, gm = *gmul;
  float *p = u.param + sg.offset, *s0 = u.slot0 ? u.slot0 + sg.offset : nullptr,
        *s1 = u.slot1 ? u.slot1 + sg.offset : nullptr;
  const float *g = u.grad + sg.offset;
  // AdamW's per-step factors, as adamw_update.
  double t = v->adam_t;
  float shrink = (float)(1 - lr * sg.weight_decay), step_size = (float)(lr / (1 - pow(u.beta1, t)));
  float bc2_sqrt = (float)sqrt(1 - pow(u.beta2, t)), one_b1 = (float)(1 - u.beta1), one_b2 = (float)(1 - u.beta2);
  float m = (float)u.momentum, rho = (float)u.rho, one_rho = (float)(1 - u.rho), eps = (float)u.eps;
  float b1 = (float)u.beta1, b2 = (float)u.beta2;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    float gi = g[i] * gm;
    switch (u.kind) {
    case EF_UPDATE_SGD:
      gi = gi + wd * p[i];
      if (!s0) {
        p[i] -= flr * gi;
      } else {
        s0[i] = m * s0[i] + gi;
        p[i] -= flr * (u.nesterov ? gi + m * s0[i] : s0[i]);
      }
      break;
    case EF_UPDATE_RMSPROP:
      gi = gi + wd * p[i];
      s0[i] = rho * s0[i] + one_rho * gi * gi;
      s1[i] = m * s1[i] + flr * gi / sqrtf(s0[i] + eps);
      p[i] -= s1[i];
      break;
    default: // AdamW (decoupled decay: shrink)
      p[i] *= shrink;
      s0[i] = b1 * s0[i] + one_b1 * gi;
      s1[i] = b2 * s1[i] + one_b2 * gi * gi;
      p[i] -= step_size * s0[i] / (sqrtf(s1[i]) / bc2_sqrt + eps);
      break;
    }
  }
}

__global__ void k_ema(float *shadow, const float *value, int64_t n, const ef_step_values *v) {
  if (v->skip) return;
  float keep = (float)v->ema_decay, take = (float)(1 - v->ema_decay);
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    shadow[i] = keep * shadow[i] + take * value[i];
}

__global__ void k_swap(float *a, float *b, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

unsigned blocks_for(int64_t n) {
  int64_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 1 ? 1 : b > 4096 ? 4096 : b);
}

} // namespace

void ef_k_set_values(ef_step_values *v, ef_step_values value, cudaStream_t s) {
  for_each(1, s, [=] __device__(int64_t) { *v = value; });
}

void ef_k_grad_norm(ef_step_values *v, float *gmul, const float *grad, int64_t n, double *part, ef_step_values *results,
                    cudaStream_t s) {
  k_sumsq_partial<<<EF_K_NORM_CHUNKS, THREADS, 0, s>>>(grad, n, part);
  k_norm_final<<<1, THREADS, 0, s>>>(v, gmul, part, results);
}

void ef_k_update(const ef_update_pass *u, const ef_step_values *v, const float *gmul, cudaStream_t s) {
  if (u->n_segments == 0) return;
  k_update<<<(unsigned)u->blocks, THREADS, 0, s>>>(*u, v, gmul);
}

void ef_k_ema(float *shadow, const float *value, int64_t n, const ef_step_values *v, cudaStream_t s) {
  if (n > 0) k_ema<<<blocks_for(n), THREADS, 0, s>>>(shadow, value, n, v);
}

void ef_k_swap(float *a, float *b, int64_t n, cudaStream_t s) {
  if (n > 0) k_swap<<<blocks_for(n), THREADS, 0, s>>>(a, b, n);
}
