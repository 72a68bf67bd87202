// The loader of data/loader.h. Work is handed out in chunks of a few samples; batch b fills slot
// b % depth of a ring, and a worker may start on batch b only once the consumer has released
// batch b - depth. Everything a sample looks like is decided by (seed, epoch, dataset index), so
// which thread builds it, and when, does not matter.
#include "data/loader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/philox.h"

enum {
  CHUNK = 8,               // samples per unit of work
  DRAWS_PER_SAMPLE = 1024, // Philox words reserved for one sample's augmentation
  MAX_SKIPS = 16,          // consecutive corrupt samples before giving up
};

typedef struct {
  ef_transform_scratch scratch;
  uint8_t *file; // the current sample's file
  size_t file_cap;
} worker_state;

typedef struct {
  ef_batch batch;
  int64_t filling;  // the batch whose samples it holds, -1 when released
  int done;         // samples finished
  bool mixing;      // a worker is mixing the batch (after its last sample) ...
  bool mixed;       // ... and has mixed it (or nothing was to mix): it is ready
  ef_status status; // the first failure among them
  char error[1024];
} slot;

struct ef_loader {
  ef_loader_config cfg;
  int64_t per_rank, batches, chunks_per_batch;
  int64_t *order;      // (per_rank) dataset index of each position of this rank's epoch
  int64_t *perm;       // (n) the epoch's permutation
  size_t sample_bytes; // one transformed sample in a batch
  float lut[3 * 256];
  int depth;
  slot *slots;      // (depth)
  worker_state *ws; // (max(threads, 1))
  pthread_t *threads;
  int started;        // threads running
  int sync_ready;     // mu and the condition variables exist
  int order_ready;    // an epoch has been started
  int epoch_reported; // the end of the epoch has been reported
  pthread_mutex_t mu;
  pthread_cond_t work_cv, ready_cv;
  int64_t epoch, current, released, next_chunk, end_chunk;
  int in_flight, stop;
  // Counts of the current pass (each started pass has a number): a sample is counted once a pass,
  // by the number of the last pass that counted it (0: never, so not yet named either).
  uint32_t pass;
  atomic_llong skipped, warned;
  atomic_uint *corrupt_pass, *warned_pass; // (n)
};

// Empties a slot for its next batch (under the lock).
static void slot_reset(slot *s) { s->done = 0, s->mixing = s->mixed = false, s->status = EF_OK, s->filling = -1; }

// ---- epoch order ---------------------------------------------------------------------------

static void make_order(ef_loader *l, int64_t epoch) {
  const int64_t n = l->cfg.data->n;
  for (int64_t i = 0; i < n; i++) l->perm[i] = i;
  if (l->cfg.shuffle) { // Fisher-Yates on the stream (seed, SHUFFLE, epoch)
    uint32_t stream = ef_rng_stream(EF_RNG_SHUFFLE, 0);
    for (int64_t i = n - 1; i > 0; i--) {
      uint64_t r = ef_philox_u32(l->cfg.seed, stream, (uint32_t)epoch, (uint64_t)i);
      int64_t j = (int64_t)((r * (uint64_t)(i + 1)) >> 32);
      int64_t t = l->perm[i];
      l->perm[i] = l->perm[j], l->perm[j] = t;
    }
  }
  // Positions rank, rank + world, ... of the permutation (as PyTorch's DistributedSampler).
  for (int64_t k = 0; k < l->per_rank; k++) l->order[k] = l->perm[(l->cfg.rank + k * l->cfg.world) % n];
}

// Samples of batch b, and how many of them are real (not wrap-around padding).
static int batch_count(const ef_loader *l, int64_t b, int *real) {
  int64_t first = b * l->cfg.batch, n = l->per_rank - first;
  if (n > l->cfg.batch) n = l->cfg.batch;
  if (real) {
    *real = 0;
    for (int64_t k = first; k < first + n; k++) *real += l->cfg.rank + k * l->cfg.world < l->cfg.data->n;
  }
  return (int)n;
}

// ---- one chunk -------------------------------------------------------------------------------

