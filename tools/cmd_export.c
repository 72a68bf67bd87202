// `effnet export`: writes the model of any effnet weights file (an import or a training checkpoint)
// for other frameworks: a state_dict that torchvision's, timm's or efficientnet_pytorch's model
// loads with strict=True (a .pth, or a plain .h5 of one dataset per name; tools/convert_weights.py
// renames the tensors and writes it), or an ONNX model of its inference graph (models/onnx.h). The
// model built from the file's description loads the tensors first, checking every one.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/onnx.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/model.h"

typedef struct {
  const char *to, *layout, *normalization;
  bool ema, keep_bn, force;
  long image_size;
} export_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(export_opts, kind, field)
static const ef_flag export_flags[] = {
    {ROW(EF_FLAG_STR, "--to", to), 0, 0, NULL, "FORMAT",
     "torchvision (features.*, classifier.1.*), timm (as effnet stores them),\nefficientnet_pytorch (_blocks.N.*, "
     "_fc.*) or onnx",
     false},
    {ROW(EF_FLAG_BOOL, "--ema", ema), 0, 0, NULL, NULL,
     "a checkpoint's EMA weights  [torchvision, timm, efficientnet_pytorch: off;\nonnx: on, where the checkpoint has "
     "them]",
     false},
    EF_FORCE_FLAG(export_opts, force),
    EF_SECTION("onnx:"),
    {ROW(EF_FLAG_STR, "--layout", layout), 0, 0, "nchw|nhwc", "L", "the input's layout", false},
    {ROW(EF_FLAG_BOOL, "--keep-bn", keep_bn), 0, 0, NULL, NULL,
     "BatchNormalization nodes (default: folded into the convolutions)", false},
    {ROW(EF_FLAG_STR, "--include-normalization", normalization), 0, 0, "0-1|0-255", "R",
     "the model takes pixels in [0, 1] (0-1) or [0, 255] (0-255) and\nnormalizes them with the file's mean and std "
     "(default: it takes\nnormalized images, (pixels / 255 - mean) / std)",
     false},
    {ROW(EF_FLAG_LONG, "--image-size", image_size), 0, 4096, NULL, "N", "the input's side (0: the model's)", false},
};
#undef ROW

static const char *const usage_head =
    "usage: effnet export --to torchvision|timm|efficientnet_pytorch [--ema] IN.h5 OUT.pth|OUT.h5\n"
    "       effnet export --to onnx [flags] IN.h5 OUT.onnx\n"
    "\n"
    "Writes an effnet weights file or training checkpoint for other frameworks: a state_dict of\n"
    "torchvision's efficientnet_b0 ... b7, timm's or efficientnet_pytorch's EfficientNet (B0-B8, L2,\n"
    "Lite0-Lite4; strict=True loads it; OUT.pth with torch.save, or OUT.h5 with one dataset per name),\n"
    "printing how to load it (needs /usr/bin/python3 with h5py, and torch for .pth); or an ONNX model\n"
    "(opset 17) of the inference graph for ONNX Runtime, OpenVINO and other runtimes: input \"images\"\n"
    "(any batch size), output \"logits\"; the configuration, class names and normalization in its\n"
    "metadata.\n\n";

static bool ends_with(const char *s, const char *end) {
  size_t n = strlen(s), m = strlen(end);
  return n > m && !strcmp(s + n - m, end);
}

// The preset whose architecture cfg has (width, depth and the variant switch), or NULL: what the
// other frameworks build (torchvision b0 ... b7 only).
static const char *preset_of(const ef_effnet_config *cfg) {
  for (int i = 0; ef_effnet_preset_name(i); i++) {
    ef_effnet_config p;
    ef_effnet_preset(ef_effnet_preset_name(i), &p);
    if (p.width == cfg->width && p.depth == cfg->depth && p.act == cfg->act &&
        p.squeeze_excite == cfg->squeeze_excite && p.fixed_stem_head == cfg->fixed_stem_head)
      return ef_effnet_preset_name(i);
  }
  return NULL;
}

