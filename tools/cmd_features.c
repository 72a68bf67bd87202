// `effnet features WEIGHTS --out FILE.h5`: the pooled features of a dataset's images (the head's
// output before dropout and the classifier) through a pretrained or fine-tuned EfficientNet,
// with their labels, for linear probes: /<split>/features (N, C) f32 and /<split>/labels (N) i32.
#include <stdlib.h>
#include <string.h>

#include "models/weights.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/model.h"

typedef struct {
  const char *out, *data, *split, *classes;
  long limit, batch, loader_threads;
  bool strict_images, force;
  ef_eval_spec eval;
  ef_device_spec dev;
  ef_transform tf;
} features_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(features_opts, kind, field)
static const ef_flag features_flags[] = {
    {ROW(EF_FLAG_STR, "--out", out), 0, 0, NULL, "FILE", "the HDF5 file to write (atomically)", false},
    {ROW(EF_FLAG_STR, "--data", data), 0, 0, NULL, "PATH", "dataset as for effnet train", false},
    {ROW(EF_FLAG_STR, "--split", split), 0, 0, "train|test|both", "S", "the splits to write", false},
    {ROW(EF_FLAG_STR, "--select-classes", classes), 0, 0, NULL, "L",
     "these classes only, relabelled 0, 1, ... (5-9, 0,2,4-6)", false},
    {ROW(EF_FLAG_LONG, "--limit", limit), 0, 1e12, NULL, "N", "the first N images of each split (0: all)", false},
    {ROW(EF_FLAG_LONG, "--batch", batch), 1, 1 << 16, NULL, "N", "images per step", false},
    {ROW(EF_FLAG_LONG, "--loader-threads", loader_threads), 0, 256, NULL, "N", "threads decoding ahead", false},
    EF_STRICT_IMAGES_FLAG(features_opts, strict_images, false),
    EF_FORCE_FLAG(features_opts, force),
};
#undef ROW

// The features and labels of one split, through the plan: *x (n, C) and *y (n), malloc'ed.
static ef_status split_features(const features_opts *o, bool train, ef_plan *p, const ef_tensor *images,
                                const ef_tensor *feats, float **x, int32_t **y, int64_t *n) {
  ef_dataset d;
  *x = NULL, *y = NULL, *n = 0;
  EF_TRY(ef_dataset_open(o->data, train, &d));
  ef_status st = o->classes ? ef_dataset_select(&d, o->classes, 0) : EF_OK;
  int64_t all = d.n; // what ef_dataset_free must see
  if (o->limit && o->limit < d.n) d.n = o->limit;
  ef_transform tf = o->tf;
  if (d.pixels && !(o->eval.crop_pct > 0)) tf.crop_pct = 1; // small in-memory images: no centre crop, as training used
  tf.strict = o->strict_images;
  ef_loader *l = NULL;
  ef_loader_config lc = {.data = &d,
                         .transform = tf,
                         .batch = (int)o->batch,
                         .as_float = true,
                         .pass_name = train ? "the training split" : "the test split",
                         .threads = (int)o->loader_threads};
  if (st == EF_OK) st = ef_loader_new(&l, &lc);
  int64_t c = feats->shape[1];
  size_t sample = (size_t)(images->shape[1] * images->shape[2] * images->shape[3]);
  float *in = ef_xcalloc(sample * (size_t)o->batch, sizeof(float)),
        *out = ef_xmalloc(sizeof(float) * (size_t)(o->batch * c));
  *x = ef_xmalloc(sizeof(float) * (size_t)(d.n * c));
  *y = ef_xmalloc(sizeof(int32_t) * (size_t)d.n);
  const ef_batch *b;
  while (st == EF_OK && (st = ef_loader_next(l, &b)) == EF_OK && b) {
    memcpy(in, b->images, sizeof(float) * sample * (size_t)b->n); // a short last batch is padded
    ef_plan_set(p, images, in);
    ef_plan_run(p, &(ef_run_ctx){.weights_unchanged = true}); // loaded once, before the first batch
    ef_plan_get(p, feats, out);
    for (int i = 0; i < b->real; i++) // corrupt images' stand-ins are left out
      if (!b->corrupt[i]) memcpy(*x + *n * c, out + i * c, sizeof(float) * (size_t)c), (*y)[(*n)++] = b->labels[i];
  }
  free(in), free(out);
  ef_loader_free(l);
  d.n = all;
  ef_dataset_free(&d);
  return st;
}

