// The loader: every sample once per epoch (sharded over ranks, with and without drop-last); the
// same batches bit for bit for 0, 1 and 3 worker threads; an epoch resumed at batch k equal to
// the tail of the uninterrupted epoch, also after abandoning an epoch mid-way; a new order each
// epoch; float batches equal to the normalization table of the uint8 ones; and bad files: two
// corrupt PNGs in a row skipped (each named once, counted once a pass, replaced and marked) or an
// error with `strict`, a vanished file an error naming it.
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/encode.h"
#include "data/loader.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-loader-XXXXXX";

// n in-memory 9x7 RGB samples whose pixels encode the sample index, labels i % 5.
static ef_dataset memory_dataset(int64_t n) {
  ef_dataset d = {.kind = EF_DATASET_IDX, .source = "memory", .n = n, .num_classes = 5, .h = 7, .w = 9, .c = 3};
  d.pixels = malloc((size_t)n * 7 * 9 * 3);
  d.labels = malloc(sizeof(int32_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    d.labels[i] = (int32_t)(i % 5);
    for (int k = 0; k < 7 * 9 * 3; k++) d.pixels[i * 189 + k] = (uint8_t)(i * 13 + k * 7);
  }
  return d;
}

static ef_loader_config config(const ef_dataset *d, bool train, int batch, int threads) {
  ef_transform t = ef_transform_defaults(train, 8, 3);
  t.crop_pct = 1;
  return (ef_loader_config){
      .data = d, .transform = t, .batch = batch, .shuffle = train, .drop_last = train, .seed = 11, .threads = threads};
}

// All batches of one epoch concatenated: ids, labels and image bytes; returns the sample count.
typedef struct {
  int64_t ids[512];
  int32_t labels[512];
  int real[512], corrupt[512];
  uint8_t images[512 * 8 * 8 * 3 * 4];
  int64_t n, batches;
} epoch_dump;

static void dump_epoch(ef_loader *l, int64_t epoch, int64_t first, epoch_dump *e, size_t sample_bytes) {
  memset(e, 0, sizeof *e);
  CHECK(ef_loader_start(l, epoch, first) == EF_OK, "%s", ef_last_error());
  const ef_batch *b;
  for (;;) {
    ef_status st = ef_loader_next(l, &b);
    CHECK(st == EF_OK, "%s", ef_last_error());
    if (st != EF_OK || !b) break;
    CHECK(b->epoch == epoch && b->index == first + e->batches, "batch %lld of epoch %lld, expected %lld of %lld",
          (long long)b->index, (long long)b->epoch, (long long)(first + e->batches), (long long)epoch);
    for (int i = 0; i < b->n && e->n < 512; i++, e->n++) {
      e->ids[e->n] = b->ids[i], e->labels[e->n] = b->labels[i], e->real[e->n] = i < b->real;
      e->corrupt[e->n] = b->corrupt[i];
      memcpy(e->images + e->n * sample_bytes, (const uint8_t *)b->images + i * sample_bytes, sample_bytes);
    }
    e->batches++;
  }
}

static epoch_dump ea, eb;

static void test_threads_agree(void) {
  ef_dataset d = memory_dataset(101);
  for (int train = 0; train < 2; train++) {
    for (int threads = 0; threads <= 3; threads += threads ? 2 : 1) {
      ef_loader_config c = config(&d, train, 10, threads);
      ef_loader *l;
      CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
      dump_epoch(l, 2, 0, threads ? &eb : &ea, 8 * 8 * 3);
      if (threads) {
        CHECK(ea.n == eb.n && !memcmp(ea.ids, eb.ids, sizeof ea.ids) && !memcmp(ea.images, eb.images, sizeof ea.images),
              "train %d: %d threads differ from none", train, threads);
      } else {
        CHECK(ea.n == (train ? 100 : 101) && ea.batches == (train ? 10 : 11), "train %d: %lld samples in %lld batches",
              train, (long long)ea.n, (long long)ea.batches);
        int seen[101] = {0}, labels_ok = 1;
        for (int64_t i = 0; i < ea.n; i++) seen[ea.ids[i]]++, labels_ok &= ea.labels[i] == ea.ids[i] % 5;
        int once = 0;
        for (int i = 0; i < 101; i++) once += seen[i] == 1;
        CHECK(once == (train ? 100 : 101) && labels_ok, "train %d: %d samples seen once", train, once);
        bool ordered = true;
        for (int64_t i = 0; i < ea.n; i++) ordered &= ea.ids[i] == i;
        CHECK(ordered == !train, "train %d: shuffled %d", train, !ordered);
      }
      ef_loader_free(l);
    }
  }
  free(d.pixels), free(d.labels);
}

static void test_epochs_and_resume(void) {
  ef_dataset d = memory_dataset(64);
  ef_loader_config c = config(&d, true, 8, 2);
  c.transform.augment = EF_AUGMENT_RAND;
  ef_loader *l;
  CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
  const size_t sb = 8 * 8 * 3;
  dump_epoch(l, 0, 0, &ea, sb);
  dump_epoch(l, 1, 0, &eb, sb);
  CHECK(memcmp(ea.ids, eb.ids, sizeof ea.ids) != 0, "epochs 0 and 1 have the same order");
  // Abandon epoch 1 after two batches, while workers are busy ahead; then resume it at batch 3.
  const ef_batch *b;
  CHECK(ef_loader_start(l, 1, 0) == EF_OK && ef_loader_next(l, &b) == EF_OK && ef_loader_next(l, &b) == EF_OK, "%s",
        ef_last_error());
  dump_epoch(l, 1, 3, &ea, sb);
  CHECK(ea.batches == 5 && !memcmp(ea.ids, eb.ids + 24, 40 * sizeof(int64_t)) &&
            !memcmp(ea.images, eb.images + 24 * sb, 40 * sb),
        "resumed at batch 3: %lld batches, not the tail of the epoch", (long long)ea.batches);
  ef_loader_free(l);
  // Float batches are the normalization table applied to the uint8 ones.
  c.threads = 0;
  CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
  dump_epoch(l, 4, 0, &ea, sb);
  ef_loader_free(l);
  c.as_float = true;
  CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
  dump_epoch(l, 4, 0, &eb, sb * 4);
  ef_loader_free(l);
  float lut[768];
  ef_transform_lut(&c.transform, lut);
  int bad = 0;
  for (size_t i = 0; i < 64 * sb; i++) bad += ((float *)eb.images)[i] != lut[(i % 3) * 256 + ea.images[i]];
  CHECK(bad == 0, "%d float values differ from the table", bad);
  free(d.pixels), free(d.labels);
}

static void test_sharding(void) {
  ef_dataset d = memory_dataset(23);
  for (int drop = 0; drop < 2; drop++) {
    int seen[23] = {0};
    int64_t per_rank = -1;
    for (int rank = 0; rank < 3; rank++) {
      ef_loader_config c = config(&d, true, 2, 1);
      c.drop_last = drop, c.rank = rank, c.world = 3;
      ef_loader *l;
      CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
      dump_epoch(l, 5, 0, &ea, 8 * 8 * 3);
      if (per_rank < 0) per_rank = ef_loader_samples(l);
      CHECK(ef_loader_samples(l) == per_rank, "rank %d has %lld samples, rank 0 %lld", rank,
            (long long)ef_loader_samples(l), (long long)per_rank);
      CHECK(ea.n == (drop ? 6 : 8), "drop %d rank %d: %lld samples in the epoch", drop, rank, (long long)ea.n);
      for (int64_t i = 0; i < ea.n; i++) seen[ea.ids[i]] += ea.real[i];
      ef_loader_free(l);
    }
    CHECK(per_rank == (drop ? 7 : 8), "drop %d: %lld per rank", drop, (long long)per_rank);
    // Without drop-last every sample is real exactly once (one rank pads with a repeat); with it,
    // 7 per rank, 3 batches of 2: 18 distinct samples.
    int once = 0, more = 0;
    for (int i = 0; i < 23; i++) once += seen[i] == 1, more += seen[i] > 1;
    CHECK(more == 0 && once == (drop ? 18 : 23), "drop %d: %d seen once, %d more", drop, once, more);
  }
  ef_loader_config c = config(&d, true, 24, 0);
  ef_loader *l;
  CHECK(ef_loader_new(&l, &c) == EF_ERR_INVALID && strstr(ef_last_error(), "fewer than one batch"),
        "batch > dataset: %s", ef_last_error());
  c = config(&d, true, 2, 0);
  c.rank = 3, c.world = 3;
  CHECK(ef_loader_new(&l, &c) == EF_ERR_INVALID && strstr(ef_last_error(), "rank 3"), "rank 3 of 3: %s",
        ef_last_error());
  free(d.pixels), free(d.labels);
}

// ---- files -----------------------------------------------------------------------------------

static void write_png(const char *path, int value) {
  ef_image im = {0};
  ef_image_reshape(&im, 12, 10, 3);
  memset(im.px, value, im.cap);
  uint8_t *buf;
  size_t len;
  CHECK(ef_image_encode_png(&im, &buf, &len) == EF_OK && ef_write_file(path, buf, len) == EF_OK, "%s", ef_last_error());
  free(buf);
  ef_image_free(&im);
}

// Sends stderr to `path` (begin) and back (end), to count the loader's warnings.
static int saved_stderr = -1;
static void capture_stderr(const char *path) {
  fflush(stderr);
  saved_stderr = dup(2);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 2);
  close(fd);
}
static void restore_stderr(void) {
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
}

