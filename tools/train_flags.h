// The flags of a training run (`effnet train`, and every command that trains with the same
// recipe): the table of rows that fills a trainer's configuration (train/trainer.h), the recipes,
// and the parse that applies a recipe, a resumed checkpoint's saved arguments and the command line
// in that order, each value remembering where it came from.
#ifndef EF_TOOLS_TRAIN_FLAGS_H
#define EF_TOOLS_TRAIN_FLAGS_H

#include "tools/flags.h"
#include "train/trainer.h"

// The trainer's configuration and the command's own values beside it.
typedef struct {
  ef_train_config t;
  const char *recipe, *resume;
  long stop_after, log_every;
  char resume_path[4200]; // the checkpoint --resume names (a folder's newest)
  char saved[8192];       // what checkpoints keep for --resume (t.args points here)
} ef_train_args;

// A fresh table of the training flags for command `cmd` (usage `head`) over o, whose values are
// `defaults` (NULL: the trainer's, ef_train_config_defaults); the recipes it knows. A command that
// trains (the scaling commands) adds its own table after it.
void ef_train_flags_init(ef_flags *f, ef_train_args *o, const char *cmd, const char *head,
                         const ef_train_config *defaults);

// A command that trains with the training flags: its name and usage, its defaults (NULL: the
// trainer's), and its own table of rows bound to `base` (NULL: none), reset to its defaults by
// `reset` before each pass.
typedef struct {
  const char *cmd, *head;
  const ef_train_config *defaults;
  const ef_flag *rows;
  int n;
  void *base;
  void (*reset)(void *base);
} ef_train_command;

// Parses `effnet train`'s arguments into a, with f holding the table and each value's origin
// (for the echo). Returns 0, or the exit status after a message (2: bad flags).
int ef_train_args_parse(int argc, char **argv, ef_train_args *a, ef_flags *f);
// The same for command u: the recipe, a resumed checkpoint's arguments and the command line, the
// checks of --gpus, --device, --init and the model; 0, or the exit status after a message.
int ef_train_args_parse_as(int argc, char **argv, ef_train_args *a, ef_flags *f, const ef_train_command *u);

#endif
