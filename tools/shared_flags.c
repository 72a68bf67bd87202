// The shared flag rows, and the guard of the files commands write (see shared_flags.h).
#include "tools/shared_flags.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "models/weights.h"

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(ef_effnet_spec, kind, field)

const ef_flag ef_model_flags[EF_MODEL_FLAGS] = {
    EF_SECTION("model (a preset b0 ... b8, l2, lite0 ... lite4, or --phi):"),
    {ROW(EF_FLAG_DOUBLE, "--phi", phi), -4, 12, NULL, "F",
     "compound scaling of B0: width beta^F, depth alpha^F, resolution 224 gamma^F", true},
    {ROW(EF_FLAG_DOUBLE, "--alpha", alpha), 1, 4, NULL, "A", "depth base of --phi [1.2]", true},
    {ROW(EF_FLAG_DOUBLE, "--beta", beta), 1, 4, NULL, "B", "width base of --phi [1.1]", true},
    {ROW(EF_FLAG_DOUBLE, "--gamma", gamma), 1, 4, NULL, "G", "resolution base of --phi [1.15]", true},
    {ROW(EF_FLAG_STR, "--variant", variant), 0, 0, "b|lite", "V",
     "b: swish, squeeze-excite, stem and head scaled; lite: EfficientNet-Lite's\nrelu6, no squeeze-excite, stem and "
     "head fixed, TF padding and BN  [the preset's;\n--phi: b]",
     true},
    {ROW(EF_FLAG_DOUBLE, "--width", width), 0.01, 16, NULL, "W", "channel multiplier  [the preset's]", true},
    {ROW(EF_FLAG_DOUBLE, "--depth", depth), 0.01, 16, NULL, "D", "repeat multiplier  [the preset's]", true},
    {ROW(EF_FLAG_LONG, "--resolution", resolution), 32, 4096, NULL, "R",
     "the input side the model is made for  [the preset's]", true},
    {ROW(EF_FLAG_LONG, "--classes", classes), 1, 1 << 24, NULL, "K", "classifier outputs  [1000]", true},
    {ROW(EF_FLAG_LONG, "--in-channels", in_channels), 1, 64, NULL, "C", "image channels  [3]", true},
    {ROW(EF_FLAG_STR, "--padding", padding), 0, 0, "symmetric|same", "MODE",
     "symmetric (PyTorch/timm efficientnet_b*) or same (TF)  [B: symmetric; Lite: same]", true},
    {ROW(EF_FLAG_DOUBLE, "--bn-eps", bn_eps), 1e-12, 1, NULL, "F", "batch-norm epsilon  [B: 1e-5; Lite: 1e-3]", true},
    {ROW(EF_FLAG_DOUBLE, "--bn-momentum", bn_momentum), 1e-6, 1, NULL, "F",
     "batch-norm momentum (PyTorch convention)  [B: 0.1; Lite: 0.01]", true},
    {ROW(EF_FLAG_DOUBLE, "--dropout", dropout), 0, 0.99, NULL, "F",
     "before the classifier, in training  [the preset's]", true},
    {ROW(EF_FLAG_DOUBLE, "--drop-path", drop_path), 0, 0.99, NULL, "F",
     "stochastic depth rate of the last block  [0.2]", true},
};

int ef_model_args_config(const char *cmd, const ef_effnet_spec *s, ef_effnet_config *out) {
  return ef_effnet_spec_config(s, out) == EF_OK ? 0 : ef_report(cmd, 2);
}

#undef ROW
#define ROW(kind, name, field) name, kind, EF_FLAG_AT(ef_device_spec, kind, field)
const ef_flag ef_device_flags[EF_DEVICE_FLAGS] = {
    EF_SECTION("device:"),
    {ROW(EF_FLAG_STR, "--device", device), 0, 0, NULL, "D", "cpu, or cuda / cuda:N (GPU N)", true},
    {ROW(EF_FLAG_STR, "--precision", precision), 0, 0, NULL, "P",
     "f32; on CUDA also tf32 (f32 through tensor cores), bf16 or f16\n(16-bit activations, f32 weights, statistics and "
     "loss; f16 scales\nthe loss dynamically)",
     true},
    {ROW(EF_FLAG_LONG, "--threads", threads), 0, 4096, NULL, "N", "CPU threads (0: one per core)", true},
    {ROW(EF_FLAG_STR, "--algo-cache", algo_cache), 0, 0, NULL, "FILE",
     "CUDA: the file of cuDNN's (and effnet's) algorithm choices, timed once\nper shape and read by later "
     "processes; off: "
     "none  [$EFFNET_ALGO_CACHE, else\na training run's <out>/cuda-algos.tsv, else ~/.cache/effnet]",
     true},
};

