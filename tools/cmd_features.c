// `effnet features WEIGHTS --out FILE.h5`: the pooled features of a dataset's images (the head's
// output before dropout and the classifier) through a pretrained or fine-tuned EfficientNet,
// with their labels, for linear probes: /<split>/features (N, C) f32 and /<split>/labels (N) i32.
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "data/loader.h"
#include "models/weights.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "train/finetune.h"

static void features_usage(FILE *f) {
  fprintf(f,
          "usage: effnet features WEIGHTS --out FILE.h5 [flags]\n"
          "\n"
          "Writes the pooled features (the input of the classifier) of a dataset's images through a\n"
          "model: a weights file (effnet import) or a checkpoint (its EMA when it has one). HDF5:\n"
          "/<split>/features (N, C) and /<split>/labels (N), for linear probes.\n"
          "\n"
          "  --out FILE            the HDF5 file to write (atomically)\n"
          "  --data PATH           dataset as for effnet train  [" EF_FASHION_MNIST_DIR "]\n"
          "  --split S             train, test or both  [both]\n"
          "  --select-classes L    these classes only, relabelled 0, 1, ... (5-9, 0,2,4-6)\n"
          "  --limit N             the first N images of each split (0: all)  [0]\n"
          "  --image-size N        input side (0: the model's resolution)  [0]\n"
          "  --batch N             images per step  [100]\n"
          "  --threads N           CPU threads (0: one per core)  [0]\n"
          "  --loader-threads N    [1]\n");
}

typedef struct {
  const char *data, *classes;
  long limit, batch, loader_threads;
  ef_transform tf;
} features_opts;

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
  if (d.pixels) tf.crop_pct = 1; // small in-memory images: no centre crop, as training used
  ef_loader *l = NULL;
  ef_loader_config lc = {.data = &d, .transform = tf, .batch = (int)o->batch, .as_float = true, .strict = true,
                         .threads = (int)o->loader_threads};
  if (st == EF_OK) st = ef_loader_new(&l, &lc);
  int64_t c = feats->shape[1];
  size_t sample = (size_t)(images->shape[1] * images->shape[2] * images->shape[3]);
  float *in = ef_xcalloc(sample * (size_t)o->batch, sizeof(float)), *out = ef_xmalloc(sizeof(float) * (size_t)(o->batch * c));
  *x = ef_xmalloc(sizeof(float) * (size_t)(d.n * c));
  *y = ef_xmalloc(sizeof(int32_t) * (size_t)d.n);
  const ef_batch *b;
  while (st == EF_OK && (st = ef_loader_next(l, &b)) == EF_OK && b) {
    memcpy(in, b->images, sizeof(float) * sample * (size_t)b->n); // a short last batch is padded
    ef_plan_set(p, images, in);
    ef_plan_run(p, &(ef_run_ctx){0});
    ef_plan_get(p, feats, out);
    memcpy(*x + *n * c, out, sizeof(float) * (size_t)(b->real * c));
    memcpy(*y + *n, b->labels, sizeof(int32_t) * (size_t)b->real);
    *n += b->real;
  }
  free(in), free(out);
  ef_loader_free(l);
  d.n = all;
  ef_dataset_free(&d);
  return st;
}

