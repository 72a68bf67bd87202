// HDF5 weights: a save/load round trip restores every parameter and running statistic and the
// configuration (the variant switch too: files without it read as the B-series); conv weights are
// stored OIHW; loading into another architecture, a truncated file, a file that is not HDF5, an
// HDF5 file of another kind or a newer version, and a missing file each fail with a message that
// says which, changing nothing; a save that cannot complete leaves the previous file as it was, a
// full disk included. Extra tensor sets (an EMA, optimizer slots) and root attributes round-trip,
// and a file missing one, or holding it for other entries, fails whole. Checksums (the whole
// file's, then each tensor's and the attributes') find a changed value or attribute; NaN, infinity
// and negative variances are refused by name; a file without checksums (from before them) loads.
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/weights.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-weights-XXXXXX";
static ef_backend *be;

// A bound store holding the parameters of `cfg`, initialized from `seed`.
static ef_store *model_store(const ef_effnet_config *cfg, uint64_t seed) {
  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 0);
  ef_effnet_build(cfg, g, ef_input(g, "x", EF_F32, 4, (int64_t[]){1, 32, 32, cfg->in_channels}), false, NULL, NULL);
  ef_graph_free(g);
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(s, seed);
  // Non-trivial running statistics, so that the state arena is checked too.
  for (size_t i = 0; i < s->numel[1]; i++) s->mem[EF_ARENA_STATE][i] = 0.5f + 0.001f * (float)(i % 997);
  return s;
}

static bool same_values(const ef_store *a, const ef_store *b) {
  return a->numel[0] == b->numel[0] && a->numel[1] == b->numel[1] &&
         !memcmp(a->mem[EF_ARENA_PARAM], b->mem[EF_ARENA_PARAM], a->numel[0] * sizeof(float)) &&
         !memcmp(a->mem[EF_ARENA_STATE], b->mem[EF_ARENA_STATE], a->numel[1] * sizeof(float));
}

static char *path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

static void test_round_trip(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.num_classes = 17, cfg.padding = EF_PAD_SAME, cfg.bn_eps = 1e-3f, cfg.bn_momentum = 0.01f;
  ef_store *a = model_store(&cfg, 1), *b = model_store(&cfg, 2);
  CHECK(!same_values(a, b), "different seeds give different weights");
  CHECK(ef_weights_save(path("b0.h5"), a, &cfg) == EF_OK, "%s", ef_last_error());
  CHECK(ef_weights_load(path("b0.h5"), b) == EF_OK, "%s", ef_last_error());
  CHECK(same_values(a, b), "loaded weights differ from the saved ones");
  ef_effnet_config back;
  CHECK(ef_weights_read_config(path("b0.h5"), &back) == EF_OK, "%s", ef_last_error());
  CHECK(!strcmp(back.name, "b0") && back.width == cfg.width && back.depth == cfg.depth && back.resolution == 224 &&
            back.num_classes == 17 && back.in_channels == 3 && back.padding == EF_PAD_SAME && back.bn_eps == 1e-3f &&
            back.bn_momentum == 0.01f && back.dropout == cfg.dropout && back.drop_path == cfg.drop_path,
        "configuration round trip");
  ef_store_free(a);
  ef_store_free(b);
}

// Clears the whole file's checksum (its user block), as a copy by HDF5's tools would.
static void drop_file_checksum(const char *file) {
  FILE *f = fopen(file, "r+b");
  static const char zeros[512];
  CHECK(f && fwrite(zeros, 1, sizeof zeros, f) == sizeof zeros, "clearing %s's user block", file);
  if (f) fclose(f);
}

