// What the CPU can do at most, measured: the f32 multiply-add rate of independent FMA chains in the
// widest vectors this build targets (AVX-512, AVX2, or SSE without FMA), and the memory bandwidth
// of a scaled copy between two 256 MiB arrays, both on the backend's threads. Profiles divide by
// them.
#include <omp.h>
#include <stdlib.h>

#include "core/cpu/cpu_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#ifdef __AVX512F__ // 12 chains: two FMA units with four-cycle latency need eight in flight
#define CHAINS 12
#define LANES 16
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define STORE _mm512_storeu_ps
#elif defined(__FMA__) // AVX2 has 16 vector registers: 10 chains and the two operands
#define CHAINS 10
#define LANES 8
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define STORE _mm256_storeu_ps
#elif defined(__SSE2__) // no FMA in this build (-DEFFNET_NATIVE=OFF): a multiply and an add
#define CHAINS 8
#define LANES 4
typedef __m128 vec;
#define SET1 _mm_set1_ps
#define FMA(a, m, b) _mm_add_ps(_mm_mul_ps(a, m), b)
#define ADD _mm_add_ps
#define STORE _mm_storeu_ps
#else // not x86: scalar chains
#define CHAINS 8
#define LANES 1
typedef float vec;
#define SET1(x) (x)
#define FMA(a, m, b) ((a) * (m) + (b))
#define ADD(a, b) ((a) + (b))
#define STORE(v, t) ((v)[0] = (t))
#endif

// Independent chains a = a * m + b, `iters` steps each, on this thread; returns their sum. Named
// variables, not an array, so that every chain stays in a register.
#define STEP(a) a = FMA(a, m, b)
static float fma_chains(long iters) {
  vec m = SET1(0.999999f), b = SET1(1e-7f), a0 = SET1(0), a1 = SET1(1), a2 = SET1(2), a3 = SET1(3), a4 = SET1(4),
      a5 = SET1(5), a6 = SET1(6), a7 = SET1(7), a8 = SET1(8), a9 = SET1(9), a10 = SET1(10), a11 = SET1(11);
  for (long i = 0; i < iters; i++) {
    STEP(a0), STEP(a1), STEP(a2), STEP(a3), STEP(a4), STEP(a5), STEP(a6), STEP(a7);
#if CHAINS >= 10
    STEP(a8), STEP(a9);
#endif
#if CHAINS == 12
    STEP(a10), STEP(a11);
#endif
  }
  vec t = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));
  t = ADD(t, ADD(ADD(a8, a9), ADD(a10, a11))); // chains beyond CHAINS add their constants: harmless
  float v[LANES], s = 0;
  STORE(v, t);
  for (int l = 0; l < LANES; l++) s += v[l];
  return s;
}

ef_cpu_peak ef_cpu_peak_measure(const ef_backend *be) {
  ef_cpu_peak p = {0};
  int threads = ef_cpu_threads(be);
  for (int rep = 0; rep < 3; rep++) { // the best of three: the first may meet a clock still rising
    long iters = 20000000;
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fma_chains(iters);
    double s = omp_get_wtime() - t0, flops = 2.0 * LANES * CHAINS * (double)iters * threads;
    if (sink != sink) s *= 2; // never: keeps the sums alive
    if (flops / s / 1e9 > p.gflops) p.gflops = flops / s / 1e9;
  }
  size_t n = (size_t)64 << 20;
  float *x = ef_aligned_alloc(n * sizeof(float)), *y = ef_aligned_alloc(n * sizeof(float));
  if (!x || !y) {
    free(x), free(y);
    return p; // no bandwidth figure without the memory to measure it
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; i++) x[i] = 1.0f, y[i] = 0.0f;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] = 1.5f * x[i];
    double s = omp_get_wtime() - t0, gbs = 2.0 * (double)(n * sizeof(float)) / s / 1e9;
    if (gbs > p.gbs) p.gbs = gbs;
  }
  free(x), free(y);
  return p;
}
