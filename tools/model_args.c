// Model selection flags (see model_args.h).
#include "tools/model_args.h"

#include <math.h>
#include <string.h>

void ef_model_args_init(ef_model_args *m, ef_flag *out) {
  *m = (ef_model_args){.phi = NAN, .alpha = NAN, .beta = NAN, .gamma = NAN, .width = NAN, .depth = NAN,
                       .dropout = NAN, .drop_path = NAN, .bn_eps = NAN, .bn_momentum = NAN};
  const ef_flag flags[EF_MODEL_FLAGS] = {
      {"--phi", EF_FLAG_DOUBLE, &m->phi, -4, 12},           {"--alpha", EF_FLAG_DOUBLE, &m->alpha, 1, 4},
      {"--beta", EF_FLAG_DOUBLE, &m->beta, 1, 4},           {"--gamma", EF_FLAG_DOUBLE, &m->gamma, 1, 4},
      {"--width", EF_FLAG_DOUBLE, &m->width, 0.01, 16},     {"--depth", EF_FLAG_DOUBLE, &m->depth, 0.01, 16},
      {"--resolution", EF_FLAG_LONG, &m->resolution, 32, 4096}, {"--classes", EF_FLAG_LONG, &m->classes, 1, 1 << 24},
      {"--in-channels", EF_FLAG_LONG, &m->in_channels, 1, 64},  {"--padding", EF_FLAG_STR, &m->padding, 0, 0},
      {"--bn-eps", EF_FLAG_DOUBLE, &m->bn_eps, 1e-12, 1},   {"--bn-momentum", EF_FLAG_DOUBLE, &m->bn_momentum, 1e-6, 1},
      {"--drop-path", EF_FLAG_DOUBLE, &m->drop_path, 0, 0.99}, {"--dropout", EF_FLAG_DOUBLE, &m->dropout, 0, 0.99},
  };
  memcpy(out, flags, sizeof flags);
}

int ef_model_args_config(const char *cmd, const char *name, const ef_model_args *m, ef_effnet_config *out) {
  bool bases = !isnan(m->alpha) || !isnan(m->beta) || !isnan(m->gamma);
  if (!isnan(m->phi)) {
    if (name) {
      fprintf(stderr, "effnet %s: give a model name or --phi, not both\n", cmd);
      return 2;
    }
    ef_compound k = EF_COMPOUND_PAPER;
    if (!isnan(m->alpha)) k.alpha = m->alpha;
    if (!isnan(m->beta)) k.beta = m->beta;
    if (!isnan(m->gamma)) k.gamma = m->gamma;
    ef_effnet_from_phi(m->phi, k, out);
  } else if (bases) {
    fprintf(stderr, "effnet %s: --alpha, --beta and --gamma scale --phi; give --phi too\n", cmd);
    return 2;
  } else if (!name) {
    fprintf(stderr, "effnet %s: which model? give b0 ... b7, or --phi F\n", cmd);
    return 2;
  } else if (ef_effnet_preset(name, out) != EF_OK) {
    fprintf(stderr, "effnet %s: %s\n", cmd, ef_last_error());
    return 2;
  }
  return ef_model_args_apply(cmd, m, out);
}

int ef_model_args_apply(const char *cmd, const ef_model_args *m, ef_effnet_config *out) {
  if (!isnan(m->width)) out->width = m->width;
  if (!isnan(m->depth)) out->depth = m->depth;
  if (!isnan(m->dropout)) out->dropout = (float)m->dropout;
  if (!isnan(m->drop_path)) out->drop_path = (float)m->drop_path;
  if (!isnan(m->bn_eps)) out->bn_eps = (float)m->bn_eps;
  if (!isnan(m->bn_momentum)) out->bn_momentum = (float)m->bn_momentum;
  if (m->resolution) out->resolution = (int)m->resolution;
  if (m->classes) out->num_classes = (int)m->classes;
  if (m->in_channels) out->in_channels = (int)m->in_channels;
  if (m->padding) {
    if (strcmp(m->padding, "symmetric") && strcmp(m->padding, "same")) {
      fprintf(stderr, "effnet %s: --padding must be symmetric (PyTorch) or same (TF), not '%s'\n", cmd, m->padding);
      return 2;
    }
    out->padding = strcmp(m->padding, "same") ? EF_PAD_SYMMETRIC : EF_PAD_SAME;
  }
  bool custom = !isnan(m->width) || !isnan(m->depth) || m->resolution;
  if (custom && isnan(m->phi) && !strstr(out->name, "-custom")) snprintf(out->name + strlen(out->name), sizeof out->name - strlen(out->name), "-custom");
  if (ef_effnet_validate(out) != EF_OK) {
    fprintf(stderr, "effnet %s: %s\n", cmd, ef_last_error());
    return 2;
  }
  return 0;
}

void ef_model_args_usage(FILE *f) {
  fprintf(f,
          "model (a preset b0 ... b7, or --phi):\n"
          "  --phi F               compound scaling of B0: width beta^F, depth alpha^F, resolution 224 gamma^F\n"
          "  --alpha A --beta B --gamma G   scaling bases  [1.2, 1.1, 1.15]\n"
          "  --width W --depth D --resolution R   override the multipliers and the input side\n"
          "  --classes K           classifier outputs  [1000]\n"
          "  --in-channels C       image channels  [3]\n"
          "  --padding MODE        symmetric (PyTorch/timm efficientnet_b*) or same (TF)  [symmetric]\n"
          "  --bn-eps F --bn-momentum F   batch norm (PyTorch momentum convention)  [1e-5, 0.1]\n"
          "  --dropout F           before the classifier, in training  [the preset's]\n"
          "  --drop-path F         stochastic depth rate of the last block  [0.2]\n");
}
