// The training recipe's pieces against numbers worked out here in double: SGD, TF RMSProp and
// AdamW for three steps (weight decay on marked entries or all, state untouched, slots that
// restore exactly), the official B0 learning-rate schedule, the weights' moving average with its
// warm-up, and global-norm clipping, the same bits for any thread count.
#include <omp.h>

#include "core/cpu/cpu.h"
#include "tests/harness.h"
#include "train/ema.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/update.h"

// A small store: a decayed conv weight (6), BN running means (state, 3), an undecayed BN weight
// (3). In the PARAM arena elements 0-5 are the conv weight, 6-8 the BN weight.
#define NP 9
#define NS 3
#define N_DECAYED 6

static ef_store *small_store(ef_backend *be, int64_t conv_numel) {
  ef_store *s = ef_store_new();
  ef_store_add(s, "conv.weight", true, true, 1, (int64_t[]){conv_numel}, (ef_init){0});
  ef_store_add(s, "bn.running_mean", false, false, 1, (int64_t[]){NS}, (ef_init){0});
  ef_store_add(s, "bn.weight", true, false, 1, (int64_t[]){3}, (ef_init){0});
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  test_fill_uniform(s->mem[EF_ARENA_PARAM], (int64_t)s->numel[0], 1, 0, -1, 1);
  test_fill_uniform(s->mem[EF_ARENA_STATE], NS, 1, 1, -1, 1);
  return s;
}

// The gradients of step t (0, 1, 2, ...): uniform in [-1, 1), different every step.
static void set_grads(ef_store *s, int t) {
  test_fill_uniform(s->mem[EF_ARENA_GRAD], (int64_t)s->numel[0], 2, 10 + (uint32_t)t, -1, 1);
}

static const double lrs[3] = {0.1, 0.05, 0.2};

// One element's parameter and two slots, updated in double from the formulas: PyTorch SGD,
// tf.compat.v1 RMSProp (s0 = mean square starting at 1, s1 = momentum), torch.optim.AdamW.
typedef struct {
  double p, s0, s1;
} ref_elem;

static void ref_update(const ef_optim_config *c, ref_elem *r, double g, bool decays, double lr, int t) {
  double wd = decays ? c->weight_decay : 0;
  switch (c->kind) {
  case EF_OPT_SGD: {
    double gi = g + wd * r->p;
    r->s0 = c->momentum * r->s0 + gi;
    r->p -= lr * (c->nesterov ? gi + c->momentum * r->s0 : c->momentum > 0 ? r->s0 : gi);
    break;
  }
  case EF_OPT_RMSPROP: {
    double gi = g + wd * r->p;
    r->s0 = c->rho * r->s0 + (1 - c->rho) * gi * gi;
    r->s1 = c->momentum * r->s1 + lr * gi / sqrt(r->s0 + c->eps);
    r->p -= r->s1;
    break;
  }
  case EF_OPT_ADAMW: {
    r->p *= 1 - lr * wd;
    r->s0 = c->beta1 * r->s0 + (1 - c->beta1) * g;
    r->s1 = c->beta2 * r->s1 + (1 - c->beta2) * g * g;
    double m_hat = r->s0 / (1 - pow(c->beta1, t)), v_hat = r->s1 / (1 - pow(c->beta2, t));
    r->p -= lr * m_hat / (sqrt(v_hat) + c->eps);
    break;
  }
  }
}

static const char *kind_name[] = {"SGD", "RMSProp", "AdamW"};

