// `effnet import`: converts a torchvision or timm EfficientNet state_dict (.pth) into effnet's
// HDF5 weights. tools/convert_weights.py (Debian's python3-torch and python3-h5py) renames the
// tensors by table into a temporary file; the model built here from MODEL and its flags then
// loads it, checking every tensor, and saves it atomically with its configuration.
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
          "usage: effnet import --from torchvision|timm --model MODEL [flags] IN.pth OUT.h5\n"
          "\n"
          "Converts a PyTorch state_dict of an EfficientNet into effnet's HDF5 weights, checking every\n"
          "tensor against the model. torchvision's b5-b7 record BN eps 1e-3 and momentum 0.01 (as\n"
          "torchvision builds them); timm's tf_efficientnet_b* need --padding same --bn-eps 1e-3.\n"
          "Needs /usr/bin/python3 with torch and h5py (Debian: python3-torch python3-h5py).\n"
          "\n"
          "  --from SOURCE         torchvision or timm\n"
          "  --model MODEL         b0 ... b7 (or --phi F)\n");
  ef_model_args_usage(f);
}

// Runs the converter script; returns 0 when it succeeded (it prints its own errors).
static int run_converter(const char *source, const char *in, const char *out) {
  const char *dir = getenv("EFFNET_TOOLS_DIR") ? getenv("EFFNET_TOOLS_DIR") : EFFNET_TOOLS_DIR;
  char script[4096];
  snprintf(script, sizeof script, "%s/convert_weights.py", dir);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/usr/bin/python3", "python3", script, "--from", source, in, out, (char *)NULL);
    perror("effnet import: cannot run /usr/bin/python3 (install python3-torch and python3-h5py)");
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ef_cmd_import(int argc, char **argv) {
  ef_model_args m;
  const char *source = NULL, *model = NULL, *paths[2];
  ef_flag flags[EF_MODEL_FLAGS + 2] = {{"--from", EF_FLAG_STR, &source}, {"--model", EF_FLAG_STR, &model}};
  ef_model_args_init(&m, flags + 2);
  ef_effnet_config cfg;
  int rc = ef_flags_parse("import", argc, argv, flags, EF_MODEL_FLAGS + 2, paths, 2, import_usage);
  if (rc) return rc;
  if (!source || (strcmp(source, "torchvision") && strcmp(source, "timm")) || !paths[1]) {
    fprintf(stderr, "effnet import: needs --from torchvision|timm, an input .pth and an output .h5 (see --help)\n");
    return 2;
  }
  if ((rc = ef_model_args_config("import", model, &m, &cfg))) return rc;
  // torchvision builds b5-b7 with BatchNorm2d(eps=0.001, momentum=0.01), b0-b4 with the defaults
  // (decided by the preset asked for: overrides rename the configuration "b5-custom").
  bool tv_tf_bn = !strcmp(source, "torchvision") && model &&
                  (!strcasecmp(model, "b5") || !strcasecmp(model, "b6") || !strcasecmp(model, "b7"));
  if (tv_tf_bn && isnan(m.bn_eps)) cfg.bn_eps = 1e-3f;
  if (tv_tf_bn && isnan(m.bn_momentum)) cfg.bn_momentum = 0.01f;

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.convert.%ld.h5", paths[1], (long)getpid());
  if (run_converter(source, paths[0], tmp) != 0) {
    unlink(tmp);
    fprintf(stderr, "effnet import: converting %s failed (see above)\n", paths[0]);
    return 1;
  }
  ef_store *store = ef_store_new();
  ef_graph *g = ef_graph_new(store, 0); // built only to register the model's parameters
  ef_effnet_build(&cfg, g, ef_input(g, "images", EF_F32, 4, (int64_t[]){1, 32, 32, cfg.in_channels}), false, NULL, NULL);
  ef_backend *be = ef_cpu_backend_new(1);
  rc = 1;
  if (!be || ef_store_bind(store, be) != EF_OK) {
    fprintf(stderr, "effnet import: %s\n", ef_last_error());
  } else if (ef_weights_load(tmp, store) != EF_OK) {
    fprintf(stderr, "effnet import: %s\n(that file was converted from %s: is it a %s %s state_dict?)\n", ef_last_error(),
            paths[0], source, cfg.name);
  } else if (ef_weights_save(paths[1], store, &cfg) != EF_OK) {
    fprintf(stderr, "effnet import: %s\n", ef_last_error());
  } else {
    printf("effnet import: %s %s (%zu parameters, %d tensors) from %s to %s; padding %s, BN eps %g momentum %g\n", source,
           cfg.name, store->numel[0], store->n, paths[0], paths[1], cfg.padding == EF_PAD_SAME ? "same" : "symmetric",
           cfg.bn_eps, cfg.bn_momentum);
    rc = 0;
  }
  unlink(tmp);
  ef_graph_free(g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
