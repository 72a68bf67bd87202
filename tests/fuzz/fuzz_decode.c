// libFuzzer target: any bytes as an image file, as the loader reads one: probed, decoded whole or
// a region, at a DCT scale, to gray or RGB, strict or not, then through an evaluation or a
// training transform (its crop, flip and policy). The first 4 bytes choose those; the rest is
// the file. A refusal is a status with a message; a crash, an abort, a leak or undefined
// behaviour is a finding. Fuzzed under EFFNET_FUZZ; replayed by replay.c in every build.
#include <stdlib.h>

#include "data/decode.h"
#include "data/transform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  int flags = data[0], a = data[1], b = data[2], c = data[3], channels = flags & 1 ? 3 : 1;
  const uint8_t *file = data + 4;
  size -= 4;
  ef_image_kind kind;
  int w, h;
  ef_image im = {0};
  ef_decode_info info;
  if (ef_image_probe(file, size, "fuzz", &kind, &w, &h) == EF_OK && w > 0 && h > 0) {
    ef_decode_request rq = {.channels = channels, .strict = flags & 2};
    if (flags & 4) rq.x = a % w, rq.y = b % h, rq.w = 1 + c % (w - rq.x), rq.h = 1 + c % (h - rq.y);
    if (flags & 8) rq.min_w = rq.min_h = 1 + c;
    ef_image_decode(file, size, "fuzz", &rq, &im, &info);
    ef_image_free(&im);
  }
  ef_transform t = ef_transform_defaults(flags & 16, 1 + a % 64, channels);
  t.strict = flags & 2, t.dct = !(flags & 8), t.augment = (ef_augment_kind)((flags >> 5) % 3);
  ef_transform_scratch s = {0};
  ef_rng_seq rng = {.seed = (uint64_t)b, .stream = 1, .step = (uint32_t)c, .next = 0};
  ef_transform_sample(&t, &(ef_sample_src){.bytes = file, .len = size, .name = "fuzz"}, &rng, &s);
  ef_transform_scratch_free(&s);
  return 0;
}
