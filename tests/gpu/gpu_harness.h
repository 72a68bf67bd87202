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

#endif
