// The run folder (train/run_dir.h): checkpoint names and their order (by step, not by name),
// the newest kept by pruning, --resume of a folder or a file, and the guards that keep a new run
// out of a folder with checkpoints and a resume from branching inside its own folder.
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/harness.h"
#include "train/run_dir.h"

static char dir[] = "/tmp/effnet-run-dir-XXXXXX";

static void touch(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  CHECK(f, "cannot create %s", path);
  if (f) fclose(f);
}

static bool exists(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

static void test_names_and_order(void) {
  char path[256];
  ef_run_dir_checkpoint(path, sizeof path, dir, 42);
  CHECK(!strcmp(path + strlen(dir), "/ckpt-000000000042.h5"), "checkpoint name %s", path);
  ef_run_dir_best(path, sizeof path, dir);
  CHECK(!strcmp(path + strlen(dir), "/best.h5"), "best name %s", path);
  long long steps[8];
  CHECK(ef_run_dir_list("/nonexistent-run-dir", steps, 8) == 0, "a missing folder lists checkpoints");
  ef_run_dir_latest(path, sizeof path, dir);
  CHECK(!strcmp(path, "none"), "latest of an empty folder: %s", path);
  // Steps past 12 digits sort by their value; other files are not checkpoints.
  touch("ckpt-000000000100.h5"), touch("ckpt-000000000009.h5"), touch("ckpt-1234567890123.h5");
  touch("best.h5"), touch("ckpt-000000000007.h5.tmp.123"), touch("ckpt-x.h5"), touch("metrics.jsonl");
  int n = ef_run_dir_list(dir, steps, 8);
  CHECK(n == 3 && steps[0] == 9 && steps[1] == 100 && steps[2] == 1234567890123LL, "listed %d: %lld %lld %lld", n,
        steps[0], steps[1], steps[2]);
  CHECK(ef_run_dir_list(dir, steps, 2) == 2, "the listing passed its room");
  ef_run_dir_latest(path, sizeof path, dir);
  CHECK(strstr(path, "ckpt-1234567890123.h5") != NULL, "latest %s", path);
}

static void test_prune(void) {
  ef_run_dir_prune(dir, 2);
  CHECK(!exists("ckpt-000000000009.h5") && exists("ckpt-000000000100.h5") && exists("ckpt-1234567890123.h5"),
        "pruning to 2 kept the wrong files");
  CHECK(exists("best.h5") && exists("ckpt-000000000007.h5.tmp.123") && exists("metrics.jsonl"),
        "pruning removed others");
  ef_run_dir_prune(dir, 5);
  CHECK(exists("ckpt-000000000100.h5"), "pruning to more than there are removed one");
}

static void test_resume_path(void) {
  char path[256], want[256];
  CHECK(ef_run_dir_resume_path(dir, path, sizeof path) == EF_OK, "%s", ef_last_error());
  ef_run_dir_checkpoint(want, sizeof want, dir, 1234567890123LL);
  CHECK(!strcmp(path, want), "resume of the folder: %s, want %s", path, want);
  snprintf(want, sizeof want, "%s/ckpt-000000000100.h5", dir);
  CHECK(ef_run_dir_resume_path(want, path, sizeof path) == EF_OK && !strcmp(path, want), "resume of a file: %s", path);
  CHECK(ef_run_dir_resume_path("/nonexistent-run", path, sizeof path) == EF_ERR_IO &&
            strstr(ef_last_error(), "cannot resume from /nonexistent-run"),
        "%s", ef_last_error());
  char empty[280];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  CHECK(mkdir(empty, 0755) == 0, "mkdir %s: %s", empty, strerror(errno));
  CHECK(ef_run_dir_resume_path(empty, path, sizeof path) == EF_ERR_IO && strstr(ef_last_error(), "holds no checkpoint"),
        "%s", ef_last_error());
}

static void test_choose(void) {
  char out[4096], empty[280], newest[280], older[280];
  snprintf(empty, sizeof empty, "%s/empty", dir);
  ef_run_dir_checkpoint(newest, sizeof newest, dir, 1234567890123LL);
  ef_run_dir_checkpoint(older, sizeof older, dir, 100);
  // A new run: the folder given, when it holds no checkpoint; a new name otherwise.
  CHECK(ef_run_dir_choose(out, sizeof out, empty, NULL, 0, "b0") == EF_OK && !strcmp(out, empty), "%s",
        ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, NULL, 0, "b3") == EF_OK && !strncmp(out, "runs/b3-", 8),
        "new folder %s", out);
  CHECK(ef_run_dir_choose(out, sizeof out, dir, NULL, 0, "b0") == EF_ERR_INVALID &&
            strstr(ef_last_error(), "already holds checkpoints of another run"),
        "%s", ef_last_error());
  // Resuming: into its own folder from the newest checkpoint; not from an older one there; into
  // an empty folder given from any.
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, newest, 1234567890123LL, "b0") == EF_OK && !strcmp(out, dir), "%s",
        ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, older, 100, "b0") == EF_ERR_INVALID &&
            strstr(ef_last_error(), "is not the latest checkpoint"),
        "%s", ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, empty, older, 100, "b0") == EF_OK && !strcmp(out, empty), "%s",
        ef_last_error());
  // ... but not into another run's folder.
  char other[320];
  snprintf(other, sizeof other, "%s/ckpt-000000000005.h5", empty);
  FILE *f = fopen(other, "w");
  CHECK(f, "cannot create %s", other);
  if (f) fclose(f);
  CHECK(ef_run_dir_choose(out, sizeof out, empty, newest, 1234567890123LL, "b0") == EF_ERR_INVALID &&
            strstr(ef_last_error(), "already holds checkpoints of another run"),
        "resuming into another run's folder: %s", ef_last_error());
}

int main(void) {
  test_mkdtemp(dir);
  RUN(test_names_and_order);
  RUN(test_prune);
  RUN(test_resume_path);
  RUN(test_choose);
  test_rmtree(dir);
  return test_exit_code();
}
