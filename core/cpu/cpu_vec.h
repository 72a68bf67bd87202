// The widest FMA vector this build has, for the CPU backend's own kernels: AVX-512's 16 lanes or
// AVX2's 8 (with FMA). Loads, stores, broadcast, FMA, a masked FMA, loads and stores of the first n
// lanes (n <= VEC), the activations and the sum of a vector's lanes. Without FMA vectors VEC stays
// undefined and those kernels take no node.
#ifndef EF_CPU_VEC_H
#define EF_CPU_VEC_H

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "core/op.h"

#if defined(__AVX512F__)
#define VEC 16
typedef __m512 vec;
#define vec_load _mm512_loadu_ps
#define vec_store _mm512_storeu_ps
#define vec_bcast _mm512_set1_ps
#define vec_fma _mm512_fmadd_ps
// fma(g, x, acc) where `in`, else acc with its bits.
#define vec_fma_if(g, x, acc, in) _mm512_mask3_fmadd_ps(g, x, acc, (__mmask16)((in) ? 0xFFFF : 0))
#define vec_load_n(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), p)
#define vec_store_n(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1), v)
#define vec_add _mm512_add_ps
#define vec_sub _mm512_sub_ps
#define vec_mul _mm512_mul_ps
#define vec_min _mm512_min_ps
#define vec_max _mm512_max_ps
#define vec_fnmsub _mm512_fnmsub_ps // -(a b) - c
#define vec_rcp _mm512_rcp14_ps     // 2^-14 relative error
#elif defined(__AVX2__) && defined(__FMA__)
#define VEC 8
typedef __m256 vec;
#define vec_load _mm256_loadu_ps
#define vec_store _mm256_storeu_ps
#define vec_bcast _mm256_set1_ps
#define vec_fma _mm256_fmadd_ps
#define vec_fma_if(g, x, acc, in)                                                                                      \
  _mm256_blendv_ps(acc, _mm256_fmadd_ps(g, x, acc), _mm256_castsi256_ps(_mm256_set1_epi32((in) ? -1 : 0)))
static inline __m256i ef_vec_lanes_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#define vec_load_n(p, n) _mm256_maskload_ps(p, ef_vec_lanes_mask(n))
#define vec_store_n(p, v, n) _mm256_maskstore_ps(p, ef_vec_lanes_mask(n), v)
#define vec_add _mm256_add_ps
#define vec_sub _mm256_sub_ps
#define vec_mul _mm256_mul_ps
#define vec_min _mm256_min_ps
#define vec_max _mm256_max_ps
#define vec_fnmsub _mm256_fnmsub_ps
#endif

#ifdef VEC
// The first n lanes (1 <= n <= VEC): plain where n == VEC (AVX2's masked stores are slow).
static inline __attribute__((always_inline)) vec vec_load_upto(const float *p, int n) {
  return n == VEC ? vec_load(p) : vec_load_n(p, n);
}
static inline __attribute__((always_inline)) void vec_store_upto(float *p, vec v, int n) {
  if (n == VEC) vec_store(p, v);
  else vec_store_n(p, v, n);
}

// e^-x: core/act.h's ef_expf of -x, step by step, in vectors, for the sigmoid (its argument clamped to
// at most 80, so that 1 + e^-x keeps a normal reciprocal: x in [-80, 87.3]). The negation is folded
// into the reduction (an FNMSUB) and, with AVX-512, 2^n is a VSCALEFPS: the same bits as ef_expf of
// the negated, clamped argument in fewer operations (AVX-512's swish 21 instead of 25; a swish
// vector 3-5% faster with AVX-512, 16% with AVX2, on the AMD EPYC; docs/perf.md, "Issue 19, eleventh
// pass"). The clamps are min and max with x second, so that NaN stays NaN (x86 returns the second
// operand where either is NaN). Written out because GCC vectorizes ef_expf's clamps as branches whose
// constant arm (x / (1 + e^88) in swish) it computes for every lane: on ordinary x that quotient is
// subnormal, and its microcode assist made a swish over a 16 -> 96 expansion's outputs cost 60 ms
// where this takes a few.
static inline __attribute__((always_inline)) vec vec_exp_neg(vec x) {
  x = vec_min(vec_bcast(87.3f), vec_max(vec_bcast(-80.0f), x));
  vec t = vec_fma(x, vec_bcast(-1.44269504f), vec_bcast(12582912.0f)), n = vec_sub(t, vec_bcast(12582912.0f));
  vec r = vec_fnmsub(n, vec_bcast(0.693359375f), x); // -x - n ln2's high part
  r = vec_fma(n, vec_bcast(2.12194440e-4f), r);
  vec p = vec_bcast(1.9875691500e-4f);
  p = vec_fma(p, r, vec_bcast(1.3981999507e-3f));
  p = vec_fma(p, r, vec_bcast(8.3334519073e-3f));
  p = vec_fma(p, r, vec_bcast(4.1665795894e-2f));
  p = vec_fma(p, r, vec_bcast(1.6666665459e-1f));
  p = vec_fma(p, r, vec_bcast(5.0000001201e-1f));
  p = vec_add(vec_fma(vec_mul(p, r), r, r), vec_bcast(1.0f));
#if VEC == 16
  return _mm512_scalef_ps(p, n);
#else
  __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127 - 0x4B400000)), 23);
  return vec_mul(p, _mm256_castsi256_ps(bits));
