// The ONNX exporter's file and errors, read back with protobuf-c (tests/export_onnx.py runs the files
// in ONNX Runtime and OpenVINO): opset, IR version, the dynamic batch, layouts, TF "same" pads where
// TF puts them, folded or kept batch norms, the normalization nodes, metadata; what cannot be
// exported is refused naming the node; a failed write (a full disk) leaves the previous file whole
// and no temporary file.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu/cpu.h"
#include "models/onnx.h"
#include "onnx/onnx.pb-c.h"
#include "tests/harness.h"

static char dir[] = "/tmp/effnet-onnx-XXXXXX";
static ef_backend *be;

static const char *path(const char *name) {
  static char buf[4][256];
  static int k;
  char *p = buf[k++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

// A B0 graph (10 classes, TF "same" padding) on (1,32,32,3) images, its store bound and initialized.
typedef struct {
  ef_store *s;
  ef_graph *g;
  ef_tensor *images, *logits;
  ef_effnet_config cfg;
} model;

// B0 at 32x32, 10 classes, TF padding; an evaluation graph with the CPU's fusions where `fusions` (on
// two images: one keeps the expansions apart).
static void model_new(model *m, bool training, unsigned fusions) {
  ef_effnet_preset("b0", &m->cfg);
  m->cfg.num_classes = 10, m->cfg.padding = EF_PAD_SAME, m->cfg.resolution = 32;
  m->s = ef_store_new();
  m->g = ef_graph_new(m->s, 0);
  m->g->fusions = fusions;
  m->images = ef_input(m->g, "images", EF_F32, 4, (int64_t[]){fusions ? 2 : 1, 32, 32, 3});
  m->logits = ef_effnet_build(&m->cfg, m->g, m->images, training, NULL, NULL);
  CHECK(ef_store_bind(m->s, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(m->s, 1);
}

static void model_free(model *m) {
  ef_graph_free(m->g);
  ef_store_free(m->s);
}

static Onnx__ModelProto *read_model(const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  uint8_t *buf = malloc((size_t)n);
  Onnx__ModelProto *m =
      fread(buf, 1, (size_t)n, f) == (size_t)n ? onnx__model_proto__unpack(NULL, (size_t)n, buf) : NULL;
  fclose(f);
  free(buf);
  return m;
}

static int count_op(const Onnx__ModelProto *m, const char *op) {
  int n = 0;
  for (size_t i = 0; i < m->graph->n_node; i++) n += !strcmp(m->graph->node[i]->op_type, op);
  return n;
}

static int count_graph_op(const ef_graph *g, ef_op op) {
  int n = 0;
  for (int i = 0; i < g->n; i++) n += g->nodes[i]->op == op;
  return n;
}

static const char *meta_value(const Onnx__ModelProto *m, const char *key) {
  for (size_t i = 0; i < m->n_metadata_props; i++)
    if (!strcmp(m->metadata_props[i]->key, key)) return m->metadata_props[i]->value;
  return NULL;
}

static const Onnx__AttributeProto *attribute(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (!strcmp(n->attribute[i]->name, name)) return n->attribute[i];
  return NULL;
}

// A value's dimensions as "N,3,32,32".
static const char *dims_str(const Onnx__ValueInfoProto *v, char *buf, size_t len) {
  const Onnx__TensorShapeProto *s = v->type->tensor_type->shape;
  size_t used = 0;
  buf[0] = 0;
  for (size_t i = 0; i < s->n_dim && used < len; i++) {
    const Onnx__TensorShapeProto__Dimension *d = s->dim[i];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
      used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", d->dim_param);
    else used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)d->dim_value);
  }
  return buf;
}

// The default export: opset, IR version, input and output with a free batch, batch norm folded
// into every convolution, TF "same" pads of the stem (3x3, stride 2 on 32x32: one row and column,
// at the bottom and right) in ONNX's order [top, left, bottom, right], metadata.
static void test_default(void) {
  model m;
  model_new(&m, false, 0);
  float mean[3] = {0.5f, 0.25f, 0.125f}, std[3] = {0.2f, 0.4f, 0.8f};
  ef_onnx_opts o = {.mean = mean, .std = std, .cfg = &m.cfg, .class_names = "cat\nsay \"hi\"\n", .source = "test"};
  CHECK(ef_onnx_export(m.g, m.images, m.logits, m.s, &o, path("b0.onnx")) == EF_OK, "%s", ef_last_error());
  Onnx__ModelProto *p = read_model(path("b0.onnx"));
  CHECK(p, "protobuf-c cannot read back %s", path("b0.onnx"));
  if (p) {
    char in[64], out[64];
    CHECK(p->ir_version == EF_ONNX_IR_VERSION && p->n_opset_import == 1 && p->opset_import[0]->version == 17 &&
              !strcmp(p->producer_name, "effnet"),
          "IR version %lld, opset %lld", (long long)p->ir_version, (long long)p->opset_import[0]->version);
    CHECK(p->graph->n_input == 1 && !strcmp(p->graph->input[0]->name, "images") &&
              !strcmp(dims_str(p->graph->input[0], in, sizeof in), "N,3,32,32") && p->graph->n_output == 1 &&
              !strcmp(p->graph->output[0]->name, "logits") &&
              !strcmp(dims_str(p->graph->output[0], out, sizeof out), "N,10"),
          "input %s (%s), output %s (%s)", p->graph->input[0]->name, in, p->graph->output[0]->name, out);
    int convs = count_graph_op(m.g, EF_OP_CONV2D) + count_graph_op(m.g, EF_OP_CONV2D_BN);
    CHECK(count_op(p, "Conv") == convs && count_op(p, "BatchNormalization") == 0, "%d Conv for %d convolutions, %d BN",
          count_op(p, "Conv"), convs, count_op(p, "BatchNormalization"));
    const Onnx__NodeProto *stem = p->graph->node[0];
    const Onnx__AttributeProto *pads = attribute(stem, "pads");
    CHECK(!strcmp(stem->op_type, "Conv") && pads && pads->n_ints == 4 && pads->ints[0] == 0 && pads->ints[1] == 0 &&
              pads->ints[2] == 1 && pads->ints[3] == 1,
          "the stem's pads [top, left, bottom, right] are [0, 0, 1, 1]");
    const char *names = meta_value(p, "class_names"), *config = meta_value(p, "config");
    CHECK(names && !strcmp(names, "[\"cat\", \"say \\\"hi\\\"\"]"), "class_names %s", names ? names : "(none)");
    CHECK(config && strstr(config, "\"num_classes\": 10") && strstr(config, "\"padding\": \"same\"") &&
              strstr(config, "\"bn_eps\": 1e-05"),
          "config %s", config ? config : "(none)");
    CHECK(meta_value(p, "mean") && !strcmp(meta_value(p, "mean"), "0.5,0.25,0.125") && meta_value(p, "std") &&
              !strcmp(meta_value(p, "std"), "0.2,0.4,0.8") && meta_value(p, "model") &&
              !strcmp(meta_value(p, "model"), "b0"),
          "mean, std and model in the metadata");
    onnx__model_proto__free_unpacked(p, NULL);
  }
  model_free(&m);
}

// --layout nhwc, --keep-bn, --include-normalization 0-255: a Transpose to NCHW, then (x - 255 mean)
// / (255 std), and one BatchNormalization per batch norm of the graph, here one with the CPU's fusions
// (expand_dw: two convolutions, two batch norms).
static void test_options(void) {
  model m;
  model_new(&m, false, EF_FUSE_GATES | EF_FUSE_EXPAND_DW);
  float mean[3] = {0.5f, 0.25f, 0.125f}, std[3] = {0.2f, 0.4f, 0.8f};
  ef_onnx_opts o = {.layout = EF_ONNX_NHWC, .keep_bn = true, .pixel_max = 255, .mean = mean, .std = std};
  CHECK(ef_onnx_export(m.g, m.images, m.logits, m.s, &o, path("nhwc.onnx")) == EF_OK, "%s", ef_last_error());
  Onnx__ModelProto *p = read_model(path("nhwc.onnx"));
  CHECK(p, "protobuf-c cannot read back %s", path("nhwc.onnx"));
  if (p) {
    char in[64];
    Onnx__NodeProto **n = p->graph->node;
    CHECK(!strcmp(dims_str(p->graph->input[0], in, sizeof in), "N,32,32,3"), "input %s", in);
    CHECK(!strcmp(n[0]->op_type, "Transpose") && !strcmp(n[1]->op_type, "Sub") && !strcmp(n[2]->op_type, "Div"),
          "first nodes %s, %s, %s", n[0]->op_type, n[1]->op_type, n[2]->op_type);
    const Onnx__TensorProto *sub = NULL;
    for (size_t i = 0; i < p->graph->n_initializer; i++)
      if (!strcmp(p->graph->initializer[i]->name, n[1]->input[1])) sub = p->graph->initializer[i];
    const float *v = sub ? (const float *)sub->raw_data.data : NULL;
    CHECK(v && sub->n_dims == 4 && sub->dims[1] == 3 && v[0] == 127.5f && v[1] == 63.75f && v[2] == 31.875f,
          "the subtracted mean is 255 * mean, shaped (1,3,1,1)");
    int bns = count_graph_op(m.g, EF_OP_CONV2D_BN) + 2 * count_graph_op(m.g, EF_OP_EXPAND_DW);
    int convs = bns + count_graph_op(m.g, EF_OP_CONV2D); // and squeeze-excite's
    CHECK(count_graph_op(m.g, EF_OP_EXPAND_DW) == 5, "%d expand_dw nodes", count_graph_op(m.g, EF_OP_EXPAND_DW));
    CHECK(count_op(p, "BatchNormalization") == bns && count_op(p, "Conv") == convs,
          "%d BatchNormalization and %d Conv for %d batch norms", count_op(p, "BatchNormalization"),
          count_op(p, "Conv"), bns);
    onnx__model_proto__free_unpacked(p, NULL);
  }
  model_free(&m);
}

static void expect_refusal(const char *what, const ef_graph *g, const ef_tensor *images, const ef_tensor *out,
                           const ef_store *s, const char *needle) {
  ef_status st = ef_onnx_export(g, images, out, s, &(ef_onnx_opts){0}, path("refused.onnx"));
  CHECK(st == EF_ERR_UNSUPPORTED && strstr(ef_last_error(), needle), "%s: status %d, '%s'", what, st, ef_last_error());
  CHECK(access(path("refused.onnx"), F_OK) != 0, "%s: a file was written", what);
}

// What has no ONNX form is refused with the node's name and why, and writes nothing.
static void test_refusals(void) {
  model train;
  model_new(&train, true, 0);
  expect_refusal("a training graph", train.g, train.images, train.logits, train.s,
                 "batch statistics make a training graph");
  model_free(&train);

  model m;
  model_new(&m, false, 0);
  expect_refusal("a loss", m.g, m.images, ef_mean(m.g, m.logits), m.s, "ONNX inference has no counterpart");
  model_free(&m);

  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 0);
  ef_tensor *x = ef_input(g, "images", EF_F32, 4, (int64_t[]){2, 1, 1, 3});
  int e = ef_store_add(s, "proj.weight", true, true, 2, (int64_t[]){5, 3}, (ef_init){EF_INIT_CONST, 1});
  int rs = ef_store_add(s, "bn.running", false, false, 2, (int64_t[]){2, 3}, (ef_init){EF_INIT_CONST, 1}),
      af = ef_store_add(s, "bn.affine", true, false, 2, (int64_t[]){2, 3}, (ef_init){EF_INIT_CONST, 1});
  ef_tensor *w = ef_param(g, e, 1, NULL);
  ef_tensor *rows = ef_reshape(g, ef_linear(g, x, w, NULL), 2, (int64_t[]){2, 5}); // (2,1,1,5) as rows
  ef_tensor *batch = ef_reshape(g, x, 2, (int64_t[]){1, 6});
  ef_tensor *computed = ef_conv2d(g, x, ef_reshape(g, x, 4, (int64_t[]){2, 1, 1, 3}), NULL, 1, 1, 1, EF_PAD_SYMMETRIC);
  ef_tensor *stored = ef_activate(g, w, EF_ACT_RELU);
  ef_tensor *bare = ef_bn(g, x, ef_param(g, rs, 1, NULL), ef_param(g, af, 1, NULL), 1e-3f, EF_ACT_NONE, false);
  CHECK(ef_store_bind(s, be) == EF_OK, "%s", ef_last_error());
  expect_refusal("a product of 4-D rows", g, x, rows, s, "only a product of (N,features) rows");
  expect_refusal("a reshape across the batch", g, x, batch, s, "changes the batch dimension");
  expect_refusal("computed weights", g, x, computed, s, "weights are computed in the graph");
  expect_refusal("a stored tensor as an activation", g, x, stored, s, "reads a stored tensor as an activation");
  expect_refusal("a batch norm of its own", g, x, bare, s, "exports only folded into its convolution");
  ef_graph_free(g);
  ef_store_free(s);

  model h;
  model_new(&h, false, 0);
  ef_graph_set_precision(h.g, EF_BF16, false);
  expect_refusal("bf16 activations", h.g, h.images, h.logits, h.s, "is not float32");
  model_free(&h);
}

// A write that fails part-way (the file size limit stands in for a full disk) reports it, leaves the
// previous file as it was and removes its temporary file; a missing folder fails before writing.
static void test_failed_write(void) {
  model m;
  model_new(&m, false, 0);
  ef_onnx_opts o = {.cfg = &m.cfg};
  const char *file = path("keep.onnx");
  FILE *f = fopen(file, "w");
  CHECK(f && fputs("previous", f) >= 0 && fclose(f) == 0, "writing %s", file);
  struct rlimit before, limit;
  getrlimit(RLIMIT_FSIZE, &before);
  limit = before, limit.rlim_cur = 1 << 16;
  signal(SIGXFSZ, SIG_IGN); // write() then fails with EFBIG
  CHECK(setrlimit(RLIMIT_FSIZE, &limit) == 0, "setrlimit");
  ef_status st = ef_onnx_export(m.g, m.images, m.logits, m.s, &o, file);
  setrlimit(RLIMIT_FSIZE, &before);
  CHECK(st == EF_ERR_IO && strstr(ef_last_error(), "disk full") && strstr(ef_last_error(), "is unchanged"),
        "status %d, '%s'", st, ef_last_error());
  char buf[16] = "";
  f = fopen(file, "r");
  CHECK(f && fgets(buf, sizeof buf, f) && !strcmp(buf, "previous"), "the previous file changed: '%s'", buf);
  if (f) fclose(f);
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", file, (long)getpid());
  CHECK(access(tmp, F_OK) != 0, "%s was left behind", tmp);
  st = ef_onnx_export(m.g, m.images, m.logits, m.s, &o, "/nonexistent/folder/x.onnx");
  CHECK(st == EF_ERR_IO && strstr(ef_last_error(), "cannot create"), "status %d, '%s'", st, ef_last_error());
  model_free(&m);
}

int main(void) {
  test_mkdtemp(dir);
  be = ef_cpu_backend_new(2);
  RUN(test_default);
  RUN(test_options);
  RUN(test_refusals);
  RUN(test_failed_write);
  ef_backend_free(be);
  test_rmtree(dir);
  return test_exit_code();
}
