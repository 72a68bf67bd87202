// The flag tables of flags.h: parsing into the bound structs with range and choice checks (one
// clear message per mistake), and the usage, the echo and the saved arguments from the rows.
#include "tools/flags.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

void ef_flags_init(ef_flags *f, const char *cmd, const char *usage_head, const char *usage_tail) {
  memset(f, 0, sizeof *f);
  f->cmd = cmd, f->usage_head = usage_head, f->usage_tail = usage_tail;
}

void ef_flags_recipes(ef_flags *f, const ef_recipe *recipes, int n) { f->recipes = recipes, f->n_recipes = n; }

// Row r of table t: where its value lives.
static void *slot(const ef_flags *f, int t, int r) { return (char *)f->base[t] + f->rows[t][r].offset; }

// The text's value into the row's slot; 2 after a message when it is not one the row accepts.
// `text` must outlive the parse (a copy in f->strings, a row's default, a recipe's word).
static int assign(ef_flags *f, int t, int r, const char *text, ef_flag_origin origin) {
  const ef_flag *fl = &f->rows[t][r];
  void *p = slot(f, t, r);
  if (fl->kind == EF_FLAG_STR && fl->choices) {
    size_t n = strlen(text);
    bool ok = false;
    for (const char *c = fl->choices; *c && !ok; c += strcspn(c, "|"), c += *c == '|')
      ok = strcspn(c, "|") == n && !strncmp(c, text, n);
    if (!ok) {
      fprintf(stderr, "effnet %s: %s must be ", f->cmd, fl->name);
      int k = 0, count = 1;
      for (const char *c = fl->choices; *c; c++) count += *c == '|';
      for (const char *c = fl->choices; *c; c += strcspn(c, "|"), c += *c == '|', k++)
        fprintf(stderr, "%s%.*s", k == 0 ? "" : k == count - 1 ? " or " : ", ", (int)strcspn(c, "|"), c);
      fprintf(stderr, ", not '%s'\n", text);
      return 2;
    }
  }
  char *end = NULL;
  errno = 0;
  double num = 0;
  bool ranged = fl->kind == EF_FLAG_LONG || fl->kind == EF_FLAG_DOUBLE;
  // Numbers are written plainly: no leading space, and unsigned ones in decimal digits only
  // (strtoull would accept "-1", octal "010" and hex).
  bool plain =
      !isspace((unsigned char)text[0]) && (fl->kind != EF_FLAG_U64 || strspn(text, "0123456789") == strlen(text));
  switch (fl->kind) {
  case EF_FLAG_STR: *(const char **)p = text; break;
  case EF_FLAG_BOOL: *(bool *)p = !strcmp(text, "on"); break;
  case EF_FLAG_U64: *(unsigned long long *)p = strtoull(text, &end, 10); break;
  case EF_FLAG_LONG: num = (double)(*(long *)p = strtol(text, &end, 10)); break;
  case EF_FLAG_DOUBLE: num = *(double *)p = strtod(text, &end); break;
  case EF_FLAG_SECTION: break;
  }
  if (fl->kind != EF_FLAG_STR && fl->kind != EF_FLAG_BOOL &&
      (errno || !end || *end || !*text || !plain || (ranged && !(num >= fl->lo && num <= fl->hi)))) {
    fprintf(stderr, "effnet %s: bad value '%s' for %s", f->cmd, text, fl->name);
    if (ranged) fprintf(stderr, " (expected a number in [%g, %g])", fl->lo, fl->hi);
    fputc('\n', stderr);
    return 2;
  }
  f->origin[t][r] = origin, f->text[t][r] = text;
  return 0;
}

// The size of a row's value in its struct.
static size_t value_size(ef_flag_kind kind) {
  switch (kind) {
  case EF_FLAG_STR: return sizeof(const char *);
  case EF_FLAG_LONG: return sizeof(long);
  case EF_FLAG_DOUBLE: return sizeof(double);
  case EF_FLAG_U64: return sizeof(unsigned long long);
  case EF_FLAG_BOOL: return sizeof(bool);
  case EF_FLAG_SECTION: return 0;
  }
  return 0;
}

