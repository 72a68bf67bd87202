// Core tests: Philox against the Random123 known answers, bf16/f16 conversions, the memory
// planner on random graphs (no live overlap but for outputs written over their dying source, peak
// below the naive sum, poisoned planned runs equal to unplanned ones bit for bit) and its reuse of
// a dying source's space, autograd's structure, plan errors, and graph capture and replay
// (ef_capture_run) on a CPU backend that records as CUDA does.
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/cpu/cpu_internal.h"
#include "core/plan.h"
#include "core/store.h"
#include "tests/harness.h"
#include "tests/plan_check.h"

static void test_philox_known_answers(void) {
  // Random123 tests/kat_vectors, "philox4x32 10": counter, key -> output.
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
       0x24126ea1},
  };
  for (int v = 0; v < 3; v++) {
    ef_philox_out r = ef_philox4x32(kat[v], kat[v] + 4);
    for (int i = 0; i < 4; i++)
      CHECK(r.v[i] == kat[v][6 + i], "vector %d word %d: %08x != %08x", v, i, r.v[i], kat[v][6 + i]);
  }
  // The indexed form is the raw generator at counter {index/4, 0, stream, step}, key = seed.
  uint64_t seed = 0x299f31d0a4093822ull;
  ef_philox_out r = ef_philox4x32((uint32_t[]){5, 0, 3, 9}, (uint32_t[]){0xa4093822, 0x299f31d0});
  CHECK(ef_philox_u32(seed, 3, 9, 22) == r.v[2], "indexing");
}

static void test_philox_distributions(void) {
  double s = 0, q = 0, us = 0, umin = 1, umax = 0;
  int n = 200000;
  for (int i = 0; i < n; i++) {
    double z = ef_philox_normal(7, 1, 0, (uint64_t)i), u = ef_philox_uniform(7, 2, 0, (uint64_t)i);
    s += z, q += z * z, us += u;
    umin = fmin(umin, u), umax = fmax(umax, u);
  }
  CHECK(fabs(s / n) < 0.01 && fabs(q / n - 1) < 0.02, "normal: mean %.4f, variance %.4f", s / n, q / n);
  CHECK(fabs(us / n - 0.5) < 0.005 && umin >= 0 && umax < 1, "uniform: mean %.4f in [%g, %g]", us / n, umin, umax);
}

static void test_f16(void) {
  // Every finite f16 survives the round trip through f32 exactly; NaN stays NaN.
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = ef_f16_to_f32((uint16_t)h);
    uint16_t back = ef_f32_to_f16(f);
    bool nan = ((h >> 10) & 31) == 31 && (h & 0x3ff);
    if (nan ? !isnan(f) || !isnan(ef_f16_to_f32(back)) : back != h) bad++;
  }
  CHECK(bad == 0, "%d f16 values do not round-trip", bad);
  struct {
    float f;
    uint16_t h;
  } cases[] = {
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},
      {65519.0f, 0x7bff},
      {65520.0f, 0x7c00},
      {1e9f, 0x7c00},
      {0x1p-24f, 0x0001},
      {0x1p-25f, 0x0000},
      {0x1.8p-25f, 0x0001},
      {0x1p-14f, 0x0400},
      {0x1.ff8p-15f, 0x03ff},
      {0x1.ffcp-15f, 0x0400},
      {1.0f + 0x1p-11f, 0x3c00},
      {1.0f + 0x3p-11f, 0x3c02},
      {INFINITY, 0x7c00},
      {-INFINITY, 0xfc00},
      {0.1f, 0x2e66},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(ef_f32_to_f16(cases[i].f) == cases[i].h, "f16(%a) = %04x, want %04x", cases[i].f, ef_f32_to_f16(cases[i].f),
          cases[i].h);
  CHECK(isnan(ef_f16_to_f32(ef_f32_to_f16(NAN))), "NaN");
}

