// Compound-scaling search and scaling curves (see scale.h): candidates measured on their built
// graphs, trained through the trainer, their results as JSON lines, and the chart of them.
#include "train/scale.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/file.h"
#include "train/plot.h"
#include "train/run_dir.h"

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Parameters and multiply-adds per image of d's evaluation graph at side `size`.
static void count(const ef_model_desc *d, int size, int64_t *macs, int64_t *params) {
  ef_store *s = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, s, d, &(ef_graph_opts){.batch = 1, .image_size = size});
  *macs = m.macs, *params = m.params;
  ef_model_graph_free(&m);
  ef_store_free(s);
}

ef_status ef_scale_base_open(ef_scale_base *b, const ef_train_config *c) {
  memset(b, 0, sizeof *b);
  b->train = *c;
  if (c->init) return EF_ERROR(EF_ERR_INVALID, "a scaling search builds its models from a base: drop --init");
  ef_dataset d;
  EF_TRY(ef_dataset_open(c->data, 1, &d));
  ef_status st = c->select_classes ? ef_dataset_select(&d, c->select_classes, 0) : EF_OK;
  int size, eval_size;
  if (st == EF_OK) st = ef_train_describe(c, &d, NULL, &b->desc, &size, &eval_size);
  ef_dataset_free(&d);
  EF_TRY(st);
  if (strcmp(b->desc.arch, "efficientnet"))
    return EF_ERROR(EF_ERR_INVALID, "scaling needs an EfficientNet base (--model b0, lite0, --phi F, ...), not %s",
                    b->desc.arch);
  b->desc.eval.size = size;
  count(&b->desc, size, &b->macs, &b->params);
  return EF_OK;
}

const char *ef_scale_strategy_name(ef_scale_strategy s) {
  static const char *names[] = {"base", "compound", "width", "depth", "resolution"};
  return names[s];
}

// The description of candidate c's network (its configuration and side).
static ef_status cand_desc(const ef_scale_base *b, const ef_scale_cand *c, ef_model_desc *d) {
  *d = b->desc;
  d->cfg.depth = c->depth, d->cfg.width = c->width, d->cfg.resolution = c->size, d->eval.size = c->size;
  EF_TRY(ef_effnet_validate(&d->cfg));
  return ef_model_check_size(d, c->size);
}

ef_status ef_scale_measure(const ef_scale_base *b, ef_scale_cand *c) {
  c->depth = b->desc.cfg.depth * c->alpha, c->width = b->desc.cfg.width * c->beta;
  c->size = (int)lround(b->desc.cfg.resolution * c->gamma);
  ef_model_desc *d = ef_xmalloc(sizeof *d);
  ef_status st = cand_desc(b, c, d);
  if (st == EF_OK) {
    count(d, c->size, &c->macs, &c->params);
    // The key: what the built network is made of (the configuration's multipliers are not: many
    // round to the same channels and repeats).
    ef_effnet_arch a;
    ef_effnet_arch_init(&a, &d->cfg);
    int shape[4 + 3 * EF_EFFNET_STAGES] = {c->size, a.stem, a.head, a.blocks}, k = 4;
    for (int s = 0; s < EF_EFFNET_STAGES; s++)
      shape[k++] = a.stage[s].repeats, shape[k++] = a.stage[s].in, shape[k++] = a.stage[s].out;
    snprintf(c->key, sizeof c->key, "%08x", ef_crc32c(shape, sizeof shape));
  }
  free(d);
  return st;
}

ef_status ef_scale_throughput(const ef_scale_base *b, ef_scale_cand *c, const ef_device *dev, int64_t batch,
                              long iters) {
  ef_model_desc *d = ef_xmalloc(sizeof *d);
  ef_bench_result r;
  ef_status st = cand_desc(b, c, d);
  if (st == EF_OK) st = ef_bench_run(d, batch, &(ef_bench_config){.dev = dev, .warmup = 2, .iters = iters}, &r, NULL);
  free(d);
  if (st == EF_OK) c->images_s = r.images_s;
  return st;
}

