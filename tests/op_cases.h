// The op cases shared by the op tests: each op on odd shapes (inputs, their ranges, which need a
// gradient), how to build it, and its naive float64 reference. tests/test_ops.c checks the CPU
// backend against the references; tests/gpu/test_cuda_ops.c checks the CUDA backend against the CPU.
#ifndef EF_TESTS_OP_CASES_H
#define EF_TESTS_OP_CASES_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/graph.h"
#include "core/philox.h"
#include "tests/harness.h"

#define SEED 1234
#define STEP 7
#define MAX_IN EF_MAX_SRC // inputs a case has at most

typedef enum { IN_INPUT, IN_PARAM, IN_STATE } in_kind;

typedef struct {
  const char *name;
  in_kind kind;
  ef_dtype dtype;
  int ndim;
  int64_t shape[4];
  bool grad;    // differentiate with respect to it
  float lo, hi; // value range; labels are integers in [0, hi)
  float avoid;  // keep values this far from the kinks of ReLU/ReLU6 at 0 and 6
} in_spec;

struct op_case;
typedef struct {
  const double *in[MAX_IN];
  ef_tensor *t[MAX_IN]; // shapes of the inputs
  const ef_tensor *out;
  double *y; // to fill, ef_numel(out) values
} ref_io;

typedef struct op_case {
  const char *name;
  int n_in;
  in_spec in[MAX_IN];
  ef_tensor *(*build)(ef_graph *g, ef_tensor **in, const struct op_case *c);
  void (*ref)(const ref_io *io, const struct op_case *c);
  int stride, dilation, groups;
  ef_padding pad;
  ef_act act;
  float eps, rate, smoothing, value; // value: fill's
  bool flag;                         // bn: batch statistics; dropout: per sample; reduce: mean
  int ndim2;                         // reshape's and fill's shape
  int64_t shape2[4];
  bool cpu_only; // a CPU fusion (ef_fusion) that CUDA's graphs never hold: no GPU kernel to check
} op_case;

static int64_t spec_numel(const in_spec *s) {
  int64_t n = 1;
  for (int i = 0; i < s->ndim; i++) n *= s->shape[i];
  return n;
}

// The values of a case's input i: Philox (seed, stream i) uniforms in [lo, hi), pushed out of
// (k - avoid, k + avoid) for the kinks k = 0 and 6 of ReLU/ReLU6; labels as int32 bits. dval
// (may be NULL) gets the same values in double.
static inline void op_case_input_seeded(const in_spec *s, int i, uint64_t seed, float *val, double *dval) {
  int64_t n = spec_numel(s);
  test_fill_uniform(val, n, seed, (uint32_t)i, s->lo, s->hi);
  for (int64_t j = 0; j < n; j++) {
    float v = val[j];
    if (s->avoid > 0)
      for (float k = 0; k <= 6; k += 6)
        if (fabsf(v - k) < s->avoid) v = v < k ? k - s->avoid : k + s->avoid;
    if (s->dtype == EF_I32) {
      int32_t lab = (int32_t)v;
      memcpy(&val[j], &lab, 4);
      if (dval) dval[j] = lab;
    } else {
      val[j] = v;
      if (dval) dval[j] = v;
    }
  }
}

// The inputs every op test uses: seed 99.
static inline void op_case_input(const in_spec *s, int i, float *val, double *dval) {
  op_case_input_seeded(s, i, 99, val, dval);
}

// ---- float64 references --------------------------------------------------------------------

static double ref_act(ef_act a, double x) {
  switch (a) {
  case EF_ACT_SWISH: return x / (1 + exp(-x));
  case EF_ACT_SIGMOID: return 1 / (1 + exp(-x));
  case EF_ACT_RELU: return x > 0 ? x : 0;
  case EF_ACT_RELU6: return x < 0 ? 0 : x > 6 ? 6 : x;
  default: return x;
  }
}

// Padding of one axis, written from the definitions: PyTorch pads d*(k-1)/2 on both sides;
// TF "SAME" makes out = ceil(in/s) and puts the extra pixel at the end.
static void ref_pad(ef_padding mode, int64_t in, int64_t k, int s, int d, int64_t *lo, int64_t *out) {
  int64_t span = d * (k - 1) + 1, hi;
  if (mode == EF_PAD_SYMMETRIC) {
    *lo = hi = (span - 1) / 2;
  } else {
    int64_t o = (in + s - 1) / s, total = (o - 1) * s + span - in;
    if (total < 0) total = 0;
    *lo = total / 2;
    hi = total - *lo;
  }
  *out = (in + *lo + hi - span) / s + 1;
}

static void ref_conv(const ref_io *io, const op_case *c) {
  const int64_t *xs = io->t[0]->shape, *ws = io->t[1]->shape, *ys = io->out->shape;
  int64_t pt, pl, oh, ow;
  ref_pad(c->pad, xs[1], ws[1], c->stride, c->dilation, &pt, &oh);
  ref_pad(c->pad, xs[2], ws[2], c->stride, c->dilation, &pl, &ow);
  CHECK(ys[0] == xs[0] && ys[1] == oh && ys[2] == ow && ys[3] == ws[0], "%s: output shape", c->name);
  int64_t cg = ws[3], og = ws[0] / c->groups;
  const double *x = io->in[0], *w = io->in[1], *b = c->n_in == 3 ? io->in[2] : NULL;
  for (int64_t n = 0; n < xs[0]; n++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++)
        for (int64_t o = 0; o < ws[0]; o++) {
          double acc = b ? b[o] : 0;
          int64_t g = o / og;
          for (int64_t ki = 0; ki < ws[1]; ki++)
            for (int64_t kj = 0; kj < ws[2]; kj++) {
              int64_t hi = i * c->stride - pt + ki * c->dilation, wi = j * c->stride - pl + kj * c->dilation;
              if (hi < 0 || hi >= xs[1] || wi < 0 || wi >= xs[2]) continue;
              for (int64_t ci = 0; ci < cg; ci++)
                acc += x[((n * xs[1] + hi) * xs[2] + wi) * xs[3] + g * cg + ci] *
                       w[((o * ws[1] + ki) * ws[2] + kj) * cg + ci];
            }
          io->y[((n * oh + i) * ow + j) * ws[0] + o] = acc;
        }
}

