// Fine-tuning: freezing by module name (and only that module), a frozen step that leaves frozen
// weights and statistics bit for bit as they were, batch norms in eval mode computing the
// evaluation graph's function in training, the backbone's learning-rate multiplier, loading
// pretrained weights without their classifier, and selecting classes and samples of a dataset.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "data/dataset.h"
#include "models/weights.h"
#include "tests/harness.h"
#include "train/finetune.h"
#include "train/step.h"

typedef struct {
  ef_store *s;
  ef_model_graph ev, tr; // evaluation graph (registers the parameters), training graph
} model;

// B0 with 10 classes on (4,32,32,3): the evaluation graph, then `mark` (freezing) on the
// registered parameters, then the training graph, as the trainer builds them; no dropout or
// drop-path, so that training computes the evaluation function when the batch norms use running
// statistics.
static void model_build(model *m, const char *model_name, void (*mark)(ef_store *)) {
  ef_effnet_config cfg;
  ef_effnet_preset(model_name, &cfg);
  cfg.num_classes = 10, cfg.dropout = 0, cfg.drop_path = 0, cfg.resolution = 32;
  ef_model_desc *d = malloc(sizeof *d);
  ef_model_desc_effnet(d, &cfg);
  m->s = ef_store_new();
  ef_model_graph_new(&m->ev, m->s, d, &(ef_graph_opts){.batch = 4, .seed = 1});
  if (mark) mark(m->s);
  ef_model_graph_new(&m->tr, m->s, d, &(ef_graph_opts){.batch = 4, .training = true, .smoothing = 0.1f, .seed = 1});
  free(d);
}

static void model_free(model *m) {
  ef_model_graph_free(&m->ev), ef_model_graph_free(&m->tr);
  ef_store_free(m->s);
}

static void freeze_stem_and_two_stages(ef_store *s) {
  size_t params = 0;
  CHECK(ef_freeze(s, "stem,blocks.0-1", &params) == EF_OK, "%s", ef_last_error());
  CHECK(ef_bn_mode(s, "eval") == EF_OK, "%s", ef_last_error());
}

static void bn_eval(ef_store *s) { CHECK(ef_bn_mode(s, "eval") == EF_OK, "%s", ef_last_error()); }

static bool starts(const char *name, const char *prefix) { return !strncmp(name, prefix, strlen(prefix)); }

// Which entries each freeze item reaches, and the errors for items that reach nothing.
static void test_freeze_names(void) {
  model m;
  model_build(&m, "b7", NULL); // stage 5 has blocks 0 ... 12: "blocks.5.1" must not take 5.10
  size_t params = 0, want = 0;
  CHECK(ef_freeze(m.s, "stem,blocks.5.1,head", &params) == EF_OK, "%s", ef_last_error());
  int frozen = 0;
  for (int i = 0; i < m.s->n; i++) {
    const ef_store_entry *e = &m.s->entries[i];
    bool expect = starts(e->name, "conv_stem.") || starts(e->name, "bn1.") || starts(e->name, "blocks.5.1.") ||
                  starts(e->name, "conv_head.") || starts(e->name, "bn2.");
    CHECK(e->frozen == expect, "%s frozen %d", e->name, e->frozen);
    frozen += e->frozen;
    if (expect && e->trainable) want += e->numel;
  }
  printf("  b7: stem,blocks.5.1,head freezes %d entries, %zu parameters\n", frozen, params);
  CHECK(params == want && frozen > 10, "%zu frozen parameters, want %zu", params, want);
  CHECK(ef_freeze(m.s, "blocks.9", &params) != EF_OK && strstr(ef_last_error(), "'blocks.9' matches no parameter"),
        "%s", ef_last_error());
  CHECK(ef_freeze(m.s, "stem,bogus", &params) != EF_OK && strstr(ef_last_error(), "'bogus'"), "%s", ef_last_error());
  CHECK(ef_bn_mode(m.s, "running") != EF_OK, "--bn running accepted");
  size_t before = params;
  CHECK(ef_freeze(m.s, "backbone", &params) == EF_OK, "%s", ef_last_error());
  for (int i = 0; i < m.s->n; i++)
    CHECK(m.s->entries[i].frozen == !starts(m.s->entries[i].name, "classifier."), "%s", m.s->entries[i].name);
  CHECK(params - before == ef_store_count(m.s, true) - want - 10 * 2560 - 10, "backbone adds %zu", params - before);
  model_free(&m);
}

