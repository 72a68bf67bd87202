// `effnet scale-search` and `effnet scale-curves`: the training flags and a table of their own,
// then the candidates of train/scale.h trained one after another (rank r of an MPI job takes
// every world-th run), a line each in the folder's JSON lines, a table and a PNG plot at the end.
// Killed, the same command resumes: finished runs are skipped, a cut-short one goes on from its
// checkpoint.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "tools/train_flags.h"
#include "cuda/cuda.h"
#include "train/launch.h"
#include "train/run_dir.h"
#include "train/scale.h"

typedef struct {
  const char *alphas, *betas, *gammas, *objective, *budgets;
  double factor, tolerance;
  long seeds, bench_iters;
  bool dry_run;
} scale_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(scale_opts, kind, field)
static const ef_flag search_rows[] = {
    EF_SECTION("the search (docs/scaling.md):"),
    {ROW(EF_FLAG_STR, "--alphas", alphas), 0, 0, NULL, "LO:HI:STEP", "depth multipliers of the grid (or one value)",
     false},
    {ROW(EF_FLAG_STR, "--betas", betas), 0, 0, NULL, "LO:HI:STEP", "width multipliers", false},
    {ROW(EF_FLAG_STR, "--gammas", gammas), 0, 0, NULL, "LO:HI:STEP",
     "resolution multipliers (of the base's --image-size)", false},
    {ROW(EF_FLAG_DOUBLE, "--flops-factor", factor), 1.01, 100, NULL, "F",
     "a candidate costs F times the base (the paper: alpha beta^2 gamma^2 ~ 2)", false},
    {ROW(EF_FLAG_DOUBLE, "--tolerance", tolerance), 0, 1, NULL, "T", "... within F x (1 +- T), measured", false},
    {ROW(EF_FLAG_STR, "--objective", objective), 0, 0, "macs|throughput", "O",
     "the cost: multiply-adds of the built graph, or the time per image\nof inference measured on --device "
     "(hardware-aware)",
     false},
    {ROW(EF_FLAG_LONG, "--bench-iters", bench_iters), 1, 1000, NULL, "N",
     "throughput: timed steps of --batch images per candidate", false},
    {ROW(EF_FLAG_LONG, "--seeds", seeds), 1, 100, NULL, "N", "runs per candidate (seeds --seed, --seed + 1, ...)",
     false},
    {ROW(EF_FLAG_BOOL, "--dry-run", dry_run), 0, 0, NULL, NULL, "list the candidates and their costs, train none",
     false},
};
static const ef_flag curves_rows[] = {
    EF_SECTION("the curves (docs/scaling.md; --alpha, --beta, --gamma: compound's bases):"),
    {ROW(EF_FLAG_STR, "--budgets", budgets), 0, 0, NULL, "LIST", "MAC budgets as multiples of the base's, e.g. 2,4,8",
     false},
    {ROW(EF_FLAG_LONG, "--seeds", seeds), 1, 100, NULL, "N", "runs per network (seeds --seed, --seed + 1, ...)", false},
    {ROW(EF_FLAG_BOOL, "--dry-run", dry_run), 0, 0, NULL, NULL, "list the networks and their costs, train none", false},
};
#undef ROW

static const char *const search_head =
    "usage: effnet scale-search [flags]\n"
    "\n"
    "The paper's compound-scaling search on your data: every (alpha, beta, gamma) of the grid whose built\n"
    "network costs --flops-factor times the base (measured), trained with the same recipe, budget and seeds,\n"
    "then ranked. Writes scale-search.jsonl (a line per run) and scale-search.png in --out; the same command\n"
    "resumes a killed search. Under mpirun each rank trains other candidates. The training flags below are\n"
    "`effnet train`'s: they set the base (--model, --image-size) and the proxy budget (--epochs, --limit).\n"
    "\n";
static const char *const curves_head =
    "usage: effnet scale-curves [flags]\n"
    "\n"
    "The paper's Figure 3 on your data: the base scaled in width only, depth only, resolution only and in\n"
    "all three (compound, --alpha/--beta/--gamma, the paper's 1.2/1.1/1.15 by default) to each MAC budget,\n"
    "each trained with the same recipe. Writes scale-curves.jsonl and scale-curves.png in --out; the same\n"
    "command resumes. Under mpirun each rank trains other networks.\n"
    "\n";

