// `effnet export`: writes the EfficientNet of a weights file or a training checkpoint (its /model,
// or with --ema its /ema) as a state_dict that torchvision's or timm's efficientnet_bX loads with
// strict=True: a .pth (torch.save) or a plain .h5, one dataset per name. The model built from the
// file's configuration loads the tensors first, checking every one; tools/convert_weights.py
// renames them (torchvision) and writes the result. `--to onnx` writes the model's inference graph
// as an ONNX model instead (models/onnx.h).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/onnx.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "tools/effnet.h"
#include "tools/flags.h"

static void export_usage(FILE *f) {
  fprintf(f,
          "usage: effnet export --to torchvision|timm [--ema] IN.h5 OUT.pth|OUT.h5\n"
          "       effnet export --to onnx [flags] IN.h5 OUT.onnx   (see effnet export --to onnx --help)\n"
          "\n"
          "Writes an effnet weights file or training checkpoint as a state_dict of torchvision's or timm's\n"
          "efficientnet_bX (strict=True loads it): OUT.pth with torch.save, or OUT.h5 with one dataset per\n"
          "name ({k: torch.as_tensor(v[()]) for k, v in h5py.File(OUT).items()}). Prints how to load it.\n"
          "Needs /usr/bin/python3 with h5py, and torch for .pth (Debian: python3-h5py python3-torch).\n"
          "\n"
          "  --to NAMES            torchvision (features.*, classifier.1.*) or timm (as effnet stores them)\n"
          "  --ema                 the checkpoint's EMA weights instead of its raw ones\n");
}

static bool ends_with(const char *s, const char *end) {
  size_t n = strlen(s), m = strlen(end);
  return n > m && !strcmp(s + n - m, end);
}

// The preset (b0 ... b7) whose width and depth cfg has, or NULL: what torchvision and timm build.
static const char *preset_of(const ef_effnet_config *cfg) {
  static const char *names[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    ef_effnet_config p;
    if (ef_effnet_preset(names[i], &p) == EF_OK && p.width == cfg->width && p.depth == cfg->depth) return names[i];
  }
  return NULL;
}

// Checks what IN is against what was asked; fills cfg, and headless when IN was imported without
// a classifier. Prints the problem and returns 1, or 0.
static int check_input(const char *in, bool ema, ef_effnet_config *cfg, bool *headless) {
  char arch[16] = "", classifier[16] = "";
  ef_attr attrs[3] = {{.name = "ema_updates", .kind = EF_ATTR_INT, .optional = true}, // checkpoints only
                      {.name = "arch", .kind = EF_ATTR_STRING, .s = arch, .cap = sizeof arch, .optional = true},
                      {.name = "classifier", .kind = EF_ATTR_STRING, .s = classifier, .cap = sizeof classifier, .optional = true}};
  if (ef_weights_read_attrs(in, attrs, 3) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
    return 1;
  }
  bool checkpoint = attrs[0].found;
  *headless = !strcmp(classifier, "absent");
  if (!strcmp(arch, "tiny")) {
    fprintf(stderr, "effnet export: %s is a checkpoint of the tiny net; torchvision and timm build EfficientNets only\n", in);
    return 1;
  }
  if (ef_weights_read_config(in, cfg) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
    return 1;
  }
  if (ema && !checkpoint) {
    fprintf(stderr, "effnet export: %s is a weights file, not a training checkpoint: it holds no EMA (drop --ema)\n", in);
    return 1;
  }
  if (ema && attrs[0].i < 0) {
    fprintf(stderr, "effnet export: %s was trained without an EMA (--ema 0): drop --ema\n", in);
    return 1;
  }
  if (!preset_of(cfg)) {
    fprintf(stderr,
            "effnet export: %s holds a custom EfficientNet (width %g, depth %g) that torchvision's and timm's\n"
            "efficientnet_b0 ... b7 do not build; its /model group already holds timm's names in PyTorch's layout\n",
            in, cfg->width, cfg->depth);
    return 1;
  }
  return 0;
}

