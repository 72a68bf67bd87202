// ONNX export (onnx.h): effnet's inference graph node by node as ONNX operators, built in
// protobuf-c's structures of onnx.proto and packed straight into a temporary file that then
// replaces OUT.onnx. Our activations are NHWC and ONNX's convolutions want NCHW, so inside the
// model every 4-D value is (N,C,H,W) and conv weights go (O,KH,KW,I/groups) -> (O,I/groups,KH,KW).
#include "models/onnx.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/file.h"
#include "onnx/onnx.pb-c.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw tensor data is little-endian; this exporter writes host floats as they are"
#endif

#ifndef EFFNET_VERSION
#define EFFNET_VERSION "unknown"
#endif

// Appends item to the growing array arr of n items (room for cap).
#define PUSH(arr, n, cap, item)                                                                                        \
  do {                                                                                                                 \
    if ((n) == (cap)) (cap) = (cap) ? 2 * (cap) : 64, (arr) = ef_xrealloc((arr), sizeof *(arr) * (cap));               \
    (arr)[(n)++] = (item);                                                                                             \
  } while (0)

// The export of one graph. Everything the protobuf structures point to comes from alloc() and is
// freed with the context.
typedef struct {
  const ef_graph *g;
  const ef_store *s;
  const ef_onnx_opts *o;
  const ef_tensor *images, *logits;
  float *host[2]; // the store's PARAM and STATE arenas, copied to the host
  char **value;   // per node id: the ONNX value holding its result (NULL: none yet)
  bool *needed;   // per node id: the logits depend on it
  Onnx__NodeProto **nodes;
  size_t n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  size_t n_inits, cap_inits;
  char **names; // every value and initializer name given (names are unique in a graph)
  size_t n_names, cap_names;
  void **pool;
  size_t n_pool, cap_pool;
} onnx_ctx;

static void *alloc(onnx_ctx *c, size_t bytes) {
  void *p = ef_xcalloc(1, bytes);
  PUSH(c->pool, c->n_pool, c->cap_pool, p);
  return p;
}

// A copy of `bytes` at src in the context's memory.
static void *copy(onnx_ctx *c, const void *src, size_t bytes) {
  return bytes ? memcpy(alloc(c, bytes), src, bytes) : NULL;
}

static char *text(onnx_ctx *c, const char *s) { return copy(c, s, strlen(s) + 1); }

static bool taken(const onnx_ctx *c, const char *name) {
  for (size_t i = 0; i < c->n_names; i++)
    if (!strcmp(c->names[i], name)) return true;
  return false;
}

// `name`, or the first of name_2, name_3, ... that no value or initializer has.
static char *unique(onnx_ctx *c, const char *name) {
  char buf[EF_NAME_LEN + 48];
  snprintf(buf, sizeof buf, "%s", name);
  for (int k = 2; taken(c, buf); k++) snprintf(buf, sizeof buf, "%s_%d", name, k);
  char *s = text(c, buf);
  PUSH(c->names, c->n_names, c->cap_names, s);
  return s;
}

// The name of node t's result (suffix NULL) or of a step towards it ("<name>.sigmoid"): effnet's
// name, "<op>.<id>" for an unnamed node, and "logits" for the output itself.
static char *name_of(onnx_ctx *c, const ef_tensor *t, const char *suffix) {
  if (t == c->logits && !suffix) return c->names[1]; // reserved by ef_onnx_export
  char buf[EF_NAME_LEN + 32];
  if (t->name[0]) snprintf(buf, sizeof buf, "%s%s", t->name, suffix ? suffix : "");
  else snprintf(buf, sizeof buf, "%s.%d%s", ef_op_name(t->op), t->id, suffix ? suffix : "");
  return unique(c, buf);
}

// ---- protobuf pieces -----------------------------------------------------------------------

static Onnx__AttributeProto *attr_new(onnx_ctx *c, const char *name, Onnx__AttributeProto__AttributeType type) {
  Onnx__AttributeProto *a = alloc(c, sizeof *a);
  onnx__attribute_proto__init(a);
  a->name = text(c, name);
  a->has_type = 1, a->type = type;
  return a;
}

