// Elementwise and broadcast kernels on the CPU: activations, add, the squeeze-excite channel
// scale, global average pooling, dropout / drop-path, fill, broadcast and gradient accumulation.
// Plain loops over NHWC data, parallel with OpenMP; per-(n, c) sums are taken in double.
#include <omp.h>
#include <string.h>

#include "core/cpu/cpu_internal.h"
#include "core/philox.h"

#define F(t) ((float *)(t)->data)

// Activations run in blocks of BLOCK elements, each block a vectorized copy for its activation.
#define BLOCK 4096

EF_INLINE void act_block(ef_act a, const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = ef_act_fwd(a, x[i]);
}

EF_INLINE void act_bwd_block(ef_act a, const float *dy, const float *x, float *dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * ef_act_grad(a, x[i]);
}

void ef_cpu_act(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *x = F(node->src[0]);
  float *y = F(node);
  ef_act a = node->p.act.act;
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; b += BLOCK) EF_ACT_SPECIALIZE(a, act_block, x + b, y + b, n - b < BLOCK ? n - b : BLOCK);
}

void ef_cpu_act_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *dy = F(node->src[0]), *x = F(node->src[1]);
  float *dx = F(node);
  ef_act a = node->p.act.act;
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < n; b += BLOCK)
    EF_ACT_SPECIALIZE(a, act_bwd_block, dy + b, x + b, dx + b, n - b < BLOCK ? n - b : BLOCK);
}

void ef_cpu_add(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *a = F(node->src[0]), *b = F(node->src[1]);
  float *y = F(node);
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void ef_cpu_accum(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *src = F(node->src[1]);
  float *dst = F(node); // == node->src[0]->data: in place
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

// y (N,H,W,C) = x (N,H,W,C) * s (N,1,1,C), + d (N,1,1,C) / (H*W) where d is given.
void ef_cpu_channel_mul(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *x = F(node->src[0]), *s = F(node->src[1]), *d = node->n_src == 3 ? F(node->src[2]) : NULL;
  float *y = F(node);
  int64_t n = node->shape[0], hw = node->shape[1] * node->shape[2], c = node->shape[3];
  float inv = (float)(1.0 / (double)hw);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; b++)
    for (int64_t p = 0; p < hw; p++) {
      const float *xr = x + (b * hw + p) * c, *sr = s + b * c;
      float *yr = y + (b * hw + p) * c;
      if (d) {
        const float *dr = d + b * c;
        for (int64_t k = 0; k < c; k++) yr[k] = xr[k] * sr[k] + dr[k] * inv;
      } else {
        for (int64_t k = 0; k < c; k++) yr[k] = xr[k] * sr[k];
      }
    }
}

// Per (n, c): sum over H,W of a[n,h,w,c] (* b[n,h,w,c] when b is given), in order of the points,
// times `scale`, into out (N,1,1,C). Work items are (image, block of channels): whole rows of up to
// MAX_CBLOCK channels (every EfficientNet's, B7's widest 3840), so that each thread streams through
// its images' pixels once, and narrower blocks only where the images alone would make fewer than four
// items a thread. Rows split at 512 channels read an image once a block: at batch 32, 19x19x816 took
// 2.8-3.4 ms against 0.8-1.0 whole (docs/perf.md, "Issue 19, ninth pass"). The block width does not
// change the bits (each channel is summed in the order of the points). The double sums stay on the
// stack (32 KiB at most).
#define MAX_CBLOCK 4096
static void sum_hw(const float *a, const float *b, float *out, int64_t n, int64_t hw, int64_t c, double scale) {
  int64_t width = c < MAX_CBLOCK ? c : MAX_CBLOCK, min_items = 4 * (int64_t)omp_get_max_threads();
  while (width > 16 && n * ((c + width - 1) / width) < min_items) width = (width / 2 + 15) / 16 * 16;
  int64_t nblk = (c + width - 1) / width;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; i++)
    for (int64_t blk = 0; blk < nblk; blk++) {
      double acc[MAX_CBLOCK];
      int64_t c0 = blk * width, cn = c - c0 < width ? c - c0 : width;
      memset(acc, 0, sizeof(double) * (size_t)cn);
      for (int64_t p = 0; p < hw; p++) {
        const float *ar = a + (i * hw + p) * c + c0;
        if (b) {
          const float *br = b + (i * hw + p) * c + c0;
          for (int64_t k = 0; k < cn; k++) acc[k] += (double)ar[k] * br[k];
        } else {
          for (int64_t k = 0; k < cn; k++) acc[k] += ar[k];
        }
      }
      for (int64_t k = 0; k < cn; k++) out[i * c + c0 + k] = (float)(acc[k] * scale);
    }
}

void ef_cpu_channel_mul_bwd_s(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *dy = node->src[0];
  sum_hw(F(dy), F(node->src[1]), F(node), dy->shape[0], dy->shape[1] * dy->shape[2], dy->shape[3], 1.0);
}

void ef_cpu_gap(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *x = node->src[0];
  int64_t hw = x->shape[1] * x->shape[2];
  sum_hw(F(x), NULL, F(node), x->shape[0], hw, x->shape[3], 1.0 / (double)hw);
}

// dx (N,H,W,C) = dy (N,1,1,C) / (H*W)
void ef_cpu_gap_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *dy = F(node->src[0]);
  float *dx = F(node);
  int64_t n = node->shape[0], hw = node->shape[1] * node->shape[2], c = node->shape[3];
  float inv = (float)(1.0 / (double)hw);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; b++)
    for (int64_t p = 0; p < hw; p++)
      for (int64_t k = 0; k < c; k++) dx[(b * hw + p) * c + k] = dy[b * c + k] * inv;
}

// Keeps an element (or, per sample, a whole sample) when its Philox uniform is >= rate, and
// scales what it keeps by 1 / (1 - rate). The draw for element i (sample n) is word i (n) of
// the stream (seed, stream, step): the backward pass redraws the same mask.
void ef_cpu_dropout(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_dropout_params *p = &node->p.dropout;
  const float *x = F(node->src[0]);
  float *y = F(node);
  int64_t n = ef_numel(node);
  float rate = p->rate, scale = 1.0f / (1.0f - rate);
  if (p->per_sample) {
    int64_t samples = node->shape[0], per = n / samples;
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < samples; s++) {
      float k = ef_philox_uniform(p->seed, p->stream, ctx->step, (uint64_t)s) >= rate ? scale : 0.0f;
      for (int64_t i = 0; i < per; i++) y[s * per + i] = x[s * per + i] * k;
    }
    return;
  }
  int64_t blocks = (n + 3) / 4;
  uint32_t key[2] = {(uint32_t)p->seed, (uint32_t)(p->seed >> 32)};
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; blk++) {
    uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)((uint64_t)blk >> 32), p->stream, ctx->step};
    ef_philox_out r = ef_philox4x32(ctr, key);
    for (int j = 0; j < 4 && blk * 4 + j < n; j++) {
      int64_t i = blk * 4 + j;
      y[i] = ef_u32_to_uniform(r.v[j]) >= rate ? x[i] * scale : 0.0f;
    }
  }
}

void ef_cpu_fill(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  float *y = F(node), v = node->p.value.value;
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = v;
}

void ef_cpu_broadcast(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  float *y = F(node), v = F(node->src[0])[0] * node->p.value.value;
  int64_t n = ef_numel(node);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] = v;
}
