// `effnet import`: converts a torchvision, timm or efficientnet_pytorch EfficientNet state_dict (.pth),
// or Keras's EfficientNetBx weights (.h5), into effnet's HDF5 weights. tools/convert_weights.py
// renames the tensors by table into a temporary file; the model built here from MODEL and its flags
// then loads it, checking every tensor, and saves it atomically with its configuration, the
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
#include "tools/shared_flags.h"
#include "train/model.h"

#ifndef EFFNET_TOOLS_DIR
#define EFFNET_TOOLS_DIR "tools"
#endif
#ifndef EFFNET_INSTALLED_TOOLS_DIR
#define EFFNET_INSTALLED_TOOLS_DIR "/usr/local/share/effnet"
#endif

typedef struct {
  const char *source, *model;
  bool no_classifier, force, advprop;
  ef_effnet_spec spec;
} import_opts;

static const ef_flag import_flags[] = {
    {"--from", EF_FLAG_STR, EF_FLAG_AT(import_opts, EF_FLAG_STR, source), 0, 0,
     "torchvision|timm|efficientnet_pytorch|keras", "SOURCE",
     "whose file: a torchvision, timm or efficientnet_pytorch (or its Lite\nport's) state_dict, or Keras's weights",
     false},
    {"--model", EF_FLAG_STR, EF_FLAG_AT(import_opts, EF_FLAG_STR, model), 0, 0, NULL, "MODEL",
     "b0 ... b8, l2, lite0 ... lite4 (or --phi F)", false},
    {"--advprop", EF_FLAG_BOOL, EF_FLAG_AT(import_opts, EF_FLAG_BOOL, advprop), 0, 0, NULL, NULL,
     "efficientnet_pytorch's AdvProp weights: they normalize as 2x - 1\n(mean 0.5, std 0.5)", false},
    {"--no-classifier", EF_FLAG_BOOL, EF_FLAG_AT(import_opts, EF_FLAG_BOOL, no_classifier), 0, 0, NULL, NULL,
     "accept a file without the classifier (Keras's _notop files): it keeps\nits initialization (seed 0) and the file "
     "records classifier = absent\n(a file with a classifier imports it as usual)",
     false},
    EF_FORCE_FLAG(import_opts, force),
};

static const char *const usage_head =
    "usage: effnet import --from torchvision|timm|efficientnet_pytorch|keras --model MODEL [flags] IN OUT.h5\n"
    "\n"
    "Converts an EfficientNet's weights into effnet's HDF5, checking every tensor against the model:\n"
    "a PyTorch state_dict (.pth) of torchvision, timm or efficientnet_pytorch (B0-B8, L2, and its Lite\n"
    "port's Lite0-Lite4), or a Keras EfficientNetBx weights file (.h5 of Keras 2's save_weights or Keras\n"
    "3's legacy format, or Keras 3's .weights.h5). torchvision's b5-b7 record BN eps 1e-3 and momentum\n"
    "0.01 (as torchvision builds them); timm's tf_efficientnet_b* need --padding same --bn-eps 1e-3;\n"
    "efficientnet_pytorch's and Keras's models record padding same, BN eps 1e-3 and momentum 0.01\n"
    "unless the flags say otherwise. The file is a model like any other effnet weights file: it records\n"
    "the normalization the weights expect (ImageNet's for PyTorch, AdvProp's with --advprop, TF's Lite\n"
    "builder's for Lite, Keras's Normalization layer for Keras), the evaluation transform (torchvision's\n"
    "own for its presets, efficientnet_pytorch's for its models) and, for 1000 classes, the ImageNet class\n"
    "names, so that predict, eval and features take it as it is.\n"
    "Needs /usr/bin/python3 with h5py and numpy, and torch for .pth (Debian: python3-h5py python3-torch).\n"
    "\n";

