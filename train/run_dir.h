// A training run's folder: its checkpoints (ckpt-<step>.h5, the newest N kept, best.h5 beside
// them), what --resume DIR|FILE names, the folder a run writes to (given, the checkpoint's, or a
// new runs/<model>-<date>-<time>), the lock that keeps one run at a time in it, the temporaries
// of saves a crash cut short, and the guards that keep a run out of another run's folder.
#ifndef EF_TRAIN_RUN_DIR_H
#define EF_TRAIN_RUN_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

enum { EF_RUN_DIR_MAX_CHECKPOINTS = 4096 };

// The steps of the ckpt-<step>.h5 files in dir, ascending; returns how many (at most max; 0 for
// a folder that does not exist).
int ef_run_dir_list(const char *dir, long long *steps, int max);
// dir/ckpt-<step, 12 digits>.h5, and dir/best.h5.
void ef_run_dir_checkpoint(char *buf, size_t len, const char *dir, long long step);
void ef_run_dir_best(char *buf, size_t len, const char *dir);
// The newest checkpoint of dir into path ("none" when it has none).
void ef_run_dir_latest(char *path, size_t len, const char *dir);

// The file --resume DIR|FILE names: FILE itself, or DIR's newest checkpoint. EF_ERR_IO when it
// does not exist or DIR holds no checkpoint.
ef_status ef_run_dir_resume_path(const char *resume, char *path, size_t len);

// The folder a run writes to: `out` when given; else, resuming, the checkpoint's folder; else
// runs/<model>-<date>-<time> (the model's name kept to letters, digits, '.', '_' and '-': it may
// come from a file; the time the launcher's for workers of --gpus, ef_run_dir_stamp). With `lock` (the rank that writes), the folder is made (with its
// parents; a new default name that another run made first gets -2, -3, ...), locked for the run's
// life (*lock, for ef_run_dir_unlock; the system releases it however the process ends), and
// cleaned of stale temporaries (ef_run_dir_clean); a folder another live run holds is
// EF_ERR_INVALID naming its pid. Then EF_ERR_INVALID when the folder holds checkpoints of another
// run (any, for a new run; newer ones than the checkpoint resumed, for a resume into its own
// folder). resume_path NULL: a new run; resume_step: the resumed checkpoint's step.
ef_status ef_run_dir_choose(char *dir, size_t len, const char *out, const char *resume_path, int64_t resume_step,
                            const char *model, int *lock);
// The time as default folder names hold it, YYYYmmdd-HHMMSS (15 characters), into buf (>= 16).
void ef_run_dir_stamp(char *buf, size_t len);
// Releases a lock of ef_run_dir_choose (-1: none).
void ef_run_dir_unlock(int lock);

// Removes dir's temporaries of atomic writes (<name>.tmp.<pid>, core/file.h) whose writer is no
// longer running, with a note naming how many and their size; returns how many. A temporary of a
// live process (this one, another command writing there) stays.
int ef_run_dir_clean(const char *dir);

// Removes all but the newest `keep` ckpt-<step>.h5 of dir (a warning when one cannot go).
void ef_run_dir_prune(const char *dir, int keep);

#endif