// Three steps of the optimizer against the reference: parameters and slots after every step,
// the BN state and the gradients untouched.
static void check_three_steps(const ef_optim_config *cfg, const char *what) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  float state0[NS];
  memcpy(state0, s->mem[EF_ARENA_STATE], sizeof state0);
  ef_optim o;
  CHECK(ef_optim_init(&o, s, cfg) == EF_OK, "%s: %s", what, ef_last_error());
  ref_elem ref[NP];
  for (int i = 0; i < NP; i++) ref[i] = (ref_elem){.p = s->mem[EF_ARENA_PARAM][i], .s0 = cfg->kind == EF_OPT_RMSPROP};
  for (int t = 1; t <= 3; t++) {
    set_grads(s, t);
    float grads[NP];
    memcpy(grads, s->mem[EF_ARENA_GRAD], sizeof grads);
    for (int i = 0; i < NP; i++) ref_update(cfg, &ref[i], grads[i], cfg->decay_all || i < N_DECAYED, lrs[t - 1], t);
    ef_optim_step(&o, s, lrs[t - 1]);
    double want[NP], want_slot[2][NP];
    for (int i = 0; i < NP; i++) want[i] = ref[i].p, want_slot[0][i] = ref[i].s0, want_slot[1][i] = ref[i].s1;
    CHECK_REL(s->mem[EF_ARENA_PARAM], want, NP, 2e-6, "%s, step %d: parameters", what, t);
    for (int k = 0; k < ef_optim_slots(&o); k++)
      CHECK_REL(ef_optim_slot(&o, k), want_slot[k], NP, 2e-6, "%s, step %d: slot '%s'", what, t,
                ef_optim_slot_name(&o, k));
    CHECK(!memcmp(grads, s->mem[EF_ARENA_GRAD], sizeof grads), "%s: the step changed the gradients", what);
    CHECK(!memcmp(state0, s->mem[EF_ARENA_STATE], sizeof state0), "%s: the step changed the BN state", what);
  }
  CHECK(o.step == 3, "%s: step count %lld after 3 steps", what, (long long)o.step);
  ef_optim_free(&o);
  ef_store_free(s);
  ef_backend_free(be);
}

// Exaggerated settings, so that every term moves the result well past f32 rounding.
static const ef_optim_config test_configs[] = {
    {.kind = EF_OPT_SGD, .momentum = 0.9, .weight_decay = 0.5},
    {.kind = EF_OPT_SGD, .momentum = 0.9, .nesterov = true, .weight_decay = 0.5},
    {.kind = EF_OPT_SGD, .weight_decay = 0.5},
    {.kind = EF_OPT_RMSPROP, .rho = 0.9, .momentum = 0.9, .eps = 0.05, .weight_decay = 0.5},
    {.kind = EF_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 0.01, .weight_decay = 0.5},
};
#define N_CONFIGS (int)(sizeof test_configs / sizeof test_configs[0])

static void test_three_steps_by_hand(void) {
  for (int c = 0; c < N_CONFIGS; c++)
    for (int all = 0; all < 2; all++) {
      ef_optim_config cfg = test_configs[c];
      cfg.decay_all = all;
      char what[96];
      snprintf(what, sizeof what, "%s momentum %g%s, decay %s", kind_name[cfg.kind], cfg.momentum,
               cfg.nesterov ? " nesterov" : "", all ? "all" : "marked");
      check_three_steps(&cfg, what);
    }
  // The official RMSProp settings too (eps 1e-3 inside the square root).
  ef_optim_config rms = ef_optim_defaults(EF_OPT_RMSPROP);
  rms.weight_decay = 0.5;
  check_three_steps(&rms, "RMSProp, official settings");
}

