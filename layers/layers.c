// The layers of layers.h: parameter registration with TF-style initialization, and the graph of
// each layer, counting its parameters and multiply-adds.
#include "layers/layers.h"

#include <math.h>
#include <string.h>

int ef_layer_param(ef_layer_ctx *c, const char *name, bool trainable, bool decay, int ndim, const int64_t *shape,
                   ef_init init) {
  ef_store *s = c->g->store;
  int e = ef_store_find(s, name);
  if (e < 0) {
    e = ef_store_add(s, name, trainable, decay, ndim, shape, init);
  } else {
    const ef_store_entry *en = &s->entries[e];
    bool same = en->ndim == ndim && en->trainable == trainable;
    for (int i = 0; same && i < ndim; i++) same = en->shape[i] == shape[i];
    EF_ASSERT(same, "parameter '%s' asked for with another shape than it has", name);
  }
  if (trainable) c->params += (int64_t)s->entries[e].numel;
  return e;
}

static const char *cat(char *buf, size_t len, const char *a, const char *b) {
  if (snprintf(buf, len, "%s.%s", a, b) >= (int)len) EF_FATAL("name '%s.%s' is longer than %zu bytes", a, b, len - 1);
  return buf;
}

// The weights (O,KH,KW,I/groups) of convolution `name` of x to `out` channels.
static ef_tensor *conv_weight(ef_layer_ctx *c, const char *name, int64_t in, int out, int k, int groups) {
  char buf[EF_NAME_LEN];
  int64_t shape[4] = {out, k, k, in / groups};
  ef_init init = {EF_INIT_NORMAL, (float)sqrt(2.0 / ((double)k * k * out / groups))}; // fan_out = KH*KW*O/groups
  return ef_param(c->g, ef_layer_param(c, cat(buf, sizeof buf, name, "weight"), true, true, 4, shape, init), 1, NULL);
}

// Counts the multiply-adds of output y (N,OH,OW,O) by weights w.
static void count_macs(ef_layer_ctx *c, const ef_tensor *y, const ef_tensor *w) {
  c->macs += ef_numel(y) * w->shape[1] * w->shape[2] * w->shape[3];
}

ef_tensor *ef_layer_conv(ef_layer_ctx *c, const char *name, ef_tensor *x, int out, int k, int stride, int groups,
                         bool bias) {
  char buf[EF_NAME_LEN];
  ef_tensor *w = conv_weight(c, name, x->shape[3], out, k, groups), *b = NULL;
  if (bias) {
    int64_t bshape[1] = {out};
    b = ef_param(
        c->g,
        ef_layer_param(c, cat(buf, sizeof buf, name, "bias"), true, false, 1, bshape, (ef_init){EF_INIT_CONST, 0}), 1,
        NULL);
  }
  ef_tensor *y = ef_conv2d(c->g, x, w, b, stride, 1, groups, c->padding);
  ef_tensor_set_name(y, "%s", name);
  count_macs(c, y, w);
  return y;
}

// Batch norm `name`'s parameters for ch channels: the (2,C) leaves [gamma; beta] and [running mean;
// running var]. Returns the running mean's entry.
static int bn_params(ef_layer_ctx *c, const char *name, int64_t ch, ef_tensor **affine, ef_tensor **running) {
  char buf[EF_NAME_LEN];
  int w = ef_layer_param(c, cat(buf, sizeof buf, name, "weight"), true, false, 1, &ch, (ef_init){EF_INIT_CONST, 1});
  ef_layer_param(c, cat(buf, sizeof buf, name, "bias"), true, false, 1, &ch, (ef_init){EF_INIT_CONST, 0});
  int m =
      ef_layer_param(c, cat(buf, sizeof buf, name, "running_mean"), false, false, 1, &ch, (ef_init){EF_INIT_CONST, 0});
  ef_layer_param(c, cat(buf, sizeof buf, name, "running_var"), false, false, 1, &ch, (ef_init){EF_INIT_CONST, 1});
  *affine = ef_param(c->g, w, 2, cat(buf, sizeof buf, name, "affine"));
  *running = ef_param(c->g, m, 2, cat(buf, sizeof buf, name, "running"));
  return m;
}

ef_tensor *ef_layer_bn(ef_layer_ctx *c, const char *name, ef_tensor *x, ef_act act) {
  ef_tensor *affine, *stats;
  int m = bn_params(c, name, x->shape[x->ndim - 1], &affine, &stats);
  bool batch_stats = c->training && !c->g->store->entries[m].frozen; // frozen statistics: running ones, kept
  if (batch_stats) {
    ef_tensor *running = stats;
    stats = ef_bn_stats(c->g, x);
    ef_tensor_set_name(stats, "%s.stats", name);
    if (c->g->bn_group > 1) stats = ef_sync_stats(c->g, stats, c->g->bn_group); // SyncBN
    ef_bn_update(c->g, running, stats, c->bn_momentum);
  }
  ef_tensor *y = ef_bn(c->g, x, stats, affine, c->bn_eps, act, batch_stats);
  ef_tensor_set_name(y, "%s", name);
  return y;
}

