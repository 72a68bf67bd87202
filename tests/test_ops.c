// Every op, forward and backward, on the CPU backend against the naive float64 references of
// tests/op_cases.h, on odd shapes. For each case: the forward output against the reference; every gradient
// against central differences of the float64 reference (all elements, tight); and sampled
// central differences of our own f32 forward against our backward (loose). Plans run with
// poisoned memory, so an element a kernel forgets to write shows up as NaN. Every op must run in
// some case's plan (forward or backward): the test fails naming one that none runs.
#include <stdlib.h>

#include "core/act.h"
#include "core/cpu/cpu.h"
#include "core/cpu/cpu_vec.h"
#include "core/plan.h"
#include "core/store.h"
#include "tests/harness.h"
#include "tests/op_cases.h"

// ---- the harness -------------------------------------------------------------------------------

static bool op_run[EF_OP_COUNT]; // ops some case's plan has run

static void note_ops(const ef_plan *p) {
  for (int i = 0; i < p->n; i++) op_run[p->sched[i]->op] = true;
}

// SyncBN's group in these tests: two ranks holding the same batch, so the group's mean of any
// value is this rank's own, and SyncBN must equal batch norm over the batch (its running variance
// divides by the group's rows less one).
static void same_batch_mean(void *group, float *buf, size_t n) { (void)group, (void)buf, (void)n; }
static const ef_run_ctx run_ctx = {.step = STEP, .group_mean = same_batch_mean};

typedef struct {
  const op_case *c;
  ef_store *store;
  ef_graph *g;
  ef_tensor *leaf[MAX_IN], *out, *dy;
  int entry[MAX_IN];
  ef_plan *plan;
  float *val[MAX_IN];   // current input values
  double *dval[MAX_IN]; // the same in double
  float *dyv;
} fixture;

static void set_input(fixture *f, int i) {
  const in_spec *s = &f->c->in[i];
  if (s->kind == IN_INPUT) ef_plan_set(f->plan, f->leaf[i], f->val[i]);
  else ef_store_write(f->store, f->entry[i], s->kind == IN_PARAM ? EF_ARENA_PARAM : EF_ARENA_STATE, f->val[i]);
}

// sum(dy * out) of one run of our f32 forward, in double.
static double run_loss(fixture *f) {
  ef_plan_run(f->plan, &run_ctx);
  int64_t n = ef_numel(f->out);
  float *y = malloc(sizeof(float) * (size_t)n);
  ef_plan_get(f->plan, f->out, y);
  double l = 0;
  for (int64_t i = 0; i < n; i++) l += (double)f->dyv[i] * y[i];
  free(y);
  return l;
}

static void reference(fixture *f, double *y) {
  ref_io io = {.out = f->out, .y = y};
  for (int i = 0; i < f->c->n_in; i++) io.in[i] = f->dval[i], io.t[i] = f->leaf[i];
  f->c->ref(&io, f->c);
}