static void test_defaults_and_slots(void) {
  ef_optim_config r = ef_optim_defaults(EF_OPT_RMSPROP), a = ef_optim_defaults(EF_OPT_ADAMW);
  CHECK(r.rho == 0.9 && r.momentum == 0.9 && r.eps == 1e-3 && r.weight_decay == 1e-5 && !r.decay_all,
        "RMSProp defaults");
  CHECK(a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8 && a.weight_decay == 1e-2 && !a.decay_all,
        "AdamW defaults");
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  struct {
    ef_optim_config cfg;
    int n;
    const char *names[2];
  } want[] = {
      {{.kind = EF_OPT_SGD, .momentum = 0.9}, 1, {"momentum"}},
      {{.kind = EF_OPT_SGD}, 0, {NULL}},
      {ef_optim_defaults(EF_OPT_RMSPROP), 2, {"rms", "momentum"}},
      {ef_optim_defaults(EF_OPT_ADAMW), 2, {"exp_avg", "exp_avg_sq"}},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    ef_optim o;
    CHECK(ef_optim_init(&o, s, &want[i].cfg) == EF_OK, "%s", ef_last_error());
    CHECK(ef_optim_slots(&o) == want[i].n, "%s: %d slots, want %d", kind_name[want[i].cfg.kind], ef_optim_slots(&o),
          want[i].n);
    for (int k = 0; k < ef_optim_slots(&o) && k < want[i].n; k++)
      CHECK(!strcmp(ef_optim_slot_name(&o, k), want[i].names[k]), "%s slot %d is '%s', want '%s'",
            kind_name[want[i].cfg.kind], k, ef_optim_slot_name(&o, k), want[i].names[k]);
    CHECK(o.n == NP && o.step == 0, "%s: %zu elements, step %lld", kind_name[want[i].cfg.kind], o.n, (long long)o.step);
    ef_optim_free(&o);
  }
  ef_store_free(s);
  ef_backend_free(be);
}

static void test_bad_configs_refused(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  ef_optim_config bad[] = {
      {.kind = EF_OPT_SGD, .momentum = 1.0},
      {.kind = EF_OPT_SGD, .nesterov = true},
      {.kind = EF_OPT_SGD, .weight_decay = -1e-4},
      {.kind = EF_OPT_RMSPROP, .rho = 0.9, .momentum = 0.9, .eps = 0},
      {.kind = EF_OPT_RMSPROP, .rho = 1.5, .momentum = 0.9, .eps = 1e-3},
      {.kind = EF_OPT_ADAMW, .beta1 = 0.9, .beta2 = 1.0, .eps = 1e-8},
      {.kind = (ef_optim_kind)7},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_optim o;
    CHECK(ef_optim_init(&o, s, &bad[i]) == EF_ERR_INVALID, "bad configuration %zu accepted", i);
  }
  // A store on another backend (the CPU's functions under another name).
  ef_backend other = *be, *cpu = s->be;
  other.name = "cuda";
  s->be = &other;
  ef_optim o;
  ef_ema e;
  ef_optim_config sgd = ef_optim_defaults(EF_OPT_SGD);
  CHECK(ef_optim_init(&o, s, &sgd) == EF_ERR_UNSUPPORTED, "an optimizer over device memory");
  CHECK(strstr(ef_last_error(), "CPU backend or to CUDA"), "message: %s", ef_last_error());
  CHECK(ef_ema_init(&e, s, 0.9999) == EF_ERR_UNSUPPORTED, "a moving average over device memory");
  s->be = cpu;
  ef_store_free(s);
  ef_backend_free(be);
}

// TF's RMSProp starts the mean square at 1: the first step divides by sqrt(rho + (1 - rho) g^2
// + eps), not by |g|.
static void test_rmsprop_accumulator_starts_at_one(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  ef_optim o;
  ef_optim_config cfg = ef_optim_defaults(EF_OPT_RMSPROP);
  cfg.weight_decay = 0;
  CHECK(ef_optim_init(&o, s, &cfg) == EF_OK, "%s", ef_last_error());
  for (int i = 0; i < NP; i++)
    CHECK(ef_optim_slot(&o, 0)[i] == 1.0f && ef_optim_slot(&o, 1)[i] == 0.0f,
          "element %d: rms %g, momentum %g at the start", i, ef_optim_slot(&o, 0)[i], ef_optim_slot(&o, 1)[i]);
  float p0 = s->mem[EF_ARENA_PARAM][7];
  set_grads(s, 0);
  double g = s->mem[EF_ARENA_GRAD][7], ms = 0.9 + 0.1 * g * g, want = p0 - 0.1 * g / sqrt(ms + 1e-3);
  ef_optim_step(&o, s, 0.1);
  CHECK(fabs(ef_optim_slot(&o, 0)[7] - ms) < 1e-6, "mean square %.7f after one step, want 0.9 + 0.1 g^2 = %.7f",
        ef_optim_slot(&o, 0)[7], ms);
  CHECK(fabs(s->mem[EF_ARENA_PARAM][7] - want) < 1e-6, "parameter %.7f after one step, want %.7f",
        s->mem[EF_ARENA_PARAM][7], want);
  ef_optim_free(&o);
  ef_store_free(s);
  ef_backend_free(be);
}

