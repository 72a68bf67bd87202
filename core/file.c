// Atomic file replacement (file.h): fsync the temporary file, rename it over the target, fsync the
// folder, so that a crash at any point leaves either the old or the new file, both complete.
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void ef_file_tmp_name(char *buf, size_t len, const char *path) {
  snprintf(buf, len, "%s.tmp.%ld", path, (long)getpid());
}

// fsync a file or folder by path; 0 or an errno.
static int sync_path(const char *path, bool dir) {
  int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return errno;
  int rc = fsync(fd) ? errno : 0;
  close(fd);
  return rc;
}

ef_status ef_file_replace(const char *tmp, const char *path) {
  int err = sync_path(tmp, false);
  if (err) {
    unlink(tmp);
    return EF_ERROR(EF_ERR_IO, "writing %s failed (fsync: %s; disk full?); %s is unchanged", tmp, strerror(err), path);
  }
  if (rename(tmp, path) != 0) {
    err = errno;
    unlink(tmp);
    return EF_ERROR(EF_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(err));
  }
  // Makes the rename itself durable. If this fails, a crash can only leave the old or the new
  // file under `path`, both complete, so the write still stands.
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else slash[slash == dir ? 1 : 0] = 0; // "/x.h5" lives in "/"
  sync_path(dir, true);
  return EF_OK;
}

ef_status ef_file_write(const char *path, const void *data, size_t len) {
  char tmp[4096];
  ef_file_tmp_name(tmp, sizeof tmp, path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0)
    return EF_ERROR(EF_ERR_IO, "cannot create %s: %s (is its folder there and writable?)", tmp, strerror(errno));
  const char *p = data;
  int err = 0;
  while (len > 0 && !err) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno != EINTR) err = errno;
    if (n == 0) err = ENOSPC; // a write that makes no progress
    if (n > 0) p += n, len -= (size_t)n;
  }
  if (close(fd) != 0 && !err) err = errno;
  if (err) {
    unlink(tmp);
    return EF_ERROR(EF_ERR_IO, "writing %s failed: %s; %s is unchanged", tmp, strerror(err), path);
  }
  return ef_file_replace(tmp, path);
}