static bool torchvision_builds(const char *preset) { return preset[0] == 'b' && preset[1] <= '7'; }

// Checks what IN is against a torchvision, timm or efficientnet_pytorch export. Prints the problem
// and returns 1, or 0.
static int check_input(const char *in, const char *to, bool ema, const ef_weights_info *w) {
  if (!strcmp(w->desc.arch, "tiny")) {
    fprintf(stderr, "effnet export: %s is a checkpoint of the tiny net; %s builds EfficientNets only\n", in, to);
    return 1;
  }
  if (ema && !w->checkpoint) {
    fprintf(stderr, "effnet export: %s is a weights file, not a training checkpoint: it holds no EMA (drop --ema)\n",
            in);
    return 1;
  }
  if (ema && !w->has_ema) {
    fprintf(stderr, "effnet export: %s was trained without an EMA (--ema 0): drop --ema\n", in);
    return 1;
  }
  const char *preset = preset_of(&w->desc.cfg);
  if (!preset) {
    fprintf(stderr,
            "effnet export: %s holds a custom EfficientNet (width %g, depth %g) that %s does not build (it builds\n"
            "the presets); its /model group already holds timm's names in PyTorch's layout\n",
            in, w->desc.cfg.width, w->desc.cfg.depth, to);
    return 1;
  }
  if (!strcmp(to, "torchvision") && !torchvision_builds(preset)) {
    fprintf(stderr,
            "effnet export: %s holds EfficientNet %s, which torchvision does not build (b0 ... b7): --to timm or "
            "--to efficientnet_pytorch\n",
            in, preset);
    return 1;
  }
  return 0;
}

// How to load the export, and where the model loading it computes otherwise than ours.
static void print_loading(const char *to, const char *in, const char *out, const ef_effnet_config *cfg, bool headless) {
  const char *preset = preset_of(cfg);
  bool same = cfg->padding == EF_PAD_SAME, pth = ends_with(out, ".pth");
  bool torchvision = !strcmp(to, "torchvision"), timm = !strcmp(to, "timm"), lite = !strncmp(preset, "lite", 4);
  // torchvision builds b5-b7 with BN eps 1e-3, b0-b4 with 1e-5; timm's efficientnet_X with 1e-5,
  // its tf_efficientnet_X (TF "same" padding) with 1e-3; efficientnet_pytorch pads like TF, eps 1e-3.
  float eps = (torchvision ? preset[1] >= '5' : timm ? same : true) ? 1e-3f : 1e-5f;
  ef_effnet_config p;
  ef_effnet_preset(preset, &p);
  if (torchvision) {
    printf("  model = torchvision.models.efficientnet_%s(num_classes=%d)\n", preset, cfg->num_classes);
  } else if (timm) {
    printf("  model = timm.create_model(\"%sefficientnet_%s\", num_classes=%d)\n", same ? "tf_" : "", preset,
           cfg->num_classes);
  } else { // efficientnet_pytorch pads for the image size it is built for (its static "same" padding)
    printf("  model = %s.EfficientNet.from_name(\"efficientnet-%s\", num_classes=%d",
           lite ? "efficientnet_lite_pytorch" : "efficientnet_pytorch", preset, cfg->num_classes);
    if (cfg->resolution != p.resolution) printf(", image_size=%d", cfg->resolution);
    printf(")\n");
  }
  if (pth) printf("  model.load_state_dict(torch.load(\"%s\"), strict=True)\n", out);
  else
    printf("  model.load_state_dict({k: torch.as_tensor(v[()]) for k, v in h5py.File(\"%s\").items()}, strict=True)\n",
           out);
  if (headless)
    printf("  note: %s was imported without a classifier (--no-classifier): the classifier is an initialization\n", in);
  if (cfg->in_channels != 3)
    printf("  note: %d input channels: replace the stem convolution (3 in torchvision's and timm's) before loading\n",
           cfg->in_channels);
  if (torchvision && same)
    printf("  note: this model pads like TF (\"same\") and torchvision's pads symmetrically: the weights load, "
           "the outputs\n"
           "  differ (timm's tf_efficientnet_%s pads like TF: --to timm)\n",
           preset);
  if (!torchvision && !timm && !same)
    printf("  note: this model pads symmetrically and efficientnet_pytorch's like TF (\"same\"): the weights load, "
           "the\n  outputs differ (timm's efficientnet_%s pads symmetrically: --to timm)\n",
           preset);
  if (cfg->bn_eps != eps)
    printf(
        "  note: this model's BN eps is %g, that model's %g: set every BatchNorm2d's eps to %g for the same outputs\n",
        cfg->bn_eps, eps, cfg->bn_eps);
}

