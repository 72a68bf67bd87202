// EfficientNet B0-B8, L2, Lite0-Lite4 and custom phi (see efficientnet.h): presets, the variant
// switch, scaling, validation and the graph, block by block as in timm and torchvision.
#include "models/efficientnet.h"

#include <math.h>
#include <string.h>
#include <strings.h>

// B0 (paper Table 1): repeats, kernel, stride, expand, in, out. Stem 32, head 1280.
static const ef_effnet_stage b0_stages[EF_EFFNET_STAGES] = {
    {1, 3, 1, 1, 32, 16},  {2, 3, 2, 6, 16, 24},   {2, 5, 2, 6, 24, 40},   {3, 3, 2, 6, 40, 80},
    {3, 5, 1, 6, 80, 112}, {4, 5, 2, 6, 112, 192}, {1, 3, 1, 6, 192, 320},
};
#define B0_STEM 32
#define B0_HEAD 1280
#define B0_RESOLUTION 224

static const struct {
  const char *name;
  double width, depth;
  int resolution;
  float dropout;
  bool lite;
} presets[] = {
    {"b0", 1.0, 1.0, 224, 0.2f},          {"b1", 1.0, 1.1, 240, 0.2f},          {"b2", 1.1, 1.2, 260, 0.3f},
    {"b3", 1.2, 1.4, 300, 0.3f},          {"b4", 1.4, 1.8, 380, 0.4f},          {"b5", 1.6, 2.2, 456, 0.4f},
    {"b6", 1.8, 2.6, 528, 0.5f},          {"b7", 2.0, 3.1, 600, 0.5f},          {"b8", 2.2, 3.6, 672, 0.5f},
    {"l2", 4.3, 5.3, 800, 0.5f},          {"lite0", 1.0, 1.0, 224, 0.2f, true}, {"lite1", 1.0, 1.1, 240, 0.2f, true},
    {"lite2", 1.1, 1.2, 260, 0.3f, true}, {"lite3", 1.2, 1.4, 280, 0.3f, true}, {"lite4", 1.4, 1.8, 300, 0.3f, true},
};

// What each variant switches, and the conventions its published weights were trained with.
static const struct {
  const char *name;
  ef_act act;
  bool squeeze_excite, fixed_stem_head;
  ef_padding padding;
  float bn_eps, bn_momentum;
} variants[] = {
    {"b", EF_ACT_SWISH, true, false, EF_PAD_SYMMETRIC, 1e-5f, 0.1f},
    {"lite", EF_ACT_RELU6, false, true, EF_PAD_SAME, 1e-3f, 0.01f},
};

static void defaults(ef_effnet_config *c) {
  memset(c, 0, sizeof *c);
  c->drop_path = 0.2f;
  c->num_classes = 1000;
  c->in_channels = 3;
  ef_effnet_set_variant(c, "b");
}

ef_status ef_effnet_set_variant(ef_effnet_config *c, const char *variant) {
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
    if (strcasecmp(variant, variants[i].name)) continue;
    c->act = variants[i].act, c->squeeze_excite = variants[i].squeeze_excite;
    c->fixed_stem_head = variants[i].fixed_stem_head, c->padding = variants[i].padding;
    c->bn_eps = variants[i].bn_eps, c->bn_momentum = variants[i].bn_momentum;
    return EF_OK;
  }
  return EF_ERROR(EF_ERR_INVALID, "unknown variant '%s': use b or lite", variant);
}

const char *ef_effnet_variant(const ef_effnet_config *c) {
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (c->act == variants[i].act && c->squeeze_excite == variants[i].squeeze_excite &&
        c->fixed_stem_head == variants[i].fixed_stem_head)
      return variants[i].name;
  return NULL;
}

ef_status ef_effnet_preset(const char *name, ef_effnet_config *out) {
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
    if (strcasecmp(name, presets[i].name)) continue;
    defaults(out);
    if (presets[i].lite) ef_effnet_set_variant(out, "lite");
    snprintf(out->name, sizeof out->name, "%s", presets[i].name);
    out->width = presets[i].width;
    out->depth = presets[i].depth;
    out->resolution = presets[i].resolution;
    out->dropout = presets[i].dropout;
    return EF_OK;
  }
  return EF_ERROR(EF_ERR_INVALID,
                  "unknown model '%s': use b0 ... b8, l2 or lite0 ... lite4 (or --phi for custom compound scaling)",
                  name);
}

const char *ef_effnet_preset_name(int i) {
  return i >= 0 && i < (int)(sizeof presets / sizeof presets[0]) ? presets[i].name : NULL;
}

void ef_effnet_from_phi(double phi, ef_compound k, ef_effnet_config *out) {
  defaults(out);
  snprintf(out->name, sizeof out->name, "custom");
  out->width = pow(k.beta, phi);
  out->depth = pow(k.alpha, phi);
  double r = B0_RESOLUTION * pow(k.gamma, phi); // may be out of range: validate says so
  out->resolution = r < 1 ? 0 : r > 1e6 ? 1000000 : (int)lround(r);
  out->dropout = 0.2f;
}