// With the same gradient every step, bias correction makes every AdamW step lr * g / (|g| + eps)
// (m_hat = g, v_hat = g^2 at any t): at t = 1 and still at t = 3. Undecayed entry, weight decay on.
static void test_adamw_bias_correction(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  ef_optim o;
  ef_optim_config cfg = {.kind = EF_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 0.01, .weight_decay = 0.5};
  CHECK(ef_optim_init(&o, s, &cfg) == EF_OK, "%s", ef_last_error());
  set_grads(s, 0);
  float p0[NP];
  memcpy(p0, s->mem[EF_ARENA_PARAM], sizeof p0);
  for (int t = 1; t <= 3; t++) {
    ef_optim_step(&o, s, 0.1);
    if (t == 2) continue;
    double want[NP];
    for (int i = N_DECAYED; i < NP; i++) {
      double g = s->mem[EF_ARENA_GRAD][i];
      want[i] = p0[i] - t * 0.1 * g / (fabs(g) + 0.01);
    }
    CHECK_CLOSE(s->mem[EF_ARENA_PARAM] + N_DECAYED, want + N_DECAYED, NP - N_DECAYED, TEST_ABS, 0, 2e-6,
                "t = %d, the elements from %d (not decayed)", t, N_DECAYED);
  }
  ef_optim_free(&o);
  // t = 1 on a decayed element: p0 (1 - lr wd) - lr g / (|g| + eps).
  memcpy(s->mem[EF_ARENA_PARAM], p0, sizeof p0);
  CHECK(ef_optim_init(&o, s, &cfg) == EF_OK, "%s", ef_last_error());
  ef_optim_step(&o, s, 0.1);
  double g = s->mem[EF_ARENA_GRAD][0], want = p0[0] * (1 - 0.1 * 0.5) - 0.1 * g / (fabs(g) + 0.01);
  CHECK(fabs(s->mem[EF_ARENA_PARAM][0] - want) < 2e-6, "t = 1, decayed: %.7f, want %.7f", s->mem[EF_ARENA_PARAM][0],
        want);
  ef_optim_free(&o);
  ef_store_free(s);
  ef_backend_free(be);
}

// A checkpoint of the slots and the step count is all the state: an optimizer restored from
// them after two steps takes the same third step, bit for bit.
static void test_slots_restore_exactly(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  for (int c = 0; c < N_CONFIGS; c++) {
    ef_store *a = small_store(be, N_DECAYED), *b = small_store(be, N_DECAYED);
    ef_optim oa, ob;
    CHECK(ef_optim_init(&oa, a, &test_configs[c]) == EF_OK && ef_optim_init(&ob, b, &test_configs[c]) == EF_OK, "%s",
          ef_last_error());
    for (int t = 0; t < 2; t++) {
      set_grads(a, t);
      ef_optim_step(&oa, a, lrs[t]);
    }
    memcpy(b->mem[EF_ARENA_PARAM], a->mem[EF_ARENA_PARAM], NP * sizeof(float));
    for (int k = 0; k < ef_optim_slots(&oa); k++)
      memcpy(ef_optim_slot(&ob, k), ef_optim_slot(&oa, k), NP * sizeof(float));
    ob.step = oa.step;
    set_grads(a, 2);
    set_grads(b, 2);
    ef_optim_step(&oa, a, lrs[2]);
    ef_optim_step(&ob, b, lrs[2]);
    CHECK(!memcmp(a->mem[EF_ARENA_PARAM], b->mem[EF_ARENA_PARAM], NP * sizeof(float)),
          "%s (config %d): the restored step differs", kind_name[test_configs[c].kind], c);
    ef_optim_free(&oa);
    ef_optim_free(&ob);
    ef_store_free(a);
    ef_store_free(b);
  }
  ef_backend_free(be);
}