void ef_flags_add(ef_flags *f, const ef_flag *rows, int n, void *base) {
  int t = f->n_tables++;
  EF_ASSERT(t < EF_FLAGS_MAX_TABLES && n <= EF_FLAGS_MAX_ROWS, "more than %d flag tables or %d rows",
            EF_FLAGS_MAX_TABLES, EF_FLAGS_MAX_ROWS);
  f->rows[t] = rows, f->n[t] = n, f->base[t] = base;
  for (int r = 0; r < n; r++) { // the defaults: the values the struct holds now
    const void *p = slot(f, t, r);
    char *text = f->def_text[t][r];
    _Static_assert(sizeof f->def_value[0][0] >= sizeof(double) && sizeof f->def_value[0][0] >= sizeof(void *), "room");
    memcpy(f->def_value[t][r], p, value_size(rows[r].kind));
    switch (rows[r].kind) {
    case EF_FLAG_STR:
      snprintf(text, sizeof f->def_text[0][0], "%s", *(const char *const *)p ? *(const char *const *)p : "");
      break;
    case EF_FLAG_LONG: snprintf(text, sizeof f->def_text[0][0], "%ld", *(const long *)p); break;
    case EF_FLAG_DOUBLE:
      snprintf(text, sizeof f->def_text[0][0], isnan(*(const double *)p) ? "" : "%g", *(const double *)p);
      break;
    case EF_FLAG_U64: snprintf(text, sizeof f->def_text[0][0], "%llu", *(const unsigned long long *)p); break;
    case EF_FLAG_BOOL: snprintf(text, sizeof f->def_text[0][0], "%s", *(const bool *)p ? "on" : "off"); break;
    case EF_FLAG_SECTION: text[0] = 0; break;
    }
    EF_ASSERT(rows[r].kind != EF_FLAG_STR || !*(const char *const *)p ||
                  strlen(*(const char *const *)p) < sizeof f->def_text[0][0],
              "%s's default is longer than the usage shows", rows[r].name);
    f->text[t][r] = text[0] ? text : NULL;
    f->origin[t][r] = EF_FROM_DEFAULT;
  }
}

// The row of `name` (or of "--no-name" for a BOOL when *negated is given): 1 when found.
static int find(const ef_flags *f, const char *name, int *t, int *r, bool *negated) {
  for (int k = 0; k < f->n_tables; k++)
    for (int i = 0; i < f->n[k]; i++) {
      const ef_flag *fl = &f->rows[k][i];
      if (fl->kind == EF_FLAG_SECTION) continue;
      bool neg = negated && fl->kind == EF_FLAG_BOOL && !strncmp(name, "--no-", 5) && !strcmp(name + 5, fl->name + 2);
      if (neg || !strcmp(name, fl->name)) {
        *t = k, *r = i;
        if (negated) *negated = neg;
        return 1;
      }
    }
  return 0;
}

// A copy of text in f->strings; NULL after a message when they are full.
static const char *keep(ef_flags *f, const char *text) {
  size_t len = strlen(text) + 1;
  if (f->used + len > sizeof f->strings) {
    fprintf(stderr, "effnet %s: the paths and names given take more than %zu bytes: use shorter paths\n", f->cmd,
            sizeof f->strings);
    return NULL;
  }
  char *copy = memcpy(f->strings + f->used, text, len);
  f->used += len;
  return copy;
}

int ef_flags_set(ef_flags *f, const char *name, const char *text, ef_flag_origin origin) {
  int t, r;
  if (!find(f, name, &t, &r, NULL)) {
    fprintf(stderr, "effnet %s: unknown flag '%s' (see effnet %s --help)\n", f->cmd, name, f->cmd);
    return 2;
  }
  const char *copy = keep(f, text);
  return copy ? assign(f, t, r, copy, origin) : 2;
}