// Transforms dataset sample idx into ws->scratch.out.
static ef_status load_sample(ef_loader *l, worker_state *ws, int64_t idx) {
  const ef_dataset *d = l->cfg.data;
  ef_sample_src src = {.name = d->source};
  if (d->pixels) {
    size_t px = (size_t)d->h * d->w * d->c;
    src.pixels = d->pixels + (size_t)idx * px, src.w = d->w, src.h = d->h, src.c = d->c;
  } else {
    EF_TRY(ef_dataset_read_file(d, idx, &ws->file, &ws->file_cap, &src.len));
    src.bytes = ws->file, src.name = d->paths[idx];
  }
  uint64_t base = (uint64_t)idx * DRAWS_PER_SAMPLE;
  ef_rng_seq rng = {
      .seed = l->cfg.seed, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .step = (uint32_t)l->epoch, .next = base};
  EF_TRY(ef_transform_sample(&l->cfg.transform, &src, &rng, &ws->scratch));
  EF_ASSERT(rng.next - base <= DRAWS_PER_SAMPLE, "a sample drew %llu random words",
            (unsigned long long)(rng.next - base));
  return EF_OK;
}

// Counts sample idx in a count of this pass, once; true the first time it is ever counted.
static bool count_once(ef_loader *l, atomic_uint *passes, atomic_llong *count, int64_t idx) {
  unsigned last = atomic_exchange(&passes[idx], l->pass);
  if (last != l->pass) atomic_fetch_add(count, 1);
  return last == 0;
}

// Sample `pos` of batch b into its place: a corrupt image is named once, counted, and replaced
// by the next sample of the dataset that decodes (marked corrupt in the batch).
static ef_status fill_sample(ef_loader *l, worker_state *ws, ef_batch *out, int64_t b, int pos) {
  const ef_dataset *d = l->cfg.data;
  int64_t idx = l->order[b * l->cfg.batch + pos];
  ef_status st;
  int tries = 0;
  for (;; tries++) {
    st = load_sample(l, ws, idx);
    if (st != EF_ERR_FORMAT || l->cfg.strict) break;
    if (count_once(l, l->corrupt_pass, &l->skipped, idx))
      fprintf(stderr, "effnet: warning: skipping a corrupt image: %s\n", ef_last_error());
    if (tries + 1 == MAX_SKIPS)
      return EF_ERROR(EF_ERR_FORMAT,
                      "%d corrupt images in a row in %s (the last: sample %lld): is the dataset damaged?", MAX_SKIPS,
                      d->source, (long long)idx);
    idx = (idx + 1) % d->n;
  }
  if (st != EF_OK) return st;
  if (ws->scratch.warnings) count_once(l, l->warned_pass, &l->warned, idx);
  out->labels[pos] = d->labels[idx];
  out->ids[pos] = idx;
  out->corrupt[pos] = tries > 0;
  const ef_image *im = &ws->scratch.out;
  size_t count = (size_t)im->w * im->h * im->c;
  if (l->cfg.as_float) {
    float *img = (float *)out->images + (size_t)pos * count;
    ef_transform_normalize(l->lut, im, img);
    ef_erase_image(&l->cfg.erase, img, im->h, im->w, im->c, l->cfg.seed, l->epoch, idx);
  } else {
    memcpy((uint8_t *)out->images + (size_t)pos * count, im->px, count);
  }
  return EF_OK;
}

// Fills chunk c; returns how many samples it covered, with the first failure in *st.
static int fill_chunk(ef_loader *l, worker_state *ws, int64_t c, ef_status *st, char *error, size_t error_len) {
  int64_t b = c / l->chunks_per_batch;
  int n = batch_count(l, b, NULL), lo = (int)(c % l->chunks_per_batch) * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n;
  ef_batch *out = &l->slots[b % l->depth].batch;
  *st = EF_OK;
  for (int p = lo; p < hi && *st == EF_OK; p++) {
    *st = fill_sample(l, ws, out, b, p);
    if (*st != EF_OK) snprintf(error, error_len, "%s", ef_last_error());
  }
  return hi > lo ? hi - lo : 0;
}

// Records a finished chunk in its slot (under the lock).
static void finish_chunk(ef_loader *l, int64_t c, int count, ef_status st, const char *error) {
  int64_t b = c / l->chunks_per_batch;
  slot *s = &l->slots[b % l->depth];
  EF_ASSERT(s->filling == -1 || s->filling == b, "slot %lld holds batch %lld, not %lld", (long long)(b % l->depth),
            (long long)s->filling, (long long)b);
  s->filling = b;
  if (st != EF_OK && s->status == EF_OK) s->status = st, snprintf(s->error, sizeof s->error, "%s", error);
  s->done += count;
}

// A whole batch's Mixup or CutMix, once its samples are in, by the thread that finished it.
static void mix_batch(ef_loader *l, slot *s, int64_t b) {
  const ef_transform *t = &l->cfg.transform;
  int n = batch_count(l, b, NULL);
  ef_mix_draw d = ef_mix_draw_batch(&l->cfg.mix, l->cfg.seed, l->cfg.rank, l->epoch, b, t->size, t->size);
  ef_mix_apply(&d, s->batch.images, n, t->size, t->size, t->channels, s->batch.labels, l->cfg.data->num_classes,
               l->cfg.mix.smoothing, s->batch.targets);
}

