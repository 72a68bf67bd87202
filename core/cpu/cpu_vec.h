// The widest FMA vector this build has, for the CPU backend's own kernels: AVX-512's 16 lanes or
// AVX2's 8 (with FMA). Loads, stores, broadcast, FMA, a masked FMA, and loads and stores of the first
// n lanes (n <= VEC). Without FMA vectors VEC stays undefined and those kernels take no node.
#ifndef EF_CPU_VEC_H
#define EF_CPU_VEC_H

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif


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
#endif

#endif
