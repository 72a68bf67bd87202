// `effnet train --gpus N` on one host without MPI: N worker processes running this same command,
// each told its rank, the world size and NCCL's unique id in its environment (train/comm.h's
// EFFNET_*); signals passed on to them; the first to fail ends the others, naming it; and the
// launcher's death ends them.
#ifndef EF_TRAIN_LAUNCH_H
#define EF_TRAIN_LAUNCH_H

#include <stdbool.h>

// The launcher's pid, in each worker's environment (ef_launch_follow_parent).
#define EF_LAUNCH_PARENT "EFFNET_LAUNCHER_PID"
// The launcher's start time (YYYYmmdd-HHMMSS): every worker names a default run folder with it
// (ef_run_dir_choose), so that all of them agree on runs/<model>-<time>.
#define EF_LAUNCH_STAMP "EFFNET_RUN_STAMP"

typedef struct {
  int workers;
  const char *program; // the executable each worker runs (execv's path)
  char *const *argv;   // its arguments, argv[0] included, NULL-terminated
  const char *nccl_id; // hex, into EFFNET_NCCL_ID
  double grace_s;      // after a failure: SIGTERM to the others, SIGKILL this much later  [5]
} ef_launch_config;

// Starts the workers and waits for all of them. SIGINT or SIGTERM reaching the launcher goes to
// every worker (they save and stop); a second one kills them. When a worker exits non-zero or is
// killed (other than by the stop a signal asked for), a line names its rank, and the others get
// SIGTERM, then SIGKILL after grace_s (they may be stuck in a collective).
// Returns the command's exit status: 0 when every worker succeeded, else the first failure's (its
// exit code, or 128 + its signal); 1 with a message when a worker cannot be started.
int ef_launch(const ef_launch_config *cfg);

// `effnet <cmd> --gpus N` itself: checks that N GPUs are visible, makes NCCL's id when the workers
// connect through it (`nccl`; 1 after a message when this effnet has no NCCL), then runs N workers
// of this executable with argv (argv[0] the command) and `extra` arguments after them
// (NULL-terminated, may be NULL), as ef_launch; 1 after a message naming cmd when it cannot.
int ef_launch_gpus(const char *cmd, int argc, char **argv, long gpus, bool nccl, const char *const *extra);

// In a worker (EFFNET_LAUNCHER_PID set): this process gets SIGKILL when its launcher dies
// (PR_SET_PDEATHSIG), and ends at once if the launcher is already gone; a worker that outlived it
// would hold its GPU and wait on NCCL's start for ever. Nothing when not a worker.
void ef_launch_follow_parent(void);

#endif