ef_status ef_effnet_validate(const ef_effnet_config *c) {
  if (!(c->width > 0 && c->width <= 16) || !(c->depth > 0 && c->depth <= 16))
    return EF_ERROR(EF_ERR_INVALID, "width %g and depth %g must be in (0, 16]", c->width, c->depth);
  if (c->resolution < EF_EFFNET_MIN_RESOLUTION || c->resolution > EF_EFFNET_MAX_RESOLUTION)
    return EF_ERROR(EF_ERR_INVALID, "resolution %d must be in [%d, %d] (the network downsamples 32 times)",
                    c->resolution, EF_EFFNET_MIN_RESOLUTION, EF_EFFNET_MAX_RESOLUTION);
  if (!(c->dropout >= 0 && c->dropout < 1) || !(c->drop_path >= 0 && c->drop_path < 1))
    return EF_ERROR(EF_ERR_INVALID, "dropout %g and drop-path %g must be in [0, 1)", c->dropout, c->drop_path);
  if (c->num_classes < 1 || c->num_classes > (1 << 24) || c->in_channels < 1 || c->in_channels > 1024)
    return EF_ERROR(EF_ERR_INVALID,
                    "%d classes and %d input channels: need 1 to 16777216 classes and 1 to 1024 channels",
                    c->num_classes, c->in_channels);
  if (!(c->bn_eps > 0) || !(c->bn_momentum > 0 && c->bn_momentum <= 1))
    return EF_ERROR(EF_ERR_INVALID, "BN eps %g must be > 0 and momentum %g in (0, 1] (PyTorch convention)", c->bn_eps,
                    c->bn_momentum);
  if (c->act != EF_ACT_SWISH && c->act != EF_ACT_RELU6)
    return EF_ERROR(EF_ERR_INVALID, "the activation must be swish or relu6");
  return EF_OK;
}

ef_effnet_spec ef_effnet_spec_none(void) {
  return (ef_effnet_spec){.phi = NAN,
                          .alpha = NAN,
                          .beta = NAN,
                          .gamma = NAN,
                          .width = NAN,
                          .depth = NAN,
                          .dropout = NAN,
                          .drop_path = NAN,
                          .bn_eps = NAN,
                          .bn_momentum = NAN};
}

ef_status ef_effnet_spec_config(const ef_effnet_spec *s, ef_effnet_config *out) {
  bool bases = !isnan(s->alpha) || !isnan(s->beta) || !isnan(s->gamma);
  if (!isnan(s->phi)) {
    if (s->name) return EF_ERROR(EF_ERR_INVALID, "give a model name or --phi, not both");
    ef_compound k = EF_COMPOUND_PAPER;
    if (!isnan(s->alpha)) k.alpha = s->alpha;
    if (!isnan(s->beta)) k.beta = s->beta;
    if (!isnan(s->gamma)) k.gamma = s->gamma;
    ef_effnet_from_phi(s->phi, k, out);
  } else if (bases) {
    return EF_ERROR(EF_ERR_INVALID, "--alpha, --beta and --gamma scale --phi; give --phi too");
  } else if (!s->name) {
    return EF_ERROR(EF_ERR_INVALID, "which model? give b0 ... b8, l2, lite0 ... lite4, or --phi F");
  } else {
    EF_TRY(ef_effnet_preset(s->name, out));
  }
  return ef_effnet_spec_apply(s, out);
}

ef_status ef_effnet_spec_apply(const ef_effnet_spec *s, ef_effnet_config *out) {
  const char *was = ef_effnet_variant(out);
  if (s->variant) EF_TRY(ef_effnet_set_variant(out, s->variant));
  if (!isnan(s->width)) out->width = s->width;
  if (!isnan(s->depth)) out->depth = s->depth;
  if (!isnan(s->dropout)) out->dropout = (float)s->dropout;
  if (!isnan(s->drop_path)) out->drop_path = (float)s->drop_path;
  if (!isnan(s->bn_eps)) out->bn_eps = (float)s->bn_eps;
  if (!isnan(s->bn_momentum)) out->bn_momentum = (float)s->bn_momentum;
  if (s->resolution) out->resolution = (int)s->resolution;
  if (s->classes) out->num_classes = (int)s->classes;
  if (s->in_channels) out->in_channels = (int)s->in_channels;
  if (s->padding) {
    if (strcmp(s->padding, "symmetric") && strcmp(s->padding, "same"))
      return EF_ERROR(EF_ERR_INVALID, "--padding must be symmetric or same, not '%s'", s->padding);
    out->padding = strcmp(s->padding, "same") ? EF_PAD_SYMMETRIC : EF_PAD_SAME;
  }
  bool custom = !isnan(s->width) || !isnan(s->depth) || s->resolution || (s->variant && was != ef_effnet_variant(out));
  size_t len = strlen(out->name);
  if (custom && isnan(s->phi) && !strstr(out->name, "-custom"))
    snprintf(out->name + len, sizeof out->name - len, "-custom");
  return ef_effnet_validate(out);
}

