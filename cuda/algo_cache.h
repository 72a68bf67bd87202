// The convolution algorithms chosen, kept in a file so that every process on a machine makes the
// same choice (timings differ from run to run, and two processes that compare results bit for bit
// must run the same algorithms). Plain C without CUDA: tests/test_cuda_host.c runs it on the CPU.
#ifndef EF_CUDA_ALGO_CACHE_H
#define EF_CUDA_ALGO_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/log.h"

#define EF_ALGO_KEY_LEN 400
#define EF_ALGO_EFFNET (-1) // the algorithm "effnet's own kernel" (the depthwise kernels)

// One choice: for a key naming the card, cuDNN's version, the direction, types, shapes, layout,
// parameters and the operands' alignment (built by cuda/cuda_conv.c).
typedef struct {
  char key[EF_ALGO_KEY_LEN];
  int algo;         // cuDNN's algorithm number, or EF_ALGO_EFFNET
  int math;         // cudnnMathType_t
  size_t workspace; // bytes
  bool deterministic;
  double ms;   // the time it was chosen with
  bool logged; // this process has reported it (not in the file)
} ef_algo_entry;

// The file holds a header line, then one line per choice: key, algorithm, math, workspace,
// deterministic (0/1) and milliseconds, separated by tabs. Lines are appended whole under an
// exclusive lock (flock); the first line of a key wins, so processes that found a shape at the
// same time still end up with one choice.
typedef struct {
  char *path; // NULL: choices kept in memory only
  ef_algo_entry *e;
  int n, cap;
  long read_to; // the bytes of the file read so far
  bool warned;  // a problem with the file was reported once
} ef_algo_cache;

// Opens the cache on `path` (NULL: in memory only), reading the choices it holds; a missing file
// is an empty cache, created at the first choice. Lines that do not parse are skipped with one
// warning. EF_ERR_IO when the file exists and cannot be read, or has another header.
ef_status ef_algo_cache_open(ef_algo_cache *c, const char *path);
void ef_algo_cache_close(ef_algo_cache *c);
// The choice for a key, or NULL: what this process recorded, else what the file holds now.
ef_algo_entry *ef_algo_cache_find(ef_algo_cache *c, const char *key);
// Records a choice and returns the one to use: e itself, or the line another process appended
// for the same key first. A file that cannot be written is warned about once; the cache then
// goes on in memory.
ef_algo_entry *ef_algo_cache_put(ef_algo_cache *c, const ef_algo_entry *e);

// The file to use when none is given: $EFFNET_ALGO_CACHE ("off": none, returns NULL), else
// $XDG_CACHE_HOME/effnet/cuda-algos.tsv, else $HOME/.cache/effnet/cuda-algos.tsv (its folder
// created); NULL when there is no home.
const char *ef_algo_cache_default(char *buf, size_t len);

#endif
