// `effnet import`: converts a torchvision or timm EfficientNet state_dict (.pth), or Keras's
// EfficientNetBx weights (.h5), into effnet's HDF5 weights. tools/convert_weights.py renames the
// tensors by table into a temporary file; the model built here from MODEL and its flags then
// loads it, checking every tensor, and saves it atomically with its configuration, the
// normalization the weights expect (mean, std), their source and whether the classifier came too.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/weights.h"
#include "tools/effnet.h"
#include "tools/model_args.h"

#ifndef EFFNET_TOOLS_DIR
#define EFFNET_TOOLS_DIR "tools"
#endif

static void import_usage(FILE *f) {
  fprintf(f,
          "usage: effnet import --from torchvision|timm|keras --model MODEL [flags] IN OUT.h5\n"
          "\n"
          "Converts an EfficientNet's weights into effnet's HDF5, checking every tensor against the model:\n"
          "a PyTorch state_dict (.pth) of torchvision or timm, or a Keras EfficientNetBx weights file (.h5 of\n"
          "Keras 2's save_weights or Keras 3's legacy format, or Keras 3's .weights.h5). torchvision's b5-b7\n"
          "record BN eps 1e-3 and momentum 0.01 (as torchvision builds them); timm's tf_efficientnet_b*\n"
          "need --padding same --bn-eps 1e-3; Keras's models record padding same, BN eps 1e-3 and momentum\n"
          "0.01 unless the flags say otherwise. The file records the normalization the weights expect\n"
          "(attributes mean and std: ImageNet's for PyTorch, Keras's Normalization layer for Keras).\n"
          "Needs /usr/bin/python3 with h5py and numpy, and torch for .pth (Debian: python3-h5py python3-torch).\n"
          "\n"
          "  --from SOURCE         torchvision, timm or keras\n"
          "  --model MODEL         b0 ... b7 (or --phi F)\n"
          "  --no-classifier       accept a file without the classifier (Keras's _notop files): it keeps\n"
          "                        its initialization (seed 0) and the file records classifier = absent\n"
          "                        (a file with a classifier imports it as usual)\n");
  ef_model_args_usage(f);
}

