// Timing a model: inference, or the trainer's training step (train/step.h: SGD with momentum at a
// small rate), on synthetic images or batches from a loader; untimed warm-up steps, then timed
// ones: median and p99 step time, images/s, achieved GFLOP/s, planned and peak memory, and the
// step split by kind of op. `effnet bench` prints it; a search can rank models by it.
#ifndef EF_TRAIN_BENCH_H
#define EF_TRAIN_BENCH_H

#include <stdbool.h>
#include <stdio.h>

#include "core/plan.h"
#include "data/dataset.h"
#include "train/device.h"
#include "train/model.h"

typedef struct {
  const ef_device *dev;
  bool training;          // a training step, else inference
  bool profile, eager;    // time every node (and by kind); on a GPU: op by op, not a replayed graph
  int profile_nodes;      // with profile: the slowest nodes listed after the ops (0: none)
  long warmup, iters;     // untimed, then timed steps (iters >= 1)
  const ef_dataset *data; // batches through the loader (its train transform when training); NULL: synthetic
  long loader_threads;
  const char *weights; // a weights file for the model (NULL: an initialization)
} ef_bench_config;

typedef struct {
  double median_ms, p99_ms, images_s, gflops;
  double arena_mib, naive_mib; // the planned activation arena, and without reuse
  double store_mib;            // parameters (training: + gradients + momentum) and state
  double peak_mib;             // the GPU memory in use at effnet's peak, or the process's peak resident
  double rss_mib;              // the process's peak resident (so far, over the runs before too)
  int64_t params, macs;        // of the model, multiply-adds per image of the forward pass
  ef_kind_profile kinds;       // with profile: ms per step by kind, the update and the data wait included;
                               // on the CPU with the machine's measured peaks (ef_cpu_peak_measure, once a
                               // process: its 512 MiB of arrays count in later runs' peak resident)
} ef_bench_result;

// Times `batch` images of the model `d`. With profile, the time per op (and the profile_nodes
// slowest nodes) is printed to op_profile (when not NULL). EF_ERR_* with a message when the model,
// the data or the device fail.
ef_status ef_bench_run(const ef_model_desc *d, int64_t batch, const ef_bench_config *c, ef_bench_result *r,
                       FILE *op_profile);

#endif
