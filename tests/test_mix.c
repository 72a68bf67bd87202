// Mixup, CutMix and random erasing (data/mix.h): the blend and the box swap against their
// definitions, targets against timm's mixup_target, lambda's distribution (Beta moments), CutMix's
// lambda corrected to the box's real area, the probabilities of mixing, switching and erasing,
// erased boxes' area and aspect bounds and noise statistics; and through the loader, the same
// mixed and erased batches for 0, 1 and 3 worker threads and for an epoch resumed mid-way.
#include <math.h>
#include <stdbool.h>

#include "data/loader.h"
#include "data/mix.h"
#include "tests/harness.h"

enum { H = 6, W = 5, C = 3, N = 5, K = 4 };

static void test_mix_apply(void) {
  float img[N * H * W * C], orig[N * H * W * C], t[N * K];
  int32_t labels[N] = {0, 1, 2, 3, 1};
  for (int i = 0; i < N * H * W * C; i++) orig[i] = img[i] = (float)(i % 97) * 0.25f - 7;
  ef_mix_draw blend = {.lam = 0.7};
  ef_mix_apply(&blend, img, N, H, W, C, labels, K, 0.1, t);
  int bad = 0, worst = -1;
  for (int i = 0; i < N; i++)
    for (int k = 0; k < H * W * C; k++) {
      float a = orig[i * H * W * C + k], b = orig[(N - 1 - i) * H * W * C + k];
      float want = i == N / 2 ? a : a * 0.7f + b * (float)(1 - 0.7);
      if (img[i * H * W * C + k] != want) bad++, worst = i * H * W * C + k;
    }
  CHECK(bad == 0, "mixup: %d values differ from lam a + (1 - lam) b (e.g. [%d] %g)", bad, worst,
        worst >= 0 ? img[worst] : 0);
  // timm's mixup_target: off = s/K, on = 1 - s + s/K; y1 lam + y2 (1 - lam), y2 = the flipped batch's.
  double off = 0.1 / K, on = 1 - 0.1 + off;
  for (int i = 0; i < N; i++) {
    double sum = 0;
    for (int k = 0; k < K; k++) {
      double want = (k == labels[i] ? on : off) * 0.7 + (k == labels[N - 1 - i] ? on : off) * 0.3;
      CHECK(fabs(t[i * K + k] - want) < 1e-6, "target [%d][%d] got %.9g want %.9g", i, k, t[i * K + k], want);
      sum += t[i * K + k];
    }
    CHECK(fabs(sum - 1) < 1e-6, "targets of image %d sum to %.9g", i, sum);
  }
  for (int i = 0; i < N * H * W * C; i++) img[i] = orig[i];
  ef_mix_draw box = {.lam = 1 - 6.0 / 30, .cutmix = true, .y0 = 1, .y1 = 4, .x0 = 2, .x1 = 4};
  ef_mix_apply(&box, img, N, H, W, C, labels, K, 0, t);
  bad = 0;
  for (int i = 0; i < N; i++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++)
        for (int c = 0; c < C; c++) {
          int inside = y >= 1 && y < 4 && x >= 2 && x < 4, src = inside ? N - 1 - i : i, k = (y * W + x) * C + c;
          bad += img[i * H * W * C + k] != orig[src * H * W * C + k];
        }
  CHECK(bad == 0, "cutmix: %d values not from the right image", bad);
  CHECK(fabs(t[0] - 0.8) < 1e-6 && fabs(t[1] - 0.2) < 1e-6, "cutmix targets of image 0: %g own, %g partner's", t[0],
        t[1]);
}

