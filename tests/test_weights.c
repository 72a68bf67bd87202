// HDF5 weights: a save/load round trip restores every parameter and running statistic and the
// configuration; loading into another architecture, a truncated file, a file that is not HDF5
// and a missing file each fail with a message that says which, changing nothing; a save that
// cannot complete leaves the previous file as it was.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/weights.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-weights-XXXXXX";
static ef_backend *be;

// A bound store holding the parameters of `cfg`, initialized from `seed`.
static ef_store *model_store(const ef_effnet_config *cfg, uint64_t seed) {
  ef_effnet_arch a;
  ef_effnet_arch_init(&a, cfg);
  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 0);
  ef_layer_ctx c = ef_effnet_layer_ctx(cfg, g, false);
  ef_effnet_forward(&a, &c, ef_input(g, "x", EF_F32, 4, (int64_t[]){1, 32, 32, cfg->in_channels}), NULL);
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
  expect_load_error("b1 into b0", path("b1.h5"), s0, EF_ERR_FORMAT, "unexpected: blocks.0.1.conv_dw.weight");
  b0.num_classes = 10;
  ef_store *s10 = model_store(&b0, 1);
  expect_load_error("1000 classes into 10", path("b1.h5"), s10, EF_ERR_FORMAT,
                    "mis-shaped: classifier.weight is (1000,1280) in the file, the model needs (10,1280)");
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

// A save that cannot finish (the target is a folder, so the final rename fails) reports it and
// leaves no temporary file behind; a save into a missing folder fails before writing anything.
static void test_failed_save_keeps_previous(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  ef_store *s = model_store(&cfg, 1);
  CHECK(mkdir(path("taken"), 0755) == 0, "mkdir");
  CHECK(ef_weights_save(path("taken"), s, &cfg) == EF_ERR_IO && strstr(ef_last_error(), "cannot rename"), "%s", ef_last_error());
  char cmd[512];
  snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
  FILE *p = popen(cmd, "r");
  int leftovers = -1;
  CHECK(p && fscanf(p, "%d", &leftovers) == 1 && leftovers == 0, "%d temporary files left", leftovers);
  if (p) pclose(p);
  CHECK(ef_weights_save("/nonexistent/dir/w.h5", s, &cfg) == EF_ERR_IO && strstr(ef_last_error(), "cannot create"), "%s",
        ef_last_error());
  ef_store_free(s);
}

int main(void) {
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  be = ef_cpu_backend_new(0);
  RUN(test_round_trip);
  RUN(test_bad_files);
  RUN(test_failed_save_keeps_previous);
  ef_backend_free(be);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return test_exit_code();
}
