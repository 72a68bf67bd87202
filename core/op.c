// The op table: for each op its name, arity, storage kind, shape inference, backward rule,
// precision class, multiply-adds and profile class. Backward rules build gradient nodes with
// ef_node_new and hand them to ef_grad_add; they never compute. Checked by ef_op_table_check.
#include "core/op.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/graph.h"
#include "core/log.h"

// ---- shape checking helpers ----------------------------------------------------------------

static _Noreturn void bad_node(const ef_tensor *n, const char *fmt, ...) {
  char msg[512], shapes[512] = "", buf[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (int i = 0; i < n->n_src; i++) {
    size_t used = strlen(shapes);
    snprintf(shapes + used, sizeof shapes - used, "%s %s%s", i ? "," : "", n->src[i]->name,
             ef_shape_str(n->src[i], buf, sizeof buf));
  }
  EF_FATAL("op %s (node '%s'): %s; sources:%s", ef_op_name(n->op), n->name, msg, shapes);
}

static void set_shape(ef_tensor *n, ef_dtype dt, int ndim, const int64_t *shape) {
  n->dtype = dt;
  n->ndim = ndim;
  memcpy(n->shape, shape, sizeof(int64_t) * (size_t)ndim);
}

// Activations may be f32 or a 16-bit float type (which backends compute in, or reject);
// statistics, parameters' gradients and losses are always f32.
static void need_float(const ef_tensor *n, int i) {
  ef_dtype t = n->src[i]->dtype;
  if (t != EF_F32 && t != EF_BF16 && t != EF_F16) bad_node(n, "source %d must be f32, bf16 or f16", i);
}

static void need_same(const ef_tensor *n, int i, int j) {
  if (!ef_same_shape(n->src[i], n->src[j])) bad_node(n, "sources %d and %d differ in shape", i, j);
}

static void need_ndim(const ef_tensor *n, int i, int ndim) {
  if (n->src[i]->ndim != ndim) bad_node(n, "source %d must be %d-D", i, ndim);
}

static int64_t last_dim(const ef_tensor *t) { return t->shape[t->ndim - 1]; }

// A per-channel pair tensor (2,C) matching C channels.
static void need_pair(const ef_tensor *n, int i, int64_t c) {
  const ef_tensor *t = n->src[i];
  if (t->dtype != EF_F32 || t->ndim != 2 || t->shape[0] != 2 || t->shape[1] != c)
    bad_node(n, "source %d must be an f32 (2,%lld) pair", i, (long long)c);
}

// ---- convolution -----------------------------------------------------------------------

// Output height and width of a convolution of x (N,H,W,C) by w (O,KH,KW,C/g).
static void conv_out_hw(const ef_tensor *n, const int64_t *xs, const int64_t *ws, int64_t *oh, int64_t *ow) {
  const ef_conv_params *p = &n->p.conv;
  int64_t ekh = (int64_t)p->dilation[0] * (ws[1] - 1) + 1, ekw = (int64_t)p->dilation[1] * (ws[2] - 1) + 1;
  int64_t ph = xs[1] + p->pad[0] + p->pad[1], pw = xs[2] + p->pad[2] + p->pad[3];
  if (ph < ekh || pw < ekw) bad_node(n, "kernel larger than the padded input");
  *oh = (ph - ekh) / p->stride[0] + 1;
  *ow = (pw - ekw) / p->stride[1] + 1;
}

static void conv_check(const ef_tensor *n, const int64_t *xs, const int64_t *ws) {
  const ef_conv_params *p = &n->p.conv;
  if (p->groups < 1 || xs[3] % p->groups || ws[0] % p->groups || ws[3] * p->groups != xs[3])
    bad_node(n, "channels (in %lld, out %lld, weight in %lld) do not fit %d groups", (long long)xs[3], (long long)ws[0],
             (long long)ws[3], p->groups);
  if (p->stride[0] < 1 || p->stride[1] < 1 || p->dilation[0] < 1 || p->dilation[1] < 1)
    bad_node(n, "stride and dilation must be >= 1");
  for (int i = 0; i < 4; i++)
    if (p->pad[i] < 0) bad_node(n, "negative padding");
}

// The forward convolution's x and w, and its output shape.
static void infer_conv_forward(ef_tensor *n) {
  need_ndim(n, 0, 4);
  need_ndim(n, 1, 4);
  need_float(n, 0);
  need_float(n, 1);
  const ef_tensor *x = n->src[0], *w = n->src[1];
  conv_check(n, x->shape, w->shape);
  int64_t s[4] = {x->shape[0], 0, 0, w->shape[0]};
  conv_out_hw(n, x->shape, w->shape, &s[1], &s[2]);
  set_shape(n, x->dtype, 4, s);
}

static void infer_conv2d(ef_tensor *n) { // {x, w, [b]}
  infer_conv_forward(n);
  if (n->n_src == 3 && (n->src[2]->ndim != 1 || n->src[2]->shape[0] != n->shape[3]))
    bad_node(n, "bias must be (%lld)", (long long)n->shape[3]);
}

static void infer_conv2d_bn(ef_tensor *n) { // {x, w, stats, affine, [gate]}
  infer_conv_forward(n);
  need_pair(n, 2, n->shape[3]);
  need_pair(n, 3, n->shape[3]);
  if (n->n_src == 5) {
    const ef_tensor *x = n->src[0], *w = n->src[1], *gate = n->src[4];
    const ef_conv_params *p = &n->p.conv;
    if (w->shape[1] != 1 || w->shape[2] != 1 || p->groups != 1 || p->stride[0] != 1 || p->stride[1] != 1 || p->pad[0] ||
        p->pad[1] || p->pad[2] || p->pad[3])
      bad_node(n, "a gate needs a 1x1 convolution with stride 1, no padding and one group");
    need_ndim(n, 4, 4);
    need_float(n, 4);
    if (gate->shape[0] != x->shape[0] || gate->shape[1] != 1 || gate->shape[2] != 1 || gate->shape[3] != x->shape[3])
      bad_node(n, "the gate must be (%lld,1,1,%lld)", (long long)x->shape[0], (long long)x->shape[3]);
  }
  if (!(n->p.conv.bn_eps > 0) || n->p.conv.act < 0 || n->p.conv.act >= EF_ACT_COUNT)
    bad_node(n, "batch norm eps %g, activation %d", n->p.conv.bn_eps, (int)n->p.conv.act);
}

static void infer_expand_dw(ef_tensor *n) { // {x, w1, stats1, affine1, w2, stats2, affine2}
  need_ndim(n, 0, 4);
  need_ndim(n, 1, 4);
  need_ndim(n, 4, 4);
  need_float(n, 0);
  need_float(n, 1);
  need_float(n, 4);
  const ef_tensor *x = n->src[0], *w1 = n->src[1], *w2 = n->src[4];
  int64_t m = w1->shape[0], mid[4] = {x->shape[0], x->shape[1], x->shape[2], m};
  if (w1->shape[1] != 1 || w1->shape[2] != 1 || w1->shape[3] != x->shape[3])
    bad_node(n, "the expansion's weights must be (M,1,1,%lld)", (long long)x->shape[3]);
  if (w2->shape[0] != m || w2->shape[3] != 1 || n->p.conv.groups != m)
    bad_node(n, "the depthwise weights must be (%lld,KH,KW,1) in %lld groups", (long long)m, (long long)m);
  if (n->p.conv.dilation[0] != 1 || n->p.conv.dilation[1] != 1) bad_node(n, "the depthwise convolution is not dilated");
  conv_check(n, mid, w2->shape);
  int64_t s[4] = {x->shape[0], 0, 0, m};
  conv_out_hw(n, mid, w2->shape, &s[1], &s[2]);
  set_shape(n, x->dtype, 4, s);
  for (int i = 2; i <= 6; i++)
    if (i != 4) need_pair(n, i, m);
  if (!(n->p.conv.bn_eps > 0) || n->p.conv.act < 0 || n->p.conv.act >= EF_ACT_COUNT)
    bad_node(n, "batch norm eps %g, activation %d", n->p.conv.bn_eps, (int)n->p.conv.act);
}

// A backward convolution node: dy must be the output of convolving input shape xs by ws.
static void check_conv_dy(const ef_tensor *n, const ef_tensor *dy, const int64_t *xs, const int64_t *ws) {
  need_ndim(n, 0, 4);
  need_ndim(n, 1, 4);
  if (n->ndim != 4) bad_node(n, "needs the 4-D shape of what it computes");
  conv_check(n, xs, ws);
  int64_t oh, ow;
  conv_out_hw(n, xs, ws, &oh, &ow);
  if (dy->shape[0] != xs[0] || dy->shape[1] != oh || dy->shape[2] != ow || dy->shape[3] != ws[0])
    bad_node(n, "dy does not match the convolution's output");
}

static void infer_conv2d_bwd_data(ef_tensor *n) { // {dy, w}, node shape preset to x's
  check_conv_dy(n, n->src[0], n->shape, n->src[1]->shape);
  n->dtype = n->src[0]->dtype;
}

static void infer_conv2d_bwd_weight(ef_tensor *n) { // {dy, x}, node shape preset to w's
  check_conv_dy(n, n->src[0], n->src[1]->shape, n->shape);
  n->dtype = EF_F32;
}

// Multiply-adds per output (or input-gradient) element: KH*KW*C/groups of the weights w (O,KH,KW,C/groups).
static int64_t conv_macs_each(const ef_tensor *w) { return ef_numel(w) / w->shape[0]; }
static int64_t macs_conv2d(const ef_tensor *n) { return ef_numel(n) * conv_macs_each(n->src[1]); }
// The expansion's over the input's pixels, then the depthwise's.
static int64_t macs_expand_dw(const ef_tensor *n) {
  return ef_rows(n->src[0]) * ef_numel(n->src[1]) + ef_numel(n) * conv_macs_each(n->src[4]);
}
static int64_t macs_conv2d_bwd_data(const ef_tensor *n) { return ef_numel(n->src[0]) * conv_macs_each(n->src[1]); }
// dy (N,OH,OW,O) against the weights' gradient (O,KH,KW,C/groups).
static int64_t macs_conv2d_bwd_weight(const ef_tensor *n) { return ef_numel(n->src[0]) * conv_macs_each(n); }

static void backward_conv2d(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0], *w = n->src[1];
  if (x->requires_grad)
    ef_grad_add(g, x, ef_node_new(g, EF_OP_CONV2D_BWD_DATA, 2, (ef_tensor *[]){dy, w}, &n->p, x->ndim, x->shape));
  if (w->requires_grad)
    ef_grad_add(g, w, ef_node_new(g, EF_OP_CONV2D_BWD_WEIGHT, 2, (ef_tensor *[]){dy, x}, &n->p, w->ndim, w->shape));
  if (n->n_src == 3 && n->src[2]->requires_grad)
    ef_grad_add(g, n->src[2], ef_node_new(g, EF_OP_SUM_ROWS, 1, &dy, NULL, 0, NULL));
}