// How to load the export, and where the model loading it computes otherwise than ours.
static void print_loading(const char *to, const char *in, const char *out, const ef_effnet_config *cfg, bool headless) {
  const char *preset = preset_of(cfg);
  bool same = cfg->padding == EF_PAD_SAME, torchvision = !strcmp(to, "torchvision"), pth = ends_with(out, ".pth");
  // torchvision builds b5-b7 with BN eps 1e-3, b0-b4 with 1e-5; timm's efficientnet_bX with 1e-5,
  // its tf_efficientnet_bX (TF "same" padding) with 1e-3.
  float eps = (torchvision ? preset[1] >= '5' : same) ? 1e-3f : 1e-5f;
  if (torchvision) printf("  model = torchvision.models.efficientnet_%s(num_classes=%d)\n", preset, cfg->num_classes);
  else printf("  model = timm.create_model(\"%sefficientnet_%s\", num_classes=%d)\n", same ? "tf_" : "", preset, cfg->num_classes);
  if (pth) printf("  model.load_state_dict(torch.load(\"%s\"), strict=True)\n", out);
  else printf("  model.load_state_dict({k: torch.as_tensor(v[()]) for k, v in h5py.File(\"%s\").items()}, strict=True)\n", out);
  if (headless)
    printf("  note: %s was imported without a classifier (--no-classifier): the classifier is an initialization\n", in);
  if (cfg->in_channels != 3)
    printf("  note: %d input channels: replace the stem convolution (3 in torchvision's and timm's) before loading\n",
           cfg->in_channels);
  if (torchvision && same)
    printf("  note: this model pads like TF (\"same\") and torchvision's pads symmetrically: the weights load, the outputs\n"
           "  differ (timm's tf_efficientnet_%s pads like TF: --to timm)\n", preset);
  if (cfg->bn_eps != eps)
    printf("  note: this model's BN eps is %g, that model's %g: set every BatchNorm2d's eps to %g for the same outputs\n",
           cfg->bn_eps, eps, cfg->bn_eps);
}

// ---- --to onnx -------------------------------------------------------------------------------

static void onnx_usage(FILE *f) {
  fprintf(f, "usage: effnet export --to onnx [flags] IN.h5 OUT.onnx\n"
             "\n"
             "Writes the inference graph of an effnet weights file or training checkpoint as an ONNX model (opset 17)\n"
             "for ONNX Runtime, OpenVINO and other runtimes: input \"images\" (any batch size), output \"logits\";\n"
             "the configuration, class names and normalization in its metadata.\n"
             "\n"
             "  --no-ema              a checkpoint's raw weights (default: its EMA, where it has one)\n"
             "  --layout L            the input's layout, nchw or nhwc  [nchw]\n"
             "  --keep-bn             BatchNormalization nodes (default: folded into the convolutions)\n"
             "  --include-normalization R   the model takes pixels in [0, 1] (R = 0-1) or [0, 255] (R = 0-255)\n"
             "                        and normalizes them with the file's mean and std (default: it takes\n"
             "                        normalized images, (pixels / 255 - mean) / std)\n"
             "  --image-size N        the input's side  [the model's: a checkpoint's training size]\n");
}

static bool wants_onnx(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--to") && !strcmp(argv[i + 1], "onnx")) return true;
  return false;
}

// What `in` holds: its configuration, class names (one per line, or ""), normalization (which
// need_norm requires), and the tensor group to export (a checkpoint's /ema unless no_ema or it has
// none). Prints the problem and returns 1, or 0.
static int onnx_input(const char *in, bool no_ema, bool need_norm, ef_effnet_config *cfg, char *class_names, size_t cap,
                      float *mean, float *std, bool *norm, const char **group) {
  char arch[16] = "";
  ef_attr attrs[3] = {{.name = "ema_updates", .kind = EF_ATTR_INT, .optional = true}, // checkpoints only
                      {.name = "arch", .kind = EF_ATTR_STRING, .s = arch, .cap = sizeof arch, .optional = true},
                      {.name = "class_names", .kind = EF_ATTR_STRING, .s = class_names, .cap = cap, .optional = true}};
  if (ef_weights_read_attrs(in, attrs, 3) != EF_OK ||
      (strcmp(arch, "tiny") && ef_weights_read_config(in, cfg) != EF_OK) ||
      ef_checkpoint_read_norm(in, mean, std, norm) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
    return 1;
  }
  if (!strcmp(arch, "tiny")) {
    fprintf(stderr, "effnet export: %s is a checkpoint of the tiny net; --to onnx exports EfficientNets\n", in);
    return 1;
  }
  if (need_norm && !*norm) {
    fprintf(stderr, "effnet export: %s records no normalization (mean, std) to include; drop --include-normalization\n",
            in);
    return 1;
  }
  *group = attrs[0].found && attrs[0].i >= 0 && !no_ema ? "ema" : "model";
  return 0;
}

