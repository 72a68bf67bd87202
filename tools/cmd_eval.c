// `effnet eval CHECKPOINT`: top-1, top-5 and loss of a checkpoint on a dataset's test (or train)
// split, with the checkpoint's preprocessing and, by default, its EMA weights.
#include <stdlib.h>
#include <string.h>

#include "tools/device.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "tools/model_graph.h"

static void eval_usage(FILE *f) {
  fprintf(f,
          "usage: effnet eval CHECKPOINT [flags]\n"
          "\n"
          "Evaluates a checkpoint (a .h5 of effnet train) on a dataset: top-1, top-5, loss.\n"
          "\n"
          "  --data PATH          dataset as for effnet train  [the one the checkpoint trained on]\n"
          "  --split S            test or train  [test]\n"
          "  --select-classes L   these classes only, relabelled 0, 1, ... (5-9, 0,2,4-6)  [the checkpoint's]\n"
          "  --no-ema             the raw weights, not the EMA (when the checkpoint has one)\n"
          "  --batch N            images per step  [100]\n"
          "  --threads N          CPU threads (0: one per core)  [0]\n"
          "  --loader-threads N   [1]\n"
          EF_DEVICE_USAGE);
}

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
  const char *path, *data = NULL, *split = "test", *classes = NULL, *device = "cpu", *precision = "f32";
  long batch = 100, threads = 0, loader_threads = 1;
  int no_ema = 0;
  const ef_flag flags[] = {
      {"--data", EF_FLAG_STR, &data},  {"--split", EF_FLAG_STR, &split}, {"--no-ema", EF_FLAG_BOOL, &no_ema},
      {"--batch", EF_FLAG_LONG, &batch, 1, 1 << 16}, {"--threads", EF_FLAG_LONG, &threads, 0, 4096},
      {"--loader-threads", EF_FLAG_LONG, &loader_threads, 0, 256}, {"--select-classes", EF_FLAG_STR, &classes},
      {"--device", EF_FLAG_STR, &device}, {"--precision", EF_FLAG_STR, &precision},
  };
  int rc = ef_flags_parse("eval", argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), &path, 1, eval_usage);
  if (rc) return rc;
  if (!path) {
    fprintf(stderr, "effnet eval: which checkpoint? (effnet eval --help)\n");
    return 2;
  }
  if (strcmp(split, "test") && strcmp(split, "train")) {
    fprintf(stderr, "effnet eval: --split must be test or train, not '%s'\n", split);
    return 2;
  }
  ef_device dev;
  if ((rc = ef_device_open(&dev, "eval", device, precision, (int)threads)) != 0) return rc;
  ef_store *store = NULL;
  ef_model_graph m = {0};
  ef_checkpoint_info info;
  ef_dataset d = {0};
  ef_loader *l = NULL;
  bool ema = false;
  char saved_data[4096], saved_classes[1024];
  ef_eval_result r;
  ef_status st = ef_model_from_checkpoint(path, !no_ema, batch, dev.be, dev.activations, &store, &m, &info, &ema);
  if (st == EF_OK && !data) data = saved_flag(info.args, "--data", saved_data, sizeof saved_data);
  if (st == EF_OK && !classes) classes = saved_flag(info.args, "--select-classes", saved_classes, sizeof saved_classes);
  if (st == EF_OK) st = ef_dataset_open(data ? data : EF_FASHION_MNIST_DIR, !strcmp(split, "train"), &d);
  if (st == EF_OK && classes) st = ef_dataset_select(&d, classes, 0);
  if (st == EF_OK && d.num_classes != info.num_classes)
    st = EF_ERROR(EF_ERR_INVALID, "%s has %d classes but the checkpoint's model %d", d.source, d.num_classes, info.num_classes);
  ef_loader_config lc = {.data = &d, .transform = info.eval, .batch = (int)batch, .as_float = true, .strict = true,
                         .threads = (int)loader_threads};
  if (st == EF_OK) st = ef_loader_new(&l, &lc);
  double t0 = ef_seconds();
  if (st == EF_OK) st = ef_model_evaluate(&m, l, &r);
  if (st == EF_OK) {
    char where[512];
    printf("%s (%s weights, step %lld) on %s [%s], %lld images: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%.1f s, %s)\n", path,
           ema ? "EMA" : "raw", (long long)info.step, d.source, split, (long long)r.images, 100 * r.top1, 100 * r.top5, r.loss,
           ef_seconds() - t0, ef_device_describe(&dev, where, sizeof where));
  } else {
    fprintf(stderr, "effnet eval: %s\n", ef_last_error());
    rc = 1;
  }
  ef_loader_free(l);
  ef_dataset_free(&d);
  ef_model_graph_free(&m);
  ef_store_free(store);
  ef_device_close(&dev);
  return rc;
}
