// The `effnet` command line: subcommands share this header; each parses its own flags and
// returns the process exit status (0 success, 1 failure with a message, 2 bad usage).
#ifndef EF_TOOLS_EFFNET_H
#define EF_TOOLS_EFFNET_H

#include <time.h>

// Seconds on the monotonic clock, for the commands' timings.
static inline double ef_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int ef_cmd_train(int argc, char **argv);
int ef_cmd_scale_search(int argc, char **argv);
int ef_cmd_scale_curves(int argc, char **argv);
int ef_cmd_cam(int argc, char **argv);
int ef_cmd_eval(int argc, char **argv);
int ef_cmd_predict(int argc, char **argv);
int ef_cmd_info(int argc, char **argv);
int ef_cmd_import(int argc, char **argv);
int ef_cmd_export(int argc, char **argv);
// Runs tools/convert_weights.py with the arguments `args` (at most 16, NULL-terminated: DIRECTION
// VALUE IN OUT [flags]) (cmd_import.c); 0 when it succeeded.
int ef_run_converter(const char *const *args);
int ef_cmd_features(int argc, char **argv);
int ef_cmd_bench(int argc, char **argv);
int ef_cmd_bench_data(int argc, char **argv);

#endif