// ---- batch norm --------------------------------------------------------------------------

static void infer_bn_stats(ef_tensor *n) {
  need_float(n, 0);
  if (n->src[0]->ndim < 2) bad_node(n, "needs (..., C)");
  set_shape(n, EF_F32, 2, (int64_t[]){2, last_dim(n->src[0])});
}

static void infer_bn(ef_tensor *n) { // {x, stats, affine}
  need_float(n, 0);
  int64_t c = last_dim(n->src[0]);
  need_pair(n, 1, c);
  need_pair(n, 2, c);
  if (n->p.bn.batch_stats && n->src[1]->op != EF_OP_BN_STATS && n->src[1]->op != EF_OP_SYNC_STATS)
    bad_node(n, "batch statistics must come from bn_stats (or sync_stats)");
  set_shape(n, n->src[0]->dtype, n->src[0]->ndim, n->src[0]->shape);
}

static void infer_bn_bwd_reduce(ef_tensor *n) { // {dy, x, stats, affine}
  need_same(n, 0, 1);
  int64_t c = last_dim(n->src[1]);
  need_pair(n, 2, c);
  need_pair(n, 3, c);
  set_shape(n, EF_F32, 2, (int64_t[]){2, c});
}

static void infer_bn_bwd_data(ef_tensor *n) { // {dy, x, stats, affine, [reduce]}
  need_same(n, 0, 1);
  int64_t c = last_dim(n->src[1]);
  need_pair(n, 2, c);
  need_pair(n, 3, c);
  if (n->p.bn.batch_stats && n->n_src != 5) bad_node(n, "batch statistics need the reduction");
  if (n->n_src == 5) need_pair(n, 4, c);
  set_shape(n, n->src[0]->dtype, n->src[1]->ndim, n->src[1]->shape);
}