// After chunk c was recorded (under the lock): the thread that completed its batch mixes it, with the
// lock released meanwhile (in_flight keeps a restart waiting).
static void finish_batch(ef_loader *l, int64_t c) {
  int64_t b = c / l->chunks_per_batch;
  slot *s = &l->slots[b % l->depth];
  if (s->mixing || s->mixed || s->done < batch_count(l, b, NULL)) return; // (an empty chunk may finish later)
  if (ef_mix_targets(&l->cfg.mix) && s->status == EF_OK) {
    s->mixing = true;
    pthread_mutex_unlock(&l->mu);
    mix_batch(l, s, b);
    pthread_mutex_lock(&l->mu);
    s->mixing = false;
  }
  s->mixed = true;
}

static void *worker_main(void *arg) {
  ef_loader *l = ((void **)arg)[0];
  worker_state *ws = ((void **)arg)[1];
  free(arg);
  char error[1024];
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && !(l->next_chunk < l->end_chunk && l->next_chunk / l->chunks_per_batch < l->released + l->depth))
      pthread_cond_wait(&l->work_cv, &l->mu);
    if (l->stop) break;
    int64_t c = l->next_chunk++;
    l->in_flight++;
    pthread_mutex_unlock(&l->mu);
    ef_status st;
    int count = fill_chunk(l, ws, c, &st, error, sizeof error);
    pthread_mutex_lock(&l->mu);
    finish_chunk(l, c, count, st, error);
    finish_batch(l, c);
    l->in_flight--;
    pthread_cond_broadcast(&l->ready_cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

// ---- the loader ------------------------------------------------------------------------------

ef_status ef_loader_new(ef_loader **out, const ef_loader_config *cfg) {
  *out = NULL;
  ef_loader_config c = *cfg;
  if (c.world == 0) c.world = 1;
  cfg = &c;
  const ef_dataset *d = cfg->data;
  EF_TRY(ef_transform_validate(&cfg->transform));
  if (cfg->batch < 1) return EF_ERROR(EF_ERR_INVALID, "batch size %d: must be at least 1", cfg->batch);
  if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
    return EF_ERROR(EF_ERR_INVALID, "rank %d of world size %d: need 0 <= rank < world", cfg->rank, cfg->world);
  if (cfg->threads < 0 || cfg->threads > 256)
    return EF_ERROR(EF_ERR_INVALID, "%d loader threads: use 0 ... 256", cfg->threads);
  if (cfg->prefetch < 0 || cfg->prefetch > 1024)
    return EF_ERROR(EF_ERR_INVALID, "prefetch %d: use 0 (twice the threads) ... 1024 batches", cfg->prefetch);
  if (!cfg->alloc != !cfg->free)
    return EF_ERROR(EF_ERR_INVALID, "the loader's batch allocator needs both alloc and free");
  if (d->n < 1) return EF_ERROR(EF_ERR_INVALID, "the dataset %s is empty", d->source);
  bool mix = ef_mix_targets(&cfg->mix);
  if ((mix || cfg->erase.prob > 0) && !cfg->as_float)
    return EF_ERROR(EF_ERR_INVALID, "Mixup, CutMix and random erasing work on normalized (float) batches");
  if (mix && !(cfg->mix.prob >= 0 && cfg->mix.prob <= 1 && cfg->mix.switch_prob >= 0 && cfg->mix.switch_prob <= 1 &&
               cfg->mix.smoothing >= 0 && cfg->mix.smoothing < 1 && cfg->mix.mixup >= 0 && cfg->mix.cutmix >= 0))
    return EF_ERROR(EF_ERR_INVALID, "mixing: probabilities in [0, 1], smoothing in [0, 1), alphas not negative");
  if (!(cfg->erase.prob >= 0 && cfg->erase.prob <= 1))
    return EF_ERROR(EF_ERR_INVALID, "random erasing probability %g: use 0 ... 1", cfg->erase.prob);
  if (d->n > INT32_MAX && cfg->erase.prob > 0)
    return EF_ERROR(EF_ERR_INVALID, "random erasing draws per sample: %s has over 2^31 samples", d->source);
  ef_loader *l = ef_xcalloc(1, sizeof *l);
  l->cfg = *cfg;
  if (!l->cfg.alloc) l->cfg.alloc = ef_aligned_alloc, l->cfg.free = free;
  l->per_rank = cfg->drop_last ? d->n / cfg->world : (d->n + cfg->world - 1) / cfg->world;
  l->batches = cfg->drop_last ? l->per_rank / cfg->batch : (l->per_rank + cfg->batch - 1) / cfg->batch;
  if (l->batches == 0) {
    free(l);
    return EF_ERROR(EF_ERR_INVALID, "%s has %lld samples per rank, fewer than one batch of %d: use a smaller batch",
                    d->source, (long long)(d->n / cfg->world), cfg->batch);
  }
  l->chunks_per_batch = (cfg->batch + CHUNK - 1) / CHUNK;
  const ef_transform *t = &cfg->transform;
  l->sample_bytes = (size_t)t->size * t->size * t->channels * (cfg->as_float ? sizeof(float) : 1);
  ef_transform_lut(t, l->lut);
  l->depth = cfg->threads == 0 ? 1 : cfg->prefetch > 0 ? cfg->prefetch : 2 * cfg->threads < 2 ? 2 : 2 * cfg->threads;
  l->order = ef_xmalloc(sizeof(int64_t) * (size_t)l->per_rank);
  l->perm = ef_xmalloc(sizeof(int64_t) * (size_t)d->n);
  l->corrupt_pass = ef_xcalloc((size_t)d->n, sizeof *l->corrupt_pass);
  l->warned_pass = ef_xcalloc((size_t)d->n, sizeof *l->warned_pass);
  l->slots = ef_xcalloc((size_t)l->depth, sizeof(slot));
  l->ws = ef_xcalloc((size_t)(cfg->threads ? cfg->threads : 1), sizeof(worker_state));
  for (int s = 0; s < l->depth; s++) {
    ef_batch *b = &l->slots[s].batch;
    b->images = l->cfg.alloc(l->sample_bytes * (size_t)cfg->batch);
    b->labels = ef_xmalloc(sizeof(int32_t) * (size_t)cfg->batch);
    b->ids = ef_xmalloc(sizeof(int64_t) * (size_t)cfg->batch);
    b->corrupt = ef_xmalloc((size_t)cfg->batch);
    if (mix) b->targets = ef_xmalloc(sizeof(float) * (size_t)cfg->batch * (size_t)d->num_classes);
    if (!b->images) {
      ef_loader_free(l);
      return EF_ERROR(EF_ERR_NOMEM, "out of memory for %d batches of %zu bytes: lower the batch or prefetch", l->depth,
                      l->sample_bytes * (size_t)cfg->batch);
    }
  }
  int err = pthread_mutex_init(&l->mu, NULL);
  if (!err && (err = pthread_cond_init(&l->work_cv, NULL)) != 0) pthread_mutex_destroy(&l->mu);
  if (!err && (err = pthread_cond_init(&l->ready_cv, NULL)) != 0)
    pthread_cond_destroy(&l->work_cv), pthread_mutex_destroy(&l->mu);
  if (err) {
    ef_loader_free(l);
    return EF_ERROR(EF_ERR_NOMEM, "cannot create the loader's lock: %s", strerror(err));
  }
  l->sync_ready = 1;
  l->threads = ef_xcalloc((size_t)cfg->threads + 1, sizeof(pthread_t));
  for (int i = 0; i < cfg->threads; i++) {
    void **arg = ef_xmalloc(2 * sizeof(void *));
    arg[0] = l, arg[1] = &l->ws[i];
    if ((err = pthread_create(&l->threads[i], NULL, worker_main, arg)) != 0) {
      free(arg);
      ef_loader_free(l);
      return EF_ERROR(EF_ERR_NOMEM, "cannot start loader thread %d of %d (%s): use fewer loader threads", i + 1,
                      cfg->threads, strerror(err));
    }
    l->started++;
  }
  *out = l;
  return ef_loader_start(l, 0, 0);
}

void ef_loader_free(ef_loader *l) {
  if (!l) return;
  if (l->started) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->started; i++) pthread_join(l->threads[i], NULL);
  }
  if (l->sync_ready) {
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->ready_cv);
  }
  for (int s = 0; l->slots && s < l->depth; s++) {
    if (l->slots[s].batch.images) l->cfg.free(l->slots[s].batch.images);
    free(l->slots[s].batch.labels), free(l->slots[s].batch.ids), free(l->slots[s].batch.corrupt);
    free(l->slots[s].batch.targets);
  }
  for (int i = 0; l->ws && i < (l->cfg.threads ? l->cfg.threads : 1); i++) {
    ef_transform_scratch_free(&l->ws[i].scratch);
    free(l->ws[i].file);
  }
  free(l->ws), free(l->slots), free(l->threads), free(l->order), free(l->perm);
  free((void *)l->corrupt_pass), free((void *)l->warned_pass);
  free(l);
}