// Entries past the parallel threshold: one and two threads give the same bits.
static void test_optim_threads_agree(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  int64_t big = 200003;
  for (int c = 0; c < N_CONFIGS; c++) {
    float *out[2];
    for (int th = 0; th < 2; th++) {
      omp_set_num_threads(th + 1);
      ef_store *s = small_store(be, big);
      ef_optim o;
      CHECK(ef_optim_init(&o, s, &test_configs[c]) == EF_OK, "%s", ef_last_error());
      for (int t = 0; t < 3; t++) {
        set_grads(s, t);
        ef_optim_step(&o, s, lrs[t]);
      }
      out[th] = malloc(s->numel[0] * sizeof(float));
      memcpy(out[th], s->mem[EF_ARENA_PARAM], s->numel[0] * sizeof(float));
      ef_optim_free(&o);
      ef_store_free(s);
    }
    CHECK(!memcmp(out[0], out[1], (size_t)(big + 3) * sizeof(float)), "%s (config %d): 1 and 2 threads differ",
          kind_name[test_configs[c].kind], c);
    free(out[0]);
    free(out[1]);
  }
  omp_set_num_threads(1);
  ef_backend_free(be);
}

// ---- the learning-rate schedule ---------------------------------------------------------

// Official B0 on ImageNet: 0.016 per 256 images at batch 2048 = 0.128; 1281167 / 2048 = 625.57
// steps per epoch; 5 warm-up epochs = 3127 steps; x0.97 every 2.4 epochs = 1501.37 steps.
static ef_schedule_config b0_schedule(ef_lr_decay decay) {
  return (ef_schedule_config){.decay = decay,
                              .base_lr = 0.016,
                              .batch = 2048,
                              .steps_per_epoch = 1281167.0 / 2048,
                              .warmup_epochs = 5,
                              .decay_epochs = 2.4,
                              .decay_rate = 0.97,
                              .epochs = 350};
}

static void check_lr(const ef_schedule *s, int64_t step, double want, const char *what) {
  double got = ef_lr_at(s, step);
  CHECK(fabs(got - want) <= 1e-12 * fabs(want) + 1e-15, "%s, step %lld: lr %.12g, want %.12g", what, (long long)step,
        got, want);
}

static void test_schedule_official_b0(void) {
  ef_schedule s;
  ef_schedule_config cfg = b0_schedule(EF_LR_EXPONENTIAL);
  CHECK(ef_schedule_init(&s, &cfg) == EF_OK, "%s", ef_last_error());
  CHECK(fabs(s.lr - 0.128) < 1e-15, "peak %.17g, want 0.128", s.lr);
  CHECK(s.warmup_steps == 3127, "warm-up %lld steps, want 3127", (long long)s.warmup_steps);
  CHECK(fabs(s.decay_steps - 1501.3676) < 1e-4, "decay every %.6f steps, want 1501.3676", s.decay_steps);
  check_lr(&s, 0, 0, "exponential");
  check_lr(&s, 1000, 0.128 * 1000 / 3127, "exponential, mid warm-up");
  check_lr(&s, 3126, 0.128 * 3126 / 3127, "exponential, last warm-up step");
  // From step 0 on the staircase counts: 3127 / 1501.37 = 2.08, two decays already.
  check_lr(&s, 3127, 0.128 * 0.97 * 0.97, "exponential, warm-up end");
  // The third decay at 3 x 1501.3676 = 4504.10: steps 4504 and 4505 either side.
  check_lr(&s, 4504, 0.128 * 0.97 * 0.97, "exponential, before a decay");
  check_lr(&s, 4505, 0.128 * 0.97 * 0.97 * 0.97, "exponential, after a decay");
  check_lr(&s, 218948, 0.128 * pow(0.97, 145), "exponential, epoch 350 (218948 / 1501.37 = 145.8)");

  cfg = b0_schedule(EF_LR_COSINE);
  CHECK(ef_schedule_init(&s, &cfg) == EF_OK, "%s", ef_last_error());
  CHECK(s.total_steps == 218949, "cosine over %lld steps, want int(350 x 625.57) = 218949", (long long)s.total_steps);
  check_lr(&s, 1000, 0.128 * 1000 / 3127, "cosine, mid warm-up");
  check_lr(&s, 3127, 0.128, "cosine, warm-up end");
  check_lr(&s, 3127 + 215822 / 2, 0.064, "cosine, half way");
  check_lr(&s, 218948, 0.064 * (1 + cos(3.14159265358979323846 * 215821 / 215822)), "cosine, last step");
  check_lr(&s, 218949, 0, "cosine end");
  check_lr(&s, 300000, 0, "cosine, past the end");

  cfg = b0_schedule(EF_LR_CONSTANT);
  cfg.warmup_epochs = 0;
  CHECK(ef_schedule_init(&s, &cfg) == EF_OK, "%s", ef_last_error());
  check_lr(&s, 0, 0.128, "constant, no warm-up");
  check_lr(&s, 123456, 0.128, "constant");
}

