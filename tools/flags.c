// The flag parser of flags.h.
#include "tools/flags.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int ef_flags_parse(const char *cmd, int argc, char **argv, const ef_flag *flags, int n_flags, const char **positional,
                   int max_positional, void (*usage)(FILE *)) {
  int n_positional = 0;
  for (int i = 0; i < max_positional; i++) positional[i] = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (strncmp(a, "--", 2)) {
      if (n_positional == max_positional) {
        fprintf(stderr, "effnet %s: unexpected argument '%s' (see effnet %s --help)\n", cmd, a, cmd);
        return 2;
      }
      positional[n_positional++] = a;
      continue;
    }
    int f = 0;
    while (f < n_flags && strcmp(a, flags[f].name)) f++;
    if (f == n_flags) {
      fprintf(stderr, "effnet %s: unknown flag '%s' (see effnet %s --help)\n", cmd, a, cmd);
      return 2;
    }
    const ef_flag *fl = &flags[f];
    if (fl->kind == EF_FLAG_BOOL) {
      *(int *)fl->dst = 1;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "effnet %s: %s needs a value\n", cmd, a);
      return 2;
    }
    const char *v = argv[++i];
    char *end = NULL;
    // Numbers are written plainly: no leading space, and unsigned ones in decimal digits only
    // (strtoull would accept "-1", octal "010" and hex).
    bool plain = !isspace((unsigned char)v[0]) && (fl->kind != EF_FLAG_U64 || strspn(v, "0123456789") == strlen(v));
    errno = 0;
    double num = 0;
    bool ranged = true;
    switch (fl->kind) {
    case EF_FLAG_STR: *(const char **)fl->dst = v; continue;
    case EF_FLAG_U64: *(unsigned long long *)fl->dst = strtoull(v, &end, 10), ranged = false; break;
    case EF_FLAG_LONG: num = (double)(*(long *)fl->dst = strtol(v, &end, 10)); break;
    default: num = *(double *)fl->dst = strtod(v, &end); break;
    }
    if (errno || !end || *end || !*v || !plain || (ranged && !(num >= fl->lo && num <= fl->hi))) {
      fprintf(stderr, "effnet %s: bad value '%s' for %s", cmd, v, a);
      if (ranged) fprintf(stderr, " (expected a number in [%g, %g])", fl->lo, fl->hi);
      fputc('\n', stderr);
      return 2;
    }
  }
  return 0;
}