// The scaling table's defaults: the paper's grid and factor.
static void scale_defaults(void *base) {
  *(scale_opts *)base = (scale_opts){.alphas = "1.0:1.4:0.05",
                                     .betas = "1.0:1.4:0.05",
                                     .gammas = "1.0:1.4:0.05",
                                     .objective = "macs",
                                     .budgets = "2,4,8",
                                     .factor = 2,
                                     .tolerance = 0.05,
                                     .seeds = 1,
                                     .bench_iters = 5};
}

// `effnet train`'s flags (B0 the default base) and the command's own. 0, or the exit status after
// a message.
static int parse(int argc, char **argv, ef_flags *f, ef_train_args *a, scale_opts *s, bool search) {
  const char *cmd = search ? "scale-search" : "scale-curves";
  static const char *const not_here[] = {"--resume", "--init", "--stop-after"};
  for (int i = 1; i < argc; i++)
    for (size_t k = 0; k < sizeof not_here / sizeof not_here[0]; k++)
      if (!strcmp(argv[i], not_here[k])) {
        fprintf(stderr,
                "effnet %s: %s is not for a scaling run (it trains its own models from the base; the same command "
                "with the same --out resumes it)\n",
                cmd, not_here[k]);
        return 2;
      }
  ef_train_config d = ef_train_config_defaults();
  d.model = "b0";
  ef_train_command u = {.cmd = cmd,
                        .head = search ? search_head : curves_head,
                        .defaults = &d,
                        .rows = search ? search_rows : curves_rows,
                        .n = search ? (int)(sizeof search_rows / sizeof search_rows[0])
                                    : (int)(sizeof curves_rows / sizeof curves_rows[0]),
                        .base = s,
                        .reset = scale_defaults};
  int rc = ef_train_args_parse_as(argc, argv, a, f, &u);
  if (rc) return rc;
  if (a->t.gpus && (ef_comm_launched() || (search && !strcmp(s->objective, "throughput")))) {
    fprintf(stderr, "effnet %s: --gpus starts a worker per GPU: %s\n", cmd,
            ef_comm_launched() ? "under mpirun, start one rank per GPU with --device cuda instead"
                               : "with --objective throughput every worker would time the candidates on its own GPU; "
                                 "time them in one process (no --gpus)");
    return 2;
  }
  if (!isnan(a->t.spec.phi) && search) {
    fprintf(stderr, "effnet scale-search: the search is at phi = 1 from the base: drop --phi\n");
    return 2;
  }
  return 0;
}

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }
static int stop_requested(void *user) { return stop_signal; }

static void after_epoch(void *user, ef_trainer *t, const ef_epoch_result *e) {
  const ef_eval_result *v = t->step.has_ema ? &e->ema : &e->live;
  printf("    epoch %lld/%ld: validation top-1 %.2f%%, loss %.4f\n", (long long)t->info.epoch, t->cfg.epochs,
         100 * v->top1, v->loss);
  fflush(stdout);
}

static void describe_cand(const ef_scale_base *b, const ef_scale_cand *c, char *buf, size_t len) {
  snprintf(buf, len, "%s x%.3g: alpha %.3g beta %.3g gamma %.3g: depth %.3g width %.3g %d px, %.1f M MACs (%.2fx)",
           ef_scale_strategy_name(c->strategy), c->budget, c->alpha, c->beta, c->gamma, c->depth, c->width, c->size,
           (double)c->macs / 1e6, (double)c->macs / (double)b->macs);
}

