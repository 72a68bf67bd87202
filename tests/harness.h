// A small test harness: CHECK records a failure with file:line and a message and carries on;
// RUN runs one test function and prints its name and outcome; a test binary exits non-zero when
// anything failed. Plus helpers to fill buffers from Philox and to compare against references.
#ifndef EF_TEST_HARNESS_H
#define EF_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/philox.h"

static int test_failures, test_checks;

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    test_checks++;                                                                             \
    if (!(cond)) {                                                                             \
      test_failures++;                                                                         \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                 \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fputc('\n', stderr);                                                                     \
    }                                                                                          \
  } while (0)

#define RUN(fn)                                                                                \
  do {                                                                                         \
    int before_ = test_failures;                                                               \
    fn();                                                                                      \
    printf("%-48s %s\n", #fn, test_failures == before_ ? "ok" : "FAILED");                    \
    fflush(stdout);                                                                            \
  } while (0)

static inline int test_exit_code(void) {
  printf("%d checks, %d failed\n", test_checks, test_failures);
  return test_failures ? 1 : 0;
}

// Uniform values in [lo, hi) from Philox stream `stream` of `seed`.
static inline void test_fill_uniform(float *x, int64_t n, uint64_t seed, uint32_t stream, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ef_philox_uniform(seed, stream, 0, (uint64_t)i);
}

// max |got - want| / max |want|: the relative error of a whole tensor.
static inline double test_rel_err(const float *got, const double *want, int64_t n) {
  double err = 0, mag = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]);
    if (!(e <= err)) err = e; // NaN propagates
    if (fabs(want[i]) > mag) mag = fabs(want[i]);
  }
  return err / (mag > 1e-30 ? mag : 1e-30);
}

// A fresh folder from a template ending in XXXXXX (exits when that fails), and its removal.
static inline void test_mkdtemp(char *tmpl) {
  if (!mkdtemp(tmpl)) {
    perror("mkdtemp");
    exit(1);
  }
}

static inline void test_rmtree(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#endif
