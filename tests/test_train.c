// Training end to end on the CPU: the tiny conv net (conv, BN + swish, squeeze-excite, pooling,
// dropout, linear, cross-entropy) learns a small fixed problem with SGD; its planned training graph
// has no overlapping live buffers (but for outputs written over their dying source) and trains bit
// for bit like an unplanned one; oneDNN picks fast kernels (never `ref`) for EfficientNet's convs;
// two accumulated micro-batches update as one batch of both. (The optimizers' steps: test_optim.)
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "tests/harness.h"
#include "tests/plan_check.h"
#include "train/finetune.h"
#include "train/step.h"

#define N_SAMPLES 256
#define BATCH 32
#define SIDE 12
#define CLASSES 4

// A fixed problem: each class is a random 12x12x3 template; a sample is its class's template
// plus noise. Deterministic (Philox), so the test always sees the same data.
static void make_problem(float *x, int32_t *y) {
  int64_t px = SIDE * SIDE * 3;
  for (int64_t i = 0; i < N_SAMPLES; i++) {
    y[i] = (int32_t)(i % CLASSES);
    for (int64_t j = 0; j < px; j++)
      x[i * px + j] = ef_philox_normal(11, 0, 0, (uint64_t)(y[i] * px + j)) +
                      1.5f * ef_philox_normal(11, 1, 0, (uint64_t)(i * px + j));
  }
}

// The tiny net and its training step as the trainer builds them (train/model.h, train/step.h):
// SGD with momentum and weight decay, no EMA, no clipping.
typedef struct {
  ef_store *store;
  ef_model_graph graph;
  ef_step step;
} trainer;