ef_status ef_scale_range_parse(const char *text, const char *flag, ef_scale_range *r) {
  char *end;
  r->lo = strtod(text, &end);
  r->hi = r->lo, r->step = 0;
  if (*end == ':') {
    r->hi = strtod(end + 1, &end);
    if (*end != ':') end = "?";
    else r->step = strtod(end + 1, &end);
  }
  int n = *end ? 0 : ef_scale_range_values(r, NULL, 0);
  if (*end || !(r->lo >= 1 && r->hi <= 4 && r->lo <= r->hi) || !(r->step >= 0) || (r->hi > r->lo && !(r->step > 0)) ||
      n > 200)
    return EF_ERROR(EF_ERR_INVALID,
                    "%s '%s': give LO:HI:STEP (1 <= LO <= HI <= 4, a step above 0, at most 200 values) or one value",
                    flag, text);
  return EF_OK;
}

int ef_scale_range_values(const ef_scale_range *r, double *v, int max) {
  int n = 0;
  for (int i = 0;; i++) {
    double x = r->lo + i * r->step;
    if (x > r->hi + 1e-9 || (i && !(r->step > 0)) || i > 10000) break;
    if (n < max) v[n] = round(x * 1e9) / 1e9; // 1.15, not 1.1500000000000001
    n++;
  }
  return n;
}

// A network already timed (throughput costs): its key and images/s.
typedef struct {
  char key[16];
  double images_s;
} timed;

ef_status ef_scale_search_candidates(const ef_scale_base *b, const ef_scale_grid *g, ef_scale_cand **out, int *n,
                                     int *points, double *base_images_s) {
  double av[200], bv[200], gv[200];
  int na = ef_scale_range_values(&g->alpha, av, 200), nb = ef_scale_range_values(&g->beta, bv, 200),
      ng = ef_scale_range_values(&g->gamma, gv, 200);
  *out = NULL, *n = 0, *points = na * nb * ng;
  if (na > 200 || nb > 200 || ng > 200)
    return EF_ERROR(EF_ERR_INVALID, "a grid of %d x %d x %d values: at most 200 each", na, nb, ng);
  ef_scale_cand base = {.alpha = 1, .beta = 1, .gamma = 1};
  EF_TRY(ef_scale_measure(b, &base));
  if (g->dev) {
    EF_TRY(ef_scale_throughput(b, &base, g->dev, g->batch, g->iters));
    *base_images_s = base.images_s;
  }
  ef_scale_cand *kept = ef_xmalloc((size_t)*points * sizeof *kept);
  timed *cache = ef_xmalloc((size_t)*points * sizeof *cache);
  int nk = 0, nt = 0;
  ef_status st = EF_OK;
  for (int i = 0; i < na && st == EF_OK; i++)
    for (int j = 0; j < nb && st == EF_OK; j++)
      for (int k = 0; k < ng && st == EF_OK; k++) {
        ef_scale_cand c = {
            .strategy = EF_SCALE_COMPOUND, .budget = g->factor, .alpha = av[i], .beta = bv[j], .gamma = gv[k]};
        if (ef_scale_measure(b, &c) != EF_OK) continue; // outside what builds: not a candidate
        double ratio = (double)c.macs / (double)b->macs;
        if (g->dev) { // the time per image, of networks whose MACs are near enough to be worth timing
          if (ratio < g->factor / 4 || ratio > g->factor * 4) continue;
          int t = 0;
          while (t < nt && strcmp(cache[t].key, c.key)) t++;
          if (t == nt) {
            if ((st = ef_scale_throughput(b, &c, g->dev, g->batch, g->iters)) != EF_OK) break;
            cache[nt++] = (timed){.images_s = c.images_s};
            memcpy(cache[t].key, c.key, sizeof c.key);
          }
          c.images_s = cache[t].images_s;
          ratio = base.images_s / c.images_s;
        }
        if (fabs(ratio - g->factor) > g->tolerance * g->factor) continue;
        int m = 0;
        while (m < nk && strcmp(kept[m].key, c.key)) m++;
        if (m < nk) kept[m].aliases++;
        else kept[nk++] = c;
      }
  free(cache);
  if (st != EF_OK || !nk) free(kept), kept = NULL;
  *out = kept, *n = st == EF_OK ? nk : 0;
  return st;
}