static void check_case(const op_case *c, ef_backend *be) {
  fixture f = {.c = c, .store = ef_store_new()};
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    f.entry[i] = s->kind == IN_INPUT
                     ? -1
                     : ef_store_add(f.store, s->name, s->kind == IN_PARAM, false, s->ndim, s->shape, (ef_init){0});
  }
  CHECK(ef_store_bind(f.store, be) == EF_OK, "%s", ef_last_error());
  f.g = ef_graph_new(f.store, SEED);
  bool any_grad = false;
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    if (s->kind == IN_INPUT) {
      f.leaf[i] = ef_input(f.g, s->name, s->dtype, s->ndim, s->shape);
      f.leaf[i]->requires_grad = s->grad;
    } else {
      f.leaf[i] = ef_param(f.g, f.entry[i], 1, NULL);
      f.leaf[i]->requires_grad = s->grad;
    }
    any_grad |= s->grad;
  }
  f.out = c->build(f.g, f.leaf, c);
  ef_graph_keep(f.g, f.out);
  int64_t ny = ef_numel(f.out);
  if (any_grad) {
    f.dy = ef_input(f.g, "dy", EF_F32, f.out->ndim, f.out->shape);
    ef_graph_backward_from(f.g, f.out, f.dy);
  }
  ef_plan_opts opts = {.poison = true};
  ef_status st = ef_plan_new(&f.plan, f.g, be, &opts);
  CHECK(st == EF_OK, "%s: %s", c->name, ef_last_error());
  if (st != EF_OK) return;
  note_ops(f.plan);

  // Inputs from Philox, one stream per input; labels as integers.
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    int64_t n = spec_numel(s);
    f.val[i] = malloc(sizeof(float) * (size_t)n);
    f.dval[i] = malloc(sizeof(double) * (size_t)n);
    op_case_input(s, i, f.val[i], f.dval[i]);
    set_input(&f, i);
  }
  f.dyv = malloc(sizeof(float) * (size_t)ny);
  test_fill_uniform(f.dyv, ny, 99, 17, -1, 1);
  if (f.dy) ef_plan_set(f.plan, f.dy, f.dyv);

  // Forward against the reference.
  double *ref = malloc(sizeof(double) * (size_t)ny), *ref2 = malloc(sizeof(double) * (size_t)ny);
  float *got = malloc(sizeof(float) * (size_t)ny);
  run_loss(&f);
  ef_plan_get(f.plan, f.out, got);
  reference(&f, ref);
  CHECK_REL(got, ref, ny, 1e-5, "%s: forward", c->name);

  // Gradients of that first run (later runs accumulate more into the parameters' gradients).
  float *grads[MAX_IN] = {0};
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    if (!s->grad) continue;
    grads[i] = malloc(sizeof(float) * (size_t)spec_numel(s));
    if (s->kind == IN_INPUT) ef_plan_get(f.plan, f.leaf[i]->grad, grads[i]);
    else ef_store_read(f.store, f.entry[i], EF_ARENA_GRAD, grads[i]);
  }
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    if (!s->grad) continue;
    int64_t n = spec_numel(s);
    float *grad = grads[i];
    // (a) every element against central differences of the float64 reference.
    double *fd = malloc(sizeof(double) * (size_t)n);
    for (int64_t j = 0; j < n; j++) {
      double v = f.dval[i][j], h = 1e-6;
      f.dval[i][j] = v + h;
      reference(&f, ref);
      f.dval[i][j] = v - h;
      reference(&f, ref2);
      f.dval[i][j] = v;
      double d = 0;
      for (int64_t k = 0; k < ny; k++) d += (double)f.dyv[k] * (ref[k] - ref2[k]);
      fd[j] = d / (2 * h);
    }
    CHECK_REL(grad, fd, n, 1e-4, "%s: gradient of %s against the float64 reference", c->name, s->name);
    // (b) sampled elements against central differences of our own f32 forward (fd: our gradient
    // elsewhere).
    double mag = 0;
    for (int64_t j = 0; j < n; j++) mag = fmax(mag, fabs(grad[j])), fd[j] = grad[j];
    for (int k = 0; k < 12; k++) {
      int64_t j = (int64_t)(ef_philox_u32(5, (uint32_t)i, 0, (uint64_t)k) % (uint64_t)n);
      float v = f.val[i][j], h = 4e-3f;
      f.val[i][j] = v + h;
      set_input(&f, i);
      double lp = run_loss(&f);
      f.val[i][j] = v - h;
      set_input(&f, i);
      double lm = run_loss(&f);
      f.val[i][j] = v;
      set_input(&f, i);
      fd[j] = (lp - lm) / (2.0 * h);
    }
    CHECK_CLOSE(grad, fd, n, TEST_ABS, 0, 2e-2 * mag + 1e-4,
                "%s: gradient of %s against f32 central differences (max |grad| %.3g)", c->name, s->name, mag);
    free(fd);
    free(grad);
  }
  for (int i = 0; i < c->n_in; i++) free(f.val[i]), free(f.dval[i]);
  free(f.dyv), free(ref), free(ref2), free(got);
  ef_plan_free(f.plan);
  ef_graph_free(f.g);
  ef_store_free(f.store);
}

// Cases with batch norm synchronized over a group (SyncBN, the same-batch pair of run_ctx): the
// CPU's alone, as test_cuda_ops runs the cases of tests/op_cases.h without a group.
static ef_tensor *build_sync_bn(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_bn(g, in[0], ef_sync_stats(g, ef_bn_stats(g, in[0]), 2), in[1], c->eps, c->act, true);
}