// inputs: x, then (training) affine, or (running statistics) stats, affine.
static void ref_bn(const ref_io *io, const op_case *c) {
  const ef_tensor *xt = io->t[0];
  int64_t ch = xt->shape[xt->ndim - 1], rows = ef_numel(xt) / ch;
  const double *x = io->in[0], *affine = io->in[c->flag ? 1 : 2];
  for (int64_t k = 0; k < ch; k++) {
    double mean, var;
    if (c->flag) {
      double s = 0, q = 0;
      for (int64_t r = 0; r < rows; r++) s += x[r * ch + k];
      mean = s / rows;
      for (int64_t r = 0; r < rows; r++) q += (x[r * ch + k] - mean) * (x[r * ch + k] - mean);
      var = q / rows;
    } else {
      mean = io->in[1][k], var = io->in[1][ch + k];
    }
    for (int64_t r = 0; r < rows; r++)
      io->y[r * ch + k] = ref_act(c->act, (x[r * ch + k] - mean) / sqrt(var + c->eps) * affine[k] + affine[ch + k]);
  }
}

static void ref_act_op(const ref_io *io, const op_case *c) {
  for (int64_t i = 0; i < ef_numel(io->out); i++) io->y[i] = ref_act(c->act, io->in[0][i]);
}

static void ref_add(const ref_io *io, const op_case *c) {
  for (int64_t i = 0; i < ef_numel(io->out); i++) io->y[i] = io->in[0][i] + io->in[1][i];
}

static void ref_channel_mul(const ref_io *io, const op_case *c) {
  const int64_t *s = io->t[0]->shape;
  for (int64_t i = 0; i < ef_numel(io->out); i++)
    io->y[i] = io->in[0][i] * io->in[1][(i / (s[1] * s[2] * s[3])) * s[3] + i % s[3]];
}

// x * s + d / (H*W), s and d (N,1,1,C): channel_mul with an addend.
static void ref_channel_mul_add(const ref_io *io, const op_case *c) {
  const int64_t *s = io->t[0]->shape;
  int64_t hwc = s[1] * s[2] * s[3];
  for (int64_t i = 0; i < ef_numel(io->out); i++) {
    int64_t nc = (i / hwc) * s[3] + i % s[3];
    io->y[i] = io->in[0][i] * io->in[1][nc] + io->in[2][nc] / (double)(s[1] * s[2]);
  }
}

// The squeeze-excite pattern x * sigmoid(mean over H,W of x): x's gradient has both paths.
static void ref_se(const ref_io *io, const op_case *c) {
  const int64_t *s = io->t[0]->shape;
  int64_t hw = s[1] * s[2];
  for (int64_t n = 0; n < s[0]; n++)
    for (int64_t k = 0; k < s[3]; k++) {
      double m = 0;
      for (int64_t p = 0; p < hw; p++) m += io->in[0][(n * hw + p) * s[3] + k];
      double sig = 1 / (1 + exp(-m / (double)hw));
      for (int64_t p = 0; p < hw; p++) io->y[(n * hw + p) * s[3] + k] = io->in[0][(n * hw + p) * s[3] + k] * sig;
    }
}

static void ref_gap(const ref_io *io, const op_case *c) {
  const int64_t *s = io->t[0]->shape;
  CHECK(io->out->shape[1] == 1 && io->out->shape[2] == 1 && io->out->shape[3] == s[3], "%s: output shape", c->name);
  for (int64_t n = 0; n < s[0]; n++)
    for (int64_t k = 0; k < s[3]; k++) {
      double acc = 0;
      for (int64_t p = 0; p < s[1] * s[2]; p++) acc += io->in[0][(n * s[1] * s[2] + p) * s[3] + k];
      io->y[n * s[3] + k] = acc / (double)(s[1] * s[2]);
    }
}

static void ref_linear(const ref_io *io, const op_case *c) {
  const ef_tensor *x = io->t[0], *w = io->t[1];
  int64_t in = w->shape[1], out = w->shape[0], rows = ef_numel(x) / in;
  CHECK(ef_numel(io->out) == rows * out, "%s: output shape", c->name);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double acc = c->n_in == 3 ? io->in[2][o] : 0;
      for (int64_t i = 0; i < in; i++) acc += io->in[0][r * in + i] * io->in[1][o * in + i];
      io->y[r * out + o] = acc;
    }
}

// The mask of the graph's k-th dropout: element i (or sample n) kept when Philox word i (n) of
// (SEED, dropout stream k, STEP) gives a uniform >= rate.
static void dropout_mask(const double *x, double *y, int64_t n, int64_t per, const op_case *c, uint32_t k) {
  for (int64_t i = 0; i < n; i++) {
    double u = ef_philox_uniform(SEED, ef_rng_stream(EF_RNG_DROPOUT, k), STEP, (uint64_t)(c->flag ? i / per : i));
    y[i] = u >= c->rate ? x[i] / (1.0 - c->rate) : 0.0;
  }
}

static void ref_dropout(const ref_io *io, const op_case *c) {
  int64_t n = ef_numel(io->out);
  dropout_mask(io->in[0], io->y, n, n / io->out->shape[0], c, 0);
}