static void test_mix_draws(void) {
  ef_mix_config both = {.mixup = 0.2, .cutmix = 1.0, .prob = 0.8, .switch_prob = 0.5};
  int mixed = 0, cut = 0, n = 4000;
  double sum = 0, sq = 0;
  int mix_n = 0;
  for (int b = 0; b < n; b++) {
    ef_mix_draw d = ef_mix_draw_batch(&both, 7, 0, 3, b, 32, 24);
    if (d.lam == 1 && !d.cutmix) continue;
    mixed++;
    if (d.cutmix) {
      cut++;
      bool inside = d.y0 >= 0 && d.y0 <= d.y1 && d.y1 <= 32 && d.x0 >= 0 && d.x0 <= d.x1 && d.x1 <= 24;
      CHECK(inside, "box [%d, %d) x [%d, %d) outside 32 x 24", d.y0, d.y1, d.x0, d.x1);
      double want = 1 - (double)(d.y1 - d.y0) * (d.x1 - d.x0) / (32.0 * 24);
      CHECK(d.lam == want, "cutmix lambda %g is not 1 - the box's area %g", d.lam, want);
    } else {
      sum += d.lam, sq += d.lam * d.lam, mix_n++;
    }
  }
  CHECK(fabs(mixed / (double)n - 0.8) < 0.03, "%d of %d batches mixed, prob 0.8", mixed, n);
  CHECK(fabs(cut / (double)mixed - 0.5) < 0.04, "%d of %d mixed batches cutmix, switch 0.5", cut, mixed);
  // Beta(0.2, 0.2): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.1786.
  double mean = sum / mix_n, var = sq / mix_n - mean * mean;
  CHECK(fabs(mean - 0.5) < 0.03 && fabs(var - 0.1786) < 0.015, "Beta(0.2, 0.2) draws: mean %g, variance %g", mean, var);
  ef_mix_config one = {.mixup = 1.0, .prob = 1};
  sum = sq = 0;
  for (int b = 0; b < n; b++) {
    ef_mix_draw d = ef_mix_draw_batch(&one, 7, 1, 0, b, 8, 8);
    CHECK(!d.cutmix && d.lam > 0 && d.lam < 1, "mixup alone: batch %d cutmix %d lam %g", b, d.cutmix, d.lam);
    sum += d.lam, sq += d.lam * d.lam;
  }
  mean = sum / n, var = sq / n - mean * mean; // Beta(1, 1): uniform, variance 1/12
  CHECK(fabs(mean - 0.5) < 0.02 && fabs(var - 1 / 12.0) < 0.006, "Beta(1, 1): mean %g, variance %g", mean, var);
  ef_mix_draw a = ef_mix_draw_batch(&both, 7, 0, 3, 11, 32, 24), b = ef_mix_draw_batch(&both, 7, 1, 3, 11, 32, 24);
  CHECK(a.lam != b.lam, "ranks 0 and 1 drew the same batch");
}

static void test_erase(void) {
  enum { EH = 40, EW = 30 };
  static float img[EH * EW * C];
  ef_erase_config cfg = {.prob = 0.6, .mode = EF_ERASE_PIXEL};
  int erased = 0, n = 2000;
  double sum = 0, sq = 0, count = 0;
  for (int s = 0; s < n; s++) {
    for (int i = 0; i < EH * EW * C; i++) img[i] = 100;
    bool did = ef_erase_image(&cfg, img, EH, EW, C, 5, 2, s);
    int y0 = EH, y1 = -1, x0 = EW, x1 = -1, changed = 0;
    for (int y = 0; y < EH; y++)
      for (int x = 0; x < EW; x++)
        for (int c = 0; c < C; c++) {
          float v = img[(y * EW + x) * C + c];
          if (v == 100) continue;
          changed++, sum += v, sq += v * v, count++;
          y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1, x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
        }
    CHECK(did == (changed > 0), "sample %d: erased %d but %d values changed", s, did, changed);
    if (!did) continue;
    erased++;
    int bh = y1 - y0 + 1, bw = x1 - x0 + 1;
    CHECK(changed == bh * bw * C, "sample %d: the erased values are not a box (%d in %d x %d)", s, changed, bh, bw);
    // Area U(0.02, 1/3) and aspect in [0.3, 1/0.3] before each side is rounded to a whole pixel.
    double area = (double)bh * bw / (EH * EW), aspect = (double)bh / bw;
    CHECK(area > 0.02 * 0.6 && area < 1 / 3.0 * 1.2, "sample %d: box area %g of the image", s, area);
    CHECK(aspect > 0.3 / 1.6 && aspect < 1.6 / 0.3, "sample %d: box aspect %g", s, aspect);
  }
  CHECK(fabs(erased / (double)n - 0.6) < 0.04, "%d of %d erased, prob 0.6", erased, n);
  double mean = sum / count, var = sq / count - mean * mean;
  CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.02, "pixel noise: mean %g, variance %g", mean, var);
  // The same sample and epoch erase the same way; const fills zeros; rand one value per channel.
  static float again[EH * EW * C];
  for (int i = 0; i < EH * EW * C; i++) img[i] = again[i] = 100;
  cfg.prob = 1;
  ef_erase_image(&cfg, img, EH, EW, C, 5, 2, 17), ef_erase_image(&cfg, again, EH, EW, C, 5, 2, 17);
  CHECK(!memcmp(img, again, sizeof img), "sample 17 erased differently twice");
  cfg.mode = EF_ERASE_CONST;
  for (int i = 0; i < EH * EW * C; i++) img[i] = 100;
  ef_erase_image(&cfg, img, EH, EW, C, 5, 2, 17);
  int zeros = 0, others = 0;
  for (int i = 0; i < EH * EW * C; i++) zeros += img[i] == 0, others += img[i] != 0 && img[i] != 100;
  CHECK(zeros > 0 && others == 0, "const: %d zeros, %d other values", zeros, others);
  cfg.mode = EF_ERASE_RAND;
  for (int i = 0; i < EH * EW * C; i++) img[i] = 100;
  ef_erase_image(&cfg, img, EH, EW, C, 5, 2, 17);
  float first[C] = {100, 100, 100};
  int mismatched = 0;
  for (int i = 0; i < EH * EW * C; i++) {
    if (img[i] == 100) continue;
    if (first[i % C] == 100) first[i % C] = img[i];
    mismatched += img[i] != first[i % C];
  }
  CHECK(mismatched == 0 && first[0] != first[1], "rand: %d values differ from their channel's", mismatched);
}