// Trains this rank's share of the runs not in the records. 0, 128 + a signal after a stop, 1 after a failure.
static int train_all(const char *cmd, const ef_scale_base *b, const ef_scale_cand *c, const bool *dup, int n,
                     long seeds, const char *dir, const char *jsonl, const char *settings, int rank, int world) {
  ef_scale_record *rec;
  int nrec;
  if (ef_scale_read(jsonl, settings, &rec, &nrec) != EF_OK) return ef_report(cmd, 1);
  int todo = 0, done = 0, networks = 0;
  for (int i = 0; i < n; i++)
    for (long s = 0; s < seeds && !dup[i]; s++) {
      networks += s == 0;
      if (!ef_scale_find(rec, nrec, c[i].key, b->train.seed + (unsigned long long)s)) todo++;
    }
  if (rank == 0)
    printf("%d of %ld runs to train (%d networks x %ld seeds; the others are in %s)%s\n", todo, networks * seeds,
           networks, seeds, jsonl, world > 1 ? ", shared among the ranks" : "");
  fflush(stdout);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);
  ef_fit_hooks h = {.after_epoch = after_epoch, .stop_requested = stop_requested};
  int run = -1, rc = 0;
  for (int i = 0; i < n && !rc; i++)
    for (long s = 0; s < seeds && !rc; s++) {
      unsigned long long seed = b->train.seed + (unsigned long long)s;
      if (dup[i]) continue;
      run++;
      if (ef_scale_find(rec, nrec, c[i].key, seed) || !ef_scale_mine(run, rank, world)) continue;
      if (stop_signal) { // a signal between runs: no next one
        rc = 128 + stop_signal;
        printf("stopped (%s) between runs; the same command with --out %s resumes the %s\n",
               stop_signal == SIGINT ? "SIGINT" : "SIGTERM", dir, cmd + 6);
        break;
      }
      char what[256], folder[4200];
      describe_cand(b, &c[i], what, sizeof what);
      snprintf(folder, sizeof folder, "%s/net-%s-seed%llu", dir, c[i].key, seed);
      printf("[run %d%s] %s, seed %llu -> %s\n", ++done, world > 1 ? " of this rank" : "", what, seed, folder);
      fflush(stdout);
      ef_scale_record r = {.cand = c[i], .seed = seed, .rank = rank};
      bool stopped;
      if (ef_scale_train(b, &c[i], seed, folder, &h, &r.r, &stopped) != EF_OK) {
        rc = ef_report(cmd, 1);
      } else if (stopped) {
        printf("stopped (%s): its checkpoint is in %s; the same command with --out %s resumes the %s\n",
               stop_signal == SIGINT ? "SIGINT" : "SIGTERM", folder, dir, cmd + 6);
        rc = 128 + (stop_signal ? stop_signal : SIGTERM);
      } else if (ef_scale_append(jsonl, settings, &r) != EF_OK) {
        rc = ef_report(cmd, 1);
      } else {
        if (isfinite(r.r.top1))
          printf("    top-1 %.2f%% in %.0f s%s\n", 100 * r.r.top1, r.r.seconds, r.r.resumed ? " (resumed)" : "");
        else printf("    diverged (a loss that is not finite): recorded, it scores 0 in the table\n");
      }
      fflush(stdout);
    }
  free(rec);
  return rc;
}

