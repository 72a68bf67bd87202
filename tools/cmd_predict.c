// `effnet predict CHECKPOINT IMAGE...`: the top-k classes, by name, and their probabilities for
// JPEG or PNG files, through the checkpoint's evaluation preprocessing.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "tools/model_graph.h"

static void predict_usage(FILE *f) {
  fprintf(f,
          "usage: effnet predict CHECKPOINT IMAGE... [flags]\n"
          "\n"
          "Prints the most likely classes of each image (JPEG or PNG) with their probabilities.\n"
          "\n"
          "  --top-k N            classes per image  [5]\n"
          "  --no-ema             the raw weights, not the EMA (when the checkpoint has one)\n"
          "  --threads N          CPU threads (0: one per core)  [0]\n");
}

int ef_cmd_predict(int argc, char **argv) {
  enum { MAX_IMAGES = 4096 };
  const char *args[1 + MAX_IMAGES];
  long top_k = 5, threads = 0;
  int no_ema = 0;
  const ef_flag flags[] = {
      {"--top-k", EF_FLAG_LONG, &top_k, 1, 1 << 20}, {"--no-ema", EF_FLAG_BOOL, &no_ema},
      {"--threads", EF_FLAG_LONG, &threads, 0, 4096},
  };
  int rc = ef_flags_parse("predict", argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), args, 1 + MAX_IMAGES, predict_usage);
  if (rc) return rc;
  if (!args[0] || !args[1]) {
    fprintf(stderr, "effnet predict: give a checkpoint and at least one image (effnet predict --help)\n");
    return 2;
  }
  ef_backend *be = ef_cpu_backend_new((int)threads);
  ef_store *store = NULL;
  ef_model_graph m = {0};
  ef_checkpoint_info info;
  bool ema = false;
  ef_status st = be ? ef_model_from_checkpoint(args[0], !no_ema, 1, be, EF_F32, &store, &m, &info, &ema)
                    : EF_ERROR(EF_ERR_NOMEM, "cannot create the CPU backend");
  if (st != EF_OK) {
    fprintf(stderr, "effnet predict: %s\n", ef_last_error());
    ef_backend_free(be);
    return 1;
  }
  // Class names, one per line.
  enum { MAX_NAMES = 4096 };
  char *names[MAX_NAMES];
  int n_names = 0;
  for (char *p = info.class_names, *nl; *p && n_names < MAX_NAMES && (nl = strchr(p, '\n')); p = nl + 1)
    *nl = 0, names[n_names++] = p;
  int k = (int)(top_k < info.num_classes ? top_k : info.num_classes);
  float lut[768], *image = ef_xmalloc(sizeof(float) * (size_t)info.eval.size * info.eval.size * info.eval.channels);
  float *logits = ef_xmalloc(sizeof(float) * (size_t)info.num_classes);
  ef_transform_lut(&info.eval, lut);
  ef_transform_scratch scratch = {0};
  uint8_t *file = NULL;
  size_t cap = 0;
  for (int i = 1; i <= MAX_IMAGES && args[i]; i++) {
    size_t len;
    ef_sample_src src = {.name = args[i]};
    st = ef_read_file(args[i], &file, &cap, &len);
    src.bytes = file, src.len = len;
    if (st == EF_OK) st = ef_transform_sample(&info.eval, &src, &(ef_rng_seq){0}, &scratch);
    if (st != EF_OK) {
      fprintf(stderr, "effnet predict: %s\n", ef_last_error());
      rc = 1;
      continue;
    }
    ef_transform_normalize(lut, &scratch.out, image);
    ef_plan_set(m.plan, m.images, image);
    ef_plan_run(m.plan, &(ef_run_ctx){0});
    ef_plan_get(m.plan, m.logits, logits);
    double mx = logits[0], sum = 0;
    for (int c = 1; c < info.num_classes; c++) mx = fmax(mx, logits[c]);
    for (int c = 0; c < info.num_classes; c++) sum += exp(logits[c] - mx);
    printf("%s:\n", args[i]);
    for (int r = 0; r < k; r++) { // the class of rank r (none when the logits hold a NaN)
      int c = 0;
      while (c < info.num_classes && ef_label_rank(logits, info.num_classes, c) != r) c++;
      if (c == info.num_classes) {
        fprintf(stderr, "effnet predict: %s: the model's outputs are not numbers (a broken checkpoint?)\n", args[i]);
        rc = 1;
        break;
      }
      printf("  %6.2f%%  %s\n", 100 * exp(logits[c] - mx) / sum, c < n_names ? names[c] : "?");
    }
  }
  ef_transform_scratch_free(&scratch);
  free(file), free(image), free(logits);
  ef_model_graph_free(&m);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
