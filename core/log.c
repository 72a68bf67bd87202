// Error reporting: the per-thread last-error message, fatal aborts for internal bugs, and the
// checked allocators used for small bookkeeping structures.
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_rank = -1;
static _Thread_local char last_error[1024];

void ef_log_set_rank(int rank) { log_rank = rank; }

ef_status ef_error_at(const char *file, int line, ef_status st, const char *fmt, ...) {
  // Formatted apart first: the arguments may include the previous message (ef_last_error()).
  char msg[sizeof last_error];
  int n = snprintf(msg, sizeof msg, "%s:%d: ", file, line);
  if (n < 0 || (size_t)n >= sizeof msg) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  memcpy(last_error, msg, sizeof msg);
  return st;
}

const char *ef_last_error(void) { return last_error; }

ef_status ef_error_pass(ef_status st, const char *message) {
  snprintf(last_error, sizeof last_error, "%s", message);
  return st;
}

static _Noreturn void fatal(const char *file, int line, const char *cond, const char *fmt, va_list ap) {
  char rank[32] = "";
  if (log_rank >= 0) snprintf(rank, sizeof rank, " [rank %d]", log_rank);
  fprintf(stderr, "effnet: internal error at %s:%d%s: ", file, line, rank);
  if (cond) fprintf(stderr, "assertion '%s' failed: ", cond);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  fflush(stderr);
  abort();
}

_Noreturn void ef_fatal_at(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fatal(file, line, NULL, fmt, ap);
}

_Noreturn void ef_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fatal(file, line, cond, fmt, ap);
}

void *ef_xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) EF_FATAL("out of memory allocating %zu bytes", bytes);
  return p;
}

char *ef_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(ef_xmalloc(n), s, n);
}

char *ef_path_join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = ef_xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

void *ef_aligned_alloc(size_t bytes) {
  void *p = NULL;
  return posix_memalign(&p, 256, bytes ? bytes : 256) == 0 ? p : NULL;
}

void *ef_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) EF_FATAL("out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *ef_xrealloc(void *p, size_t bytes) {
  void *q = realloc(p, bytes ? bytes : 1);
  if (!q) EF_FATAL("out of memory reallocating to %zu bytes", bytes);
  return q;
}