// Builds cfg's inference graph, loads the tensors of /group of `in` into its store (every one
// checked) and exports it to `out`. Prints the problem and returns 1, or 0 and the parameter count.
static int write_onnx(const ef_effnet_config *cfg, const char *in, const char *group, const ef_onnx_opts *o,
                      const char *out, size_t *params) {
  ef_store *store = ef_store_new();
  ef_graph *g = ef_graph_new(store, 0);
  int64_t shape[4] = {1, cfg->resolution, cfg->resolution, cfg->in_channels}; // (N,H,W,C); N is free in the file
  ef_tensor *images = ef_input(g, "images", EF_F32, 4, shape);
  ef_tensor *logits = ef_effnet_build(cfg, g, images, false, NULL, NULL);
  ef_backend *be = ef_cpu_backend_new(1);
  ef_status st = be ? ef_store_bind(store, be) : EF_ERROR(EF_ERR_NOMEM, "cannot create the CPU backend");
  if (st == EF_OK) st = ef_weights_load_sets(in, store, &(ef_tensor_set){group, NULL, NULL, NULL}, 1);
  if (st == EF_OK) st = ef_onnx_export(g, images, logits, store, o, out);
  if (st != EF_OK) fprintf(stderr, "effnet export: %s\n", ef_last_error());
  *params = store->numel[0];
  ef_graph_free(g);
  ef_store_free(store);
  ef_backend_free(be);
  return st != EF_OK;
}

// What was written and how to feed it.
static void print_onnx(const ef_effnet_config *cfg, const char *group, size_t params, const char *in, const char *out,
                       const ef_onnx_opts *o) {
  int c = cfg->in_channels, r = cfg->resolution;
  bool nhwc = o->layout == EF_ONNX_NHWC;
  printf("effnet export: %s (/%s, %zu parameters) from %s to %s: ONNX opset %d, images (N,%d,%d,%d) %s, logits (N,%d); "
         "batch norm %s\n",
         cfg->name, group, params, in, out, EF_ONNX_OPSET, nhwc ? r : c, r, nhwc ? c : r, nhwc ? "NHWC" : "NCHW",
         cfg->num_classes, o->keep_bn ? "kept" : "folded into the convolutions");
  if (o->pixel_max)
    printf("  images: pixels in [0, %g]; the model normalizes them\n", o->pixel_max);
  else if (o->mean)
    printf("  images: (pixels / 255 - mean) / std, mean %g,%g,%g, std %g,%g,%g (or --include-normalization)\n",
           o->mean[0], o->mean[1], o->mean[2], o->std[0], o->std[1], o->std[2]);
  printf("  onnxruntime.InferenceSession(\"%s\").run([\"logits\"], {\"images\": images})\n", out);
}