int ef_cmd_features(int argc, char **argv) {
  const char *path = NULL, *out = NULL, *split = "both";
  features_opts o = {.data = EF_FASHION_MNIST_DIR, .batch = 100, .loader_threads = 1};
  long size = 0, threads = 0;
  const ef_flag flags[] = {
      {"--out", EF_FLAG_STR, &out},         {"--data", EF_FLAG_STR, &o.data},
      {"--split", EF_FLAG_STR, &split},     {"--select-classes", EF_FLAG_STR, &o.classes},
      {"--limit", EF_FLAG_LONG, &o.limit, 0, 1e12}, {"--image-size", EF_FLAG_LONG, &size, 0, 4096},
      {"--batch", EF_FLAG_LONG, &o.batch, 1, 1 << 16}, {"--threads", EF_FLAG_LONG, &threads, 0, 4096},
      {"--loader-threads", EF_FLAG_LONG, &o.loader_threads, 0, 256},
  };
  int rc = ef_flags_parse("features", argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), &path, 1, features_usage);
  if (rc) return rc;
  bool splits[2] = {!strcmp(split, "test") || !strcmp(split, "both"), !strcmp(split, "train") || !strcmp(split, "both")};
  if (!path || !out || !(splits[0] || splits[1])) {
    fprintf(stderr, "effnet features: needs WEIGHTS, --out FILE.h5 and --split train|test|both (see --help)\n");
    return 2;
  }
  ef_pretrained pre;
  if (ef_pretrained_read(path, &pre) != EF_OK) {
    fprintf(stderr, "effnet features: %s\n", ef_last_error());
    return 1;
  }
  ef_effnet_config cfg = pre.cfg;
  if (size) cfg.resolution = (int)size;
  o.tf = ef_transform_defaults(false, cfg.resolution, cfg.in_channels);
  if (pre.recorded_norm) memcpy(o.tf.mean, pre.mean, sizeof pre.mean), memcpy(o.tf.std, pre.std, sizeof pre.std);
  // The model for a batch: the features kept, the classifier never computed.
  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 1);
  ef_tensor *images = ef_input(g, "images", EF_F32, 4, (int64_t[]){o.batch, cfg.resolution, cfg.resolution, cfg.in_channels});
  ef_layer_ctx ctx;
  ef_effnet_build(&cfg, g, images, false, NULL, &ctx);
  ef_graph_keep(g, ctx.features);
  ef_backend *be = ef_cpu_backend_new((int)threads);
  ef_plan *p = NULL;
  ef_status st = be ? ef_store_bind(s, be) : EF_ERROR(EF_ERR_NOMEM, "cannot create the CPU backend");
  if (st == EF_OK) st = ef_plan_new(&p, g, be, NULL);
  if (st == EF_OK) ef_store_initialize(s, 1), st = ef_pretrained_load(path, &pre, s);
  static const char *const names[2] = {"test", "train"};
  float *x[2] = {NULL, NULL};
  int32_t *y[2] = {NULL, NULL};
  int64_t n[2] = {0, 0}, c = ctx.features->shape[1];
  double t0 = ef_seconds();
  for (int k = 0; k < 2 && st == EF_OK; k++)
    if (splits[k]) st = split_features(&o, k == 1, p, images, ctx.features, &x[k], &y[k], &n[k]);
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
    ef_attr attrs[] = {{.name = "model", .kind = EF_ATTR_STRING, .s = cfg.name},
                       {.name = "weights", .kind = EF_ATTR_STRING, .s = (char *)path},
                       {.name = "data", .kind = EF_ATTR_STRING, .s = (char *)o.data},
                       {.name = "image_size", .kind = EF_ATTR_INT, .i = cfg.resolution},
                       {.name = "mean", .kind = EF_ATTR_STRING, .s = mean},
                       {.name = "std", .kind = EF_ATTR_STRING, .s = std}};
    st = ef_h5_save_arrays(out, arrays, na, attrs, (int)(sizeof attrs / sizeof attrs[0]));
  }
  if (st == EF_OK) {
    printf("effnet features: %s from %s%s at %dx%d: ", cfg.name, path, pre.ema ? " (EMA weights)" : "", cfg.resolution,
           cfg.resolution);
    for (int k = 0; k < 2; k++)
      if (splits[k]) printf("%s %lld x %lld, ", names[k], (long long)n[k], (long long)c);
    printf("in %s (%.1f s)\n", out, ef_seconds() - t0);
    if (!pre.recorded_norm) printf("  note: %s records no normalization; ImageNet's mean and std were used\n", path);
  } else {
    fprintf(stderr, "effnet features: %s\n", ef_last_error());
    rc = 1;
  }
  for (int k = 0; k < 2; k++) free(x[k]), free(y[k]);
  ef_plan_free(p);
  ef_graph_free(g);
  ef_store_free(s);
  ef_backend_free(be);
  return rc;
}
