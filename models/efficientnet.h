// The EfficientNet zoo: the B0 block table, compound scaling (round_filters, round_repeats), the
// presets B0-B8, L2 and Lite0-Lite4 (the edge variant: a switch of the configuration), custom phi,
// and the graph of a model from its configuration. Parameters carry timm's efficientnet_b* names.
#ifndef EF_MODELS_EFFICIENTNET_H
#define EF_MODELS_EFFICIENTNET_H

#include <stdbool.h>
#include <stdio.h>

#include "core/graph.h"
#include "core/log.h"
#include "layers/layers.h"

// A model configuration: a plain struct, saved with weights and checkpoints and read back.
typedef struct {
  char name[16];       // "b0".."b8", "l2", "lite0".."lite4", or "custom"
  double width, depth; // channel and repeat multipliers
  int resolution;      // the input side the model is meant for (any input size builds)
  float dropout;       // before the classifier, in training
  float drop_path;     // stochastic depth: block i of N drops its branch with drop_path * i / N
  int num_classes, in_channels;
  ef_padding padding; // symmetric (PyTorch, timm efficientnet_b*) or TF "SAME" (tf_efficientnet_b*)
  float bn_eps;       // PyTorch 1e-5; TF 1e-3
  float bn_momentum;  // PyTorch convention: 0.1 PyTorch, 0.01 TF (decay 0.99)
  // The variant switch (efficientnet_pytorch's relu_fn, use_se, fix_head_stem): the B-series is
  // swish, squeeze-excite, everything scaled; EfficientNet-Lite relu6, none, fixed.
  ef_act act;           // after every batch norm but the projections': EF_ACT_SWISH or EF_ACT_RELU6
  bool squeeze_excite;  // in every MBConv block
  bool fixed_stem_head; // stem 32 and head 1280 channels, and the first and last stages' repeats, not scaled
} ef_effnet_config;

// The compound-scaling coefficients: depth alpha^phi, width beta^phi, resolution gamma^phi.
typedef struct {
  double alpha, beta, gamma;
} ef_compound;
#define EF_COMPOUND_PAPER ((ef_compound){1.2, 1.1, 1.15})

// A preset: width, depth, resolution, dropout; with drop_path 0.2, 1000 classes, 3 channels.
// "b0".."b7" (the paper's Table 2), "b8" and "l2" (the published configurations beyond, as
// efficientnet_pytorch and timm build them): the B variant, symmetric padding, BN eps 1e-5 and
// momentum 0.1 (PyTorch's). "lite0".."lite4" (TF's efficientnet_lite_builder): the Lite variant.
ef_status ef_effnet_preset(const char *name, ef_effnet_config *out);
// The name of preset i (0, 1, ... in the order above), NULL past the last.
const char *ef_effnet_preset_name(int i);
// B0 scaled by phi: width beta^phi, depth alpha^phi, resolution round(224 gamma^phi); the other
// fields (dropout 0.2 included) as B0's.
void ef_effnet_from_phi(double phi, ef_compound k, ef_effnet_config *out);
// Switches cfg to a variant: "b" (swish, squeeze-excite, stem and head scaled; symmetric padding,
// BN eps 1e-5, momentum 0.1) or "lite" (relu6, no squeeze-excite, stem and head fixed; TF "same"
// padding, BN eps 1e-3, momentum 0.01, as the published Lite weights were trained).
ef_status ef_effnet_set_variant(ef_effnet_config *c, const char *variant);
// "b" or "lite" when cfg's switches are one of them, else NULL.
const char *ef_effnet_variant(const ef_effnet_config *c);
// The input sides an EfficientNet takes: its five stride-2 stages bring 32 pixels to 1.
#define EF_EFFNET_MIN_RESOLUTION 32
#define EF_EFFNET_MAX_RESOLUTION 4096

// A user error with a message if the configuration cannot build a model.
ef_status ef_effnet_validate(const ef_effnet_config *c);

// A model as a user asks for it: a preset, or B0 scaled by phi (with its bases), then overrides
// of any configuration field. What the commands' model flags fill in.
typedef struct {
  const char *name;                                             // a preset; NULL with phi
  const char *variant;                                          // "b" or "lite"; NULL unless given
  double phi, alpha, beta, gamma;                               // NAN unless given (the bases only with phi)
  double width, depth, dropout, drop_path, bn_eps, bn_momentum; // overrides: NAN unless given
  long resolution, classes, in_channels;                        // overrides: 0 unless given
  const char *padding;                                          // "symmetric" or "same"; NULL unless given
} ef_effnet_spec;

// An empty spec: nothing given.
ef_effnet_spec ef_effnet_spec_none(void);
// The configuration the spec asks for (the preset or phi, the variant, then the overrides), validated.
ef_status ef_effnet_spec_config(const ef_effnet_spec *s, ef_effnet_config *out);
// The spec's overrides alone, over an existing configuration (a pretrained model's), validated.
ef_status ef_effnet_spec_apply(const ef_effnet_spec *s, ef_effnet_config *out);
// Whether the spec overrides the architecture (phi, variant, width, depth, padding, input channels).
bool ef_effnet_spec_shapes(const ef_effnet_spec *s);

// TF's rounding: channels to a multiple of 8, never more than 10% below the scaled value;
// repeats rounded up.
int ef_round_filters(int filters, double width);
int ef_round_repeats(int repeats, double depth);

// A stage after scaling: `repeats` MBConv blocks, the first with `stride` and `in` channels.
typedef struct {
  int repeats, kernel, stride, expand, in, out;
} ef_effnet_stage;

#define EF_EFFNET_STAGES 7
typedef struct {
  ef_effnet_config cfg;
  int stem, head; // channels
  ef_effnet_stage stage[EF_EFFNET_STAGES];
  int blocks; // total MBConv blocks
} ef_effnet_arch;

void ef_effnet_arch_init(ef_effnet_arch *a, const ef_effnet_config *c);

// Builds the model of `cfg` into g on images (N,H,W,in_channels) and returns its logits
// (N, classes); the parameters are registered in g's store the first time. The layer context
// (the config's padding and BN settings, and the counts of parameters and multiply-adds) is
// returned through `ctx` when not NULL. When `summary` is set, it receives a line per block:
// name, operator, output shape, parameters, multiply-adds per image.
ef_tensor *ef_effnet_build(const ef_effnet_config *cfg, ef_graph *g, ef_tensor *images, bool training, FILE *summary,
                           ef_layer_ctx *ctx);

#endif
