// The launcher of `effnet train --gpus` with shell workers, and the communicator's pieces around it
// that need no GPU: each worker sees its rank, the world size and the id; a worker that fails or
// is killed ends the others within the grace period, stuck ones included, also during a stop; a
// signal to the launcher reaches every worker; the launcher's death kills the workers; the
// workers' "launched" communicator; and the timed poll behind NCCL's waits.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"
#include "train/launch.h"
#include "train/comm.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Runs `script` in n /bin/sh workers (each sees $EFFNET_RANK ...); the status, and the seconds taken.
static int launch_sh(int n, const char *script, double *seconds) {
  char *argv[] = {"sh", "-c", (char *)script, NULL};
  double t0 = now_s();
  int rc =
      ef_launch(&(ef_launch_config){.workers = n, .program = "/bin/sh", .argv = argv, .nccl_id = "00ff", .grace_s = 1});
  *seconds = now_s() - t0;
  return rc;
}

static void test_environment(void) {
  char dir[] = "/tmp/effnet-launch-XXXXXX", script[512], path[600], line[128];
  CHECK(mkdtemp(dir), "mkdtemp");
  setenv(EF_LAUNCH_RANK, "7", 1); // the launcher's own (a nested launch) must not reach the workers
  snprintf(script, sizeof script,
           "echo \"$EFFNET_RANK $EFFNET_WORLD_SIZE $EFFNET_NCCL_ID ${#EFFNET_RUN_STAMP}\" > %s/w$EFFNET_RANK", dir);
  double t;
  CHECK(launch_sh(3, script, &t) == 0, "three workers that succeed: status 0");
  unsetenv(EF_LAUNCH_RANK);
  for (int r = 0; r < 3; r++) {
    snprintf(path, sizeof path, "%s/w%d", dir, r);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(line, sizeof line, f), "worker %d wrote %s", r, path);
    char want[64];
    snprintf(want, sizeof want, "%d 3 00ff 15\n", r); // the launcher's time, YYYYmmdd-HHMMSS
    CHECK(f && !strcmp(line, want), "worker %d saw '%s', want '%s'", r, line, want);
    if (f) fclose(f);
    unlink(path);
  }
  rmdir(dir);
}

static void test_failed_workers(void) {
  double t;
  int rc = launch_sh(3, "if [ $EFFNET_RANK = 1 ]; then sleep 0.2; exit 3; fi; exec sleep 30", &t);
  CHECK(rc == 3 && t < 5, "a worker exiting 3 ends the others: status %d after %.1f s (want 3, under 5 s)", rc, t);
  rc = launch_sh(2, "if [ $EFFNET_RANK = 0 ]; then sleep 0.2; kill -9 $$; fi; exec sleep 30", &t);
  CHECK(rc == 128 + 9 && t < 5, "a worker killed by SIGKILL: status %d after %.1f s (want 137, under 5 s)", rc, t);
  // Workers that ignore SIGTERM (stuck in a collective) are killed after the grace period.
  rc = launch_sh(3, "trap '' TERM; if [ $EFFNET_RANK = 2 ]; then sleep 0.2; exit 2; fi; exec sleep 30", &t);
  CHECK(rc == 2 && t > 0.9 && t < 5, "stuck workers killed after the 1 s grace: status %d after %.1f s", rc, t);
  // Ignored SIGCHLD (inherited) must not hide the workers' ends from the launcher.
  struct sigaction ign = {.sa_handler = SIG_IGN}, old;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGCHLD, &ign, &old);
  rc = launch_sh(2, "exit 0", &t);
  sigaction(SIGCHLD, &old, NULL);
  CHECK(rc == 0 && t < 5, "with SIGCHLD ignored: status %d after %.1f s (want 0)", rc, t);
  char *argv[] = {"nothing", NULL};
  rc = ef_launch(&(ef_launch_config){.workers = 2, .program = "/nonexistent/effnet", .argv = argv, .nccl_id = "00"});
  CHECK(rc == 1, "a worker that cannot start: status %d, want 1", rc);
}

static void test_signal(void) {
  // Rank 0 sends SIGTERM to the launcher (its parent): every worker must get it and exit 143.
  double t;
  int rc = launch_sh(3,
                     "trap 'exit 143' TERM; if [ $EFFNET_RANK = 0 ]; then sleep 0.3; kill -TERM $PPID; fi; "
                     "while :; do sleep 0.05; done",
                     &t);
  CHECK(rc == 143 && t < 5, "SIGTERM passed on to every worker: status %d after %.1f s (want 143, under 5 s)", rc, t);
}

// During a stop a signal asked for, a worker that fails (exits 1 on SIGTERM) still ends the
// others: the one that ignores SIGTERM is killed after the grace period.
static void test_failure_during_stop(void) {
  double t;
  int rc = launch_sh(3,
                     "if [ $EFFNET_RANK = 1 ]; then trap '' TERM; exec sleep 30; fi; trap 'exit 1' TERM; "
                     "if [ $EFFNET_RANK = 0 ]; then sleep 0.3; kill -TERM $PPID; fi; while :; do sleep 0.05; done",
                     &t);
  CHECK(rc == 1 && t > 0.9 && t < 5, "a failure during a stop: status %d after %.1f s (want 1, 1 to 5 s)", rc, t);
}

