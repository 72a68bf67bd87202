// Choosing a model on the command line: a preset (b0 ... b7) or custom compound scaling (--phi,
// with --alpha/--beta/--gamma), then overrides of any configuration field.
#ifndef EF_TOOLS_MODEL_ARGS_H
#define EF_TOOLS_MODEL_ARGS_H

#include "models/efficientnet.h"
#include "tools/flags.h"

typedef struct {
  double phi, alpha, beta, gamma;            // NAN unless given (the bases only with --phi)
  double width, depth, dropout, drop_path;   // overrides: NAN unless given
  double bn_eps, bn_momentum;
  long resolution, classes, in_channels;     // overrides: 0 unless given
  const char *padding;                       // "symmetric" or "same", NULL unless given
} ef_model_args;

#define EF_MODEL_FLAGS 14
// Unset values, and the table entries of the model flags (EF_MODEL_FLAGS of them) at `out`.
void ef_model_args_init(ef_model_args *m, ef_flag *out);
// The configuration: the preset `name` (may be NULL with --phi), then the overrides; validated.
// On a mistake prints "effnet <cmd>: ..." and returns 2.
int ef_model_args_config(const char *cmd, const char *name, const ef_model_args *m, ef_effnet_config *out);
// The overrides alone, over an existing configuration (a pretrained model's); validated.
int ef_model_args_apply(const char *cmd, const ef_model_args *m, ef_effnet_config *out);
// The lines of --help that describe the model flags.
void ef_model_args_usage(FILE *f);

#endif
