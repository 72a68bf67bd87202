// Atomic file replacement, shared by every writer that must never leave a half-written file
// under its final name (weights, checkpoints, ONNX models): write a temporary file in the same
// folder, close it, then ef_file_replace; or hand the bytes to ef_file_write.
#ifndef EF_CORE_FILE_H
#define EF_CORE_FILE_H

#include "core/log.h"

// "<path>.tmp.<pid>" into buf: the temporary name writers use (in path's folder, so the rename
// stays on one file system).
void ef_file_tmp_name(char *buf, size_t len, const char *path);

// Makes the finished and closed file `tmp` durable (fsync), renames it over `path` and fsyncs the
// folder. On failure tmp is removed and path is as it was; the message names the step.
ef_status ef_file_replace(const char *tmp, const char *path);

// Writes len bytes to path atomically: into its temporary file, then ef_file_replace. A failed
// write (a full disk, a file-size limit) is EF_ERR_IO naming the reason, path as it was and no
// temporary left.
ef_status ef_file_write(const char *path, const void *data, size_t len);

#endif
