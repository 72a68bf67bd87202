// TF-style initializers over store entries (see init.h).
#include "layers/init.h"

#include <math.h>
#include <stdlib.h>

#include "core/philox.h"

static float *host_buffer(const ef_store *s, int entry) {
  return ef_xmalloc(s->entries[entry].numel * sizeof(float));
}

static void write_values(ef_store *s, int entry, float *v) {
  ef_store_write(s, entry, s->entries[entry].trainable ? EF_ARENA_PARAM : EF_ARENA_STATE, v);
  free(v);
}

void ef_init_conv(ef_store *s, int entry, int groups, uint64_t seed) {
  const ef_store_entry *e = &s->entries[entry];
  EF_ASSERT(e->ndim == 4 && groups >= 1 && e->shape[0] % groups == 0, "'%s' is not a conv weight of %d groups", e->name, groups);
  double std = sqrt(2.0 / (double)(e->shape[0] / groups * e->shape[1] * e->shape[2]));
  float *v = host_buffer(s, entry);
  for (size_t i = 0; i < e->numel; i++) v[i] = (float)(std * ef_philox_normal(seed, ef_rng_stream(EF_RNG_INIT, (uint32_t)entry), 0, i));
  write_values(s, entry, v);
}

void ef_init_dense(ef_store *s, int entry, uint64_t seed) {
  const ef_store_entry *e = &s->entries[entry];
  EF_ASSERT(e->ndim == 2, "'%s' is not a dense weight", e->name);
  double range = 1.0 / sqrt((double)e->shape[0]);
  float *v = host_buffer(s, entry);
  for (size_t i = 0; i < e->numel; i++) v[i] = (float)(range * (2.0 * ef_philox_uniform(seed, ef_rng_stream(EF_RNG_INIT, (uint32_t)entry), 0, i) - 1.0));
  write_values(s, entry, v);
}

void ef_init_const(ef_store *s, int entry, float value) {
  float *v = host_buffer(s, entry);
  for (size_t i = 0; i < s->entries[entry].numel; i++) v[i] = value;
  write_values(s, entry, v);
}