int ef_cmd_features(int argc, char **argv) {
  features_opts o = {.data = EF_FASHION_MNIST_DIR,
                     .split = "both",
                     .batch = 100,
                     .loader_threads = 1,
                     .eval = EF_EVAL_SPEC_DEFAULT,
                     .dev = EF_DEVICE_SPEC_DEFAULT};
  ef_flags f;
  ef_flags_init(&f, "features",
                "usage: effnet features WEIGHTS --out FILE.h5 [flags]\n\nWrites the pooled features (the input of the "
                "classifier) of a dataset's images through a\nmodel: any effnet weights file (effnet import) or a "
                "checkpoint (its EMA when it has one). HDF5:\n/<split>/features (N, C) and /<split>/labels (N), for "
                "linear probes.\n\n",
                NULL);
  ef_flags_add(&f, features_flags, (int)(sizeof features_flags / sizeof features_flags[0]), &o);
  ef_flags_add(&f, ef_eval_flags, EF_EVAL_FLAGS, &o.eval);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &o.dev);
  const char *path;
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, &path, 1);
  if (rc) return rc;
  bool splits[2] = {strcmp(o.split, "train") != 0, strcmp(o.split, "test") != 0};
  if (!path || !o.out) {
    fprintf(stderr, "effnet features: needs WEIGHTS, --out FILE.h5 and --split train|test|both (see --help)\n");
    return 2;
  }
  const char *inputs[2] = {path, o.data};
  if ((rc = ef_output_allowed("features", o.out, inputs, o.data ? 2 : 1, EF_OUT_FEATURES, o.force))) return rc;
  ef_device dev;
  if ((rc = ef_device_args_open(&dev, "features", &o.dev)) != 0) return rc;
  // The model for a batch: the features kept beside the logits.
  ef_model m;
  ef_graph_opts go = {
      .batch = o.batch, .activations = dev.activations, .image_size = (int)o.eval.image_size, .features = true};
  ef_status st = ef_model_open(&m, path, o.eval.ema, &go, dev.be);
  const ef_model_desc *d = &m.info.desc;
  if (st == EF_OK) st = ef_eval_transform(d, &o.eval, &o.tf);
  ef_plan *p = m.graph.plan;
  ef_tensor *images = m.graph.images, *feats = m.graph.features;
  static const char *const names[2] = {"test", "train"};
  float *x[2] = {NULL, NULL};
  int32_t *y[2] = {NULL, NULL};
  int64_t n[2] = {0, 0}, c = st == EF_OK ? feats->shape[1] : 0;
  char model[16];
  snprintf(model, sizeof model, "%s", strcmp(d->arch, "tiny") ? d->cfg.name : "tiny");
  double t0 = ef_seconds();
  for (int k = 0; k < 2 && st == EF_OK; k++)
    if (splits[k]) st = split_features(&o, k == 1, p, images, feats, &x[k], &y[k], &n[k]);
  if (st == EF_OK) {
    char feat_name[2][32], label_name[2][32], mean[64], std[64];
    ef_h5_array arrays[4];
    int na = 0;
    for (int k = 0; k < 2; k++) {
      if (!splits[k]) continue;
      snprintf(feat_name[k], sizeof feat_name[k], "%s/features", names[k]);
      snprintf(label_name[k], sizeof label_name[k], "%s/labels", names[k]);
      arrays[na++] = (ef_h5_array){feat_name[k], false, 2, {n[k], c}, x[k]};
      arrays[na++] = (ef_h5_array){label_name[k], true, 1, {n[k], 0}, y[k]};
    }
    snprintf(mean, sizeof mean, "%.9g,%.9g,%.9g", o.tf.mean[0], o.tf.mean[1], o.tf.mean[2]);
    snprintf(std, sizeof std, "%.9g,%.9g,%.9g", o.tf.std[0], o.tf.std[1], o.tf.std[2]);
    ef_attr attrs[] = {{.name = "model", .kind = EF_ATTR_STRING, .s = model},
                       {.name = "weights", .kind = EF_ATTR_STRING, .s = (char *)path},
                       {.name = "data", .kind = EF_ATTR_STRING, .s = (char *)o.data},
                       {.name = "image_size", .kind = EF_ATTR_INT, .i = o.tf.size},
                       {.name = "mean", .kind = EF_ATTR_STRING, .s = mean},
                       {.name = "std", .kind = EF_ATTR_STRING, .s = std}};
    st = ef_h5_save_arrays(o.out, arrays, na, attrs, (int)(sizeof attrs / sizeof attrs[0]));
  }
  if (st == EF_OK) {
    printf("effnet features: %s from %s%s at %dx%d: ", model, path, m.used_ema ? " (EMA weights)" : "", o.tf.size,
           o.tf.size);
    for (int k = 0; k < 2; k++)
      if (splits[k]) printf("%s %lld x %lld, ", names[k], (long long)n[k], (long long)c);
    printf("in %s (%.1f s)\n", o.out, ef_seconds() - t0);
    if (!m.info.recorded_norm) printf("  note: %s records no normalization; ImageNet's mean and std were used\n", path);
  } else {
    rc = ef_report("features", 1);
  }
  for (int k = 0; k < 2; k++) free(x[k]), free(y[k]);
  ef_model_close(&m);
  ef_device_close(&dev);
  return rc;
}