// Two dropouts in a row must draw different masks (streams 0 and 1).
static void ref_dropout2(const ref_io *io, const op_case *c) {
  int64_t n = ef_numel(io->out);
  double *mid = malloc(sizeof(double) * (size_t)n);
  dropout_mask(io->in[0], mid, n, n / io->out->shape[0], c, 0);
  dropout_mask(mid, io->y, n, n / io->out->shape[0], c, 1);
  free(mid);
}

static void ref_softmax_ce(const ref_io *io, const op_case *c) {
  int64_t n = io->t[0]->shape[0], k = io->t[0]->shape[1];
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    const double *z = io->in[0] + i * k;
    bool soft = io->t[1]->ndim == 2; // probabilities (N,K), else labels (N)
    int y = soft ? -1 : (int)io->in[1][i];
    double sum = 0;
    for (int64_t j = 0; j < k; j++) sum += exp(z[j]);
    for (int64_t j = 0; j < k; j++) {
      double t = soft ? io->in[1][i * k + j] : c->smoothing / k + (j == y ? 1 - c->smoothing : 0);
      total -= t * (z[j] - log(sum));
    }
  }
  io->y[0] = total / n;
}

static void ref_reduce(const ref_io *io, const op_case *c) {
  int64_t n = ef_numel(io->t[0]);
  double acc = 0;
  for (int64_t i = 0; i < n; i++) acc += io->in[0][i];
  io->y[0] = c->flag ? acc / n : acc;
}

static void ref_copy(const ref_io *io, const op_case *c) {
  for (int64_t i = 0; i < ef_numel(io->out); i++) io->y[i] = io->in[0][i];
}

static void ref_fill(const ref_io *io, const op_case *c) {
  for (int64_t i = 0; i < ef_numel(io->out); i++) io->y[i] = c->value;
}

// inputs: x, w, running statistics (2,O), affine (2,O): the convolution, then batch norm and act.
static void ref_conv_bn(const ref_io *io, const op_case *c) {
  ref_conv(io, c);
  int64_t o = io->out->shape[3], rows = ef_numel(io->out) / o;
  const double *stats = io->in[2], *affine = io->in[3];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < o; k++) {
      double *y = &io->y[r * o + k];
      *y = ref_act(c->act, (*y - stats[k]) / sqrt(stats[o + k] + c->eps) * affine[k] + affine[o + k]);
    }
}

// inputs: x, w, running statistics, affine, gate (N,1,1,C): ref_conv_bn of x * gate.
static void ref_conv_bn_gated(const ref_io *io, const op_case *c) {
  const ef_tensor *x = io->t[0];
  int64_t n = x->shape[0], hw = x->shape[1] * x->shape[2], ch = x->shape[3];
  double *xg = malloc(sizeof(double) * (size_t)(n * hw * ch));
  for (int64_t b = 0; b < n; b++)
    for (int64_t p = 0; p < hw; p++)
      for (int64_t k = 0; k < ch; k++)
        xg[(b * hw + p) * ch + k] = io->in[0][(b * hw + p) * ch + k] * io->in[4][b * ch + k];
  ref_io gated = *io;
  gated.in[0] = xg;
  ref_conv_bn(&gated, c);
  free(xg);
}

// inputs: x, w1, stats1, affine1, w2, stats2, affine2: ref_conv_bn of x by w1 (1x1), then of that
// by w2 (depthwise: the case's stride and padding).
static void ref_expand_dw(const ref_io *io, const op_case *c) {
  int64_t m = io->t[1]->shape[0];
  ef_tensor mid = *io->t[0]; // (N,H,W,M)
  mid.shape[3] = m;
  double *e = malloc(sizeof(double) * (size_t)ef_numel(&mid));
  op_case expand = *c, dw = *c;
  expand.n_in = dw.n_in = 4;
  expand.stride = expand.groups = 1, expand.pad = EF_PAD_SYMMETRIC;
  ref_conv_bn(
      &(ref_io){.in = {io->in[0], io->in[1], io->in[2], io->in[3]}, .t = {io->t[0], io->t[1]}, .out = &mid, .y = e},
      &expand);
  ref_conv_bn(&(ref_io){.in = {e, io->in[4], io->in[5], io->in[6]}, .t = {&mid, io->t[4]}, .out = io->out, .y = io->y},
              &dw);
  free(e);
}

// ---- builders --------------------------------------------------------------------------------

