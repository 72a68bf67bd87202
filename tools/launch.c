// The launcher of `effnet train --gpus N` (see launch.h): posix_spawn of every worker with its
// environment, then a loop that passes signals on, reaps the workers, and ends them all at the
// first failure.
#include "tools/launch.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "core/log.h"
#include "train/comm.h"

extern char **environ;

static volatile sig_atomic_t pending;
static void on_signal(int sig) { pending = sig; }

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// This process's environment without our variables, then rank's: (n + 4) entries, the strings in
// own[3] (freed by the caller).
static char **worker_env(const ef_launch_config *cfg, int rank, char *own[3]) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = ef_xcalloc(n + 4, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *ours[] = {EF_LAUNCH_RANK "=", EF_LAUNCH_WORLD "=", EF_LAUNCH_NCCL_ID "="};
    bool skip = false;
    for (int j = 0; j < 3; j++) skip |= !strncmp(environ[i], ours[j], strlen(ours[j]));
    if (!skip) env[k++] = environ[i];
  }
  char buf[64];
  snprintf(buf, sizeof buf, "%s=%d", EF_LAUNCH_RANK, rank);
  own[0] = ef_xstrdup(buf);
  snprintf(buf, sizeof buf, "%s=%d", EF_LAUNCH_WORLD, cfg->workers);
  own[1] = ef_xstrdup(buf);
  size_t len = strlen(EF_LAUNCH_NCCL_ID) + strlen(cfg->nccl_id) + 2;
  own[2] = ef_xmalloc(len);
  snprintf(own[2], len, "%s=%s", EF_LAUNCH_NCCL_ID, cfg->nccl_id);
  for (int j = 0; j < 3; j++) env[k++] = own[j];
  env[k] = NULL;
  return env;
}

static void signal_all(const pid_t *pid, int n, int sig) {
  for (int i = 0; i < n; i++)
    if (pid[i] > 0) kill(pid[i], sig);
}

// A worker's end as the shell reports it: its exit code, or 128 + the signal that killed it.
static int status_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

int ef_launch(const ef_launch_config *cfg) {
  int n = cfg->workers;
  double grace = cfg->grace_s > 0 ? cfg->grace_s : 5;
  pid_t *pid = ef_xcalloc((size_t)n, sizeof *pid); // 0 once reaped
  struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
  sigemptyset(&sa.sa_mask);
  pending = 0;
  sigaction(SIGINT, &sa, &old_int), sigaction(SIGTERM, &sa, &old_term);
  int rc = 0, alive = 0;
  for (int r = 0; r < n; r++) {
    char *own[3];
    char **env = worker_env(cfg, r, own);
    int err = posix_spawn(&pid[r], cfg->program, NULL, NULL, cfg->argv, env);
    free(env);
    for (int j = 0; j < 3; j++) free(own[j]);
    if (err) {
      fprintf(stderr, "effnet train --gpus: cannot start worker %d (%s): %s\n", r, cfg->program, strerror(err));
      pid[r] = 0;
      signal_all(pid, n, SIGKILL);
      rc = 1;
      break;
    }
    alive++;
  }
  // Until every worker has been reaped: signals passed on, failures end the others.
  bool stopping = false;   // a signal asked them to stop, or one failed
  double kill_at = 0;      // after a failure: when the ones left are killed
  while (alive > 0) {
    int sig = pending;
    if (sig) {
      pending = 0;
      if (stopping) { // the second: they did not stop
        fprintf(stderr, "effnet train --gpus: %s again: killing the workers\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        signal_all(pid, n, SIGKILL);
      } else {
        signal_all(pid, n, sig);
        stopping = true;
      }
    }
    if (kill_at > 0 && now_s() > kill_at) {
      fprintf(stderr, "effnet train --gpus: the other workers did not end within %.0f s of SIGTERM: killing them\n", grace);
      signal_all(pid, n, SIGKILL);
      kill_at = 0;
    }
    int st;
    pid_t done = waitpid(-1, &st, WNOHANG);
    if (done < 0 && errno != EINTR && errno != ECHILD) EF_FATAL("waitpid: %s", strerror(errno));
    if (done <= 0) {
      nanosleep(&(struct timespec){0, 20000000}, NULL);
      continue;
    }
    int r = 0;
    while (r < n && pid[r] != done) r++;
    if (r == n) continue; // not a worker
    pid[r] = 0, alive--;
    int code = status_code(st);
    if (code && !rc) rc = code;
    if (code && !stopping) {
      if (WIFEXITED(st))
        fprintf(stderr, "effnet train --gpus: worker %d (rank %d of %d) exited with status %d: ending the other %d\n",
                (int)done, r, n, code, alive);
      else
        fprintf(stderr, "effnet train --gpus: worker %d (rank %d of %d) was killed by signal %d (%s): ending the other %d\n",
                (int)done, r, n, WTERMSIG(st), strsignal(WTERMSIG(st)), alive);
      signal_all(pid, n, SIGTERM);
      stopping = true, kill_at = now_s() + grace;
    }
  }
  sigaction(SIGINT, &old_int, NULL), sigaction(SIGTERM, &old_term, NULL);
  free(pid);
  return rc;
}