static int export_onnx(int argc, char **argv) {
  const char *to = NULL, *layout = "nchw", *normalization = NULL, *paths[2], *group;
  int no_ema = 0, keep_bn = 0;
  long image_size = 0;
  const ef_flag flags[] = {{"--to", EF_FLAG_STR, &to},
                           {"--no-ema", EF_FLAG_BOOL, &no_ema},
                           {"--keep-bn", EF_FLAG_BOOL, &keep_bn},
                           {"--layout", EF_FLAG_STR, &layout},
                           {"--include-normalization", EF_FLAG_STR, &normalization},
                           {"--image-size", EF_FLAG_LONG, &image_size, 1, 4096}};
  int rc = ef_flags_parse("export", argc, argv, flags, 6, paths, 2, onnx_usage);
  if (rc) return rc;
  if (!paths[1] || !ends_with(paths[1], ".onnx")) {
    fprintf(stderr,
            "effnet export: --to onnx needs an input .h5 and an output .onnx (see effnet export --to onnx --help)\n");
    return 2;
  }
  if (strcmp(layout, "nchw") && strcmp(layout, "nhwc")) {
    fprintf(stderr, "effnet export: --layout must be nchw or nhwc, not '%s'\n", layout);
    return 2;
  }
  if (normalization && strcmp(normalization, "0-1") && strcmp(normalization, "0-255")) {
    fprintf(stderr, "effnet export: --include-normalization takes the pixels' range, 0-1 or 0-255, not '%s'\n",
            normalization);
    return 2;
  }
  ef_effnet_config cfg;
  float mean[3], std[3];
  bool norm;
  char *class_names = ef_xcalloc(1, 65536);
  if (onnx_input(paths[0], no_ema, normalization, &cfg, class_names, 65536, mean, std, &norm, &group)) {
    free(class_names);
    return 1;
  }
  if (image_size) cfg.resolution = (int)image_size;
  char source[4200];
  snprintf(source, sizeof source, "%s (/%s)", paths[0], group);
  ef_onnx_opts o = {.layout = strcmp(layout, "nhwc") ? EF_ONNX_NCHW : EF_ONNX_NHWC,
                    .keep_bn = keep_bn,
                    .pixel_max = !normalization ? 0 : !strcmp(normalization, "0-1") ? 1 : 255,
                    .mean = norm ? mean : NULL,
                    .std = norm ? std : NULL,
                    .cfg = &cfg,
                    .class_names = class_names[0] ? class_names : NULL,
                    .source = source};
  size_t params;
  rc = write_onnx(&cfg, paths[0], group, &o, paths[1], &params);
  if (!rc) print_onnx(&cfg, group, params, paths[0], paths[1], &o);
  free(class_names);
  return rc;
}

int ef_cmd_export(int argc, char **argv) {
  if (wants_onnx(argc, argv)) return export_onnx(argc, argv);
  const char *to = NULL, *paths[2];
  int ema = 0;
  const ef_flag flags[] = {{"--to", EF_FLAG_STR, &to}, {"--ema", EF_FLAG_BOOL, &ema}};
  int rc = ef_flags_parse("export", argc, argv, flags, 2, paths, 2, export_usage);
  if (rc) return rc;
  if (!to || (strcmp(to, "torchvision") && strcmp(to, "timm")) || !paths[1]) {
    fprintf(stderr, "effnet export: needs --to torchvision|timm|onnx, an input .h5 and an output file (see --help)\n");
    return 2;
  }
  if (!ends_with(paths[1], ".pth") && !ends_with(paths[1], ".h5")) {
    fprintf(stderr, "effnet export: %s: the output must end in .pth (torch.save) or .h5 (one dataset per name)\n", paths[1]);
    return 2;
  }
  ef_effnet_config cfg;
  bool headless;
  if (check_input(paths[0], ema, &cfg, &headless)) return 1;

  ef_store *store = ef_store_new();
  ef_graph *g = ef_graph_new(store, 0); // built only to register the model's parameters
  ef_effnet_build(&cfg, g, ef_input(g, "images", EF_F32, 4, (int64_t[]){1, 32, 32, cfg.in_channels}), false, NULL, NULL);
  ef_backend *be = ef_cpu_backend_new(1);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.export.%ld.h5", paths[1], (long)getpid());
  rc = 1;
  if (!be || ef_store_bind(store, be) != EF_OK ||
      ef_weights_load_sets(paths[0], store, &(ef_tensor_set){ema ? "ema" : "model", NULL, NULL, NULL}, 1) != EF_OK ||
      ef_weights_save(tmp, store, &cfg) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
  } else if (ef_run_converter("--to", to, tmp, paths[1]) != 0) {
    fprintf(stderr, "effnet export: writing %s failed (see above)\n", paths[1]);
  } else {
    printf("effnet export: %s (/%s, %zu parameters) from %s to %s under %s's names\n", cfg.name, ema ? "ema" : "model",
           store->numel[0], paths[0], paths[1], to);
    print_loading(to, paths[0], paths[1], &cfg, headless);
    rc = 0;
  }
  unlink(tmp);
  ef_graph_free(g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