int ef_run_converter(const char *direction, const char *value, const char *in, const char *out) {
  const char *dir = getenv("EFFNET_TOOLS_DIR") ? getenv("EFFNET_TOOLS_DIR") : EFFNET_TOOLS_DIR;
  char script[4096];
  snprintf(script, sizeof script, "%s/convert_weights.py", dir);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/usr/bin/python3", "python3", script, direction, value, in, out, (char *)NULL);
    perror("effnet: cannot run /usr/bin/python3 (install python3-h5py, and python3-torch for .pth files)");
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ef_cmd_import(int argc, char **argv) {
  ef_model_args m;
  const char *source = NULL, *model = NULL, *paths[2];
  int no_classifier = 0;
  ef_flag flags[EF_MODEL_FLAGS + 3] = {{"--from", EF_FLAG_STR, &source}, {"--model", EF_FLAG_STR, &model},
                                       {"--no-classifier", EF_FLAG_BOOL, &no_classifier}};
  ef_model_args_init(&m, flags + 3);
  ef_effnet_config cfg;
  int rc = ef_flags_parse("import", argc, argv, flags, EF_MODEL_FLAGS + 3, paths, 2, import_usage);
  if (rc) return rc;
  if (!source || (strcmp(source, "torchvision") && strcmp(source, "timm") && strcmp(source, "keras")) || !paths[1]) {
    fprintf(stderr, "effnet import: needs --from torchvision|timm|keras, an input file and an output .h5 (see --help)\n");
    return 2;
  }
  if ((rc = ef_model_args_config("import", model, &m, &cfg))) return rc;
  // torchvision builds b5-b7 with BatchNorm2d(eps=0.001, momentum=0.01), b0-b4 with the defaults
  // (decided by the preset asked for: overrides rename the configuration "b5-custom"). Keras
  // builds every model TF's way: "same" padding, BatchNormalization(epsilon=1e-3, momentum=0.99).
  bool keras = !strcmp(source, "keras");
  bool tf_bn = keras || (!strcmp(source, "torchvision") && model &&
                         (!strcasecmp(model, "b5") || !strcasecmp(model, "b6") || !strcasecmp(model, "b7")));
  if (tf_bn && isnan(m.bn_eps)) cfg.bn_eps = 1e-3f;
  if (tf_bn && isnan(m.bn_momentum)) cfg.bn_momentum = 0.01f;
  if (keras && !m.padding) cfg.padding = EF_PAD_SAME;

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.convert.%ld.h5", paths[1], (long)getpid());
  if (ef_run_converter("--from", source, paths[0], tmp) != 0) {
    unlink(tmp);
    fprintf(stderr, "effnet import: converting %s failed (see above)\n", paths[0]);
    return 1;
  }
  // What the converter found: its root attributes, passed on to the saved file.
  char mean[64], std[64], src[16], classifier[16];
  ef_attr attrs[4] = {{.name = "mean", .kind = EF_ATTR_STRING, .s = mean, .cap = sizeof mean},
                      {.name = "std", .kind = EF_ATTR_STRING, .s = std, .cap = sizeof std},
                      {.name = "source", .kind = EF_ATTR_STRING, .s = src, .cap = sizeof src},
                      {.name = "classifier", .kind = EF_ATTR_STRING, .s = classifier, .cap = sizeof classifier}};
  ef_store *store = ef_store_new();
  ef_graph *g = ef_graph_new(store, 0); // built only to register the model's parameters
  ef_effnet_build(&cfg, g, ef_input(g, "images", EF_F32, 4, (int64_t[]){1, 32, 32, cfg.in_channels}), false, NULL, NULL);
  ef_backend *be = ef_cpu_backend_new(1);
  rc = 1;
  bool found = ef_weights_read_attrs(tmp, attrs, 4) == EF_OK, headless = found && !strcmp(classifier, "absent");
  if (!found) {
    fprintf(stderr, "effnet import: %s (is tools/convert_weights.py from this effnet?)\n", ef_last_error());
  } else if (headless && !no_classifier) {
    fprintf(stderr,
            "effnet import: %s has no classifier (a Keras _notop file, or a state_dict without classifier.*); give\n"
            "--no-classifier to import the rest and leave the classifier at its initialization\n",
            paths[0]);
  } else if (!be || ef_store_bind(store, be) != EF_OK) {
    fprintf(stderr, "effnet import: %s\n", ef_last_error());
  } else {
    if (headless) ef_store_initialize(store, 0); // the classifier, which the file lacks, keeps these values
    ef_tensor_set set = {"model", NULL, NULL, headless ? "classifier." : NULL};
    if (ef_weights_load_sets(tmp, store, &set, 1) != EF_OK) {
      fprintf(stderr, "effnet import: %s\n(that file was converted from %s: is it a %s %s%s?)\n", ef_last_error(), paths[0],
              source, cfg.name, keras ? " weights file" : " state_dict");
    } else if (ef_weights_save_sets(paths[1], store, &cfg, &(ef_tensor_set){"model", NULL, NULL, NULL}, 1, attrs, 4) != EF_OK) {
      fprintf(stderr, "effnet import: %s\n", ef_last_error());
    } else {
      printf("effnet import: %s %s (%zu parameters, %d tensors) from %s to %s; padding %s, BN eps %g momentum %g; "
             "mean %s, std %s%s\n",
             source, cfg.name, store->numel[0], store->n, paths[0], paths[1], cfg.padding == EF_PAD_SAME ? "same" : "symmetric",
             cfg.bn_eps, cfg.bn_momentum, mean, std, headless ? "; no classifier: initialized (seed 0)" : "");
      rc = 0;
    }
  }
  unlink(tmp);
  ef_graph_free(g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
