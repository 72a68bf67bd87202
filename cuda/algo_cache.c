// The file of convolution algorithm choices (see algo_cache.h): reading it, appending to it under
// an exclusive lock with the first line of a key winning, and its default place.
#include "cuda/algo_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER                                                                                                         \
  "# effnet convolution algorithms v1: key, algorithm (-1: effnet's own), math, workspace, deterministic, ms\n"

static void warn_once(ef_algo_cache *c, const char *what) {
  if (c->warned) return;
  c->warned = true;
  fprintf(stderr, "effnet: warning: the algorithm cache %s: %s\n", c->path, what);
}

static ef_algo_entry *lookup(const ef_algo_cache *c, const char *key) {
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->e[i].key, key)) return &c->e[i];
  return NULL;
}

// Adds e unless its key is there already (the first wins); returns the entry kept.
static ef_algo_entry *add(ef_algo_cache *c, const ef_algo_entry *e) {
  ef_algo_entry *had = lookup(c, e->key);
  if (had) return had;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->e = ef_xrealloc(c->e, sizeof *c->e * (size_t)c->cap);
  }
  c->e[c->n] = *e;
  return &c->e[c->n++];
}

// One line without its newline: key, algorithm, math, workspace, deterministic, ms.
static bool parse_line(char *line, ef_algo_entry *e) {
  char *f[6];
  f[0] = line;
  for (int i = 1; i < 6; i++) {
    char *tab = strchr(f[i - 1], '\t');
    if (!tab) return false;
    *tab = '\0';
    f[i] = tab + 1;
  }
  if (strchr(f[5], '\t') || strlen(f[0]) >= sizeof e->key || !f[0][0]) return false;
  char *end[5];
  long algo = strtol(f[1], &end[0], 10), math = strtol(f[2], &end[1], 10);
  unsigned long long ws = strtoull(f[3], &end[2], 10);
  long det = strtol(f[4], &end[3], 10);
  double ms = strtod(f[5], &end[4]);
  for (int i = 0; i < 5; i++)
    if (end[i] == f[i + 1] || *end[i]) return false;
  if (algo < EF_ALGO_EFFNET || algo > 1000 || math < 0 || math > 16 || (det != 0 && det != 1) || !(ms >= 0))
    return false;
  *e = (ef_algo_entry){.algo = (int)algo, .math = (int)math, .workspace = (size_t)ws, .deterministic = det, .ms = ms};
  snprintf(e->key, sizeof e->key, "%s", f[0]);
  return true;
}

// Reads the lines appended to the file since the last read (whole lines only).
static ef_status read_new(ef_algo_cache *c, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return EF_ERROR(EF_ERR_IO, "cannot read %s: %s", c->path, strerror(errno));
  if (st.st_size < c->read_to) c->read_to = 0; // replaced by a shorter file: read it again (the first entries stay)
  size_t n = (size_t)(st.st_size - c->read_to);
  if (!n) return EF_OK;
  char *buf = ef_xmalloc(n + 1);
  ssize_t got = pread(fd, buf, n, c->read_to);
  if (got != (ssize_t)n) {
    free(buf);
    return EF_ERROR(EF_ERR_IO, "cannot read %s: %s", c->path, got < 0 ? strerror(errno) : "short read");
  }
  buf[n] = '\0';
  size_t at = 0;
  if (c->read_to == 0) {
    if (n < strlen(HEADER) || memcmp(buf, HEADER, strlen(HEADER))) {
      free(buf);
      return EF_ERROR(EF_ERR_IO,
                      "%s is not an effnet algorithm cache (its first line differs): remove it, or give "
                      "another file",
                      c->path);
    }
    at = strlen(HEADER);
  }
  int bad = 0;
  for (char *nl; (nl = memchr(buf + at, '\n', n - at)); at = (size_t)(nl - buf) + 1) {
    *nl = '\0';
    ef_algo_entry e;
    if (parse_line(buf + at, &e)) add(c, &e);
    else bad++;
  }
  c->read_to += (long)at;
  free(buf);
  if (bad) {
    char what[96];
    snprintf(what, sizeof what, "%d line(s) do not parse and were skipped", bad);
    warn_once(c, what);
  }
  return EF_OK;
}

