// The training step's update on the GPU (train/update.c, cuda/update.cu) against the host loops
// of train/optim.c and train/ema.c: SGD with Nesterov momentum, TF RMSProp and AdamW, each with
// weight decay on some entries, a frozen entry, a learning-rate scale, clipping, f16's unscale
// factor and the EMA, over four steps (parameters, slots and shadow within 1e-6); a NaN gradient
// changes nothing and says so; the EMA's swap. Exits 77 without a GPU.
#include <math.h>
#include <stdlib.h>

#include "tests/gpu/gpu_harness.h"
#include "tests/harness.h"
#include "train/ema.h"
#include "train/optim.h"
#include "train/update.h"

#define STEPS 4
#define LOSS_SCALE 2.0f // gradients as an f16 run has them; the update divides by it

static ef_store *make_store(ef_backend *be) {
  ef_store *s = ef_store_new();
  ef_store_add(s, "conv.weight", true, true, 4, (int64_t[]){24, 3, 3, 5}, (ef_init){EF_INIT_NORMAL, 0.5f});
  ef_store_add(s, "bn.weight", true, false, 1, (int64_t[]){64}, (ef_init){EF_INIT_NORMAL, 1});
  int frozen = ef_store_add(s, "frozen.weight", true, true, 1, (int64_t[]){100}, (ef_init){EF_INIT_NORMAL, 1});
  int head = ef_store_add(s, "head.weight", true, true, 2, (int64_t[]){10, 4100}, (ef_init){EF_INIT_UNIFORM, 0.1f});
  ef_store_add(s, "bn.running_mean", false, false, 1, (int64_t[]){64}, (ef_init){EF_INIT_NORMAL, 1});
  s->entries[frozen].frozen = true;
  s->entries[head].lr_scale = 0.1f;
  if (ef_store_bind(s, be) != EF_OK) {
    fprintf(stderr, "%s\n", ef_last_error());
    exit(1);
  }
  ef_store_initialize(s, 3);
  return s;
}

static float *download(ef_backend *be, const float *p, size_t n) {
  float *h = malloc(sizeof(float) * (n ? n : 1));
  be->download(be, h, p, sizeof(float) * n);
  return h;
}

static void compare(const char *what, const char *kind, ef_backend *gpu, const float *g, const float *c, size_t n) {
  float *h = download(gpu, g, n);
  CHECK_REL(h, c, (int64_t)n, 1e-6, "%s, %s", kind, what);
  free(h);
}

