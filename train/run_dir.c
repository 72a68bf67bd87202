// Run folders (see run_dir.h): checkpoint names, listing and pruning, --resume's file, the choice
// of the folder with its lock (flock on <dir>/run.lock, which holds the owner's pid for messages)
// and its guards, and the removal of stale temporaries.
#include "train/run_dir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "train/launch.h"

int ef_run_dir_list(const char *dir, long long *steps, int max) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    long long s;
    char tail[8];
    if (sscanf(e->d_name, "ckpt-%lld%7s", &s, tail) == 2 && !strcmp(tail, ".h5") && n < max) steps[n++] = s;
  }
  if (d) closedir(d);
  for (int i = 1; i < n; i++) // insertion sort: a few files
    for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
      long long t = steps[j];
      steps[j] = steps[j - 1], steps[j - 1] = t;
    }
  return n;
}

void ef_run_dir_checkpoint(char *buf, size_t len, const char *dir, long long step) {
  snprintf(buf, len, "%s/ckpt-%012lld.h5", dir, step);
}

void ef_run_dir_best(char *buf, size_t len, const char *dir) { snprintf(buf, len, "%s/best.h5", dir); }

void ef_run_dir_latest(char *path, size_t len, const char *dir) {
  long long steps[EF_RUN_DIR_MAX_CHECKPOINTS];
  int n = ef_run_dir_list(dir, steps, EF_RUN_DIR_MAX_CHECKPOINTS);
  if (n) ef_run_dir_checkpoint(path, len, dir, steps[n - 1]);
  else snprintf(path, len, "none");
}

ef_status ef_run_dir_resume_path(const char *resume, char *path, size_t len) {
  struct stat st;
  if (stat(resume, &st) != 0) return EF_ERROR(EF_ERR_IO, "cannot resume from %s: %s", resume, strerror(errno));
  if (!S_ISDIR(st.st_mode)) {
    snprintf(path, len, "%s", resume);
    return EF_OK;
  }
  long long steps[EF_RUN_DIR_MAX_CHECKPOINTS];
  int n = ef_run_dir_list(resume, steps, EF_RUN_DIR_MAX_CHECKPOINTS);
  if (!n) return EF_ERROR(EF_ERR_IO, "%s holds no checkpoint (ckpt-<step>.h5) to resume from", resume);
  ef_run_dir_checkpoint(path, len, resume, steps[n - 1]);
  return EF_OK;
}

// mkdir -p of dir's parents (not dir itself).
static void make_parents(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
    *s = 0;
    mkdir(p, 0777); // an error shows when the folder itself cannot be made
    *s = '/';
  }
}

// Makes dir (EEXIST is fine unless `fresh`) and locks it: *fd holds the lock.
static ef_status make_and_lock(const char *dir, bool fresh, int *fd) {
  make_parents(dir);
  if (mkdir(dir, 0777) != 0 && (fresh || errno != EEXIST))
    return EF_ERROR(errno == EEXIST ? EF_ERR_INVALID : EF_ERR_IO, "cannot make the run folder %s: %s", dir,
                    strerror(errno));
  char path[4200];
  snprintf(path, sizeof path, "%s/run.lock", dir);
  *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (*fd < 0) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s (is the folder writable?)", path, strerror(errno));
  if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    char pid[32] = "";
    ssize_t n = read(*fd, pid, sizeof pid - 1);
    pid[n > 0 ? strcspn(pid, "\n") : 0] = 0;
    close(*fd), *fd = -1;
    if (err == EWOULDBLOCK)
      return EF_ERROR(EF_ERR_INVALID,
                      "%s is in use by another effnet run (pid %s): wait for it to end, or give another --out", dir,
                      pid[0] ? pid : "unknown");
    return EF_ERROR(EF_ERR_IO, "cannot lock %s: %s", path, strerror(err));
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  if (ftruncate(*fd, 0) != 0 || write(*fd, pid, (size_t)n) != n) // only for the message above
    fprintf(stderr, "effnet: warning: cannot write the pid into %s\n", path);
  return EF_OK;
}

void ef_run_dir_unlock(int lock) {
  if (lock >= 0) close(lock); // releases the flock
}