// The variant switch round trip: a Lite model's configuration comes back Lite; a file written
// before the switch existed (without its attributes, and so without checksums) reads as the
// B-series; a bad one is refused (written without checksums, or they would refuse it first).
static void test_variant_attributes(void) {
  ef_effnet_config cfg, back;
  ef_effnet_preset("lite2", &cfg);
  ef_store *a = model_store(&cfg, 1);
  CHECK(ef_weights_save(path("lite2.h5"), a, &cfg) == EF_OK, "%s", ef_last_error());
  CHECK(ef_weights_read_config(path("lite2.h5"), &back) == EF_OK, "%s", ef_last_error());
  CHECK(back.act == EF_ACT_RELU6 && !back.squeeze_excite && back.fixed_stem_head && back.padding == EF_PAD_SAME,
        "lite2's switch round trip");
  hid_t f = H5Fopen(path("lite2.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(H5Adelete(f, "activation") >= 0 && H5Adelete(f, "squeeze_excite") >= 0 &&
            H5Adelete(f, "fixed_stem_head") >= 0 && H5Adelete(f, "attributes_crc32c") >= 0,
        "deleting the switch's attributes");
  H5Fclose(f);
  drop_file_checksum(path("lite2.h5"));
  CHECK(ef_weights_read_config(path("lite2.h5"), &back) == EF_OK, "%s", ef_last_error());
  CHECK(back.act == EF_ACT_SWISH && back.squeeze_excite && !back.fixed_stem_head && !strcmp(back.name, "lite2"),
        "a file without the switch reads as the B-series");
  CHECK(ef_weights_save(path("lite2.h5"), a, &cfg) == EF_OK, "%s", ef_last_error());
  f = H5Fopen(path("lite2.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, "activation"), H5Adelete(f, "attributes_crc32c");
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
  H5Tset_size(t, 5);
  hid_t at = H5Acreate2(f, "activation", t, sp, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(at, t, "relu7");
  H5Aclose(at), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
  drop_file_checksum(path("lite2.h5"));
  CHECK(ef_weights_read_config(path("lite2.h5"), &back) == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "unknown activation 'relu7'"),
        "%s", ef_last_error());
  ef_store_free(a);
}

static void expect_load_error(const char *what, const char *file, ef_store *s, ef_status st, const char *needle) {
  // A copy of the values, to prove nothing changed.
  float *params = malloc(s->numel[0] * sizeof(float)), *state = malloc(s->numel[1] * sizeof(float));
  memcpy(params, s->mem[EF_ARENA_PARAM], s->numel[0] * sizeof(float));
  memcpy(state, s->mem[EF_ARENA_STATE], s->numel[1] * sizeof(float));
  ef_status got = ef_weights_load(file, s);
  CHECK(got == st && strstr(ef_last_error(), needle), "%s: status %d, message:\n%s", what, got, ef_last_error());
  CHECK(!memcmp(params, s->mem[EF_ARENA_PARAM], s->numel[0] * sizeof(float)) &&
            !memcmp(state, s->mem[EF_ARENA_STATE], s->numel[1] * sizeof(float)),
        "%s: the store changed", what);
  free(params), free(state);
}

static void test_bad_files(void) {
  ef_effnet_config b0, b1;
  ef_effnet_preset("b0", &b0);
  ef_effnet_preset("b1", &b1);
  ef_store *s0 = model_store(&b0, 1), *s1 = model_store(&b1, 1);
  CHECK(ef_weights_save(path("b1.h5"), s1, &b1) == EF_OK, "%s", ef_last_error());
  // Another architecture: B1 has more blocks than B0 and, with 10 classes, another classifier.
  expect_load_error("b1 into b0", path("b1.h5"), s0, EF_ERR_FORMAT, "unexpected: /model/blocks.0.1.conv_dw.weight");
  b0.num_classes = 10;
  ef_store *s10 = model_store(&b0, 1);
  expect_load_error("1000 classes into 10", path("b1.h5"), s10, EF_ERR_FORMAT,
                    "mis-shaped: /model/classifier.weight is (1000,1280) in the file, the model needs (10,1280)");
  ef_store_free(s10);
  // Truncated: the first half of a good file.
  CHECK(ef_weights_save(path("b0.h5"), s0, &b0) == EF_OK, "%s", ef_last_error());
  FILE *in = fopen(path("b0.h5"), "rb"), *out = fopen(path("half.h5"), "wb");
  fseek(in, 0, SEEK_END);
  long size = ftell(in);
  fseek(in, 0, SEEK_SET);
  char *buf = malloc((size_t)size);
  CHECK(fread(buf, 1, (size_t)size, in) == (size_t)size, "read");
  fwrite(buf, 1, (size_t)size / 2, out);
  fclose(in), fclose(out), free(buf);
  expect_load_error("truncated", path("half.h5"), s0, EF_ERR_FORMAT, "truncated");
  out = fopen(path("text.h5"), "w");
  fputs("conv_stem.weight = 1, 2, 3\n", out);
  fclose(out);
  expect_load_error("not HDF5", path("text.h5"), s0, EF_ERR_FORMAT, "is not an HDF5 file");
  expect_load_error("missing", path("absent.h5"), s0, EF_ERR_IO, "cannot open");
  ef_effnet_config cfg;
  CHECK(ef_weights_read_config(path("text.h5"), &cfg) == EF_ERR_FORMAT, "config of a text file");
  ef_store_free(s0);
  ef_store_free(s1);
}

// A conv weight (O,KH,KW,I) is stored as PyTorch's (O,I,KH,KW): read the dataset raw and check
// every element, with values that tell every axis apart (no square-kernel symmetry hides a swap).
static void test_layout_is_oihw(void) {
  ef_store *s = ef_store_new();
  int e = ef_store_add(s, "conv.weight", true, true, 4, (int64_t[]){3, 2, 4, 5}, (ef_init){0});
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  float *w = ef_store_data(s, e, EF_ARENA_PARAM), got[120];
  for (int i = 0; i < 120; i++) w[i] = (float)i; // value = ((o*2 + h)*4 + w)*5 + i
  CHECK(ef_weights_save(path("layout.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
  hid_t f = H5Fopen(path("layout.h5"), H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "model/conv.weight", H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hsize_t dims[4] = {0};
  CHECK(H5Sget_simple_extent_ndims(sp) == 4 && H5Sget_simple_extent_dims(sp, dims, NULL) == 4 && dims[0] == 3 &&
            dims[1] == 5 && dims[2] == 2 && dims[3] == 4,
        "stored shape (%llu,%llu,%llu,%llu), want (3,5,2,4)", (unsigned long long)dims[0], (unsigned long long)dims[1],
        (unsigned long long)dims[2], (unsigned long long)dims[3]);
  CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0, "read");
  int bad = 0;
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 5; i++)
      for (int h = 0; h < 2; h++)
        for (int x = 0; x < 4; x++) bad += got[((o * 5 + i) * 2 + h) * 4 + x] != (float)(((o * 2 + h) * 4 + x) * 5 + i);
  CHECK(bad == 0, "%d elements out of place", bad);
  H5Sclose(sp), H5Dclose(d), H5Fclose(f);
  ef_store_free(s);
}

// An HDF5 file with a /model group but no effnet format attributes, or a newer format version.
static void test_foreign_and_newer_files(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  ef_store *s = model_store(&cfg, 1);
  for (int version = 0; version < 2; version++) {
    const char *name = version ? path("newer.h5") : path("foreign.h5");
    hid_t f = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (version) {
      hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
      H5Tset_size(t, 7);
      hid_t a = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, t, "effnet");
      H5Aclose(a);
      int v = 99;
      a = H5Acreate2(f, "format_version", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, H5T_NATIVE_INT, &v);
      H5Aclose(a), H5Sclose(sp), H5Tclose(t);
    }
    H5Fclose(f);
    expect_load_error(version ? "newer version" : "foreign HDF5", name, s, EF_ERR_FORMAT,
                      version ? "format version 99" : "not an effnet weights file");
  }
  ef_store_free(s);
}

// A save that cannot finish reports it, leaves no temporary file behind and the previous file
// as it was: once because its temporary file cannot be created (a folder has that name), once
// because the disk is full (here a file-size limit: the system's reason, and nothing left half
// closed in HDF5), once because the final rename fails (the target is a folder); a save into a
// missing folder fails before writing anything.
static void test_failed_save_keeps_previous(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  ef_store *s = model_store(&cfg, 1), *other = model_store(&cfg, 2), *check = model_store(&cfg, 3);
  CHECK(ef_weights_save(path("keep.h5"), s, &cfg) == EF_OK, "%s", ef_last_error());
  char blocker[300];
  snprintf(blocker, sizeof blocker, "%s.tmp.%ld", path("keep.h5"), (long)getpid());
  CHECK(mkdir(blocker, 0755) == 0, "mkdir %s", blocker);
  CHECK(ef_weights_save(path("keep.h5"), other, &cfg) == EF_ERR_IO && strstr(ef_last_error(), "cannot create"), "%s",
        ef_last_error());
  rmdir(blocker);
  struct rlimit old, limit;
  getrlimit(RLIMIT_FSIZE, &old);
  limit = old, limit.rlim_cur = 1 << 20;
  void (*handler)(int) = signal(SIGXFSZ, SIG_IGN);
  CHECK(setrlimit(RLIMIT_FSIZE, &limit) == 0, "setrlimit");
  ef_status st = ef_weights_save(path("keep.h5"), other, &cfg);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, handler);
  CHECK(st == EF_ERR_IO && strstr(ef_last_error(), "File too large") && strstr(ef_last_error(), "is unchanged"),
        "a full disk: status %d: %s", st, ef_last_error());
  CHECK(access(blocker, F_OK) != 0, "the temporary %s is left", blocker);
  CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0, "%zd HDF5 objects left open",
        (ssize_t)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
  CHECK(ef_weights_load(path("keep.h5"), check) == EF_OK && same_values(check, s), "the previous file changed: %s",
        ef_last_error());
  ef_store_free(other);
  ef_store_free(check);
  CHECK(mkdir(path("taken"), 0755) == 0, "mkdir");
  CHECK(ef_weights_save(path("taken"), s, &cfg) == EF_ERR_IO && strstr(ef_last_error(), "cannot rename"), "%s",
        ef_last_error());
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
  FILE *p = popen(cmd, "r");
  int leftovers = -1;
  CHECK(p && fscanf(p, "%d", &leftovers) == 1 && leftovers == 0, "%d temporary files left", leftovers);
  if (p) pclose(p);
  CHECK(ef_weights_save("/nonexistent/dir/w.h5", s, &cfg) == EF_ERR_IO && strstr(ef_last_error(), "cannot create"),
        "%s", ef_last_error());
  ef_store_free(s);
}

// Sets beside the model: an EMA (params and state) and an optimizer slot (trainable entries only).
static void test_sets_and_attrs(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.num_classes = 5;
  ef_store *a = model_store(&cfg, 3), *b = model_store(&cfg, 4);
  size_t np = a->numel[0], ns = a->numel[1];
  float *ema_p = malloc(np * sizeof(float)), *ema_s = malloc(ns * sizeof(float)), *mom = malloc(np * sizeof(float));
  float *ema_p2 = calloc(np, sizeof(float)), *ema_s2 = calloc(ns, sizeof(float)), *mom2 = calloc(np, sizeof(float));
  memset(ema_p, 0, np * sizeof(float)), memset(mom, 0, np * sizeof(float)), memset(ema_s, 0, ns * sizeof(float));
  for (int e = 0; e < a->n; e++) // the entries' elements; the alignment padding between them is no one's
    for (size_t j = 0, i = a->entries[e].offset; j < a->entries[e].numel; j++, i++) {
      if (a->entries[e].trainable) ema_p[i] = (float)i * 1e-6f, mom[i] = -(float)i * 1e-7f;
      else ema_s[i] = 2.0f + (float)i;
    }
  ef_tensor_set sets[] = {{"model", NULL, NULL}, {"ema", ema_p, ema_s}, {"optimizer/momentum", mom, NULL}};
  char config[] = "{\"optimizer\": \"rmsprop\"}", back_config[64], small[8];
  ef_attr attrs[3] = {{.name = "step", .kind = EF_ATTR_INT, .i = 1234567890123LL},
                      {.name = "lr", .kind = EF_ATTR_DOUBLE, .d = 0.016},
                      {.name = "train_config", .kind = EF_ATTR_STRING, .s = config}};
  CHECK(ef_weights_save_sets(path("ckpt.h5"), a, &cfg, sets, 3, attrs, 3) == EF_OK, "%s", ef_last_error());
  ef_tensor_set back[] = {{"model", NULL, NULL}, {"ema", ema_p2, ema_s2}, {"optimizer/momentum", mom2, NULL}};
  CHECK(ef_weights_load_sets(path("ckpt.h5"), b, back, 3) == EF_OK, "%s", ef_last_error());
  CHECK(same_values(a, b) && !memcmp(ema_p, ema_p2, np * 4) && !memcmp(ema_s, ema_s2, ns * 4) &&
            !memcmp(mom, mom2, np * 4),
        "sets round trip");
  ef_attr read[3] = {{.name = "step", .kind = EF_ATTR_INT},
                     {.name = "lr", .kind = EF_ATTR_DOUBLE},
                     {.name = "train_config", .kind = EF_ATTR_STRING, .s = back_config, .cap = sizeof back_config}};
  CHECK(ef_weights_read_attrs(path("ckpt.h5"), read, 3) == EF_OK && read[0].i == 1234567890123LL &&
            read[1].d == 0.016 && !strcmp(back_config, config),
        "attributes: %s", ef_last_error());
  ef_attr too_long = {.name = "train_config", .kind = EF_ATTR_STRING, .s = small, .cap = sizeof small};
  CHECK(ef_weights_read_attrs(path("ckpt.h5"), &too_long, 1) == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "'train_config'"),
        "a string longer than its buffer: %s", ef_last_error());
  ef_attr missing = {.name = "epoch", .kind = EF_ATTR_INT};
  CHECK(ef_weights_read_attrs(path("ckpt.h5"), &missing, 1) == EF_ERR_FORMAT && strstr(ef_last_error(), "'epoch'"),
        "a missing attribute: %s", ef_last_error());
  // A plain weights file has no EMA: nothing of b changes.
  ef_store_initialize(b, 9);
  ef_store *before = model_store(&cfg, 9);
  memcpy(before->mem[EF_ARENA_STATE], b->mem[EF_ARENA_STATE], ns * sizeof(float));
  CHECK(same_values(b, before), "the snapshot");
  CHECK(ef_weights_save(path("plain.h5"), a, &cfg) == EF_OK, "%s", ef_last_error());
  ef_status st = ef_weights_load_sets(path("plain.h5"), b, back, 3);
  CHECK(st == EF_ERR_FORMAT && strstr(ef_last_error(), "missing: the group /ema") &&
            strstr(ef_last_error(), "/optimizer/momentum"),
        "no EMA: status %d, %s", st, ef_last_error());
  CHECK(same_values(b, before), "a failed load changed the store");
  // The slot group read as if it held state entries: their absence is reported by name.
  ef_tensor_set wrong = {"optimizer/momentum", mom2, ema_s2};
  CHECK(ef_weights_load_sets(path("ckpt.h5"), b, &wrong, 1) == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "missing: /optimizer/momentum/bn1.running_mean"),
        "state expected in a slot group: %s", ef_last_error());
  ef_store_free(a), ef_store_free(b), ef_store_free(before);
  free(ema_p), free(ema_s), free(mom), free(ema_p2), free(ema_s2), free(mom2);
}

// A small store: a conv weight, and a batch norm's running statistics (state).
static ef_store *small_store(void) {
  ef_store *s = ef_store_new();
  int w = ef_store_add(s, "conv.weight", true, true, 4, (int64_t[]){3, 2, 2, 2}, (ef_init){0});
  ef_store_add(s, "bn.running_mean", false, false, 1, (int64_t[]){3}, (ef_init){0});
  int v = ef_store_add(s, "bn.running_var", false, false, 1, (int64_t[]){3}, (ef_init){0});
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  for (int i = 0; i < 24; i++) ef_store_data(s, w, EF_ARENA_PARAM)[i] = 0.1f * (float)i;
  for (int i = 0; i < 3; i++) ef_store_data(s, v, EF_ARENA_STATE)[i] = 1.0f + (float)i;
  return s;
}

// Writes `value` at element 0 of `dataset` with HDF5 directly; with `drop`, deletes the dataset's
// checksum too (as a file from before checksums, or one a diverged run saved).
static void poke(const char *file, const char *dataset, float value, bool drop) {
  hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen2(f, dataset, H5P_DEFAULT);
  hid_t sp = H5Dget_space(d), one = H5Screate_simple(1, (hsize_t[]){1}, NULL);
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t start[4] = {0}, count[4] = {1, 1, 1, 1};
  H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL);
  CHECK(nd >= 1 && H5Dwrite(d, H5T_NATIVE_FLOAT, one, sp, H5P_DEFAULT, &value) >= 0, "poking %s", dataset);
  if (drop) H5Adelete(d, "crc32c");
  H5Sclose(one), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
}