#endif
}

// 1 / (1 + e^-x). With AVX-512, the reciprocal's estimate and a Newton step (within 2 ulp of the
// quotient, where a divide, 16 cycles a vector on the Xeon, bound the kernels that activate in
// registers; on the AMD EPYC the two were even). With AVX2, the quotient: the divider works beside
// the FMA pipes, where the 12-bit estimate took two Newton steps (an AVX2 build on the AMD EPYC: 6.1-6.2
// against 7.1-7.4 ns a vector of sigmoid gradients, and the main job's batch norm 11% less; docs/perf.md,
// "Issue 19, eleventh pass"). NaN stays NaN. AVX-512's 1 - d r is one FNMADD, not a negation and an
// FMA: the same bits, a swish vector 4% faster on the AMD EPYC (4.69-4.73 against 4.88-4.93 ns,
// "twelfth pass").
static inline __attribute__((always_inline)) vec vec_sigmoid(vec x) {
  vec one = vec_bcast(1.0f), d = vec_add(one, vec_exp_neg(x));
#if VEC == 8
  return _mm256_div_ps(one, d);
#else
  vec r = vec_rcp(d);
  return vec_fma(r, _mm512_fnmadd_ps(d, r, one), r); // r + r (1 - d r), 1 - d r one FNMADD
#endif
}

// core/act.h's ef_act_grad in vectors for swish and sigmoid (the other activations' plain loops
// vectorize), the sigmoid as vec_sigmoid's.
static inline __attribute__((always_inline)) vec vec_sigmoid_grad(ef_act a, vec x) {
  vec s = vec_sigmoid(x), one = vec_bcast(1.0f), oms = vec_sub(one, s);
  return a == EF_ACT_SWISH ? vec_mul(s, vec_fma(x, oms, one)) : vec_mul(s, oms);
}

// The sum of v's lanes (pairwise: the upper half onto the lower, down to one lane).
static inline __attribute__((always_inline)) float vec_hsum(vec v) {
#if VEC == 16
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
#else
  __m256 h = v;
#endif
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

// s[0 .. VEC) += v, in double.
static inline __attribute__((always_inline)) void vec_add_f64(double *s, vec v) {
#if VEC == 16
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), lo));
  _mm512_storeu_pd(s + 8, _mm512_add_pd(_mm512_loadu_pd(s + 8), hi));
#else
  __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  _mm256_storeu_pd(s, _mm256_add_pd(_mm256_loadu_pd(s), lo));
  _mm256_storeu_pd(s + 4, _mm256_add_pd(_mm256_loadu_pd(s + 4), hi));
#endif
}

// core/act.h's ef_act_fwd in vectors (a a constant where it is inlined), the sigmoid's quotient as
// vec_sigmoid's.
static inline __attribute__((always_inline)) vec vec_act_fwd(ef_act a, vec x) {
  vec zero = vec_bcast(0.0f);
  switch (a) {
  case EF_ACT_SWISH: return vec_mul(x, vec_sigmoid(x));
  case EF_ACT_SIGMOID: return vec_sigmoid(x);
  case EF_ACT_RELU: return vec_max(x, zero); // NaN gives 0, as x > 0 ? x : 0
  case EF_ACT_RELU6: return vec_min(vec_max(x, zero), vec_bcast(6.0f));
  default: return x;
  }
}
#endif

#endif
