// `effnet`: the command-line entry point. Dispatches to a subcommand.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tools/effnet.h"

static void usage(FILE *f) {
  fprintf(f, "usage: effnet <command> [flags]\n"
             "\n"
             "commands:\n"
             "  train       train a model on a dataset (default: the tiny net on Fashion-MNIST)\n"
             "  eval        top-1, top-5 and loss of a checkpoint on a dataset\n"
             "  predict     the likely classes of image files, from any weights file\n"
             "  info        a model's architecture, parameters, multiply-adds and memory\n"
             "  import      convert torchvision, timm, efficientnet_pytorch (.pth) or Keras (.h5) weights to HDF5\n"
             "  export      write a model as a torchvision, timm or efficientnet_pytorch state_dict, or ONNX\n"
             "  features    pooled features of a dataset through a model, to HDF5 (linear probes)\n"
             "  bench       time inference or a training step on synthetic data\n"
             "  bench-data  time the data loader (decode + augment + batch) on JPEGs\n"
             "  scale-search  the paper's alpha, beta, gamma grid search on your data (docs/scaling.md)\n"
             "  scale-curves  width, depth, resolution and compound scaling to MAC budgets, compared\n"
             "  cam         where a model looks: class activation maps (CAM, Grad-CAM) over photos\n"
             "\n"
             "`effnet <command> --help` describes a command's flags.\n");
}

int main(int argc, char **argv) {
  // A file-size limit (ulimit -f) makes a write fail with EFBIG, which every writer reports (the
  // file is unchanged), rather than kill the process mid-run.
  signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "train")) return ef_cmd_train(argc - 1, argv + 1);
  if (!strcmp(argv[1], "eval")) return ef_cmd_eval(argc - 1, argv + 1);
  if (!strcmp(argv[1], "predict")) return ef_cmd_predict(argc - 1, argv + 1);
  if (!strcmp(argv[1], "info")) return ef_cmd_info(argc - 1, argv + 1);
  if (!strcmp(argv[1], "import")) return ef_cmd_import(argc - 1, argv + 1);
  if (!strcmp(argv[1], "export")) return ef_cmd_export(argc - 1, argv + 1);
  if (!strcmp(argv[1], "features")) return ef_cmd_features(argc - 1, argv + 1);
  if (!strcmp(argv[1], "bench")) return ef_cmd_bench(argc - 1, argv + 1);
  if (!strcmp(argv[1], "scale-search")) return ef_cmd_scale_search(argc - 1, argv + 1);
  if (!strcmp(argv[1], "cam")) return ef_cmd_cam(argc - 1, argv + 1);
  if (!strcmp(argv[1], "scale-curves")) return ef_cmd_scale_curves(argc - 1, argv + 1);
  if (!strcmp(argv[1], "bench-data")) return ef_cmd_bench_data(argc - 1, argv + 1);
  fprintf(stderr, "effnet: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
