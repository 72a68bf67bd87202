// `effnet export`: writes the EfficientNet of a weights file or a training checkpoint (its /model,
// or with --ema its /ema) as a state_dict that torchvision's or timm's efficientnet_bX loads with
// strict=True: a .pth (torch.save) or a plain .h5, one dataset per name. The model built from the
// file's configuration loads the tensors first, checking every one; tools/convert_weights.py
// renames them (torchvision) and writes the result.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "train/model.h"

typedef struct {
  const char *to;
  bool ema;
} export_opts;

static const ef_flag export_flags[] = {
    {"--to", EF_FLAG_STR, offsetof(export_opts, to), 0, 0, NULL, "NAMES",
     "torchvision (features.*, classifier.1.*) or timm (as effnet stores them)", false},
    {"--ema", EF_FLAG_BOOL, offsetof(export_opts, ema), 0, 0, NULL, NULL,
     "a checkpoint's EMA weights instead of its raw ones", false},
};

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

// Checks what IN is against what was asked. Prints the problem and returns 1, or 0.
static int check_input(const char *in, bool ema, const ef_weights_info *w) {
  if (!strcmp(w->desc.arch, "tiny")) {
    fprintf(stderr, "effnet export: %s is a checkpoint of the tiny net; torchvision and timm build EfficientNets only\n", in);
    return 1;
  }
  if (ema && !w->checkpoint) {
    fprintf(stderr, "effnet export: %s is a weights file, not a training checkpoint: it holds no EMA (drop --ema)\n", in);
    return 1;
  }
  if (ema && !w->has_ema) {
    fprintf(stderr, "effnet export: %s was trained without an EMA (--ema 0): drop --ema\n", in);
    return 1;
  }
  if (!preset_of(&w->desc.cfg)) {
    fprintf(stderr,
            "effnet export: %s holds a custom EfficientNet (width %g, depth %g) that torchvision's and timm's\n"
            "efficientnet_b0 ... b7 do not build; its /model group already holds timm's names in PyTorch's layout\n",
            in, w->desc.cfg.width, w->desc.cfg.depth);
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

int ef_cmd_export(int argc, char **argv) {
  export_opts o = {0};
  ef_flags f;
  ef_flags_init(&f, "export",
                "usage: effnet export --to torchvision|timm [--ema] IN.h5 OUT.pth|OUT.h5\n\nWrites an effnet weights file "
                "or training checkpoint as a state_dict of torchvision's or timm's\nefficientnet_bX (strict=True loads "
                "it): OUT.pth with torch.save, or OUT.h5 with one dataset per\nname ({k: torch.as_tensor(v[()]) for k, v "
                "in h5py.File(OUT).items()}). Prints how to load it.\nNeeds /usr/bin/python3 with h5py, and torch for "
                ".pth (Debian: python3-h5py python3-torch).\n\n",
                NULL);
  ef_flags_add(&f, export_flags, (int)(sizeof export_flags / sizeof export_flags[0]), &o);
  const char *paths[2];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, paths, 2);
  if (rc) return rc;
  if (!o.to || (strcmp(o.to, "torchvision") && strcmp(o.to, "timm")) || !paths[1]) {
    fprintf(stderr, "effnet export: needs --to torchvision|timm, an input .h5 and an output .pth or .h5 (see --help)\n");
    return 2;
  }
  if (!ends_with(paths[1], ".pth") && !ends_with(paths[1], ".h5")) {
    fprintf(stderr, "effnet export: %s: the output must end in .pth (torch.save) or .h5 (one dataset per name)\n", paths[1]);
    return 2;
  }
  ef_weights_info w;
  if (ef_weights_info_read(paths[0], &w) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
    return 1;
  }
  if (check_input(paths[0], o.ema, &w)) return 1;
  // The model's store, filled from the file (every tensor checked), written as plain weights.
  ef_store *store = ef_store_new();
  ef_model_graph g;
  ef_model_graph_new(&g, store, &w.desc, &(ef_graph_opts){.batch = 1, .image_size = 32});
  ef_backend *be = ef_cpu_backend_new(1);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.export.%ld.h5", paths[1], (long)getpid());
  const ef_effnet_config *cfg = &w.desc.cfg;
  rc = 1;
  if (!be || ef_store_bind(store, be) != EF_OK || ef_model_load_weights(paths[0], &w, o.ema, NULL, store) != EF_OK ||
      ef_weights_save(tmp, store, cfg) != EF_OK) {
    fprintf(stderr, "effnet export: %s\n", ef_last_error());
  } else if (ef_run_converter("--to", o.to, tmp, paths[1], NULL) != 0) {
    fprintf(stderr, "effnet export: writing %s failed (see above)\n", paths[1]);
  } else {
    printf("effnet export: %s (/%s, %zu parameters) from %s to %s under %s's names\n", cfg->name, o.ema ? "ema" : "model",
           ef_store_count(store, true), paths[0], paths[1], o.to);
    print_loading(o.to, paths[0], paths[1], cfg, w.headless);
    rc = 0;
  }
  unlink(tmp);
  ef_model_graph_free(&g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