static void test_schedule_refuses_nonsense(void) {
  ef_schedule s;
  ef_schedule_config bad[] = {b0_schedule(EF_LR_EXPONENTIAL), b0_schedule(EF_LR_EXPONENTIAL),
                              b0_schedule(EF_LR_EXPONENTIAL), b0_schedule(EF_LR_EXPONENTIAL),
                              b0_schedule(EF_LR_COSINE),      b0_schedule(EF_LR_EXPONENTIAL),
                              b0_schedule(EF_LR_EXPONENTIAL)};
  bad[0].base_lr = 0;
  bad[1].batch = 0;
  bad[2].decay_rate = 1.5;
  bad[3].decay_epochs = 0;
  bad[4].epochs = 4; // less than the warm-up
  bad[5].steps_per_epoch = 0;
  bad[6].decay = (ef_lr_decay)9;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(ef_schedule_init(&s, &bad[i]) == EF_ERR_INVALID, "bad schedule %zu accepted", i);
}

// ---- the moving average ------------------------------------------------------------------

static void test_ema_warmup_decay(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  ef_ema e;
  CHECK(ef_ema_init(&e, s, 0.9999) == EF_OK, "%s", ef_last_error());
  struct {
    int64_t n;
    double want;
  } at[] = {{0, 0.1}, {1, 2.0 / 11}, {10, 0.55}, {89990, 0.9999}, {1000000, 0.9999}};
  for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
    e.updates = at[i].n;
    CHECK(fabs(ef_ema_decay_now(&e) - at[i].want) < 1e-12, "n = %lld: decay %.10f, want %.10f", (long long)at[i].n,
          ef_ema_decay_now(&e), at[i].want);
  }
  e.updates = 80000; // (1 + n) / (10 + n) = 0.999888 < 0.9999: still warming up
  CHECK(fabs(ef_ema_decay_now(&e) - 80001.0 / 80010) < 1e-12, "n = 80000: decay %.10f", ef_ema_decay_now(&e));
  ef_ema_free(&e);
  CHECK(ef_ema_init(&e, s, 1.0) == EF_ERR_INVALID, "a decay of 1 accepted");
  ef_store_free(s);
  ef_backend_free(be);
}

