// The paper's method on the user's data (EfficientNet, section 3.3): the grid of depth, width and
// resolution multipliers (alpha, beta, gamma) at phi = 1 whose measured cost is a factor of the
// base's, single-dimension against compound scaling to MAC budgets (its Figure 3), each candidate
// trained by the trainer with one recipe, and the results as JSON lines that a resumed search
// reads, ranked and charted.
#ifndef EF_TRAIN_SCALE_H
#define EF_TRAIN_SCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train/bench.h"
#include "train/trainer.h"

// The base every candidate scales: the trainer's configuration (data, recipe, model) and the
// model it describes on that data, at its input side.
typedef struct {
  ef_train_config train;
  ef_model_desc desc; // as ef_train_describe gives it: desc.cfg.resolution is the base's side
  int64_t macs, params;
} ef_scale_base;

// Opens c's training data to describe its model (ef_train_describe) and measures it. An
// EfficientNet only; EF_ERR_INVALID otherwise.
ef_status ef_scale_base_open(ef_scale_base *b, const ef_train_config *c);

typedef enum {
  EF_SCALE_BASE,
  EF_SCALE_COMPOUND,
  EF_SCALE_WIDTH,
  EF_SCALE_DEPTH,
  EF_SCALE_RESOLUTION
} ef_scale_strategy;
// "base", "compound", "width", "depth", "resolution"
const char *ef_scale_strategy_name(ef_scale_strategy s);

// A candidate: multipliers of the base and the network they build, with its measured costs.
typedef struct {
  ef_scale_strategy strategy;
  double budget;             // the cost aimed at, as a multiple of the base's
  double alpha, beta, gamma; // depth, width, resolution multipliers
  double depth, width;       // the configuration built: the base's times alpha, beta
  int size;                  // the input side: round(base side x gamma)
  int64_t macs, params;      // per image, counted on the built graph
  double images_s;           // measured inference throughput (0: not measured)
  char key[16];              // the network as built (channels, repeats, side): equal keys, equal networks
  int aliases;               // other grid points that build the same network
} ef_scale_cand;

// Builds the network of c's alpha, beta, gamma from the base and fills in the rest (strategy and
// budget are the caller's). EF_ERR_INVALID when the multipliers give no valid model.
ef_status ef_scale_measure(const ef_scale_base *b, ef_scale_cand *c);
// Times c's inference on `dev` (batch, `iters` timed steps after 2 untimed): c->images_s.
ef_status ef_scale_throughput(const ef_scale_base *b, ef_scale_cand *c, const ef_device *dev, int64_t batch,
                              long iters);

// Values lo, lo + step, ... up to hi (a step of 0 or lo == hi: lo alone).
typedef struct {
  double lo, hi, step;
} ef_scale_range;
// "LO:HI:STEP" or one value; EF_ERR_INVALID naming `flag` otherwise (values 1 ... 4, at most 200).
ef_status ef_scale_range_parse(const char *text, const char *flag, ef_scale_range *r);
// The range's values into v (at most max); returns how many.
int ef_scale_range_values(const ef_scale_range *r, double *v, int max);

typedef struct {
  ef_scale_range alpha, beta, gamma;
  double factor, tolerance; // kept: cost within factor x (1 +- tolerance) of the base's
  const ef_device *dev;     // throughput: the cost is the time per image measured on it (NULL: MACs)
  int64_t batch;            // throughput: the batch timed
  long iters;               // throughput: timed steps per candidate
} ef_scale_grid;

// The search's candidates (strategy compound, budget factor): every grid point (alpha outermost,
// gamma innermost) whose measured cost is within the tolerance, one per network built (the first
// point; the others count as its aliases). *points: the grid's size. With g->dev, the base and each
// network whose MACs are within a factor of 4 of the aim are timed (b's throughput into
// *base_images_s), and the time per image is the cost. NULL *out when none is kept.
ef_status ef_scale_search_candidates(const ef_scale_base *b, const ef_scale_grid *g, ef_scale_cand **out, int *n,
                                     int *points, double *base_images_s);