static ef_tensor *build_conv(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_conv2d(g, in[0], in[1], c->n_in == 3 ? in[2] : NULL, c->stride, c->dilation, c->groups, c->pad);
}
static ef_tensor *build_conv_bn(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_conv2d_bn(g, in[0], in[1], c->stride, c->groups, c->pad, in[2], in[3], c->eps, c->act);
}
static ef_tensor *build_conv_bn_gated(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_conv2d_bn_gated(g, in[0], in[4], in[1], in[2], in[3], c->eps, c->act);
}
static ef_tensor *build_expand_dw(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_expand_dw(g, in[0], in[1], in[2], in[3], in[4], c->stride, c->pad, in[5], in[6], c->eps, c->act);
}
static ef_tensor *build_bn(ef_graph *g, ef_tensor **in, const op_case *c) {
  if (c->flag) return ef_bn(g, in[0], ef_bn_stats(g, in[0]), in[1], c->eps, c->act, true);
  return ef_bn(g, in[0], in[1], in[2], c->eps, c->act, false);
}
static ef_tensor *build_act(ef_graph *g, ef_tensor **in, const op_case *c) { return ef_activate(g, in[0], c->act); }
static ef_tensor *build_add(ef_graph *g, ef_tensor **in, const op_case *c) { return ef_add(g, in[0], in[1]); }
static ef_tensor *build_channel_mul(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_channel_mul(g, in[0], in[1]);
}
static ef_tensor *build_channel_mul_add(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_node_new(g, EF_OP_CHANNEL_MUL, 3, in, NULL, 0, NULL); // backward rules build it
}
static ef_tensor *build_se(ef_graph *g, ef_tensor **in, const op_case *c) {
  ef_tensor *x = ef_activate(g, in[0], EF_ACT_RELU); // on positive inputs: x itself, but not a leaf (never held)
  return ef_channel_mul(g, x, ef_activate(g, ef_gap(g, x), EF_ACT_SIGMOID));
}
// A pooled x whose pool leads nowhere: the scale path's gradient, held for the pooling's backward
// rule, which never runs, is added at x's turn.
static ef_tensor *build_channel_mul_pool_unused(ef_graph *g, ef_tensor **in, const op_case *c) {
  ef_tensor *x = ef_activate(g, in[0], EF_ACT_RELU); // on positive inputs: x itself, but not a leaf (never held)
  ef_gap(g, x);
  return ef_channel_mul(g, x, in[1]);
}
static ef_tensor *build_gap(ef_graph *g, ef_tensor **in, const op_case *c) { return ef_gap(g, in[0]); }
static ef_tensor *build_linear(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_linear(g, in[0], in[1], c->n_in == 3 ? in[2] : NULL);
}
static ef_tensor *build_dropout(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_dropout(g, in[0], c->rate, c->flag);
}
static ef_tensor *build_dropout2(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_dropout(g, ef_dropout(g, in[0], c->rate, c->flag), c->rate, c->flag);
}
static ef_tensor *build_softmax_ce(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_softmax_ce(g, in[0], in[1], c->smoothing);
}
static ef_tensor *build_reduce(ef_graph *g, ef_tensor **in, const op_case *c) {
  return c->flag ? ef_mean(g, in[0]) : ef_sum(g, in[0]);
}
static ef_tensor *build_reshape(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_reshape(g, in[0], c->ndim2, c->shape2);
}
static ef_tensor *build_fill(ef_graph *g, ef_tensor **in, const op_case *c) {
  return ef_fill(g, c->ndim2, c->shape2, c->value);
}

#define X(...)                                                                                                         \
  { "x", IN_INPUT, EF_F32, __VA_ARGS__, true, -1, 1, 0 }
#define W(name, ...)                                                                                                   \
  { name, IN_PARAM, EF_F32, __VA_ARGS__, true, -1, 1, 0 }

// ---- the cases ---------------------------------------------------------------------------------

// A convolution case; n_in 3 adds a bias of the weights' output size.
// Shapes are parenthesized lists: (N,H,W,C) and (O,KH,KW,I/groups).
#define SHAPE(...)                                                                                                     \
  { __VA_ARGS__ }
#define FIRST(a, ...) a
#define FOURTH(a, b, c, d) d
#define CONV(nm, n_in, xs, ws, s, d, gr, pd)                                                                           \
  {                                                                                                                    \
    nm, n_in, {X(4, SHAPE xs), W("w", 4, SHAPE ws), W("b", 1, {FIRST ws})}, build_conv, ref_conv,                      \
        .stride = s, .dilation = d, .groups = gr, .pad = pd                                                            \
  }

// A convolution, no bias, differentiated in its weights only.
#define CONV_WGRAD(nm, xs, ws, s, gr, pd)                                                                              \
  {                                                                                                                    \
    nm, 2, {{"x", IN_INPUT, EF_F32, 4, SHAPE xs, false, -1, 1, 0}, W("w", 4, SHAPE ws)}, build_conv, ref_conv,         \
        .stride = s, .dilation = 1, .groups = gr, .pad = pd                                                            \
  }

// A convolution with its batch norm folded in: running statistics (mean and variance in [0.2, 3))
// and affine (gamma and beta in [0.5, 2)), none differentiated.
#define CONV_BN(nm, xs, ws, s, gr, pd, a)                                                                              \
  {                                                                                                                    \
    nm, 4,                                                                                                             \
        {{"x", IN_INPUT, EF_F32, 4, SHAPE xs, false, -1, 1, 0},                                                        \
         {"w", IN_PARAM, EF_F32, 4, SHAPE ws, false, -1, 1, 0},                                                        \
         {"running", IN_STATE, EF_F32, 2, {2, FIRST ws}, false, 0.2f, 3, 0},                                           \
         {"affine", IN_PARAM, EF_F32, 2, {2, FIRST ws}, false, 0.5f, 2, 0}},                                           \
        build_conv_bn, ref_conv_bn, .stride = s, .dilation = 1, .groups = gr, .pad = pd, .act = a, .eps = 1e-3f        \
  }

// The same, 1x1, with squeeze-excite's scale (N,1,1,C) in [0, 1) folded in (ef_conv2d_bn_gated).
#define CONV_BN_GATED(nm, xs, ws, a)                                                                                   \
  {                                                                                                                    \
    nm, 5,                                                                                                             \
        {{"x", IN_INPUT, EF_F32, 4, SHAPE xs, false, -1, 1, 0},                                                        \
         {"w", IN_PARAM, EF_F32, 4, SHAPE ws, false, -1, 1, 0},                                                        \
         {"running", IN_STATE, EF_F32, 2, {2, FIRST ws}, false, 0.2f, 3, 0},                                           \
         {"affine", IN_PARAM, EF_F32, 2, {2, FIRST ws}, false, 0.5f, 2, 0},                                            \
         {"gate", IN_INPUT, EF_F32, 4, {FIRST xs, 1, 1, FOURTH xs}, false, 0, 1, 0}},                                  \
        build_conv_bn_gated, ref_conv_bn_gated, .stride = 1, .dilation = 1, .groups = 1, .pad = EF_PAD_SYMMETRIC,      \
                                                .act = a, .eps = 1e-3f                                                 \
  }