// Two updates of weights and BN statistics by hand, then the swap in and back out.
static void test_ema_averages_weights_and_bn_state(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  ef_ema e;
  CHECK(ef_ema_init(&e, s, 0.9999) == EF_OK, "%s", ef_last_error());
  double want_p[NP], want_s[NS];
  for (int i = 0; i < NP; i++) want_p[i] = s->mem[EF_ARENA_PARAM][i];
  for (int i = 0; i < NS; i++) want_s[i] = s->mem[EF_ARENA_STATE][i];
  const double decays[2] = {0.1, 2.0 / 11};
  for (int u = 0; u < 2; u++) {
    test_fill_uniform(s->mem[EF_ARENA_PARAM], NP, 3, (uint32_t)u, -2, 2);
    test_fill_uniform(s->mem[EF_ARENA_STATE], NS, 4, (uint32_t)u, 0, 3);
    for (int i = 0; i < NP; i++) want_p[i] = decays[u] * want_p[i] + (1 - decays[u]) * s->mem[EF_ARENA_PARAM][i];
    for (int i = 0; i < NS; i++) want_s[i] = decays[u] * want_s[i] + (1 - decays[u]) * s->mem[EF_ARENA_STATE][i];
    ef_ema_update(&e, s);
    CHECK_REL(e.shadow[EF_ARENA_PARAM], want_p, NP, 1e-6, "update %d: weights' average", u);
    CHECK_REL(e.shadow[EF_ARENA_STATE], want_s, NS, 1e-6, "update %d: BN statistics' average", u);
  }
  CHECK(e.updates == 2, "%lld updates counted", (long long)e.updates);
  int mean = ef_store_find(s, "bn.running_mean"), w = ef_store_find(s, "bn.weight");
  CHECK(ef_ema_data(&e, s, mean) == e.shadow[EF_ARENA_STATE] &&
            ef_ema_data(&e, s, w) == e.shadow[EF_ARENA_PARAM] + N_DECAYED,
        "per-entry views of the shadow");
  float live_p[NP], live_s[NS], avg_p[NP], avg_s[NS];
  memcpy(live_p, s->mem[EF_ARENA_PARAM], sizeof live_p);
  memcpy(live_s, s->mem[EF_ARENA_STATE], sizeof live_s);
  memcpy(avg_p, e.shadow[EF_ARENA_PARAM], sizeof avg_p);
  memcpy(avg_s, e.shadow[EF_ARENA_STATE], sizeof avg_s);
  ef_ema_swap(&e, s);
  CHECK(!memcmp(s->mem[EF_ARENA_PARAM], avg_p, sizeof avg_p) && !memcmp(s->mem[EF_ARENA_STATE], avg_s, sizeof avg_s),
        "swapped in: the store does not hold the average");
  CHECK(e.swapped, "not marked swapped");
  ef_ema_swap(&e, s);
  CHECK(!memcmp(s->mem[EF_ARENA_PARAM], live_p, sizeof live_p) &&
            !memcmp(s->mem[EF_ARENA_STATE], live_s, sizeof live_s) &&
            !memcmp(e.shadow[EF_ARENA_PARAM], avg_p, sizeof avg_p) &&
            !memcmp(e.shadow[EF_ARENA_STATE], avg_s, sizeof avg_s),
        "swapped back: live values or average lost");
  ef_ema_free(&e);
  ef_store_free(s);
  ef_backend_free(be);
}

// ---- gradient clipping ---------------------------------------------------------------------

static void test_clip_by_global_norm(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = small_store(be, N_DECAYED);
  float g[NP] = {1, -2, 3, -4, 5, -6, 7, -8, 9};
  double want_clipped[NP];
  memcpy(s->mem[EF_ARENA_GRAD], g, sizeof g);
  double norm = ef_grad_global_norm(s), want = sqrt(285); // 1 + 4 + ... + 81
  CHECK(fabs(norm - want) < 1e-12, "norm %.15f, want sqrt(285) = %.15f", norm, want);
  ef_grad_clip(s, 20, norm);
  CHECK(!memcmp(s->mem[EF_ARENA_GRAD], g, sizeof g), "a norm under the limit was clipped");
  ef_grad_clip(s, 5, norm);
  for (int i = 0; i < NP; i++) want_clipped[i] = g[i] * 5 / sqrt(285);
  CHECK_CLOSE(s->mem[EF_ARENA_GRAD], want_clipped, NP, TEST_ABS, 0, 1e-6, "gradients clipped to norm 5");
  CHECK(fabs(ef_grad_global_norm(s) - 5) < 1e-5, "norm after clipping to 5: %.7f", ef_grad_global_norm(s));
  ef_store_free(s);

  // A million gradients: the norm in double, the same bits on one thread and two.
  int64_t big = 1000003;
  s = small_store(be, big);
  test_fill_uniform(s->mem[EF_ARENA_GRAD], (int64_t)s->numel[0], 5, 0, -1, 1);
  double sum = 0;
  for (size_t i = 0; i < s->numel[0]; i++) sum += (double)s->mem[EF_ARENA_GRAD][i] * s->mem[EF_ARENA_GRAD][i];
  omp_set_num_threads(1);
  double one = ef_grad_global_norm(s);
  omp_set_num_threads(2);
  double two = ef_grad_global_norm(s);
  CHECK(fabs(one - sqrt(sum)) < 1e-12 * sqrt(sum), "norm %.15f, want %.15f", one, sqrt(sum));
  CHECK(one == two, "norm %.17g on one thread, %.17g on two", one, two);
  omp_set_num_threads(1);
  ef_store_free(s);
  ef_backend_free(be);
}

