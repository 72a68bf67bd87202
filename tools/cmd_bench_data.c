// `effnet bench-data`: times the input pipeline (read + decode + transform + batch, normalized
// floats) with the threaded loader on an ImageFolder, by default of ImageNet-like JPEGs it
// generates itself (500x375, quality 90), for the evaluation transform and the training
// transform with and without AutoAugment. scripts/bench_data_vs_torch.sh runs torchvision's
// DataLoader beside it on the same files.
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/philox.h"
#include "data/encode.h"
#include "data/loader.h"
#include "tools/effnet.h"
#include "tools/flags.h"

typedef struct {
  const char *data, *cache, *transform;
  long images, threads, batch, size;
  bool exact;
} bench_data_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(bench_data_opts, kind, field)
static const ef_flag bench_data_flags[] = {
    {ROW(EF_FLAG_STR, "--data", data), 0, 0, NULL, "DIR", "an ImageFolder to read  [generated JPEGs in --cache]",
     false},
    {ROW(EF_FLAG_STR, "--cache", cache), 0, 0, NULL, "DIR", "where the generated JPEGs live", false},
    {ROW(EF_FLAG_LONG, "--images", images), 8, 1e7, NULL, "N", "JPEGs to generate (500x375, quality 90, 8 classes)",
     false},
    {ROW(EF_FLAG_STR, "--transform", transform), 0, 0, "eval|train|train-aa|all", "T",
     "eval, train, train-aa (AutoAugment), or all", false},
    {ROW(EF_FLAG_LONG, "--threads", threads), 0, 256, NULL, "N", "loader threads", false},
    {ROW(EF_FLAG_LONG, "--batch", batch), 1, 4096, NULL, "N", "images per batch", false},
    {ROW(EF_FLAG_LONG, "--size", size), 8, 2048, NULL, "N", "output resolution", false},
    {ROW(EF_FLAG_BOOL, "--exact", exact), 0, 0, NULL, NULL, "no DCT-domain downscaling (pixels equal torchvision's)",
     false},
};
#undef ROW