// ef_layer_conv_bn of x, or in an evaluation graph of x * gate (N,1,1,C) where gate is not NULL
// (a 1x1 convolution).
static ef_tensor *conv_bn(ef_layer_ctx *c, const char *conv, const char *bn, ef_tensor *x, ef_tensor *gate, int out,
                          int k, int stride, int groups, ef_act act) {
  if (c->training) return ef_layer_bn(c, bn, ef_layer_conv(c, conv, x, out, k, stride, groups, false), act);
  ef_tensor *w = conv_weight(c, conv, x->shape[3], out, k, groups), *affine, *running;
  bn_params(c, bn, out, &affine, &running);
  ef_tensor *y = gate ? ef_conv2d_bn_gated(c->g, x, gate, w, running, affine, c->bn_eps, act)
                      : ef_conv2d_bn(c->g, x, w, stride, groups, c->padding, running, affine, c->bn_eps, act);
  ef_tensor_set_name(y, "%s", bn);
  count_macs(c, y, w);
  return y;
}

ef_tensor *ef_layer_conv_bn(ef_layer_ctx *c, const char *conv, const char *bn, ef_tensor *x, int out, int k, int stride,
                            int groups, ef_act act) {
  return conv_bn(c, conv, bn, x, NULL, out, k, stride, groups, act);
}

// An MBConv block's expansion to `mid` channels and its depthwise convolution, each with its batch norm,
// as one node of an evaluation graph (ef_expand_dw): the parameters and names of the two conv_bn.
static ef_tensor *expand_dw(ef_layer_ctx *c, const char *prefix, ef_tensor *x, const ef_mbconv_spec *s, int mid) {
  char name[EF_NAME_LEN];
  ef_tensor *a1, *r1, *a2, *r2;
  ef_tensor *w1 = conv_weight(c, cat(name, sizeof name, prefix, "conv_pw"), x->shape[3], mid, 1, 1);
  bn_params(c, cat(name, sizeof name, prefix, "bn1"), mid, &a1, &r1);
  ef_tensor *w2 = conv_weight(c, cat(name, sizeof name, prefix, "conv_dw"), mid, mid, s->kernel, mid);
  bn_params(c, cat(name, sizeof name, prefix, "bn2"), mid, &a2, &r2);
  ef_tensor *y = ef_expand_dw(c->g, x, w1, r1, a1, w2, s->stride, c->padding, r2, a2, c->bn_eps, s->act);
  ef_tensor_set_name(y, "%s", name); // the second batch norm's, as conv_bn names its node
  c->macs += ef_rows(x) * ef_numel(w1) + ef_numel(y) * s->kernel * s->kernel;
  return y;
}

ef_tensor *ef_layer_se_gate(ef_layer_ctx *c, const char *prefix, ef_tensor *x, int reduced, ef_act act) {
  char buf[EF_NAME_LEN];
  int ch = (int)x->shape[3];
  const char *outer = ef_graph_scope(c->g, EF_SCOPE_SE);
  ef_tensor *s = ef_gap(c->g, x); // (N,1,1,C)
  s = ef_activate(c->g, ef_layer_conv(c, cat(buf, sizeof buf, prefix, "conv_reduce"), s, reduced, 1, 1, 1, true),
                  act); // (N,1,1,reduced)
  s = ef_activate(c->g, ef_layer_conv(c, cat(buf, sizeof buf, prefix, "conv_expand"), s, ch, 1, 1, 1, true),
                  EF_ACT_SIGMOID); // (N,1,1,C)
  ef_graph_scope(c->g, outer);
  return s;
}

ef_tensor *ef_layer_se(ef_layer_ctx *c, const char *prefix, ef_tensor *x, int reduced, ef_act act) {
  ef_tensor *s = ef_layer_se_gate(c, prefix, x, reduced, act);
  const char *outer = ef_graph_scope(c->g, EF_SCOPE_SE);
  ef_tensor *y = ef_channel_mul(c->g, x, s);
  ef_tensor_set_name(y, "%s", prefix);
  ef_graph_scope(c->g, outer);
  return y;
}