// The device update's segments: the trainable entries that are not frozen, with their learning-
// rate scale and decay; every element of each in exactly one block of the grid, and the kernel's
// search (ef_update_segment_of) finding each block's segment.
static void test_update_segments(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *s = ef_store_new();
  const int64_t sizes[] = {1, 2048, 2049, 100, 4096 * 3 + 5, 7};
  for (int i = 0; i < 6; i++) {
    char name[32];
    snprintf(name, sizeof name, "e%d.weight", i);
    ef_store_add(s, name, i != 5, i % 2 == 0, 1, &sizes[i], (ef_init){0});
  }
  s->entries[3].frozen = true;
  s->entries[4].lr_scale = 0.25f;
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  ef_optim o;
  ef_optim_config cfg = ef_optim_defaults(EF_OPT_SGD);
  CHECK(ef_optim_init(&o, s, &cfg) == EF_OK, "%s", ef_last_error());
  ef_update_segment seg[6];
  int64_t blocks;
  int n = ef_update_segments(&o, s, seg, &blocks);
  CHECK(n == 4, "%d segments (want the 4 trainable, unfrozen entries)", n);
  const int want_entry[] = {0, 1, 2, 4};
  int64_t want_blocks = 0;
  for (int k = 0; k < n && k < 4; k++) {
    const ef_store_entry *e = &s->entries[want_entry[k]];
    CHECK(seg[k].offset == (int64_t)e->offset && seg[k].numel == (int64_t)e->numel && seg[k].lr_scale == e->lr_scale &&
              seg[k].weight_decay == (e->decay ? cfg.weight_decay : 0) && seg[k].first_block == want_blocks,
          "segment %d is not entry %s", k, e->name);
    want_blocks += (seg[k].numel + EF_UPDATE_CHUNK - 1) / EF_UPDATE_CHUNK;
  }
  CHECK(blocks == want_blocks, "%lld blocks, want %lld", (long long)blocks, (long long)want_blocks);
  int64_t covered[4] = {0};
  bool ok = true;
  for (int64_t b = 0; b < blocks; b++) {
    int k = ef_update_segment_of(seg, n, b);
    int64_t start = (b - seg[k].first_block) * EF_UPDATE_CHUNK;
    ok &= k >= 0 && k < n && start >= 0 && start < seg[k].numel && start == covered[k];
    covered[k] = start + EF_UPDATE_CHUNK < seg[k].numel ? start + EF_UPDATE_CHUNK : seg[k].numel;
  }
  for (int k = 0; k < n && k < 4; k++) ok &= covered[k] == seg[k].numel;
  CHECK(ok, "the blocks do not cover each segment's elements once, in order");
  ef_optim_free(&o);
  ef_store_free(s);
  ef_backend_free(be);
}

int main(void) {
  RUN(test_three_steps_by_hand);
  RUN(test_defaults_and_slots);
  RUN(test_bad_configs_refused);
  RUN(test_rmsprop_accumulator_starts_at_one);
  RUN(test_adamw_bias_correction);
  RUN(test_slots_restore_exactly);
  RUN(test_optim_threads_agree);
  RUN(test_schedule_official_b0);
  RUN(test_schedule_refuses_nonsense);
  RUN(test_ema_warmup_decay);
  RUN(test_ema_averages_weights_and_bn_state);
  RUN(test_clip_by_global_norm);
  RUN(test_update_segments);
  return test_exit_code();
}