static void backward_bn(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0], *stats = n->src[1], *affine = n->src[2];
  bool batch = n->p.bn.batch_stats;
  // The gradient through the batch statistics is part of BN_BWD_DATA, so bn_stats gets none.
  ef_tensor *red = NULL;
  if (affine->requires_grad || (batch && x->requires_grad)) {
    red = ef_node_new(g, EF_OP_BN_BWD_REDUCE, 4, (ef_tensor *[]){dy, x, stats, affine}, &n->p, 0, NULL);
    if (affine->requires_grad) ef_grad_add(g, affine, red);
  }
  if (x->requires_grad) {
    // Statistics over a group of ranks: the input gradient needs the group's sums (averaged, so
    // that this rank's row count still divides them); the affine keeps this rank's own, which
    // the data-parallel all-reduce averages like every other gradient.
    ef_tensor *sums =
        batch && stats->op == EF_OP_SYNC_STATS ? ef_node_new(g, EF_OP_SYNC_MEAN, 1, &red, &stats->p, 0, NULL) : red;
    ef_tensor *src[5] = {dy, x, stats, affine, sums};
    ef_grad_add(g, x, ef_node_new(g, EF_OP_BN_BWD_DATA, batch ? 5 : 4, src, &n->p, 0, NULL));
  }
}

static void infer_bn_update(ef_tensor *n) { // {running, stats}
  int64_t c = n->src[1]->shape[1];
  need_pair(n, 0, c);
  need_pair(n, 1, c);
  if (n->src[0]->mem != EF_MEM_STATE) bad_node(n, "running statistics must be store state");
  if (n->src[1]->op != EF_OP_BN_STATS && n->src[1]->op != EF_OP_SYNC_STATS)
    bad_node(n, "needs batch statistics from bn_stats (or sync_stats)");
  if (!(n->p.bn_update.momentum > 0 && n->p.bn_update.momentum <= 1)) bad_node(n, "momentum must be in (0, 1]");
  set_shape(n, EF_F32, 2, n->src[0]->shape);
}

