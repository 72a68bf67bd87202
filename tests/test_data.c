// Dataset reading. IDX (Fashion-MNIST): plain and gzip files load with their pixels and labels;
// a wrong magic number, a truncated file, trailing bytes, mismatched counts and a missing file
// each give an error naming the file; the real files (Debian's dataset-fashion-mnist) load with
// the published sizes. CIFAR-10/100 binaries, ImageFolder trees and CSV lists the test writes
// load with the right order, pixels, labels and class names, and each kind of bad input gives
// its error; links and FIFOs in an ImageFolder.
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset.h"
#include "data/encode.h"
#include "data/idx.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-idx-XXXXXX";

static void be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

// Writes an IDX file: magic, dims, then `len` data bytes (gzip-compressed when gz).
static const char *write_idx(const char *name, bool gz, uint32_t magic, int ndim, const uint32_t *dims,
                             const uint8_t *data, size_t len) {
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
  CHECK(got == st && strstr(ef_last_error(), needle) && d.pixels == NULL, "%s: status %d, message '%s'", what, got,
        ef_last_error());
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
  CHECK(train.n == 60000 && test.n == 10000 && train.rows == 28 && train.cols == 28 && train.num_classes == 10,
        "sizes");
  int64_t count[10] = {0};
  for (int64_t i = 0; i < train.n; i++) count[train.labels[i]]++;
  for (int c = 0; c < 10; c++) CHECK(count[c] == 6000, "class %d has %lld training images", c, (long long)count[c]);
  ef_idx_free(&train);
  ef_idx_free(&test);
  ef_dataset d;
  CHECK(ef_dataset_open(EF_FASHION_MNIST_DIR, 0, &d) == EF_OK, "%s", ef_last_error());
  CHECK(d.kind == EF_DATASET_IDX && d.n == 10000 && d.c == 1 && !strcmp(d.class_names[9], "Ankle boot"),
        "as a dataset: %s", d.num_classes ? d.class_names[9] : "");
  ef_dataset_free(&d);
}

// ---- CIFAR ----------------------------------------------------------------------------------

static void write_text(const char *rel, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

// Writes `count` CIFAR records to dir/name: label byte(s) then planar R, G, B with pixel
// (y, x, c) = first + 3*(32*y + x) + c (mod 256), so the HWC order is checkable.
static void write_cifar(const char *name, int label_bytes, int count, int first_label, int extra_bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  for (int r = 0; r < count; r++) {
    uint8_t rec[2 + 3072];
    if (label_bytes == 2) rec[0] = (uint8_t)((first_label + r) % 20);
    rec[label_bytes - 1] = (uint8_t)(first_label + r);
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 1024; i++) rec[label_bytes + c * 1024 + i] = (uint8_t)(r + 3 * i + c);
    fwrite(rec, 1, (size_t)(label_bytes + 3072), f);
  }
  for (int i = 0; i < extra_bytes; i++) fputc(0, f);
  fclose(f);
}

static char *subdir(const char *name) {
  static char path[4][512];
  static int k;
  char *p = path[k++ % 4];
  snprintf(p, 512, "%s/%s", dir, name);
  mkdir(p, 0755);
  return p;
}