// The loader: a mixed and erased epoch for 0, 1 and 3 threads, and resumed at batch 3.
typedef struct {
  float images[64 * 8 * 8 * 3], targets[64 * 5];
  int64_t n;
} mixed_epoch;

static void run_epoch(ef_loader *l, int64_t epoch, int64_t first, mixed_epoch *e) {
  memset(e, 0, sizeof *e);
  CHECK(ef_loader_start(l, epoch, first) == EF_OK, "%s", ef_last_error());
  const ef_batch *b;
  while (ef_loader_next(l, &b) == EF_OK && b) {
    CHECK(b->targets != NULL, "a mixing loader's batch has no targets");
    memcpy(e->images + e->n * 192, b->images, sizeof(float) * 192 * (size_t)b->n);
    memcpy(e->targets + e->n * 5, b->targets, sizeof(float) * 5 * (size_t)b->n);
    e->n += b->n;
  }
}

static mixed_epoch ma, mb;

static void test_loader_mixes(void) {
  ef_dataset d = {.kind = EF_DATASET_IDX, .source = "memory", .n = 64, .num_classes = 5, .h = 8, .w = 8, .c = 3};
  d.pixels = malloc(64 * 192), d.labels = malloc(sizeof(int32_t) * 64);
  for (int i = 0; i < 64; i++) {
    d.labels[i] = i % 5;
    for (int k = 0; k < 192; k++) d.pixels[i * 192 + k] = (uint8_t)(i * 29 + k * 3);
  }
  ef_loader_config c = {.data = &d,
                        .transform = ef_transform_defaults(true, 8, 3),
                        .batch = 8,
                        .shuffle = true,
                        .drop_last = true,
                        .as_float = true,
                        .seed = 3};
  c.transform.crop_pct = 1;
  c.mix = (ef_mix_config){.mixup = 0.8, .cutmix = 1.0, .prob = 1, .switch_prob = 0.5, .smoothing = 0.1};
  c.erase = (ef_erase_config){.prob = 0.5, .mode = EF_ERASE_PIXEL};
  for (int threads = 0; threads <= 3; threads += threads ? 2 : 1) {
    c.threads = threads;
    ef_loader *l;
    CHECK(ef_loader_new(&l, &c) == EF_OK, "%s", ef_last_error());
    run_epoch(l, 1, 0, threads ? &mb : &ma);
    if (threads) {
      CHECK(!memcmp(&ma, &mb, sizeof ma), "%d threads mixed or erased differently from none", threads);
      run_epoch(l, 1, 3, &mb); // resumed at batch 3: the tail of the epoch
      CHECK(mb.n == 40 && !memcmp(mb.images, ma.images + 24 * 192, sizeof(float) * 40 * 192) &&
                !memcmp(mb.targets, ma.targets + 24 * 5, sizeof(float) * 40 * 5),
            "epoch resumed at batch 3 differs from its tail");
    } else {
      int soft = 0;
      for (int i = 0; i < 64 * 5; i++) soft += ma.targets[i] > 0.5f && ma.targets[i] < 0.9f;
      CHECK(ma.n == 64 && soft > 0, "%lld images, %d mixed target values", (long long)ma.n, soft);
    }
    ef_loader_free(l);
  }
  c.as_float = false; // mixing needs floats
  ef_loader *l;
  CHECK(ef_loader_new(&l, &c) == EF_ERR_INVALID && strstr(ef_last_error(), "float"), "uint8 batches mixed: %s",
        ef_last_error());
  free(d.pixels), free(d.labels);
}

int main(void) {
  RUN(test_mix_apply);
  RUN(test_mix_draws);
  RUN(test_erase);
  RUN(test_loader_mixes);
  return test_exit_code();
}