// ---- elementwise -------------------------------------------------------------------------

static void infer_same_as_src0(ef_tensor *n) {
  need_float(n, 0);
  for (int i = 1; i < n->n_src; i++) {
    need_same(n, 0, i);
    if (n->src[i]->dtype != n->src[0]->dtype) bad_node(n, "sources 0 and %d differ in type", i);
  }
  set_shape(n, n->src[0]->dtype, n->src[0]->ndim, n->src[0]->shape);
}

static void infer_act(ef_tensor *n) {
  if (n->p.act.act <= EF_ACT_NONE || n->p.act.act >= EF_ACT_COUNT) bad_node(n, "unknown activation");
  infer_same_as_src0(n);
}

static void backward_act(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0];
  ef_grad_add(g, x, ef_node_new(g, EF_OP_ACT_BWD, 2, (ef_tensor *[]){dy, x}, &n->p, 0, NULL));
}

static void backward_add(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  for (int i = 0; i < 2; i++)
    if (n->src[i]->requires_grad) ef_grad_add(g, n->src[i], dy);
}

static void infer_channel_mul(ef_tensor *n) { // {x (N,H,W,C), s (N,1,1,C), [d (N,1,1,C)]}
  need_ndim(n, 0, 4);
  need_float(n, 0);
  const int64_t *x = n->src[0]->shape;
  for (int k = 1; k < n->n_src; k++) {
    need_ndim(n, k, 4);
    need_float(n, k);
    const int64_t *s = n->src[k]->shape;
    if (s[0] != x[0] || s[1] != 1 || s[2] != 1 || s[3] != x[3]) bad_node(n, "scale and addend must be (N,1,1,C)");
  }
  set_shape(n, n->src[0]->dtype, 4, x);
}

// x is also pooled (a GAP reads it): squeeze-excite's input, whose pooling path's gradient the
// GAP's backward rule folds into this one's node.
static bool pooled(const ef_graph *g, const ef_tensor *x) {
  for (int i = x->id + 1; i < g->n; i++)
    if (g->nodes[i]->op == EF_OP_GAP && g->nodes[i]->src[0] == x && g->nodes[i]->requires_grad) return true;
  return false;
}

static void backward_channel_mul(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0], *s = n->src[1];
  if (x->requires_grad && (n->n_src == 3 || !pooled(g, x) || !ef_grad_hold_scale(g, x, dy, s)))
    ef_grad_add(g, x, ef_node_new(g, EF_OP_CHANNEL_MUL, 2, (ef_tensor *[]){dy, s}, NULL, 0, NULL));
  if (s->requires_grad)
    ef_grad_add(g, s, ef_node_new(g, EF_OP_CHANNEL_MUL_BWD_S, 2, (ef_tensor *[]){dy, x}, NULL, 0, NULL));
  if (n->n_src == 3 && n->src[2]->requires_grad) // d / (H*W) spread: its gradient is dy's mean over H,W
    ef_grad_add(g, n->src[2], ef_node_new(g, EF_OP_GAP, 1, &dy, NULL, 0, NULL));
}

static void infer_channel_mul_bwd_s(ef_tensor *n) {
  need_ndim(n, 0, 4);
  need_same(n, 0, 1);
  const int64_t *x = n->src[1]->shape;
  set_shape(n, n->src[0]->dtype, 4, (int64_t[]){x[0], 1, 1, x[3]});
}

static void infer_gap(ef_tensor *n) {
  need_ndim(n, 0, 4);
  need_float(n, 0);
  const int64_t *x = n->src[0]->shape;
  set_shape(n, n->src[0]->dtype, 4, (int64_t[]){x[0], 1, 1, x[3]});
}

// With the scale path's dy_s * s held back (backward_channel_mul), both paths of x's gradient in one
// node, dy_s * s + dy / (H*W): one pass over (N,H,W,C) where a CHANNEL_MUL, a GAP_BWD and an ADD
// took three.
static void backward_gap(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0], *dy_s, *s;
  if (ef_grad_take_scale(g, x, &dy_s, &s)) {
    ef_grad_add(g, x, ef_node_new(g, EF_OP_CHANNEL_MUL, 3, (ef_tensor *[]){dy_s, s, dy}, NULL, 0, NULL));
    return;
  }
  ef_grad_add(g, x, ef_node_new(g, EF_OP_GAP_BWD, 1, &dy, NULL, x->ndim, x->shape));
}

static void infer_gap_bwd(ef_tensor *n) { // node shape preset to x's
  const int64_t *d = n->src[0]->shape;
  if (n->ndim != 4 || n->src[0]->ndim != 4 || d[0] != n->shape[0] || d[1] != 1 || d[2] != 1 || d[3] != n->shape[3])
    bad_node(n, "dy must be (N,1,1,C) of the input");
  n->dtype = n->src[0]->dtype;
}

// ---- matrix products ---------------------------------------------------------------------