// The launcher killed (SIGKILL: it cannot pass anything on) while its workers run: they die too.
// This process is their subreaper, so it can see them end.
static void test_launcher_death(void) {
  char dir[] = "/tmp/effnet-launch-XXXXXX", path[600];
  CHECK(mkdtemp(dir), "mkdtemp");
  CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "prctl(PR_SET_CHILD_SUBREAPER)");
  pid_t launcher = fork();
  if (launcher == 0) {
    char *argv[] = {"test_launch", "--worker", dir, NULL};
    _exit(ef_launch(&(ef_launch_config){.workers = 2, .program = "/proc/self/exe", .argv = argv, .nccl_id = "00"}));
  }
  pid_t worker[2] = {0, 0};
  for (int i = 0; i < 250 && !(worker[0] && worker[1]); i++) { // each writes its pid when it follows its parent
    for (int r = 0; r < 2; r++) {
      snprintf(path, sizeof path, "%s/w%d", dir, r);
      FILE *f = fopen(path, "r");
      long p = 0;
      if (f && fscanf(f, "%ld", &p) == 1) worker[r] = (pid_t)p;
      if (f) fclose(f);
    }
    nanosleep(&(struct timespec){0, 20000000}, NULL);
  }
  CHECK(worker[0] && worker[1], "both workers started");
  kill(launcher, SIGKILL);
  waitpid(launcher, NULL, 0);
  for (int r = 0; r < 2; r++) {
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 150 && worker[r] && got == 0; i++) {
      got = waitpid(worker[r], &st, WNOHANG);
      if (got == 0) nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    if (worker[r] && got == 0) kill(worker[r], SIGKILL), waitpid(worker[r], NULL, 0);
    CHECK(got == worker[r] && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "worker %d died with its launcher (got %d)",
          r, (int)got);
    snprintf(path, sizeof path, "%s/w%d", dir, r);
    unlink(path);
  }
  rmdir(dir);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

// test_launcher_death's workers: follow the launcher, say so with the pid, wait.
static int worker_main(const char *dir) {
  ef_launch_follow_parent();
  char path[600], tmp[620];
  snprintf(path, sizeof path, "%s/w%s", dir, getenv(EF_LAUNCH_RANK));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return 1;
  fprintf(f, "%ld\n", (long)getpid());
  fclose(f);
  rename(tmp, path);
  for (;;) pause();
}

static void test_launched_comm(void) {
  setenv(EF_LAUNCH_RANK, "1", 1);
  setenv(EF_LAUNCH_WORLD, "2", 1);
  ef_comm *c = NULL;
  CHECK(ef_comm_new(&c) == EF_OK, "%s", ef_last_error());
  CHECK(c && !strcmp(c->name, "launched") && c->rank == 1 && c->world == 2 && c->local_rank == 1,
        "a worker's communicator: %s, rank %d of %d", c ? c->name : "none", c ? c->rank : -1, c ? c->world : -1);
  CHECK(c && !c->allreduce && !c->broadcast, "no collectives before NCCL connects the workers");
  ef_comm_free(c);
  setenv(EF_LAUNCH_RANK, "2", 1);
  CHECK(ef_comm_new(&c) == EF_ERR_INVALID && strstr(ef_last_error(), "EFFNET_RANK"),
        "rank 2 of 2 is refused, naming EFFNET_RANK: %s", ef_last_error());
  setenv(EF_LAUNCH_RANK, "1x", 1);
  CHECK(ef_comm_new(&c) == EF_ERR_INVALID, "a malformed rank is refused");
  unsetenv(EF_LAUNCH_RANK);
  unsetenv(EF_LAUNCH_WORLD);
  ef_log_set_rank(-1);
}

static int countdown(void *user, char *why, size_t len) { return --*(int *)user <= 0; }
static int broken(void *user, char *why, size_t len) {
  snprintf(why, len, "the link is down");
  return -1;
}
static int never(void *user, char *why, size_t len) { return 0; }

static void test_poll(void) {
  int calls = 3;
  CHECK(ef_comm_poll(countdown, &calls, 5, "a countdown") == EF_OK && calls == 0, "finished on the third call");
  CHECK(ef_comm_poll(broken, NULL, 5, "an all-reduce") == EF_ERR_IO &&
            strstr(ef_last_error(), "an all-reduce failed") && strstr(ef_last_error(), "the link is down"),
        "a failure names the wait and the reason: %s", ef_last_error());
  double t0 = now_s();
  ef_status st = ef_comm_poll(never, NULL, 0.3, "a broadcast");
  double t = now_s() - t0;
  CHECK(st == EF_ERR_IO && t >= 0.3 && t < 1.5 && strstr(ef_last_error(), "a broadcast has not finished"),
        "a timeout after %.2f s (want 0.3 to 1.5): %s", t, ef_last_error());
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--worker")) return worker_main(argv[2]);
  RUN(test_environment);
  RUN(test_failed_workers);
  RUN(test_signal);
  RUN(test_failure_during_stop);
  RUN(test_launcher_death);
  RUN(test_launched_comm);
  RUN(test_poll);
  return test_exit_code();
}