// How many lines of file `path` contain `needle`.
static int count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[2048];
  int n = 0;
  while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
  if (f) fclose(f);
  return n;
}

static void test_bad_files(void) {
  char path[600];
  snprintf(path, sizeof path, "%s/c", dir);
  mkdir(path, 0755);
  for (int i = 0; i < 6; i++) {
    snprintf(path, sizeof path, "%s/c/%d.png", dir, i);
    write_png(path, 40 * i);
  }
  // 2.png and 3.png cut in half: two corrupt files in a row.
  for (int i = 2; i < 4; i++) {
    snprintf(path, sizeof path, "%s/c/%d.png", dir, i);
    CHECK(truncate(path, 60) == 0, "truncate %s", path);
  }
  ef_dataset d;
  CHECK(ef_dataset_open_folder(dir, &d) == EF_OK && d.n == 6, "%s", ef_last_error());
  for (int threads = 0; threads < 3; threads += 2) {
    ef_loader_config c = config(&d, false, 3, threads);
    ef_loader *l;
    char log[600];
    snprintf(log, sizeof log, "%s/stderr.txt", dir);
    capture_stderr(log); // before the workers start: they decode ahead
    CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
    for (int epoch = 0; epoch < 2; epoch++) {
      dump_epoch(l, epoch, 0, &ea, 8 * 8 * 3);
      // Both stand in with 4.png, marked corrupt; each file is counted once per pass.
      CHECK(ea.n == 6 && ea.ids[2] == 4 && ea.ids[3] == 4 && ea.images[2 * 192] == 160 && ea.corrupt[2] &&
                ea.corrupt[3] && !ea.corrupt[1] && !ea.corrupt[4] && ef_loader_skipped(l) == 2,
            "threads %d epoch %d: samples 2, 3 -> %lld, %lld (pixel %d, corrupt %d %d), %lld skipped", threads, epoch,
            (long long)ea.ids[2], (long long)ea.ids[3], ea.images[2 * 192], ea.corrupt[2], ea.corrupt[3],
            (long long)ef_loader_skipped(l));
    }
    restore_stderr();
    // Named once over both epochs; counted at the end of each, epochs numbered from 1.
    CHECK(count_lines(log, "skipping a corrupt image") == 2 && count_lines(log, "2.png") == 1 &&
              count_lines(log, "epoch 1 skipped 2 corrupt images") == 1 &&
              count_lines(log, "epoch 2 skipped 2 corrupt images") == 1,
          "threads %d: %d warnings, %d + %d epoch summaries", threads, count_lines(log, "skipping a corrupt image"),
          count_lines(log, "epoch 1 skipped 2 corrupt images"), count_lines(log, "epoch 2 skipped 2 corrupt images"));
    ef_loader_free(l);
    c.strict = true;
    CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
    const ef_batch *b;
    ef_status st = ef_loader_next(l, &b);
    CHECK(st == EF_ERR_FORMAT && strstr(ef_last_error(), "2.png"), "threads %d strict: status %d, %s", threads, st,
          ef_last_error());
    ef_loader_free(l);
  }
  remove(d.paths[5]);
  ef_loader_config c = config(&d, false, 3, 2);
  ef_loader *l;
  CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
  const ef_batch *b;
  CHECK(ef_loader_next(l, &b) == EF_OK && b, "first batch: %s", ef_last_error());
  ef_status st = ef_loader_next(l, &b);
  CHECK(st == EF_ERR_IO && strstr(ef_last_error(), "5.png"), "vanished file: status %d, %s", st, ef_last_error());
  ef_loader_free(l);
  ef_dataset_free(&d);
}

int main(void) {
  test_mkdtemp(dir);
  RUN(test_threads_agree);
  RUN(test_epochs_and_resume);
  RUN(test_sharding);
  RUN(test_bad_files);
  test_rmtree(dir);
  return test_exit_code();
}
