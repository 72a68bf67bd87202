// The parameter store: registration of named tensors, flat arenas allocated on a backend, and
// copies of single entries between host and backend memory.
#include "core/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/philox.h"

ef_store *ef_store_new(void) {
  ef_store *s = ef_xcalloc(1, sizeof(ef_store));
  s->last[0] = s->last[1] = -1;
  return s;
}

void ef_store_free(ef_store *s) {
  if (!s) return;
  for (int a = 0; a < EF_ARENA_COUNT; a++)
    if (s->mem[a]) s->be->free(s->be, s->mem[a]);
  free(s->entries);
  free(s);
}

int ef_store_find(const ef_store *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->entries[i].name, name)) return i;
  return -1;
}

size_t ef_store_count(const ef_store *s, bool trainable) {
  size_t n = 0;
  for (int i = 0; i < s->n; i++)
    if (s->entries[i].trainable == trainable) n += s->entries[i].numel;
  return n;
}

int ef_store_add(ef_store *s, const char *name, bool trainable, bool decay, int ndim, const int64_t *shape,
                 ef_init init) {
  EF_ASSERT(!s->be, "'%s' added after the store was bound", name);
  EF_ASSERT(strlen(name) < EF_NAME_LEN && ef_store_find(s, name) < 0, "bad or duplicate parameter name '%s'", name);
  EF_ASSERT(ndim >= 1 && ndim <= EF_MAX_DIMS, "'%s': %d dimensions", name, ndim);
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->entries = ef_xrealloc(s->entries, sizeof(ef_store_entry) * (size_t)s->cap);
  }
  ef_store_entry *e = &s->entries[s->n];
  memset(e, 0, sizeof *e);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->trainable = trainable;
  e->decay = decay;
  e->lr_scale = 1;
  e->init = init;
  e->ndim = ndim;
  e->numel = 1;
  for (int i = 0; i < ndim; i++) {
    EF_ASSERT(shape[i] >= 1, "'%s': dimension %d is %lld", name, i, (long long)shape[i]);
    e->shape[i] = shape[i];
    e->numel *= (size_t)shape[i];
  }
  int a = trainable ? 0 : 1;
  const ef_store_entry *prev = s->last[a] >= 0 ? &s->entries[s->last[a]] : NULL;
  bool packed = prev && ndim == 1 && prev->ndim == 1;
  e->offset = packed ? s->numel[a] : (s->numel[a] + EF_STORE_ALIGN - 1) / EF_STORE_ALIGN * EF_STORE_ALIGN;
  s->numel[a] = e->offset + e->numel;
  s->last[a] = s->n;
  return s->n++;
}

ef_status ef_store_bind(ef_store *s, ef_backend *be) {
  EF_ASSERT(!s->be, "store bound twice");
  size_t bytes[EF_ARENA_COUNT] = {s->numel[0] * sizeof(float), s->numel[0] * sizeof(float),
                                  s->numel[1] * sizeof(float)};
  static const char *what[EF_ARENA_COUNT] = {"parameters", "gradients", "state"};
  for (int a = 0; a < EF_ARENA_COUNT; a++) {
    s->mem[a] = be->alloc(be, bytes[a] ? bytes[a] : sizeof(float));
    if (!s->mem[a]) {
      for (int b = 0; b < a; b++) be->free(be, s->mem[b]), s->mem[b] = NULL;
      return EF_ERROR(EF_ERR_NOMEM, "%s: out of memory allocating %zu bytes for the %s arena; use a smaller model",
                      be->name, bytes[a], what[a]);
    }
    be->memset(be, s->mem[a], 0, bytes[a]);
  }
  s->be = be;
  return EF_OK;
}

float *ef_store_data(const ef_store *s, int entry, ef_arena arena) {
  EF_ASSERT(s->be && entry >= 0 && entry < s->n, "entry %d of an unbound or smaller store", entry);
  const ef_store_entry *e = &s->entries[entry];
  EF_ASSERT(arena == EF_ARENA_GRAD ? e->trainable : arena == (e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE),
            "'%s' has no %s arena", e->name, arena == EF_ARENA_GRAD ? "gradient" : "such");
  return s->mem[arena] + e->offset;
}

void ef_store_write(ef_store *s, int entry, ef_arena arena, const float *host) {
  s->be->upload(s->be, ef_store_data(s, entry, arena), host, s->entries[entry].numel * sizeof(float));
}

void ef_store_read(const ef_store *s, int entry, ef_arena arena, float *host) {
  s->be->download(s->be, host, ef_store_data(s, entry, arena), s->entries[entry].numel * sizeof(float));
}

void ef_store_zero_grads(ef_store *s) { s->be->memset(s->be, s->mem[EF_ARENA_GRAD], 0, s->numel[0] * sizeof(float)); }

void ef_store_initialize(ef_store *s, uint64_t seed) {
  for (int i = 0; i < s->n; i++) {
    const ef_store_entry *e = &s->entries[i];
    float *v = ef_xmalloc(e->numel * sizeof(float));
    uint32_t stream = ef_rng_stream(EF_RNG_INIT, (uint32_t)i);
    for (size_t j = 0; j < e->numel; j++) {
      switch (e->init.kind) {
      case EF_INIT_CONST: v[j] = e->init.scale; break;
      case EF_INIT_NORMAL: v[j] = e->init.scale * ef_philox_normal(seed, stream, 0, j); break;
      case EF_INIT_UNIFORM: v[j] = e->init.scale * (2.0f * ef_philox_uniform(seed, stream, 0, j) - 1.0f); break;
      }
    }
    ef_store_write(s, i, e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE, v);
    free(v);
  }
}