static void test_cifar(void) {
  char *c10 = subdir("cifar10");
  char names[5][512];
  for (int i = 0; i < 5; i++) snprintf(names[i], sizeof names[i], "cifar10/data_batch_%d.bin", i + 1);
  for (int i = 0; i < 5; i++) write_cifar(names[i], 1, 2, 2 * i, 0);
  write_cifar("cifar10/test_batch.bin", 1, 3, 7, 0);
  ef_dataset d;
  CHECK(ef_dataset_open(c10, 1, &d) == EF_OK, "%s", ef_last_error());
  CHECK(d.kind == EF_DATASET_CIFAR10 && d.n == 10 && d.num_classes == 10 && d.h == 32 && d.c == 3,
        "CIFAR-10 train: %lld samples", (long long)d.n);
  CHECK(d.labels[0] == 0 && d.labels[9] == 9 && !strcmp(d.class_names[0], "airplane"), "labels %d %d, class 0 '%s'",
        d.labels[0], d.labels[9], d.class_names[0]);
  // Sample 3 (second record of batch 2, r = 1): pixel (y=1, x=2) channel 2 = 1 + 3*(32+2) + 2.
  CHECK(d.pixels[3 * 3072 + (32 + 2) * 3 + 2] == (uint8_t)(1 + 3 * 34 + 2), "planar to HWC");
  ef_dataset_free(&d);
  CHECK(ef_dataset_open(c10, 0, &d) == EF_OK && d.n == 3 && d.labels[2] == 9, "CIFAR-10 test: %s", ef_last_error());
  ef_dataset_free(&d);
  write_text("cifar10/batches.meta.txt", "cat\ndog\n\n");
  CHECK(ef_dataset_open(c10, 0, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "names 2 classes but the data has 10"),
        "a short batches.meta.txt: %s", ef_last_error());
  write_text("cifar10/batches.meta.txt", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n");
  CHECK(ef_dataset_open(c10, 0, &d) == EF_OK && !strcmp(d.class_names[9], "j"), "batches.meta.txt: %s",
        ef_last_error());
  ef_dataset_free(&d);
  write_cifar("cifar10/test_batch.bin", 1, 2, 9, 0); // labels 9, 10
  CHECK(ef_dataset_open(c10, 0, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "record 1 has label 10"),
        "label 10: %s", ef_last_error());
  write_cifar("cifar10/test_batch.bin", 1, 2, 0, 5);
  CHECK(ef_dataset_open(c10, 0, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "not a whole number of 3073-byte"),
        "wrong size: %s", ef_last_error());
  snprintf(names[0], sizeof names[0], "%s/data_batch_4.bin", c10);
  remove(names[0]);
  CHECK(ef_dataset_open(c10, 1, &d) == EF_ERR_IO && strstr(ef_last_error(), "data_batch_4.bin"), "missing batch: %s",
        ef_last_error());

  char *c100 = subdir("cifar100");
  write_cifar("cifar100/train.bin", 2, 4, 97, 0); // fine labels 97 ... 100
  CHECK(ef_dataset_open(c100, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "label 100"), "fine label 100: %s",
        ef_last_error());
  write_cifar("cifar100/train.bin", 2, 4, 50, 0);
  FILE *f = fopen(strcat(strcpy(names[1], c100), "/fine_label_names.txt"), "w");
  for (int i = 0; i < 100; i++) fprintf(f, "class%02d\n", i);
  fclose(f);
  CHECK(ef_dataset_open(c100, 1, &d) == EF_OK, "%s", ef_last_error());
  CHECK(d.kind == EF_DATASET_CIFAR100 && d.n == 4 && d.num_classes == 100 && d.labels[1] == 51 &&
            !strcmp(d.class_names[51], "class51"),
        "CIFAR-100: %lld samples, label %d, name %s", (long long)d.n, d.labels[1], d.class_names[51]);
  CHECK(d.pixels[1 * 3072 + 5] == (uint8_t)(1 + 3 * 1 + 2), "CIFAR-100 pixels after 2 label bytes");
  ef_dataset_free(&d);
}

// ---- ImageFolder and lists ----------------------------------------------------------------------

static void write_png(const char *rel, int w, int h) {
  ef_image im = {0};
  ef_image_reshape(&im, w, h, 3);
  for (size_t i = 0; i < (size_t)w * h * 3; i++) im.px[i] = (uint8_t)i;
  uint8_t *buf;
  size_t len;
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  CHECK(ef_image_encode_png(&im, &buf, &len) == EF_OK && ef_write_file(path, buf, len) == EF_OK, "%s", ef_last_error());
  free(buf);
  ef_image_free(&im);
}

static void test_folder(void) {
  char root[512];
  snprintf(root, sizeof root, "%s", subdir("folder"));
  subdir("folder/b"), subdir("folder/a"), subdir("folder/a/sub"), subdir("folder/.hidden");
  write_png("folder/b/x.png", 5, 4);
  // torchvision's order within a class is sorted(os.walk): by directory path ("a" < "a/sub" <
  // "a/sub-x" < "a/sub/deep", as '-' < '/'), then by file name.
  subdir("folder/a/sub-x"), subdir("folder/a/sub/deep");
  write_png("folder/a/sub-x/w.png", 2, 2);
  write_png("folder/a/sub/deep/v.png", 2, 2);
  write_png("folder/a/y.JPG", 5, 4); // names only: the folder reader does not decode
  write_png("folder/a/sub/z.png", 5, 4);
  write_png("folder/a/notes.txt", 1, 1);
  ef_dataset d;
  CHECK(ef_dataset_open(root, 1, &d) == EF_OK, "%s", ef_last_error());
  CHECK(d.kind == EF_DATASET_FOLDER && d.n == 5 && d.num_classes == 2 && !strcmp(d.class_names[0], "a") &&
            !strcmp(d.class_names[1], "b"),
        "classes: %d, n %lld", d.num_classes, (long long)d.n);
  CHECK(d.n == 5 && strstr(d.paths[0], "a/y.JPG") && strstr(d.paths[1], "a/sub/z.png") &&
            strstr(d.paths[2], "a/sub-x/w.png") && strstr(d.paths[3], "a/sub/deep/v.png") &&
            strstr(d.paths[4], "b/x.png") && d.labels[0] == 0 && d.labels[3] == 0 && d.labels[4] == 1,
        "order of %lld files", (long long)d.n);
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0;
  CHECK(ef_dataset_read_file(&d, 4, &buf, &cap, &len) == EF_OK && len > 8 && !memcmp(buf, "\x89PNG", 4), "read: %s",
        ef_last_error());
  remove(d.paths[4]);
  CHECK(ef_dataset_read_file(&d, 4, &buf, &cap, &len) == EF_ERR_IO && strstr(ef_last_error(), "b/x.png"),
        "vanished file: %s", ef_last_error());
  free(buf);
  ef_dataset_free(&d);
  // b/ is now empty: an error naming it.
  CHECK(ef_dataset_open(root, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "folder/b holds no"),
        "empty class: %s", ef_last_error());
  CHECK(ef_dataset_open_folder(subdir("folder/a/sub-x"), &d) == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "no class directories"),
        "no classes: %s", ef_last_error());
  CHECK(ef_dataset_open("/nonexistent/data", 1, &d) == EF_ERR_IO && strstr(ef_last_error(), "/nonexistent/data"),
        "missing root: %s", ef_last_error());
  // An ImageNet-style root: train/ and val/ pick the split.
  subdir("inet"), subdir("inet/train"), subdir("inet/val"), subdir("inet/train/cat"), subdir("inet/val/cat"),
      subdir("inet/val/dog");
  write_png("inet/train/cat/1.png", 2, 2);
  write_png("inet/val/cat/2.png", 2, 2);
  write_png("inet/val/dog/3.png", 2, 2);
  CHECK(ef_dataset_open(subdir("inet"), 0, &d) == EF_OK && d.n == 2 && d.num_classes == 2, "val split: %s",
        ef_last_error());
  ef_dataset_free(&d);
  CHECK(ef_dataset_open(subdir("inet"), 1, &d) == EF_OK && d.n == 1 && d.num_classes == 1, "train split: %s",
        ef_last_error());
  ef_dataset_free(&d);
}

