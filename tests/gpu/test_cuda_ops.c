// Every op of tests/op_cases.h, forward and backward, on the CUDA backend against the CPU backend
// with the same random inputs: at f32 with TF32 off (relative error <= 1e-4 of the largest
// value), and at bf16 and f16 with every computed output but statistics in 16 bits, within a
// tolerance derived from the type's spacing and the case's scale (tests/gpu/tolerance.h). Inputs
// and the upstream gradient pass through an identity node first, which the 16-bit runs make
// 16-bit: every kernel, backward ones included, also reads 16-bit data. Both plans run poisoned,
// so an element a kernel forgets to write is NaN; parameters are written before planning, so
// that the algorithm search times real weights. Exits 77 without a GPU.
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
  ef_tensor *leaf[5], *out, *dy;
  int entry[5];
  ef_plan *plan;
} side;

// vals: the inputs' values; parameters and state are written before planning, inputs after.
static bool build_side(side *s, const op_case *c, ef_backend *be, ef_dtype precision, float *const *vals) {
  *s = (side){.store = ef_store_new()};
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *in = &c->in[i];
    s->entry[i] = in->kind == IN_INPUT ? -1 : ef_store_add(s->store, in->name, in->kind == IN_PARAM, false, in->ndim, in->shape, (ef_init){0});
  }
  if (ef_store_bind(s->store, be) != EF_OK) {
    CHECK(false, "%s on %s: %s", c->name, be->name, ef_last_error());
    return false;
  }
  for (int i = 0; i < c->n_in; i++)
    if (c->in[i].kind != IN_INPUT) ef_store_write(s->store, s->entry[i], c->in[i].kind == IN_PARAM ? EF_ARENA_PARAM : EF_ARENA_STATE, vals[i]);
  s->g = ef_graph_new(s->store, SEED);
  bool any_grad = false;
  ef_tensor *x[5];
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *in = &c->in[i];
    s->leaf[i] = in->kind == IN_INPUT ? ef_input(s->g, in->name, in->dtype, in->ndim, in->shape) : ef_param(s->g, s->entry[i], 1, NULL);
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
  char why[192];
  CHECK(test_close(got, want, n, op_tolerance(c, precision, x), why, sizeof why), "%s at %s: %s: %s", c->name,
        ef_dtype_name(precision), what, why);
}

static void check_case(const op_case *c, ef_backend *cpu, ef_backend *gpu, ef_dtype precision) {
  float *vals[5] = {0};
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

// SyncBN's statistics with a group of two whose other rank holds 0.25 + 0.01 i at element i of
// every buffer it averages: the CPU, then the GPU with the group on host buffers (MPI's way: the
// node's data goes down and up) and on device buffers (NCCL's way: ef_k_sync_var_term on the GPU).
static void pair_mean(float *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = (buf[i] + 0.25f + 0.01f * (float)i) * 0.5f;
}
static void host_pair_mean(void *group, float *buf, size_t n) { (void)group, pair_mean(buf, n); }
static void device_pair_mean(void *group, float *buf, size_t n) { // eager runs: a trip through the host will do
  ef_backend *gpu = group;
  float h[64];
  EF_ASSERT(n <= 64, "%zu floats", n);
  gpu->download(gpu, h, buf, sizeof(float) * n);
  pair_mean(h, n);
  gpu->upload(gpu, buf, h, sizeof(float) * n);
}

static void check_sync_and_update(ef_backend *cpu, ef_backend *gpu) {
  float xv[3 * 4 * 5 * 6], init[12], running[3][12], stats[3][12];
  test_fill_uniform(xv, 360, 3, 0, -2, 3);
  test_fill_uniform(init, 12, 3, 1, 0.5f, 1.5f);
  ef_backend *bes[3] = {cpu, gpu, gpu};
  for (int k = 0; k < 3; k++) {
    ef_store *store = ef_store_new();
    int run = ef_store_add(store, "running", false, false, 2, (int64_t[]){2, 6}, (ef_init){0});
    CHECK(ef_store_bind(store, bes[k]) == EF_OK, "%s", ef_last_error());
    ef_store_write(store, run, EF_ARENA_STATE, init);
    ef_graph *g = ef_graph_new(store, SEED);
    ef_tensor *x = ef_input(g, "x", EF_F32, 4, (int64_t[]){3, 4, 5, 6});
    ef_tensor *st = ef_sync_stats(g, ef_bn_stats(g, x), 2);
    ef_graph_keep(g, st);
    ef_bn_update(g, ef_param(g, run, 1, NULL), st, 0.1f);
    ef_plan *plan;
    CHECK(ef_plan_new(&plan, g, bes[k], &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
    ef_plan_set(plan, x, xv);
    ef_run_ctx ctx = {.group_mean = k == 2 ? device_pair_mean : host_pair_mean, .group = gpu, .group_device = k == 2};
    ef_plan_run(plan, &ctx);
    ef_plan_run(plan, &ctx);
    ef_store_read(store, run, EF_ARENA_STATE, running[k]);
    ef_plan_get(plan, st, stats[k]);
    ef_plan_free(plan);
    ef_graph_free(g);
    ef_store_free(store);
  }
  char why[192];
  for (int k = 1; k < 3; k++) {
    const char *where = k == 1 ? "on the host" : "on the GPU";
    CHECK(test_close(running[k], running[0], 12, 1e-4, why, sizeof why), "sync_stats + bn_update, group %s: running: %s",
          where, why);
    CHECK(test_close(stats[k], stats[0], 12, 1e-4, why, sizeof why), "sync_stats + bn_update, group %s: statistics: %s",
          where, why);
  }
}

int main(int argc, char **argv) {
  ef_backend *cpu, *gpu;
  test_gpu_backends(0, &cpu, &gpu);
  const char *only = argc > 1 ? argv[1] : NULL; // a substring of case names, to run a subset
  const ef_dtype precisions[] = {EF_F32, EF_BF16, EF_F16};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    for (int p = 0; p < 3; p++) {
      int before = test_failures;
      check_case(&cases[i], cpu, gpu, precisions[p]);
      printf("%-48s %-5s %s\n", cases[i].name, ef_dtype_name(precisions[p]), test_failures == before ? "ok" : "FAILED");
      fflush(stdout);
    }
  }
  if (!only || strstr("sync_stats + bn_update", only)) {
    int before = test_failures;
    check_sync_and_update(cpu, gpu);
    printf("%-48s %-5s %s\n", "sync_stats + bn_update", "f32", test_failures == before ? "ok" : "FAILED");
  }
  ef_backend_free(gpu);
  ef_backend_free(cpu);
  return test_exit_code();
}
