// A run's metrics log, in its run folder: metrics.jsonl (one JSON object per record) and a
// TensorBoard event file (TFRecord-framed Event protobufs, encoded here by hand) side by side,
// each flushed after every record so that a crash loses at most the record being written.
#ifndef EF_TRAIN_METRICS_H
#define EF_TRAIN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

typedef struct ef_metrics ef_metrics;

// Opens the log in `dir`, creating the folder (and its parents) if missing. A fresh run
// (append=false) starts metrics.jsonl empty; a resumed one (append=true) adds to it. Either way
// a new event file events.out.tfevents.<unix seconds>.<hostname>[.k] begins with the
// file_version record: TensorBoard merges every event file of a folder, so a resumed run's
// steps follow the earlier ones (and a fresh run in an old folder shows the old files too).
// A partial last line of metrics.jsonl (a crash mid-record) is cut off before appending.
// An unwritable folder is EF_ERR_IO naming the path.
ef_status ef_metrics_open(ef_metrics **out, const char *dir, bool append);

// One record: `n` scalars tags[i] = values[i] at `step`, stamped with the wall time. Writes
//   {"step": 120, "epoch": 1, "wall_time": 1764300000.123456, "train/loss": 1.234, ...}
// (values as %.9g, NaN and infinities as null) and one Event {wall_time, step, summary {value
// {tag, simple_value}...}}, then flushes both. Tags are distinct, non-empty, and none is "step",
// "epoch" or "wall_time" (a caller's bug: it aborts). A failed write (disk full) is EF_ERR_IO
// naming the file.
ef_status ef_metrics_log(ef_metrics *m, int64_t step, int epoch, int n, const char *const *tags, const double *values);

// The event file being written (for messages).
const char *ef_metrics_event_path(const ef_metrics *m);

// Closes both files and frees m (NULL is fine); a failed close is EF_ERR_IO naming the file.
ef_status ef_metrics_close(ef_metrics *m);

#endif
