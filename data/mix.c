// Mixup, CutMix and random erasing (see mix.h): lambda from Beta(alpha, alpha) by two Gamma draws
// (Marsaglia and Tsang's method), boxes as timm draws them, all on Philox streams of their own.
#include "data/mix.h"

#include <math.h>
#include <stddef.h>

#include "core/philox.h"

enum { MIX_WORDS = 1 << 16 }; // Philox words reserved for one batch's draw (rejections included)

bool ef_mix_on(const ef_mix_config *c) { return c->mixup > 0 || c->cutmix > 0; }
bool ef_mix_targets(const ef_mix_config *c) { return ef_mix_on(c) || c->targets; }

static double seq_normal(ef_rng_seq *r) {
  float u1 = ef_rng_seq_uniform(r);
  return ef_box_muller(u1, ef_rng_seq_uniform(r));
}

// Gamma(a, 1), as a value and its logarithm: Marsaglia and Tsang for a >= 1; for a < 1,
// Gamma(a + 1) * U^(1/a), whose value underflows for small a where its logarithm does not.
typedef struct {
  double v, lg;
} gamma_value;

static gamma_value gamma_draw(ef_rng_seq *r, double a) {
  if (a < 1) {
    gamma_value g = gamma_draw(r, a + 1);
    double u = 1.0 - ef_rng_seq_uniform(r);
    return (gamma_value){g.v * pow(u, 1 / a), g.lg + log(u) / a};
  }
  double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
  for (int tries = 0; tries < 1000; tries++) { // each is accepted with probability > 0.95
    double x = seq_normal(r), v = 1 + c * x;
    if (v <= 0) continue;
    v = v * v * v;
    double u = 1.0 - ef_rng_seq_uniform(r);
    if (u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)))
      return (gamma_value){d * v, log(d * v)};
  }
  return (gamma_value){d, log(d)}; // not reached in practice (0.05^1000); the mode keeps it a function of its words
}

// Beta(a, a) = X / (X + Y) for X, Y ~ Gamma(a); from the logarithms where both values underflow.
static double beta_draw(ef_rng_seq *r, double a) {
  gamma_value x = gamma_draw(r, a), y = gamma_draw(r, a);
  return x.v + y.v > 0 ? x.v / (x.v + y.v) : 1 / (1 + exp(y.lg - x.lg));
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

ef_mix_draw ef_mix_draw_batch(const ef_mix_config *c, uint64_t seed, int rank, int64_t epoch, int64_t index, int h,
                              int w) {
  ef_mix_draw d = {.lam = 1};
  if (!ef_mix_on(c)) return d;
  ef_rng_seq r = {.seed = seed,
                  .stream = ef_rng_stream(EF_RNG_MIX, (uint32_t)rank),
                  .step = (uint32_t)epoch,
                  .next = (uint64_t)index * MIX_WORDS};
  if (!(ef_rng_seq_uniform(&r) < c->prob)) return d;
  d.cutmix = c->cutmix > 0 && (c->mixup <= 0 || ef_rng_seq_uniform(&r) < c->switch_prob);
  d.lam = beta_draw(&r, d.cutmix ? c->cutmix : c->mixup);
  if (!d.cutmix) return d;
  double ratio = sqrt(1 - d.lam);
  int cut_h = (int)(h * ratio), cut_w = (int)(w * ratio);
  int cy = ef_rng_seq_below(&r, h), cx = ef_rng_seq_below(&r, w);
  d.y0 = clampi(cy - cut_h / 2, 0, h), d.y1 = clampi(cy + cut_h / 2, 0, h);
  d.x0 = clampi(cx - cut_w / 2, 0, w), d.x1 = clampi(cx + cut_w / 2, 0, w);
  d.lam = 1 - (double)(d.y1 - d.y0) * (d.x1 - d.x0) / ((double)h * w);
  return d;
}

void ef_mix_apply(const ef_mix_draw *d, float *images, int n, int h, int w, int ch, const int32_t *labels, int classes,
                  double smoothing, float *targets) {
  size_t image = (size_t)h * w * ch;
  float lam = (float)d->lam, rest = (float)(1 - d->lam);
  if (d->lam < 1) {
    for (int i = 0; i < n / 2; i++) { // each pair (i, n-1-i) from its originals; a middle image is its own partner
      float *a = images + (size_t)i * image, *b = images + (size_t)(n - 1 - i) * image;
      if (d->cutmix) { // the box changes places
        for (int y = d->y0; y < d->y1; y++)
          for (size_t k = ((size_t)y * w + d->x0) * ch; k < ((size_t)y * w + d->x1) * ch; k++) {
            float t = a[k];
            a[k] = b[k], b[k] = t;
          }
      } else {
        for (size_t k = 0; k < image; k++) {
          float x = a[k], y = b[k];
          a[k] = x * lam + y * rest, b[k] = y * lam + x * rest;
        }
      }
    }
  }
  float off = (float)(smoothing / classes), on = (float)(1 - smoothing + smoothing / classes);
  for (int i = 0; i < n; i++) {
    float *t = targets + (size_t)i * classes;
    int32_t own = labels[i], other = labels[n - 1 - i];
    for (int k = 0; k < classes; k++) t[k] = (k == own ? on : off) * lam + (k == other ? on : off) * rest;
  }
}

bool ef_erase_image(const ef_erase_config *c, float *img, int h, int w, int ch, uint64_t seed, int64_t epoch,
                    int64_t idx) {
  if (!(c->prob > 0)) return false;
  ef_rng_seq r = {
      .seed = seed, .stream = ef_rng_stream(EF_RNG_ERASE, 0), .step = (uint32_t)epoch, .next = (uint64_t)idx * 64};
  if (ef_rng_seq_uniform(&r) > c->prob) return false;
  double area = (double)h * w, lo = log(0.3), hi = log(1 / 0.3);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = ef_rng_seq_range(&r, 0.02f, 1.0f / 3) * area, aspect = exp(lo + (hi - lo) * ef_rng_seq_uniform(&r));
    int eh = (int)round(sqrt(target * aspect)), ew = (int)round(sqrt(target / aspect));
    if (!(ew < w && eh < h)) continue;
    int top = ef_rng_seq_below(&r, h - eh + 1), left = ef_rng_seq_below(&r, w - ew + 1);
    // The noise: element k of the box (rows, then columns, then channels) draws normal k of the
    // sample's own range of the noise stream; 'rand' draws one per channel.
    uint32_t noise = ef_rng_stream(EF_RNG_ERASE, 1);
    uint64_t base = (uint64_t)idx << 32;
    for (int y = 0; y < eh; y++)
      for (int x = 0; x < ew; x++) {
        float *p = img + ((size_t)(top + y) * w + (size_t)(left + x)) * ch;
        for (int k = 0; k < ch; k++) {
          uint64_t e = c->mode == EF_ERASE_RAND ? (uint64_t)k : ((uint64_t)y * ew + x) * ch + k;
          p[k] = c->mode == EF_ERASE_CONST ? 0.0f : ef_philox_normal(seed, noise, (uint32_t)epoch, base + e);
        }
      }
    return true;
  }
  return false;
}