ef_status ef_scale_curve_candidates(const ef_scale_base *b, const double *budgets, int n_budgets, ef_compound k,
                                    ef_scale_cand **out, int *n) {
  *out = NULL, *n = 0;
  if (n_budgets < 1 || n_budgets > 64) return EF_ERROR(EF_ERR_INVALID, "%d budgets: give 1 to 64 (2,4,8)", n_budgets);
  double most = 0;
  for (int i = 0; i < n_budgets; i++) {
    if (!(budgets[i] > 1 && budgets[i] <= 1000))
      return EF_ERROR(EF_ERR_INVALID, "a budget of %g times the base's MACs: use values above 1 (2,4,8)", budgets[i]);
    if (budgets[i] > most) most = budgets[i];
  }
  ef_scale_cand *c = ef_xcalloc((size_t)(1 + 4 * n_budgets), sizeof *c);
  c[0] = (ef_scale_cand){.strategy = EF_SCALE_BASE, .budget = 1, .alpha = 1, .beta = 1, .gamma = 1};
  ef_status st = ef_scale_measure(b, &c[0]);
  int made = 1;
  static const ef_scale_strategy strategies[] = {EF_SCALE_COMPOUND, EF_SCALE_WIDTH, EF_SCALE_DEPTH,
                                                 EF_SCALE_RESOLUTION};
  for (int s = 0; s < 4 && st == EF_OK; s++) {
    ef_scale_cand *best = &c[made];
    double err[64];
    for (int i = 0; i < n_budgets; i++) err[i] = INFINITY;
    for (int step = 1; step <= 5000; step++) { // (width and depth stop at 16, phi at 50, sides at 4096 px)
      ef_scale_cand x = {.strategy = strategies[s], .alpha = 1, .beta = 1, .gamma = 1};
      double phi = 0.01 * step;
      if (strategies[s] == EF_SCALE_COMPOUND)
        x.alpha = pow(k.alpha, phi), x.beta = pow(k.beta, phi), x.gamma = pow(k.gamma, phi);
      if (strategies[s] == EF_SCALE_WIDTH) x.beta = 1 + 0.01 * step;
      if (strategies[s] == EF_SCALE_DEPTH) x.alpha = 1 + 0.05 * step;
      if (strategies[s] == EF_SCALE_RESOLUTION)
        x.gamma = (double)(b->desc.cfg.resolution + step) / b->desc.cfg.resolution;
      if (ef_scale_measure(b, &x) != EF_OK) break; // past what builds (width or depth 16, the largest side)
      double ratio = (double)x.macs / (double)b->macs;
      for (int i = 0; i < n_budgets; i++)
        if (fabs(log(ratio / budgets[i])) < err[i]) {
          err[i] = fabs(log(ratio / budgets[i]));
          best[i] = x, best[i].budget = budgets[i];
        }
      if (ratio > 1.5 * most) break;
    }
    for (int i = 0; i < n_budgets; i++)
      if (!isfinite(err[i]))
        st = EF_ERROR(EF_ERR_INVALID, "%s scaling of this base cannot build a network of %g times its MACs",
                      ef_scale_strategy_name(strategies[s]), budgets[i]);
    made += n_budgets;
  }
  if (st != EF_OK) free(c), c = NULL, made = 0;
  *out = c, *n = made;
  return st;
}