static Onnx__AttributeProto *attr_int(onnx_ctx *c, const char *name, int64_t v) {
  Onnx__AttributeProto *a = attr_new(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  a->has_i = 1, a->i = v;
  return a;
}

static Onnx__AttributeProto *attr_float(onnx_ctx *c, const char *name, float v) {
  Onnx__AttributeProto *a = attr_new(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  a->has_f = 1, a->f = v;
  return a;
}

static Onnx__AttributeProto *attr_ints(onnx_ctx *c, const char *name, int n, const int64_t *v) {
  Onnx__AttributeProto *a = attr_new(c, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  a->n_ints = (size_t)n, a->ints = copy(c, v, sizeof(int64_t) * (size_t)n);
  return a;
}

// Adds the node `op` (inputs in, attributes attr) whose one output is `out`; returns out.
static char *node(onnx_ctx *c, const char *op, char *out, int n_in, char *const *in, int n_attr,
                  Onnx__AttributeProto *const *attr) {
  Onnx__NodeProto *n = alloc(c, sizeof *n);
  onnx__node_proto__init(n);
  n->op_type = text(c, op);
  n->name = out;
  n->n_output = 1, n->output = alloc(c, sizeof(char *));
  n->output[0] = out;
  n->n_input = (size_t)n_in;
  n->input = copy(c, in, sizeof(char *) * (size_t)n_in);
  n->n_attribute = (size_t)n_attr;
  n->attribute = copy(c, attr, sizeof *n->attribute * (size_t)n_attr);
  PUSH(c->nodes, c->n_nodes, c->cap_nodes, n);
  return out;
}

// A constant (graph initializer) of ONNX type `type` (FLOAT or INT64) and shape dims, its data
// copied; returns its (unique) name.
static char *constant(onnx_ctx *c, const char *name, int32_t type, int ndim, const int64_t *dims, const void *data) {
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) numel *= (size_t)dims[i];
  size_t bytes = numel * (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? sizeof(int64_t) : sizeof(float));
  Onnx__TensorProto *t = alloc(c, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = unique(c, name);
  t->has_data_type = 1, t->data_type = type;
  t->n_dims = (size_t)ndim;
  t->dims = copy(c, dims, sizeof(int64_t) * (size_t)ndim);
  t->has_raw_data = 1, t->raw_data.len = bytes, t->raw_data.data = copy(c, data, bytes);
  PUSH(c->inits, c->n_inits, c->cap_inits, t);
  return t->name;
}

static char *constant_f32(onnx_ctx *c, const char *name, int ndim, const int64_t *dims, const float *data) {
  return constant(c, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, data);
}

// A float tensor's type and shape (the first dimension is the batch, "N") for the graph's input and output.
static Onnx__ValueInfoProto *value_info(onnx_ctx *c, char *name, int ndim, const int64_t *dims) {
  Onnx__TensorShapeProto *shape = alloc(c, sizeof *shape);
  onnx__tensor_shape_proto__init(shape);
  shape->n_dim = (size_t)ndim, shape->dim = alloc(c, sizeof *shape->dim * (size_t)ndim);
  for (int i = 0; i < ndim; i++) {
    Onnx__TensorShapeProto__Dimension *d = alloc(c, sizeof *d);
    onnx__tensor_shape_proto__dimension__init(d);
    if (i == 0) d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, d->dim_param = text(c, "N");
    else d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, d->dim_value = dims[i];
    shape->dim[i] = d;
  }
  Onnx__TypeProto__Tensor *tensor = alloc(c, sizeof *tensor);
  onnx__type_proto__tensor__init(tensor);
  tensor->has_elem_type = 1, tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, tensor->shape = shape;
  Onnx__TypeProto *type = alloc(c, sizeof *type);
  onnx__type_proto__init(type);
  type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, type->tensor_type = tensor;
  Onnx__ValueInfoProto *v = alloc(c, sizeof *v);
  onnx__value_info_proto__init(v);
  v->name = name, v->type = type;
  return v;
}

// A tensor's ONNX shape: 4-D activations (N,H,W,C) are (N,C,H,W) there.
static void onnx_dims(const ef_tensor *t, int64_t *dims) {
  for (int i = 0; i < t->ndim; i++) dims[i] = t->shape[i];
  if (t->ndim == 4) dims[1] = t->shape[3], dims[2] = t->shape[1], dims[3] = t->shape[2];
}

// ---- reading the graph -----------------------------------------------------------------------

static ef_status unsupported(const ef_tensor *t, const char *why) {
  return EF_ERROR(EF_ERR_UNSUPPORTED, "node '%s' (%s) cannot be exported to ONNX: %s", t->name, ef_op_name(t->op), why);
}

// The host values of source i of t, which must be a parameter or state leaf of the store (rows of
// a (2,C) view are consecutive entries).
static ef_status values_of(const onnx_ctx *c, const ef_tensor *t, int i, const float **v) {
  const ef_tensor *src = t->src[i];
  if (src->op != EF_OP_LEAF || (src->mem != EF_MEM_PARAM && src->mem != EF_MEM_STATE))
    return unsupported(t,
                       "its weights are computed in the graph, not read from the store (only stored weights export)");
  *v = c->host[src->mem == EF_MEM_PARAM ? 0 : 1] + src->offset / sizeof(float);
  return EF_OK;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

// The store name of row `row` of leaf t (a (2,C) view spans two entries), for its initializer.
static const char *entry_name(const onnx_ctx *c, const ef_tensor *t, int row) {
  size_t at = t->offset / sizeof(float);
  bool trainable = t->mem == EF_MEM_PARAM;
  for (int e = 0; e < c->s->n; e++) {
    const ef_store_entry *en = &c->s->entries[e];
    if (en->trainable == trainable && en->offset == at)
      return row && e + row < c->s->n ? c->s->entries[e + row].name : en->name;
  }
  return t->name;
}

// act(x) as the value of node t: x itself for none, else the activation's nodes (swish as
// x * Sigmoid(x): opset 17 has no Swish), the last one named for t.
static char *activation(onnx_ctx *c, char *x, ef_act act, const ef_tensor *t) {
  switch (act) {
  case EF_ACT_NONE: return x;
  case EF_ACT_SIGMOID: return node(c, "Sigmoid", name_of(c, t, NULL), 1, &x, 0, NULL);
  case EF_ACT_RELU: return node(c, "Relu", name_of(c, t, NULL), 1, &x, 0, NULL);
  case EF_ACT_SWISH: {
    char *s = node(c, "Sigmoid", name_of(c, t, ".sigmoid"), 1, &x, 0, NULL);
    return node(c, "Mul", name_of(c, t, NULL), 2, (char *[]){x, s}, 0, NULL);
  }
  case EF_ACT_RELU6: {
    float lo = 0, hi = 6;
    char *in[3] = {x, constant_f32(c, "relu6.min", 0, NULL, &lo), constant_f32(c, "relu6.max", 0, NULL, &hi)};
    return node(c, "Clip", name_of(c, t, NULL), 3, in, 0, NULL);
  }
  case EF_ACT_COUNT: break;
  }
  EF_FATAL("activation %d", (int)act);
}

// CONV2D_BN t's batch norm of its convolution's value x as BatchNormalization (inference: the
// running statistics), and the activation after it, as the value of t.
static ef_status batch_norm(onnx_ctx *c, const ef_tensor *t, char *x) {
  const float *stats = NULL, *affine = NULL;
  EF_TRY(values_of(c, t, 2, &stats));
  EF_TRY(values_of(c, t, 3, &affine));
  const ef_tensor *st = t->src[2], *af = t->src[3];
  ef_act act = t->p.conv.act;
  int64_t ch = t->shape[t->ndim - 1];
  char *in[5] = {x, constant_f32(c, entry_name(c, af, 0), 1, &ch, affine),
                 constant_f32(c, entry_name(c, af, 1), 1, &ch, affine + ch),
                 constant_f32(c, entry_name(c, st, 0), 1, &ch, stats),
                 constant_f32(c, entry_name(c, st, 1), 1, &ch, stats + ch)};
  char *y = node(c, "BatchNormalization", name_of(c, t, act != EF_ACT_NONE ? ".bn" : NULL), 5, in, 1,
                 (Onnx__AttributeProto *[]){attr_float(c, "epsilon", t->p.conv.bn_eps)});
  c->value[t->id] = activation(c, y, act, t);
  return EF_OK;
}

// Conv with pads [top, left, bottom, right] (ONNX: all begins, then all ends; ours: top, bottom,
// left, right), weights to (O,I/groups,KH,KW). A CONV2D_BN's batch norm is folded in
// (W * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps)), or with keep_bn exported
// after it as BatchNormalization; its activation follows. A gated one (squeeze-excite's scale,
// folded per image in effnet's plan) reads Mul(x, gate).
static ef_status emit_conv(onnx_ctx *c, const ef_tensor *t, char *x, char *gate) {
  const ef_conv_params *p = &t->p.conv;
  if (gate) x = node(c, "Mul", name_of(c, t, ".gate"), 2, (char *[]){x, gate}, 0, NULL);
  bool with_bn = t->op == EF_OP_CONV2D_BN, fold = with_bn && !c->o->keep_bn;
  const float *w = NULL, *b = NULL, *stats = NULL, *affine = NULL;
  EF_TRY(values_of(c, t, 1, &w));
  if (!with_bn && t->n_src > 2) EF_TRY(values_of(c, t, 2, &b));
  if (fold) {
    EF_TRY(values_of(c, t, 2, &stats));
    EF_TRY(values_of(c, t, 3, &affine));
  }
  const int64_t *ws = t->src[1]->shape; // (O,KH,KW,I/groups)
  int64_t o = ws[0], kh = ws[1], kw = ws[2], in = ws[3], dims[4] = {o, in, kh, kw};
  float *wt = ef_xmalloc(sizeof(float) * (size_t)(o * kh * kw * in)), *bias = ef_xcalloc((size_t)o, sizeof(float));
  for (int64_t a = 0; a < o; a++) {
    double scale = 1, shift = b ? b[a] : 0;
    if (fold) { // stats (2,O) [mean; var], affine (2,O) [gamma; beta]
      scale = affine[a] / sqrt((double)stats[o + a] + p->bn_eps);
      shift = affine[o + a] - stats[a] * scale;
    }
    bias[a] = (float)shift;
    for (int64_t r = 0; r < kh; r++)
      for (int64_t q = 0; q < kw; q++)
        for (int64_t i = 0; i < in; i++)
          wt[((a * in + i) * kh + r) * kw + q] = (float)(w[((a * kh + r) * kw + q) * in + i] * scale);
  }
  // The folded pair is named after the convolution's weights ("<conv>.weight", "<conv>.bias").
  const char *wname = entry_name(c, t->src[1], 0);
  char bname[EF_NAME_LEN + 16];
  snprintf(bname, sizeof bname, "%.*s.bias", (int)(strlen(wname) - (ends_with(wname, ".weight") ? 7 : 0)), wname);
  char *inputs[3] = {x, constant_f32(c, wname, 4, dims, wt), NULL};
  if (fold || b) inputs[2] = constant_f32(c, fold ? bname : entry_name(c, t->src[2], 0), 1, &o, bias);
  free(wt), free(bias);
  Onnx__AttributeProto *attr[5] = {attr_ints(c, "kernel_shape", 2, (int64_t[]){kh, kw}),
                                   attr_ints(c, "strides", 2, (int64_t[]){p->stride[0], p->stride[1]}),
                                   attr_ints(c, "dilations", 2, (int64_t[]){p->dilation[0], p->dilation[1]}),
                                   attr_ints(c, "pads", 4, (int64_t[]){p->pad[0], p->pad[2], p->pad[1], p->pad[3]}),
                                   attr_int(c, "group", p->groups)};
  bool last = !with_bn || (fold && p->act == EF_ACT_NONE); // the Conv gives the node's value
  char *y = node(c, "Conv", name_of(c, t, last ? NULL : ".conv"), fold || b ? 3 : 2, inputs, 5, attr);
  if (!with_bn) c->value[t->id] = y;
  else if (fold) c->value[t->id] = activation(c, y, p->act, t);
  else EF_TRY(batch_norm(c, t, y));
  return EF_OK;
}

// EXPAND_DW (a CPU plan's fusion) as its two CONV2D_BN: the 1x1 expansion, named after its weights,
// then the depthwise convolution, which gives t's value.
static ef_status emit_expand_dw(onnx_ctx *c, const ef_tensor *t, char *x, char *unused) {
  ef_tensor expand = *t, dw = *t;
  expand.op = dw.op = EF_OP_CONV2D_BN;
  expand.n_src = dw.n_src = 4;
  dw.src[1] = t->src[4], dw.src[2] = t->src[5], dw.src[3] = t->src[6];
  expand.p.conv = (ef_conv_params){
      .stride = {1, 1}, .dilation = {1, 1}, .groups = 1, .bn_eps = t->p.conv.bn_eps, .act = t->p.conv.act};
  expand.shape[1] = t->src[0]->shape[1], expand.shape[2] = t->src[0]->shape[2];
  const char *wname = entry_name(c, t->src[1], 0);
  snprintf(expand.name, sizeof expand.name, "%.*s", (int)(strlen(wname) - (ends_with(wname, ".weight") ? 7 : 0)),
           wname);
  EF_TRY(emit_conv(c, &expand, x, NULL));
  return emit_conv(c, &dw, c->value[t->id], NULL);
}

// Reshape keeps the batch (0 copies it) and our NHWC element order: a 4-D value whose spatial size
// is not 1x1 goes through (N,H,W,C) on the way in or out.
static ef_status emit_reshape(onnx_ctx *c, const ef_tensor *t, char *v, char *unused) {
  const ef_tensor *x = t->src[0];
  if (x->shape[0] != t->shape[0])
    return unsupported(t, "it changes the batch dimension, which the model leaves dynamic");
  if (x->ndim == 4 && (x->shape[1] != 1 || x->shape[2] != 1))
    v = node(c, "Transpose", name_of(c, t, ".in_nhwc"), 1, &v, 1,
             (Onnx__AttributeProto *[]){attr_ints(c, "perm", 4, (int64_t[]){0, 2, 3, 1})});
  bool to_nhwc = t->ndim == 4 && (t->shape[1] != 1 || t->shape[2] != 1);
  int64_t dims[EF_MAX_DIMS], n = t->ndim;
  if (to_nhwc) memcpy(dims, t->shape, sizeof(int64_t) * 4);
  else onnx_dims(t, dims);
  dims[0] = 0;
  char *in[2] = {v, constant(c, name_of(c, t, ".shape"), ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, &n, dims)};
  v = node(c, "Reshape", name_of(c, t, to_nhwc ? ".nhwc" : NULL), 2, in, 0, NULL);
  if (to_nhwc)
    v = node(c, "Transpose", name_of(c, t, NULL), 1, &v, 1,
             (Onnx__AttributeProto *[]){attr_ints(c, "perm", 4, (int64_t[]){0, 3, 1, 2})});
  c->value[t->id] = v;
  return EF_OK;
}

static ef_status emit_linear(onnx_ctx *c, const ef_tensor *t, char *x, char *unused) {
  if (t->src[0]->ndim != 2) return unsupported(t, "only a product of (N,features) rows exports (as Gemm)");
  const float *w = NULL, *b = NULL;
  EF_TRY(values_of(c, t, 1, &w));
  if (t->n_src > 2) EF_TRY(values_of(c, t, 2, &b));
  char *in[3] = {x, constant_f32(c, entry_name(c, t->src[1], 0), 2, t->src[1]->shape, w), NULL};
  if (b) in[2] = constant_f32(c, entry_name(c, t->src[2], 0), 1, t->src[2]->shape, b);
  c->value[t->id] =
      node(c, "Gemm", name_of(c, t, NULL), b ? 3 : 2, in, 1, (Onnx__AttributeProto *[]){attr_int(c, "transB", 1)});
  return EF_OK;
}

// The graph's input "images" ((N,C,H,W), or (N,H,W,C) then a Transpose), and the normalization
// (x - pixel_max * mean) / (pixel_max * std) when the model takes pixels. A gray or other non-RGB
// image takes the first mean and std for every channel, as effnet's preprocessing does.
static ef_status emit_images(onnx_ctx *c, Onnx__ValueInfoProto **input) {
  const ef_tensor *t = c->images;
  if (t->op != EF_OP_LEAF || t->mem != EF_MEM_PLANNED || t->ndim != 4 || t->dtype != EF_F32)
    return EF_ERROR(EF_ERR_INVALID, "the images '%s' must be the graph's float32 (N,H,W,C) input", t->name);
  const ef_onnx_opts *o = c->o;
  int64_t dims[4], ch = t->shape[3];
  bool nhwc = o->layout == EF_ONNX_NHWC;
  if (nhwc) memcpy(dims, t->shape, sizeof dims);
  else onnx_dims(t, dims);
  char *x = c->names[0]; // "images", reserved by ef_onnx_export
  *input = value_info(c, x, 4, dims);
  if (nhwc)
    x = node(c, "Transpose", unique(c, "images.nchw"), 1, &x, 1,
             (Onnx__AttributeProto *[]){attr_ints(c, "perm", 4, (int64_t[]){0, 3, 1, 2})});
  if (o->pixel_max > 0) {
    if (!o->mean || !o->std)
      return EF_ERROR(EF_ERR_INVALID, "normalization in the model needs the mean and std the weights expect");
    float *mean = ef_xmalloc(sizeof(float) * (size_t)ch), *std = ef_xmalloc(sizeof(float) * (size_t)ch);
    for (int64_t i = 0; i < ch; i++)
      mean[i] = o->pixel_max * o->mean[ch == 3 ? i : 0], std[i] = o->pixel_max * o->std[ch == 3 ? i : 0];
    int64_t shape[4] = {1, ch, 1, 1};
    x = node(c, "Sub", unique(c, "images.centred"), 2, (char *[]){x, constant_f32(c, "images.mean", 4, shape, mean)}, 0,
             NULL);
    x = node(c, "Div", unique(c, "images.normalized"), 2, (char *[]){x, constant_f32(c, "images.std", 4, shape, std)},
             0, NULL);
    free(mean), free(std);
  }
  c->value[t->id] = x;
  return EF_OK;
}

static ef_status emit_act(onnx_ctx *c, const ef_tensor *t, char *x, char *unused) {
  c->value[t->id] = activation(c, x, t->p.act.act, t);
  return EF_OK;
}

// Add, or the squeeze-excite scale x (N,C,H,W) * s (N,C,1,1) as a broadcast Mul.
static ef_status emit_binary(onnx_ctx *c, const ef_tensor *t, char *x, char *y) {
  c->value[t->id] = node(c, t->op == EF_OP_ADD ? "Add" : "Mul", name_of(c, t, NULL), 2, (char *[]){x, y}, 0, NULL);
  return EF_OK;
}

static ef_status emit_gap(onnx_ctx *c, const ef_tensor *t, char *x, char *unused) {
  c->value[t->id] = node(c, "GlobalAveragePool", name_of(c, t, NULL), 1, &x, 0, NULL);
  return EF_OK;
}

static ef_status emit_dropout(onnx_ctx *c, const ef_tensor *t, char *x, char *unused) {
  c->value[t->id] = x; // inference: the identity
  return EF_OK;
}

// Each op's ONNX form, from its first source's value x (and an activation second source's, y; a
// gated conv2d_bn's gate).
typedef ef_status (*emit_fn)(onnx_ctx *c, const ef_tensor *t, char *x, char *y);
static const emit_fn emitters[EF_OP_COUNT] = {
    [EF_OP_CONV2D] = emit_conv,     [EF_OP_CONV2D_BN] = emit_conv,  [EF_OP_EXPAND_DW] = emit_expand_dw,
    [EF_OP_ACT] = emit_act,         [EF_OP_ADD] = emit_binary,      [EF_OP_CHANNEL_MUL] = emit_binary,
    [EF_OP_GAP] = emit_gap,         [EF_OP_RESHAPE] = emit_reshape, [EF_OP_LINEAR] = emit_linear,
    [EF_OP_DROPOUT] = emit_dropout,
};

// The ONNX value of source i of t: an activation exported before it (the store's tensors are read
// only as weights, by the ops that take weights).
static ef_status input_of(const onnx_ctx *c, const ef_tensor *t, int i, char **v) {
  *v = c->value[t->src[i]->id];
  return *v ? EF_OK
            : unsupported(t, "it reads a stored tensor as an activation (only weights are read from the store)");
}

// One node of the graph, its sources already exported.
static ef_status emit(onnx_ctx *c, const ef_tensor *t) {
  if (t->op == EF_OP_LEAF) {
    bool exported = t == c->images || t->mem == EF_MEM_PARAM || t->mem == EF_MEM_STATE; // weights: read by their users
    return exported ? EF_OK : unsupported(t, "the graph has an input other than the images");
  }
  if (t->dtype != EF_F32) return unsupported(t, "it is not float32 (mixed precision is for training on a GPU)");
  if (t->op == EF_OP_BN_STATS)
    return unsupported(t, "batch statistics make a training graph: export the inference graph");
  if (t->op == EF_OP_BN) // layers/ builds conv2d_bn in inference graphs
    return unsupported(t, "a batch norm of its own exports only folded into its convolution (conv2d_bn)");
  if (!emitters[t->op] || (t->op == EF_OP_CHANNEL_MUL && t->n_src == 3)) // with an addend: a gradient
    return unsupported(t, "ONNX inference has no counterpart (a loss, an update or a backward op)");
  char *x, *y = NULL;
  EF_TRY(input_of(c, t, 0, &x));
  if (t->op == EF_OP_ADD || t->op == EF_OP_CHANNEL_MUL) EF_TRY(input_of(c, t, 1, &y));
  if (t->op == EF_OP_CONV2D_BN && t->n_src == 5) EF_TRY(input_of(c, t, 4, &y)); // the gate
  return emitters[t->op](c, t, x, y);
}

// ---- metadata ----------------------------------------------------------------------------------

// The n characters at s as a JSON string (quotes, backslashes and control characters escaped).
static void json_string(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
  fputc('"', f);
}

// v with the fewest digits that read back as the same float (single) or double: 1e-05, not 9.99999975e-06.
static void number(FILE *f, double v, bool single) {
  char buf[32];
  for (int digits = 6; digits <= 17; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, v);
    double back = strtod(buf, NULL);
    if (single ? (float)back == (float)v : back == v) break;
  }
  fputs(buf, f);
}

static void meta(onnx_ctx *c, Onnx__ModelProto *m, const char *key, const char *value) {
  Onnx__StringStringEntryProto *e = alloc(c, sizeof *e);
  onnx__string_string_entry_proto__init(e);
  e->key = text(c, key), e->value = text(c, value);
  m->metadata_props = ef_xrealloc(m->metadata_props, sizeof *m->metadata_props * (m->n_metadata_props + 1));
  m->metadata_props[m->n_metadata_props++] = e;
}

// Builds a value with stdio into memory: open, fprintf into *f, then take it.
typedef struct {
  FILE *f;
  char *buf;
  size_t len;
} mem_text;

static ef_status mem_open(mem_text *t) {
  t->buf = NULL, t->f = open_memstream(&t->buf, &t->len);
  return t->f ? EF_OK : EF_ERROR(EF_ERR_NOMEM, "open_memstream failed: out of memory for the model's metadata");
}

static void mem_take(onnx_ctx *c, Onnx__ModelProto *m, const char *key, mem_text *t) {
  fclose(t->f);
  meta(c, m, key, t->buf);
  free(t->buf);
}

// model, config (JSON), class_names (a JSON list), mean and std ("r,g,b", as checkpoints write
// them), input (what the model takes) and source: ONNX Runtime's custom_metadata_map reads them.
static ef_status metadata(onnx_ctx *c, Onnx__ModelProto *m) {
  const ef_onnx_opts *o = c->o;
  const ef_effnet_config *cfg = o->cfg;
  mem_text t;
  if (cfg) {
    meta(c, m, "model", cfg->name);
    EF_TRY(mem_open(&t));
    fprintf(t.f, "{\"name\": ");
    json_string(t.f, cfg->name, strlen(cfg->name));
    fprintf(t.f,
            ", \"resolution\": %d, \"num_classes\": %d, \"in_channels\": %d, \"padding\": \"%s\", \"activation\": "
            "\"%s\", \"squeeze_excite\": %s, \"fixed_stem_head\": %s",
            cfg->resolution, cfg->num_classes, cfg->in_channels, cfg->padding == EF_PAD_SAME ? "same" : "symmetric",
            ef_act_name(cfg->act), cfg->squeeze_excite ? "true" : "false", cfg->fixed_stem_head ? "true" : "false");
    const char *keys[6] = {"width", "depth", "bn_eps", "bn_momentum", "dropout", "drop_path"};
    double values[6] = {cfg->width, cfg->depth, cfg->bn_eps, cfg->bn_momentum, cfg->dropout, cfg->drop_path};
    for (int i = 0; i < 6; i++) {
      fprintf(t.f, ", \"%s\": ", keys[i]);
      number(t.f, values[i], i >= 2); // the last four are floats
    }
    fputc('}', t.f);
    mem_take(c, m, "config", &t);
  }
  if (o->class_names) {
    EF_TRY(mem_open(&t));
    fputc('[', t.f);
    for (const char *p = o->class_names, *nl; *p; p = nl + (*nl != 0)) {
      nl = p + strcspn(p, "\n");
      fprintf(t.f, "%s", p == o->class_names ? "" : ", ");
      json_string(t.f, p, (size_t)(nl - p));
    }
    fputc(']', t.f);
    mem_take(c, m, "class_names", &t);
  }
  for (int k = 0; o->mean && o->std && k < 2; k++) {
    EF_TRY(mem_open(&t));
    for (int i = 0; i < 3; i++) {
      fprintf(t.f, "%s", i ? "," : "");
      number(t.f, (k ? o->std : o->mean)[i], true);
    }
    mem_take(c, m, k ? "std" : "mean", &t);
  }
  int64_t d[4];
  if (o->layout == EF_ONNX_NHWC) memcpy(d, c->images->shape, sizeof d);
  else onnx_dims(c->images, d);
  EF_TRY(mem_open(&t));
  fprintf(t.f, "images: float32 (N,%lld,%lld,%lld) %s, any batch N; ", (long long)d[1], (long long)d[2],
          (long long)d[3], o->layout == EF_ONNX_NHWC ? "NHWC" : "NCHW");
  if (o->pixel_max > 0) fprintf(t.f, "pixels in [0, %g], normalized inside the model by mean and std", o->pixel_max);
  else fprintf(t.f, "normalized pixels, (x - mean) / std for x in [0, 1]");
  fprintf(t.f, "; logits: float32 (N,%lld)", (long long)c->logits->shape[c->logits->ndim - 1]);
  mem_take(c, m, "input", &t);
  if (o->source) meta(c, m, "source", o->source);
  return EF_OK;
}

// ---- writing -----------------------------------------------------------------------------------

typedef struct {
  ProtobufCBuffer base;
  FILE *f;
} file_buffer;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  file_buffer *fb = (file_buffer *)b;
  fwrite(data, 1, len, fb->f); // errors are read from ferror() once at the end
}

// Packs m into a temporary file beside path and renames it over path.
static ef_status write_model(const Onnx__ModelProto *m, const char *path) {
  size_t size = onnx__model_proto__get_packed_size(m);
  if (size > 0x7fffffffu)
    return EF_ERROR(EF_ERR_UNSUPPORTED,
                    "the model packs to %.2f GiB; an ONNX file holds at most 2 GiB without external "
                    "data, which this exporter does not write",
                    (double)size / (1 << 30));
  char tmp[4096];
  ef_file_tmp_name(tmp, sizeof tmp, path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot create %s: %s (is its folder there and writable?)", tmp, strerror(errno));
  file_buffer fb = {.base = {.append = file_append}, .f = f};
  size_t packed = onnx__model_proto__pack_to_buffer(m, &fb.base);
  bool failed = packed != size || ferror(f) || fflush(f) != 0;
  int err = errno;
  if (fclose(f) != 0 && !failed) failed = true, err = errno;
  if (failed) {
    unlink(tmp);
    return EF_ERROR(EF_ERR_IO, "writing %s failed (%s; disk full?); %s is unchanged", tmp,
                    packed != size ? "protobuf-c packed another size than it computed" : strerror(err), path);
  }
  return ef_file_replace(tmp, path);
}

// ---- the export --------------------------------------------------------------------------------

static void ctx_free(onnx_ctx *c) {
  for (size_t i = 0; i < c->n_pool; i++) free(c->pool[i]);
  free(c->pool), free(c->names), free(c->nodes), free(c->inits);
  free(c->host[0]), free(c->host[1]);
  free(c->value), free(c->needed);
}

// What the logits depend on.
static void mark_needed(onnx_ctx *c) {
  c->needed[c->logits->id] = true;
  for (int i = c->logits->id; i >= 0; i--) {
    const ef_tensor *t = c->g->nodes[i];
    for (int k = 0; c->needed[i] && k < t->n_src; k++) c->needed[t->src[k]->id] = true;
  }
}

// The store's arenas on the host (the store may live on a GPU).
static ef_status copy_store(onnx_ctx *c) {
  for (int a = 0; a < 2; a++) {
    size_t bytes = c->s->numel[a] * sizeof(float);
    c->host[a] = ef_aligned_alloc(bytes);
    if (!c->host[a])
      return EF_ERROR(EF_ERR_NOMEM, "out of memory copying %.1f MiB of weights for the export", bytes / 1048576.0);
    if (bytes) c->s->be->download(c->s->be, c->host[a], c->s->mem[a == 0 ? EF_ARENA_PARAM : EF_ARENA_STATE], bytes);
  }
  return EF_OK;
}

static ef_status build_and_write(onnx_ctx *c, const char *path) {
  EF_TRY(copy_store(c));
  mark_needed(c);
  Onnx__ValueInfoProto *input;
  EF_TRY(emit_images(c, &input));
  for (int i = 0; i < c->g->n; i++)
    if (c->needed[i]) EF_TRY(emit(c, c->g->nodes[i]));
  char *logits = c->names[1];
  if (c->value[c->logits->id] != logits) // the logits are another value (a dropout's input): name them
    node(c, "Identity", logits, 1, &c->value[c->logits->id], 0, NULL);
  int64_t dims[EF_MAX_DIMS];
  onnx_dims(c->logits, dims);
  Onnx__ValueInfoProto *output = value_info(c, logits, c->logits->ndim, dims);

  Onnx__GraphProto graph = ONNX__GRAPH_PROTO__INIT;
  graph.name = text(c, c->o->cfg ? c->o->cfg->name : "effnet");
  graph.n_node = c->n_nodes, graph.node = c->nodes;
  graph.n_initializer = c->n_inits, graph.initializer = c->inits;
  graph.n_input = 1, graph.input = &input;
  graph.n_output = 1, graph.output = &output;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT, *opsets = &opset;
  opset.domain = text(c, ""), opset.has_version = 1, opset.version = EF_ONNX_OPSET;
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  m.has_ir_version = 1, m.ir_version = EF_ONNX_IR_VERSION;
  m.n_opset_import = 1, m.opset_import = &opsets;
  m.producer_name = text(c, "effnet"), m.producer_version = text(c, EFFNET_VERSION);
  m.doc_string = text(c, "An EfficientNet's inference graph exported by effnet export --to onnx");
  m.graph = &graph;
  ef_status st = metadata(c, &m);
  if (st == EF_OK) st = write_model(&m, path);
  free(m.metadata_props);
  return st;
}

ef_status ef_onnx_export(const ef_graph *g, const ef_tensor *images, const ef_tensor *logits, const ef_store *s,
                         const ef_onnx_opts *o, const char *path) {
  EF_ASSERT(s->be && images->id < g->n && g->nodes[images->id] == images && logits->id < g->n &&
                g->nodes[logits->id] == logits,
            "export of a graph without its images, its logits or a bound store");
  size_t n = (size_t)g->n;
  onnx_ctx c = {.g = g,
                .s = s,
                .o = o,
                .images = images,
                .logits = logits,
                .value = ef_xcalloc(n, sizeof(char *)),
                .needed = ef_xcalloc(n, sizeof(bool))};
  unique(&c, "images"), unique(&c, "logits"); // names[0] and names[1]: the graph's input and output
  ef_status st = build_and_write(&c, path);
  ctx_free(&c);
  return st;
}