int64_t ef_loader_samples(const ef_loader *l) { return l->per_rank; }
int64_t ef_loader_batches(const ef_loader *l) { return l->batches; }
int64_t ef_loader_skipped(const ef_loader *l) { return atomic_load(&l->skipped); }
int64_t ef_loader_warned(const ef_loader *l) { return atomic_load(&l->warned); }

ef_status ef_loader_start(ef_loader *l, int64_t epoch, int64_t first) {
  if (epoch < 0 || epoch > UINT32_MAX || first < 0 || first > l->batches)
    return EF_ERROR(EF_ERR_INVALID, "loader position epoch %lld batch %lld: an epoch has %lld batches",
                    (long long)epoch, (long long)first, (long long)l->batches);
  pthread_mutex_lock(&l->mu);
  if (l->order_ready && epoch == l->epoch && first == l->released && l->current == first) {
    pthread_mutex_unlock(&l->mu); // already there: keep what the workers have prepared
    return EF_OK;
  }
  l->end_chunk = l->next_chunk; // no new work; let the chunks in progress finish
  while (l->in_flight) pthread_cond_wait(&l->ready_cv, &l->mu);
  make_order(l, epoch);
  for (int s = 0; s < l->depth; s++) slot_reset(&l->slots[s]);
  l->epoch = epoch, l->current = l->released = first, l->order_ready = 1, l->epoch_reported = 0;
  l->next_chunk = first * l->chunks_per_batch, l->end_chunk = l->batches * l->chunks_per_batch;
  l->pass++;
  atomic_store(&l->skipped, 0), atomic_store(&l->warned, 0);
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  return EF_OK;
}

