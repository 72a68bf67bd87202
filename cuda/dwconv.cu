// effnet's own NHWC depthwise convolutions on the GPU (forward, data gradient, filter gradient) at
// f32, bf16 and f16: one thread per point and 16 bytes of channels, running the per-point
// arithmetic of core/dwconv.h that the CPU twin (core/dwconv.c) runs too, so results are the same
// bits; the filter gradient sums fixed splits, then the splits in order (deterministic).
#include "core/dwconv.h"
#include "cuda/kernel_util.cuh"

using namespace ef;

namespace {

// Every launch's operands: the activations a and b (forward: y, x; data gradient: dx, dy; filter
// gradient: dy, x), the weights (C,KH,KW,1) transposed to wt (KH*KW, C), the bias, the partials.
struct dw_args {
  ef_dref a, b;
  const float *wt, *bias;
  float *part;
  ef_dw_shape s;
  cudaStream_t st;
};

template <ef_dtype DT, int L> struct dw_forward {
  static void run(const dw_args &a) {
    ef_dref y = a.a, x = a.b;
    const float *wt = a.wt, *bias = a.bias;
    ef_dw_shape s = a.s;
    for_rows((int64_t)s.n * s.oh * s.ow, s.c / L, a.st, "depthwise forward", [=] __device__(int64_t p, int64_t v) {
      uint32_t q = (uint32_t)p, ox = q % (uint32_t)s.ow, t = q / (uint32_t)s.ow;
      float acc[L];
      ef_dw_forward_point(&s, x.p, type_in(DT, x.dt), wt, bias, (int)(t / s.oh), (int)(t % s.oh), (int)ox, (int)v * L,
                          L, acc);
      ef_lanes_store(y.p, type_in(DT, y.dt), p * s.c + v * L, L, acc);
    });
  }
};

template <ef_dtype DT, int L> struct dw_bwd_data {
  static void run(const dw_args &a) {
    ef_dref dx = a.a, dy = a.b;
    const float *wt = a.wt;
    ef_dw_shape s = a.s;
    for_rows((int64_t)s.n * s.h * s.w, s.c / L, a.st, "depthwise data gradient", [=] __device__(int64_t p, int64_t v) {
      uint32_t q = (uint32_t)p, ix = q % (uint32_t)s.w, t = q / (uint32_t)s.w;
      float acc[L];
      ef_dw_bwd_data_point(&s, dy.p, type_in(DT, dy.dt), wt, (int)(t / s.h), (int)(t % s.h), (int)ix, (int)v * L, L,
                           acc);
      ef_lanes_store(dx.p, type_in(DT, dx.dt), p * s.c + v * L, L, acc);
    });
  }
};

// part[k][tap][c]: split k's sum for one tap and 16 bytes of channels.
template <ef_dtype DT, int L> struct dw_bwd_filter {
  static void run(const dw_args &a) {
    ef_dref dy = a.a, x = a.b;
    float *part = a.part;
    ef_dw_shape s = a.s;
    int splits = ef_dw_wgrad_splits(&s), taps = s.kh * s.kw;
    int64_t vecs = s.c / L;
    for_rows(splits, taps * vecs, a.st, "depthwise filter gradient", [=] __device__(int64_t k, int64_t u) {
      int tap = (int)(u / vecs), c = (int)(u % vecs) * L;
      float acc[L];
      ef_dw_wgrad_partial(&s, dy.p, x.p, type_in(DT, x.dt), splits, (int)k, tap / s.kw, tap % s.kw, c, L, acc);
      ef_lanes_store(part, EF_F32, (k * taps + tap) * s.c + c, L, acc);
    });
  }
};

} // namespace

void ef_k_dw_weights(float *wt, ef_dref w, const ef_dw_shape *s, cudaStream_t st) {
  int64_t taps = (int64_t)s->kh * s->kw, c = s->c;
  for_rows(taps, c, st, "depthwise weights",
           [=] __device__(int64_t t, int64_t k) { ef_lanes_load(w.p, w.dt, k * taps + t, 1, &wt[t * c + k]); });
}

void ef_k_dw_forward(ef_dref y, ef_dref x, const float *wt, const float *bias, const ef_dw_shape *s, cudaStream_t st) {
  EF_ASSERT(y.dt == x.dt, "depthwise forward of %s into %s", ef_dtype_name(x.dt), ef_dtype_name(y.dt));
  by_dtype<dw_forward>({y, x}, s->c, dw_args{y, x, wt, bias, nullptr, *s, st});
}

void ef_k_dw_bwd_data(ef_dref dx, ef_dref dy, const float *wt, const ef_dw_shape *s, cudaStream_t st) {
  EF_ASSERT(dx.dt == dy.dt, "depthwise data gradient of %s into %s", ef_dtype_name(dy.dt), ef_dtype_name(dx.dt));
  by_dtype<dw_bwd_data>({dx, dy}, s->c, dw_args{dx, dy, wt, nullptr, nullptr, *s, st});
}

void ef_k_dw_bwd_filter(ef_dref dw, ef_dref dy, ef_dref x, float *part, const ef_dw_shape *s, cudaStream_t st) {
  EF_ASSERT(dy.dt == x.dt, "depthwise filter gradient of %s and %s", ef_dtype_name(dy.dt), ef_dtype_name(x.dt));
  by_dtype<dw_bwd_filter>({dy, x}, s->c, dw_args{dy, x, nullptr, nullptr, part, *s, st});
  // dw[c][tap]: the splits in order, as the twin adds them.
  int splits = ef_dw_wgrad_splits(s);
  int64_t taps = (int64_t)s->kh * s->kw, c = s->c;
  for_rows(taps, c, st, "depthwise filter gradient's sum", [=] __device__(int64_t tap, int64_t k) {
    float total = 0.0f;
    for (int j = 0; j < splits; j++) total += part[((int64_t)j * taps + tap) * c + k];
    ef_lanes_store(dw.p, dw.dt, k * taps + tap, 1, &total);
  });
}