// Links and special files in an ImageFolder: a class folder may be a link; links to folders
// inside a class (out of it, or in a loop) are not followed; FIFOs and dangling links are skipped
// (each named in a warning); reading a FIFO is an error at once, not a wait for a writer.
static void test_folder_links(void) {
  char root[512], path[600], target[600];
  snprintf(root, sizeof root, "%s", subdir("links"));
  subdir("links/cat"), subdir("elsewhere"), subdir("elsewhere/coffee");
  write_png("links/cat/1.png", 2, 2);
  write_png("elsewhere/coffee/2.png", 2, 2);
  write_png("elsewhere/coffee/3.png", 2, 2);
  snprintf(path, sizeof path, "%s/links/coffee", dir), snprintf(target, sizeof target, "%s/elsewhere/coffee", dir);
  CHECK(symlink(target, path) == 0, "a linked class folder");
  const char *links[][2] = {{"..", "links/cat/up"}, {".", "links/cat/loop"}, {"/nonexistent", "links/cat/gone.png"}};
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, links[i][1]);
    CHECK(symlink(links[i][0], path) == 0, "symlink %s", path);
  }
  snprintf(path, sizeof path, "%s/links/cat/pipe.png", dir);
  CHECK(mkfifo(path, 0644) == 0, "mkfifo %s", path);
  ef_dataset d;
  CHECK(ef_dataset_open_folder(root, &d) == EF_OK && d.n == 3 && d.num_classes == 2 && d.labels[0] == 0 &&
            d.labels[1] == 1 && d.labels[2] == 1,
        "%lld samples: %s", (long long)d.n, ef_last_error());
  ef_dataset_free(&d);
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0;
  CHECK(ef_read_file(path, &buf, &cap, &len) == EF_ERR_IO && strstr(ef_last_error(), "not a regular file"),
        "reading a FIFO: %s", ef_last_error());
  free(buf);
}