ef_tensor *ef_layer_mbconv(ef_layer_ctx *c, const char *prefix, ef_tensor *x, const ef_mbconv_spec *s) {
  EF_ASSERT(x->shape[3] == s->in, "%s: input has %lld channels, block expects %d", prefix, (long long)x->shape[3],
            s->in);
  char conv[EF_NAME_LEN], bn[EF_NAME_LEN];
  bool expand = s->expand != 1;
  int mid = s->in * s->expand;
  ef_tensor *h = x;
  // An evaluation graph for a backend that fuses them (EF_FUSE_EXPAND_DW) computes the expansion and
  // the depthwise convolution in one node, so that the expansion is never stored, where the block's
  // input has at most 40 channels (EfficientNets' first stages, whose expansions are products over
  // few inputs into large maps: B0's stages 2 and 3 and stage 4's first block) and the batch has
  // several images. One image's expansions stay in the cache anyway, and the separate kernels were
  // faster there (B0 at 224, batch 1: 7.2 against 7.0 ms; batch 2: 12.0 against 12.6; docs/perf.md).
  if (expand && !c->training && (c->g->fusions & EF_FUSE_EXPAND_DW) && s->in <= 40 && x->shape[0] > 1) {
    h = expand_dw(c, prefix, h, s, mid);
  } else {
    if (expand)
      h = ef_layer_conv_bn(c, cat(conv, sizeof conv, prefix, "conv_pw"), cat(bn, sizeof bn, prefix, "bn1"), h, mid, 1,
                           1, 1, s->act);
    h = ef_layer_conv_bn(c, cat(conv, sizeof conv, prefix, "conv_dw"),
                         cat(bn, sizeof bn, prefix, expand ? "bn2" : "bn1"), h, mid, s->kernel, s->stride, mid, s->act);
  }
  // An evaluation graph for a backend with a fast gated conv2d_bn (EF_FUSE_GATES) folds
  // squeeze-excite's scale into the projection's weights, per image, where the maps are large
  // against the output channels (H*W >= 8 * out): B0 at 224, batch 32, on the Xeon, 56x56, 144 -> 24
  // channels, channel_mul and the convolution took 7.7 ms, the gated one 5.8; on 14x14 maps, 672 ->
  // 112, 3.3 against 3.9 ms, the per-image weights' products being short (two profiled runs, the
  // second about 8% slower throughout).
  ef_tensor *gate = NULL;
  if (s->se_reduced && !c->training && (c->g->fusions & EF_FUSE_GATES) && h->shape[1] * h->shape[2] >= 8 * s->out)
    gate = ef_layer_se_gate(c, cat(conv, sizeof conv, prefix, "se"), h, s->se_reduced, s->act);
  else if (s->se_reduced) h = ef_layer_se(c, cat(conv, sizeof conv, prefix, "se"), h, s->se_reduced, s->act);
  h = conv_bn(c, cat(conv, sizeof conv, prefix, expand ? "conv_pwl" : "conv_pw"),
              cat(bn, sizeof bn, prefix, expand ? "bn3" : "bn2"), h, gate, s->out, 1, 1, 1, EF_ACT_NONE);
  if (s->stride == 1 && s->in == s->out) {
    if (c->training && s->drop_path > 0) {
      h = ef_dropout(c->g, h, s->drop_path, true);
      ef_tensor_set_name(h, "%s.drop_path", prefix);
    }
    h = ef_add(c->g, h, x);
  }
  ef_tensor_set_name(h, "%s", prefix);
  return h;
}

ef_tensor *ef_layer_head(ef_layer_ctx *c, ef_tensor *x, int channels, int classes, float dropout, ef_act act) {
  ef_tensor *h = ef_layer_conv_bn(c, "conv_head", "bn2", x, channels, 1, 1, 1, act);
  const char *outer = ef_graph_scope(c->g, EF_SCOPE_CLASSIFIER);
  ef_tensor *p = ef_reshape(c->g, ef_gap(c->g, h), 2, (int64_t[]){h->shape[0], channels}); // (N, channels)
  ef_tensor_set_name(p, "features");
  c->features = p;
  if (c->training && dropout > 0) {
    p = ef_dropout(c->g, p, dropout, false);
    ef_tensor_set_name(p, "head.dropout");
  }
  int64_t wshape[2] = {classes, channels}, bshape[1] = {classes};
  ef_init uniform = {EF_INIT_UNIFORM, (float)(1.0 / sqrt((double)classes))}; // uniform(+-1/sqrt(out))
  ef_tensor *w = ef_param(c->g, ef_layer_param(c, "classifier.weight", true, true, 2, wshape, uniform), 1, NULL);
  ef_tensor *b = ef_param(
      c->g, ef_layer_param(c, "classifier.bias", true, false, 1, bshape, (ef_init){EF_INIT_CONST, 0}), 1, NULL);
  ef_tensor *logits = ef_linear(c->g, p, w, b);
  ef_tensor_set_name(logits, "classifier");
  c->macs += h->shape[0] * (int64_t)classes * channels;
  ef_graph_scope(c->g, outer);
  return logits;
}