// The table of candidates with results (best first for a search), the plot, and the search's chosen
// family. 0 or 1 after a message.
static int report(const char *cmd, bool search, const ef_scale_base *b, const ef_scale_cand *c, int n, long seeds,
                  const char *jsonl, const char *png, const char *settings) {
  ef_scale_record *rec;
  int nrec;
  if (ef_scale_read(jsonl, settings, &rec, &nrec) != EF_OK) return ef_report(cmd, 1);
  int kept = 0; // the seeds asked for this time (an earlier run's other seeds stay in the file)
  for (int j = 0; j < nrec; j++)
    if (rec[j].seed >= b->train.seed && rec[j].seed - b->train.seed < (unsigned long long)seeds) rec[kept++] = rec[j];
  nrec = kept;
  ef_scale_row *rows = ef_xcalloc((size_t)n, sizeof *rows);
  ef_scale_summarize(c, n, rec, nrec, search ? EF_SCALE_COMPOUND : EF_SCALE_BASE, rows);
  int *order = ef_xmalloc((size_t)(n ? n : 1) * sizeof *order), m = ef_scale_order(rows, n, search, order);
  bool timed = false;
  for (int i = 0; i < n; i++) timed |= c[i].images_s > 0;
  printf("\n%-10s %6s %5s %5s %5s %6s %6s %4s %9s %6s %7s%s %-16s %4s %7s\n", "strategy", "budget", "alpha", "beta",
         "gamma", "depth", "width", "px", "M MACs", "x base", "M params", timed ? "  img/s" : "", "top-1 %", "runs",
         "time s");
  int best = -1;
  for (int k = 0; k < m; k++) {
    int i = order[k];
    const ef_scale_cand *x = &c[i];
    char top1[48], img[16] = "";
    snprintf(top1, sizeof top1, "%.2f +- %.2f%s", 100 * rows[i].mean, 100 * rows[i].half,
             rows[i].best   ? " *"
             : rows[i].tied ? " ~"
                            : "");
    if (timed) snprintf(img, sizeof img, " %7.0f", x->images_s);
    printf("%-10s %6.3g %5.3g %5.3g %5.3g %6.3g %6.3g %4d %9.1f %6.2f %7.2f%s %-16s %4d %7.0f\n",
           ef_scale_strategy_name(x->strategy), x->budget, x->alpha, x->beta, x->gamma, x->depth, x->width, x->size,
           (double)x->macs / 1e6, (double)x->macs / (double)b->macs, (double)x->params / 1e6, img, top1, rows[i].runs,
           rows[i].seconds);
    if (rows[i].best) best = i;
  }
  printf("top-1: the last epoch's validation (the EMA's with --ema), mean +- half the spread over %ld seed(s); "
         "* the best, ~ not distinguishable from it (the spreads overlap)\n",
         seeds);
  int rc = 0;
  if (ef_scale_plot(b, c, rows, n, search, png) != EF_OK) rc = ef_report(cmd, 1);
  else if (m) printf("plot: %s\n", png);
  if (search && best >= 0) {
    const ef_scale_cand *w = &c[best];
    const ef_effnet_config *bc = &b->desc.cfg;
    printf("\nchosen: alpha %.3g, beta %.3g, gamma %.3g (top-1 %.2f%%). Its family from %s at %d px:\n", w->alpha,
           w->beta, w->gamma, 100 * rows[best].mean, bc->name, bc->resolution);
    for (int phi = 1; phi <= 3; phi++)
      printf("  phi %d: effnet train --model %s --depth %.4g --width %.4g --image-size %ld\n", phi, b->train.model,
             bc->depth * pow(w->alpha, phi), bc->width * pow(w->beta, phi),
             lround(bc->resolution * pow(w->gamma, phi)));
    if (!strcmp(bc->name, "b0") && bc->width == 1 && bc->depth == 1)
      printf("  (from B0 at 224 px: --phi F --alpha %.4g --beta %.4g --gamma %.4g)\n", w->alpha, w->beta, w->gamma);
  }
  free(order), free(rows), free(rec);
  return rc;
}

// The worst status of any rank (ranks of mpirun): a failure on one stops them all.
static int agree(ef_comm *comm, int rc) {
  double worst = rc;
  comm->allreduce(comm, &worst, 1, EF_COMM_F64, EF_COMM_MAX);
  return (int)worst;
}

// --gpus N: one worker per GPU, each this command again with the folder, training the runs of its
// rank on its GPU; the launcher waits for them (signals passed on) and then reports.
static int launch_gpus(const char *cmd, int argc, char **argv, long gpus, const char *dir) {
  return ef_launch_gpus(cmd, argc, argv, gpus, false, (const char *const[]){"--out", dir, NULL});
}