static void test_list(void) {
  subdir("list");
  write_text("list/l.csv", "path,label\nimgs/a,b.png,2\n/abs/c.jpg,0\r\n\nd.png,1\n");
  char path[512];
  snprintf(path, sizeof path, "%s/list/l.csv", dir);
  ef_dataset d;
  CHECK(ef_dataset_open(path, 1, &d) == EF_OK, "%s", ef_last_error());
  CHECK(d.kind == EF_DATASET_LIST && d.n == 3 && d.num_classes == 3 && d.labels[0] == 2 && d.labels[1] == 0 &&
            strstr(d.paths[0], "/list/imgs/a,b.png") && !strcmp(d.paths[1], "/abs/c.jpg") &&
            !strcmp(d.class_names[2], "2"),
        "list: n %lld, %s", (long long)d.n, d.n ? d.paths[0] : "");
  ef_dataset_free(&d);
  write_text("list/l.csv", "a.png,0\nb.png,cat\n");
  CHECK(ef_dataset_open(path, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "l.csv:2: label 'cat'"),
        "bad label: %s", ef_last_error());
  write_text("list/l.csv", "a.png\n");
  CHECK(ef_dataset_open(path, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "l.csv:1:"), "no comma: %s",
        ef_last_error());
  write_text("list/l.csv", "a.png,0\nb.png,3\n");
  write_text("list/classes.txt", "zero\none\n");
  CHECK(ef_dataset_open(path, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "label 3 but"),
        "label past classes.txt: %s", ef_last_error());
  write_text("list/l.csv", "a.png,0\nb.png,1\n");
  write_text("list/classes.txt", "zero\n\none\n");
  CHECK(ef_dataset_open(path, 1, &d) == EF_ERR_FORMAT && strstr(ef_last_error(), "line 2 is empty"),
        "a nameless class: %s", ef_last_error());
  write_text("list/classes.txt", "zero\none\n\n\n"); // trailing blank lines are not classes
  CHECK(ef_dataset_open(path, 1, &d) == EF_OK && d.num_classes == 2 && !strcmp(d.class_names[1], "one"),
        "classes.txt: %s", ef_last_error());
  // The class list round trip (names with spaces and slashes survive).
  char out[512];
  snprintf(out, sizeof out, "%s/list/written.txt", dir);
  char *names[] = {"T-shirt/top", "Ankle boot"};
  char **back;
  int n;
  CHECK(ef_classes_write(out, names, 2) == EF_OK && ef_classes_read(out, &back, &n) == EF_OK && n == 2 &&
            !strcmp(back[0], "T-shirt/top") && !strcmp(back[1], "Ankle boot"),
        "class list round trip: %s", ef_last_error());
  ef_classes_free(back, n);
  ef_dataset_free(&d);
}

int main(void) {
  test_mkdtemp(dir);
  RUN(test_valid_files);
  RUN(test_bad_files);
  RUN(test_fashion_mnist);
  RUN(test_cifar);
  RUN(test_folder);
  RUN(test_folder_links);
  RUN(test_list);
  test_rmtree(dir);
  return test_exit_code();
}