bool ef_effnet_spec_shapes(const ef_effnet_spec *s) {
  return !isnan(s->phi) || s->variant || !isnan(s->width) || !isnan(s->depth) || s->padding || s->in_channels;
}

int ef_round_filters(int filters, double width) {
  double scaled = filters * width;
  int rounded = (int)(scaled + 4) / 8 * 8;
  if (rounded < 8) rounded = 8;
  if (rounded < 0.9 * scaled) rounded += 8;
  return rounded;
}

int ef_round_repeats(int repeats, double depth) { return (int)ceil(depth * repeats); }

void ef_effnet_arch_init(ef_effnet_arch *a, const ef_effnet_config *c) {
  a->cfg = *c;
  bool fixed = c->fixed_stem_head;
  a->stem = fixed ? B0_STEM : ef_round_filters(B0_STEM, c->width);
  a->head = fixed ? B0_HEAD : ef_round_filters(B0_HEAD, c->width);
  a->blocks = 0;
  for (int s = 0; s < EF_EFFNET_STAGES; s++) {
    ef_effnet_stage st = b0_stages[s];
    st.in = s ? ef_round_filters(st.in, c->width) : a->stem;
    st.out = ef_round_filters(st.out, c->width);
    bool end = s == 0 || s == EF_EFFNET_STAGES - 1; // TF's Lite keeps these repeats with the stem and head
    if (!(fixed && end)) st.repeats = ef_round_repeats(st.repeats, c->depth);
    a->stage[s] = st;
    a->blocks += st.repeats;
  }
}

// One summary line: the layer's output shape and what it added to the context's counts.
static void summary_line(FILE *f, const char *name, const char *op, const ef_tensor *y, const ef_layer_ctx *c,
                         int64_t params0, int64_t macs0) {
  if (!f) return;
  char shape[64];
  fprintf(f, "  %-14s %-22s %-18s %10lld params %9.2fM MACs\n", name, op, ef_shape_str(y, shape, sizeof shape),
          (long long)(c->params - params0), (double)(c->macs - macs0) / (double)y->shape[0] / 1e6);
}

ef_tensor *ef_effnet_build(const ef_effnet_config *cfg, ef_graph *g, ef_tensor *images, bool training, FILE *summary,
                           ef_layer_ctx *ctx) {
  EF_ASSERT(images->ndim == 4 && images->shape[3] == cfg->in_channels, "images must be (N,H,W,%d)", cfg->in_channels);
  ef_effnet_arch arch;
  ef_effnet_arch_init(&arch, cfg);
  const ef_effnet_arch *a = &arch;
  ef_layer_ctx local = {
      .g = g, .training = training, .padding = cfg->padding, .bn_eps = cfg->bn_eps, .bn_momentum = cfg->bn_momentum};
  ef_layer_ctx *c = ctx ? ctx : &local;
  *c = local;
  int64_t p0 = c->params, m0 = c->macs;
  char op[48];
  ef_tensor *x = ef_layer_conv_bn(c, "conv_stem", "bn1", images, a->stem, 3, 2, 1, cfg->act);
  snprintf(op, sizeof op, "conv3x3 s2, BN, %s", ef_act_name(cfg->act));
  summary_line(summary, "stem", op, x, c, p0, m0);
  int block = 0;
  for (int s = 0; s < EF_EFFNET_STAGES; s++) {
    const ef_effnet_stage *st = &a->stage[s];
    for (int i = 0; i < st->repeats; i++, block++) {
      ef_mbconv_spec spec = {.in = i ? st->out : st->in,
                             .out = st->out,
                             .expand = st->expand,
                             .kernel = st->kernel,
                             .stride = i ? 1 : st->stride,
                             .act = cfg->act,
                             .drop_path = cfg->drop_path * (float)block / (float)a->blocks};
      if (cfg->squeeze_excite) spec.se_reduced = spec.in / 4 > 1 ? spec.in / 4 : 1; // max(1, int(block input * 0.25))
      char prefix[32];
      snprintf(prefix, sizeof prefix, "blocks.%d.%d", s, i);
      snprintf(op, sizeof op, "MBConv%d k%dx%d s%d", spec.expand, spec.kernel, spec.kernel, spec.stride);
      p0 = c->params, m0 = c->macs;
      x = ef_layer_mbconv(c, prefix, x, &spec);
      summary_line(summary, prefix, op, x, c, p0, m0);
    }
  }
  p0 = c->params, m0 = c->macs;
  ef_tensor *logits = ef_layer_head(c, x, a->head, cfg->num_classes, cfg->dropout, cfg->act);
  summary_line(summary, "head", "conv1x1, pool, FC", logits, c, p0, m0);
  return logits;
}