// The candidates of the search (its grid, kept by cost) into *c, *n, with their lines printed.
static int search_candidates(const char *cmd, const ef_scale_base *b, const ef_train_args *a, const scale_opts *s,
                             bool print, ef_scale_cand **c, int *n) {
  ef_scale_grid g = {.factor = s->factor, .tolerance = s->tolerance, .batch = a->t.batch, .iters = s->bench_iters};
  if (ef_scale_range_parse(s->alphas, "--alphas", &g.alpha) != EF_OK ||
      ef_scale_range_parse(s->betas, "--betas", &g.beta) != EF_OK ||
      ef_scale_range_parse(s->gammas, "--gammas", &g.gamma) != EF_OK)
    return ef_report(cmd, 2);
  ef_device dev;
  if (!strcmp(s->objective, "throughput")) { // open only while the candidates are timed
    if (ef_device_open(&dev, &a->t.dev, NULL) != EF_OK) return ef_report(cmd, 1);
    g.dev = &dev;
  }
  int points = 0;
  double base_images_s = 0;
  ef_status st = ef_scale_search_candidates(b, &g, c, n, &points, &base_images_s);
  if (g.dev) ef_device_close(&dev);
  if (st != EF_OK) return ef_report(cmd, 1);
  if (print)
    printf("effnet scale-search: base %s at %d px: %.1f M MACs, %.2f M parameters; %d grid points, %d networks within "
           "%g x (1 +- %g) of its %s\n",
           b->desc.cfg.name, b->desc.cfg.resolution, (double)b->macs / 1e6, (double)b->params / 1e6, points, *n,
           s->factor, s->tolerance, g.dev ? "time per image" : "MACs");
  if (print && g.dev) printf("  base throughput %.1f images/s (inference, batch %ld)\n", base_images_s, a->t.batch);
  if (!*n) {
    fprintf(stderr,
            "effnet scale-search: no grid point costs %g x (1 +- %g) the base: widen the grid or --tolerance "
            "(--dry-run lists costs)\n",
            s->factor, s->tolerance);
    return 2;
  }
  return 0;
}

// The networks of the curves (the base, then each strategy's budgets) into *c, *n.
static int curve_candidates(const ef_scale_base *b, const scale_opts *s, ef_compound k, bool print, ef_scale_cand **c,
                            int *n) {
  double budgets[65];
  int nb = 0;
  const char *p = s->budgets;
  for (char *end; nb < 65; p = end + 1) {
    budgets[nb++] = strtod(p, &end);
    if (end == p || (*end && *end != ',')) nb = 65;
    if (*end != ',') break;
  }
  if (nb > 64) {
    fprintf(stderr, "effnet scale-curves: --budgets '%s': up to 64 numbers above 1, e.g. 2,4,8\n", s->budgets);
    return 2;
  }
  if (ef_scale_curve_candidates(b, budgets, nb, k, c, n) != EF_OK) return ef_report("scale-curves", 2);
  if (print)
    printf("effnet scale-curves: base %s at %d px: %.1f M MACs, %.2f M parameters; compound with alpha %g beta %g "
           "gamma %g\n",
           b->desc.cfg.name, b->desc.cfg.resolution, (double)b->macs / 1e6, (double)b->params / 1e6, k.alpha, k.beta,
           k.gamma);
  return 0;
}

