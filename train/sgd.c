// SGD with momentum over the flat parameter and gradient arenas (see sgd.h).
#include "train/sgd.h"

#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

ef_status ef_sgd_init(ef_sgd *o, const ef_store *s, const ef_sgd_config *cfg) {
  memset(o, 0, sizeof *o);
  if (!s->be || strcmp(s->be->name, "cpu"))
    return EF_ERROR(EF_ERR_UNSUPPORTED, "SGD updates parameters in host memory: bind the store to the CPU backend");
  if (!(cfg->momentum >= 0 && cfg->momentum < 1) || !(cfg->weight_decay >= 0))
    return EF_ERROR(EF_ERR_INVALID, "SGD needs momentum in [0, 1) and weight decay >= 0 (got %g, %g)", cfg->momentum,
                    cfg->weight_decay);
  o->cfg = *cfg;
  o->n = s->numel[0];
  o->velocity = ef_xcalloc(o->n ? o->n : 1, sizeof(float));
  return EF_OK;
}

void ef_sgd_free(ef_sgd *o) {
  free(o->velocity);
  o->velocity = NULL;
}

void ef_sgd_step(ef_sgd *o, ef_store *s, float lr) {
  float *p = s->mem[EF_ARENA_PARAM], *g = s->mem[EF_ARENA_GRAD], m = o->cfg.momentum;
  for (int e = 0; e < s->n; e++) {
    const ef_store_entry *en = &s->entries[e];
    if (!en->trainable) continue;
    float wd = en->decay ? o->cfg.weight_decay : 0.0f;
    float *pe = p + en->offset, *ge = g + en->offset, *ve = o->velocity + en->offset;
    int64_t n = (int64_t)en->numel;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
      float gi = ge[i] + wd * pe[i];
      ve[i] = m * ve[i] + gi;
      pe[i] -= lr * (o->cfg.nesterov ? gi + m * ve[i] : ve[i]);
    }
  }
}
