// Reverse-mode differentiation of a graph, built once: walks the forward nodes from last to
// first, calls each op's backward rule (core/op.c), sums gradient contributions, and ends every
// parameter's gradient with one ACCUM into the store's flat gradient arena, created as soon as
// that gradient is complete (so that a data-parallel all-reduce can start during the backward pass).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/log.h"

void ef_grad_add(ef_graph *g, ef_tensor *t, ef_tensor *dt) {
  char a[64], b[64];
  EF_ASSERT(ef_same_shape(t, dt), "gradient %s of '%s' has shape %s", ef_shape_str(dt, a, sizeof a), t->name,
            ef_shape_str(t, b, sizeof b));
  if (!t->grad) {
    // Name a fresh gradient node after the tensor it belongs to, for plans and profiles.
    char autoname[EF_NAME_LEN];
    snprintf(autoname, sizeof autoname, "%s#%d", ef_op_name(dt->op), dt->id);
    if (!strcmp(dt->name, autoname)) ef_tensor_set_name(dt, "grad(%.80s)", t->name);
    t->grad = dt;
    return;
  }
  t->grad = ef_add(g, t->grad, dt);
  ef_tensor_set_name(t->grad, "grad(%.80s)", t->name);
}

bool ef_grad_hold_scale(ef_graph *g, ef_tensor *t, ef_tensor *dy, ef_tensor *s) {
  int slots = (int)(sizeof g->held / sizeof g->held[0]);
  if (t->op == EF_OP_LEAF || g->n_held == slots) return false; // a leaf's gradient may be accumulated early
  g->held[g->n_held].t = t, g->held[g->n_held].dy = dy, g->held[g->n_held].s = s, g->held[g->n_held].scope = g->scope;
  g->n_held++;
  return true;
}

// The first scale gradient held for t, removed from the held ones, with the scope of the rule that
// held it.
static bool take_held(ef_graph *g, const ef_tensor *t, ef_tensor **dy, ef_tensor **s, const char **scope) {
  for (int i = 0; i < g->n_held; i++)
    if (g->held[i].t == t) {
      *dy = g->held[i].dy, *s = g->held[i].s, *scope = g->held[i].scope;
      g->held[i] = g->held[--g->n_held];
      return true;
    }
  return false;
}

bool ef_grad_take_scale(ef_graph *g, const ef_tensor *t, ef_tensor **dy, ef_tensor **s) {
  const char *scope;
  return take_held(g, t, dy, s, &scope);
}

// At t's turn: what is still held for t, built and added in the scope of the rule that held it.
static void add_held(ef_graph *g, ef_tensor *t) {
  ef_tensor *dy, *s;
  const char *scope;
  while (take_held(g, t, &dy, &s, &scope)) {
    const char *outer = ef_graph_scope(g, scope);
    ef_grad_add(g, t, ef_node_new(g, EF_OP_CHANNEL_MUL, 2, (ef_tensor *[]){dy, s}, NULL, 0, NULL));
    ef_graph_scope(g, outer);
  }
}

// A parameter's total gradient added (+=) into its place in the gradient arena by an ACCUM node,
// kept; the leaf's grad becomes that place.
static void accumulate(ef_graph *g, ef_tensor *t) {
  const char *outer = ef_graph_scope(g, t->scope);
  ef_tensor *acc = ef_input(g, "", EF_F32, t->ndim, t->shape);
  ef_tensor_set_name(acc, "grad:%.80s", t->name);
  acc->mem = EF_MEM_GRAD;
  acc->offset = t->offset;
  ef_tensor *upd = ef_node_new(g, EF_OP_ACCUM, 2, (ef_tensor *[]){acc, t->grad}, NULL, 0, NULL);
  ef_tensor_set_name(upd, "accum:%.80s", t->name);
  ef_graph_keep(g, upd);
  ef_graph_scope(g, outer);
  t->grad = acc;
}

void ef_graph_backward_from(ef_graph *g, ef_tensor *y, ef_tensor *dy) {
  EF_ASSERT(!g->differentiated, "a graph is differentiated once");
  EF_ASSERT(ef_same_shape(y, dy) && dy->dtype == EF_F32 && !dy->requires_grad, "dy must be a constant f32 like '%s'",
            y->name);
  g->differentiated = true;
  int n_forward = g->n;
  // (n_forward) per parameter leaf: the first node that reads it. Once the walk has passed that
  // node, every contribution to the parameter's gradient exists.
  int *first_reader = malloc(sizeof(int) * (size_t)(n_forward ? n_forward : 1));
  EF_ASSERT(first_reader, "out of memory for %d nodes", n_forward);
  for (int i = 0; i < n_forward; i++) first_reader[i] = -1;
  for (int i = n_forward - 1; i >= 0; i--)
    for (int k = 0; k < g->nodes[i]->n_src; k++) first_reader[g->nodes[i]->src[k]->id] = i;
  y->grad = dy;
  for (int i = n_forward - 1; i >= 0; i--) {
    ef_tensor *t = g->nodes[i];
    add_held(g, t);
    if (t->grad && t->requires_grad && t->op != EF_OP_LEAF) {
      const ef_op_desc *d = ef_op_get(t->op);
      EF_ASSERT(d->backward, "op %s (node '%s') received a gradient but has no backward rule", d->name, t->name);
      const char *outer = ef_graph_scope(g, t->scope);
      d->backward(g, t, t->grad);
      ef_graph_scope(g, outer);
    }
    for (int k = 0; k < t->n_src; k++) {
      ef_tensor *p = t->src[k];
      if (p->op == EF_OP_LEAF && p->mem == EF_MEM_PARAM && p->grad && p->grad->mem != EF_MEM_GRAD &&
          first_reader[p->id] == i)
        accumulate(g, p);
    }
  }
  free(first_reader);
  EF_ASSERT(g->n_held == 0, "%d gradient contributions still held after the walk", g->n_held);
  // Leaves: inputs keep their gradient; a parameter that is y itself accumulates now.
  for (int i = 0; i < n_forward; i++) {
    ef_tensor *t = g->nodes[i];
    if (t->op != EF_OP_LEAF || !t->grad) continue;
    if (t->mem == EF_MEM_PARAM && t->grad->mem != EF_MEM_GRAD) accumulate(g, t);
    else if (t->mem != EF_MEM_PARAM) ef_graph_keep(g, t->grad);
  }
}

void ef_graph_backward(ef_graph *g, ef_tensor *loss) {
  EF_ASSERT(ef_numel(loss) == 1, "the loss '%s' must be a scalar", loss->name);
  ef_tensor *one = ef_fill(g, loss->ndim, loss->shape, 1.0f);
  ef_tensor_set_name(one, "grad(%.80s)", loss->name);
  ef_graph_backward_from(g, loss, one);
}
