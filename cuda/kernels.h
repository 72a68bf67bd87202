// The CUDA kernels' launchers (kernels.cu), callable from C. llm.c's convention: outputs first,
// then inputs, sizes and the stream. Every tensor argument is an address and its ef_dtype: kernels
// read f32, bf16 or f16, compute in f32 (sums in double) and write the output's type, so one
// kernel serves every precision. Each has a CPU twin in core/cpu with the same numerics.
#ifndef EF_CUDA_KERNELS_H
#define EF_CUDA_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "core/dtype.h"
#include "core/dwconv.h"
#include "core/op.h"
#include "core/update.h"

#ifdef __cplusplus
extern "C" {
#endif

// A device tensor argument: address and element type.
typedef struct {
  void *p;
  ef_dtype dt;
} ef_dref;

// Device error codes, written to the backend's error word by kernels that validate data.
enum { EF_CUDA_ERR_NONE = 0, EF_CUDA_ERR_LABEL = 1 };

// ---- elementwise ---------------------------------------------------------------------------
void ef_k_cast(ef_dref y, ef_dref x, int64_t n, cudaStream_t s);                   // y = x
void ef_k_fill(ef_dref y, float value, int64_t n, cudaStream_t s);                 // y = value
void ef_k_broadcast(ef_dref y, ef_dref d, float value, int64_t n, cudaStream_t s); // y = d[0] * value
void ef_k_act(ef_dref y, ef_dref x, ef_act act, int64_t n, cudaStream_t s);        // y = act(x)
void ef_k_act_bwd(ef_dref dx, ef_dref dy, ef_dref x, ef_act act, int64_t n, cudaStream_t s);
void ef_k_add(ef_dref y, ef_dref a, ef_dref b, int64_t n, cudaStream_t s); // y = a + b
void ef_k_accum(ef_dref y, ef_dref x, int64_t n, cudaStream_t s);          // y += x
// y (N,HW,C) = x (N,HW,C) * s (N,C), + add (N,C) / HW where add.p is not NULL
void ef_k_channel_mul(ef_dref y, ef_dref x, ef_dref sc, ef_dref add, int64_t n, int64_t hw, int64_t c, cudaStream_t s);
// dx (N,HW,C) = dy (N,C) * scale
void ef_k_spread(ef_dref dx, ef_dref dy, float scale, int64_t n, int64_t hw, int64_t c, cudaStream_t s);
// y (rows,C) += bias (C)
void ef_k_add_bias(ef_dref y, ef_dref bias, int64_t rows, int64_t c, cudaStream_t s);
// Dropout / drop-path as ef_cpu_dropout: Philox (seed, stream, *step); per sample: `per`
// elements share sample i / per's draw.
void ef_k_dropout(ef_dref y, ef_dref x, float rate, bool per_sample, int64_t per, uint64_t seed, uint32_t stream,
                  const uint32_t *step, int64_t n, cudaStream_t s);
void ef_k_set_u32(uint32_t *dst, uint32_t value, cudaStream_t s);

// Zero padding for convolutions with asymmetric ("SAME") padding: y (N,H+top+bottom,W+left+right,C)
// holds x (N,H,W,C) at (top, left), zeros around; crop is the reverse (y (N,H,W,C) from x).
void ef_k_pad(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph,
              int64_t pw, cudaStream_t s);
void ef_k_crop(ef_dref y, ef_dref x, int64_t n, int64_t h, int64_t w, int64_t c, int top, int left, int64_t ph,
               int64_t pw, cudaStream_t s);

// ---- the feed (cuda/cuda_feed.c) ------------------------------------------------------------
// y (n elements, f32 or 16-bit) = lut[c * 256 + px] for uint8 pixels px of `channels` channels a
// pixel (core/pixels.h, the twin of the loader's ef_transform_normalize); n < 2^32.
void ef_k_normalize_u8(ef_dref y, const uint8_t *px, const float *lut, int channels, int64_t n, cudaStream_t s);

// ---- depthwise convolutions (dwconv.cu), the twins of core/dwconv.c ----------------------------
// wt (KH*KW, C) f32 from the weights (C,KH,KW,1) of any type; then the forward (bias f32 or NULL),
// the data gradient and the filter gradient, whose activations (y and x; dx and dy; dy and x) are
// all of one type. part: the filter gradient's partial sums, ef_dw_wgrad_splits(s) * KH*KW * C
// floats of scratch.
void ef_k_dw_weights(float *wt, ef_dref w, const ef_dw_shape *s, cudaStream_t st);
void ef_k_dw_forward(ef_dref y, ef_dref x, const float *wt, const float *bias, const ef_dw_shape *s, cudaStream_t st);
void ef_k_dw_bwd_data(ef_dref dx, ef_dref dy, const float *wt, const ef_dw_shape *s, cudaStream_t st);
void ef_k_dw_bwd_filter(ef_dref dw, ef_dref dy, ef_dref x, float *part, const ef_dw_shape *s, cudaStream_t st);

// ---- per-channel reductions over rows --------------------------------------------------------
// x is viewed as (G, R, C): groups of R rows. Each (group, channel) gets one or two sums over its
// rows, taken in double in a fixed order (deterministic: the same bits on every run).
typedef enum {
  EF_RED_STATS,  // BN_STATS: out (2,C) [mean; biased var] from sums of x - x[0] (G = 1)
  EF_RED_BN_BWD, // BN_BWD_REDUCE: out (2,C) [sum dz * xhat; sum dz], dz = dy * act'(x*scale+shift)
  EF_RED_SUM,    // out (G,C) = scale * sum over rows of x          (SUM_ROWS, GAP)
  EF_RED_DOT,    // out (G,C) = scale * sum over rows of x * y      (CHANNEL_MUL_BWD_S)
} ef_red_kind;

typedef struct {
  ef_red_kind kind;
  int64_t groups, rows, c;
  ef_dref x, y;      // y: DOT's second factor, BN_BWD's dy
  const float *coef; // BN_BWD: ef_k_bn_coeffs' rows, and the batch mean
  const float *mean;
  ef_act act;
  double scale;
} ef_red_args;

// The scratch bytes for the partial sums of the splits of the rows (cuda/launch.h).
size_t ef_k_reduce_scratch(int64_t groups, int64_t rows, int64_t c);
void ef_k_reduce(ef_dref out, const ef_red_args *a, void *scratch, cudaStream_t s);
// out[0] = scale * sum of x's n elements, in double, in a fixed order; scratch: ef_k_total_scratch.
size_t ef_k_total_scratch(int64_t n);
void ef_k_total(ef_dref out, ef_dref x, double scale, int64_t n, void *scratch, cudaStream_t s);

// ---- batch norm ------------------------------------------------------------------------------
// coef (f32, [5][C]) as the CPU's bn_coeffs, in double: invstd, scale = gamma * invstd,
// shift = beta - mean * scale; and, when red (the BN_BWD_REDUCE sums (2,C) over `rows` rows) is
// given, k3 = -scale * invstd * red[0] / rows and k2 = -scale * red[1] / rows (else zeros).
void ef_k_bn_coeffs(float *coef, const float *stats, const float *affine, const float *red, int64_t rows, float eps,
                    int64_t c, cudaStream_t s);
// y = act(x * scale + shift)
void ef_k_bn(ef_dref y, ef_dref x, const float *coef, ef_act act, int64_t rows, int64_t c, cudaStream_t s);
// dx = scale * dz + k3 * (x - mean) + k2 (k3 = k2 = 0 with fixed statistics)
void ef_k_bn_bwd_data(ef_dref dx, ef_dref dy, ef_dref x, const float *coef, const float *mean, ef_act act, int64_t rows,
                      int64_t c, cudaStream_t s);
// SyncBN's variance term on the device, as ef_sync_stats_combine (core/op.c) on the host: with own
// this rank's (mean, var) rows (2,C) and group_mean the group's mean of means,
// term[k] = var[k] + (mean[k] - group_mean[k])^2, whose group mean is the group's variance.
void ef_k_sync_var_term(float *term, const float *own, const float *group_mean, int64_t c, cudaStream_t s);
// running = (1 - m) * running + m * batch, the variance times rows / (rows - 1)
void ef_k_bn_update(float *running, const float *batch, float momentum, double bessel, int64_t c, cudaStream_t s);

// ---- the loss -------------------------------------------------------------------------------
// Per row of logits (N,K): sum_k t_k (logsumexp(z) - z_k), the targets t labels smoothed by eps or
// (labels NULL) the soft probabilities soft (N,K); rows into scratch (double, N), then out[0] = their mean.
// A label outside [0, K) sets *err.
void ef_k_softmax_ce(ef_dref out, ef_dref logits, const int32_t *labels, const float *soft, float eps, int64_t n,
                     int64_t k, void *scratch, int *err, cudaStream_t s);
// dz = dloss[0] / N * (softmax(z) sum_k t_k - t)
void ef_k_softmax_ce_bwd(ef_dref dz, ef_dref dloss, ef_dref logits, const int32_t *labels, const float *soft, float eps,
                         int64_t n, int64_t k, int *err, cudaStream_t s);

// ---- the training step's update (update.cu): values `v` in device memory ------------------------
// *v = value (an argument, copied at the launch).
void ef_k_set_values(ef_step_values *v, ef_step_values value, cudaStream_t s);
// v->norm and v->skip from the gradients, and *gmul, the multiplier the update applies to them;
// partial sums in `part` (EF_K_NORM_CHUNKS doubles), added in a fixed order; then v's copy in
// results[v->slot] (mapped host memory).
#define EF_K_NORM_CHUNKS 1024
void ef_k_grad_norm(ef_step_values *v, float *gmul, const float *grad, int64_t n, double *part, ef_step_values *results,
                    cudaStream_t s);
void ef_k_update(const ef_update_pass *u, const ef_step_values *v, const float *gmul, cudaStream_t s);
void ef_k_ema(float *shadow, const float *value, int64_t n, const ef_step_values *v, cudaStream_t s);
void ef_k_swap(float *a, float *b, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
