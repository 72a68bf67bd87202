// The launcher of `effnet train --gpus` with shell workers, and the communicator's pieces around it
// that need no GPU: each worker sees its rank, the world size and the id; a worker that fails or
// is killed ends the others within the grace period, stuck ones included; a signal to the launcher
// reaches every worker; the workers' "launched" communicator; and the timed poll behind NCCL's waits.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tools/launch.h"
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
  int rc = ef_launch(&(ef_launch_config){.workers = n, .program = "/bin/sh", .argv = argv, .nccl_id = "00ff", .grace_s = 1});
  *seconds = now_s() - t0;
  return rc;
}

static void test_environment(void) {
  char dir[] = "/tmp/effnet-launch-XXXXXX", script[512], path[600], line[128];
  CHECK(mkdtemp(dir), "mkdtemp");
  setenv(EF_LAUNCH_RANK, "7", 1); // the launcher's own (a nested launch) must not reach the workers
  snprintf(script, sizeof script, "echo \"$EFFNET_RANK $EFFNET_WORLD_SIZE $EFFNET_NCCL_ID\" > %s/w$EFFNET_RANK", dir);
  double t;
  CHECK(launch_sh(3, script, &t) == 0, "three workers that succeed: status 0");
  unsetenv(EF_LAUNCH_RANK);
  for (int r = 0; r < 3; r++) {
    snprintf(path, sizeof path, "%s/w%d", dir, r);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(line, sizeof line, f), "worker %d wrote %s", r, path);
    char want[64];
    snprintf(want, sizeof want, "%d 3 00ff\n", r);
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
  char *argv[] = {"nothing", NULL};
  rc = ef_launch(&(ef_launch_config){.workers = 2, .program = "/nonexistent/effnet", .argv = argv, .nccl_id = "00"});
  CHECK(rc == 1, "a worker that cannot start: status %d, want 1", rc);
}

static void test_signal(void) {
  // Rank 0 sends SIGTERM to the launcher (its parent): every worker must get it and exit 143.
  double t;
  int rc = launch_sh(3, "trap 'kill $!; exit 143' TERM; if [ $EFFNET_RANK = 0 ]; then sleep 0.3; kill -TERM $PPID; fi; "
                        "sleep 30 & wait", &t);
  CHECK(rc == 143 && t < 5, "SIGTERM passed on to every worker: status %d after %.1f s (want 143, under 5 s)", rc, t);
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
  CHECK(ef_comm_poll(broken, NULL, 5, "an all-reduce") == EF_ERR_IO && strstr(ef_last_error(), "an all-reduce failed") &&
            strstr(ef_last_error(), "the link is down"),
        "a failure names the wait and the reason: %s", ef_last_error());
  double t0 = now_s();
  ef_status st = ef_comm_poll(never, NULL, 0.3, "a broadcast");
  double t = now_s() - t0;
  CHECK(st == EF_ERR_IO && t >= 0.3 && t < 1.5 && strstr(ef_last_error(), "a broadcast has not finished"),
        "a timeout after %.2f s (want 0.3 to 1.5): %s", t, ef_last_error());
}

int main(void) {
  RUN(test_environment);
  RUN(test_failed_workers);
  RUN(test_signal);
  RUN(test_launched_comm);
  RUN(test_poll);
  return test_exit_code();
}
