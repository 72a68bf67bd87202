// The moving average of the weights and batch-norm statistics (see ema.h): one shadow array per
// averaged arena, updated and swapped elementwise, on the host or on the store's device.
#include "train/ema.h"

#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "train/optim.h"

// Arrays with fewer elements are updated on one thread.
#define PARALLEL_MIN 65536

static const ef_arena averaged[] = {EF_ARENA_PARAM, EF_ARENA_STATE};
#define N_AVERAGED (int)(sizeof averaged / sizeof averaged[0])

// Elements in arena a of the store.
static size_t arena_numel(const ef_store *s, ef_arena a) { return s->numel[a == EF_ARENA_STATE]; }

// The length of the shadow of arena a, which must be the store's.
static int64_t shadow_numel(const ef_ema *e, const ef_store *s, ef_arena a) {
  EF_ASSERT(e->numel[a] == arena_numel(s, a), "moving average of a different store");
  return (int64_t)e->numel[a];
}

ef_status ef_ema_init(ef_ema *e, const ef_store *s, double decay) {
  memset(e, 0, sizeof *e);
  if (!(decay >= 0 && decay < 1))
    return EF_ERROR(EF_ERR_INVALID, "the weights' moving average needs a decay in [0, 1) (got %g)", decay);
  EF_TRY(ef_require_updatable_store(s, "the weights' moving average"));
  e->decay = decay;
  e->device = ef_device_of(s);
  for (int k = 0; k < N_AVERAGED; k++) {
    ef_arena a = averaged[k];
    size_t n = arena_numel(s, a);
    e->shadow[a] = ef_arena_alloc(e->device, n, 0);
    if (!e->shadow[a]) {
      size_t mib = n * sizeof(float) >> 20;
      ef_ema_free(e);
      return EF_ERROR(EF_ERR_NOMEM,
                      "out of %s memory allocating %zu MiB for the weights' moving average; use a smaller model",
                      s->be->name, mib);
    }
    e->numel[a] = n;
    if (!e->device) {
      memcpy(e->shadow[a], s->mem[a], n * sizeof(float));
    } else if (n) { // through the host: once, at the start
      float *host = ef_xmalloc(n * sizeof(float));
      e->device->download(e->device, host, s->mem[a], n * sizeof(float));
      e->device->upload(e->device, e->shadow[a], host, n * sizeof(float));
      free(host);
    }
  }
  return EF_OK;
}

void ef_ema_free(ef_ema *e) {
  for (int a = 0; a < EF_ARENA_COUNT; a++) ef_arena_free(e->device, e->shadow[a]);
  memset(e, 0, sizeof *e);
}

double ef_ema_decay_now(const ef_ema *e) {
  double warm = (1.0 + (double)e->updates) / (10.0 + (double)e->updates);
  return warm < e->decay ? warm : e->decay;
}

void ef_ema_update(ef_ema *e, const ef_store *s) {
  EF_ASSERT(!e->swapped, "moving average updated while its shadow is in the store");
  EF_ASSERT(!e->device, "ef_ema_update loops over host memory; a device store updates through train/update.h");
  double d = ef_ema_decay_now(e);
  float keep = (float)d, take = (float)(1 - d);
  for (int k = 0; k < N_AVERAGED; k++) {
    float *sh = e->shadow[averaged[k]];
    const float *v = s->mem[averaged[k]];
    int64_t n = shadow_numel(e, s, averaged[k]);
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) sh[i] = keep * sh[i] + take * v[i];
  }
  e->updates++;
}

void ef_ema_swap(ef_ema *e, ef_store *s) {
  for (int k = 0; k < N_AVERAGED; k++) {
    float *sh = e->shadow[averaged[k]], *v = s->mem[averaged[k]];
    int64_t n = shadow_numel(e, s, averaged[k]);
    if (e->device) {
      e->device->arena->swap(e->device, sh, v, (size_t)n);
      continue;
    }
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
      float t = sh[i];
      sh[i] = v[i];
      v[i] = t;
    }
  }
  e->swapped = !e->swapped;
}

float *ef_ema_data(const ef_ema *e, const ef_store *s, int entry) {
  EF_ASSERT(entry >= 0 && entry < s->n, "entry %d of %d", entry, s->n);
  const ef_store_entry *en = &s->entries[entry];
  return e->shadow[en->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE] + en->offset;
}
