// The map over its photo (train/cam.h): min-max scaling, the jet scale at both ends, bilinear
// upsampling with half-pixel centres, the blend; and the .npy writer's header (64-byte aligned,
// NumPy's v1.0 format) and data. The maps themselves are checked against PyTorch in cam_reference.py.
#include <unistd.h>

#include "harness.h"
#include "train/cam.h"

static void test_overlay(void) {
  // A 2 x 2 map over an 8 x 8 gray photo: the top-left cell hottest, the bottom-right coldest.
  float map[4] = {3, 2, 2, -1};
  ef_image photo = {0}, out = {0};
  ef_image_reshape(&photo, 8, 8, 1);
  memset(photo.px, 100, 64);
  ef_cam_result r = {.map = map, .h = 2, .w = 2, .input = photo};
  ef_cam_overlay(&r, 1, &out); // the colour alone
  CHECK(out.w == 8 && out.h == 8 && out.c == 3, "%dx%dx%d", out.w, out.h, out.c);
  const uint8_t *tl = out.px, *br = out.px + (63 * 3);
  // Jet: 1 is dark red (128, 0, 0), 0 dark blue (0, 0, 128); the corners are the cells' values
  // (half-pixel centres: pixel 0's centre maps before cell 0's, clamped to it).
  CHECK(tl[0] == 128 && tl[1] == 0 && tl[2] == 0, "top left (%d, %d, %d)", tl[0], tl[1], tl[2]);
  CHECK(br[0] == 0 && br[1] == 0 && br[2] == 128, "bottom right (%d, %d, %d)", br[0], br[1], br[2]);
  // Pixel (3, 0): source x = 3.5 * 2 / 8 - 0.5 = 0.375: 0.625 * 3 + 0.375 * 2 = 2.625, scaled 0.90625.
  const uint8_t *p = out.px + 3 * 3;
  float t = 0.90625f, want_r = 1.5f - fabsf(4 * t - 3);
  CHECK(p[0] == (uint8_t)lrintf(255 * (want_r > 1 ? 1 : want_r)) && p[2] == 0, "(3, 0): (%d, %d, %d)", p[0], p[1],
        p[2]);
  ef_cam_overlay(&r, 0, &out); // the photo alone, made RGB
  CHECK(out.px[0] == 100 && out.px[1] == 100 && out.px[2] == 100, "alpha 0: (%d, %d, %d)", out.px[0], out.px[1],
        out.px[2]);
  ef_cam_overlay(&r, 0.5f, &out);
  CHECK(out.px[0] == 114 && out.px[2] == 50, "alpha 0.5: (%d, %d, %d)", out.px[0], out.px[1], out.px[2]);
  float flat[4] = {1, 1, 1, 1}; // no range: all blue, not a division by zero
  r.map = flat;
  ef_cam_overlay(&r, 1, &out);
  CHECK(out.px[2] == 128 && out.px[0] == 0, "flat: (%d, %d, %d)", out.px[0], out.px[1], out.px[2]);
  ef_image_free(&photo), ef_image_free(&out);
}

static void test_npy(void) {
  char dir[] = "/tmp/effnet-npy-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char *path = ef_path_join(dir, "m.npy");
  float x[6] = {1, -2, 3.5f, 4, 5, 6e-3f};
  CHECK(ef_write_npy(path, x, 2, 3) == EF_OK, "%s", ef_last_error());
  FILE *f = fopen(path, "rb");
  unsigned char buf[256];
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  int hlen = buf[8] | buf[9] << 8;
  CHECK(n == (size_t)(10 + hlen) + sizeof x && (10 + hlen) % 64 == 0 && !memcmp(buf, "\x93NUMPY\x01\x00", 8),
        "%zu bytes, header %d", n, hlen);
  CHECK(buf[10 + hlen - 1] == '\n' && strstr((char *)buf + 10, "'shape': (2, 3)") && strstr((char *)buf + 10, "<f4"),
        "header '%.*s'", hlen, buf + 10);
  CHECK(!memcmp(buf + 10 + hlen, x, sizeof x), "data");
  test_rmtree(dir);
  free(path);
}

int main(void) {
  RUN(test_overlay);
  RUN(test_npy);
  return test_exit_code();
}
