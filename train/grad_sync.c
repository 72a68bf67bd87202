// Bucketed, overlapped gradient all-reduce (see grad_sync.h): the buckets and their ready
// positions come from the plan's schedule once; each step starts them from the executor's hook
// in the same order on every rank (the order MPI needs for its collectives) and waits at the end.
#include "train/grad_sync.h"

#include <stdlib.h>

#include "core/op.h"

static int by_start_order(const void *a, const void *b) {
  const ef_grad_bucket *x = a, *y = b;
  if (x->ready != y->ready) return x->ready < y->ready ? -1 : 1;
  return x->lo > y->lo ? -1 : x->lo < y->lo;
}

void ef_grad_sync_init(ef_grad_sync *gs, ef_comm *c, const ef_plan *p, const ef_store *s, size_t bucket_bytes) {
  *gs = (ef_grad_sync){.comm = c, .grad = s->mem[EF_ARENA_GRAD]};
  size_t total = s->numel[0], per = bucket_bytes / sizeof(float);
  if (!per || per > total) per = total;
  // Cuts at entry boundaries, from the arena's end: each bucket at least `per` elements (the last
  // may be smaller).
  gs->b = ef_xcalloc((size_t)(total / (per ? per : 1) + 1), sizeof *gs->b);
  size_t hi = total;
  while (hi > 0) {
    size_t lo = 0; // the highest entry start at least `per` below hi
    for (int e = 0; e < s->n; e++) {
      const ef_store_entry *en = &s->entries[e];
      if (en->trainable && en->offset + per <= hi && en->offset > lo) lo = en->offset;
    }
    gs->b[gs->n++] = (ef_grad_bucket){.lo = lo, .hi = hi, .ready = -1};
    hi = lo;
  }
  // A bucket is ready after the last accum node that writes into any part of it.
  const char *base = (const char *)s->mem[EF_ARENA_GRAD];
  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->op != EF_OP_ACCUM) continue;
    size_t lo = (size_t)((const char *)t->data - base) / sizeof(float), hi_t = lo + ef_nbytes(t) / sizeof(float);
    for (int k = 0; k < gs->n; k++)
      if (lo < gs->b[k].hi && hi_t > gs->b[k].lo && i > gs->b[k].ready) gs->b[k].ready = i;
  }
  qsort(gs->b, (size_t)gs->n, sizeof *gs->b, by_start_order);
}

void ef_grad_sync_free(ef_grad_sync *gs) {
  free(gs->b);
  *gs = (ef_grad_sync){0};
}

static void start(ef_grad_sync *gs, ef_grad_bucket *b) {
  b->req = (ef_comm_request){.buf = gs->grad + b->lo, .count = b->hi - b->lo, .dtype = EF_COMM_F32, .op = EF_COMM_AVG};
  gs->comm->iallreduce(gs->comm, &b->req);
}

void ef_grad_sync_after_node(void *user, int position) {
  ef_grad_sync *gs = user;
  for (int k = 0; k < gs->started; k++) gs->comm->test(gs->comm, &gs->b[k].req);
  while (gs->started < gs->n && gs->b[gs->started].ready <= position) start(gs, &gs->b[gs->started++]);
}

void ef_grad_sync_finish(ef_grad_sync *gs) {
  while (gs->started < gs->n) start(gs, &gs->b[gs->started++]);
  for (int k = 0; k < gs->n; k++) gs->comm->wait(gs->comm, &gs->b[k].req);
  gs->started = 0;
}