bool ef_scale_mine(int run, int rank, int world) { return world <= 1 || run % world == rank; }

// ---- training -----------------------------------------------------------------------------------

ef_train_config ef_scale_train_config(const ef_scale_base *b, const ef_scale_cand *c, unsigned long long seed,
                                      const char *dir, char *resume_path, size_t len) {
  ef_train_config t = b->train;
  t.spec.width = c->width, t.spec.depth = c->depth;
  t.image_size = c->size;
  // A base trained at other sides (FixRes's validation, progressive learning's first stage) scales them too.
  if (t.eval_image_size) t.eval_image_size = lround((double)t.eval_image_size * c->gamma);
  if (t.prog_image_size) t.prog_image_size = lround((double)t.prog_image_size * c->gamma);
  t.seed = seed, t.out = dir, t.resume = NULL, t.args = NULL;
  long long steps[1];
  if (ef_run_dir_list(dir, steps, 1) > 0) {
    ef_run_dir_latest(resume_path, len, dir);
    t.resume = resume_path;
  }
  return t;
}

// The caller's hooks, and the last validation seen.
typedef struct {
  const ef_fit_hooks *h;
  ef_epoch_result last;
  bool seen;
} hooks_around;

static ef_status around_step(void *user, ef_trainer *t, const ef_step_result *r, double lr) {
  const ef_fit_hooks *h = ((hooks_around *)user)->h;
  return h && h->after_step ? h->after_step(h->user, t, r, lr) : EF_OK;
}
static void around_epoch(void *user, ef_trainer *t, const ef_epoch_result *e) {
  hooks_around *a = user;
  a->last = *e, a->seen = true;
  if (a->h && a->h->after_epoch) a->h->after_epoch(a->h->user, t, e);
}
static int around_stop(void *user) {
  const ef_fit_hooks *h = ((hooks_around *)user)->h;
  return h && h->stop_requested ? h->stop_requested(h->user) : 0;
}
static void around_stage(void *user, ef_trainer *t) {
  const ef_fit_hooks *h = ((hooks_around *)user)->h;
  if (h && h->stage_entered) h->stage_entered(h->user, t);
}

ef_status ef_scale_train(const ef_scale_base *b, const ef_scale_cand *c, unsigned long long seed, const char *dir,
                         const ef_fit_hooks *h, ef_scale_result *r, bool *stopped) {
  double t0 = seconds();
  char resume[4200];
  ef_train_config tc = ef_scale_train_config(b, c, seed, dir, resume, sizeof resume);
  ef_trainer *t = ef_xmalloc(sizeof *t);
  hooks_around a = {.h = h};
  ef_fit_hooks mine = {.user = &a,
                       .after_step = around_step,
                       .after_epoch = around_epoch,
                       .stop_requested = around_stop,
                       .stage_entered = around_stage,
                       .stop_after = h ? h->stop_after : 0};
  ef_fit_result fr;
  *stopped = false;
  ef_status st = ef_trainer_open(t, &tc, ef_comm_single());
  if (st == EF_OK) st = ef_trainer_fit(t, &mine, &fr);
  if (st == EF_ERR_NUMERIC) // a validation loss that is not finite: the candidate diverged, a result like any other
    st = EF_OK, fr = (ef_fit_result){.broken = true};
  if (st == EF_OK && (fr.signal || fr.stopped)) *stopped = true;
  // A run whose folder held its finished training (a kill after its last epoch, before its line
  // was written): its last validation again.
  if (st == EF_OK && !*stopped && !fr.broken && !a.seen) {
    st = ef_trainer_validate(t, &a.last);
    a.seen = st == EF_OK;
  }
  if (st == EF_OK && !*stopped) {
    const ef_eval_result *e = t->step.has_ema ? &a.last.ema : &a.last.live;
    *r = (ef_scale_result){.top1 = fr.broken ? NAN : e->top1,
                           .best_top1 = t->info.best_top1,
                           .loss = fr.broken ? NAN : e->loss,
                           .seconds = seconds() - t0,
                           .resumed = tc.resume != NULL};
  }
  ef_trainer_close(t);
  free(t);
  return st;
}

