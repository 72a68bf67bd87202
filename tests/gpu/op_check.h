// One op case on the CUDA backend against the CPU backend (tests/op_cases.h), forward and backward,
// shared by the op checks (test_cuda_ops) and the smoke gate (test_cuda_smoke): both sides' plans,
// the same inputs, and the comparison within tests/gpu/tolerance.h's tolerance.
#ifndef EF_TESTS_GPU_OP_CHECK_H
#define EF_TESTS_GPU_OP_CHECK_H

#include <stdlib.h>

#include "core/plan.h"
#include "core/store.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/gpu/tolerance.h"
#include "tests/harness.h"
#include "tests/op_cases.h"

// One backend's copy of a case: its store, graph and plan.
typedef struct {
  ef_store *store;
  ef_graph *g;
  ef_tensor *leaf[MAX_IN], *out, *dy;
  int entry[MAX_IN];
  ef_plan *plan;
} side;

// vals: the inputs' values; parameters and state are written before planning, inputs after.
static bool build_side(side *s, const op_case *c, ef_backend *be, ef_dtype precision, float *const *vals) {
  *s = (side){.store = ef_store_new()};
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *in = &c->in[i];
    s->entry[i] = in->kind == IN_INPUT ? -1
                                       : ef_store_add(s->store, in->name, in->kind == IN_PARAM, false, in->ndim,
                                                      in->shape, (ef_init){0});
  }
  if (ef_store_bind(s->store, be) != EF_OK) {
    CHECK(false, "%s on %s: %s", c->name, be->name, ef_last_error());
    return false;
  }
  for (int i = 0; i < c->n_in; i++)
    if (c->in[i].kind != IN_INPUT)
      ef_store_write(s->store, s->entry[i], c->in[i].kind == IN_PARAM ? EF_ARENA_PARAM : EF_ARENA_STATE, vals[i]);
  s->g = ef_graph_new(s->store, SEED);
  bool any_grad = false;
  ef_tensor *x[MAX_IN];
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *in = &c->in[i];
    s->leaf[i] = in->kind == IN_INPUT ? ef_input(s->g, in->name, in->dtype, in->ndim, in->shape)
                                      : ef_param(s->g, s->entry[i], 1, NULL);
    s->leaf[i]->requires_grad = in->grad;
    any_grad |= in->grad;
    bool data = in->kind == IN_INPUT && in->dtype == EF_F32;
    x[i] = data ? ef_activate(s->g, s->leaf[i], EF_ACT_NONE) : s->leaf[i];
  }
  s->out = c->build(s->g, x, c);
  ef_graph_keep(s->g, s->out);
  if (any_grad) {
    s->dy = ef_input(s->g, "dy", EF_F32, s->out->ndim, s->out->shape);
    ef_graph_backward_from(s->g, s->out, ef_activate(s->g, s->dy, EF_ACT_NONE));
  }
  ef_graph_set_precision(s->g, precision, true);
  ef_status st = ef_plan_new(&s->plan, s->g, be, &(ef_plan_opts){.poison = true});
  CHECK(st == EF_OK, "%s on %s (%s): %s", c->name, be->name, ef_dtype_name(precision), ef_last_error());
  if (st != EF_OK) return false;
  for (int i = 0; i < c->n_in; i++)
    if (c->in[i].kind == IN_INPUT) ef_plan_set(s->plan, s->leaf[i], vals[i]);
  return true;
}

static void free_side(side *s) {
  ef_plan_free(s->plan);
  if (s->g) ef_graph_free(s->g);
  ef_store_free(s->store);
}

// A computed tensor's values as f32, whatever its type.
static float *read_f32(const ef_plan *p, const ef_tensor *t) {
  int64_t n = ef_numel(t);
  float *out = malloc(sizeof(float) * (size_t)n);
  if (t->dtype == EF_F32) {
    ef_plan_get(p, t, out);
    return out;
  }
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
  ef_plan_get(p, t, h);
  for (int64_t i = 0; i < n; i++) out[i] = t->dtype == EF_BF16 ? ef_bf16_to_f32(h[i]) : ef_f16_to_f32(h[i]);
  free(h);
  return out;
}

