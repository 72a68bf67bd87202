// A check of a plan's memory layout shared by the planner's tests (test_core) and the training
// graph's (test_train): no two live buffers share a byte, but for a buffer and its heir.
#ifndef EF_TEST_PLAN_CHECK_H
#define EF_TEST_PLAN_CHECK_H

#include "core/plan.h"
#include "tests/harness.h"

// No two buffers whose lifetimes overlap may share a byte, but for a buffer and its heir (written
// over it by its last reader, an EF_STORAGE_REUSE node from src[0]): the same bytes, passed on at
// that step. Returns the number of heirs.
static inline int check_no_live_overlap(const ef_plan *p, const char *what) {
  int bad = 0, heirs = 0;
  for (int a = 0; a < p->n_bufs; a++) {
    const ef_buffer *x = &p->bufs[a];
    if (x->heir < 0) continue;
    const ef_buffer *h = &p->bufs[x->heir];
    heirs++;
    CHECK(h->inherited && h->offset == x->offset && h->bytes == x->bytes && h->birth == x->death &&
              ef_plan_owner(h->t->src[0]) == x->t,
          "%s: '%s' is not the heir of '%s'", what, h->t->name, x->t->name);
  }
  for (int a = 0; a < p->n_bufs; a++)
    for (int b = a + 1; b < p->n_bufs; b++) {
      const ef_buffer *x = &p->bufs[a], *y = &p->bufs[b];
      if (x->heir == b || y->heir == a) continue;
      bool live = x->birth <= y->death && y->birth <= x->death;
      bool mem = x->offset < y->offset + y->bytes && y->offset < x->offset + x->bytes;
      if (live && mem && bad++ < 3) fprintf(stderr, "%s: '%s' and '%s' overlap\n", what, x->t->name, y->t->name);
    }
  CHECK(bad == 0, "%s: %d overlapping live buffers", what, bad);
  for (int a = 0; a < p->n_bufs; a++)
    CHECK(p->bufs[a].offset + p->bufs[a].bytes <= p->arena_bytes, "%s: outside the arena", what);
  return heirs;
}

#endif
