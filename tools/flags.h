// Command-line flags as tables: a flag is one row (name, type, where its value goes in a plain
// config struct, range or choices, help text, whether a run saves it for --resume). A value's
// default is what the struct holds when its table is added (the library's defaults, e.g.
// ef_train_config_defaults). The parser, the usage text, the echo of a configuration with each
// value's origin (default, recipe, resumed, flag) and the saved arguments come from the rows.
#ifndef EF_TOOLS_FLAGS_H
#define EF_TOOLS_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

// STR: const char * (the parser copies the text), LONG: long, DOUBLE: double, U64: unsigned long
// long, BOOL: bool (--name sets it, --no-name clears it). A SECTION row is a heading in the usage.
typedef enum { EF_FLAG_STR, EF_FLAG_LONG, EF_FLAG_DOUBLE, EF_FLAG_U64, EF_FLAG_BOOL, EF_FLAG_SECTION } ef_flag_kind;
typedef enum { EF_FROM_DEFAULT, EF_FROM_RECIPE, EF_FROM_RESUMED, EF_FROM_FLAG } ef_flag_origin;

typedef struct {
  const char *name; // "--epochs" (a SECTION's heading)
  ef_flag_kind kind;
  size_t offset;       // of the value in the struct its table is bound to
  double lo, hi;       // accepted range of LONG and DOUBLE values
  const char *choices; // STR: the accepted values, "sgd|rmsprop|adamw"; NULL: any text
  const char *arg;     // the value's placeholder in the usage ("N", "PATH")
  const char *help;    // the usage text; "\n" starts a line under the first
  bool saved;          // a training run keeps it in its checkpoints, and --resume replays it
} ef_flag;

// A row's offset of `field` in struct T, refused at compile time unless the field has the size
// `kind` reads and writes (an int bound to a LONG row was written 8 bytes wide).
#define EF_FLAG_SIZE(kind)                                                                                             \
  ((kind) == EF_FLAG_STR      ? sizeof(const char *)                                                                   \
   : (kind) == EF_FLAG_LONG   ? sizeof(long)                                                                           \
   : (kind) == EF_FLAG_DOUBLE ? sizeof(double)                                                                         \
   : (kind) == EF_FLAG_U64    ? sizeof(unsigned long long)                                                             \
                              : sizeof(bool))
#define EF_FLAG_AT(T, kind, field)                                                                                     \
  (offsetof(T, field) + 0 * sizeof(char[sizeof(((T *)0)->field) == EF_FLAG_SIZE(kind) ? 1 : -1]))

#define EF_SECTION(title)                                                                                              \
  { title, EF_FLAG_SECTION, 0, 0, 0, NULL, NULL, NULL, false }

// Values for some flags applied before the command line (their origin: recipe).
typedef struct {
  const char *name;          // "official"
  const char *const *values; // "--lr", "0.016", "--warmup", "5", ..., NULL
} ef_recipe;

enum { EF_FLAGS_MAX_TABLES = 6, EF_FLAGS_MAX_ROWS = 96 };

// One parse: the tables bound to their structs, and each row's origin and text.
typedef struct {
  const char *cmd;        // "train", for messages
  const char *usage_head; // the usage's first lines, before the flags
  const char *usage_tail; // after them (may be NULL)
  const ef_flag *rows[EF_FLAGS_MAX_TABLES];
  int n[EF_FLAGS_MAX_TABLES];
  void *base[EF_FLAGS_MAX_TABLES];
  int n_tables;
  const ef_recipe *recipes;
  int n_recipes;
  ef_flag_origin origin[EF_FLAGS_MAX_TABLES][EF_FLAGS_MAX_ROWS];
  const char *text[EF_FLAGS_MAX_TABLES][EF_FLAGS_MAX_ROWS];           // each value as given (NULL: unset)
  char def_text[EF_FLAGS_MAX_TABLES][EF_FLAGS_MAX_ROWS][64];          // the defaults, as text ("" unset)
  unsigned char def_value[EF_FLAGS_MAX_TABLES][EF_FLAGS_MAX_ROWS][8]; // and as the struct held them
  char strings[32768];                                                // copies of the texts given
  size_t used;
} ef_flags;

// Starts a parse of command `cmd`; tables are added next.
void ef_flags_init(ef_flags *f, const char *cmd, const char *usage_head, const char *usage_tail);
// Binds a table of rows to the struct at base, whose values now are the defaults.
void ef_flags_add(ef_flags *f, const ef_flag *rows, int n, void *base);
// The recipes that ef_flags_apply_recipe may name.
void ef_flags_recipes(ef_flags *f, const ef_recipe *recipes, int n);

// Applies "--name value" words (argv[0] skipped) with the given origin: a checkpoint's saved
// ones (resumed), or the command line (flag). Words that do not start with "--" are positional,
// up to max_positional of them (positional may be NULL when 0), stored in order and the rest of
// positional set to NULL. "--help" prints the usage and exits 0. Returns 0, or 2 after printing
// "effnet <cmd>: <what is wrong>".
int ef_flags_apply(ef_flags *f, int argc, char *const *argv, ef_flag_origin origin, const char **positional,
                   int max_positional);
// The recipe `name`'s values (origin recipe); 2 after a message when there is no such recipe.
int ef_flags_apply_recipe(ef_flags *f, const char *name);
// The words of saved arguments ("--name\nvalue\n...", as ef_flags_saved writes them), resumed.
int ef_flags_apply_saved(ef_flags *f, const char *saved);

// Where the value of flag `name` came from (EF_FROM_DEFAULT for an unknown name).
ef_flag_origin ef_flags_origin(const ef_flags *f, const char *name);
// Whether `name` was given on the command line or resumed (not a default or a recipe's value).
bool ef_flags_given(const ef_flags *f, const char *name);
// Sets flag `name` from text, as if given with `origin`; 2 after a message when the text is bad.
int ef_flags_set(ef_flags *f, const char *name, const char *text, ef_flag_origin origin);
// Resets flag `name` to its default (origin default).
void ef_flags_reset(ef_flags *f, const char *name);
// Shows `text` for flag `name` in the echo instead of its value, which stays: for a default that
// another flag overrides ("--init's" for --model).
void ef_flags_show(ef_flags *f, const char *name, const char *text);

void ef_flags_usage(const ef_flags *f, FILE *out);
// The values as a table, two flags a line: name, value ("-" when unset) and origin.
void ef_flags_echo(const ef_flags *f, FILE *out);
// The saved rows that were given on the command line or resumed, "--name\nvalue\n" (a BOOL:
// "--name\n" or "--no-name\n"), into buf; 0, or 2 after a message when they take len bytes or more.
int ef_flags_saved(const ef_flags *f, char *buf, size_t len);

#endif