#undef ROW
#define ROW(kind, name, field) name, kind, EF_FLAG_AT(ef_eval_spec, kind, field)
const ef_flag ef_eval_flags[EF_EVAL_FLAGS] = {
    EF_SECTION("the model's evaluation (its own unless given):"),
    {ROW(EF_FLAG_BOOL, "--ema", ema), 0, 0, NULL, NULL, "a checkpoint's EMA weights (when it has them)", false},
    {ROW(EF_FLAG_LONG, "--image-size", image_size), 0, 4096, NULL, "N", "input side (0: the model's)", false},
    {ROW(EF_FLAG_DOUBLE, "--crop-pct", crop_pct), 0, 1, NULL, "F",
     "centre crop over the resized shorter side (0: the model's)", false},
    {ROW(EF_FLAG_STR, "--interpolation", interpolation), 0, 0, "bilinear|bicubic", "I", "resampling  [the model's]",
     false},
};

int ef_device_args_open(ef_device *d, const char *cmd, const ef_device_spec *s) {
  ef_status st = ef_device_open(d, s, NULL);
  return st == EF_OK ? 0 : ef_report(cmd, st == EF_ERR_INVALID ? 2 : 1);
}

int ef_report(const char *cmd, int code) {
  fprintf(stderr, "effnet %s: %s\n", cmd, ef_last_error());
  return code;
}

// What each kind of output is, in words.
static const char *const out_kinds[] = {"an effnet weights file", "an effnet features file",
                                        "a torchvision, timm or efficientnet_pytorch export", "an ONNX model"};

// What a file is, in words, and whether it is of `kind`: effnet's HDF5 kinds, other HDF5, a
// PyTorch file (a zip archive, as torch.save writes), an ONNX model (protobuf, ir_version first).
static const char *file_kind(const char *path, ef_out_kind kind, bool *own) {
  ef_h5_kind h5 = ef_h5_file_kind(path);
  unsigned char head[4] = {0};
  FILE *f = h5 == EF_H5_NONE ? fopen(path, "rb") : NULL;
  size_t got = f ? fread(head, 1, sizeof head, f) : 0;
  if (f) fclose(f);
  bool zip = got == 4 && !memcmp(head, "PK\x03\x04", 4), onnx = got >= 1 && head[0] == 0x08;
  *own = kind == EF_OUT_WEIGHTS    ? h5 == EF_H5_WEIGHTS
         : kind == EF_OUT_FEATURES ? h5 == EF_H5_ARRAYS
         : kind == EF_OUT_TORCH    ? h5 == EF_H5_OTHER || zip
                                   : onnx;
  switch (h5) {
  case EF_H5_WEIGHTS: return out_kinds[EF_OUT_WEIGHTS];
  case EF_H5_CHECKPOINT: return "an effnet training checkpoint";
  case EF_H5_ARRAYS: return out_kinds[EF_OUT_FEATURES];
  case EF_H5_OTHER: return "an HDF5 file of other software";
  case EF_H5_NONE: break;
  }
  return zip ? "a zip archive (a PyTorch file?)" : *own ? out_kinds[kind] : "a file of another kind";
}

int ef_output_allowed(const char *cmd, const char *out, const char *const *inputs, int n, ef_out_kind kind,
                      bool force) {
  struct stat o, in;
  if (force || stat(out, &o) != 0) return 0; // nothing there yet
  for (int i = 0; i < n; i++)
    if (stat(inputs[i], &in) == 0 && in.st_dev == o.st_dev && in.st_ino == o.st_ino) {
      fprintf(stderr, "effnet %s: %s is the input %s: write elsewhere (or --force)\n", cmd, out, inputs[i]);
      return 2;
    }
  bool own;
  const char *is = S_ISREG(o.st_mode) ? file_kind(out, kind, &own) : (own = false, "not a regular file");
  if (own) return 0;
  fprintf(stderr, "effnet %s: %s is %s, not %s: give another name, or --force to replace it\n", cmd, out, is,
          out_kinds[kind]);
  return 2;
}