int ef_flags_apply(ef_flags *f, int argc, char *const *argv, ef_flag_origin origin, const char **positional,
                   int max_positional) {
  int n_positional = 0;
  for (int i = 0; i < max_positional; i++) positional[i] = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      ef_flags_usage(f, stdout);
      exit(0);
    }
    if (strncmp(a, "--", 2)) {
      if (n_positional == max_positional) {
        fprintf(stderr, "effnet %s: unexpected argument '%s' (see effnet %s --help)\n", f->cmd, a, f->cmd);
        return 2;
      }
      positional[n_positional++] = a;
      continue;
    }
    int t, r;
    bool negated = false;
    if (!find(f, a, &t, &r, &negated)) {
      fprintf(stderr, "effnet %s: unknown flag '%s' (see effnet %s --help)\n", f->cmd, a, f->cmd);
      return 2;
    }
    if (f->rows[t][r].kind == EF_FLAG_BOOL) {
      assign(f, t, r, negated ? "off" : "on", origin);
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "effnet %s: %s needs a value\n", f->cmd, a);
      return 2;
    }
    const char *copy = keep(f, argv[++i]);
    if (!copy || assign(f, t, r, copy, origin)) return 2;
  }
  return 0;
}

int ef_flags_apply_recipe(ef_flags *f, const char *name) {
  for (int k = 0; k < f->n_recipes; k++) {
    if (strcmp(f->recipes[k].name, name)) continue;
    for (const char *const *v = f->recipes[k].values; *v; v += 2) {
      int t, r;
      EF_ASSERT(find(f, v[0], &t, &r, NULL) && !assign(f, t, r, v[1], EF_FROM_RECIPE), "recipe %s sets %s to %s", name,
                v[0], v[1]);
    }
    return 0;
  }
  fprintf(stderr, "effnet %s: there is no recipe '%s'\n", f->cmd, name);
  return 2;
}

int ef_flags_apply_saved(ef_flags *f, const char *saved) {
  // The words, one per line, kept in f->strings (the values point into them).
  const char *copy = keep(f, saved ? saved : "");
  if (!copy) return 2;
  enum { MAX_WORDS = 512 };
  char *words[MAX_WORDS + 1] = {"saved"}, *save = NULL;
  int n = 1;
  for (char *w = strtok_r((char *)copy, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
    if (n == MAX_WORDS + 1) {
      fprintf(stderr, "effnet %s: the saved arguments hold more than %d words\n", f->cmd, MAX_WORDS);
      return 2;
    }
    words[n++] = w;
  }
  // Values already copied: applied as given, not copied again.
  for (int i = 1; i < n; i++) {
    int t, r;
    bool negated = false;
    if (!find(f, words[i], &t, &r, &negated)) {
      fprintf(stderr, "effnet %s: the saved arguments hold '%s', which this effnet does not know\n", f->cmd, words[i]);
      return 2;
    }
    if (f->rows[t][r].kind == EF_FLAG_BOOL) {
      assign(f, t, r, negated ? "off" : "on", EF_FROM_RESUMED);
    } else if (i + 1 >= n || assign(f, t, r, words[++i], EF_FROM_RESUMED)) {
      if (i + 1 >= n) fprintf(stderr, "effnet %s: the saved arguments end without %s's value\n", f->cmd, words[i]);
      return 2;
    }
  }
  return 0;
}

ef_flag_origin ef_flags_origin(const ef_flags *f, const char *name) {
  int t, r;
  return find(f, name, &t, &r, NULL) ? f->origin[t][r] : EF_FROM_DEFAULT;
}

bool ef_flags_given(const ef_flags *f, const char *name) {
  ef_flag_origin o = ef_flags_origin(f, name);
  return o == EF_FROM_FLAG || o == EF_FROM_RESUMED;
}

void ef_flags_reset(ef_flags *f, const char *name) {
  int t, r;
  if (!find(f, name, &t, &r, NULL)) return;
  memcpy(slot(f, t, r), f->def_value[t][r], value_size(f->rows[t][r].kind));
  f->text[t][r] = f->def_text[t][r][0] ? f->def_text[t][r] : NULL;
  f->origin[t][r] = EF_FROM_DEFAULT;
}

void ef_flags_show(ef_flags *f, const char *name, const char *text) {
  int t, r;
  if (find(f, name, &t, &r, NULL)) f->text[t][r] = text;
}

// The values recipes give `name`: " official 0.016" and the like, into buf.
static void recipe_values(const ef_flags *f, const char *name, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int k = 0; k < f->n_recipes && used < len; k++)
    for (const char *const *v = f->recipes[k].values; *v && used < len; v += 2)
      if (!strcmp(v[0], name)) used += (size_t)snprintf(buf + used, len - used, "; %s %s", f->recipes[k].name, v[1]);
}