static void infer_linear(ef_tensor *n) { // {x (...,I), w (O,I), [b (O)]}
  need_float(n, 0);
  need_ndim(n, 1, 2);
  need_float(n, 1);
  const ef_tensor *x = n->src[0], *w = n->src[1];
  if (x->ndim < 2 || last_dim(x) != w->shape[1])
    bad_node(n, "x (...,%lld) must end in the weight's input size", (long long)w->shape[1]);
  if (n->n_src == 3 && (n->src[2]->ndim != 1 || n->src[2]->shape[0] != w->shape[0])) bad_node(n, "bias must be (O)");
  set_shape(n, x->dtype, x->ndim, x->shape);
  n->shape[n->ndim - 1] = w->shape[0];
}

static void infer_linear_bwd_data(ef_tensor *n) { // {dy (...,O), w (O,I)}
  need_ndim(n, 1, 2);
  const ef_tensor *dy = n->src[0], *w = n->src[1];
  if (last_dim(dy) != w->shape[0]) bad_node(n, "dy must end in the weight's output size");
  set_shape(n, dy->dtype, dy->ndim, dy->shape);
  n->shape[n->ndim - 1] = w->shape[1];
}

static void infer_linear_bwd_weight(ef_tensor *n) { // {dy (...,O), x (...,I)}
  const ef_tensor *dy = n->src[0], *x = n->src[1];
  if (ef_numel(dy) / last_dim(dy) != ef_numel(x) / last_dim(x)) bad_node(n, "dy and x differ in rows");
  set_shape(n, EF_F32, 2, (int64_t[]){last_dim(dy), last_dim(x)});
}

static void backward_linear(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0], *w = n->src[1];
  if (x->requires_grad)
    ef_grad_add(g, x, ef_node_new(g, EF_OP_LINEAR_BWD_DATA, 2, (ef_tensor *[]){dy, w}, NULL, 0, NULL));
  if (w->requires_grad)
    ef_grad_add(g, w, ef_node_new(g, EF_OP_LINEAR_BWD_WEIGHT, 2, (ef_tensor *[]){dy, x}, NULL, 0, NULL));
  if (n->n_src == 3 && n->src[2]->requires_grad)
    ef_grad_add(g, n->src[2], ef_node_new(g, EF_OP_SUM_ROWS, 1, &dy, NULL, 0, NULL));
}

// y (...,O) from x (...,I), or dx (...,I) from dy (...,O): each output element sums src[0]'s width.
static int64_t macs_linear(const ef_tensor *n) { return ef_numel(n) * last_dim(n->src[0]); }
// dw (O,I), summed over the rows of dy (...,O).
static int64_t macs_linear_bwd_weight(const ef_tensor *n) { return ef_numel(n) * (ef_numel(n->src[0]) / n->shape[0]); }

static void infer_sum_rows(ef_tensor *n) {
  need_float(n, 0);
  set_shape(n, EF_F32, 1, (int64_t[]){last_dim(n->src[0])});
}

// ---- dropout -------------------------------------------------------------------------------

static void infer_dropout(ef_tensor *n) {
  if (!(n->p.dropout.rate >= 0 && n->p.dropout.rate < 1)) bad_node(n, "rate must be in [0, 1)");
  infer_same_as_src0(n);
}

// The mask is a function of (seed, stream, step, index): the backward recomputes it.
static void backward_dropout(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_grad_add(g, n->src[0], ef_node_new(g, EF_OP_DROPOUT, 1, &dy, &n->p, 0, NULL));
}

// ---- losses and reductions ---------------------------------------------------------------

// The targets are class indices, i32 (N), smoothed by p.ce.smoothing, or probabilities, f32 (N,K)
// (Mixup's and CutMix's soft targets, smoothing folded in: p.ce.smoothing must be 0).
static void check_logits_labels(const ef_tensor *n, int li) {
  const ef_tensor *logits = n->src[li], *labels = n->src[li + 1];
  if (logits->ndim != 2) bad_node(n, "logits must be (N,K)");
  need_float(n, li);
  bool hard = labels->ndim == 1 && labels->dtype == EF_I32 && labels->shape[0] == logits->shape[0];
  bool soft = labels->ndim == 2 && labels->dtype == EF_F32 && labels->shape[0] == logits->shape[0] &&
              labels->shape[1] == logits->shape[1];
  if (!hard && !soft) bad_node(n, "targets must be labels, i32 (N), or probabilities, f32 (N,K)");
  if (!(n->p.ce.smoothing >= 0 && n->p.ce.smoothing < 1)) bad_node(n, "label smoothing must be in [0, 1)");
  if (soft && n->p.ce.smoothing != 0) bad_node(n, "soft targets carry their own smoothing");
}

static const int64_t scalar_shape[1] = {1};

static void infer_softmax_ce(ef_tensor *n) {
  check_logits_labels(n, 0);
  set_shape(n, EF_F32, 1, scalar_shape);
}

