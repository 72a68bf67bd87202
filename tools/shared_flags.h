// The flag rows several commands share: the model (a preset or custom compound scaling, --phi
// with --alpha/--beta/--gamma, then overrides of any configuration field), bound to an
// ef_effnet_spec (models/efficientnet.h); the device (--device, --precision, --threads), bound
// to an ef_device_spec (train/device.h); --strict-images; and the guard of the files they write.
#ifndef EF_TOOLS_SHARED_FLAGS_H
#define EF_TOOLS_SHARED_FLAGS_H

#include "models/efficientnet.h"
#include "tools/flags.h"
#include "train/device.h"
#include "train/model.h"

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

enum { EF_EVAL_FLAGS = 5 };
// How a weights file is evaluated (eval, predict, features), bound to an ef_eval_spec
// (train/model.h); its first row is a section.
extern const ef_flag ef_eval_flags[EF_EVAL_FLAGS];

// --strict-images, bound to a bool field of struct T (every command that reads image files
// through the loader); `saved` as ef_flag's.
#define EF_STRICT_IMAGES_FLAG(T, field, saved)                                                                             \
  {                                                                                                                        \
    "--strict-images", EF_FLAG_BOOL, EF_FLAG_AT(T, EF_FLAG_BOOL, field), 0, 0, NULL, NULL,                                 \
        "a JPEG whose data libjpeg warns about (and decodes around, as PIL\ndoes) counts as corrupt: skipped and counted", \
        saved                                                                                                              \
  }

// --force, bound to a bool field of struct T: what ef_output_allowed refuses without it.
#define EF_FORCE_FLAG(T, field)                                                                                        \
  {                                                                                                                    \
    "--force", EF_FLAG_BOOL, EF_FLAG_AT(T, EF_FLAG_BOOL, field), 0, 0, NULL, NULL,                                     \
        "write over an existing file of another kind, or over the input", false                                        \
  }

// The kinds of file the commands write.
typedef enum { EF_OUT_WEIGHTS, EF_OUT_FEATURES, EF_OUT_TORCH, EF_OUT_ONNX } ef_out_kind;
// Whether `cmd` may write `out`: never one of its n inputs (the same file under any name), and
// where it exists, only a file of the kind `cmd` writes; --force (`force`) allows both. 0, or 2
// after a message that says what `out` is.
int ef_output_allowed(const char *cmd, const char *out, const char *const *inputs, int n, ef_out_kind kind, bool force);

// "effnet <cmd>: <the last error>" to stderr; returns `code`.
int ef_report(const char *cmd, int code);

#endif
