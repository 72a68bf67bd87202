// `effnet predict WEIGHTS IMAGE...`: the top-k classes, by name, and their probabilities for JPEG
// or PNG files, through the model's evaluation preprocessing; WEIGHTS is any effnet weights file
// (an import or a training checkpoint). It runs on the public API (include/effnet/effnet.h).
#include <stdlib.h>
#include <string.h>

#include "effnet/effnet.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"

typedef struct {
  long top_k, digits;
  ef_eval_spec eval;
  ef_device_spec dev;
} predict_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(predict_opts, kind, field)
static const ef_flag predict_flags[] = {
    {ROW(EF_FLAG_LONG, "--top-k", top_k), 1, 1 << 20, NULL, "N", "classes per image", false},
    {ROW(EF_FLAG_LONG, "--digits", digits), 0, 9, NULL, "N", "decimals of the percentages", false},
};
#undef ROW

int ef_cmd_predict(int argc, char **argv) {
  enum { MAX_IMAGES = 4096 };
  predict_opts o = {.top_k = 5, .digits = 2, .eval = EF_EVAL_SPEC_DEFAULT, .dev = EF_DEVICE_SPEC_DEFAULT};
  ef_flags f;
  ef_flags_init(&f, "predict",
                "usage: effnet predict WEIGHTS IMAGE... [flags]\n\nPrints the most likely classes of each image (JPEG "
                "or PNG) with their probabilities. WEIGHTS:\nany effnet weights file, from `effnet import` or a "
                "training checkpoint.\n\n",
                NULL);
  ef_flags_add(&f, predict_flags, (int)(sizeof predict_flags / sizeof predict_flags[0]), &o);
  ef_flags_add(&f, ef_eval_flags, EF_EVAL_FLAGS, &o.eval);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &o.dev);
  const char *args[1 + MAX_IMAGES];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, args, 1 + MAX_IMAGES);
  if (rc) return rc;
  if (!args[0] || !args[1]) {
    fprintf(stderr, "effnet predict: give a checkpoint and at least one image (effnet predict --help)\n");
    return 2;
  }
  ef_net_options no = {.device = o.dev.device,
                       .precision = o.dev.precision,
                       .threads = (int)o.dev.threads,
                       .image_size = (int)o.eval.image_size,
                       .crop_pct = o.eval.crop_pct,
                       .interpolation = o.eval.interpolation,
                       .raw = !o.eval.ema};
  ef_net *net = ef_net_open(args[0], &no);
  if (!net) return ef_report("predict", 1);
  int classes = ef_net_classes(net), *best = ef_xmalloc(sizeof(int) * (size_t)o.top_k);
  float *image = ef_xmalloc(sizeof(float) * (size_t)ef_net_input_floats(net)),
        *logits = ef_xmalloc(sizeof(float) * classes);
  float *prob = ef_xmalloc(sizeof(float) * (size_t)o.top_k);
  for (int i = 1; i <= MAX_IMAGES && args[i]; i++) {
    if (ef_net_load_image(net, args[i], image) != EF_OK || ef_net_run(net, image, 1, logits, NULL) != EF_OK) {
      rc = ef_report("predict", 1);
      continue;
    }
    int k = ef_top_k(logits, classes, (int)o.top_k, best, prob);
    printf("%s:\n", args[i]);
    if (!k) {
      fprintf(stderr, "effnet predict: %s: the model's outputs are not numbers (a broken checkpoint?)\n", args[i]);
      rc = 1;
    }
    for (int r = 0; r < k; r++) {
      const char *name = ef_net_class_name(net, best[r]);
      int width = 4 + (int)o.digits;
      if (name) printf("  %*.*f%%  %s\n", width, (int)o.digits, 100.0 * prob[r], name);
      else printf("  %*.*f%%  class %d\n", width, (int)o.digits, 100.0 * prob[r], best[r]);
    }
  }
  free(best), free(image), free(logits), free(prob);
  ef_net_close(net);
  return rc;
}