// Locks the whole file (F_RDLCK or F_WRLCK), waiting for other processes.
static bool lock(int fd, short type) {
  struct flock fl = {.l_type = type, .l_whence = SEEK_SET};
  while (fcntl(fd, F_SETLKW, &fl) != 0)
    if (errno != EINTR) return false;
  return true;
}

ef_status ef_algo_cache_open(ef_algo_cache *c, const char *path) {
  *c = (ef_algo_cache){0};
  if (!path) return EF_OK;
  c->path = ef_xstrdup(path);
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    if (errno == ENOENT) return EF_OK;
    ef_status st = EF_ERROR(EF_ERR_IO, "cannot open the algorithm cache %s: %s", path, strerror(errno));
    ef_algo_cache_close(c);
    return st;
  }
  ef_status st = lock(fd, F_RDLCK) ? read_new(c, fd) : EF_ERROR(EF_ERR_IO, "cannot lock %s: %s", path, strerror(errno));
  close(fd);
  if (st != EF_OK) ef_algo_cache_close(c);
  return st;
}

void ef_algo_cache_close(ef_algo_cache *c) {
  free(c->path);
  free(c->e);
  *c = (ef_algo_cache){0};
}

ef_algo_entry *ef_algo_cache_find(ef_algo_cache *c, const char *key) {
  ef_algo_entry *e = lookup(c, key);
  if (e || !c->path) return e;
  int fd = open(c->path, O_RDONLY);
  if (fd < 0) return NULL;
  if (!lock(fd, F_RDLCK) || read_new(c, fd) != EF_OK) warn_once(c, ef_last_error());
  close(fd);
  return lookup(c, key);
}

ef_algo_entry *ef_algo_cache_put(ef_algo_cache *c, const ef_algo_entry *e) {
  if (!c->path) return add(c, e);
  int fd = open(c->path, O_RDWR | O_CREAT | O_APPEND, 0666);
  if (fd < 0 || !lock(fd, F_WRLCK)) {
    char what[160];
    snprintf(what, sizeof what,
             "cannot be written (%s): new choices stay in this process, and another may time and "
             "choose differently",
             strerror(errno));
    if (fd >= 0) close(fd);
    warn_once(c, what);
    return add(c, e);
  }
  // Another process may have recorded this key since this one looked: its line wins.
  if (read_new(c, fd) != EF_OK) warn_once(c, ef_last_error());
  ef_algo_entry *had = lookup(c, e->key);
  if (had) {
    close(fd);
    return had;
  }
  char line[EF_ALGO_KEY_LEN + 256];
  int len = snprintf(line, sizeof line, "%s%s\t%d\t%d\t%zu\t%d\t%.6f\n", c->read_to == 0 ? HEADER : "", e->key, e->algo,
                     e->math, e->workspace, e->deterministic ? 1 : 0, e->ms);
  if (write(fd, line, (size_t)len) == len) c->read_to += len;
  else warn_once(c, "a line could not be written whole");
  close(fd);
  return add(c, e);
}

const char *ef_algo_cache_default(char *buf, size_t len) {
  const char *env = getenv("EFFNET_ALGO_CACHE");
  if (env && *env) {
    if (!strcmp(env, "off")) return NULL;
    snprintf(buf, len, "%s", env);
    return buf;
  }
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (xdg && *xdg) snprintf(buf, len, "%s/effnet", xdg);
  else if (home && *home) snprintf(buf, len, "%s/.cache/effnet", home);
  else return NULL;
  if (!(xdg && *xdg)) { // ~/.cache itself may be missing
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/.cache", home);
    mkdir(parent, 0777);
  }
  mkdir(buf, 0777); // a failure shows when the file cannot be written
  size_t n = strlen(buf);
  snprintf(buf + n, len - n, "/cuda-algos.tsv");
  return buf;
}