// x: the case's first input's values (the tolerance's scale, tests/gpu/tolerance.h).
static void compare(const char *what, const op_case *c, ef_dtype precision, const float *x, const float *got,
                    const float *want, int64_t n) {
  CHECK_REL(got, want, n, op_tolerance(c, precision, x), "%s at %s: %s", c->name, ef_dtype_name(precision), what);
}

static void check_case(const op_case *c, ef_backend *cpu, ef_backend *gpu, ef_dtype precision) {
  float *vals[MAX_IN] = {0};
  for (int i = 0; i < c->n_in; i++) { // the inputs of tests/test_ops.c
    vals[i] = malloc(sizeof(float) * (size_t)spec_numel(&c->in[i]));
    op_case_input(&c->in[i], i, vals[i], NULL);
  }
  side a, b;
  bool ok = build_side(&a, c, cpu, EF_F32, vals);
  ok = build_side(&b, c, gpu, precision, vals) && ok;
  if (ok) {
    int64_t ny = ef_numel(a.out);
    float *dyv = malloc(sizeof(float) * (size_t)ny);
    test_fill_uniform(dyv, ny, 99, 17, -1, 1);
    if (a.dy) ef_plan_set(a.plan, a.dy, dyv), ef_plan_set(b.plan, b.dy, dyv);
    ef_run_ctx ctx = {.step = STEP};
    ef_plan_run(a.plan, &ctx);
    ef_plan_run(b.plan, &ctx);
    float *want = read_f32(a.plan, a.out), *got = read_f32(b.plan, b.out);
    compare("forward", c, precision, vals[0], got, want, ny);
    free(want), free(got);
    for (int i = 0; i < c->n_in; i++) {
      const in_spec *in = &c->in[i];
      if (!in->grad) continue;
      int64_t n = spec_numel(in);
      if (in->kind == IN_INPUT) {
        want = read_f32(a.plan, a.leaf[i]->grad), got = read_f32(b.plan, b.leaf[i]->grad);
      } else {
        want = malloc(sizeof(float) * (size_t)n), got = malloc(sizeof(float) * (size_t)n);
        ef_store_read(a.store, a.entry[i], EF_ARENA_GRAD, want);
        ef_store_read(b.store, b.entry[i], EF_ARENA_GRAD, got);
      }
      char what[64];
      snprintf(what, sizeof what, "gradient of %s", in->name);
      compare(what, c, precision, vals[0], got, want, n);
      free(want), free(got);
    }
    free(dyv);
  }
  for (int i = 0; i < c->n_in; i++) free(vals[i]);
  free_side(&a);
  free_side(&b);
}

// Whether a case is a depthwise convolution (effnet's kernels and cuDNN can both run it).
static inline bool case_is_depthwise(const op_case *c) {
  return c->build == build_conv && c->groups > 1 && c->groups == c->in[0].shape[3] && c->in[1].shape[3] == 1;
}

// A second CUDA backend on device 0 that runs depthwise convolutions one way only.
static inline ef_backend *gpu_forced(ef_cuda_dw how) {
  ef_backend *be = ef_cuda_backend_new(&(ef_cuda_opts){.depthwise = how});
  if (!be) {
    fprintf(stderr, "%s\n", ef_last_error());
    exit(1);
  }
  return be;
}

// check_case, then a line "<case> <precision> <path> ok|FAILED"; whether it passed.
static inline bool run_case(const op_case *c, ef_backend *cpu, ef_backend *gpu, ef_dtype precision, const char *path) {
  int before = test_failures;
  check_case(c, cpu, gpu, precision);
  printf("%-48s %-5s %-7s %s\n", c->name, ef_dtype_name(precision), path, test_failures == before ? "ok" : "FAILED");
  fflush(stdout);
  return test_failures == before;
}

#endif