// The end of a pass: how many image files were skipped as corrupt, and how many decoded with
// libjpeg's warnings.
static void report_pass(const ef_loader *l) {
  int64_t skipped = ef_loader_skipped(l), warned = ef_loader_warned(l);
  char pass[64];
  if (l->cfg.pass_name) snprintf(pass, sizeof pass, "%s", l->cfg.pass_name);
  else snprintf(pass, sizeof pass, "epoch %lld", (long long)l->epoch + 1);
  if (skipped)
    fprintf(stderr, "effnet: warning: %s skipped %lld corrupt image%s of %s (each named above)\n", pass,
            (long long)skipped, skipped > 1 ? "s" : "", l->cfg.data->source);
  if (warned)
    fprintf(stderr,
            "effnet: warning: %s: %lld image%s of %s decoded with warnings (corrupt JPEG data that libjpeg decodes "
            "around, as PIL does; --strict-images skips such images)\n",
            pass, (long long)warned, warned > 1 ? "s" : "", l->cfg.data->source);
}

ef_status ef_loader_next(ef_loader *l, const ef_batch **out) {
  *out = NULL;
  pthread_mutex_lock(&l->mu);
  if (l->released < l->current) { // hand the previous batch's slot back to the workers
    slot_reset(&l->slots[l->released % l->depth]);
    l->released = l->current;
    pthread_cond_broadcast(&l->work_cv);
  }
  int64_t b = l->current;
  if (b == l->batches) {
    int report = !l->epoch_reported;
    l->epoch_reported = 1;
    pthread_mutex_unlock(&l->mu);
    if (report) report_pass(l);
    return EF_OK;
  }
  slot *s = &l->slots[b % l->depth];
  int real, n = batch_count(l, b, &real);
  if (!l->cfg.threads) { // no workers: this thread does the work
    pthread_mutex_unlock(&l->mu);
    char error[1024];
    for (int64_t c = b * l->chunks_per_batch; c < (b + 1) * l->chunks_per_batch; c++) {
      ef_status st;
      int count = fill_chunk(l, &l->ws[0], c, &st, error, sizeof error);
      pthread_mutex_lock(&l->mu);
      finish_chunk(l, c, count, st, error);
      finish_batch(l, c);
      pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_lock(&l->mu);
  }
  while (s->done < n || !s->mixed) pthread_cond_wait(&l->ready_cv, &l->mu);
  EF_ASSERT(s->filling == b && s->done == n, "slot for batch %lld holds %d samples of batch %lld", (long long)b,
            s->done, (long long)s->filling);
  ef_status st = s->status;
  l->current = b + 1;
  pthread_mutex_unlock(&l->mu);
  if (st != EF_OK) return ef_error_pass(st, s->error);
  s->batch.epoch = l->epoch, s->batch.index = b, s->batch.n = n, s->batch.real = real;
  *out = &s->batch;
  return EF_OK;
}
