// IDX (Fashion-MNIST) reading: plain and gzip files load with their pixels and labels; a wrong
// magic number, a truncated file, trailing bytes, mismatched counts and a missing file each give
// an error naming the file. Then, where Debian's dataset-fashion-mnist is installed, the real
// files load with the published sizes and a balanced label histogram.
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "data/idx.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-idx-XXXXXX";

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

// Writes an IDX file: magic, dims, then `len` data bytes (gzip-compressed when gz).
static const char *write_idx(const char *name, bool gz, uint32_t magic, int ndim, const uint32_t *dims, const uint8_t *data,
                             size_t len) {
  static char path[4][256];
  static int k;
  char *p = path[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  uint8_t head[16];
  be32(head, magic);
  for (int i = 0; i < ndim; i++) be32(head + 4 + 4 * i, dims[i]);
  if (gz) {
    gzFile f = gzopen(p, "wb");
    gzwrite(f, head, (unsigned)(4 + 4 * ndim));
    if (len) gzwrite(f, data, (unsigned)len);
    gzclose(f);
  } else {
    FILE *f = fopen(p, "wb");
    fwrite(head, 1, (size_t)(4 + 4 * ndim), f);
    if (len) fwrite(data, 1, len, f);
    fclose(f);
  }
  return p;
}

static uint8_t pixels[3 * 4 * 5], labels[3] = {2, 0, 7};

static void test_valid_files(void) {
  for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 7);
  for (int gz = 0; gz < 2; gz++) {
    const char *im = write_idx(gz ? "im.gz" : "im", gz, 0x803, 3, (uint32_t[]){3, 4, 5}, pixels, sizeof pixels);
    const char *lb = write_idx(gz ? "lb.gz" : "lb", gz, 0x801, 1, (uint32_t[]){3}, labels, 3);
    ef_idx_dataset d;
    ef_status st = ef_idx_load(im, lb, &d);
    CHECK(st == EF_OK, "gz %d: %s", gz, ef_last_error());
    if (st != EF_OK) continue;
    CHECK(d.n == 3 && d.rows == 4 && d.cols == 5 && d.num_classes == 8, "gz %d: %lld x %lld x %lld, %d classes", gz,
          (long long)d.n, (long long)d.rows, (long long)d.cols, d.num_classes);
    CHECK(!memcmp(d.pixels, pixels, sizeof pixels) && d.labels[0] == 2 && d.labels[2] == 7, "gz %d: contents", gz);
    ef_idx_free(&d);
  }
}

// Loading must fail with `st` and a message containing `needle`.
static void expect_error(const char *what, const char *im, const char *lb, ef_status st, const char *needle) {
  ef_idx_dataset d;
  ef_status got = ef_idx_load(im, lb, &d);
  CHECK(got == st && strstr(ef_last_error(), needle) && d.pixels == NULL, "%s: status %d, message '%s'", what, got, ef_last_error());
}

static void test_bad_files(void) {
  const char *lb = write_idx("good-lb", false, 0x801, 1, (uint32_t[]){3}, labels, 3);
  const char *im = write_idx("magic", false, 0x801, 3, (uint32_t[]){3, 4, 5}, pixels, sizeof pixels);
  expect_error("wrong magic", im, lb, EF_ERR_FORMAT, "magic number");
  im = write_idx("truncated.gz", true, 0x803, 3, (uint32_t[]){3, 4, 5}, pixels, sizeof pixels - 1);
  expect_error("truncated", im, lb, EF_ERR_FORMAT, "truncated");
  im = write_idx("header", false, 0x803, 1, (uint32_t[]){3}, NULL, 0);
  expect_error("short header", im, lb, EF_ERR_FORMAT, "truncated: 8 of 16 bytes of the IDX header");
  // A gzip file whose checksum (the trailer's first 4 bytes) does not match its contents.
  im = write_idx("crc.gz", true, 0x803, 3, (uint32_t[]){3, 4, 5}, pixels, sizeof pixels);
  FILE *f = fopen(im, "r+b");
  fseek(f, -8, SEEK_END);
  int byte = fgetc(f);
  fseek(f, -8, SEEK_END);
  fputc(byte ^ 0x55, f);
  fclose(f);
  expect_error("bad gzip checksum", im, lb, EF_ERR_FORMAT, "corrupt gzip data");
  im = write_idx("zero", false, 0x803, 3, (uint32_t[]){0, 4, 5}, NULL, 0);
  expect_error("zero dimension", im, lb, EF_ERR_FORMAT, "dimension 0 is 0");
  uint8_t more[sizeof pixels + 1] = {0};
  im = write_idx("trailing", false, 0x803, 3, (uint32_t[]){3, 4, 5}, more, sizeof more);
  expect_error("trailing bytes", im, lb, EF_ERR_FORMAT, "after the data");
  im = write_idx("good-im", false, 0x803, 3, (uint32_t[]){3, 4, 5}, pixels, sizeof pixels);
  const char *lb2 = write_idx("two-lb", false, 0x801, 1, (uint32_t[]){2}, labels, 2);
  expect_error("mismatched counts", im, lb2, EF_ERR_FORMAT, "has 3 images but");
  expect_error("missing file", "/nonexistent/images", lb, EF_ERR_IO, "/nonexistent/images");
}

static void test_fashion_mnist(void) {
  if (access(EF_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
    printf("  SKIPPED: %s not installed (Debian package dataset-fashion-mnist)\n", EF_FASHION_MNIST_DIR);
    return;
  }
  ef_idx_dataset train, test;
  CHECK(ef_idx_load_dir(EF_FASHION_MNIST_DIR, "train", &train) == EF_OK, "%s", ef_last_error());
  CHECK(ef_idx_load_dir(EF_FASHION_MNIST_DIR, "t10k", &test) == EF_OK, "%s", ef_last_error());
  CHECK(train.n == 60000 && test.n == 10000 && train.rows == 28 && train.cols == 28 && train.num_classes == 10, "sizes");
  int64_t count[10] = {0};
  for (int64_t i = 0; i < train.n; i++) count[train.labels[i]]++;
  for (int c = 0; c < 10; c++) CHECK(count[c] == 6000, "class %d has %lld training images", c, (long long)count[c]);
  ef_idx_free(&train);
  ef_idx_free(&test);
}

int main(void) {
  test_mkdtemp(dir);
  RUN(test_valid_files);
  RUN(test_bad_files);
  RUN(test_fashion_mnist);
  test_rmtree(dir);
  return test_exit_code();
}