static void test_checked_values(void) {
  ef_store *s = small_store(), *t = small_store();
  ef_store_initialize(t, 5);
  // Any change: the whole file's checksum, before HDF5 reads anything.
  CHECK(ef_weights_save(path("v.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
  poke(path("v.h5"), "model/conv.weight", 0.5f, false);
  expect_load_error("a changed file", path("v.h5"), t, EF_ERR_FORMAT, "v.h5 does not match its checksum");
  // Damage where HDF5 1.10 itself fails (the fuzzer found it looping forever, and reading past its
  // buffers, on a damaged global heap, where text attributes live): found before HDF5 reads it.
  CHECK(ef_weights_save(path("v.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
  FILE *f = fopen(path("v.h5"), "r+b");
  char bytes[8192];
  size_t n = f ? fread(bytes, 1, sizeof bytes, f) : 0, heap = 0;
  for (size_t i = 512; i + 32 < n && !heap; i++) heap = memcmp(bytes + i, "GCOL", 4) ? 0 : i;
  CHECK(heap, "no global heap in the first %zu bytes", n);
  memset(bytes + heap + 24, 0xff, 8); // the first object's size
  if (f && heap) fseek(f, (long)heap + 24, SEEK_SET), fwrite(bytes + heap + 24, 1, 8, f);
  if (f) fclose(f);
  expect_load_error("a damaged global heap", path("v.h5"), t, EF_ERR_FORMAT, "v.h5 does not match its checksum");
  // A damaged checksum block (the fuzzer changed its first letter, and HDF5 then read the damaged
  // file): refused, where a cleared one reads as a file without it (below).
  f = fopen(path("v.h5"), "r+b");
  CHECK(f && fputc('D', f) != EOF, "changing the block's first byte");
  if (f) fclose(f);
  expect_load_error("a damaged checksum block", path("v.h5"), t, EF_ERR_FORMAT,
                    "v.h5: its first 512 bytes hold no effnet checksum before its HDF5 data");
  // Without it (a copy by HDF5's tools), each tensor's and the attributes'.
  struct {
    const char *what, *dataset;
    float value;
    bool drop;
    const char *needle;
  } cases[] = {
      {"a changed weight", "model/conv.weight", 0.5f, false, "/model/conv.weight does not match its checksum"},
      {"a NaN", "model/conv.weight", NAN, true, "/model/conv.weight holds a NaN at element 0"},
      {"an infinity", "model/bn.running_mean", INFINITY, true, "/model/bn.running_mean holds an infinity"},
      {"a negative variance", "model/bn.running_var", -1, true, "/model/bn.running_var holds a negative value"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    CHECK(ef_weights_save(path("v.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
    poke(path("v.h5"), cases[k].dataset, cases[k].value, cases[k].drop);
    drop_file_checksum(path("v.h5"));
    expect_load_error(cases[k].what, path("v.h5"), t, EF_ERR_FORMAT, cases[k].needle);
  }
  // Without any checksum, as files from before them: loads.
  CHECK(ef_weights_save(path("v.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
  poke(path("v.h5"), "model/conv.weight", 0.0f, true); // element 0 is 0 already: the same values
  hid_t h5 = H5Fopen(path("v.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  CHECK(H5Adelete(h5, "attributes_crc32c") >= 0, "deleting the root's checksum");
  H5Fclose(h5);
  drop_file_checksum(path("v.h5"));
  CHECK(ef_weights_load(path("v.h5"), t) == EF_OK && same_values(s, t), "a file without checksums: %s",
        ef_last_error());
  // A changed root attribute.
  CHECK(ef_weights_save(path("v.h5"), s, NULL) == EF_OK, "%s", ef_last_error());
  h5 = H5Fopen(path("v.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(h5, "format_version", H5P_DEFAULT);
  int one = 1; // the same value, rewritten: no change, no complaint ...
  H5Awrite(a, H5T_NATIVE_INT, &one), H5Aclose(a);
  H5Fclose(h5);
  drop_file_checksum(path("v.h5"));
  CHECK(ef_weights_load(path("v.h5"), t) == EF_OK, "an attribute rewritten with its value: %s", ef_last_error());
  hid_t sp = H5Screate(H5S_SCALAR);
  h5 = H5Fopen(path("v.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
  a = H5Acreate2(h5, "extra", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT); // ... one more: a damaged file
  H5Awrite(a, H5T_NATIVE_INT, &one), H5Aclose(a), H5Sclose(sp);
  H5Fclose(h5);
  drop_file_checksum(path("v.h5"));
  expect_load_error("an added attribute", path("v.h5"), t, EF_ERR_FORMAT, "attributes do not match their checksum");
  // A set of mean squares holds no negative value.
  float slot[32] = {0}, back[32];
  slot[0] = -1;
  ef_tensor_set sets[2] = {{"model", NULL, NULL}, {"optimizer/rms", slot, NULL, NULL, true}};
  CHECK(ef_weights_save_sets(path("v.h5"), s, NULL, sets, 2, NULL, 0) == EF_OK, "%s", ef_last_error());
  sets[1].param = back;
  CHECK(ef_weights_load_sets(path("v.h5"), t, sets, 2) == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "/optimizer/rms/conv.weight holds a negative value"),
        "a negative mean square: %s", ef_last_error());
  ef_store_free(s), ef_store_free(t);
}

// What files are, for the commands that refuse to write over other kinds.
static void test_file_kinds(void) {
  ef_store *s = small_store();
  ef_attr step = {.name = "step", .kind = EF_ATTR_INT, .i = 3};
  ef_h5_array a = {"x", false, 1, {2, 0}, (float[]){1, 2}};
  CHECK(ef_weights_save(path("k-weights.h5"), s, NULL) == EF_OK &&
            ef_weights_save_sets(path("k-ckpt.h5"), s, NULL, &(ef_tensor_set){"model", NULL, NULL}, 1, &step, 1) ==
                EF_OK &&
            ef_h5_save_arrays(path("k-arrays.h5"), &a, 1, NULL, 0) == EF_OK,
        "%s", ef_last_error());
  hid_t f = H5Fcreate(path("k-other.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  H5Fclose(f);
  CHECK(ef_h5_file_kind(path("k-weights.h5")) == EF_H5_WEIGHTS &&
            ef_h5_file_kind(path("k-ckpt.h5")) == EF_H5_CHECKPOINT &&
            ef_h5_file_kind(path("k-arrays.h5")) == EF_H5_ARRAYS &&
            ef_h5_file_kind(path("k-other.h5")) == EF_H5_OTHER && ef_h5_file_kind(path("text.h5")) == EF_H5_NONE &&
            ef_h5_file_kind(dir) == EF_H5_NONE && ef_h5_file_kind(path("absent.h5")) == EF_H5_NONE,
        "file kinds");
  ef_store_free(s);
}

int main(void) {
  test_mkdtemp(dir);
  be = ef_cpu_backend_new(0);
  RUN(test_round_trip);
  RUN(test_variant_attributes);
  RUN(test_layout_is_oihw);
  RUN(test_foreign_and_newer_files);
  RUN(test_bad_files);
  RUN(test_failed_save_keeps_previous);
  RUN(test_sets_and_attrs);
  RUN(test_checked_values);
  RUN(test_file_kinds);
  ef_backend_free(be);
  test_rmtree(dir);
  return test_exit_code();
}