// ---- the settings and the records --------------------------------------------------------------------------------

void ef_scale_settings(const char *saved, char *text, size_t len, char hash[16]) {
  static const char *const speed[] = {"--threads",      "--loader-threads",  "--log-every", "--keep",      "--profile",
                                      "--comm-timeout", "--steps-in-flight", "--bucket-mb", "--no-profile"};
  size_t used = 0;
  text[0] = 0;
  for (const char *p = saved; *p;) { // a name, then its value unless the next line is a name
    size_t name = strcspn(p, "\n");
    const char *next = p + name + (p[name] == '\n');
    if (*next && !(next[0] == '-' && next[1] == '-')) {
      size_t value = strcspn(next, "\n");
      next += value + (next[value] == '\n');
    }
    bool skip = false;
    for (size_t k = 0; k < sizeof speed / sizeof speed[0]; k++)
      skip |= name == strlen(speed[k]) && !strncmp(p, speed[k], name);
    if (!skip && used + (size_t)(next - p) < len) memcpy(text + used, p, (size_t)(next - p)), used += next - p;
    p = next;
  }
  text[used] = 0;
  snprintf(hash, 16, "%08x", ef_crc32c(text, used));
}

ef_status ef_scale_settings_check(const char *dir, const char *cmd, const char *text, const char *hash) {
  char path[4200], theirs[64] = "";
  snprintf(path, sizeof path, "%s/%s.settings", dir, cmd);
  FILE *f = fopen(path, "r");
  if (f) {
    bool ok = fgets(theirs, sizeof theirs, f) != NULL;
    fclose(f);
    theirs[strcspn(theirs, "\n")] = 0;
    if (!ok || strcmp(theirs, hash))
      return EF_ERROR(EF_ERR_INVALID,
                      "%s holds a %s with other training settings (%s, in %s; these are %s): use the same flags to "
                      "resume it, or another --out",
                      dir, cmd, theirs, path, hash);
    return EF_OK;
  }
  size_t n = strlen(hash) + strlen(text) + 2;
  char *body = ef_xmalloc(n);
  snprintf(body, n, "%s\n%s", hash, text);
  ef_status st = ef_file_write(path, body, n - 1);
  free(body);
  return st;
}

// A number as JSON (null when not finite).
static int json_num(char *buf, size_t len, double v) {
  return isfinite(v) ? snprintf(buf, len, "%.10g", v) : snprintf(buf, len, "null");
}

