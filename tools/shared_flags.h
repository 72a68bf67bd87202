// The flag rows several commands share: the model (a preset or custom compound scaling, --phi
// with --alpha/--beta/--gamma, then overrides of any configuration field), bound to an
// ef_effnet_spec (models/efficientnet.h); and the device (--device, --precision, --threads),
// bound to an ef_device_spec (train/device.h).
#ifndef EF_TOOLS_SHARED_FLAGS_H
#define EF_TOOLS_SHARED_FLAGS_H

#include "models/efficientnet.h"
#include "tools/flags.h"
#include "train/device.h"

enum { EF_MODEL_FLAGS = 16 };
// Bind with ef_flags_add(f, ef_model_flags, EF_MODEL_FLAGS, &spec); its first row is a section.
extern const ef_flag ef_model_flags[EF_MODEL_FLAGS];

// The configuration of the spec (the preset `name` or --phi, then the overrides), or 2 after
// printing "effnet <cmd>: ...".
int ef_model_args_config(const char *cmd, const ef_effnet_spec *s, ef_effnet_config *out);

enum { EF_DEVICE_FLAGS = 5 };
// Bind with ef_flags_add(f, ef_device_flags, EF_DEVICE_FLAGS, &device_spec); its first row is a section.
extern const ef_flag ef_device_flags[EF_DEVICE_FLAGS];
// The device: 0, or 2 (bad flags) or 1 (it cannot start) after printing "effnet <cmd>: ...".
int ef_device_args_open(ef_device *d, const char *cmd, const ef_device_spec *s);

// "effnet <cmd>: <the last error>" to stderr; returns `code`.
int ef_report(const char *cmd, int code);

#endif