// The curves' candidates: the base (budget 1), then for each strategy (compound with k, width,
// depth, resolution) and each budget (a multiple of the base's MACs) the multiplier whose measured
// MACs are closest to it (in ratio), scanned in steps of 0.01 (width), 0.05 (depth), 1 pixel
// (resolution) and 0.01 in phi (compound).
ef_status ef_scale_curve_candidates(const ef_scale_base *b, const double *budgets, int n_budgets, ef_compound k,
                                    ef_scale_cand **out, int *n);

// Candidate i of n and `seeds` seeds make n x seeds runs, run j = i x seeds + s; rank r of `world`
// trains the runs j with j % world == r. Whether it is this rank's.
bool ef_scale_mine(int run, int rank, int world);

typedef struct {
  double top1, best_top1, loss; // the last epoch's validation (the EMA's when the run keeps one); the best top-1
  double seconds;               // training and validation in this process (since the resume, for a resumed run)
  bool resumed;                 // it went on from a checkpoint in its folder
} ef_scale_result;

// The training configuration of candidate c with `seed` in folder `dir`: the base's with the
// candidate's width, depth and side (its newest checkpoint in dir resumed, when it holds one:
// resume_path receives the file).
ef_train_config ef_scale_train_config(const ef_scale_base *b, const ef_scale_cand *c, unsigned long long seed,
                                      const char *dir, char *resume_path, size_t len);
// Trains candidate c with `seed` in `dir` through ef_trainer_open and ef_trainer_fit (hooks h,
// may be NULL) on a single-process communicator. *stopped: h stopped it (its checkpoint stands).
ef_status ef_scale_train(const ef_scale_base *b, const ef_scale_cand *c, unsigned long long seed, const char *dir,
                         const ef_fit_hooks *h, ef_scale_result *r, bool *stopped);

// What the runs train with, as text: the training flags given in their saved form ("--name\nvalue\n",
// a bool's name alone) without those that change only the speed (threads, logging, checkpoints
// kept); and its hash (8 hex digits), which every record carries.
void ef_scale_settings(const char *saved, char *text, size_t len, char hash[16]);
// The folder's settings file (<dir>/<cmd>.settings): written by the first run, compared by every
// later one, also before any record exists (a cut-short first run's checkpoint must not go on under
// other settings). EF_ERR_INVALID naming both hashes when they differ.
ef_status ef_scale_settings_check(const char *dir, const char *cmd, const char *text, const char *hash);

// One finished run.
typedef struct {
  ef_scale_cand cand;
  unsigned long long seed;
  int rank;
  ef_scale_result r;
} ef_scale_record;

// Appends one record as a line of path with `settings` (what the runs trained with, as text
// without quotes or backslashes): one write to a file opened O_APPEND, so that the lines of ranks
// sharing the file do not interleave.
ef_status ef_scale_append(const char *path, const char *settings, const ef_scale_record *rec);
// The records of path (none when it does not exist). A last line cut short (a kill mid-write) is
// left out; a line of other settings is EF_ERR_INVALID saying which; an unreadable one
// EF_ERR_FORMAT naming its line. Free *out.
ef_status ef_scale_read(const char *path, const char *settings, ef_scale_record **out, int *n);
// The record of network `key` and `seed` among n, or NULL.
const ef_scale_record *ef_scale_find(const ef_scale_record *rec, int n, const char *key, unsigned long long seed);

// A candidate's results over its seeds.
typedef struct {
  int runs;          // records found
  double mean, half; // top-1: mean and half the spread (max - min) / 2
  double seconds;    // mean training time
  bool best, tied;   // the best mean; or not distinguishable from it (mean + half >= best's mean - its half)
} ef_scale_row;
// rows[i] for cands[i] from the records; the best and the ties among those with results (of
// strategy `among`, or all when it is EF_SCALE_BASE).
void ef_scale_summarize(const ef_scale_cand *cands, int n, const ef_scale_record *rec, int nrec,
                        ef_scale_strategy among, ef_scale_row *rows);
// The candidates with results into order[0..), best mean first when by_mean (else as given); their count.
int ef_scale_order(const ef_scale_row *rows, int n, bool by_mean, int *order);
// The chart of the rows with results as a PNG at path: for a search, every candidate against its
// MACs with the best one ringed; for the curves, one line per strategy from the base through its
// budgets, on a log axis. Nothing written when no row has results.
ef_status ef_scale_plot(const ef_scale_base *b, const ef_scale_cand *c, const ef_scale_row *rows, int n, bool search,
                        const char *path);

#endif
