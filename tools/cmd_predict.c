// `effnet predict WEIGHTS IMAGE...`: the top-k classes, by name, and their probabilities for JPEG
// or PNG files, through the model's evaluation preprocessing; WEIGHTS is any effnet weights file
// (an import or a training checkpoint).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/model.h"

typedef struct {
  long top_k, image_size;
  bool ema;
  double crop_pct;
  const char *interpolation;
  ef_device_spec dev;
} predict_opts;

#define ROW(kind, name, field) name, kind, offsetof(predict_opts, field)
static const ef_flag predict_flags[] = {
    {ROW(EF_FLAG_LONG, "--top-k", top_k), 1, 1 << 20, NULL, "N", "classes per image", false},
    {ROW(EF_FLAG_BOOL, "--ema", ema), 0, 0, NULL, NULL, "a checkpoint's EMA weights (when it has them)", false},
    {ROW(EF_FLAG_LONG, "--image-size", image_size), 0, 4096, NULL, "N", "input side (0: the model's)", false},
    {ROW(EF_FLAG_DOUBLE, "--crop-pct", crop_pct), 0, 1, NULL, "F",
     "centre crop over the resized shorter side (0: the model's)", false},
    {ROW(EF_FLAG_STR, "--interpolation", interpolation), 0, 0, "bilinear|bicubic", "I",
     "resampling  [the model's]", false},
};
#undef ROW

int ef_cmd_predict(int argc, char **argv) {
  enum { MAX_IMAGES = 4096, MAX_NAMES = 1 << 16 };
  predict_opts o = {.top_k = 5, .ema = true, .dev = EF_DEVICE_SPEC_DEFAULT};
  ef_flags f;
  ef_flags_init(&f, "predict",
                "usage: effnet predict WEIGHTS IMAGE... [flags]\n\nPrints the most likely classes of each image (JPEG "
                "or PNG) with their probabilities. WEIGHTS:\nany effnet weights file, from `effnet import` or a "
                "training checkpoint.\n\n",
                NULL);
  ef_flags_add(&f, predict_flags, (int)(sizeof predict_flags / sizeof predict_flags[0]), &o);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &o.dev);
  const char *args[1 + MAX_IMAGES];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, args, 1 + MAX_IMAGES);
  if (rc) return rc;
  if (!args[0] || !args[1]) {
    fprintf(stderr, "effnet predict: give a checkpoint and at least one image (effnet predict --help)\n");
    return 2;
  }
  ef_device dev;
  if ((rc = ef_device_args_open(&dev, "predict", &o.dev)) != 0) return rc;
  ef_model m;
  ef_graph_opts go = {.batch = 1, .activations = dev.activations, .image_size = (int)o.image_size};
  if (ef_model_open(&m, args[0], o.ema, &go, dev.be) != EF_OK) {
    rc = ef_report("predict", 1);
    ef_device_close(&dev);
    return rc;
  }
  const ef_model_desc *d = &m.info.desc;
  ef_transform tf = d->eval;
  if (o.image_size) tf.size = (int)o.image_size;
  if (o.crop_pct > 0) tf.crop_pct = o.crop_pct;
  if (o.interpolation) tf.interp = strcmp(o.interpolation, "bilinear") ? EF_INTERP_BICUBIC : EF_INTERP_BILINEAR;
  char *copy = ef_xmalloc(sizeof d->class_names);
  const char **names = ef_xmalloc(sizeof *names * MAX_NAMES);
  int n_names = ef_model_desc_names(d, copy, sizeof d->class_names, names, MAX_NAMES);
  int classes = d->num_classes, k = (int)(o.top_k < classes ? o.top_k : classes);
  float lut[768], *image = ef_xmalloc(sizeof(float) * (size_t)tf.size * tf.size * tf.channels);
  float *logits = ef_xmalloc(sizeof(float) * (size_t)classes);
  ef_transform_lut(&tf, lut);
  ef_transform_scratch scratch = {0};
  uint8_t *file = NULL;
  size_t cap = 0;
  for (int i = 1; i <= MAX_IMAGES && args[i]; i++) {
    size_t len;
    ef_sample_src src = {.name = args[i]};
    ef_status st = ef_read_file(args[i], &file, &cap, &len);
    src.bytes = file, src.len = len;
    if (st == EF_OK) st = ef_transform_sample(&tf, &src, &(ef_rng_seq){0}, &scratch);
    if (st != EF_OK) {
      rc = ef_report("predict", 1);
      continue;
    }
    ef_transform_normalize(lut, &scratch.out, image);
    ef_plan_set(m.graph.plan, m.graph.images, image);
    ef_plan_run(m.graph.plan, &(ef_run_ctx){0});
    ef_plan_get(m.graph.plan, m.graph.logits, logits);
    double mx = logits[0], sum = 0;
    for (int c = 1; c < classes; c++) mx = fmax(mx, logits[c]);
    for (int c = 0; c < classes; c++) sum += exp(logits[c] - mx);
    printf("%s:\n", args[i]);
    for (int r = 0; r < k; r++) { // the class of rank r (none when the logits hold a NaN)
      int c = 0;
      while (c < classes && ef_label_rank(logits, classes, c) != r) c++;
      if (c == classes) {
        fprintf(stderr, "effnet predict: %s: the model's outputs are not numbers (a broken checkpoint?)\n", args[i]);
        rc = 1;
        break;
      }
      if (c < n_names) printf("  %6.2f%%  %s\n", 100 * exp(logits[c] - mx) / sum, names[c]);
      else printf("  %6.2f%%  class %d\n", 100 * exp(logits[c] - mx) / sum, c);
    }
  }
  ef_transform_scratch_free(&scratch);
  free(file), free(image), free(logits), free(copy), free(names);
  ef_model_close(&m);
  ef_device_close(&dev);
  return rc;
}