static void backward_softmax_ce(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *src[3] = {dy, n->src[0], n->src[1]};
  ef_grad_add(g, n->src[0], ef_node_new(g, EF_OP_SOFTMAX_CE_BWD, 3, src, &n->p, 0, NULL));
}

static void infer_softmax_ce_bwd(ef_tensor *n) {
  if (ef_numel(n->src[0]) != 1) bad_node(n, "dloss must be a scalar");
  check_logits_labels(n, 1);
  set_shape(n, n->src[1]->dtype, 2, n->src[1]->shape);
}

static void infer_reduce(ef_tensor *n) {
  need_float(n, 0);
  set_shape(n, EF_F32, 1, scalar_shape);
}

static void backward_reduce(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0];
  ef_grad_add(g, x, ef_node_new(g, EF_OP_BROADCAST, 1, &dy, &n->p, x->ndim, x->shape));
}

static void infer_broadcast(ef_tensor *n) { // node shape preset
  if (ef_numel(n->src[0]) != 1 || n->ndim < 1) bad_node(n, "broadcasts a scalar to a given shape");
  n->dtype = EF_F32;
}

static void infer_fill(ef_tensor *n) {
  if (n->ndim < 1) bad_node(n, "needs a shape");
}

// ---- storage -------------------------------------------------------------------------------

static void infer_reshape(ef_tensor *n) { // node shape preset
  int64_t numel = 1;
  for (int i = 0; i < n->ndim; i++) numel *= n->shape[i];
  if (n->ndim < 1 || numel != ef_numel(n->src[0])) bad_node(n, "reshape must keep the element count");
  n->dtype = n->src[0]->dtype;
}

static void backward_reshape(ef_graph *g, ef_tensor *n, ef_tensor *dy) {
  ef_tensor *x = n->src[0];
  ef_grad_add(g, x, ef_reshape(g, dy, x->ndim, x->shape));
}

static void infer_sync(ef_tensor *n) {
  if (n->p.sync.group < 2) bad_node(n, "a group of %d ranks", (int)n->p.sync.group);
  if (n->op == EF_OP_SYNC_STATS && n->src[0]->op != EF_OP_BN_STATS) bad_node(n, "synchronizes bn_stats only");
  infer_same_as_src0(n);
}

static void infer_accum(ef_tensor *n) {
  if (n->src[0]->mem != EF_MEM_GRAD) bad_node(n, "accumulates into the gradient arena only");
  infer_same_as_src0(n);
}

// ---- the table -----------------------------------------------------------------------------

