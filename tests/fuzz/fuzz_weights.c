// libFuzzer target: any bytes as an effnet weights file, read as the commands read one: its
// description and every check on it (ef_weights_info_read, as eval, predict, export and --init),
// the model built from it with its tensors (ef_model_open), and a checkpoint's position, EMA and
// SGD momentum (as --resume). A refusal is a status with a message; a crash, an abort, a leak or
// undefined behaviour is a finding. Fuzzed under EFFNET_FUZZ; replayed by replay.c in every build.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  static ef_backend *be;
  if (!be) be = ef_cpu_backend_new(1);
  if (!path[0]) snprintf(path, sizeof path, "/tmp/effnet-fuzz-weights-%ld.h5", (long)getpid());
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  size_t wrote = fwrite(data, 1, size, f);
  if (fclose(f) != 0 || wrote != size) return 0;
  ef_model *m = malloc(sizeof *m); // descriptions hold 64 KiB of class names
  ef_checkpoint_info *ci = malloc(sizeof *ci);
  // The smallest input the model takes: the graph's size does not change what is read.
  ef_weights_info *w = &m->info;
  if (ef_weights_info_read(path, w) == EF_OK &&
      ef_model_open(m, path, true, &(ef_graph_opts){.batch = 1, .image_size = ef_model_min_size(&w->desc)}, be) ==
          EF_OK) {
    if (m->info.checkpoint && ef_checkpoint_read_info(path, ci) == EF_OK) {
      ef_ema ema;
      ef_optim opt;
      ef_optim_config sgd = ef_optim_defaults(EF_OPT_SGD);
      bool with_ema = m->info.has_ema && ef_ema_init(&ema, m->store, 0.9) == EF_OK;
      if (ef_optim_init(&opt, m->store, &sgd) == EF_OK) {
        ef_checkpoint_load(path, m->store, with_ema ? &ema : NULL, &opt);
        ef_optim_free(&opt);
      }
      if (with_ema) ef_ema_free(&ema);
    }
    ef_model_close(m);
  }
  free(m), free(ci);
  unlink(path); // nothing left behind by a replay
  return 0;
}