int ef_run_converter(const char *const *args) {
  // EFFNET_TOOLS_DIR, else the source tree this effnet was built from, else its installed copy.
  const char *dir = getenv("EFFNET_TOOLS_DIR") ? getenv("EFFNET_TOOLS_DIR") : EFFNET_TOOLS_DIR;
  char script[4096];
  snprintf(script, sizeof script, "%s/convert_weights.py", dir);
  if (!getenv("EFFNET_TOOLS_DIR") && access(script, R_OK) != 0)
    snprintf(script, sizeof script, "%s/convert_weights.py", EFFNET_INSTALLED_TOOLS_DIR);
  enum { MAX_ARGS = 16 };
  char *argv[MAX_ARGS + 3] = {"python3", script};
  for (int i = 0; i < MAX_ARGS && args[i]; i++) argv[i + 2] = (char *)args[i];
  pid_t pid = fork();
  if (pid == 0) {
    execv("/usr/bin/python3", argv);
    perror("effnet: cannot run /usr/bin/python3 (install python3-h5py, and python3-torch for .pth files)");
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ef_cmd_import(int argc, char **argv) {
  import_opts o = {.spec = ef_effnet_spec_none()};
  ef_flags f;
  ef_flags_init(&f, "import", usage_head, NULL);
  ef_flags_add(&f, import_flags, (int)(sizeof import_flags / sizeof import_flags[0]), &o);
  ef_flags_add(&f, ef_model_flags, EF_MODEL_FLAGS, &o.spec);
  const char *paths[2];
  ef_effnet_config cfg;
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, paths, 2);
  if (rc) return rc;
  if (!o.source || !paths[1]) {
    fprintf(stderr,
            "effnet import: needs --from torchvision|timm|efficientnet_pytorch|keras, an input file and an output .h5 "
            "(see --help)\n");
    return 2;
  }
  o.spec.name = o.model;
  if ((rc = ef_model_args_config("import", &o.spec, &cfg)) ||
      (rc = ef_output_allowed("import", paths[1], paths, 1, EF_OUT_WEIGHTS, o.force)))
    return rc;
  // torchvision builds b5-b7 with BatchNorm2d(eps=0.001, momentum=0.01), b0-b4 with the defaults
  // (decided by the preset asked for: overrides rename the configuration "b5-custom"). Keras and
  // efficientnet_pytorch build every model TF's way: "same" padding, BN eps 1e-3 and momentum 0.01.
  const char *source = o.source, *model = o.model;
  bool keras = !strcmp(source, "keras"), tf = keras || !strcmp(source, "efficientnet_pytorch");
  bool tf_bn = tf || (!strcmp(source, "torchvision") && model &&
                      (!strcasecmp(model, "b5") || !strcasecmp(model, "b6") || !strcasecmp(model, "b7")));
  if (tf_bn && isnan(o.spec.bn_eps)) cfg.bn_eps = 1e-3f;
  if (tf_bn && isnan(o.spec.bn_momentum)) cfg.bn_momentum = 0.01f;
  if (tf && !o.spec.padding) cfg.padding = EF_PAD_SAME;

  char tmp[4096], repeats[64] = "";
  snprintf(tmp, sizeof tmp, "%s.convert.%ld.h5", paths[1], (long)getpid());
  ef_effnet_arch arch; // efficientnet_pytorch numbers the blocks through the network: the stages' repeats place them
  ef_effnet_arch_init(&arch, &cfg);
  for (int s = 0; s < EF_EFFNET_STAGES; s++)
    snprintf(repeats + strlen(repeats), sizeof repeats - strlen(repeats), "%s%d", s ? "," : "", arch.stage[s].repeats);
  const char *args[10] = {"--from", source, paths[0], tmp, "--repeats", repeats};
  int n = 6;
  if (o.advprop) args[n++] = "--advprop";
  if (model) {
    args[n++] = "--model";
    args[n++] = model;
  }
  if (ef_run_converter(args) != 0) {
    unlink(tmp);
    fprintf(stderr, "effnet import: converting %s failed (see above)\n", paths[0]);
    return 1;
  }
  // What the converter found: the normalization, the source, whether the classifier came, and
  // where it knows them, the class names and the evaluation transform.
  ef_model_desc *d = ef_xmalloc(sizeof *d);
  ef_model_desc_effnet(d, &cfg);
  char mean[64], std[64], src[32], classifier[16], interp[16] = "";
  ef_attr attrs[8] = {
      {.name = "mean", .kind = EF_ATTR_STRING, .s = mean, .cap = sizeof mean},
      {.name = "std", .kind = EF_ATTR_STRING, .s = std, .cap = sizeof std},
      {.name = "source", .kind = EF_ATTR_STRING, .s = src, .cap = sizeof src},
      {.name = "classifier", .kind = EF_ATTR_STRING, .s = classifier, .cap = sizeof classifier},
      {.name = "class_names",
       .kind = EF_ATTR_STRING,
       .s = d->class_names,
       .cap = sizeof d->class_names,
       .optional = true},
      {.name = "crop_pct", .kind = EF_ATTR_DOUBLE, .optional = true},
      {.name = "interpolation", .kind = EF_ATTR_STRING, .s = interp, .cap = sizeof interp, .optional = true},
      {.name = "image_size", .kind = EF_ATTR_INT, .optional = true}};
  ef_store *store = ef_store_new();
  ef_model_graph g;
  ef_model_graph_new(&g, store, d, &(ef_graph_opts){.batch = 1, .image_size = 32}); // registers the parameters
  ef_backend *be = ef_cpu_backend_new(1);
  rc = 1;
  ef_status st = ef_weights_read_attrs(tmp, attrs, 8);
  if (st == EF_OK && attrs[7].found && (attrs[7].i < 1 || attrs[7].i > 8192))
    st = EF_ERROR(EF_ERR_FORMAT, "%s: image_size %lld", tmp, (long long)attrs[7].i);
  if (st == EF_OK) {
    if (attrs[7].found) d->eval.size = (int)attrs[7].i;
    if (attrs[5].found) d->eval.crop_pct = attrs[5].d;
    if (attrs[6].found) d->eval.interp = strcmp(interp, "bilinear") ? EF_INTERP_BICUBIC : EF_INTERP_BILINEAR;
    st = ef_model_desc_set_norm(d, mean, std, tmp);
  }
  if (st == EF_OK) st = ef_model_desc_validate(d, tmp);
  bool headless = st == EF_OK && !strcmp(classifier, "absent");
  if (st != EF_OK) {
    fprintf(stderr, "effnet import: %s (is tools/convert_weights.py from this effnet?)\n", ef_last_error());
  } else if (headless && !o.no_classifier) {
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
      fprintf(stderr, "effnet import: %s\n(that file was converted from %s: is it a %s %s%s?)\n", ef_last_error(),
              paths[0], source, cfg.name, keras ? " weights file" : " state_dict");
    } else if (ef_model_save(paths[1], store, d, attrs + 2, 2) != EF_OK) {
      fprintf(stderr, "effnet import: %s\n", ef_last_error());
    } else {
      char tdesc[256];
      ef_transform_describe(&d->eval, tdesc, sizeof tdesc);
      printf("effnet import: %s %s (%zu parameters, %d tensors) from %s to %s; padding %s, BN eps %g momentum %g; "
             "mean %s, std %s%s\n  evaluation: %s; %s\n",
             source, cfg.name, ef_store_count(store, true), store->n, paths[0], paths[1],
             cfg.padding == EF_PAD_SAME ? "same" : "symmetric", cfg.bn_eps, cfg.bn_momentum, mean, std,
             headless ? "; no classifier: initialized (seed 0)" : "", tdesc,
             d->class_names[0] ? "class names recorded" : "no class names (predict prints class numbers)");
      rc = 0;
    }
  }
  free(d);
  unlink(tmp);
  ef_model_graph_free(&g);
  ef_store_free(store);
  ef_backend_free(be);
  return rc;
}