static const op_case group_cases[] = {
    {"SyncBN train + swish, a pair of equal batches",
     2,
     {X(4, {2, 3, 5, 6}), W("affine", 2, {2, 6})},
     build_sync_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_SWISH,
     .flag = true},
};

// The running-statistics update: twice on the same batch, against the formula in float64; with a
// group of 2, from SyncBN's statistics of the pair (unbiased over its 24 rows).
static void test_bn_update(ef_backend *be, int group) {
  ef_store *store = ef_store_new();
  int run = ef_store_add(store, "running", false, false, 2, (int64_t[]){2, 5}, (ef_init){0});
  CHECK(ef_store_bind(store, be) == EF_OK, "%s", ef_last_error());
  ef_graph *g = ef_graph_new(store, SEED);
  ef_tensor *x = ef_input(g, "x", EF_F32, 4, (int64_t[]){3, 2, 2, 5});
  ef_tensor *stats = ef_bn_stats(g, x);
  if (group > 1) stats = ef_sync_stats(g, stats, group);
  ef_bn_update(g, ef_param(g, run, 1, NULL), stats, 0.1f);
  ef_plan *plan;
  CHECK(ef_plan_new(&plan, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  note_ops(plan);
  float xv[60], init[10], got[10];
  test_fill_uniform(xv, 60, 3, 0, -2, 3);
  test_fill_uniform(init, 10, 3, 1, 0.5f, 1.5f);
  ef_store_write(store, run, EF_ARENA_STATE, init);
  ef_plan_set(plan, x, xv);
  ef_plan_run(plan, &run_ctx);
  ef_plan_run(plan, &run_ctx);
  ef_store_read(store, run, EF_ARENA_STATE, got);
  double want[10];
  for (int k = 0; k < 5; k++) {
    double s = 0, q = 0;
    for (int r = 0; r < 12; r++) s += xv[r * 5 + k];
    double mean = s / 12;
    for (int r = 0; r < 12; r++) q += (xv[r * 5 + k] - mean) * (xv[r * 5 + k] - mean);
    double var = group * q / (12 * group - 1); // unbiased over the group's rows
    want[k] = 0.81 * init[k] + (1 - 0.81) * mean;
    want[5 + k] = 0.81 * init[5 + k] + (1 - 0.81) * var;
  }
  CHECK_REL(got, want, 10, 1e-6, "running statistics");
  ef_plan_free(plan);
  ef_graph_free(g);
  ef_store_free(store);
}

// Frees what a thread-count test built, last to first.
static void release_all(ef_plan *plan, ef_graph *g, ef_store *store, ef_backend *be) {
  ef_plan_free(plan);
  ef_graph_free(g);
  ef_store_free(store);
  ef_backend_free(be);
}

// Batch norm in training (statistics, swish, both backward kernels) on `threads` threads: its output,
// the input's gradient and the affine gradient, into y, dx and da.
static void bn_on_threads(int threads, const int64_t *shape, float *y, float *dx, float *da) {
  ef_backend *be = ef_cpu_backend_new(threads);
  ef_store *store = ef_store_new();
  int64_t c = shape[3], n = shape[0] * shape[1] * shape[2] * c;
  int aff = ef_store_add(store, "affine", true, false, 2, (int64_t[]){2, c}, (ef_init){0});
  CHECK(ef_store_bind(store, be) == EF_OK, "%s", ef_last_error());
  ef_graph *g = ef_graph_new(store, SEED);
  ef_tensor *x = ef_input(g, "x", EF_F32, 4, shape), *a = ef_param(g, aff, 1, NULL);
  x->requires_grad = a->requires_grad = true;
  ef_tensor *out = ef_bn(g, x, ef_bn_stats(g, x), a, 1e-3f, EF_ACT_SWISH, true);
  ef_graph_keep(g, out);
  ef_tensor *dy = ef_input(g, "dy", EF_F32, 4, shape);
  ef_graph_backward_from(g, out, dy);
  ef_plan *plan;
  CHECK(ef_plan_new(&plan, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  float *xv = malloc(sizeof(float) * (size_t)n), *dyv = malloc(sizeof(float) * (size_t)n), *av = malloc(8 * c);
  test_fill_uniform(xv, n, 4, 0, -2, 3);
  test_fill_uniform(dyv, n, 4, 1, -1, 1);
  test_fill_uniform(av, 2 * c, 4, 2, 0.5f, 1.5f);
  ef_store_write(store, aff, EF_ARENA_PARAM, av);
  ef_plan_set(plan, x, xv);
  ef_plan_set(plan, dy, dyv);
  ef_plan_run(plan, &run_ctx);
  ef_plan_get(plan, out, y);
  ef_plan_get(plan, x->grad, dx);
  ef_store_read(store, aff, EF_ARENA_GRAD, da);
  free(xv), free(dyv), free(av);
  release_all(plan, g, store, be);
}

// The row sums' chunks depend on the row count alone: 1 and 3 threads give the same bits, with many
// chunks of whole rows (6400 rows) and with few chunks split by channel blocks (128 rows of 150).
static void test_bn_threads(void) {
  const int64_t shapes[2][4] = {{4, 40, 40, 20}, {2, 8, 8, 150}};
  for (int k = 0; k < 2; k++) {
    int64_t c = shapes[k][3], n = shapes[k][0] * shapes[k][1] * shapes[k][2] * c;
    float *v[2][3];
    for (int t = 0; t < 2; t++) {
      v[t][0] = malloc(sizeof(float) * (size_t)n), v[t][1] = malloc(sizeof(float) * (size_t)n);
      v[t][2] = malloc(8 * c);
      bn_on_threads(t ? 3 : 1, shapes[k], v[t][0], v[t][1], v[t][2]);
    }
    const char *what[3] = {"output", "input gradient", "affine gradient"};
    int64_t len[3] = {n, n, 2 * c};
    for (int j = 0; j < 3; j++) {
      int64_t at = 0;
      while (at < len[j] && !memcmp(&v[0][j][at], &v[1][j][at], sizeof(float))) at++;
      CHECK(at == len[j], "bn %lld rows of %lld, %s: [%lld] %.9g on 1 thread, %.9g on 3", (long long)(n / c),
            (long long)c, what[j], (long long)at, v[0][j][at], v[1][j][at]);
    }
    for (int t = 0; t < 2; t++) free(v[t][0]), free(v[t][1]), free(v[t][2]);
  }
}

// A pointwise convolution's filter gradient (O,1,1,I) on `threads` threads, into dw.
static void pw_on_threads(int threads, const int64_t *xs, const int64_t *ws, float *dw) {
  ef_backend *be = ef_cpu_backend_new(threads);
  ef_store *store = ef_store_new();
  int w = ef_store_add(store, "w", true, false, 4, ws, (ef_init){0});
  CHECK(ef_store_bind(store, be) == EF_OK, "%s", ef_last_error());
  ef_graph *g = ef_graph_new(store, SEED);
  ef_tensor *x = ef_input(g, "x", EF_F32, 4, xs), *wt = ef_param(g, w, 1, NULL);
  wt->requires_grad = true;
  ef_tensor *y = ef_conv2d(g, x, wt, NULL, 1, 1, 1, EF_PAD_SYMMETRIC);
  ef_graph_keep(g, y);
  int64_t ys[4] = {xs[0], xs[1], xs[2], ws[0]}, nx = xs[0] * xs[1] * xs[2] * xs[3], ny = nx / xs[3] * ws[0];
  ef_tensor *dy = ef_input(g, "dy", EF_F32, 4, ys);
  ef_graph_backward_from(g, y, dy);
  ef_plan *plan;
  CHECK(ef_plan_new(&plan, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  float *xv = malloc(sizeof(float) * (size_t)nx), *dyv = malloc(sizeof(float) * (size_t)ny),
        *wv = malloc(sizeof(float) * (size_t)(ws[0] * ws[3]));
  test_fill_uniform(xv, nx, 6, 0, -2, 3);
  test_fill_uniform(dyv, ny, 6, 1, -1, 1);
  test_fill_uniform(wv, ws[0] * ws[3], 6, 2, -1, 1);
  ef_store_write(store, w, EF_ARENA_PARAM, wv);
  ef_plan_set(plan, x, xv);
  ef_plan_set(plan, dy, dyv);
  ef_plan_run(plan, &run_ctx);
  ef_store_read(store, w, EF_ARENA_GRAD, dw);
  free(xv), free(dyv), free(wv);
  release_all(plan, g, store, be);
}

// The pointwise filter gradient's chunks of rows depend on the shape alone: 1 and 3 threads give the
// same bits (9600 rows in 18 chunks; 40 outputs by 37 inputs: whole tiles, part vectors).
// Squeeze-excite's forwards over few rows (the CPU's tile, its output vectors split over the threads)
// and the linear layer over few rows (its dot products): y = conv1x1(x (2,1,1,130), 130 outputs, bias),
// z = linear(y, 9 outputs, bias), both into out (260 + 18 floats) on `threads` threads.
static void se_on_threads(int threads, float *out) {
  ef_backend *be = ef_cpu_backend_new(threads);
  ef_store *store = ef_store_new();
  const int64_t xs[4] = {2, 1, 1, 130}, ws[4] = {130, 1, 1, 130}, bs[1] = {130}, ls[2] = {9, 130}, lb[1] = {9};
  int w = ef_store_add(store, "w", true, false, 4, ws, (ef_init){0}),
      b = ef_store_add(store, "b", true, false, 1, bs, (ef_init){0}),
      l = ef_store_add(store, "l", true, false, 2, ls, (ef_init){0}),
      c = ef_store_add(store, "c", true, false, 1, lb, (ef_init){0});
  CHECK(ef_store_bind(store, be) == EF_OK, "%s", ef_last_error());
  ef_graph *g = ef_graph_new(store, SEED);
  ef_tensor *x = ef_input(g, "x", EF_F32, 4, xs);
  ef_tensor *y = ef_conv2d(g, x, ef_param(g, w, 1, NULL), ef_param(g, b, 1, NULL), 1, 1, 1, EF_PAD_SYMMETRIC);
  ef_tensor *z = ef_linear(g, y, ef_param(g, l, 1, NULL), ef_param(g, c, 1, NULL));
  ef_graph_keep(g, y);
  ef_graph_keep(g, z);
  ef_plan *plan;
  CHECK(ef_plan_new(&plan, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  float xv[260], wv[130 * 130], bv[130], lv[9 * 130], cv[9];
  test_fill_uniform(xv, 260, 7, 0, -2, 3);
  test_fill_uniform(wv, 130 * 130, 7, 1, -1, 1);
  test_fill_uniform(bv, 130, 7, 2, -1, 1);
  test_fill_uniform(lv, 9 * 130, 7, 3, -1, 1);
  test_fill_uniform(cv, 9, 7, 4, -1, 1);
  ef_store_write(store, w, EF_ARENA_PARAM, wv);
  ef_store_write(store, b, EF_ARENA_PARAM, bv);
  ef_store_write(store, l, EF_ARENA_PARAM, lv);
  ef_store_write(store, c, EF_ARENA_PARAM, cv);
  ef_plan_set(plan, x, xv);
  ef_plan_run(plan, &run_ctx);
  ef_plan_get(plan, y, out);
  ef_plan_get(plan, z, out + 260);
  release_all(plan, g, store, be);
}

// Their bits do not depend on the thread count: each output starts from its bias and adds the inputs
// in order, however the outputs are split.
static void test_se_threads(void) {
  float one[278], three[278];
  se_on_threads(1, one);
  se_on_threads(3, three);
  int at = 0;
  while (at < 278 && !memcmp(&one[at], &three[at], sizeof(float))) at++;
  CHECK(at == 278, "few-row forwards: [%d] %.9g on 1 thread, %.9g on 3", at, one[at], three[at]);
}

static void test_pw_threads(void) {
  const int64_t xs[4] = {3, 40, 80, 37}, ws[4] = {40, 1, 1, 37}, n = 40 * 37;
  float one[40 * 37], three[40 * 37];
  pw_on_threads(1, xs, ws, one);
  pw_on_threads(3, xs, ws, three);
  int64_t at = 0;
  while (at < n && !memcmp(&one[at], &three[at], sizeof(float))) at++;
  CHECK(at == n, "pointwise filter gradient: [%lld] %.9g on 1 thread, %.9g on 3", (long long)at, one[at], three[at]);
}

// The CPU kernels' activations in vectors (cpu_vec.h) against core/act.h's ef_act_fwd: within 2 ulp of
// its value (AVX-512's sigmoid takes its quotient through a reciprocal and a Newton step, AVX2's
// divides), or 1e-30 below x = -80, where the sigmoid's reciprocal is held to a normal number; NaN
// stays NaN, infinities stay infinite.
static void test_vec_act(void) {
#ifdef VEC
  float xs[VEC * 1024];
  int n = 0;
  for (; n < VEC * 1000; n++) xs[n] = -100.0f + 200.0f * (float)n / (VEC * 1000); // -100 .. 100
  const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 5.0f, 6.0f, 7.0f, -87.0f, 88.5f, INFINITY, -INFINITY, NAN};
  for (size_t k = 0; k < sizeof special / sizeof special[0]; k++) xs[n++] = special[k];
  while (n % VEC) xs[n++] = 0.5f;
  for (ef_act a = EF_ACT_NONE; a < EF_ACT_COUNT; a++) {
    float got[VEC];
    for (int i = 0; i < n; i += VEC) {
      vec_store(got, vec_act_fwd(a, vec_load(xs + i)));
      for (int l = 0; l < VEC; l++) {
        float want = ef_act_fwd(a, xs[i + l]), ulp = nextafterf(fabsf(want), INFINITY) - fabsf(want);
        bool same_class = isnan(want) ? isnan(got[l]) : isinf(want) ? got[l] == want : isfinite(got[l]);
        bool close = same_class &&
                     (isnan(want) || isinf(want) || fabsf(got[l] - want) <= 2 * ulp ||
                      ((a == EF_ACT_SWISH || a == EF_ACT_SIGMOID) && xs[i + l] < -80 && fabsf(got[l] - want) < 1e-30f));
        CHECK(close, "%s at %.9g: %.9g, ef_act_fwd %.9g", ef_act_name(a), xs[i + l], got[l], want);
        if (!close) return;
      }
    }
  }
#endif
}

// Runs the cases whose names contain `only` (all when NULL).
static void run_cases(const op_case *list, size_t n, ef_backend *be, const char *only) {
  for (size_t i = 0; i < n; i++) {
    if (only && !strstr(list[i].name, only)) continue;
    int before = test_failures;
    check_case(&list[i], be);
    printf("%-48s %s\n", list[i].name, test_failures == before ? "ok" : "FAILED");
  }
}

int main(int argc, char **argv) {
  ef_backend *be = ef_cpu_backend_new(0);
  if (!be) {
    fprintf(stderr, "%s\n", ef_last_error());
    return 1;
  }
  const char *only = argc > 1 ? argv[1] : NULL; // a substring of case names, to run a subset
  run_cases(cases, sizeof cases / sizeof cases[0], be, only);
  run_cases(group_cases, sizeof group_cases / sizeof group_cases[0], be, only);
  const char *updates[2] = {"bn running-statistics update", "bn running-statistics update, SyncBN pair"};
  for (int group = 1; group <= 2; group++) {
    if (only && !strstr(updates[group - 1], only)) continue;
    int before = test_failures;
    test_bn_update(be, group);
    printf("%-48s %s\n", updates[group - 1], test_failures == before ? "ok" : "FAILED");
  }
  if (!only || strstr("bn on 1 and 3 threads", only)) {
    int before = test_failures;
    test_bn_threads();
    printf("%-48s %s\n", "bn on 1 and 3 threads", test_failures == before ? "ok" : "FAILED");
  }
  if (!only || strstr("activations in vectors", only)) {
    int before = test_failures;
    test_vec_act();
    printf("%-48s %s\n", "activations in vectors", test_failures == before ? "ok" : "FAILED");
  }
  if (!only || strstr("pointwise filter gradient on 1 and 3 threads", only)) {
    int before = test_failures;
    test_pw_threads();
    printf("%-48s %s\n", "pointwise filter gradient on 1 and 3 threads", test_failures == before ? "ok" : "FAILED");
  }
  if (!only || strstr("few-row forwards on 1 and 3 threads", only)) {
    int before = test_failures;
    test_se_threads();
    printf("%-48s %s\n", "few-row forwards on 1 and 3 threads", test_failures == before ? "ok" : "FAILED");
  }
  if (!only) { // a new op needs a case in tests/op_cases.h
    int before = test_failures;
    for (int op = EF_OP_LEAF + 1; op < EF_OP_COUNT; op++)
      CHECK(op_run[op], "no case runs op %s: add one to tests/op_cases.h", ef_op_name(op));
    printf("%-48s %s\n", "every op run by some case", test_failures == before ? "ok" : "FAILED");
  }
  ef_backend_free(be);
  return test_exit_code();
}
