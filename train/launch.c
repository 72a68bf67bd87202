// The launcher of `effnet train --gpus N` and of the scaling commands' (see launch.h): posix_spawn of
// every worker with its environment, then a loop that passes signals on, reaps the workers, and ends
// them all at the first failure; and the workers' side, which dies with the launcher.
#include "train/launch.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "cuda/cuda.h"
#include "train/comm.h"
#include "train/run_dir.h"

extern char **environ;

static volatile sig_atomic_t pending;
static void on_signal(int sig) { pending = sig; }

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define OWN 5 // the variables a worker is given

// This process's environment without our variables, then rank's: (n + OWN + 1) entries, the
// strings in own (freed by the caller).
static char **worker_env(const ef_launch_config *cfg, int rank, const char *stamp, char *own[OWN]) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = ef_xcalloc(n + OWN + 1, sizeof *env);
  const char *ours[OWN] = {EF_LAUNCH_RANK, EF_LAUNCH_WORLD, EF_LAUNCH_NCCL_ID, EF_LAUNCH_PARENT, EF_LAUNCH_STAMP};
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    bool skip = false;
    for (int j = 0; j < OWN; j++) {
      size_t len = strlen(ours[j]);
      skip |= !strncmp(environ[i], ours[j], len) && environ[i][len] == '=';
    }
    if (!skip) env[k++] = environ[i];
  }
  char rank_s[16], world_s[16], pid_s[24];
  snprintf(rank_s, sizeof rank_s, "%d", rank);
  snprintf(world_s, sizeof world_s, "%d", cfg->workers);
  snprintf(pid_s, sizeof pid_s, "%ld", (long)getpid());
  const char *values[OWN] = {rank_s, world_s, cfg->nccl_id, pid_s, stamp};
  for (int j = 0; j < OWN; j++) {
    size_t len = strlen(ours[j]) + strlen(values[j]) + 2;
    own[j] = ef_xmalloc(len);
    snprintf(own[j], len, "%s=%s", ours[j], values[j]);
    env[k++] = own[j];
  }
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
  struct sigaction sa = {.sa_handler = on_signal}, dfl = {.sa_handler = SIG_DFL}, old_int, old_term, old_chld;
  sigemptyset(&sa.sa_mask), sigemptyset(&dfl.sa_mask);
  pending = 0;
  sigaction(SIGINT, &sa, &old_int), sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGCHLD, &dfl, &old_chld); // an inherited SIG_IGN would reap the workers behind waitpid's back
  int rc = 0, stop_rc = 0, alive = 0;  // the first failure's status; the stop's (130, 143)
  char stamp[32];
  ef_run_dir_stamp(stamp, sizeof stamp);
  for (int r = 0; r < n; r++) {
    char *own[OWN];
    char **env = worker_env(cfg, r, stamp, own);
    int err = posix_spawn(&pid[r], cfg->program, NULL, NULL, cfg->argv, env);
    free(env);
    for (int j = 0; j < OWN; j++) free(own[j]);
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
  int asked = 0;       // the signal passed on to the workers (they save and stop)
  bool failed = false; // one failed: the others got SIGTERM ...
  double kill_at = 0;  // ... and get SIGKILL at this time
  while (alive > 0) {
    int sig = pending;
    if (sig) {
      pending = 0;
      if (asked || failed) { // the second: they did not stop
        fprintf(stderr, "effnet train --gpus: %s again: killing the workers\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        signal_all(pid, n, SIGKILL);
      } else {
        signal_all(pid, n, sig);
        asked = sig;
      }
    }
    if (kill_at > 0 && now_s() > kill_at) {
      fprintf(stderr, "effnet train --gpus: the other workers did not end within %.0f s of SIGTERM: killing them\n",
              grace);
      signal_all(pid, n, SIGKILL);
      kill_at = 0;
    }
    int st;
    pid_t done = waitpid(-1, &st, WNOHANG);
    if (done < 0 && errno == EINTR) continue;
    if (done < 0) { // ECHILD: none left to wait for (not ours to reap any more)
      if (errno != ECHILD)
        fprintf(stderr, "effnet train --gpus: waitpid failed: %s: killing the workers\n", strerror(errno));
      signal_all(pid, n, SIGKILL);
      if (!rc) rc = 1;
      break;
    }
    if (done == 0) {
      nanosleep(&(struct timespec){0, 20000000}, NULL);
      continue;
    }
    int r = 0;
    while (r < n && pid[r] != done) r++;
    if (r == n) continue; // not a worker
    pid[r] = 0, alive--;
    int code = status_code(st);
    // The end a signal asked for (the worker saved and stopped) is not a failure.
    bool stopped = asked && (code == 128 + SIGINT || code == 128 + SIGTERM);
    if (stopped && !stop_rc) stop_rc = code;
    if (!code || stopped) continue;
    if (!rc) rc = code; // the first failure's status
    if (failed) continue;
    if (WIFEXITED(st))
      fprintf(stderr, "effnet train --gpus: worker %d (rank %d of %d) exited with status %d: ending the other %d\n",
              (int)done, r, n, code, alive);
    else
      fprintf(stderr,
              "effnet train --gpus: worker %d (rank %d of %d) was killed by signal %d (%s): ending the other %d\n",
              (int)done, r, n, WTERMSIG(st), strsignal(WTERMSIG(st)), alive);
    signal_all(pid, n, SIGTERM);
    failed = true, kill_at = now_s() + grace;
  }
  sigaction(SIGINT, &old_int, NULL), sigaction(SIGTERM, &old_term, NULL), sigaction(SIGCHLD, &old_chld, NULL);
  free(pid);
  return rc ? rc : stop_rc;
}

void ef_launch_follow_parent(void) {
  const char *v = getenv(EF_LAUNCH_PARENT);
  if (!v) return;
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    fprintf(stderr, "effnet: warning: prctl(PR_SET_PDEATHSIG) failed (%s): this worker would outlive its launcher\n",
            strerror(errno));
  if (getppid() != (pid_t)atol(v)) { // the launcher died before the line above
    fprintf(stderr, "effnet: the launcher (pid %s) of this worker is gone: stopping\n", v);
    _exit(1);
  }
}

int ef_launch_gpus(const char *cmd, int argc, char **argv, long gpus, bool nccl, const char *const *extra) {
  char why[256] = "", id[300] = "";
  int visible = ef_cuda_device_count(why, sizeof why);
  if (visible < gpus) {
    fprintf(stderr, "effnet %s: --gpus %ld, but %s\n", cmd, gpus, visible ? "fewer GPUs are visible" : why);
    if (visible) fprintf(stderr, "  (%d visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)\n", visible);
    return 1;
  }
#ifdef EFFNET_NCCL
  if (nccl && ef_nccl_unique_id(id, sizeof id) != EF_OK) {
    fprintf(stderr, "effnet %s: %s\n", cmd, ef_last_error());
    return 1;
  }
#else
  if (nccl) {
    fprintf(stderr,
            "effnet %s: --gpus goes through NCCL, and this effnet was built without it: install NCCL (or set "
            "NCCL_ROOT) and rebuild\n",
            cmd);
    return 1;
  }
#endif
  int n_extra = 0;
  while (extra && extra[n_extra]) n_extra++;
  char **args = ef_xcalloc((size_t)(argc + n_extra) + 2, sizeof *args);
  args[0] = "effnet";
  for (int i = 0; i < argc; i++) args[i + 1] = argv[i];
  for (int i = 0; i < n_extra; i++) args[argc + 1 + i] = (char *)extra[i];
  int rc =
      ef_launch(&(ef_launch_config){.workers = (int)gpus, .program = "/proc/self/exe", .argv = args, .nccl_id = id});
  free(args);
  return rc;
}
