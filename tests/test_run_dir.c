// The run folder (train/run_dir.h): checkpoint names and their order (by step, not by name),
// the newest kept by pruning, --resume of a folder or a file, the guards that keep a new run
// out of a folder with checkpoints and a resume from branching inside its own folder, the lock
// (one run at a time, released by a crash), unique default names, and stale temporaries.
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"
#include "train/launch.h"
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
  CHECK(ef_run_dir_choose(out, sizeof out, empty, NULL, 0, "b0", NULL) == EF_OK && !strcmp(out, empty), "%s",
        ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, NULL, 0, "b3", NULL) == EF_OK && !strncmp(out, "runs/b3-", 8),
        "new folder %s", out);
  int lock;
  CHECK(ef_run_dir_choose(out, sizeof out, dir, NULL, 0, "b0", &lock) == EF_ERR_INVALID && lock == -1 &&
            strstr(ef_last_error(), "already holds checkpoints of another run") && !exists("run.lock"),
        "%s (a refused run writes nothing there)", ef_last_error());
  // Resuming: into its own folder from the newest checkpoint; not from an older one there; into
  // an empty folder given from any.
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, newest, 1234567890123LL, "b0", NULL) == EF_OK && !strcmp(out, dir),
        "%s", ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, NULL, older, 100, "b0", NULL) == EF_ERR_INVALID &&
            strstr(ef_last_error(), "is not the latest checkpoint"),
        "%s", ef_last_error());
  CHECK(ef_run_dir_choose(out, sizeof out, empty, older, 100, "b0", NULL) == EF_OK && !strcmp(out, empty), "%s",
        ef_last_error());
  // ... but not into another run's folder.
  char other[320];
  snprintf(other, sizeof other, "%s/ckpt-000000000005.h5", empty);
  FILE *f = fopen(other, "w");
  CHECK(f, "cannot create %s", other);
  if (f) fclose(f);
  CHECK(ef_run_dir_choose(out, sizeof out, empty, newest, 1234567890123LL, "b0", NULL) == EF_ERR_INVALID &&
            strstr(ef_last_error(), "already holds checkpoints of another run"),
        "resuming into another run's folder: %s", ef_last_error());
}

// One run at a time in a folder: a second lock fails naming the holder's pid; the lock goes with
// its holder, however it ends (here a child killed by SIGKILL).
static void test_lock(void) {
  char locked[300], out[4096], pid[64];
  snprintf(locked, sizeof locked, "%s/locked/deeper", dir);
  int a, b;
  CHECK(ef_run_dir_choose(out, sizeof out, locked, NULL, 0, "b0", &a) == EF_OK && a >= 0, "%s", ef_last_error());
  snprintf(pid, sizeof pid, "(pid %ld)", (long)getpid());
  CHECK(ef_run_dir_choose(out, sizeof out, locked, NULL, 0, "b0", &b) == EF_ERR_INVALID && b == -1 &&
            strstr(ef_last_error(), "is in use by another effnet run") && strstr(ef_last_error(), pid),
        "a second run in a locked folder: %s", ef_last_error());
  ef_run_dir_unlock(a);
  CHECK(ef_run_dir_choose(out, sizeof out, locked, NULL, 0, "b0", &b) == EF_OK, "after unlocking: %s", ef_last_error());
  ef_run_dir_unlock(b);
  pid_t child = fork();
  if (child == 0) {
    int c;
    if (ef_run_dir_choose(out, sizeof out, locked, NULL, 0, "b0", &c) == EF_OK) raise(SIGKILL);
    _exit(1);
  }
  int status;
  waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status), "the child took the lock and was killed");
  CHECK(ef_run_dir_choose(out, sizeof out, locked, NULL, 0, "b0", &b) == EF_OK, "after a crash: %s", ef_last_error());
  ef_run_dir_unlock(b);
}

// Default names: two runs started in the same second get two folders; a rank that does not write
// (no lock) computes the name alone.
static void test_unique_names(void) {
  char cwd[4096], first[4096], second[4096], plain[4096];
  CHECK(getcwd(cwd, sizeof cwd) && chdir(dir) == 0, "chdir %s", dir);
  int a, b;
  CHECK(ef_run_dir_choose(first, sizeof first, NULL, NULL, 0, "b3", &a) == EF_OK, "%s", ef_last_error());
  CHECK(ef_run_dir_choose(second, sizeof second, NULL, NULL, 0, "b3", &b) == EF_OK, "%s", ef_last_error());
  CHECK(ef_run_dir_choose(plain, sizeof plain, NULL, NULL, 0, "b3", NULL) == EF_OK, "%s", ef_last_error());
  struct stat st;
  CHECK(strcmp(first, second) && stat(first, &st) == 0 && stat(second, &st) == 0, "two runs: %s and %s", first, second);
  CHECK(!strncmp(plain, "runs/b3-", 8), "the name alone: %s", plain);
  // Workers of --gpus name the folder with their launcher's time, so that they agree; a malformed one is ignored.
  setenv(EF_LAUNCH_STAMP, "20200102-030405", 1);
  CHECK(ef_run_dir_choose(plain, sizeof plain, NULL, NULL, 0, "b3", NULL) == EF_OK &&
            !strcmp(plain, "runs/b3-20200102-030405"),
        "the launcher's time: %s", plain);
  setenv(EF_LAUNCH_STAMP, "../../etc/passw", 1); // 15 characters, as a time has
  CHECK(ef_run_dir_choose(plain, sizeof plain, NULL, NULL, 0, "b3", NULL) == EF_OK && !strstr(plain, "etc"),
        "a malformed time is ignored: %s", plain);
  unsetenv(EF_LAUNCH_STAMP);
  // A model's name can come from a file: kept to safe characters, the folder stays under runs/.
  CHECK(ef_run_dir_choose(plain, sizeof plain, NULL, NULL, 0, "../x y", NULL) == EF_OK &&
            !strncmp(plain, "runs/.._x_y-", 12) && !strchr(plain + 5, '/'),
        "a name with '/': %s", plain);
  ef_run_dir_unlock(a), ef_run_dir_unlock(b);
  CHECK(chdir(cwd) == 0, "chdir back");
}

// Temporaries of atomic writes whose writer died go; a live writer's (this process's), other
// files and malformed names stay.
static void test_clean(void) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, NULL, 0); // its pid names no process now
  char dead[64], live[64];
  snprintf(dead, sizeof dead, "ckpt-000000000050.h5.tmp.%ld", (long)child);
  snprintf(live, sizeof live, "best.h5.tmp.%ld", (long)getpid());
  touch(dead), touch(live), touch("best.h5.tmp.x12"), touch("notes.tmp.txt");
  CHECK(ef_run_dir_clean(dir) >= 1, "nothing removed");
  CHECK(!exists(dead) && exists(live) && exists("best.h5.tmp.x12") && exists("notes.tmp.txt") && exists("best.h5"),
        "cleaning removed the wrong files");
}

int main(void) {
  test_mkdtemp(dir);
  RUN(test_names_and_order);
  RUN(test_prune);
  RUN(test_resume_path);
  RUN(test_choose);
  RUN(test_lock);
  RUN(test_unique_names);
  RUN(test_clean);
  test_rmtree(dir);
  return test_exit_code();
}