// One SGD step (momentum, weight decay) with stem and stages 0-1 frozen and the other batch norms
// in eval mode: frozen parameters and every running statistic stay bit for bit; the rest moves.
static void test_frozen_step(void) {
  model m;
  model_build(&m, "b0", freeze_stem_and_two_stages);
  ef_backend *be = ef_cpu_backend_new(2);
  CHECK(ef_store_bind(m.s, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(m.s, 5);
  // Running statistics away from (0, 1), as a pretrained model's are.
  test_fill_uniform(m.s->mem[EF_ARENA_STATE], (int64_t)m.s->numel[1], 9, 0, 0.2f, 1.5f);
  CHECK(ef_model_graph_plan(&m.tr, be, NULL) == EF_OK, "%s", ef_last_error());
  size_t np = m.s->numel[0], ns = m.s->numel[1];
  float *p0 = malloc(np * sizeof(float)), *s0 = malloc(ns * sizeof(float)),
        *xv = malloc(4 * 32 * 32 * 3 * sizeof(float));
  memcpy(p0, m.s->mem[EF_ARENA_PARAM], np * sizeof(float)), memcpy(s0, m.s->mem[EF_ARENA_STATE], ns * sizeof(float));
  test_fill_uniform(xv, 4 * 32 * 32 * 3, 3, 0, -1, 1);
  ef_step step;
  CHECK(ef_step_init(&step, &m.tr, &(ef_step_config){.optim = ef_optim_defaults(EF_OPT_SGD)}) == EF_OK, "%s",
        ef_last_error());
  for (int i = 0; i < 2; i++) {
    ef_step_result r;
    ef_step_run(&step, xv, (int32_t[]){1, 3, 5, 7}, NULL, 0.1, i, &r);
  }
  int moved = 0, kept = 0;
  for (int i = 0; i < m.s->n; i++) {
    const ef_store_entry *e = &m.s->entries[i];
    const float *now = m.s->mem[e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE] + e->offset;
    const float *was = (e->trainable ? p0 : s0) + e->offset;
    bool same = !memcmp(now, was, e->numel * sizeof(float));
    if (e->frozen || !e->trainable) {
      CHECK(same, "%s changed (frozen %d)", e->name, e->frozen);
      for (size_t k = 0; e->trainable && k < e->numel; k++)
        CHECK(m.s->mem[EF_ARENA_GRAD][e->offset + k] == 0, "%s has a gradient", e->name);
      kept++;
    } else {
      CHECK(!same, "%s did not move", e->name);
      moved++;
    }
  }
  printf("  b0, stem + stages 0-1 frozen, batch norms eval: %d entries kept, %d moved; %d training nodes\n", kept,
         moved, m.tr.plan->n);
  ef_step_free(&step);
  free(p0), free(s0), free(xv);
  model_free(&m);
  ef_backend_free(be);
}

// With every batch norm on its running statistics, no dropout and no drop-path, the training
// graph computes the evaluation graph's logits: up to rounding, for the evaluation graph folds each
// batch norm into its convolution (3e-5 relative through B0; dropout or batch statistics left on
// differ by far more).
static void test_bn_eval_is_eval_function(void) {
  model m;
  model_build(&m, "b0", bn_eval);
  ef_backend *be = ef_cpu_backend_new(2);
  CHECK(ef_model_graph_plan(&m.ev, be, NULL) == EF_OK && ef_model_graph_plan(&m.tr, be, NULL) == EF_OK, "%s",
        ef_last_error());
  ef_plan *pe = m.ev.plan, *pt = m.tr.plan;
  ef_store_initialize(m.s, 5);
  test_fill_uniform(m.s->mem[EF_ARENA_STATE], (int64_t)m.s->numel[1], 9, 0, 0.2f, 1.5f);
  float xv[4 * 32 * 32 * 3], le[40], lt[40];
  test_fill_uniform(xv, 4 * 32 * 32 * 3, 3, 0, -1, 1);
  ef_plan_set(pe, m.ev.images, xv), ef_plan_set(pt, m.tr.images, xv);
  ef_plan_set(pt, m.tr.labels, (int32_t[]){1, 3, 5, 7});
  ef_plan_run(pe, &(ef_run_ctx){0}), ef_plan_run(pt, &(ef_run_ctx){0});
  ef_plan_get(pe, m.ev.logits, le), ef_plan_get(pt, m.tr.logits, lt);
  double worst = CHECK_CLOSE(lt, le, 40, TEST_EACH, 1e-3, 2e-4, "training with running statistics against evaluation");
  printf("  b0, batch norms eval: training logits vs evaluation logits, max relative difference %.3g\n", worst);
  model_free(&m);
  ef_backend_free(be);
}

// The backbone's multiplier scales its SGD steps and leaves the classifier's.
static void test_backbone_lr(void) {
  ef_store *s = ef_store_new();
  int w = ef_store_add(s, "blocks.0.0.conv_dw.weight", true, false, 1, (int64_t[]){3}, (ef_init){EF_INIT_CONST, 1});
  int c = ef_store_add(s, "classifier.weight", true, false, 1, (int64_t[]){3}, (ef_init){EF_INIT_CONST, 1});
  ef_backbone_lr(s, 0.25f);
  CHECK(s->entries[w].lr_scale == 0.25f && s->entries[c].lr_scale == 1, "scales %g %g", s->entries[w].lr_scale,
        s->entries[c].lr_scale);
  ef_backend *be = ef_cpu_backend_new(1);
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(s, 1);
  for (int i = 0; i < 6; i++) s->mem[EF_ARENA_GRAD][i] = 2;
  ef_optim o;
  ef_optim_config oc = ef_optim_defaults(EF_OPT_SGD);
  oc.momentum = 0, oc.weight_decay = 0;
  CHECK(ef_optim_init(&o, s, &oc) == EF_OK, "%s", ef_last_error());
  ef_optim_step(&o, s, 0.1);
  float *p = s->mem[EF_ARENA_PARAM];
  CHECK(fabsf(p[s->entries[w].offset] - (1 - 0.05f)) < 1e-7f && fabsf(p[s->entries[c].offset] - (1 - 0.2f)) < 1e-7f,
        "backbone %g, classifier %g", p[s->entries[w].offset], p[s->entries[c].offset]);
  ef_optim_free(&o);
  ef_store_free(s);
  ef_backend_free(be);
}

// Weights of a 10-class model into a 5-class one: the backbone loads, the classifier keeps its
// own initialization; another architecture's file is refused, naming what does not fit.
static void test_pretrained_load(void) {
  char dir[] = "/tmp/effnet-finetune-XXXXXX", path[64], other[64];
  test_mkdtemp(dir);
  snprintf(path, sizeof path, "%s/b0.h5", dir), snprintf(other, sizeof other, "%s/b1.h5", dir);
  ef_backend *be = ef_cpu_backend_new(1);
  ef_store *stores[3];
  const char *names[3] = {"b0", "b0", "b1"};
  int classes[3] = {10, 5, 10};
  for (int k = 0; k < 3; k++) {
    ef_effnet_config cfg;
    ef_effnet_preset(names[k], &cfg);
    cfg.num_classes = classes[k];
    stores[k] = ef_store_new();
    ef_model_desc *d = malloc(sizeof *d);
    ef_model_desc_effnet(d, &cfg);
    ef_model_graph g;
    ef_model_graph_new(&g, stores[k], d, &(ef_graph_opts){.batch = 1, .image_size = 32, .seed = 1});
    ef_model_graph_free(&g);
    free(d);
    CHECK(ef_store_bind(stores[k], be) == EF_OK, "%s", ef_last_error());
    ef_store_initialize(stores[k], (uint64_t)k + 1);
    if (k != 1) CHECK(ef_weights_save(k ? other : path, stores[k], &cfg) == EF_OK, "%s", ef_last_error());
  }
  ef_weights_info pre;
  CHECK(ef_weights_info_read(path, &pre) == EF_OK, "%s", ef_last_error());
  CHECK(pre.desc.cfg.num_classes == 10 && !pre.has_ema && !pre.recorded_norm, "classes %d ema %d norm %d",
        pre.desc.cfg.num_classes, pre.has_ema, pre.recorded_norm);
  ef_store *dst = stores[1];
  float *cls = malloc(sizeof(float) * 5 * 1280);
  ef_store_read(dst, ef_store_find(dst, "classifier.weight"), EF_ARENA_PARAM, cls);
  CHECK(ef_pretrained_load(path, &pre, dst) == EF_OK, "%s", ef_last_error());
  for (int i = 0; i < dst->n; i++) {
    const ef_store_entry *e = &dst->entries[i];
    ef_arena a = e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE;
    const float *got = ef_store_data(dst, i, a);
    if (starts(e->name, "classifier.weight")) {
      CHECK(!memcmp(got, cls, sizeof(float) * 5 * 1280), "the classifier was overwritten");
      continue;
    }
    if (starts(e->name, "classifier.")) continue;
    const float *want = ef_store_data(stores[0], ef_store_find(stores[0], e->name), a);
    CHECK(!memcmp(got, want, e->numel * sizeof(float)), "%s not loaded", e->name);
  }
  CHECK(ef_pretrained_load(other, &pre, dst) != EF_OK && strstr(ef_last_error(), "does not fit this model"), "%s",
        ef_last_error());
  CHECK(ef_weights_info_read("/nonexistent.h5", &pre) != EF_OK, "a missing file read");
  free(cls);
  for (int k = 0; k < 3; k++) ef_store_free(stores[k]);
  ef_backend_free(be);
  test_rmtree(dir);
}

// Classes relabelled in the order listed, the first N of each, pixels moved with their labels.
static void test_dataset_select(void) {
  ef_dataset d = {.kind = EF_DATASET_IDX, .source = strdup("memory"), .n = 8, .num_classes = 4, .h = 1, .w = 1, .c = 1};
  d.class_names = malloc(4 * sizeof(char *));
  for (int c = 0; c < 4; c++) d.class_names[c] = strdup((const char *[]){"a", "b", "c", "d"}[c]);
  int32_t labels[8] = {0, 2, 1, 2, 0, 2, 3, 0};
  d.labels = malloc(sizeof labels), d.pixels = malloc(8);
  memcpy(d.labels, labels, sizeof labels);
  for (int i = 0; i < 8; i++) d.pixels[i] = (uint8_t)(10 * i);
  CHECK(ef_dataset_select(&d, "4", 0) != EF_OK && strstr(ef_last_error(), "classes 0 to 3"), "%s", ef_last_error());
  CHECK(ef_dataset_select(&d, "0,0", 0) != EF_OK && strstr(ef_last_error(), "twice"), "%s", ef_last_error());
  CHECK(ef_dataset_select(&d, "3-1", 0) != EF_OK, "a reversed range accepted");
  CHECK(d.n == 8 && d.num_classes == 4, "a failed selection changed the dataset");
  CHECK(ef_dataset_select(&d, "2,0", 2) == EF_OK, "%s", ef_last_error());
  // Kept: sample 0 (class 0 -> 1), 1 (2 -> 0), 3 (2 -> 0), 4 (0 -> 1); not 5 (third of class 2) or 7.
  int32_t want_labels[4] = {1, 0, 0, 1};
  uint8_t want_pixels[4] = {0, 10, 30, 40};
  CHECK(d.n == 4 && d.num_classes == 2 && !strcmp(d.class_names[0], "c") && !strcmp(d.class_names[1], "a"),
        "n %lld, %d classes", (long long)d.n, d.num_classes);
  CHECK(!memcmp(d.labels, want_labels, sizeof want_labels) && !memcmp(d.pixels, want_pixels, 4), "wrong samples kept");
  CHECK(ef_dataset_select(&d, "1", 5) == EF_OK && d.n == 2 && d.labels[0] == 0 && d.pixels[1] == 40, "n %lld",
        (long long)d.n);
  ef_dataset_free(&d);
}

int main(void) {
  RUN(test_freeze_names);
  RUN(test_frozen_step);
  RUN(test_bn_eval_is_eval_function);
  RUN(test_backbone_lr);
  RUN(test_pretrained_load);
  RUN(test_dataset_select);
  return test_exit_code();
}
