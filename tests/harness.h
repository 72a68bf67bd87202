// A small test harness: CHECK records a failure with file:line and a message and carries on;
// CHECK_CLOSE compares an array with a reference within a tolerance and names the worst element;
// RUN runs one test function and prints its name and outcome; a test binary exits non-zero when
// anything failed. Plus helpers to fill buffers from Philox and to make temporary folders.
#ifndef EF_TEST_HARNESS_H
#define EF_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/philox.h"

static int test_failures, test_checks;

#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    test_checks++;                                                                                                     \
    if (!(cond)) {                                                                                                     \
      test_failures++;                                                                                                 \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                                         \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fputc('\n', stderr);                                                                                             \
    }                                                                                                                  \
  } while (0)

#define RUN(fn)                                                                                                        \
  do {                                                                                                                 \
    int before_ = test_failures;                                                                                       \
    fn();                                                                                                              \
    printf("%-48s %s\n", #fn, test_failures == before_ ? "ok" : "FAILED");                                             \
    fflush(stdout);                                                                                                    \
  } while (0)

static inline int test_exit_code(void) {
  printf("%d checks, %d failed\n", test_checks, test_failures);
  return test_failures ? 1 : 0;
}

// Uniform values in [lo, hi) from Philox stream `stream` of `seed`.
static inline void test_fill_uniform(float *x, int64_t n, uint64_t seed, uint32_t stream, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * ef_philox_uniform(seed, stream, 0, (uint64_t)i);
}

// ---- arrays against references -----------------------------------------------------------------

// An array of float, double or uint8_t values (TEST_ARRAY picks the type from the pointer's).
typedef struct {
  const void *p;
  enum { TEST_F32, TEST_F64, TEST_U8 } type;
} test_array;

#define TEST_ARRAY(x)                                                                                                  \
  _Generic((x), float *: (test_array){(x), TEST_F32}, const float *: (test_array){(x), TEST_F32}, \
           double *: (test_array){(x), TEST_F64}, const double *: (test_array){(x), TEST_F64},  \
           uint8_t *: (test_array){(x), TEST_U8}, const uint8_t *: (test_array){(x), TEST_U8})

static inline double test_at(test_array a, int64_t i) {
  return a.type == TEST_F32   ? ((const float *)a.p)[i]
         : a.type == TEST_F64 ? ((const double *)a.p)[i]
                              : ((const uint8_t *)a.p)[i];
}

// How CHECK_CLOSE measures got against want, from d_i = |got_i - want_i|:
typedef enum {
  TEST_ABS,  // max d_i
  TEST_REL,  // max d_i / max(max |want_i|, floor): the relative error of the whole array
  TEST_EACH, // max d_i / (|want_i| + floor): the largest relative error of one element
  TEST_MEAN, // the mean of d_i
} test_measure;

// CHECK_CLOSE(got, want, n, measure, floor, tol, fmt, ...): records a check that got's n values
// are within tol of want's by the measure, and returns the error. A NaN anywhere fails. On failure
// it prints file:line, the message, the error, the tolerance and the worst element (the largest
// d_i, or the largest relative one for TEST_EACH; the first NaN): "[i] got x want y".
#define CHECK_CLOSE(got, want, n, measure, floor, tol, ...)                                                            \
  test_close(__FILE__, __LINE__, TEST_ARRAY(got), TEST_ARRAY(want), (n), (measure), (floor), (tol), __VA_ARGS__)
// The relative error of the whole array, max |got - want| / max |want|, at most tol.
#define CHECK_REL(got, want, n, tol, ...) CHECK_CLOSE(got, want, n, TEST_REL, 1e-30, tol, __VA_ARGS__)

__attribute__((format(printf, 9, 10))) static inline double test_close(const char *file, int line, test_array got,
                                                                       test_array want, int64_t n, test_measure m,
                                                                       double floor, double tol, const char *fmt, ...) {
  static const char *const what[] = {"absolute error", "relative error", "largest relative error of an element",
                                     "mean absolute error"};
  double worst = 0, sum = 0, mag = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double w = test_at(want, i), d = fabs(test_at(got, i) - w), e = m == TEST_EACH ? d / (fabs(w) + floor) : d;
    if (fabs(w) > mag) mag = fabs(w);
    sum += d;
    if (!(e <= worst)) { // the larger, or the first NaN, which stays
      worst = e, at = i;
      if (isnan(e)) break;
    }
  }
  double err = m == TEST_REL ? worst / (mag > floor ? mag : floor) : m == TEST_MEAN ? sum / (double)n : worst;
  test_checks++;
  if (!(err <= tol)) {
    test_failures++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: CHECK_CLOSE failed: ", file, line);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s %.3g, tolerance %.3g; worst [%lld] got %.9g want %.9g\n", what[m], err, tol, (long long)at,
            n ? test_at(got, at) : NAN, n ? test_at(want, at) : NAN);
  }
  return err;
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
