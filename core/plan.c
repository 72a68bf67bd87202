// The memory planner: schedules what the kept tensors need, finds each buffer's lifetime (from
// the step that writes it to the last step that reads it, through views), and places buffers in
// one arena with a best-fit free list so that no two live buffers overlap, but for an elementwise
// output written over its source at the source's last read.
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"

ef_tensor *ef_plan_owner(ef_tensor *t) {
  while (t->op != EF_OP_LEAF && ef_op_get(t->op)->storage != EF_STORAGE_OWN &&
         ef_op_get(t->op)->storage != EF_STORAGE_REUSE)
    t = t->src[0];
  return t;
}

// ---- a best-fit free list over [0, top) ------------------------------------------------------

typedef struct {
  size_t off, size;
} block;

typedef struct {
  block *b; // free blocks sorted by offset, never adjacent (merged)
  int n;
  size_t top; // the arena's high-water mark
} free_list;

static void fl_remove(free_list *fl, int i) {
  memmove(fl->b + i, fl->b + i + 1, sizeof(block) * (size_t)(fl->n - i - 1));
  fl->n--;
}

static size_t fl_alloc(free_list *fl, size_t size) {
  int best = -1;
  for (int i = 0; i < fl->n; i++)
    if (fl->b[i].size >= size && (best < 0 || fl->b[i].size < fl->b[best].size)) best = i;
  if (best >= 0) {
    size_t off = fl->b[best].off;
    fl->b[best].off += size;
    fl->b[best].size -= size;
    if (!fl->b[best].size) fl_remove(fl, best);
    return off;
  }
  // Nothing fits: grow the arena, starting inside the last free block if it reaches the top.
  size_t off = fl->top;
  if (fl->n && fl->b[fl->n - 1].off + fl->b[fl->n - 1].size == fl->top) {
    off = fl->b[fl->n - 1].off;
    fl_remove(fl, fl->n - 1);
  }
  fl->top = off + size;
  return off;
}

static void fl_free(free_list *fl, size_t off, size_t size) {
  int i = 0;
  while (i < fl->n && fl->b[i].off < off) i++;
  fl->b = ef_xrealloc(fl->b, sizeof(block) * (size_t)(fl->n + 1));
  memmove(fl->b + i + 1, fl->b + i, sizeof(block) * (size_t)(fl->n - i));
  fl->b[i] = (block){off, size};
  fl->n++;
  if (i + 1 < fl->n && fl->b[i].off + fl->b[i].size == fl->b[i + 1].off) {
    fl->b[i].size += fl->b[i + 1].size;
    fl_remove(fl, i + 1);
  }
  if (i > 0 && fl->b[i - 1].off + fl->b[i - 1].size == fl->b[i].off) {
    fl->b[i - 1].size += fl->b[i].size;
    fl_remove(fl, i);
  }
}

// ---- scheduling and placement ----------------------------------------------------------------

static int cmp_birth(const void *a, const void *b) {
  const ef_buffer *x = a, *y = b;
  return x->birth != y->birth ? (x->birth < y->birth ? -1 : 1) : (x->t->id < y->t->id ? -1 : x->t->id > y->t->id);
}

typedef struct {
  int death, index;
} death_index;

static int cmp_death(const void *a, const void *b) {
  const death_index *x = a, *y = b;
  return x->death != y->death ? (x->death < y->death ? -1 : 1) : (x->index > y->index) - (x->index < y->index);
}

// The buffer of src[0] of b's writer when b may take over its space (EF_STORAGE_REUSE): a
// computed buffer of the same type and size whose last reader is b's writer. NULL otherwise.
static ef_buffer *reusable(ef_plan *p, const ef_buffer *b, const int *buf_of) {
  const ef_tensor *t = b->t;
  if (p->opts.no_reuse || ef_op_get(t->op)->storage != EF_STORAGE_REUSE) return NULL;
  const ef_tensor *o = ef_plan_owner(t->src[0]);
  int k = buf_of[o->id];
  if (k < 0 || o->dtype != t->dtype || ef_nbytes(o) != ef_nbytes(t)) return NULL;
  ef_buffer *s = &p->bufs[k];
  return s->birth >= 0 && s->death == b->birth ? s : NULL; // equal sizes: equal padded bytes
}