static void check_kind(ef_optim_kind kind, ef_backend *cpu, ef_backend *gpu) {
  const char *name = kind == EF_OPT_SGD ? "sgd" : kind == EF_OPT_RMSPROP ? "rmsprop" : "adamw";
  ef_store *sc = make_store(cpu), *sg = make_store(gpu);
  ef_optim_config cfg = ef_optim_defaults(kind);
  cfg.nesterov = kind == EF_OPT_SGD;
  ef_optim oc, og;
  ef_ema ec, eg;
  ef_device_update upd;
  CHECK(ef_optim_init(&oc, sc, &cfg) == EF_OK && ef_optim_init(&og, sg, &cfg) == EF_OK, "%s", ef_last_error());
  CHECK(ef_ema_init(&ec, sc, 0.99) == EF_OK && ef_ema_init(&eg, sg, 0.99) == EF_OK, "%s", ef_last_error());
  CHECK(ef_device_update_init(&upd, &og, sg) == EF_OK, "%s", ef_last_error());
  size_t np = sc->numel[0], ns = sc->numel[1];
  float *grad = malloc(sizeof(float) * np), *scaled = malloc(sizeof(float) * np), *state = malloc(sizeof(float) * ns);
  int frozen = ef_store_find(sc, "frozen.weight");
  float *frozen_before = download(gpu, ef_store_data(sg, frozen, EF_ARENA_PARAM), 100);
  for (int step = 0; step < STEPS; step++) {
    test_fill_uniform(grad, (int64_t)np, 11, (uint32_t)step, -1, 1);
    test_fill_uniform(state, (int64_t)ns, 12, (uint32_t)step, -2, 2);
    for (size_t i = 0; i < np; i++) scaled[i] = grad[i] * LOSS_SCALE; // exact: a power of two
    cpu->upload(cpu, sc->mem[EF_ARENA_GRAD], grad, sizeof(float) * np);
    gpu->upload(gpu, sg->mem[EF_ARENA_GRAD], scaled, sizeof(float) * np);
    cpu->upload(cpu, sc->mem[EF_ARENA_STATE], state, sizeof(float) * ns);
    gpu->upload(gpu, sg->mem[EF_ARENA_STATE], state, sizeof(float) * ns);
    double lr = 0.05 * (step + 1), norm_c = ef_grad_global_norm(sc), clip = 0.6 * norm_c, norm_g;
    ef_grad_clip(sc, clip, norm_c);
    ef_optim_step(&oc, sc, lr);
    ef_ema_update(&ec, sc);
    ef_device_update_values(&upd, &og, &eg, lr, clip, 1.0 / LOSS_SCALE);
    ef_device_update_queue(&upd, sg, &eg);
    gpu->synchronize(gpu);
    CHECK(ef_device_update_finish(&upd, &og, &eg, &norm_g), "%s step %d: skipped with norm %g", name, step, norm_g);
    CHECK(fabs(norm_g - norm_c) <= 1e-9 * norm_c, "%s step %d: norm %.12g on the GPU, %.12g on the CPU", name, step,
          norm_g, norm_c);
  }
  CHECK(og.step == oc.step && eg.updates == ec.updates, "%s: counters %lld/%lld and %lld/%lld", name,
        (long long)og.step, (long long)oc.step, (long long)eg.updates, (long long)ec.updates);
  compare("parameters", name, gpu, sg->mem[EF_ARENA_PARAM], sc->mem[EF_ARENA_PARAM], np);
  for (int k = 0; k < ef_optim_slots(&oc); k++)
    compare(ef_optim_slot_name(&oc, k), name, gpu, og.slots[k], oc.slots[k], np);
  compare("EMA of the parameters", name, gpu, eg.shadow[EF_ARENA_PARAM], ec.shadow[EF_ARENA_PARAM], np);
  compare("EMA of the state", name, gpu, eg.shadow[EF_ARENA_STATE], ec.shadow[EF_ARENA_STATE], ns);
  float *frozen_after = download(gpu, ef_store_data(sg, frozen, EF_ARENA_PARAM), 100);
  CHECK(!memcmp(frozen_before, frozen_after, sizeof(float) * 100), "%s: the frozen entry changed", name);

  // A NaN gradient: the step is skipped on the device, nothing moves.
  float *params = download(gpu, sg->mem[EF_ARENA_PARAM], np), *shadow = download(gpu, eg.shadow[EF_ARENA_PARAM], np);
  scaled[7] = NAN;
  gpu->upload(gpu, sg->mem[EF_ARENA_GRAD], scaled, sizeof(float) * np);
  ef_device_update_values(&upd, &og, &eg, 0.1, 0, 1.0 / LOSS_SCALE);
  ef_device_update_queue(&upd, sg, &eg);
  gpu->synchronize(gpu);
  double norm;
  int64_t before = og.step;
  CHECK(!ef_device_update_finish(&upd, &og, &eg, &norm) && isnan(norm) && og.step == before,
        "%s: a NaN gradient applied (%g)", name, norm);
  float *params2 = download(gpu, sg->mem[EF_ARENA_PARAM], np), *shadow2 = download(gpu, eg.shadow[EF_ARENA_PARAM], np);
  CHECK(!memcmp(params, params2, sizeof(float) * np) && !memcmp(shadow, shadow2, sizeof(float) * np),
        "%s: a skipped step changed the weights or their average", name);

  // The swap puts the shadow in the store and back.
  ef_ema_swap(&eg, sg);
  float *swapped = download(gpu, sg->mem[EF_ARENA_PARAM], np);
  ef_ema_swap(&eg, sg);
  float *back = download(gpu, sg->mem[EF_ARENA_PARAM], np);
  CHECK(!memcmp(swapped, shadow2, sizeof(float) * np) && !memcmp(back, params2, sizeof(float) * np),
        "%s: the EMA's swap", name);

  free(grad), free(scaled), free(state), free(frozen_before), free(frozen_after);
  free(params), free(shadow), free(params2), free(shadow2), free(swapped), free(back);
  ef_device_update_free(&upd);
  ef_ema_free(&ec), ef_ema_free(&eg);
  ef_optim_free(&oc), ef_optim_free(&og);
  ef_store_free(sc), ef_store_free(sg);
}

int main(void) {
  ef_backend *cpu, *gpu;
  test_gpu_backends(1, &cpu, &gpu);
  const ef_optim_kind kinds[] = {EF_OPT_SGD, EF_OPT_RMSPROP, EF_OPT_ADAMW};
  for (int k = 0; k < 3; k++) {
    int before = test_failures;
    check_kind(kinds[k], cpu, gpu);
    printf("%-48s %s\n",
           kinds[k] == EF_OPT_SGD       ? "sgd (nesterov)"
           : kinds[k] == EF_OPT_RMSPROP ? "rmsprop"
                                        : "adamw",
           test_failures == before ? "ok" : "FAILED");
  }
  ef_backend_free(gpu);
  ef_backend_free(cpu);
  return test_exit_code();
}