// Each row: name, sources (least, most), storage, shape inference, backward rule; then precision class,
// multiply-adds and profile class.
static const ef_op_desc op_table[] = {
    [EF_OP_LEAF] = {"leaf", 0, 0, EF_STORAGE_OWN, NULL, NULL, EF_PREC_F32, NULL, EF_PROFILE_OTHER},
    [EF_OP_CONV2D] = {"conv2d", 2, 3, EF_STORAGE_OWN, infer_conv2d, backward_conv2d, EF_PREC_ACTIVATION, macs_conv2d,
                      EF_PROFILE_CONV},
    [EF_OP_CONV2D_BWD_DATA] = {"conv2d_bwd_data", 2, 2, EF_STORAGE_OWN, infer_conv2d_bwd_data, NULL, EF_PREC_ACTIVATION,
                               macs_conv2d_bwd_data, EF_PROFILE_CONV},
    [EF_OP_CONV2D_BWD_WEIGHT] = {"conv2d_bwd_weight", 2, 2, EF_STORAGE_OWN, infer_conv2d_bwd_weight, NULL,
                                 EF_PREC_WITH_ALL, macs_conv2d_bwd_weight, EF_PROFILE_CONV},
    [EF_OP_CONV2D_BN] = {"conv2d_bn", 4, 5, EF_STORAGE_OWN, infer_conv2d_bn, NULL, EF_PREC_ACTIVATION, macs_conv2d,
                         EF_PROFILE_CONV},
    [EF_OP_EXPAND_DW] = {"expand_dw", 7, 7, EF_STORAGE_OWN, infer_expand_dw, NULL, EF_PREC_ACTIVATION, macs_expand_dw,
                         EF_PROFILE_CONV},
    [EF_OP_BN_STATS] = {"bn_stats", 1, 1, EF_STORAGE_OWN, infer_bn_stats, NULL, EF_PREC_F32, NULL, EF_PROFILE_BN_ACT},
    [EF_OP_BN] = {"bn", 3, 3, EF_STORAGE_REUSE, infer_bn, backward_bn, EF_PREC_ACTIVATION, NULL, EF_PROFILE_BN_ACT},
    [EF_OP_BN_BWD_REDUCE] = {"bn_bwd_reduce", 4, 4, EF_STORAGE_OWN, infer_bn_bwd_reduce, NULL, EF_PREC_F32, NULL,
                             EF_PROFILE_BN_ACT},
    [EF_OP_BN_BWD_DATA] = {"bn_bwd_data", 4, 5, EF_STORAGE_REUSE, infer_bn_bwd_data, NULL, EF_PREC_ACTIVATION, NULL,
                           EF_PROFILE_BN_ACT},
    [EF_OP_BN_UPDATE] = {"bn_update", 2, 2, EF_STORAGE_INPLACE, infer_bn_update, NULL, EF_PREC_F32, NULL,
                         EF_PROFILE_BN_ACT},
    [EF_OP_SYNC_STATS] = {"sync_stats", 1, 1, EF_STORAGE_OWN, infer_sync, NULL, EF_PREC_F32, NULL, EF_PROFILE_OTHER},
    [EF_OP_SYNC_MEAN] = {"sync_mean", 1, 1, EF_STORAGE_OWN, infer_sync, NULL, EF_PREC_F32, NULL, EF_PROFILE_OTHER},
    [EF_OP_ACT] = {"act", 1, 1, EF_STORAGE_REUSE, infer_act, backward_act, EF_PREC_ACTIVATION, NULL, EF_PROFILE_BN_ACT},
    [EF_OP_ACT_BWD] = {"act_bwd", 2, 2, EF_STORAGE_REUSE, infer_act, NULL, EF_PREC_ACTIVATION, NULL, EF_PROFILE_BN_ACT},
    [EF_OP_ADD] = {"add", 2, 2, EF_STORAGE_REUSE, infer_same_as_src0, backward_add, EF_PREC_ACTIVATION, NULL,
                   EF_PROFILE_OTHER},
    [EF_OP_CHANNEL_MUL] = {"channel_mul", 2, 3, EF_STORAGE_REUSE, infer_channel_mul, backward_channel_mul,
                           EF_PREC_ACTIVATION, NULL, EF_PROFILE_OTHER},
    [EF_OP_CHANNEL_MUL_BWD_S] = {"channel_mul_bwd_s", 2, 2, EF_STORAGE_OWN, infer_channel_mul_bwd_s, NULL,
                                 EF_PREC_WITH_ALL, NULL, EF_PROFILE_OTHER},
    [EF_OP_GAP] = {"gap", 1, 1, EF_STORAGE_OWN, infer_gap, backward_gap, EF_PREC_WITH_ALL, NULL, EF_PROFILE_OTHER},
    [EF_OP_GAP_BWD] = {"gap_bwd", 1, 1, EF_STORAGE_OWN, infer_gap_bwd, NULL, EF_PREC_ACTIVATION, NULL,
                       EF_PROFILE_OTHER},
    [EF_OP_LINEAR] = {"linear", 2, 3, EF_STORAGE_OWN, infer_linear, backward_linear, EF_PREC_WITH_ALL, macs_linear,
                      EF_PROFILE_OTHER},
    [EF_OP_LINEAR_BWD_DATA] = {"linear_bwd_data", 2, 2, EF_STORAGE_OWN, infer_linear_bwd_data, NULL, EF_PREC_WITH_ALL,
                               macs_linear, EF_PROFILE_OTHER},
    [EF_OP_LINEAR_BWD_WEIGHT] = {"linear_bwd_weight", 2, 2, EF_STORAGE_OWN, infer_linear_bwd_weight, NULL,
                                 EF_PREC_WITH_ALL, macs_linear_bwd_weight, EF_PROFILE_OTHER},
    [EF_OP_SUM_ROWS] = {"sum_rows", 1, 1, EF_STORAGE_OWN, infer_sum_rows, NULL, EF_PREC_WITH_ALL, NULL,
                        EF_PROFILE_OTHER},
    [EF_OP_DROPOUT] = {"dropout", 1, 1, EF_STORAGE_REUSE, infer_dropout, backward_dropout, EF_PREC_ACTIVATION, NULL,
                       EF_PROFILE_OTHER},
    [EF_OP_SOFTMAX_CE] = {"softmax_ce", 2, 2, EF_STORAGE_OWN, infer_softmax_ce, backward_softmax_ce, EF_PREC_WITH_ALL,
                          NULL, EF_PROFILE_OTHER},
    [EF_OP_SOFTMAX_CE_BWD] = {"softmax_ce_bwd", 3, 3, EF_STORAGE_OWN, infer_softmax_ce_bwd, NULL, EF_PREC_WITH_ALL,
                              NULL, EF_PROFILE_OTHER},
    [EF_OP_REDUCE] = {"reduce", 1, 1, EF_STORAGE_OWN, infer_reduce, backward_reduce, EF_PREC_WITH_ALL, NULL,
                      EF_PROFILE_OTHER},
    [EF_OP_BROADCAST] = {"broadcast", 1, 1, EF_STORAGE_OWN, infer_broadcast, NULL, EF_PREC_WITH_ALL, NULL,
                         EF_PROFILE_OTHER},
    [EF_OP_FILL] = {"fill", 0, 0, EF_STORAGE_OWN, infer_fill, NULL, EF_PREC_WITH_ALL, NULL, EF_PROFILE_OTHER},
    [EF_OP_RESHAPE] = {"reshape", 1, 1, EF_STORAGE_VIEW, infer_reshape, backward_reshape, EF_PREC_SOURCE, NULL,
                       EF_PROFILE_OTHER},
    [EF_OP_ACCUM] = {"accum", 2, 2, EF_STORAGE_INPLACE, infer_accum, NULL, EF_PREC_F32, NULL, EF_PROFILE_OTHER},
};
_Static_assert(sizeof op_table / sizeof op_table[0] == EF_OP_COUNT, "op_table must list every op");