void ef_plan_schedule_and_place(ef_plan *p) {
  ef_graph *g = p->g;
  // Needed: kept tensors and, transitively, their sources (sources have smaller ids).
  bool *needed = ef_xcalloc((size_t)g->n, sizeof(bool));
  for (int i = g->n - 1; i >= 0; i--) {
    ef_tensor *t = g->nodes[i];
    if (t->keep) needed[i] = true;
    if (needed[i])
      for (int s = 0; s < t->n_src; s++) needed[t->src[s]->id] = true;
  }
  p->sched = ef_xmalloc(sizeof(ef_tensor *) * (size_t)g->n);
  p->n = 0;
  for (int i = 0; i < g->n; i++)
    if (needed[i]) p->sched[p->n++] = g->nodes[i];

  // Lifetimes of the planned owners, indexed by node id.
  int *birth = ef_xmalloc(sizeof(int) * (size_t)g->n), *death = ef_xmalloc(sizeof(int) * (size_t)g->n);
  for (int i = 0; i < p->n; i++) {
    ef_tensor *t = p->sched[i];
    // Inputs are written before a run and keep their values from one run to the next.
    bool input = t->op == EF_OP_LEAF;
    birth[t->id] = input ? -1 : i;
    death[t->id] = input ? p->n : i;
  }
  for (int i = 0; i < p->n; i++) {
    ef_tensor *t = p->sched[i];
    for (int s = 0; s < t->n_src; s++) {
      ef_tensor *o = ef_plan_owner(t->src[s]);
      if (death[o->id] < i) death[o->id] = i;
    }
    if (t->keep) death[ef_plan_owner(t)->id] = p->n;
  }

  p->bufs = ef_xmalloc(sizeof(ef_buffer) * (size_t)(p->n ? p->n : 1));
  p->n_bufs = 0;
  p->naive_bytes = 0;
  for (int i = 0; i < p->n; i++) {
    ef_tensor *t = p->sched[i];
    if (t->mem != EF_MEM_PLANNED || ef_plan_owner(t) != t) continue;
    size_t used = ef_nbytes(t) + (p->opts.poison ? EF_PLAN_RED_ZONE : 0);
    size_t bytes = (used + EF_PLAN_ALIGN - 1) / EF_PLAN_ALIGN * EF_PLAN_ALIGN;
    p->bufs[p->n_bufs++] = (ef_buffer){t, birth[t->id], death[t->id], 0, bytes, -1, false};
    p->naive_bytes += bytes;
  }
  qsort(p->bufs, (size_t)p->n_bufs, sizeof(ef_buffer), cmp_birth);
  p->written = ef_xmalloc(sizeof(int) * (size_t)(p->n ? p->n : 1));
  for (int i = 0; i < p->n; i++) p->written[i] = -1;
  int *buf_of = ef_xmalloc(sizeof(int) * (size_t)g->n); // per node id: its buffer's index in bufs, or -1
  for (int i = 0; i < g->n; i++) buf_of[i] = -1;
  for (int k = 0; k < p->n_bufs; k++) {
    if (p->bufs[k].birth >= 0) p->written[p->bufs[k].birth] = k;
    buf_of[p->bufs[k].t->id] = k;
  }

  // Place in order of birth; a buffer's space is released after the step that last reads it,
  // so a node's output never shares memory with its own inputs, but for an EF_STORAGE_REUSE node
  // that is its src[0]'s last reader: its output takes over src[0]'s space.
  free_list fl = {0};
  death_index *by_death = ef_xmalloc(sizeof(death_index) * (size_t)(p->n_bufs ? p->n_bufs : 1));
  for (int k = 0; k < p->n_bufs; k++) by_death[k] = (death_index){p->bufs[k].death, k};
  qsort(by_death, (size_t)p->n_bufs, sizeof(death_index), cmp_death);
  int next_free = 0; // the next buffer of by_death to release
  for (int k = 0; k < p->n_bufs; k++) {
    ef_buffer *b = &p->bufs[k];
    if (!p->opts.no_reuse)
      while (next_free < p->n_bufs && by_death[next_free].death < b->birth) {
        ef_buffer *d = &p->bufs[by_death[next_free++].index];
        if (d->heir < 0) fl_free(&fl, d->offset, d->bytes);
      }
    ef_buffer *src = reusable(p, b, buf_of);
    if (src) src->heir = k, b->inherited = true;
    b->offset = src ? src->offset : fl_alloc(&fl, b->bytes);
    b->t->offset = b->offset;
  }
  p->arena_bytes = fl.top;
  free(fl.b);
  free(by_death);
  free(buf_of);
  free(birth);
  free(death);
  free(needed);
}

void ef_plan_measure(ef_graph *g, size_t *arena_bytes, size_t *naive_bytes) {
  ef_plan p = {.g = g};
  ef_plan_schedule_and_place(&p);
  *arena_bytes = p.arena_bytes;
  *naive_bytes = p.naive_bytes;
  free(p.sched);
  free(p.bufs);
  free(p.written);
}
