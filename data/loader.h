// The threaded loader: worker threads read, decode and transform samples into a bounded ring of
// ready batches while the training step runs. The order of an epoch depends only on (seed,
// epoch), each sample's augmentation and erasing only on (seed, epoch, index), each batch's Mixup
// or CutMix only on (seed, rank, epoch, batch), so the batches are the same
// for any number of threads; an epoch is sharded over (rank, world) with equal counts per rank,
// and can start at any batch, which is how a checkpoint resumes mid-epoch. A corrupt image is
// named once, counted, and replaced by the next one that decodes, marked so that evaluation
// leaves it out.
#ifndef EF_DATA_LOADER_H
#define EF_DATA_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "data/dataset.h"
#include "data/mix.h"
#include "data/transform.h"

typedef struct {
  const ef_dataset *data; // not owned; must outlive the loader
  ef_transform transform;
  int batch;             // samples per batch on this rank
  bool shuffle;          // a new permutation each epoch (training)
  bool drop_last;        // training: drop the samples that do not fill a batch (and the
                         // permutation's tail that does not divide among ranks); evaluation
                         // keeps them, padding ranks by wrapping around (marked not real)
  bool as_float;         // normalized f32 batches (else the uint8 pixels)
  ef_erase_config erase; // training: random erasing of each normalized image (needs as_float)
  ef_mix_config mix;     // training: Mixup / CutMix of each batch, soft targets (needs as_float)
  bool strict;           // a corrupt image is an error instead of a skip
  const char *pass_name; // what the end-of-pass report calls a pass ("validation"); NULL: "epoch N"
  uint64_t seed;
  int rank, world; // this process's shard  [0, 1]
  int threads;     // worker threads; 0 transforms on the caller's thread
  int prefetch;    // batches in the ring (1 ... 1024; 0: twice the threads, at least 2)
  // Batch memory (both or neither): pinned host memory under CUDA; NULL: 256-byte aligned malloc.
  void *(*alloc)(size_t bytes);
  void (*free)(void *p);
} ef_loader_config;

typedef struct {
  int64_t epoch, index; // batch `index` of epoch `epoch`
  int n;                // samples in the batch (batch, or fewer for the last of an eval epoch)
  int real;             // the first `real` are this rank's own; the rest pad the shard
  void *images;         // (n, size, size, channels), f32 or uint8
  int32_t *labels;      // (n) each image's own label
  float *targets;       // with mix's targets: (n, classes) (mixed labels, smoothing folded in); else NULL
  int64_t *ids;         // (n) dataset indices
  uint8_t *corrupt;     // (n) 1 where the sample's own image was corrupt and the next one of the
                        // dataset that decodes took its place: training uses it, evaluation does not
} ef_batch;

typedef struct ef_loader ef_loader;

ef_status ef_loader_new(ef_loader **out, const ef_loader_config *cfg);
void ef_loader_free(ef_loader *l);

// Samples of this rank per epoch, and batches per epoch.
int64_t ef_loader_samples(const ef_loader *l);
int64_t ef_loader_batches(const ef_loader *l);

// Starts epoch `epoch` at batch `first` (0, or a checkpoint's position); any batches still being
// prepared for another position are dropped. ef_loader_new starts (0, 0) already, so starting
// there again before taking a batch keeps the work done meanwhile.
ef_status ef_loader_start(ef_loader *l, int64_t epoch, int64_t first);
// The next batch, or *b = NULL at the end of the epoch (the pass's count of skipped images and of
// images decoded with libjpeg's warnings, if any, is printed then). The batch stays valid until
// the next call of next, start or free. A failed read or (with strict) a corrupt image returns
// its error.
ef_status ef_loader_next(ef_loader *l, const ef_batch **b);
// Corrupt image files skipped so far in the pass started last (each was warned about once, by
// name), and images decoded with libjpeg's warnings (transform.strict makes them corrupt).
int64_t ef_loader_skipped(const ef_loader *l);
int64_t ef_loader_warned(const ef_loader *l);

#endif