static void test_bf16(void) {
  struct {
    float f;
    uint16_t h;
  } cases[] = {
      {1.0f, 0x3f80},  {1.0f + 0x1p-8f, 0x3f80},  {1.0f + 0x3p-8f, 0x3f82},
      {-3.0f, 0xc040}, {0x1.fffffep127f, 0x7f80}, {INFINITY, 0x7f80},
      {0.1f, 0x3dcd},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK(ef_f32_to_bf16(cases[i].f) == cases[i].h, "bf16(%a) = %04x, want %04x", cases[i].f,
          ef_f32_to_bf16(cases[i].f), cases[i].h);
  CHECK(isnan(ef_bf16_to_f32(ef_f32_to_bf16(NAN))), "NaN");
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = ef_bf16_to_f32((uint16_t)h);
    if (!isnan(f) && ef_f32_to_bf16(f) != h) bad++;
  }
  CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

// The CPU backend's vectorizable exp against libm's double exp: within 3e-7 relative over the
// whole range it does not clamp ([-87.3, 88]), NaN kept, and clamped arguments finite.
static void test_expf(void) {
  double worst = 0;
  float at = 0;
  for (int i = 0; i <= 2000000; i++) {
    float x = -87.3f + 175.3f * (float)i / 2000000.0f;
    double e = fabs(ef_expf(x) / exp((double)x) - 1.0);
    if (e > worst) worst = e, at = x;
  }
  CHECK(worst < 3e-7, "largest relative error %.3g at x = %.9g: got %.9g want %.9g", worst, at, ef_expf(at),
        exp((double)at));
  CHECK(isnan(ef_expf(NAN)) && ef_expf(1000.0f) == ef_expf(88.0f) && isfinite(ef_expf(88.0f)) &&
            ef_expf(-1000.0f) > 0 && ef_expf(-1000.0f) < 1.3e-38f,
        "NaN and the clamped ends: exp(1000) = %g, exp(-1000) = %g", ef_expf(1000.0f), ef_expf(-1000.0f));
  CHECK(ef_expf(0.0f) == 1.0f, "exp(0) = %.9g", ef_expf(0.0f));
}

// ---- the planner ------------------------------------------------------------------------------

// A random graph of elementwise ops over one shape, with a random subset kept. Built twice with
// the same draws, once planned (and poisoned) and once naive: every kept tensor must agree.
static ef_graph *random_graph(uint64_t seed, ef_tensor **inputs, ef_tensor ***kept, int *n_kept) {
  ef_graph *g = ef_graph_new(NULL, seed);
  int64_t shape[2] = {3, 5 + (int64_t)(seed % 7)};
  int n = 0;
  ef_tensor *t[64];
  for (int i = 0; i < 3; i++) t[n++] = inputs[i] = ef_input(g, "in", EF_F32, 2, shape);
  *kept = malloc(sizeof(ef_tensor *) * 64);
  *n_kept = 0;
  for (int k = 0; n < 60; k++) {
    uint32_t r = ef_philox_u32(seed, 0, 0, (uint64_t)k);
    ef_tensor *a = t[r % (uint32_t)n], *b = t[(r >> 8) % (uint32_t)n];
    switch ((r >> 16) % 4) {
    case 0: t[n] = ef_add(g, a, b); break;
    case 1: t[n] = ef_activate(g, a, EF_ACT_SWISH); break;
    case 2: t[n] = ef_activate(g, a, EF_ACT_SIGMOID); break;
    default: t[n] = ef_dropout(g, a, 0.25f, false); break;
    }
    if ((r >> 24) % 5 == 0 || n == 59) {
      ef_graph_keep(g, t[n]);
      (*kept)[(*n_kept)++] = t[n];
    }
    n++;
  }
  return g;
}

static void test_planner_random_graphs(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  int heirs = 0;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    ef_tensor *in[2][3], **kept[2];
    int n_kept[2];
    ef_graph *g[2];
    ef_plan *p[2];
    float *out[2];
    for (int v = 0; v < 2; v++) {
      g[v] = random_graph(seed, in[v], &kept[v], &n_kept[v]);
      ef_plan_opts o = {.poison = v == 0, .no_reuse = v == 1};
      CHECK(ef_plan_new(&p[v], g[v], be, &o) == EF_OK, "%s", ef_last_error());
      int64_t numel = ef_numel(in[v][0]);
      float x[64];
      for (int i = 0; i < 3; i++) {
        test_fill_uniform(x, numel, seed, (uint32_t)i, -2, 2);
        ef_plan_set(p[v], in[v][i], x);
      }
      ef_plan_run(p[v], &(ef_run_ctx){.step = 3});
      out[v] = malloc(sizeof(float) * (size_t)(numel * n_kept[v]));
      for (int k = 0; k < n_kept[v]; k++) ef_plan_get(p[v], kept[v][k], out[v] + k * numel);
    }
    char what[32];
    snprintf(what, sizeof what, "random graph %d", (int)seed);
    heirs += check_no_live_overlap(p[0], what);
    CHECK(check_no_live_overlap(p[1], what) == 0, "%s: the naive layout passes buffers on", what);
    CHECK(p[0]->arena_bytes < p[0]->naive_bytes && p[1]->arena_bytes == p[1]->naive_bytes, "%s: planned %zu, naive %zu",
          what, p[0]->arena_bytes, p[0]->naive_bytes);
    size_t bytes = sizeof(float) * (size_t)(ef_numel(in[0][0]) * n_kept[0]);
    CHECK(n_kept[0] == n_kept[1] && !memcmp(out[0], out[1], bytes), "%s: planned and naive runs differ", what);
    for (int v = 0; v < 2; v++) {
      ef_plan_free(p[v]);
      ef_graph_free(g[v]);
      free(out[v]);
      free(kept[v]);
    }
  }
  CHECK(heirs > 0, "no elementwise output took over its source's space in 40 random graphs");
  ef_backend_free(be);
}

