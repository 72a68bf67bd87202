// `effnet eval WEIGHTS`: top-1, top-5 and loss of any effnet weights file (an import or a training
// checkpoint, by default its EMA weights) on a dataset's test (or train) split, through the
// model's evaluation transform or the size, crop and interpolation given.
#include <stdlib.h>
#include <string.h>

#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/checkpoint.h"

typedef struct {
  const char *data, *split, *classes;
  long batch, loader_threads;
  bool strict_images;
  ef_eval_spec eval;
  ef_device_spec dev;
} eval_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(eval_opts, kind, field)
static const ef_flag eval_flags[] = {
    {ROW(EF_FLAG_STR, "--data", data), 0, 0, NULL, "PATH",
     "dataset as for effnet train; an ImageFolder's class folders in the\nmodel's class order  "
     "[a checkpoint's own, else Fashion-MNIST]",
     false},
    {ROW(EF_FLAG_STR, "--split", split), 0, 0, "test|train", "S", "the dataset's split", false},
    {ROW(EF_FLAG_STR, "--select-classes", classes), 0, 0, NULL, "L",
     "these classes only, relabelled 0, 1, ... (5-9, 0,2,4-6)  [a checkpoint's]", false},
    {ROW(EF_FLAG_LONG, "--batch", batch), 1, 1 << 16, NULL, "N", "images per step", false},
    {ROW(EF_FLAG_LONG, "--loader-threads", loader_threads), 0, 256, NULL, "N", "threads decoding ahead", false},
    EF_STRICT_IMAGES_FLAG(eval_opts, strict_images, false),
};
#undef ROW

// The (last) value of `flag` in a checkpoint's arguments (one per line), or NULL.
static const char *saved_flag(const char *args, const char *flag, char *buf, size_t len) {
  const char *p = args, *found = NULL;
  size_t n = strlen(flag);
  while ((p = strstr(p, flag))) {
    if ((p == args || p[-1] == '\n') && p[n] == '\n') {
      const char *v = p + n + 1, *end = strchr(v, '\n');
      snprintf(buf, len, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
      found = buf;
    }
    p += n;
  }
  return found;
}

int ef_cmd_eval(int argc, char **argv) {
  eval_opts o = {
      .split = "test", .batch = 100, .loader_threads = 1, .eval = EF_EVAL_SPEC_DEFAULT, .dev = EF_DEVICE_SPEC_DEFAULT};
  ef_flags f;
  ef_flags_init(&f, "eval",
                "usage: effnet eval WEIGHTS [flags]\n\nEvaluates a model on a dataset: top-1, top-5 and loss (mean "
                "cross-entropy). WEIGHTS: any effnet\nweights file, from `effnet import` or a training checkpoint.\n\n",
                NULL);
  ef_flags_add(&f, eval_flags, (int)(sizeof eval_flags / sizeof eval_flags[0]), &o);
  ef_flags_add(&f, ef_eval_flags, EF_EVAL_FLAGS, &o.eval);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &o.dev);
  const char *path;
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, &path, 1);
  if (rc) return rc;
  if (!path) {
    fprintf(stderr, "effnet eval: which checkpoint? (or any effnet weights file: effnet eval --help)\n");
    return 2;
  }
  ef_device dev;
  if ((rc = ef_device_args_open(&dev, "eval", &o.dev)) != 0) return rc;
  ef_checkpoint_info *saved = ef_xcalloc(1, sizeof *saved);
  ef_model m = {0};
  ef_dataset d = {0};
  ef_loader *l = NULL;
  char saved_data[4096], saved_classes[1024];
  ef_eval_result r;
  ef_graph_opts go = {.batch = o.batch, .activations = dev.activations, .image_size = (int)o.eval.image_size};
  ef_status st = ef_model_open(&m, path, o.eval.ema, &go, dev.be);
  ef_transform tf = {0};
  if (st == EF_OK && m.info.checkpoint) { // a checkpoint's data and classes, unless given
    st = ef_checkpoint_read_info(path, saved);
    if (st == EF_OK && !o.data) o.data = saved_flag(saved->args, "--data", saved_data, sizeof saved_data);
    if (st == EF_OK && !o.classes)
      o.classes = saved_flag(saved->args, "--select-classes", saved_classes, sizeof saved_classes);
  }
  if (st == EF_OK) st = ef_eval_transform(&m.info.desc, &o.eval, &tf);
  tf.strict = o.strict_images;
  if (st == EF_OK) st = ef_dataset_open(o.data ? o.data : EF_FASHION_MNIST_DIR, !strcmp(o.split, "train"), &d);
  if (st == EF_OK && o.classes) st = ef_dataset_select(&d, o.classes, 0);
  if (st == EF_OK && d.num_classes != m.info.desc.num_classes)
    st = EF_ERROR(EF_ERR_INVALID, "%s has %d classes but the model %d%s", d.source, d.num_classes,
                  m.info.desc.num_classes, o.data ? "" : ": give --data");
  if (st == EF_OK && d.pixels && !(o.eval.crop_pct > 0)) tf.crop_pct = 1; // small in-memory images: no centre crop
  ef_loader_config lc = {.data = &d,
                         .transform = tf,
                         .batch = (int)o.batch,
                         .as_float = true,
                         .pass_name = "evaluation",
                         .threads = (int)o.loader_threads};
  if (st == EF_OK) st = ef_loader_new(&l, &lc);
  double t0 = ef_seconds();
  if (st == EF_OK) st = ef_model_evaluate(&m.graph, l, &r);
  if (st == EF_OK) {
    char where[512], tdesc[256];
    ef_transform_describe(&tf, tdesc, sizeof tdesc);
    printf("%s (%s weights", path, m.used_ema ? "EMA" : m.info.checkpoint ? "raw" : "imported");
    if (m.info.checkpoint) printf(", step %lld", (long long)saved->step);
    printf(") on %s [%s], %lld images: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%.1f s, %s)\n  input: %s\n", d.source,
           o.split, (long long)r.images, 100 * r.top1, 100 * r.top5, r.loss, ef_seconds() - t0,
           ef_device_describe(&dev, where, sizeof where), tdesc);
  } else {
    rc = ef_report("eval", 1);
  }
  ef_loader_free(l);
  ef_dataset_free(&d);
  ef_model_close(&m);
  free(saved);
  ef_device_close(&dev);
  return rc;
}