// An MBConv block's expansion (1x1, xs's channels to m) and depthwise convolution (k x k, stride s),
// each with its batch norm folded in (ef_expand_dw), on the CPU only.
#define EXPAND_DW(nm, xs, m, k, s, pd, a)                                                                              \
  {                                                                                                                    \
    nm, 7,                                                                                                             \
        {{"x", IN_INPUT, EF_F32, 4, SHAPE xs, false, -1, 1, 0},                                                        \
         {"w1", IN_PARAM, EF_F32, 4, {m, 1, 1, FOURTH xs}, false, -1, 1, 0},                                           \
         {"running1", IN_STATE, EF_F32, 2, {2, m}, false, 0.2f, 3, 0},                                                 \
         {"affine1", IN_PARAM, EF_F32, 2, {2, m}, false, 0.5f, 2, 0},                                                  \
         {"w2", IN_PARAM, EF_F32, 4, {m, k, k, 1}, false, -1, 1, 0},                                                   \
         {"running2", IN_STATE, EF_F32, 2, {2, m}, false, 0.2f, 3, 0},                                                 \
         {"affine2", IN_PARAM, EF_F32, 2, {2, m}, false, 0.5f, 2, 0}},                                                 \
        build_expand_dw, ref_expand_dw, .stride = s, .dilation = 1, .groups = m, .pad = pd, .act = a, .eps = 1e-3f,    \
                                        .cpu_only = true                                                               \
  }