// An ImageNet-like picture: smooth colour fields, a few discs and fine texture, so that JPEG
// files have realistic sizes (tens of KB) and decoding does realistic work.
static void synthesize(ef_image *im, uint64_t seed, uint32_t index) {
  const uint32_t stream = ef_rng_stream(EF_RNG_INIT, 0);
  float p[32];
  for (int i = 0; i < 32; i++) p[i] = ef_philox_uniform(seed, stream, index, (uint64_t)i);
  uint32_t noise = 2463534242u ^ index;
  for (int y = 0; y < im->h; y++)
    for (int x = 0; x < im->w; x++)
      for (int c = 0; c < 3; c++) {
        float v = 128 + 60 * sinf(x * (0.005f + 0.03f * p[c]) + 6 * p[3 + c]) * cosf(y * (0.005f + 0.03f * p[6 + c]));
        for (int k = 0; k < 4; k++) { // discs
          float dx = x - p[9 + k] * im->w, dy = y - p[13 + k] * im->h, r = 20 + 80 * p[17 + k];
          if (dx * dx + dy * dy < r * r) v = 255 * p[21 + (k + c) % 8];
        }
        noise ^= noise << 13, noise ^= noise >> 17, noise ^= noise << 5;
        v += (float)(noise % 25) - 12;
        im->px[((size_t)y * im->w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
}

// Writes `count` JPEGs into cache/class<k>/ unless a marker says they are there already.
static ef_status generate(const char *cache, long count) {
  char path[4096];
  snprintf(path, sizeof path, "%s/.effnet-bench-%ld", cache, count);
  struct stat st;
  if (stat(path, &st) == 0) return EF_OK;
  if (mkdir(cache, 0755) != 0 && errno != EEXIST)
    return EF_ERROR(EF_ERR_IO, "cannot create %s: %s (choose another with --cache)", cache, strerror(errno));
  ef_image im = {0};
  ef_image_reshape(&im, 500, 375, 3);
  size_t total = 0;
  ef_status s = EF_OK;
  for (long i = 0; i < count && s == EF_OK; i++) {
    snprintf(path, sizeof path, "%s/class%ld", cache, i % 8);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      s = EF_ERROR(EF_ERR_IO, "cannot create %s: %s (choose another --cache)", path, strerror(errno));
    synthesize(&im, 7, (uint32_t)i);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (s == EF_OK) s = ef_image_encode_jpeg(&im, 90, &buf, &len);
    snprintf(path, sizeof path, "%s/class%ld/%05ld.jpg", cache, i % 8, i);
    if (s == EF_OK) s = ef_write_file(path, buf, len);
    free(buf);
    total += len;
  }
  ef_image_free(&im);
  if (s != EF_OK) return s;
  printf("generated %ld JPEGs (500x375, quality 90, %.0f KB on average) in %s\n", count, (double)total / count / 1024,
         cache);
  snprintf(path, sizeof path, "%s/.effnet-bench-%ld", cache, count);
  return ef_write_file(path, (const uint8_t *)"ok\n", 3);
}

// Times one pass over the dataset after two untimed batches; prints one line.
static ef_status time_transform(const ef_dataset *d, const char *name, long threads, long batch, long size,
                                bool exact) {
  bool train = strcmp(name, "eval") != 0;
  ef_loader_config c = {.data = d,
                        .transform = ef_transform_defaults(train, (int)size, 3),
                        .batch = (int)batch,
                        .shuffle = train,
                        .drop_last = true,
                        .as_float = true,
                        .seed = 1,
                        .threads = (int)threads};
  if (!strcmp(name, "train-aa")) c.transform.augment = EF_AUGMENT_AUTO;
  c.transform.dct = !exact;
  ef_loader *l;
  EF_TRY(ef_loader_new(&l, &c));
  const ef_batch *b = NULL;
  ef_status st = EF_OK;
  double t0 = 0;
  long images = 0;
  for (long i = 0; st == EF_OK; i++) {
    if (i == 2) t0 = ef_seconds(), images = 0;
    if ((st = ef_loader_next(l, &b)) != EF_OK || !b) break;
    images += b->n;
  }
  double secs = ef_seconds() - t0;
  long skipped = (long)ef_loader_skipped(l);
  ef_loader_free(l);
  EF_TRY(st);
  char desc[256];
  ef_transform_describe(&c.transform, desc, sizeof desc);
  printf("effnet %-8s %ld threads: %ld images in %.2f s, %.1f images/s (%.1f per thread)  [%s%s]\n", name, threads,
         images, secs, images / secs, images / secs / (double)(threads ? threads : 1), desc,
         skipped ? ", skipped images" : "");
  return EF_OK;
}

int ef_cmd_bench_data(int argc, char **argv) {
  bench_data_opts o = {
      .cache = "/tmp/effnet-bench-jpegs", .transform = "all", .images = 512, .threads = 1, .batch = 32, .size = 224};
  ef_flags f;
  ef_flags_init(&f, "bench-data",
                "usage: effnet bench-data [flags]\n\nTimes the data loader: images/s of read + decode "
                "+ transform + batching.\n\n",
                NULL);
  ef_flags_add(&f, bench_data_flags, (int)(sizeof bench_data_flags / sizeof bench_data_flags[0]), &o);
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, NULL, 0);
  if (rc) return rc;
  const char *data = o.data, *cache = o.cache, *transform = o.transform;
  long images = o.images, threads = o.threads, batch = o.batch, size = o.size;
  bool exact = o.exact;
  static const char *const all[] = {"eval", "train", "train-aa"};
  int first = 0, last = 2;
  if (strcmp(transform, "all")) {
    while (strcmp(transform, all[first])) first++; // the flag's choices: one of them
    last = first;
  }
  if (!data) {
    if (generate(cache, images) != EF_OK) {
      fprintf(stderr, "effnet bench-data: %s\n", ef_last_error());
      return 1;
    }
    data = cache;
  }
  ef_dataset d;
  if (ef_dataset_open_folder(data, &d) != EF_OK) {
    fprintf(stderr, "effnet bench-data: %s\n", ef_last_error());
    return 1;
  }
  if (d.n < 3 * batch) {
    fprintf(stderr, "effnet bench-data: %s has %lld images; timing needs at least 3 batches of %ld\n", data,
            (long long)d.n, batch);
    ef_dataset_free(&d);
    return 2;
  }
  for (int i = first; i <= last && rc == 0; i++)
    if (time_transform(&d, all[i], threads, batch, size, exact) != EF_OK) {
      fprintf(stderr, "effnet bench-data: %s\n", ef_last_error());
      rc = 1;
    }
  ef_dataset_free(&d);
  return rc;
}
