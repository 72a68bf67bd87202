// What the GPU tests share: the CPU and CUDA backends they compare (the test is skipped, exit 77,
// with the reason, where no GPU can be used), and the comparison of results against the CPU's,
// which names the worst element and both values when it fails.
#ifndef EF_TESTS_GPU_HARNESS_H
#define EF_TESTS_GPU_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "cuda/cuda.h"
#include "tests/harness.h"

// The CPU backend (`threads`, 0: all) and CUDA device 0; exits 77 without a GPU, 1 when a
// backend cannot start.
static inline void test_gpu_backends(int threads, ef_backend **cpu, ef_backend **gpu) {
  char why[256];
  if (ef_cuda_device_count(why, sizeof why) == 0) {
    printf("skipped: %s\n", why);
    exit(77);
  }
  *cpu = ef_cpu_backend_new(threads);
  *gpu = *cpu ? ef_cuda_backend_new(&(ef_cuda_opts){.device = 0}) : NULL;
  if (!*gpu) {
    fprintf(stderr, "%s\n", ef_last_error());
    exit(1);
  }
  printf("CUDA backend on %s\n", ef_cuda_describe(*gpu));
}

// max |got - want| / max |want|, and in *at the element of the largest difference; a NaN anywhere
// gives NaN (and its element).
static inline double test_rel_err_at(const float *got, const float *want, int64_t n, int64_t *at) {
  double err = 0, mag = 0;
  *at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= err)) err = e, *at = i;
    if (!(fabs(want[i]) <= mag)) mag = fabs(want[i]);
  }
  return err / (mag > 1e-30 ? mag : 1e-30);
}

// Whether got is within tol of want (test_rel_err_at); why gets "relative error e (tolerance t);
// [i] got x want y" for the worst element, for the caller's CHECK.
static inline bool test_close(const float *got, const float *want, int64_t n, double tol, char *why, size_t len) {
  int64_t at;
  double e = test_rel_err_at(got, want, n, &at);
  snprintf(why, len, "relative error %.3g (tolerance %.3g); [%lld] got %.9g want %.9g", e, tol, (long long)at,
           n ? (double)got[at] : 0.0, n ? (double)want[at] : 0.0);
  return e <= tol;
}

#endif
