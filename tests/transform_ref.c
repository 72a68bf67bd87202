// Runs one sample through effnet's transform for parity_transforms.py: reads raw (h, w, c)
// pixels, writes the normalized (size, size, channels) floats and prints the crop and flip drawn.
// usage: transform_ref train|eval SIZE CHANNELS bilinear|bicubic CROP_PCT SEED INDEX IN W H C OUT
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/transform.h"

int main(int argc, char **argv) {
  if (argc != 13) {
    fprintf(stderr,
            "usage: transform_ref train|eval SIZE CHANNELS bilinear|bicubic CROP_PCT SEED INDEX IN W H C OUT\n");
    return 2;
  }
  ef_transform t = ef_transform_defaults(!strcmp(argv[1], "train"), atoi(argv[2]), atoi(argv[3]));
  t.interp = !strcmp(argv[4], "bilinear") ? EF_INTERP_BILINEAR : EF_INTERP_BICUBIC;
  t.crop_pct = atof(argv[5]);
  int w = atoi(argv[9]), h = atoi(argv[10]), c = atoi(argv[11]);
  size_t n = (size_t)w * h * c;
  uint8_t *px = malloc(n);
  FILE *f = fopen(argv[8], "rb");
  if (!f || fread(px, 1, n, f) != n) return fprintf(stderr, "cannot read %s\n", argv[8]), 1;
  fclose(f);
  if (ef_transform_validate(&t) != EF_OK) return fprintf(stderr, "%s\n", ef_last_error()), 1;
  ef_rng_seq rng = {.seed = strtoull(argv[6], NULL, 10),
                    .stream = ef_rng_stream(EF_RNG_AUGMENT, 0),
                    .next = strtoull(argv[7], NULL, 10) * 1024};
  ef_transform_scratch s = {0};
  ef_sample_src src = {.pixels = px, .w = w, .h = h, .c = c, .name = argv[8]};
  if (ef_transform_sample(&t, &src, &rng, &s) != EF_OK) return fprintf(stderr, "%s\n", ef_last_error()), 1;
  float lut[3 * 256];
  ef_transform_lut(&t, lut);
  size_t m = (size_t)t.size * t.size * t.channels;
  float *out = malloc(m * sizeof(float));
  ef_transform_normalize(lut, &s.out, out);
  f = fopen(argv[12], "wb");
  if (!f || fwrite(out, sizeof(float), m, f) != m || fclose(f))
    return fprintf(stderr, "cannot write %s\n", argv[12]), 1;
  printf("%d %d %d %d %d\n", s.crop.x, s.crop.y, s.crop.w, s.crop.h, s.flipped);
  ef_transform_scratch_free(&s);
  free(px), free(out);
  return 0;
}
