// Graph construction: leaves, the generic node constructor and one builder per forward op.
// Builders compute what depends on the op (padding, Philox streams) and let the op table's
// inference check shapes; nothing here touches data.
#include "core/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/philox.h"
#include "core/store.h"

ef_graph *ef_graph_new(ef_store *store, uint64_t seed) {
  ef_op_table_check();
  ef_graph *g = ef_xcalloc(1, sizeof *g);
  g->store = store;
  g->seed = seed;
  return g;
}

void ef_graph_free(ef_graph *g) {
  if (!g) return;
  EF_ASSERT(!g->plan, "free the graph's plan before the graph");
  for (int i = 0; i < g->n; i++) free(g->nodes[i]);
  free(g->nodes);
  free(g);
}

int64_t ef_numel(const ef_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t ef_nbytes(const ef_tensor *t) { return (size_t)ef_numel(t) * ef_dtype_size(t->dtype); }

bool ef_same_shape(const ef_tensor *a, const ef_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

const char *ef_shape_str(const ef_tensor *t, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < t->ndim && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "(", (long long)t->shape[i]);
  if (used < len) snprintf(buf + used, len - used, ")");
  return buf;
}

void ef_tensor_set_name(ef_tensor *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name, sizeof t->name, fmt, ap);
  va_end(ap);
}

const char *ef_graph_scope(ef_graph *g, const char *scope) {
  const char *before = g->scope;
  g->scope = scope;
  return before;
}

static ef_tensor *graph_push(ef_graph *g) {
  if (g->n == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 256;
    g->nodes = ef_xrealloc(g->nodes, sizeof(ef_tensor *) * (size_t)g->cap);
  }
  ef_tensor *t = ef_xcalloc(1, sizeof *t);
  t->id = g->n;
  t->scope = g->scope;
  g->nodes[g->n++] = t;
  return t;
}

// Every dimension >= 1, and the size in bytes representable with room to spare.
static void check_size(const ef_tensor *t) {
  int64_t bytes = (int64_t)ef_dtype_size(t->dtype);
  for (int i = 0; i < t->ndim; i++) {
    EF_ASSERT(t->shape[i] >= 1, "'%s': dimension %d is %lld", t->name, i, (long long)t->shape[i]);
    EF_ASSERT(!__builtin_mul_overflow(bytes, t->shape[i], &bytes) && bytes < (INT64_C(1) << 60), "'%s' is too large",
              t->name);
  }
}

static void set_leaf_shape(ef_tensor *t, ef_dtype dtype, int ndim, const int64_t *shape) {
  EF_ASSERT(ndim >= 1 && ndim <= EF_MAX_DIMS, "'%s': %d dimensions", t->name, ndim);
  t->dtype = dtype;
  t->ndim = ndim;
  memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  check_size(t);
}

ef_tensor *ef_input(ef_graph *g, const char *name, ef_dtype dtype, int ndim, const int64_t *shape) {
  ef_tensor *t = graph_push(g);
  ef_tensor_set_name(t, "%s", name);
  set_leaf_shape(t, dtype, ndim, shape);
  t->op = EF_OP_LEAF;
  t->mem = EF_MEM_PLANNED;
  return t;
}

ef_tensor *ef_param(ef_graph *g, int entry, int count, const char *name) {
  const ef_store *s = g->store;
  EF_ASSERT(s && entry >= 0 && count >= 1 && entry + count <= s->n, "entries %d..%d of %d", entry, entry + count,
            s ? s->n : 0);
  const ef_store_entry *e = &s->entries[entry];
  for (int i = 1; i < count; i++) {
    const ef_store_entry *f = &s->entries[entry + i];
    EF_ASSERT(f->trainable == e->trainable && f->frozen == e->frozen && f->numel == e->numel &&
                  f->offset == e->offset + (size_t)i * e->numel,
              "'%s' does not follow '%s' in its arena, or is frozen differently", f->name, e->name);
  }
  ef_tensor *t = graph_push(g);
  ef_tensor_set_name(t, "%s", name ? name : e->name);
  if (count == 1) set_leaf_shape(t, EF_F32, e->ndim, e->shape);
  else set_leaf_shape(t, EF_F32, 2, (int64_t[]){count, (int64_t)e->numel});
  t->op = EF_OP_LEAF;
  t->mem = e->trainable ? EF_MEM_PARAM : EF_MEM_STATE;
  t->offset = e->offset * sizeof(float);
  t->requires_grad = e->trainable && !e->frozen;
  return t;
}

