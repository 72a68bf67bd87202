// Command-line flags shared by the subcommands: "--name value" pairs described by a table, with
// range checks and one clear message per mistake; boolean flags take no value.
#ifndef EF_TOOLS_FLAGS_H
#define EF_TOOLS_FLAGS_H

#include <stdio.h>

typedef enum { EF_FLAG_STR, EF_FLAG_LONG, EF_FLAG_DOUBLE, EF_FLAG_U64, EF_FLAG_BOOL } ef_flag_kind;

typedef struct {
  const char *name;     // "--epochs"
  ef_flag_kind kind;    // dst: const char **, long *, double *, unsigned long long *, int *
  void *dst;
  double lo, hi;        // accepted range of LONG and DOUBLE values
} ef_flag;

// Parses argv[1..argc). Words not starting with "--" are positional arguments, up to
// `max_positional` of them, stored in order (the rest of `positional` is set to NULL).
// "--help" prints usage to stdout and exits 0. Returns 0, or 2 after printing
// "effnet <cmd>: <what is wrong>" to stderr.
int ef_flags_parse(const char *cmd, int argc, char **argv, const ef_flag *flags, int n_flags, const char **positional,
                   int max_positional, void (*usage)(FILE *));

#endif