// The model of `in` (its description, at `image_size` when given) with the tensors of /model or
// /ema into a store on the CPU: *m's graph is the inference graph. Prints the problem and
// returns 1, or 0.
static int load(const char *in, const ef_weights_info *w, bool ema, long image_size, ef_store **s, ef_model_graph *m,
                ef_backend **be) {
  *s = ef_store_new();
  *be = NULL;
  memset(m, 0, sizeof *m);
  if (image_size && ef_model_check_size(&w->desc, (int)image_size) != EF_OK) return ef_report("export", 2);
  ef_model_graph_new(m, *s, &w->desc, &(ef_graph_opts){.batch = 1, .image_size = (int)image_size});
  *be = ef_cpu_backend_new(1);
  ef_status st = *be ? ef_store_bind(*s, *be) : EF_ERROR(EF_ERR_NOMEM, "cannot create the CPU backend");
  if (st == EF_OK) st = ef_model_load_weights(in, w, ema, NULL, *s);
  return st == EF_OK ? 0 : ef_report("export", 1);
}

static int export_torch(const export_opts *o, const char *in, const char *out, const ef_weights_info *w) {
  if (!ends_with(out, ".pth") && !ends_with(out, ".h5")) {
    fprintf(stderr, "effnet export: %s: the output must end in .pth (torch.save) or .h5 (one dataset per name)\n", out);
    return 2;
  }
  if (check_input(in, o->to, o->ema, w)) return 1;
  ef_store *store;
  ef_model_graph g;
  ef_backend *be;
  int rc = load(in, w, o->ema, 32, &store, &g, &be); // any size registers the parameters
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.export.%ld.h5", out, (long)getpid());
  const ef_effnet_config *cfg = &w->desc.cfg;
  if (!rc && ef_weights_save(tmp, store, cfg) != EF_OK) {
    rc = ef_report("export", 1);
  } else if (!rc && ef_run_converter((const char *[]){"--to", o->to, tmp, out, NULL}) != 0) {
    fprintf(stderr, "effnet export: writing %s failed (see above)\n", out);
    rc = 1;
  } else if (!rc) {
    printf("effnet export: %s (/%s, %zu parameters) from %s to %s under %s's names\n", cfg->name,
           o->ema ? "ema" : "model", ef_store_count(store, true), in, out, o->to);
    print_loading(o->to, in, out, cfg, w->headless);
  }
  unlink(tmp);
  ef_model_graph_free(&g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}

static int export_onnx(const export_opts *o, bool ema, const char *in, const char *out, const ef_weights_info *w) {
  if (!ends_with(out, ".onnx")) {
    fprintf(stderr, "effnet export: --to onnx needs an input .h5 and an output .onnx, not %s\n", out);
    return 2;
  }
  const ef_model_desc *d = &w->desc;
  if (o->normalization && !w->recorded_norm) {
    fprintf(stderr, "effnet export: %s records no normalization (mean, std) to include; drop --include-normalization\n",
            in);
    return 1;
  }
  ef_store *store;
  ef_model_graph g;
  ef_backend *be;
  int rc = load(in, w, ema, o->image_size, &store, &g, &be);
  const char *group = ema ? "ema" : "model";
  char source[4200];
  snprintf(source, sizeof source, "%s (/%s)", in, group);
  bool tiny = !strcmp(d->arch, "tiny");
  ef_onnx_opts oo = {.layout = strcmp(o->layout, "nhwc") ? EF_ONNX_NCHW : EF_ONNX_NHWC,
                     .keep_bn = o->keep_bn,
                     .pixel_max = !o->normalization                  ? 0
                                  : !strcmp(o->normalization, "0-1") ? 1
                                                                     : 255,
                     .mean = w->recorded_norm ? d->eval.mean : NULL,
                     .std = w->recorded_norm ? d->eval.std : NULL,
                     .cfg = tiny ? NULL : &d->cfg,
                     .class_names = d->class_names[0] ? d->class_names : NULL,
                     .source = source};
  if (!rc && ef_onnx_export(g.g, g.images, g.logits, store, &oo, out) != EF_OK) rc = ef_report("export", 1);
  if (!rc) {
    int c = d->in_channels, r = (int)g.images->shape[1];
    bool nhwc = oo.layout == EF_ONNX_NHWC;
    printf(
        "effnet export: %s (/%s, %zu parameters) from %s to %s: ONNX opset %d, images (N,%d,%d,%d) %s, logits (N,%d); "
        "batch norm %s\n",
        tiny ? "tiny" : d->cfg.name, group, ef_store_count(store, true), in, out, EF_ONNX_OPSET, nhwc ? r : c, r,
        nhwc ? c : r, nhwc ? "NHWC" : "NCHW", d->num_classes, oo.keep_bn ? "kept" : "folded into the convolutions");
    if (oo.pixel_max) printf("  images: pixels in [0, %g]; the model normalizes them\n", oo.pixel_max);
    else if (oo.mean)
      printf("  images: (pixels / 255 - mean) / std, mean %g,%g,%g, std %g,%g,%g (or --include-normalization)\n",
             oo.mean[0], oo.mean[1], oo.mean[2], oo.std[0], oo.std[1], oo.std[2]);
    printf("  onnxruntime.InferenceSession(\"%s\").run([\"logits\"], {\"images\": images})\n", out);
  }
  ef_model_graph_free(&g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}

int ef_cmd_export(int argc, char **argv) {
  export_opts o = {.layout = "nchw"};
  ef_flags f;
  ef_flags_init(&f, "export", usage_head, NULL);
  ef_flags_add(&f, export_flags, (int)(sizeof export_flags / sizeof export_flags[0]), &o);
  const char *paths[2];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, paths, 2);
  if (rc) return rc;
  bool onnx = o.to && !strcmp(o.to, "onnx");
  if (!o.to || (!onnx && strcmp(o.to, "torchvision") && strcmp(o.to, "timm") && strcmp(o.to, "efficientnet_pytorch")) ||
      !paths[1]) {
    fprintf(stderr, "effnet export: needs --to torchvision|timm|efficientnet_pytorch|onnx, an input .h5 and an output "
                    "file (see --help)\n");
    return 2;
  }
  bool onnx_flags = ef_flags_given(&f, "--layout") || o.keep_bn || o.normalization || o.image_size;
  if (!onnx && onnx_flags) {
    fprintf(stderr, "effnet export: --layout, --keep-bn, --include-normalization and --image-size are for --to onnx\n");
    return 2;
  }
  if ((rc = ef_output_allowed("export", paths[1], paths, 1, onnx ? EF_OUT_ONNX : EF_OUT_TORCH, o.force))) return rc;
  ef_weights_info *w = ef_xmalloc(sizeof *w);
  if (ef_weights_info_read(paths[0], w) != EF_OK) {
    free(w);
    return ef_report("export", 1);
  }
  // ONNX takes a checkpoint's EMA unless told otherwise; torchvision, timm and efficientnet_pytorch its raw weights.
  bool ema = ef_flags_given(&f, "--ema") ? o.ema : onnx && w->has_ema;
  if (onnx && ema && !w->has_ema) {
    fprintf(stderr, "effnet export: %s holds no EMA weights: drop --ema\n", paths[0]);
    rc = 1;
  } else {
    o.ema = ema;
    rc = onnx ? export_onnx(&o, ema, paths[0], paths[1], w) : export_torch(&o, paths[0], paths[1], w);
  }
  free(w);
  return rc;
}
