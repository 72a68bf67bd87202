// Run folders (see run_dir.h): checkpoint names, listing and pruning, --resume's file, and the
// choice of the folder with its guards.
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

ef_status ef_run_dir_choose(char *dir, size_t len, const char *out, const char *resume_path, int64_t resume_step,
                            const char *model) {
  // The resumed checkpoint's folder.
  char resume_dir[4096] = ".";
  const char *slash = resume_path ? strrchr(resume_path, '/') : NULL;
  size_t dir_len = slash ? (size_t)(slash - resume_path) : 0;
  if (dir_len >= sizeof resume_dir || dir_len >= len)
    return EF_ERROR(EF_ERR_INVALID, "the path %s is too long", resume_path);
  if (slash) memcpy(resume_dir, resume_path, dir_len), resume_dir[dir_len] = 0;
  if (out) {
    if (strlen(out) >= len) return EF_ERROR(EF_ERR_INVALID, "the path %s is too long", out);
    snprintf(dir, len, "%s", out);
  } else if (resume_path) {
    snprintf(dir, len, "%s", resume_dir);
  } else {
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(dir, len, "runs/%s-%s", model, stamp);
  }
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