ef_status ef_scale_append(const char *path, const char *settings, const ef_scale_record *rec) {
  const ef_scale_cand *c = &rec->cand;
  char top1[32], best[32], loss[32], line[2048]; // (line[0] may become a newline: see below)
  json_num(top1, sizeof top1, rec->r.top1), json_num(best, sizeof best, rec->r.best_top1);
  json_num(loss, sizeof loss, rec->r.loss);
  int n = snprintf(line, sizeof line,
                   "{\"strategy\":\"%s\",\"budget\":%.10g,\"alpha\":%.10g,\"beta\":%.10g,\"gamma\":%.10g,"
                   "\"depth\":%.10g,\"width\":%.10g,\"size\":%d,\"macs\":%lld,\"params\":%lld,\"images_s\":%.10g,"
                   "\"key\":\"%s\",\"aliases\":%d,\"seed\":%llu,\"rank\":%d,\"top1\":%s,\"best_top1\":%s,\"loss\":%s,"
                   "\"seconds\":%.6g,\"resumed\":%s,\"settings\":\"%s\"}\n",
                   ef_scale_strategy_name(c->strategy), c->budget, c->alpha, c->beta, c->gamma, c->depth, c->width,
                   c->size, (long long)c->macs, (long long)c->params, c->images_s, c->key, c->aliases, rec->seed,
                   rec->rank, top1, best, loss, rec->r.seconds, rec->r.resumed ? "true" : "false", settings);
  if (n + 1 >= (int)sizeof line) return EF_ERROR(EF_ERR_INVALID, "the settings are too long for a record of %s", path);
  int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return EF_ERROR(EF_ERR_IO, "cannot open %s to append a result: %s", path, strerror(errno));
  // After a line a kill cut short, this one starts on a line of its own (the reader skips the other).
  char last = '\n';
  off_t end = lseek(fd, 0, SEEK_END);
  if (end > 0 && pread(fd, &last, 1, end - 1) == 1 && last != '\n')
    memmove(line + 1, line, (size_t)n + 1), *line = '\n', n++;
  ssize_t w = write(fd, line, (size_t)n);
  int err = errno;
  if (w == n && fsync(fd) != 0) w = -1, err = errno;
  close(fd);
  if (w != n)
    return EF_ERROR(EF_ERR_IO, "cannot append a result to %s: %s (free space and run the command again: it resumes)",
                    path, w < 0 ? strerror(err) : "a short write");
  return EF_OK;
}

// The text after "name": in line, or NULL.
static const char *field(const char *line, const char *name) {
  char pat[48];
  snprintf(pat, sizeof pat, "\"%s\":", name);
  const char *p = strstr(line, pat);
  return p ? p + strlen(pat) : NULL;
}

static bool num_field(const char *line, const char *name, double *v) {
  const char *p = field(line, name);
  if (!p) return false;
  if (!strncmp(p, "null", 4)) return *v = NAN, true;
  char *end;
  *v = strtod(p, &end);
  return end != p && (*end == ',' || *end == '}');
}

// A non-negative integer field within [lo, hi].
static bool int_field(const char *line, const char *name, unsigned long long lo, unsigned long long hi,
                      unsigned long long *v) {
  const char *p = field(line, name);
  if (!p || *p < '0' || *p > '9') return false;
  char *end;
  errno = 0;
  *v = strtoull(p, &end, 10);
  return !errno && *v >= lo && *v <= hi && (*end == ',' || *end == '}');
}

static bool str_field(const char *line, const char *name, char *buf, size_t len) {
  const char *p = field(line, name);
  if (!p || *p != '"') return false;
  const char *q = strchr(p + 1, '"');
  if (!q || (size_t)(q - p - 1) >= len) return false;
  memcpy(buf, p + 1, (size_t)(q - p - 1));
  buf[q - p - 1] = 0;
  return true;
}

// One line into rec; false when a field is missing or malformed.
static bool parse_record(const char *line, ef_scale_record *rec, char *settings, size_t len) {
  memset(rec, 0, sizeof *rec);
  ef_scale_cand *c = &rec->cand;
  char strategy[16];
  unsigned long long size, macs, params, aliases, rank;
  bool ok = str_field(line, "strategy", strategy, sizeof strategy) && num_field(line, "budget", &c->budget) &&
            num_field(line, "alpha", &c->alpha) && num_field(line, "beta", &c->beta) &&
            num_field(line, "gamma", &c->gamma) && num_field(line, "depth", &c->depth) &&
            num_field(line, "width", &c->width) && int_field(line, "size", 1, EF_EFFNET_MAX_RESOLUTION, &size) &&
            int_field(line, "macs", 0, INT64_MAX, &macs) && int_field(line, "params", 0, INT64_MAX, &params) &&
            num_field(line, "images_s", &c->images_s) && str_field(line, "key", c->key, sizeof c->key) &&
            int_field(line, "aliases", 0, INT32_MAX, &aliases) && int_field(line, "seed", 0, UINT64_MAX, &rec->seed) &&
            int_field(line, "rank", 0, INT32_MAX, &rank) && num_field(line, "top1", &rec->r.top1) &&
            num_field(line, "best_top1", &rec->r.best_top1) && num_field(line, "loss", &rec->r.loss) &&
            num_field(line, "seconds", &rec->r.seconds) && str_field(line, "settings", settings, len);
  const char *res = field(line, "resumed");
  if (!ok || !res || (strncmp(res, "true", 4) && strncmp(res, "false", 5))) return false;
  rec->r.resumed = !strncmp(res, "true", 4);
  int s = 0;
  while (s < 5 && strcmp(ef_scale_strategy_name((ef_scale_strategy)s), strategy)) s++;
  if (s == 5) return false;
  c->strategy = (ef_scale_strategy)s, c->size = (int)size, c->macs = (int64_t)macs, c->params = (int64_t)params;
  c->aliases = (int)aliases, rec->rank = (int)rank;
  return true;
}