int ef_run_dir_clean(const char *dir) {
  DIR *d = opendir(dir);
  int removed = 0;
  double bytes = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    const char *tail = strstr(e->d_name, ".tmp.");
    char *end;
    long pid = tail ? strtol(tail + 5, &end, 10) : 0;
    if (!tail || pid <= 0 || *end || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (unlink(path) == 0) removed++, bytes += (double)st.st_size;
    else fprintf(stderr, "effnet: warning: cannot remove the stale temporary %s: %s\n", path, strerror(errno));
  }
  if (d) closedir(d);
  if (removed)
    fprintf(stderr, "effnet: removed %d stale temporary file%s (%.1f MB) of saves cut short in %s\n", removed,
            removed > 1 ? "s" : "", bytes / 1e6, dir);
  return removed;
}

// EF_ERR_INVALID when dir holds checkpoints of another run (see ef_run_dir_choose).
static ef_status guard(const char *dir, const char *resume_path, const char *resume_dir, int64_t resume_step) {
  long long steps[EF_RUN_DIR_MAX_CHECKPOINTS];
  int n = ef_run_dir_list(dir, steps, EF_RUN_DIR_MAX_CHECKPOINTS);
  bool same_folder = resume_path && !strcmp(dir, resume_dir);
  if (n && !same_folder)
    return EF_ERROR(EF_ERR_INVALID,
                    "%s already holds checkpoints of another run: resume them with --resume %s, or choose "
                    "another --out",
                    dir, dir);
  if (same_folder && n && steps[n - 1] > resume_step)
    return EF_ERROR(EF_ERR_INVALID,
                    "%s is not the latest checkpoint of %s (step %lld is): to branch from it, give a new "
                    "--out",
                    resume_path, dir, steps[n - 1]);
  return EF_OK;
}

void ef_run_dir_stamp(char *buf, size_t len) {
  time_t now = time(NULL);
  strftime(buf, len, "%Y%m%d-%H%M%S", localtime(&now));
}

ef_status ef_run_dir_choose(char *dir, size_t len, const char *out, const char *resume_path, int64_t resume_step,
                            const char *model, int *lock) {
  if (lock) *lock = -1;
  // The resumed checkpoint's folder.
  char resume_dir[4096] = ".";
  const char *slash = resume_path ? strrchr(resume_path, '/') : NULL;
  size_t dir_len = slash ? (size_t)(slash - resume_path) : 0;
  if (dir_len >= sizeof resume_dir || dir_len >= len)
    return EF_ERROR(EF_ERR_INVALID, "the path %s is too long", resume_path);
  if (slash) memcpy(resume_dir, resume_path, dir_len), resume_dir[dir_len] = 0;
  bool fresh = !out && !resume_path;
  if (out) {
    if (strlen(out) >= len) return EF_ERROR(EF_ERR_INVALID, "the path %s is too long", out);
    snprintf(dir, len, "%s", out);
  } else if (resume_path) {
    snprintf(dir, len, "%s", resume_dir);
  } else {
    char stamp[32], name[64];
    ef_run_dir_stamp(stamp, sizeof stamp);
    const char *launched = getenv(EF_LAUNCH_STAMP); // a worker of --gpus: the launcher's time
    if (launched && strlen(launched) == 15 && strspn(launched, "0123456789-") == 15)
      snprintf(stamp, sizeof stamp, "%s", launched);
    snprintf(name, sizeof name, "%s", model);
    for (char *p = name; *p; p++)
      if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) *p = '_';
    snprintf(dir, len, "runs/%s-%s", name, stamp);
  }
  // The guards before anything is written there, and again once it is locked (another run may
  // have saved in between).
  EF_TRY(guard(dir, resume_path, resume_dir, resume_step));
  if (!lock) return EF_OK;
  size_t base = strlen(dir);
  ef_status st = make_and_lock(dir, fresh, lock);
  for (int k = 2; st == EF_ERR_INVALID && fresh && k < 1000; k++) { // another run made that name first
    snprintf(dir + base, len - base, "-%d", k);
    st = make_and_lock(dir, fresh, lock);
  }
  EF_TRY(st);
  ef_run_dir_clean(dir);
  return guard(dir, resume_path, resume_dir, resume_step);
}

void ef_run_dir_prune(const char *dir, int keep) {
  long long steps[EF_RUN_DIR_MAX_CHECKPOINTS];
  int n = ef_run_dir_list(dir, steps, EF_RUN_DIR_MAX_CHECKPOINTS);
  char path[4200];
  for (int i = 0; i + keep < n; i++) {
    ef_run_dir_checkpoint(path, sizeof path, dir, steps[i]);
    if (unlink(path) != 0)
      fprintf(stderr, "effnet: warning: cannot remove the old checkpoint %s: %s\n", path, strerror(errno));
  }
}