ef_tensor *ef_node_new(ef_graph *g, ef_op op, int n_src, ef_tensor *const *src, const ef_op_params *p, int ndim,
                       const int64_t *shape) {
  const ef_op_desc *d = ef_op_get(op);
  EF_ASSERT(op != EF_OP_LEAF && n_src >= d->min_src && n_src <= d->max_src, "op %s with %d sources", d->name, n_src);
  ef_tensor *t = graph_push(g);
  ef_tensor_set_name(t, "%s#%d", d->name, t->id);
  t->op = op;
  t->n_src = n_src;
  for (int i = 0; i < n_src; i++) {
    EF_ASSERT(src[i], "op %s: source %d is NULL", d->name, i);
    t->src[i] = src[i];
    // Only differentiable ops propagate the need for a gradient.
    if (d->backward && src[i]->requires_grad) t->requires_grad = true;
  }
  if (p) t->p = *p;
  if (ndim > 0) {
    EF_ASSERT(ndim <= EF_MAX_DIMS, "op %s: %d dimensions", d->name, ndim);
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
  }
  t->dtype = EF_F32;
  d->infer(t);
  check_size(t);
  // Views and in-place results live where src[0] lives (the plan resolves the address).
  t->mem = d->storage == EF_STORAGE_OWN || d->storage == EF_STORAGE_REUSE ? EF_MEM_PLANNED : src[0]->mem;
  return t;
}

void ef_graph_keep(ef_graph *g, ef_tensor *t) {
  (void)g;
  t->keep = true;
}

// ---- builders --------------------------------------------------------------------------

// Padding of one spatial axis: PyTorch's symmetric d*(k-1)/2, or TF "SAME", which pads so that
// out = ceil(in / stride) and puts the odd pixel at the end.
static void conv_padding(ef_padding mode, int64_t in, int64_t k, int stride, int dilation, int32_t *lo, int32_t *hi) {
  int64_t ek = (int64_t)dilation * (k - 1) + 1;
  if (mode == EF_PAD_SYMMETRIC) {
    *lo = *hi = (int32_t)((ek - 1) / 2);
    return;
  }
  int64_t out = (in + stride - 1) / stride;
  int64_t total = (out - 1) * stride + ek - in;
  if (total < 0) total = 0;
  *lo = (int32_t)(total / 2);
  *hi = (int32_t)(total - total / 2);
}

static ef_op_params conv_params(const ef_tensor *x, const ef_tensor *w, int stride, int dilation, int groups,
                                ef_padding padding) {
  EF_ASSERT(x->ndim == 4 && w->ndim == 4, "conv2d of '%s' by '%s': needs 4-D tensors", x->name, w->name);
  ef_op_params p = {.conv = {.stride = {stride, stride}, .dilation = {dilation, dilation}, .groups = groups}};
  conv_padding(padding, x->shape[1], w->shape[1], stride, dilation, &p.conv.pad[0], &p.conv.pad[1]);
  conv_padding(padding, x->shape[2], w->shape[2], stride, dilation, &p.conv.pad[2], &p.conv.pad[3]);
  return p;
}

ef_tensor *ef_conv2d(ef_graph *g, ef_tensor *x, ef_tensor *w, ef_tensor *b, int stride, int dilation, int groups,
                     ef_padding padding) {
  ef_op_params p = conv_params(x, w, stride, dilation, groups, padding);
  return ef_node_new(g, EF_OP_CONV2D, b ? 3 : 2, (ef_tensor *[]){x, w, b}, &p, 0, NULL);
}

ef_tensor *ef_conv2d_bn(ef_graph *g, ef_tensor *x, ef_tensor *w, int stride, int groups, ef_padding padding,
                        ef_tensor *stats, ef_tensor *affine, float eps, ef_act act) {
  ef_op_params p = conv_params(x, w, stride, 1, groups, padding);
  p.conv.bn_eps = eps, p.conv.act = act;
  return ef_node_new(g, EF_OP_CONV2D_BN, 4, (ef_tensor *[]){x, w, stats, affine}, &p, 0, NULL);
}

ef_tensor *ef_conv2d_bn_gated(ef_graph *g, ef_tensor *x, ef_tensor *gate, ef_tensor *w, ef_tensor *stats,
                              ef_tensor *affine, float eps, ef_act act) {
  ef_op_params p = conv_params(x, w, 1, 1, 1, EF_PAD_SYMMETRIC);
  p.conv.bn_eps = eps, p.conv.act = act;
  return ef_node_new(g, EF_OP_CONV2D_BN, 5, (ef_tensor *[]){x, w, stats, affine, gate}, &p, 0, NULL);
}

ef_tensor *ef_expand_dw(ef_graph *g, ef_tensor *x, ef_tensor *w1, ef_tensor *stats1, ef_tensor *affine1, ef_tensor *w2,
                        int stride, ef_padding padding, ef_tensor *stats2, ef_tensor *affine2, float eps, ef_act act) {
  ef_op_params p = conv_params(x, w2, stride, 1, (int)w2->shape[0], padding); // the expansion keeps H, W
  p.conv.bn_eps = eps, p.conv.act = act;
  return ef_node_new(g, EF_OP_EXPAND_DW, 7, (ef_tensor *[]){x, w1, stats1, affine1, w2, stats2, affine2}, &p, 0, NULL);
}

ef_tensor *ef_bn_stats(ef_graph *g, ef_tensor *x) { return ef_node_new(g, EF_OP_BN_STATS, 1, &x, NULL, 0, NULL); }