static const op_case cases[] = {
    CONV("conv 3x3 s1 symmetric, 5->6", 2, (2, 7, 7, 5), (6, 3, 3, 5), 1, 1, 1, EF_PAD_SYMMETRIC),
    CONV("conv 3x3 s2 same, odd asymmetric 8x7", 2, (2, 8, 7, 4), (8, 3, 3, 4), 2, 1, 1, EF_PAD_SAME),
    CONV("conv 3x3 s2 symmetric, odd 9x9", 2, (2, 9, 9, 4), (5, 3, 3, 4), 2, 1, 1, EF_PAD_SYMMETRIC),
    CONV("depthwise 5x5 s2 same, 9x10", 2, (2, 9, 10, 6), (6, 5, 5, 1), 2, 1, 6, EF_PAD_SAME),
    CONV("depthwise 3x3 s2 symmetric, batch 1", 2, (1, 7, 7, 10), (10, 3, 3, 1), 2, 1, 10, EF_PAD_SYMMETRIC),
    CONV("depthwise 3x3 s1 same, 11 channels", 2, (2, 6, 5, 11), (11, 3, 3, 1), 1, 1, 11, EF_PAD_SAME),
    // whole blocks of 16 channels: the CPU's filter gradient with its sums in registers (3x3, 5x5)
    CONV("depthwise 3x3 s2 same, 16 channels", 2, (2, 9, 8, 16), (16, 3, 3, 1), 2, 1, 16, EF_PAD_SAME),
    CONV("depthwise 5x5 s1 same, 32 channels", 2, (2, 7, 6, 32), (32, 5, 5, 1), 1, 1, 32, EF_PAD_SAME),
    CONV("pointwise 1x1 with bias, 7->9", 3, (3, 4, 5, 7), (9, 1, 1, 7), 1, 1, 1, EF_PAD_SYMMETRIC),
    CONV("pointwise 1x1 with bias, 243 rows", 3, (3, 9, 9, 7), (9, 1, 1, 7), 1, 1, 1, EF_PAD_SYMMETRIC),
    // At most 32 rows (squeeze-excite's on pooled values): the CPU's own pointwise kernel.
    CONV("pointwise 1x1 with bias, pooled, 40->20", 3, (6, 1, 1, 40), (20, 1, 1, 40), 1, 1, 1, EF_PAD_SYMMETRIC),
    // Over at most 8 rows from 16,384 weights on, the CPU's own kernel splits the output vectors over
    // its threads: 130 outputs are 9 vectors with AVX-512 (4 + 5), 17 with AVX2, the last one part.
    CONV("pointwise 1x1 with bias, pooled, 2 rows, 130->130", 3, (2, 1, 1, 130), (130, 1, 1, 130), 1, 1, 1,
         EF_PAD_SYMMETRIC),
    CONV("pointwise 1x1, 12 rows, 17->33", 2, (2, 2, 3, 17), (33, 1, 1, 17), 1, 1, 1, EF_PAD_SYMMETRIC),
    // Training's projections onto few channels (the CPU's own kernel, tiles of 8 rows by 2 vectors), and
    // expansions from few, whose data gradient is such a product.
    CONV("pointwise 1x1, 286 rows, 96->24", 2, (2, 13, 11, 96), (24, 1, 1, 96), 1, 1, 1, EF_PAD_SYMMETRIC),
    CONV("pointwise 1x1, 286 rows, 24->96", 2, (2, 13, 11, 24), (96, 1, 1, 24), 1, 1, 1, EF_PAD_SYMMETRIC),
    // From 2048 rows the CPU's filter gradient is effnet's kernel: outputs past its tiles of 8 (AVX-512)
    // or 4 (AVX2), inputs in one part vector, and past a whole vector (9 outputs by 5 inputs, 8 by 18:
    // a whole and a part vector with AVX-512, two whole and a part with AVX2). The weights' gradient
    // alone: central differences for every input would take minutes.
    CONV_WGRAD("pointwise filter gradient, 2048 rows, 9x5", (2, 32, 32, 5), (9, 1, 1, 5), 1, 1, EF_PAD_SYMMETRIC),
    CONV_WGRAD("pointwise filter gradient, 2048 rows, 8x18", (1, 32, 64, 18), (8, 1, 1, 18), 1, 1, EF_PAD_SYMMETRIC),
    // Depthwise filter gradients on inputs past the CPU's 64x64 points: with AVX-512 effnet's kernel
    // takes stride 2 on whole blocks of 16 channels, and oneDNN's choice stays only where it is a
    // depthwise kernel (its generic one for a 5x5 stride 2 goes to effnet's, on part blocks too).
    CONV_WGRAD("depthwise 5x5 s2 filter gradient, 66x66, 16 channels", (1, 66, 66, 16), (16, 5, 5, 1), 2, 16,
               EF_PAD_SAME),
    CONV_WGRAD("depthwise 5x5 s2 filter gradient, 65x65, 8 channels", (1, 65, 65, 8), (8, 5, 5, 1), 2, 8, EF_PAD_SAME),
    CONV("pointwise 1x1 s2 same", 2, (2, 5, 5, 6), (4, 1, 1, 6), 2, 1, 1, EF_PAD_SAME),
    CONV("3x3 s2 same on 1x1 spatial", 2, (2, 1, 1, 6), (5, 3, 3, 6), 2, 1, 1, EF_PAD_SAME),
    CONV("grouped 3x3 dilation 2, 2 groups", 2, (2, 9, 9, 6), (4, 3, 3, 3), 1, 2, 2, EF_PAD_SYMMETRIC),
    CONV("stem-like 3x3 s2 same, 3->8, 11x11", 3, (2, 11, 11, 3), (8, 3, 3, 3), 2, 1, 1, EF_PAD_SAME),

    // Inference's convolution with its batch norm folded in (no gradient): running statistics with a
    // variance far from 1, each activation, depthwise and pointwise, TF "SAME" and symmetric padding.
    // Pointwise ones on the CPU: over at most 24 inputs by effnet's own kernel (tiles of 4 or 3 rows by
    // up to 6 or 3 vectors: 198 rows and 100 outputs leave part tiles of both), else as matrix
    // products on several images and as convolutions on one.
    CONV_BN("conv_bn 3x3 s2 same + swish, 5->6", (2, 9, 8, 5), (6, 3, 3, 5), 2, 1, EF_PAD_SAME, EF_ACT_SWISH),
    CONV_BN("conv_bn depthwise 5x5 s1 + swish", (2, 7, 6, 12), (12, 5, 5, 1), 1, 12, EF_PAD_SYMMETRIC, EF_ACT_SWISH),
    CONV_BN("conv_bn depthwise 3x3 s2 same + relu6", (1, 9, 9, 17), (17, 3, 3, 1), 2, 17, EF_PAD_SAME, EF_ACT_RELU6),
    // Rows of 21 points: with AVX-512 the CPU's own forward, in groups of 8 and then half groups.
    CONV_BN("conv_bn depthwise 5x5 s1 + swish, 21 wide", (2, 4, 21, 40), (40, 5, 5, 1), 1, 40, EF_PAD_SYMMETRIC,
            EF_ACT_SWISH),
    // oneDNN with AVX2 alone runs this as im2col GEMM; the CPU backend then takes effnet's kernel.
    CONV_BN("conv_bn depthwise 5x5 on 1x1 maps + swish", (3, 1, 1, 40), (40, 5, 5, 1), 1, 40, EF_PAD_SAME,
            EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise, no activation, 70->19", (3, 4, 5, 70), (19, 1, 1, 70), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_NONE),
    CONV_BN("conv_bn pointwise + sigmoid", (2, 3, 3, 8), (24, 1, 1, 8), 1, 1, EF_PAD_SYMMETRIC, EF_ACT_SIGMOID),
    CONV_BN("conv_bn pointwise + relu", (2, 3, 3, 8), (16, 1, 1, 8), 1, 1, EF_PAD_SYMMETRIC, EF_ACT_RELU),
    CONV_BN("conv_bn pointwise + swish, one image", (1, 5, 3, 20), (36, 1, 1, 20), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise + relu6, 1x1 maps", (6, 1, 1, 40), (24, 1, 1, 40), 1, 1, EF_PAD_SAME, EF_ACT_RELU6),
    CONV_BN("conv_bn pointwise + swish, one image, 40->36", (1, 5, 3, 40), (36, 1, 1, 40), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise + swish, 198 rows, 16->100", (2, 9, 11, 16), (100, 1, 1, 16), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise + swish, 1040 rows, 40->200", (2, 26, 20, 40), (200, 1, 1, 40), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise, no activation, 63 rows, 24->40", (1, 7, 9, 24), (40, 1, 1, 24), 1, 1, EF_PAD_SYMMETRIC,
            EF_ACT_NONE),
    // Bands of output rows (the CPU's kernel): 9x11 at stride 2 and 12x13 on three images make several
    // an image, with rows shared between them; 8 images of 40x112 by 96 channels fill the cache's
    // share of a band; 20 channels leave part vectors; 7x7 takes the loop for any kernel size.
    EXPAND_DW("expand_dw 3x3 s2 same + swish, 16->20", (2, 9, 11, 16), 20, 3, 2, EF_PAD_SAME, EF_ACT_SWISH),
    EXPAND_DW("expand_dw 3x3 s1, no activation, 24->48", (3, 12, 13, 24), 48, 3, 1, EF_PAD_SYMMETRIC, EF_ACT_NONE),
    EXPAND_DW("expand_dw 5x5 s1 + relu6, 5->32, one image", (1, 7, 6, 5), 32, 5, 1, EF_PAD_SYMMETRIC, EF_ACT_RELU6),
    EXPAND_DW("expand_dw 5x5 s2 same + sigmoid, 40->16", (2, 10, 9, 40), 16, 5, 2, EF_PAD_SAME, EF_ACT_SIGMOID),
    EXPAND_DW("expand_dw 7x7 s2 same + relu, 8->24", (1, 10, 10, 8), 24, 7, 2, EF_PAD_SAME, EF_ACT_RELU),
    EXPAND_DW("expand_dw 3x3 s2 same + swish, 8x40x112, 8->96", (8, 40, 112, 8), 96, 3, 2, EF_PAD_SAME, EF_ACT_SWISH),
    CONV_BN_GATED("conv_bn pointwise gated, no activation, 70->19", (3, 4, 5, 70), (19, 1, 1, 70), EF_ACT_NONE),
    CONV_BN_GATED("conv_bn pointwise gated + swish, one image", (1, 5, 3, 20), (36, 1, 1, 20), EF_ACT_SWISH),
    // Narrow outputs over many inputs (the CPU's own kernel: tiles of 12 rows by 2 vectors, 8 by 3):
    // 13x11 images make several work items an image, the last one short, each image its own gate.
    CONV_BN_GATED("conv_bn pointwise gated, 3 images of 13x11, 144->24", (3, 13, 11, 144), (24, 1, 1, 144),
                  EF_ACT_NONE),
    CONV_BN_GATED("conv_bn pointwise gated, 2 images of 13x11, 40->48", (2, 13, 11, 40), (48, 1, 1, 40), EF_ACT_NONE),
    // From few inputs onto two vectors, over more than 65,536 rows (B3's 40 -> 24 at 150x150 from batch 3
    // up): the CPU's own kernel, each image's last tile short (8 rows a tile with AVX-512, 3 with AVX2).
    CONV_BN_GATED("conv_bn pointwise gated + swish, 2 images of 181x182, 40->24", (2, 181, 182, 40), (24, 1, 1, 40),
                  EF_ACT_SWISH),
    CONV_BN("conv_bn pointwise, no activation, 286 rows, 96->32", (2, 13, 11, 96), (32, 1, 1, 96), 1, 1,
            EF_PAD_SYMMETRIC, EF_ACT_NONE),

    {"bn train", 2, {X(4, {2, 5, 5, 7}), W("affine", 2, {2, 7})}, build_bn, ref_bn, .eps = 1e-3f, .flag = true},
    {"bn train + swish, batch 1",
     2,
     {X(4, {1, 3, 3, 9}), W("affine", 2, {2, 9})},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_SWISH,
     .flag = true},
    {"bn train + sigmoid",
     2,
     {X(4, {3, 2, 2, 5}), W("affine", 2, {2, 5})},
     build_bn,
     ref_bn,
     .eps = 1e-5f,
     .act = EF_ACT_SIGMOID,
     .flag = true},
    // Whole vectors of channels and a tail (the CPU's vector reduction for swish and sigmoid), and
    // rows not a multiple of its four.
    {"bn train + swish, 37 channels, 126 rows",
     2,
     {X(4, {2, 7, 9, 37}), W("affine", 2, {2, 37})},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_SWISH,
     .flag = true},
    {"bn train + sigmoid, 32 channels",
     2,
     {X(4, {2, 3, 5, 32}), W("affine", 2, {2, 32})},
     build_bn,
     ref_bn,
     .eps = 1e-5f,
     .act = EF_ACT_SIGMOID,
     .flag = true},
    // EfficientNet-Lite's: z = gamma * xhat + beta spans both kinks (0 and 6), seeded so that no z lies
    // within the differences' step of one.
    {"bn train + relu6",
     2,
     {X(4, {2, 3, 3, 5}), {"affine", IN_PARAM, EF_F32, 2, {2, 5}, true, 1.5f, 3.5f, 0}},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_RELU6,
     .flag = true},
    {"bn train on (rows, C)",
     2,
     {X(2, {6, 10}), W("affine", 2, {2, 10})},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .flag = true},
    {"bn train + swish, 250 rows (uneven chunks)",
     2,
     {{"x", IN_INPUT, EF_F32, 4, {2, 5, 25, 13}, true, 2, 4, 0}, W("affine", 2, {2, 13})},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_SWISH,
     .flag = true},
    {"bn running stats + swish, 162 rows",
     3,
     {X(4, {2, 9, 9, 6}), {"running", IN_STATE, EF_F32, 2, {2, 6}, false, 0.5f, 1.5f, 0}, W("affine", 2, {2, 6})},
     build_bn,
     ref_bn,
     .eps = 1e-3f,
     .act = EF_ACT_SWISH},

    {"swish", 1, {X(4, {2, 3, 3, 5})}, build_act, ref_act_op, .act = EF_ACT_SWISH},
    {"sigmoid",
     1,
     {{"x", IN_INPUT, EF_F32, 4, {2, 3, 3, 5}, true, -4, 4, 0}},
     build_act,
     ref_act_op,
     .act = EF_ACT_SIGMOID},
    {"relu",
     1,
     {{"x", IN_INPUT, EF_F32, 4, {2, 3, 3, 5}, true, -1, 1, 0.05f}},
     build_act,
     ref_act_op,
     .act = EF_ACT_RELU},
    {"relu6", 1, {{"x", IN_INPUT, EF_F32, 2, {9, 7}, true, -2, 8, 0.05f}}, build_act, ref_act_op, .act = EF_ACT_RELU6},
    {"add", 2, {X(4, {2, 3, 4, 5}), {"b", IN_INPUT, EF_F32, 4, {2, 3, 4, 5}, true, -1, 1, 0}}, build_add, ref_add},
    {"channel_mul (squeeze-excite scale)",
     2,
     {X(4, {2, 3, 3, 7}), {"s", IN_INPUT, EF_F32, 4, {2, 1, 1, 7}, true, 0, 1, 0}},
     build_channel_mul,
     ref_channel_mul},
    {"channel_mul, 70 channels",
     2,
     {X(4, {2, 2, 3, 70}), {"s", IN_INPUT, EF_F32, 4, {2, 1, 1, 70}, true, 0, 1, 0}},
     build_channel_mul,
     ref_channel_mul},
    {"channel_mul with an addend (the input gradient of squeeze-excite)",
     3,
     {X(4, {2, 3, 2, 19}),
      {"s", IN_INPUT, EF_F32, 4, {2, 1, 1, 19}, true, 0, 1, 0},
      {"d", IN_INPUT, EF_F32, 4, {2, 1, 1, 19}, true, -1, 1, 0}},
     build_channel_mul_add,
     ref_channel_mul_add},
    // x's two gradient paths, the scale's and the pooling's, in one node (core/op.c's backward_gap).
    {"squeeze-excite x * sigmoid(gap(x))",
     1,
     {{"x", IN_INPUT, EF_F32, 4, {2, 3, 4, 21}, true, 0.1f, 2, 0}},
     build_se,
     ref_se},
    {"squeeze-excite on 1x1 maps", 1, {{"x", IN_INPUT, EF_F32, 4, {3, 1, 1, 18}, true, 0.1f, 2, 0}}, build_se, ref_se},
    {"channel_mul of a pooled input, the pool unused",
     2,
     {{"x", IN_INPUT, EF_F32, 4, {2, 2, 3, 9}, true, 0.1f, 1, 0},
      {"s", IN_INPUT, EF_F32, 4, {2, 1, 1, 9}, true, 0, 1, 0}},
     build_channel_mul_pool_unused,
     ref_channel_mul},
    {"global average pool", 1, {X(4, {2, 3, 5, 7})}, build_gap, ref_gap},
    {"global average pool of 1x1", 1, {X(4, {1, 1, 1, 9})}, build_gap, ref_gap},
    {"global average pool, 130 channels", 1, {X(4, {2, 3, 3, 130})}, build_gap, ref_gap},
    // Blocks of 512 channels and a remainder (cpu_elementwise.c's sum_hw).
    {"global average pool, 600 channels, 8 images", 1, {X(4, {8, 2, 2, 600})}, build_gap, ref_gap},
    {"linear with bias", 3, {X(2, {4, 6}), W("w", 2, {5, 6}), W("b", 1, {5})}, build_linear, ref_linear},
    {"linear on (N,1,1,C), no bias", 2, {X(4, {2, 1, 1, 7}), W("w", 2, {3, 7})}, build_linear, ref_linear},
    {"linear batch 1, 10->10", 3, {X(2, {1, 10}), W("w", 2, {10, 10}), W("b", 1, {10})}, build_linear, ref_linear},
    {"linear with bias, 150 rows", 3, {X(2, {150, 5}), W("w", 2, {3, 5}), W("b", 1, {3})}, build_linear, ref_linear},
    // Over at most 4 rows the CPU's dot products: 37 inputs are whole vectors and a masked part, 9 outputs
    // two blocks of 4 and one alone.
    {"linear 3 rows, 37->9", 3, {X(2, {3, 37}), W("w", 2, {9, 37}), W("b", 1, {9})}, build_linear, ref_linear},
    {"dropout per element, 150 elements", 1, {X(4, {2, 5, 5, 3})}, build_dropout, ref_dropout, .rate = 0.3f},
    {"drop-path per sample", 1, {X(4, {6, 2, 2, 3})}, build_dropout, ref_dropout, .rate = 0.5f, .flag = true},
    {"two dropouts draw different masks", 1, {X(2, {9, 11})}, build_dropout2, ref_dropout2, .rate = 0.4f},
    {"softmax cross-entropy",
     2,
     {{"logits", IN_INPUT, EF_F32, 2, {5, 7}, true, -3, 3, 0}, {"labels", IN_INPUT, EF_I32, 1, {5}, false, 0, 7, 0}},
     build_softmax_ce,
     ref_softmax_ce},
    {"softmax cross-entropy, smoothing 0.1",
     2,
     {{"logits", IN_INPUT, EF_F32, 2, {3, 10}, true, -3, 3, 0}, {"labels", IN_INPUT, EF_I32, 1, {3}, false, 0, 10, 0}},
     build_softmax_ce,
     ref_softmax_ce,
     .smoothing = 0.1f},
    {"softmax cross-entropy, soft targets (rows not summing to 1)",
     2,
     {{"logits", IN_INPUT, EF_F32, 2, {4, 10}, true, -3, 3, 0},
      {"targets", IN_INPUT, EF_F32, 2, {4, 10}, false, 0, 1, 0}},
     build_softmax_ce,
     ref_softmax_ce},
    {"softmax cross-entropy, soft targets, 1000 classes",
     2,
     {{"logits", IN_INPUT, EF_F32, 2, {3, 1000}, true, -3, 3, 0},
      {"targets", IN_INPUT, EF_F32, 2, {3, 1000}, false, 0, 0.002f, 0}},
     build_softmax_ce,
     ref_softmax_ce},
    {"sum", 1, {X(3, {3, 4, 5})}, build_reduce, ref_reduce},
    {"sum of 5050 (uneven chunks)", 1, {X(2, {50, 101})}, build_reduce, ref_reduce},
    {"mean", 1, {X(4, {2, 3, 3, 2})}, build_reduce, ref_reduce, .flag = true},
    {"reshape (N,1,1,C) -> (N,C)", 1, {X(4, {2, 1, 1, 6})}, build_reshape, ref_copy, .ndim2 = 2, .shape2 = {2, 6}},
    {"fill (3,5,7)", 0, .build = build_fill, .ref = ref_fill, .value = -1.25f, .ndim2 = 3, .shape2 = {3, 5, 7}},
};

#endif