static void trainer_init(trainer *t, ef_backend *be, const ef_plan_opts *opts) {
  ef_model_desc d;
  ef_model_desc_tiny(&d, CLASSES, 3, SIDE, 0.1f);
  t->store = ef_store_new();
  ef_model_graph_new(&t->graph, t->store, &d, &(ef_graph_opts){.batch = BATCH, .training = true, .seed = 5});
  CHECK(ef_store_bind(t->store, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(t->store, 5);
  CHECK(ef_model_graph_plan(&t->graph, be, opts) == EF_OK, "%s", ef_last_error());
  ef_step_config sc = {.optim = ef_optim_defaults(EF_OPT_SGD)};
  sc.optim.momentum = 0.9, sc.optim.weight_decay = 1e-4;
  CHECK(ef_step_init(&t->step, &t->graph, &sc) == EF_OK, "%s", ef_last_error());
}

static float trainer_step(trainer *t, const float *x, const int32_t *y, uint32_t step) {
  int64_t first = (int64_t)(step * BATCH) % N_SAMPLES, px = SIDE * SIDE * 3;
  ef_step_result r;
  ef_step_run(&t->step, x + first * px, y + first, NULL, 0.05, step, &r);
  return (float)r.loss;
}

static void trainer_free(trainer *t) {
  ef_step_free(&t->step);
  ef_model_graph_free(&t->graph);
  ef_store_free(t->store);
}

static float *xs;
static int32_t *ys;

static void test_loss_falls(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  trainer t;
  trainer_init(&t, be, NULL);
  float first = 0, last = 0;
  for (uint32_t s = 0; s < 80; s++) {
    float l = trainer_step(&t, xs, ys, s);
    CHECK(isfinite(l), "step %u: loss %g", s, l);
    if (s == 0) first = l;
    if (s >= 72) last += l / 8;
  }
  printf("  loss at the first step %.4f (ln 4 = 1.386), mean over the last 8 of 80 steps %.4f (%.0fx lower)\n", first,
         last, first / last);
  CHECK(first > 1.2f && last < first / 10, "the loss must fall tenfold in 80 steps: %.4f -> %.4f", first, last);
  trainer_free(&t);
  ef_backend_free(be);
}

// The planned, poisoned training graph against one with no memory reuse: no live overlap, a
// smaller arena, and three training steps to the same bits.
static void test_planned_training_equals_unplanned(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  trainer a, b;
  trainer_init(&a, be, &(ef_plan_opts){.poison = true});
  trainer_init(&b, be, &(ef_plan_opts){.no_reuse = true});
  const ef_plan *pa = a.graph.plan;
  int heirs = check_no_live_overlap(pa, "training graph");
  CHECK(heirs > 0, "no elementwise output took over its source's space");
  printf("  training graph: %d nodes, %d buffers (%d written over their source), arena %.2f MiB planned vs %.2f MiB "
         "naive\n",
         pa->n, pa->n_bufs, heirs, pa->arena_bytes / 1048576.0, pa->naive_bytes / 1048576.0);
  CHECK(pa->arena_bytes * 3 < pa->naive_bytes * 2, "reuse saves less than a third: %zu of %zu", pa->arena_bytes,
        pa->naive_bytes);
  for (uint32_t s = 0; s < 3; s++) {
    float la = trainer_step(&a, xs, ys, s), lb = trainer_step(&b, xs, ys, s);
    CHECK(la == lb, "step %u: loss %.9g planned, %.9g unplanned", s, la, lb);
  }
  size_t bytes[2] = {a.store->numel[0] * sizeof(float), a.store->numel[1] * sizeof(float)};
  CHECK(!memcmp(a.store->mem[EF_ARENA_PARAM], b.store->mem[EF_ARENA_PARAM], bytes[0]), "parameters differ");
  CHECK(!memcmp(a.store->mem[EF_ARENA_STATE], b.store->mem[EF_ARENA_STATE], bytes[1]), "running statistics differ");
  trainer_free(&a);
  trainer_free(&b);
  ef_backend_free(be);
}

// Given NHWC activations, oneDNN must choose an optimized kernel for every convolution shape
// EfficientNet uses, forward and both backward passes, and for inference's folded convolution with
// each activation as its post-op; `ref` would be tens of times slower. (Training's 1x1 convolutions
// and small depthwise filter gradients are oneDNN matmuls and effnet's own kernel: not `ref` either.)
static void test_onednn_picks_fast_kernels(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  struct {
    const char *what;
    int64_t x[4], w[4];
    int stride, groups;
  } convs[] = {
      {"stem 3x3 s2, 3->32 at 224", {2, 224, 224, 3}, {32, 3, 3, 3}, 2, 1},
      {"depthwise 3x3 s1, 96 at 112", {2, 112, 112, 96}, {96, 3, 3, 1}, 1, 96},
      {"depthwise 5x5 s2, 144 at 56", {2, 56, 56, 144}, {144, 5, 5, 1}, 2, 144},
      {"expand 1x1, 24->144 at 56", {2, 56, 56, 24}, {144, 1, 1, 24}, 1, 1},
      {"project 1x1, 672->112 at 14", {2, 14, 14, 672}, {112, 1, 1, 672}, 1, 1},
  };
  for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
    ef_store *s = ef_store_new();
    int w = ef_store_add(s, "w", true, true, 4, convs[i].w, (ef_init){0});
    int64_t pair[2] = {2, convs[i].w[0]}; // batch norm's (2,O) running statistics and affine pair
    int st = ef_store_add(s, "running", false, false, 2, pair, (ef_init){EF_INIT_CONST, 1}),
        af = ef_store_add(s, "affine", false, false, 2, pair, (ef_init){EF_INIT_CONST, 1});
    ef_store_bind(s, be);
    ef_graph *g = ef_graph_new(s, 1);
    ef_tensor *x = ef_input(g, "x", EF_F32, 4, convs[i].x);
    x->requires_grad = true;
    ef_tensor *wt = ef_param(g, w, 1, NULL);
    ef_tensor *y = ef_conv2d(g, x, wt, NULL, convs[i].stride, 1, convs[i].groups, EF_PAD_SAME);
    ef_graph_keep(g, y);
    ef_graph_backward(g, ef_sum(g, y));
    for (ef_act a = EF_ACT_NONE; a < EF_ACT_COUNT; a++) // the post-op of each activation
      ef_graph_keep(g, ef_conv2d_bn(g, x, wt, convs[i].stride, convs[i].groups, EF_PAD_SAME, ef_param(g, st, 1, NULL),
                                    ef_param(g, af, 1, NULL), 1e-3f, a));
    ef_plan *p;
    CHECK(ef_plan_new(&p, g, be, NULL) == EF_OK, "%s", ef_last_error());
    for (int k = 0; k < p->n; k++) {
      ef_op op = p->sched[k]->op;
      if (op != EF_OP_CONV2D && op != EF_OP_CONV2D_BWD_DATA && op != EF_OP_CONV2D_BWD_WEIGHT && op != EF_OP_CONV2D_BN)
        continue;
      const char *impl = be->describe(be, p->state[k]);
      printf("  %-32s %-18s %s\n", convs[i].what, ef_op_name(op), impl);
      CHECK(impl && strncmp(impl, "ref", 3) != 0, "%s, %s: oneDNN fell back to '%s'", convs[i].what, ef_op_name(op),
            impl);
    }
    ef_plan_free(p);
    ef_graph_free(g);
    ef_store_free(s);
  }
  ef_backend_free(be);
}

// Gradient accumulation: two micro-batches of 4 make the same update as one batch of 8, with batch
// norm on its running statistics (with batch statistics the two differ by design) and no dropout;
// an update's first micro-batch is partial and applies nothing.
typedef struct {
  ef_store *store;
  ef_model_graph eval, train;
  ef_step step;
} accum_net;

static void accum_net_init(accum_net *n, ef_backend *be, int batch, int accum) {
  ef_model_desc d;
  ef_model_desc_tiny(&d, CLASSES, 3, SIDE, 0);
  n->store = ef_store_new();
  ef_model_graph_new(&n->eval, n->store, &d, &(ef_graph_opts){.batch = 1}); // registers the parameters
  CHECK(ef_bn_mode(n->store, "eval") == EF_OK, "%s", ef_last_error());
  ef_model_graph_new(&n->train, n->store, &d,
                     &(ef_graph_opts){.batch = batch, .training = true, .smoothing = 0.1f, .seed = 5});
  CHECK(ef_store_bind(n->store, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(n->store, 5);
  CHECK(ef_model_graph_plan(&n->train, be, NULL) == EF_OK, "%s", ef_last_error());
  ef_step_config sc = {.optim = ef_optim_defaults(EF_OPT_SGD), .accum = accum};
  sc.optim.momentum = 0.9, sc.optim.weight_decay = 1e-4;
  CHECK(ef_step_init(&n->step, &n->train, &sc) == EF_OK, "%s", ef_last_error());
  ef_step_set_loss_scale(&n->step, 1);
}

static void accum_net_free(accum_net *n) {
  ef_step_free(&n->step);
  ef_model_graph_free(&n->train), ef_model_graph_free(&n->eval);
  ef_store_free(n->store);
}

static void test_accumulation_equals_large_batch(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  accum_net big, acc;
  accum_net_init(&big, be, 8, 1);
  accum_net_init(&acc, be, 4, 2);
  int64_t px = SIDE * SIDE * 3;
  for (int s = 0; s < 3; s++) {
    ef_step_result rb, r0, r1;
    ef_step_run(&big.step, xs + 8 * s * px, ys + 8 * s, NULL, 0.2, s, &rb);
    ef_step_run(&acc.step, xs + 8 * s * px, ys + 8 * s, NULL, 0.2, s, &r0);
    CHECK(r0.partial && !r0.applied, "update %d: the first micro-batch is not partial", s);
    ef_step_run(&acc.step, xs + (8 * s + 4) * px, ys + 8 * s + 4, NULL, 0.2, s, &r1);
    CHECK(!r1.partial && r1.applied, "update %d: the second micro-batch did not apply", s);
    CHECK(fabs(r1.loss - rb.loss) < 1e-6 && r1.correct == rb.correct,
          "update %d: loss %.9g (hits %lld) accumulated, %.9g (%lld) in one batch", s, r1.loss, (long long)r1.correct,
          rb.loss, (long long)rb.correct);
  }
  size_t n = big.store->numel[0];
  CHECK_CLOSE((const float *)acc.store->mem[EF_ARENA_PARAM], (const float *)big.store->mem[EF_ARENA_PARAM], (int64_t)n,
              TEST_REL, 1e-30, 1e-5, "parameters after 3 updates, accumulated against one batch");
  accum_net_free(&big), accum_net_free(&acc);
  ef_backend_free(be);
}

int main(void) {
  xs = malloc(sizeof(float) * N_SAMPLES * SIDE * SIDE * 3);
  ys = malloc(sizeof(int32_t) * N_SAMPLES);
  make_problem(xs, ys);
  RUN(test_loss_falls);
  RUN(test_planned_training_equals_unplanned);
  RUN(test_onednn_picks_fast_kernels);
  RUN(test_accumulation_equals_large_batch);
  free(xs);
  free(ys);
  return test_exit_code();
}
