// The shared flag rows (see shared_flags.h).
#include "tools/shared_flags.h"

#define ROW(kind, name, field) name, kind, offsetof(ef_effnet_spec, field)

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
    {ROW(EF_FLAG_LONG, "--resolution", resolution), 32, 4096, NULL, "R", "the input side the model is made for", true},
    {ROW(EF_FLAG_LONG, "--classes", classes), 1, 1 << 24, NULL, "K", "classifier outputs  [1000]", true},
    {ROW(EF_FLAG_LONG, "--in-channels", in_channels), 1, 64, NULL, "C", "image channels  [3]", true},
    {ROW(EF_FLAG_STR, "--padding", padding), 0, 0, "symmetric|same", "MODE",
     "symmetric (PyTorch/timm efficientnet_b*) or same (TF)  [symmetric]", true},
    {ROW(EF_FLAG_DOUBLE, "--bn-eps", bn_eps), 1e-12, 1, NULL, "F", "batch-norm epsilon  [1e-5]", true},
    {ROW(EF_FLAG_DOUBLE, "--bn-momentum", bn_momentum), 1e-6, 1, NULL, "F",
     "batch-norm momentum (PyTorch convention)  [0.1]", true},
    {ROW(EF_FLAG_DOUBLE, "--dropout", dropout), 0, 0.99, NULL, "F",
     "before the classifier, in training  [the preset's]", true},
    {ROW(EF_FLAG_DOUBLE, "--drop-path", drop_path), 0, 0.99, NULL, "F",
     "stochastic depth rate of the last block  [0.2]", true},
};

int ef_model_args_config(const char *cmd, const ef_effnet_spec *s, ef_effnet_config *out) {
  return ef_effnet_spec_config(s, out) == EF_OK ? 0 : ef_report(cmd, 2);
}

#undef ROW
#define ROW(kind, name, field) name, kind, offsetof(ef_device_spec, field)
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

int ef_device_args_open(ef_device *d, const char *cmd, const ef_device_spec *s) {
  ef_status st = ef_device_open(d, s, NULL);
  return st == EF_OK ? 0 : ef_report(cmd, st == EF_ERR_INVALID ? 2 : 1);
}

int ef_report(const char *cmd, int code) {
  fprintf(stderr, "effnet %s: %s\n", cmd, ef_last_error());
  return code;
}