double ef_bn_update_bessel(const ef_tensor *update) {
  const ef_tensor *st = update->src[1];
  int64_t group = st->op == EF_OP_SYNC_STATS ? st->p.sync.group : 1;
  const ef_tensor *local = st->op == EF_OP_SYNC_STATS ? st->src[0] : st;
  int64_t rows = ef_rows(local->src[0]) * group;
  return rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
}

void ef_sync_stats_combine(void (*group_mean)(void *group, float *buf, size_t n), void *group, const float *own,
                           float *out, size_t c) {
  memcpy(out, own, sizeof(float) * c);
  group_mean(group, out, c);
  for (size_t k = 0; k < c; k++) {
    float d = own[k] - out[k];
    out[c + k] = own[c + k] + d * d;
  }
  group_mean(group, out + c, c);
}

void ef_op_table_check(void) {
  for (int i = 0; i < EF_OP_COUNT; i++) {
    const ef_op_desc *d = &op_table[i];
    if (!d->name || (i != EF_OP_LEAF && !d->infer) || d->min_src > d->max_src || d->max_src > EF_MAX_SRC)
      EF_FATAL("op table entry %d is incomplete", i);
    if (d->storage == EF_STORAGE_VIEW && d->precision != EF_PREC_SOURCE)
      EF_FATAL("op %s: a view must take its source's type (EF_PREC_SOURCE)", d->name);
  }
}

const ef_op_desc *ef_op_get(ef_op op) {
  EF_ASSERT(op >= 0 && op < EF_OP_COUNT, "op %d", (int)op);
  return &op_table[op];
}

int64_t ef_node_macs(const ef_tensor *t) {
  const ef_op_desc *d = ef_op_get(t->op);
  return d->macs ? d->macs(t) : 0;
}

ef_kind ef_node_kind(const ef_tensor *t) {
  if (t->scope && !strcmp(t->scope, EF_SCOPE_SE)) return EF_KIND_SE;
  if (t->scope && !strcmp(t->scope, EF_SCOPE_CLASSIFIER)) return EF_KIND_CLASSIFIER;
  switch (ef_op_get(t->op)->profile) {
  case EF_PROFILE_BN_ACT: return EF_KIND_BN_ACT;
  case EF_PROFILE_OTHER: return EF_KIND_OTHER;
  case EF_PROFILE_CONV: break;
  }
  if (t->op == EF_OP_EXPAND_DW) return EF_KIND_EXPAND_DW;
  const ef_tensor *w = t->op == EF_OP_CONV2D_BWD_WEIGHT ? t : t->src[1]; // (O,KH,KW,C/groups)
  if (t->p.conv.groups > 1) return EF_KIND_DEPTHWISE;
  return w->shape[1] * w->shape[2] == 1 ? EF_KIND_CONV1X1 : EF_KIND_OTHER;
}

const char *ef_kind_name(ef_kind kind) {
  static const char *const names[EF_KIND_COUNT] = {
      [EF_KIND_CONV1X1] = "1x1 conv",        [EF_KIND_DEPTHWISE] = "depthwise conv",
      [EF_KIND_EXPAND_DW] = "1x1+depthwise", [EF_KIND_BN_ACT] = "BN+activation",
      [EF_KIND_SE] = "squeeze-excite",       [EF_KIND_CLASSIFIER] = "classifier",
      [EF_KIND_OPTIMIZER] = "optimizer",     [EF_KIND_OTHER] = "other",
      [EF_KIND_DATA] = "data (waiting)",
  };
  EF_ASSERT(kind >= 0 && kind < EF_KIND_COUNT && names[kind], "profile kind %d", (int)kind);
  return names[kind];
}

int64_t ef_node_bytes(const ef_tensor *t) {
  if (t->op == EF_OP_LEAF || ef_op_get(t->op)->storage == EF_STORAGE_VIEW) return 0;
  int64_t bytes = (int64_t)ef_nbytes(t);
  for (int i = 0; i < t->n_src; i++) bytes += (int64_t)ef_nbytes(t->src[i]);
  return bytes;
}

const char *ef_op_name(ef_op op) { return ef_op_get(op)->name; }

const char *ef_act_name(ef_act act) {
  static const char *names[EF_ACT_COUNT] = {"none", "swish", "sigmoid", "relu", "relu6"};
  EF_ASSERT(act >= 0 && act < EF_ACT_COUNT, "activation %d", (int)act);
  return names[act];
}