ef_status ef_scale_read(const char *path, const char *settings, ef_scale_record **out, int *n) {
  *out = NULL, *n = 0;
  FILE *f = fopen(path, "r");
  if (!f && errno == ENOENT) return EF_OK;
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  char line[4096], theirs[1024];
  int cap = 0, no = 0;
  ef_status st = EF_OK;
  while (st == EF_OK && fgets(line, sizeof line, f)) {
    no++;
    size_t len = strlen(line);
    if (!len || line[len - 1] != '\n') { // the last line, cut short by a kill: its run trains again
      if (!feof(f))
        st = EF_ERROR(EF_ERR_FORMAT, "%s:%d: a line longer than %zu bytes: not a result of effnet", path, no,
                      sizeof line);
      break;
    }
    if (len == 1 || (line[0] == '{' && line[len - 2] != '}')) continue; // empty, or cut short and then appended to
    if (*n == cap) *out = ef_xrealloc(*out, (size_t)(cap = cap ? 2 * cap : 64) * sizeof **out);
    if (!parse_record(line, &(*out)[*n], theirs, sizeof theirs))
      st = EF_ERROR(EF_ERR_FORMAT, "%s:%d: not a result line of effnet (remove the line, or use another --out)", path,
                    no);
    else if (strcmp(theirs, settings))
      st = EF_ERROR(EF_ERR_INVALID,
                    "%s:%d holds a run trained with other settings (%s; these are %s): use the same flags to resume "
                    "that search, or another --out",
                    path, no, theirs, settings);
    else (*n)++;
  }
  if (st == EF_OK && ferror(f)) st = EF_ERROR(EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  fclose(f);
  if (st != EF_OK) free(*out), *out = NULL, *n = 0;
  return st;
}

const ef_scale_record *ef_scale_find(const ef_scale_record *rec, int n, const char *key, unsigned long long seed) {
  for (int i = 0; i < n; i++)
    if (!strcmp(rec[i].cand.key, key) && rec[i].seed == seed) return &rec[i];
  return NULL;
}

void ef_scale_summarize(const ef_scale_cand *cands, int n, const ef_scale_record *rec, int nrec,
                        ef_scale_strategy among, ef_scale_row *rows) {
  int best = -1;
  for (int i = 0; i < n; i++) {
    ef_scale_row *w = &rows[i];
    *w = (ef_scale_row){0};
    double lo = INFINITY, hi = -INFINITY, sum = 0, secs = 0;
    for (int j = 0; j < nrec; j++) {
      if (strcmp(rec[j].cand.key, cands[i].key)) continue;
      double v = isfinite(rec[j].r.top1) ? rec[j].r.top1 : 0; // a broken run scores nothing
      lo = fmin(lo, v), hi = fmax(hi, v), sum += v, secs += rec[j].r.seconds, w->runs++;
    }
    if (!w->runs) continue;
    w->mean = sum / w->runs, w->half = (hi - lo) / 2, w->seconds = secs / w->runs;
    if ((among == EF_SCALE_BASE || cands[i].strategy == among) && (best < 0 || w->mean > rows[best].mean)) best = i;
  }
  if (best < 0) return;
  rows[best].best = true;
  for (int i = 0; i < n; i++)
    if (i != best && rows[i].runs && (among == EF_SCALE_BASE || cands[i].strategy == among) &&
        rows[i].mean + rows[i].half >= rows[best].mean - rows[best].half)
      rows[i].tied = true;
}

int ef_scale_order(const ef_scale_row *rows, int n, bool by_mean, int *order) {
  int m = 0;
  for (int i = 0; i < n; i++)
    if (rows[i].runs) order[m++] = i;
  if (by_mean) // insertion: stable, so equal means keep the candidates' order
    for (int i = 1; i < m; i++)
      for (int j = i; j > 0 && rows[order[j]].mean > rows[order[j - 1]].mean; j--) {
        int t = order[j];
        order[j] = order[j - 1], order[j - 1] = t;
      }
  return m;
}

ef_status ef_scale_plot(const ef_scale_base *b, const ef_scale_cand *c, const ef_scale_row *rows, int n, bool search,
                        const char *path) {
  int *order = ef_xmalloc((size_t)(n ? n : 1) * sizeof *order), m = ef_scale_order(rows, n, search, order);
  ef_plot p = {.x_label = "multiply-adds per image (M)", .y_label = "top-1 (%)"};
  ef_plot_series series[4];
  size_t cap = 4 * (size_t)n + 1; // the curves repeat the base in each strategy's series
  double *xs = ef_xcalloc(3 * cap, sizeof *xs), *ys = xs + cap, *es = xs + 2 * cap;
  char title[256], mark[96];
  if (search) {
    for (int k = 0; k < m; k++) {
      int i = order[k];
      xs[k] = (double)c[i].macs / 1e6, ys[k] = 100 * rows[i].mean, es[k] = 100 * rows[i].half;
      if (rows[i].best) {
        snprintf(mark, sizeof mark, "alpha %.3g beta %.3g gamma %.3g", c[i].alpha, c[i].beta, c[i].gamma);
        p.mark = true, p.mark_x = xs[k], p.mark_y = ys[k], p.mark_label = mark;
      }
    }
    series[0] = (ef_plot_series){.label = "candidates (phi = 1)", .x = xs, .y = ys, .err = es, .n = m, .rgb = 0x2060C0};
    snprintf(title, sizeof title, "scale-search: %s at %d px, %d candidates", b->desc.cfg.name, b->desc.cfg.resolution,
             m);
    p.series = series, p.n_series = 1, p.title = title;
  } else {
    static const uint32_t colours[] = {0xD03030, 0x2060C0, 0x30A040, 0xE08020};
    int k = 0;
    for (int s = EF_SCALE_COMPOUND; s <= EF_SCALE_RESOLUTION; s++) {
      int first = k;
      for (int i = 0; i < n; i++) { // the base, then the strategy's budgets in order
        if (!rows[i].runs || ((int)c[i].strategy != s && c[i].strategy != EF_SCALE_BASE)) continue;
        xs[k] = (double)c[i].macs / 1e6, ys[k] = 100 * rows[i].mean, es[k] = 100 * rows[i].half, k++;
      }
      series[s - 1] = (ef_plot_series){.label = ef_scale_strategy_name((ef_scale_strategy)s),
                                       .x = xs + first,
                                       .y = ys + first,
                                       .err = es + first,
                                       .n = k - first,
                                       .rgb = colours[s - 1],
                                       .lines = true};
    }
    snprintf(title, sizeof title, "scale-curves: %s at %d px", b->desc.cfg.name, b->desc.cfg.resolution);
    p.series = series, p.n_series = 4, p.title = title, p.log_x = true;
  }
  ef_status st = m ? ef_plot_png(&p, path) : EF_OK;
  free(xs), free(order);
  return st;
}
