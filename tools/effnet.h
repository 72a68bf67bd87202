// The `effnet` command line: subcommands share this header; each parses its own flags and
// returns the process exit status (0 success, 1 failure with a message, 2 bad usage).
#ifndef EF_TOOLS_EFFNET_H
#define EF_TOOLS_EFFNET_H

int ef_cmd_train(int argc, char **argv);
int ef_cmd_info(int argc, char **argv);
int ef_cmd_import(int argc, char **argv);
int ef_cmd_bench(int argc, char **argv);
int ef_cmd_bench_data(int argc, char **argv);

#endif
