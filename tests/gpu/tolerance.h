// The tolerance of the GPU op checks (tests/gpu/test_cuda_ops.c), relative to the largest value of
// a result: 1e-4 at f32 (TF32 off); in bf16 and f16, derived from the type's spacing and the case's
// scale. tests/test_cuda_host.c checks it on the CPU by rounding as a 16-bit run does.
#ifndef EF_TESTS_GPU_TOLERANCE_H
#define EF_TESTS_GPU_TOLERANCE_H

#include <math.h>

#include "tests/op_cases.h"

// The unit roundoff of a type (24, 8 and 11 significant bits): rounding moves a value by at most
// this much of itself (half the spacing of the values around it).
static inline double unit_roundoff(ef_dtype dt) { return dt == EF_F32 ? 0x1p-24 : dt == EF_BF16 ? 0x1p-8 : 0x1p-11; }

// How much a case magnifies its inputs' rounding, relative to the largest value of its result; x
// holds the values of its first input.
// - Batch norm with batch statistics divides x - mean by std(x): an input rounded by u max|x|
//   moves x-hat by u max|x| / std, and x-hat's largest value is sqrt(3) std-units for uniform
//   inputs: 2 max|x| / (hi - lo) in all (1 for [-1, 1), 4 for [2, 4)).
// - The softmax takes exp of the logits: their rounding by u max|z| is a relative change of the
//   probabilities by as much: max(1, max|z|).
// - A sum (or mean) of n values is off by up to u sum|x| when they are rounded, which the result
//   may cancel down to much less: sum|x| / |sum x|.
// - Everything else passes an input's absolute rounding on without gain: 1.
static inline double case_gain(const op_case *c, const float *x) {
  const in_spec *in = &c->in[0];
  double big = fmax(fabs(in->lo), fabs(in->hi));
  if (c->build == build_bn && c->flag) return 2 * big / (in->hi - in->lo);
  if (c->build == build_softmax_ce) return fmax(1, big);
  if (c->build == build_reduce) {
    double total = 0, size = 0;
    for (int64_t i = 0; i < spec_numel(in); i++) total += x[i], size += fabs(x[i]);
    return fmax(1, size / fmax(fabs(total), 1e-30));
  }
  return 1;
}

// A 16-bit run rounds the inputs and the upstream gradient (each moving the result by up to u times
// the case's gain), the result itself and the intermediate results on the way (each up to u): at most
// 2 gain + 4 roundings of u, 4 covering the result and up to three intermediate ones.
static inline double op_tolerance(const op_case *c, ef_dtype dt, const float *x) {
  return dt == EF_F32 ? 1e-4 : unit_roundoff(dt) * (2 * case_gain(c, x) + 4);
}

#endif