static int run(int argc, char **argv, bool search) {
  const char *cmd = search ? "scale-search" : "scale-curves";
  ef_flags *f = ef_xmalloc(sizeof *f);
  ef_train_args *a = ef_xcalloc(1, sizeof *a);
  scale_opts s;
  ef_scale_base *b = ef_xmalloc(sizeof *b);
  ef_scale_cand *c = NULL;
  bool *dup = NULL;
  ef_comm *comm = NULL;
  int n = 0, lock = -1, rc = parse(argc, argv, f, a, &s, search);
  if (!rc && ef_comm_new(&comm) != EF_OK) rc = ef_report(cmd, 1);
  int rank = comm ? comm->rank : 0, world = comm ? comm->world : 1;
  // Several processes: ranks of mpirun (collectives), or the workers --gpus N started (none; the
  // launcher reports). Each on its own GPU.
  bool worker = getenv(EF_LAUNCH_RANK) != NULL, mpi = world > 1 && !worker;
  if (!rc && worker && (world != a->t.gpus || !a->t.out)) {
    fprintf(stderr, "effnet %s: %s is set, as for a worker of --gpus, but this is not one: unset %s and %s\n", cmd,
            EF_LAUNCH_RANK, EF_LAUNCH_RANK, EF_LAUNCH_WORLD);
    rc = 2;
  }
  if (!rc && worker) ef_launch_follow_parent();
  static char rank_device[32];
  if (!rc && (worker || mpi) && !strcmp(a->t.dev.device, "cuda")) {
    char why[256];
    int visible = worker ? 0 : ef_cuda_device_count(why, sizeof why);
    snprintf(rank_device, sizeof rank_device, "cuda:%d", worker ? rank : visible > 0 ? comm->local_rank % visible : 0);
    a->t.dev.device = rank_device;
  }
  // Compound's bases for the curves (--alpha, --beta, --gamma), not the base's own.
  ef_compound k = EF_COMPOUND_PAPER;
  if (!search) {
    ef_effnet_spec *sp = &a->t.spec;
    if (!isnan(sp->alpha)) k.alpha = sp->alpha;
    if (!isnan(sp->beta)) k.beta = sp->beta;
    if (!isnan(sp->gamma)) k.gamma = sp->gamma;
    sp->alpha = sp->beta = sp->gamma = NAN;
  }
  if (!rc && ef_scale_base_open(b, &a->t) != EF_OK) rc = ef_report(cmd, 2);
  // The candidates: under mpirun rank 0's, sent to the others (a measured time differs from rank to
  // rank); each worker of --gpus makes its own (MACs only: the same everywhere).
  bool lead = rank == 0, make = lead || !mpi;
  if (!rc && make)
    rc = search ? search_candidates(cmd, b, a, &s, lead, &c, &n) : curve_candidates(b, &s, k, lead, &c, &n);
  if (!rc && make) { // one run per network: a later candidate that builds an earlier one's network shares its runs
    dup = ef_xcalloc((size_t)n, sizeof *dup);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < i && !dup[i]; j++) dup[i] = !strcmp(c[i].key, c[j].key);
  }
  if (!rc && lead) {
    for (int i = 0; i < n; i++) {
      char what[256];
      describe_cand(b, &c[i], what, sizeof what);
      printf("  %s%s%s\n", what, c[i].aliases ? " (and other grid points)" : "",
             dup[i] ? " (the same network as above)" : "");
      if (c[i].images_s > 0) printf("    %.1f images/s\n", c[i].images_s);
    }
  }
  fflush(stdout);
  if (mpi) rc = agree(comm, rc);
  bool go = !rc && !s.dry_run; // --dry-run: the list above is all
  if (go && mpi) {
    comm->broadcast(comm, &n, sizeof n, 0);
    if (rank) c = ef_xcalloc((size_t)n, sizeof *c), dup = ef_xcalloc((size_t)n, sizeof *dup);
    comm->broadcast(comm, c, (size_t)n * sizeof *c, 0), comm->broadcast(comm, dup, (size_t)n * sizeof *dup, 0);
  }
  // The folder: made, locked and its settings checked by rank 0 or --gpus' launcher, its name sent to
  // the other ranks (a worker of --gpus is given it).
  char dir[4096] = "", jsonl[4200], png[4200], settings[16], text[8192];
  ef_scale_settings(a->saved, text, sizeof text, settings);
  if (go && worker) {
    snprintf(dir, sizeof dir, "%s", a->t.out);
  } else if (go && rank == 0) {
    if (ef_run_dir_choose(dir, sizeof dir, a->t.out, NULL, 0, cmd, &lock) != EF_OK ||
        ef_scale_settings_check(dir, cmd, text, settings) != EF_OK)
      rc = ef_report(cmd, 1);
  }
  if (go && mpi) rc = agree(comm, rc);
  if (go && !rc) {
    if (mpi) comm->broadcast(comm, dir, sizeof dir, 0);
    snprintf(jsonl, sizeof jsonl, "%s/%s.jsonl", dir, cmd);
    snprintf(png, sizeof png, "%s/%s.png", dir, cmd);
    if (rank == 0 && !worker) printf("folder %s (training settings %s)\n", dir, settings);
    fflush(stdout);
    if (a->t.gpus && !worker) rc = launch_gpus(cmd, argc, argv, a->t.gpus, dir);
    else rc = train_all(cmd, b, c, dup, n, s.seeds, dir, jsonl, settings, rank, world);
  }
  if (go && mpi) rc = agree(comm, rc); // every rank's runs are in the file, or one failed
  if (go && !rc && rank == 0 && !worker) rc = report(cmd, search, b, c, n, s.seeds, jsonl, png, settings);
  fflush(stdout);
  ef_run_dir_unlock(lock);
  ef_comm_free(comm);
  free(dup), free(c), free(b), free(a), free(f);
  return rc;
}

int ef_cmd_scale_search(int argc, char **argv) { return run(argc, argv, true); }
int ef_cmd_scale_curves(int argc, char **argv) { return run(argc, argv, false); }