ef_tensor *ef_bn(ef_graph *g, ef_tensor *x, ef_tensor *stats, ef_tensor *affine, float eps, ef_act act,
                 bool batch_stats) {
  ef_op_params p = {.bn = {.eps = eps, .act = act, .batch_stats = batch_stats}};
  EF_ASSERT(eps > 0 && act >= 0 && act < EF_ACT_COUNT, "bn of '%s': eps %g, activation %d", x->name, eps, (int)act);
  return ef_node_new(g, EF_OP_BN, 3, (ef_tensor *[]){x, stats, affine}, &p, 0, NULL);
}

ef_tensor *ef_sync_stats(ef_graph *g, ef_tensor *stats, int group) {
  ef_op_params p = {.sync = {.group = group}};
  return ef_node_new(g, EF_OP_SYNC_STATS, 1, &stats, &p, 0, NULL);
}

ef_tensor *ef_bn_update(ef_graph *g, ef_tensor *running, ef_tensor *stats, float momentum) {
  ef_op_params p = {.bn_update = {.momentum = momentum}};
  ef_tensor *t = ef_node_new(g, EF_OP_BN_UPDATE, 2, (ef_tensor *[]){running, stats}, &p, 0, NULL);
  ef_graph_keep(g, t);
  return t;
}

ef_tensor *ef_activate(ef_graph *g, ef_tensor *x, ef_act act) {
  ef_op_params p = {.act = {.act = act}};
  return ef_node_new(g, EF_OP_ACT, 1, &x, &p, 0, NULL);
}

ef_tensor *ef_add(ef_graph *g, ef_tensor *a, ef_tensor *b) {
  return ef_node_new(g, EF_OP_ADD, 2, (ef_tensor *[]){a, b}, NULL, 0, NULL);
}

ef_tensor *ef_channel_mul(ef_graph *g, ef_tensor *x, ef_tensor *s) {
  return ef_node_new(g, EF_OP_CHANNEL_MUL, 2, (ef_tensor *[]){x, s}, NULL, 0, NULL);
}

ef_tensor *ef_gap(ef_graph *g, ef_tensor *x) { return ef_node_new(g, EF_OP_GAP, 1, &x, NULL, 0, NULL); }

ef_tensor *ef_linear(ef_graph *g, ef_tensor *x, ef_tensor *w, ef_tensor *b) {
  ef_tensor *src[3] = {x, w, b};
  return ef_node_new(g, EF_OP_LINEAR, b ? 3 : 2, src, NULL, 0, NULL);
}

ef_tensor *ef_dropout(ef_graph *g, ef_tensor *x, float rate, bool per_sample) {
  ef_op_params p = {.dropout = {.rate = rate,
                                .per_sample = per_sample,
                                .stream = ef_rng_stream(EF_RNG_DROPOUT, g->n_rng_streams++),
                                .seed = g->seed}};
  return ef_node_new(g, EF_OP_DROPOUT, 1, &x, &p, 0, NULL);
}

ef_tensor *ef_softmax_ce(ef_graph *g, ef_tensor *logits, ef_tensor *labels, float smoothing) {
  ef_op_params p = {.ce = {.smoothing = smoothing}};
  return ef_node_new(g, EF_OP_SOFTMAX_CE, 2, (ef_tensor *[]){logits, labels}, &p, 0, NULL);
}

ef_tensor *ef_sum(ef_graph *g, ef_tensor *x) {
  ef_op_params p = {.value = {1.0f}};
  return ef_node_new(g, EF_OP_REDUCE, 1, &x, &p, 0, NULL);
}

ef_tensor *ef_mean(ef_graph *g, ef_tensor *x) {
  ef_op_params p = {.value = {(float)(1.0 / (double)ef_numel(x))}};
  return ef_node_new(g, EF_OP_REDUCE, 1, &x, &p, 0, NULL);
}

ef_tensor *ef_reshape(ef_graph *g, ef_tensor *x, int ndim, const int64_t *shape) {
  return ef_node_new(g, EF_OP_RESHAPE, 1, &x, NULL, ndim, shape);
}

ef_tensor *ef_fill(ef_graph *g, int ndim, const int64_t *shape, float value) {
  ef_op_params p = {.value = {value}};
  return ef_node_new(g, EF_OP_FILL, 0, NULL, &p, ndim, shape);
}

// ---- mixed precision ------------------------------------------------------------------------------

void ef_graph_set_precision(ef_graph *g, ef_dtype dtype, bool all) {
  EF_ASSERT(dtype == EF_F32 || dtype == EF_BF16 || dtype == EF_F16, "precision %s", ef_dtype_name(dtype));
  EF_ASSERT(!g->plan, "set the precision before planning");
  if (dtype == EF_F32) return;
  for (int i = 0; i < g->n; i++) { // creation order is topological: views see their source's new type
    ef_tensor *t = g->nodes[i];
    bool spatial = t->ndim == 4 && t->shape[1] * t->shape[2] > 1;
    switch (ef_op_get(t->op)->precision) {
    case EF_PREC_SOURCE: t->dtype = t->src[0]->dtype; break;
    case EF_PREC_ACTIVATION:
      if (t->dtype == EF_F32 && (all || spatial)) t->dtype = dtype;
      break;
    case EF_PREC_WITH_ALL:
      if (t->dtype == EF_F32 && all) t->dtype = dtype;
      break;
    case EF_PREC_F32: break;
    }
  }
}