void ef_flags_usage(const ef_flags *f, FILE *out) {
  fputs(f->usage_head, out);
  bool bools = false;
  for (int t = 0; t < f->n_tables; t++)
    for (int r = 0; r < f->n[t]; r++) {
      const ef_flag *fl = &f->rows[t][r];
      if (fl->kind == EF_FLAG_SECTION) {
        fprintf(out, "\n%s\n", fl->name);
        continue;
      }
      bools |= fl->kind == EF_FLAG_BOOL;
      char head[64], recipes[256], def[320] = "";
      snprintf(head, sizeof head, "%s%s%s", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "");
      recipe_values(f, fl->name, recipes, sizeof recipes);
      const char *dt = f->def_text[t][r];
      size_t hl = fl->help ? strlen(fl->help) : 0;
      bool stated = hl && fl->help[hl - 1] == ']' && !recipes[0]; // "[1000]": the help says the default
      if (stated) dt = "";
      if (fl->kind != EF_FLAG_BOOL ? dt[0] || recipes[0] : !strcmp(dt, "on") || recipes[0])
        snprintf(def, sizeof def, "%s[%s%s]", fl->help && *fl->help ? "  " : "", dt[0] ? dt : "none", recipes);
      // The help's lines: the first beside the flag, the others under it; the default last.
      const char *h = fl->help ? fl->help : "";
      fprintf(out, "  %-21s %.*s", head, (int)strcspn(h, "\n"), h);
      for (h += strcspn(h, "\n"); *h == '\n'; h += strcspn(h, "\n")) {
        h++;
        fprintf(out, "\n  %-21s %.*s", "", (int)strcspn(h, "\n"), h);
      }
      fprintf(out, "%s\n", def);
    }
  if (bools)
    fprintf(out, "\nA flag without a value turns its option on; --no-NAME turns it off (also over a --resume).\n");
  if (f->usage_tail) fputs(f->usage_tail, out);
}

// A row's value as the echo shows it.
static const char *shown(const ef_flags *f, int t, int r) {
  if (f->rows[t][r].kind == EF_FLAG_BOOL) return *(const bool *)slot(f, t, r) ? "on" : "off";
  return f->text[t][r] ? f->text[t][r] : "-";
}

void ef_flags_echo(const ef_flags *f, FILE *out) {
  static const char *const from[] = {"default", "recipe", "resumed", "flag"};
  int width = 8, col = 0;
  for (int t = 0; t < f->n_tables; t++)
    for (int r = 0; r < f->n[t]; r++)
      if (f->rows[t][r].kind != EF_FLAG_SECTION && (int)strlen(shown(f, t, r)) > width)
        width = (int)strlen(shown(f, t, r));
  if (width > 22) width = 22; // longer values push their line out
  for (int t = 0; t < f->n_tables; t++)
    for (int r = 0; r < f->n[t]; r++) {
      if (f->rows[t][r].kind == EF_FLAG_SECTION) continue;
      fprintf(out, "%s%-17s %-*s %-7s", col ? "  |  " : "  ", f->rows[t][r].name, width, shown(f, t, r),
              from[f->origin[t][r]]);
      if ((col = !col) == 0) fputc('\n', out);
    }
  if (col) fputc('\n', out);
}

int ef_flags_saved(const ef_flags *f, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int t = 0; t < f->n_tables; t++)
    for (int r = 0; r < f->n[t] && used < len; r++) {
      const ef_flag *fl = &f->rows[t][r];
      if (!fl->saved || (f->origin[t][r] != EF_FROM_FLAG && f->origin[t][r] != EF_FROM_RESUMED)) continue;
      if (fl->kind == EF_FLAG_BOOL)
        used += (size_t)snprintf(buf + used, len - used, "--%s%s\n", *(const bool *)slot(f, t, r) ? "" : "no-",
                                 fl->name + 2);
      else used += (size_t)snprintf(buf + used, len - used, "%s\n%s\n", fl->name, f->text[t][r]);
    }
  if (used < len) return 0;
  fprintf(stderr,
          "effnet %s: the arguments take more than %zu bytes, more than a checkpoint keeps: use shorter paths\n",
          f->cmd, len - 1);
  return 2;
}