// The buffer of node t in plan p.
static const ef_buffer *buffer_of(const ef_plan *p, const ef_tensor *t) {
  for (int k = 0; k < p->n_bufs; k++)
    if (p->bufs[k].t == t) return &p->bufs[k];
  CHECK(false, "'%s' has no buffer", t->name);
  return NULL;
}

// An elementwise node takes over its src[0]'s space only where it is src[0]'s last reader: never
// an input's, nor that of a source read later.
static void test_planner_reuse(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  ef_graph *g = ef_graph_new(NULL, 1);
  ef_tensor *in = ef_input(g, "in", EF_F32, 2, (int64_t[]){4, 64});
  ef_tensor *a = ef_activate(g, in, EF_ACT_SWISH);  // in: an input, kept from run to run
  ef_tensor *b = ef_activate(g, a, EF_ACT_SIGMOID); // a: read again by c
  ef_tensor *c = ef_add(g, a, b);                   // a's last reader: over a
  ef_tensor *s = ef_gap(g, ef_reshape(g, c, 4, (int64_t[]){4, 2, 2, 16}));
  ef_tensor *d = ef_channel_mul(g, ef_reshape(g, c, 4, (int64_t[]){4, 2, 2, 16}), s); // through a view: over c
  ef_graph_keep(g, d);
  ef_tensor_set_name(a, "a"), ef_tensor_set_name(b, "b"), ef_tensor_set_name(c, "c"), ef_tensor_set_name(d, "d");
  ef_plan *p;
  CHECK(ef_plan_new(&p, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  CHECK(!buffer_of(p, a)->inherited && !buffer_of(p, b)->inherited, "a took the input's space, or b took a's");
  CHECK(buffer_of(p, c)->inherited && buffer_of(p, c)->offset == buffer_of(p, a)->offset, "c did not take a's space");
  CHECK(buffer_of(p, d)->inherited && buffer_of(p, d)->offset == buffer_of(p, a)->offset, "d did not take c's space");
  CHECK(check_no_live_overlap(p, "reuse") == 2, "two heirs");
  float x[256], y[256];
  test_fill_uniform(x, 256, 7, 0, -3, 3);
  ef_plan_set(p, in, x);
  ef_plan_run(p, &(ef_run_ctx){0});
  ef_plan_get(p, d, y);
  for (int n = 0; n < 4; n++) {
    double sum[16] = {0};
    float cv[64];
    for (int i = 0; i < 64; i++) {
      float av = ef_act_fwd(EF_ACT_SWISH, x[n * 64 + i]);
      cv[i] = av + ef_act_fwd(EF_ACT_SIGMOID, av);
      sum[i % 16] += cv[i];
    }
    for (int i = 0; i < 64; i++) {
      float want = cv[i] * (float)(sum[i % 16] / 4);
      CHECK(fabsf(y[n * 64 + i] - want) <= 1e-5f * fabsf(want) + 1e-6f, "d[%d]: %.8g, want %.8g", n * 64 + i,
            y[n * 64 + i], want);
    }
  }
  ef_plan_free(p);
  ef_graph_free(g);
  ef_backend_free(be);
}

// ---- autograd ---------------------------------------------------------------------------------

static int count_op(const ef_graph *g, ef_op op) {
  int n = 0;
  for (int i = 0; i < g->n; i++) n += g->nodes[i]->op == op;
  return n;
}

// A weight used twice gets the sum of both contributions, accumulated once into the gradient
// arena; a frozen weight and an input that needs no gradient cost no backward node.
static void test_autograd_structure(void) {
  ef_backend *be = ef_cpu_backend_new(0);
  ef_store *s = ef_store_new();
  int w = ef_store_add(s, "w", true, true, 2, (int64_t[]){3, 4}, (ef_init){0});
  int frozen = ef_store_add(s, "frozen", true, true, 2, (int64_t[]){3, 3}, (ef_init){0});
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  ef_graph *g = ef_graph_new(s, 1);
  ef_tensor *x1 = ef_input(g, "x1", EF_F32, 2, (int64_t[]){2, 4}),
            *x2 = ef_input(g, "x2", EF_F32, 2, (int64_t[]){2, 4});
  ef_tensor *wt = ef_param(g, w, 1, NULL), *ft = ef_param(g, frozen, 1, NULL);
  ft->requires_grad = false;
  ef_tensor *y = ef_add(g, ef_linear(g, x1, wt, NULL), ef_linear(g, x2, wt, NULL));
  ef_tensor *loss = ef_sum(g, ef_linear(g, y, ft, NULL));
  ef_graph_backward(g, loss);
  CHECK(count_op(g, EF_OP_LINEAR_BWD_WEIGHT) == 2, "two weight gradients, got %d",
        count_op(g, EF_OP_LINEAR_BWD_WEIGHT));
  CHECK(count_op(g, EF_OP_LINEAR_BWD_DATA) == 1, "only y needs a data gradient, got %d",
        count_op(g, EF_OP_LINEAR_BWD_DATA));
  CHECK(count_op(g, EF_OP_ACCUM) == 1, "one accumulation into the gradient arena, got %d", count_op(g, EF_OP_ACCUM));
  ef_plan *p;
  CHECK(ef_plan_new(&p, g, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  float xv[2][8], wv[12], fv[9], grad[12];
  test_fill_uniform(xv[0], 8, 2, 0, -1, 1);
  test_fill_uniform(xv[1], 8, 2, 1, -1, 1);
  test_fill_uniform(wv, 12, 2, 2, -1, 1);
  test_fill_uniform(fv, 9, 2, 3, -1, 1);
  ef_plan_set(p, x1, xv[0]);
  ef_plan_set(p, x2, xv[1]);
  ef_store_write(s, w, EF_ARENA_PARAM, wv);
  ef_store_write(s, frozen, EF_ARENA_PARAM, fv);
  // loss = sum_{n,j} sum_o F[j,o] y[n,o]  =>  dL/dW[o,i] = (sum_j F[j,o]) * sum_n (x1 + x2)[n,i]
  for (int run = 1; run <= 2; run++) {
    ef_plan_run(p, &(ef_run_ctx){0});
    ef_store_read(s, w, EF_ARENA_GRAD, grad);
    double want[12];
    for (int o = 0; o < 3; o++)
      for (int i = 0; i < 4; i++) {
        double fs = fv[0 * 3 + o] + fv[1 * 3 + o] + fv[2 * 3 + o], xs = 0;
        for (int n = 0; n < 2; n++) xs += xv[0][n * 4 + i] + xv[1][n * 4 + i];
        want[o * 4 + i] = run * fs * xs; // gradients accumulate from run to run until zeroed
      }
    CHECK_REL(grad, want, 12, 1e-5, "run %d: weight gradient", run);
  }
  ef_store_zero_grads(s);
  ef_store_read(s, w, EF_ARENA_GRAD, grad);
  CHECK(grad[0] == 0 && grad[11] == 0, "zeroed gradients");
  ef_plan_free(p);
  ef_graph_free(g);
  ef_store_free(s);
  ef_backend_free(be);
}

// ---- alignment ----------------------------------------------------------------------------------

// Every store entry starts on 256 bytes except a 1-D entry packed after an equal one (a batch
// norm's pair, which stays one (2,C) leaf); every planned buffer starts on 256 bytes too, with and
// without poison's red zones, and so do the backend's addresses.
static void test_alignment(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = ef_store_new();
  int conv = ef_store_add(s, "conv", true, true, 4, (int64_t[]){5, 3, 3, 1}, (ef_init){0});
  int gamma = ef_store_add(s, "bn.weight", true, false, 1, (int64_t[]){5}, (ef_init){0});
  int beta = ef_store_add(s, "bn.bias", true, false, 1, (int64_t[]){5}, (ef_init){0});
  int mean = ef_store_add(s, "bn.running_mean", false, false, 1, (int64_t[]){5}, (ef_init){0});
  int var = ef_store_add(s, "bn.running_var", false, false, 1, (int64_t[]){5}, (ef_init){0});
  int conv2 = ef_store_add(s, "conv2", true, true, 4, (int64_t[]){5, 3, 3, 1}, (ef_init){0});
  int bias = ef_store_add(s, "other.bias", true, false, 1, (int64_t[]){7}, (ef_init){0});
  const ef_store_entry *e = s->entries;
  CHECK(e[conv].offset == 0 && e[gamma].offset == EF_STORE_ALIGN && e[beta].offset == EF_STORE_ALIGN + 5 &&
            e[conv2].offset == 2 * EF_STORE_ALIGN && e[bias].offset == 3 * EF_STORE_ALIGN,
        "trainable offsets %zu %zu %zu %zu %zu", e[conv].offset, e[gamma].offset, e[beta].offset, e[conv2].offset,
        e[bias].offset);
  CHECK(e[mean].offset == 0 && e[var].offset == 5, "state offsets %zu %zu", e[mean].offset, e[var].offset);
  CHECK(s->numel[0] == 3 * EF_STORE_ALIGN + 7 && ef_store_count(s, true) == 45 + 10 + 45 + 7 &&
            ef_store_count(s, false) == 10,
        "arena %zu, %zu parameters, %zu state", s->numel[0], ef_store_count(s, true), ef_store_count(s, false));
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  for (int poison = 0; poison < 2; poison++) {
    ef_graph *g = ef_graph_new(s, 1);
    ef_tensor *x = ef_input(g, "x", EF_F32, 4, (int64_t[]){2, 5, 3, 5});
    ef_tensor *y = ef_conv2d(g, x, ef_param(g, conv, 1, NULL), NULL, 1, 1, 5, EF_PAD_SYMMETRIC);
    y = ef_bn(g, y, ef_bn_stats(g, y), ef_param(g, gamma, 2, NULL), 1e-3f, EF_ACT_SWISH, true);
    y = ef_conv2d(g, y, ef_param(g, conv2, 1, NULL), NULL, 2, 1, 5, EF_PAD_SAME);
    ef_graph_keep(g, ef_add(g, y, y));
    ef_plan *p;
    CHECK(ef_plan_new(&p, g, be, &(ef_plan_opts){.poison = poison}) == EF_OK, "%s", ef_last_error());
    CHECK((uintptr_t)p->arena % EF_PLAN_ALIGN == 0, "arena at %p", p->arena);
    for (int i = 0; i < p->n; i++) // activations and parameters alike
      CHECK((uintptr_t)p->sched[i]->data % 256 == 0, "poison %d: '%s' at %p", poison, p->sched[i]->name,
            p->sched[i]->data);
    for (int k = 0; k < p->n_bufs; k++)
      CHECK(p->bufs[k].offset % EF_PLAN_ALIGN == 0 && p->bufs[k].bytes % EF_PLAN_ALIGN == 0 &&
                p->bufs[k].bytes >= ef_nbytes(p->bufs[k].t) + (poison ? EF_PLAN_RED_ZONE : 0),
            "poison %d: buffer of '%s' at %zu, %zu bytes", poison, p->bufs[k].t->name, p->bufs[k].offset,
            p->bufs[k].bytes);
    ef_plan_free(p);
    ef_graph_free(g);
  }
  for (int i = 0; i < s->n; i++)
    CHECK((uintptr_t)ef_store_data(s, i, s->entries[i].trainable ? EF_ARENA_PARAM : EF_ARENA_STATE) % 256 == 0 ||
              i == beta || i == var,
          "'%s' is not on 256 bytes", s->entries[i].name);
  ef_store_free(s);
  ef_backend_free(be);
}

// ---- errors -------------------------------------------------------------------------------------

static void test_plan_errors(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_graph *g = ef_graph_new(NULL, 1);
  ef_tensor *h = ef_input(g, "half", EF_F16, 1, (int64_t[]){4});
  ef_graph_keep(g,
                ef_reshape(g, ef_activate(g, ef_reshape(g, h, 2, (int64_t[]){2, 2}), EF_ACT_RELU), 1, (int64_t[]){4}));
  ef_plan *p = NULL;
  ef_status st = ef_plan_new(&p, g, be, NULL);
  CHECK(st == EF_ERR_UNSUPPORTED && p == NULL && strstr(ef_last_error(), "cannot run op act"), "f16 on the CPU: %d %s",
        st, ef_last_error());
  ef_graph_free(g);

  g = ef_graph_new(NULL, 1);
  ef_tensor *big = ef_input(g, "big", EF_F32, 4, (int64_t[]){1 << 16, 1 << 16, 1 << 10, 64});
  ef_graph_keep(g, ef_activate(g, big, EF_ACT_SWISH));
  st = ef_plan_new(&p, g, be, NULL);
  CHECK(st == EF_ERR_NOMEM && p == NULL && strstr(ef_last_error(), "reduce the batch size"), "huge arena: %d %s", st,
        ef_last_error());
  ef_graph_free(g);
  ef_backend_free(be);
}

// A backend that captures as CUDA does, on the CPU: while capturing, computations are recorded
// instead of run, and a replay runs the record with the step begin_run last wrote (a device reads
// it from memory). ef_plan_run with opts.graph must then give what eager runs give, step by step.
typedef struct {
  const ef_tensor *node;
  void *state, *scratch;
} recorded_node;

typedef struct {
  ef_backend *cpu;
  bool capturing;
  uint32_t step;
  recorded_node rec[16];
  int n, begins, captures, replays;
} fake_backend;
static fake_backend fake;

static void fake_compute(ef_backend *be, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  if (!fake.capturing) {
    fake.cpu->compute(be, node, state, scratch, ctx);
    return;
  }
  EF_ASSERT(fake.n < 16, "record full");
  fake.rec[fake.n++] = (recorded_node){node, state, scratch};
}

static void fake_begin_run(ef_backend *be, const ef_run_ctx *ctx) {
  fake.begins++;
  if (!fake.capturing) fake.step = ctx->step;
}

static void fake_capture_begin(ef_backend *be) { fake.capturing = true, fake.n = 0, fake.captures++; }

static void *fake_capture_end(ef_backend *be) {
  fake.capturing = false;
  return &fake;
}

static void fake_replay(ef_backend *be, void *graph) {
  fake.replays++;
  ef_run_ctx ctx = {.step = fake.step};
  for (int i = 0; i < fake.n; i++)
    fake.cpu->compute(be, fake.rec[i].node, fake.rec[i].state, fake.rec[i].scratch, &ctx);
}

static void fake_graph_free(ef_backend *be, void *graph) {}

// Dropout then swish: the output changes with the step, so a step frozen into the graph shows.
static ef_graph *dropout_graph(ef_tensor **x, ef_tensor **y) {
  ef_graph *g = ef_graph_new(NULL, 5);
  *x = ef_input(g, "x", EF_F32, 2, (int64_t[]){7, 9});
  *y = ef_activate(g, ef_dropout(g, *x, 0.5f, false), EF_ACT_SWISH);
  ef_graph_keep(g, *y);
  return g;
}

static void test_graph_capture_and_replay(void) {
  ef_backend *cpu = ef_cpu_backend_new(1), be = *cpu;
  fake = (fake_backend){.cpu = cpu};
  be.compute = fake_compute, be.begin_run = fake_begin_run, be.capture_begin = fake_capture_begin;
  be.capture_end = fake_capture_end, be.replay = fake_replay, be.graph_free = fake_graph_free;
  for (int profile = 0; profile < 2; profile++) {
    ef_tensor *xa, *ya, *xb, *yb;
    ef_graph *ga = dropout_graph(&xa, &ya), *gb = dropout_graph(&xb, &yb);
    ef_plan *pa, *pb;
    CHECK(ef_plan_new(&pa, ga, cpu, NULL) == EF_OK, "%s", ef_last_error());
    CHECK(ef_plan_new(&pb, gb, &be, &(ef_plan_opts){.graph = true, .profile = profile}) == EF_OK, "%s",
          ef_last_error());
    float x[63], want[63], got[63], first[63];
    test_fill_uniform(x, 63, 4, 0, -2, 2);
    ef_plan_set(pa, xa, x), ef_plan_set(pb, xb, x);
    fake.begins = fake.captures = fake.replays = 0;
    bool same = true, changes = false;
    for (uint32_t step = 0; step < 5; step++) {
      ef_run_ctx ctx = {.step = 10 + step};
      ef_plan_run(pa, &ctx), ef_plan_run(pb, &ctx);
      ef_plan_get(pa, ya, want), ef_plan_get(pb, yb, got);
      same &= !memcmp(want, got, sizeof want);
      if (step == 0) memcpy(first, got, sizeof first);
      else changes |= memcmp(first, got, sizeof first) != 0;
    }
    CHECK(same && changes, "%s: replays equal eager runs (%d), the masks change with the step (%d)",
          profile ? "profiled" : "graph", same, changes);
    int want_captures = profile ? 0 : 1, want_replays = profile ? 0 : 4; // run 1 eager, run 2 captures and replays
    CHECK(fake.begins == 5 && fake.captures == want_captures && fake.replays == want_replays,
          "%s: %d begin_run, %d captures, %d replays", profile ? "profiled" : "graph", fake.begins, fake.captures,
          fake.replays);
    ef_plan_free(pa), ef_plan_free(pb);
    ef_graph_free(ga), ef_graph_free(gb);
  }
  ef_backend_free(cpu);
}

int main(void) {
  RUN(test_philox_known_answers);
  RUN(test_philox_distributions);
  RUN(test_f16);
  RUN(test_bf16);
  RUN(test_expf);
  RUN(test_planner_random_graphs);
  RUN(test_planner_reuse);
  RUN(test_autograd_structure);
  RUN(test_alignment);
  RUN(test_plan_errors);
  RUN(test_graph_capture_and_replay);
  return test_exit_code();
}
