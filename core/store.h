// The parameter store: every trainable parameter in one flat f32 arena, its gradient at the same
// offset in a second, and non-trainable state (batch-norm running statistics) in a third, with
// named views into them. Names follow timm's state_dict; they are what checkpoints use.
#ifndef EF_STORE_H
#define EF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/graph.h"
#include "core/log.h"

struct ef_backend;

typedef enum { EF_ARENA_PARAM, EF_ARENA_GRAD, EF_ARENA_STATE, EF_ARENA_COUNT } ef_arena;

// How an entry is initialized: every element `scale`, normal(0, scale), or uniform(-scale, scale).
typedef enum { EF_INIT_CONST, EF_INIT_NORMAL, EF_INIT_UNIFORM } ef_init_kind;
typedef struct {
  ef_init_kind kind;
  float scale;
} ef_init;

typedef struct {
  char name[EF_NAME_LEN];
  bool trainable; // params arena (with a gradient) or state arena
  bool decay;     // weight decay applies (conv and dense weights, not BN or biases)
  bool frozen;    // fine-tuning: held fixed. A frozen trainable entry gets no gradient and no
                  // update; a batch norm whose running mean is frozen normalizes with its
                  // running statistics in training too, and does not update them
  float lr_scale; // the learning rate's multiplier for this entry  [1]
  size_t offset;  // in elements, within its arena
  size_t numel;
  int ndim;
  int64_t shape[EF_MAX_DIMS]; // conv weights (O,KH,KW,I/groups); dense (O,I); vectors (C)
  ef_init init;
} ef_store_entry;

// Entries start on EF_STORE_ALIGN-float (256-byte) boundaries, so that kernels and cuDNN see the
// same alignment for every tensor of a shape (an algorithm chosen on one stays valid for the
// others); a vector (a 1-D entry) that follows another vector in its arena is packed right after
// it instead (batch norm's weight and bias, running mean and variance), so that such runs stay
// one (count, C) leaf (ef_param). Checkpoints hold entries, not arenas: they do not change.
#define EF_STORE_ALIGN 64

typedef struct ef_store {
  ef_store_entry *entries;
  int n, cap;
  size_t numel[2];            // elements of the params (and grads) arena and of the state arena,
                              // alignment padding included (ef_store_count: the entries' own)
  int last[2];                // the latest entry added to each arena, or -1
  struct ef_backend *be;      // where the arenas live once bound
  float *mem[EF_ARENA_COUNT]; // backend addresses
} ef_store;

ef_store *ef_store_new(void);
void ef_store_free(ef_store *s);

// Registers a tensor; returns its entry index. Aborts on a duplicate name. Only before binding.
int ef_store_add(ef_store *s, const char *name, bool trainable, bool decay, int ndim, const int64_t *shape,
                 ef_init init);
// The entry with this name, or -1.
int ef_store_find(const ef_store *s, const char *name);
// The elements of the trainable entries (or of the state entries), without alignment padding: the
// model's parameter count.
size_t ef_store_count(const ef_store *s, bool trainable);

// Allocates the three arenas on the backend, zero-filled. Fails with EF_ERR_NOMEM and a
// message naming the sizes if the backend is out of memory.
ef_status ef_store_bind(ef_store *s, struct ef_backend *be);

// Address of an entry's values (arena PARAM or STATE by the entry's kind, or its GRAD).
float *ef_store_data(const ef_store *s, int entry, ef_arena arena);
// Copies an entry's values (or gradient) from or to host memory.
void ef_store_write(ef_store *s, int entry, ef_arena arena, const float *host);
void ef_store_read(const ef_store *s, int entry, ef_arena arena, float *host);
// Sets the gradient arena to zero (before accumulating a new step's gradients).
void ef_store_zero_grads(ef_store *s);
// Fills every entry by its ef_init. Draws come from Philox (seed, stream EF_RNG_INIT + entry
// index): they do not depend on the order in which entries are initialized.
void ef_store_initialize(ef_store *s, uint64_t seed);

#endif
