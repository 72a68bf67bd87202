// `effnet info MODEL`: the architecture as in the paper's Table 1 (stage, operator, resolution,
// channels, layers), then parameters, multiply-adds at the model's resolution, and the planned
// activation memory of one training and one inference image; --layers adds a line per block,
// --json prints the same for machines.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/model.h"

typedef struct {
  bool layers, json;
  ef_effnet_spec spec;
} info_opts;

static const ef_flag info_flags[] = {
    {"--layers", EF_FLAG_BOOL, EF_FLAG_AT(info_opts, EF_FLAG_BOOL, layers), 0, 0, NULL, NULL,
     "one line per block: output shape, parameters, multiply-adds", false},
    {"--json", EF_FLAG_BOOL, EF_FLAG_AT(info_opts, EF_FLAG_BOOL, json), 0, 0, NULL, NULL, "machine-readable output",
     false},
};

typedef struct {
  int64_t params, macs;
  size_t train_bytes, infer_bytes;
} model_costs;

// Builds the graph of one image (training: forward, loss and backward; inference: forward) and
// plans its memory; counts parameters and multiply-adds from the inference graph.
static void measure(const ef_model_desc *d, bool training, FILE *summary, model_costs *out) {
  ef_store *s = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, s, d, &(ef_graph_opts){.batch = 1, .training = training, .summary = summary});
  size_t arena, naive;
  ef_plan_measure(m.g, &arena, &naive);
  *(training ? &out->train_bytes : &out->infer_bytes) = arena;
  if (!training) out->params = m.params, out->macs = m.macs;
  ef_model_graph_free(&m);
  ef_store_free(s);
}

// The paper's Table 1 rows: stem, seven MBConv stages, head.
typedef struct {
  char op[32];
  int resolution, channels, layers;
} table_row;

static int table(const ef_effnet_arch *a, table_row *rows) {
  int r = a->cfg.resolution, n = 0;
  rows[n++] = (table_row){"Conv3x3", r, a->stem, 1};
  r = (r + 1) / 2;
  for (int s = 0; s < EF_EFFNET_STAGES; s++) {
    const ef_effnet_stage *st = &a->stage[s];
    table_row *row = &rows[n++];
    snprintf(row->op, sizeof row->op, "MBConv%d, k%dx%d", st->expand, st->kernel, st->kernel);
    row->resolution = r, row->channels = st->out, row->layers = st->repeats;
    r = (r + st->stride - 1) / st->stride;
  }
  rows[n++] = (table_row){"Conv1x1 & Pooling & FC", r, a->head, 1};
  return n;
}

static void with_commas(char *buf, size_t len, int64_t v) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%lld", (long long)v), j = 0;
  for (int i = 0; i < n && j + 2 < (int)len; i++) {
    if (i && (n - i) % 3 == 0) buf[j++] = ',';
    buf[j++] = digits[i];
  }
  buf[j] = 0;
}

int ef_cmd_info(int argc, char **argv) {
  info_opts o = {.spec = ef_effnet_spec_none()};
  ef_flags f;
  ef_flags_init(
      &f, "info",
      "usage: effnet info MODEL [flags]     (MODEL: b0 ... b8, l2, lite0 ... lite4; or --phi F without MODEL)\n\n"
      "Prints a model's "
      "architecture (the paper's Table 1), parameters, multiply-adds and planned\nactivation memory per image.\n\n",
      NULL);
  ef_flags_add(&f, info_flags, (int)(sizeof info_flags / sizeof info_flags[0]), &o);
  ef_flags_add(&f, ef_model_flags, EF_MODEL_FLAGS, &o.spec);
  ef_effnet_config cfg;
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, &o.spec.name, 1);
  if (rc || (rc = ef_model_args_config("info", &o.spec, &cfg))) return rc;
  bool layers = o.layers, json = o.json;
  ef_model_desc *d = ef_xmalloc(sizeof *d);
  ef_model_desc_effnet(d, &cfg);
  ef_effnet_arch a;
  ef_effnet_arch_init(&a, &cfg);
  model_costs cost;
  if (layers && !json)
    printf("layers of %s at %dx%d (multiply-adds per image):\n", cfg.name, cfg.resolution, cfg.resolution);
  measure(d, false, layers && !json ? stdout : NULL, &cost);
  measure(d, true, NULL, &cost);
  free(d);
  table_row rows[EF_EFFNET_STAGES + 2];
  int n = table(&a, rows);
  const char *padding = cfg.padding == EF_PAD_SAME ? "same" : "symmetric";
  const char *act = ef_act_name(cfg.act);
  if (json) {
    printf("{\"model\": \"%s\", \"width\": %.17g, \"depth\": %.17g, \"resolution\": %d, \"dropout\": %g, "
           "\"drop_path\": %g, "
           "\"num_classes\": %d, \"in_channels\": %d, \"padding\": \"%s\", \"bn_eps\": %g, \"bn_momentum\": "
           "%g, \"activation\": \"%s\", \"squeeze_excite\": %s, \"fixed_stem_head\": %s,\n \"stages\": [",
           cfg.name, cfg.width, cfg.depth, cfg.resolution, cfg.dropout, cfg.drop_path, cfg.num_classes, cfg.in_channels,
           padding, cfg.bn_eps, cfg.bn_momentum, act, cfg.squeeze_excite ? "true" : "false",
           cfg.fixed_stem_head ? "true" : "false");
    for (int i = 0; i < n; i++)
      printf("%s\n  {\"stage\": %d, \"operator\": \"%s\", \"resolution\": %d, \"channels\": %d, \"layers\": %d}",
             i ? "," : "", i + 1, rows[i].op, rows[i].resolution, rows[i].channels, rows[i].layers);
    printf("],\n \"params\": %lld, \"macs\": %lld, \"activation_bytes_train\": %zu, \"activation_bytes_infer\": %zu}\n",
           (long long)cost.params, (long long)cost.macs, cost.train_bytes, cost.infer_bytes);
    return 0;
  }
  printf(
      "EfficientNet %s: width %g, depth %g, resolution %d, dropout %g, drop-path %g, %d classes, %d input channels,\n"
      "padding %s, BN eps %g momentum %g, %s, %s, stem and head %s\n\n",
      cfg.name, cfg.width, cfg.depth, cfg.resolution, cfg.dropout, cfg.drop_path, cfg.num_classes, cfg.in_channels,
      padding, cfg.bn_eps, cfg.bn_momentum, act, cfg.squeeze_excite ? "squeeze-excite" : "no squeeze-excite",
      cfg.fixed_stem_head ? "fixed" : "scaled");
  printf("stage  %-24s %11s %9s %7s\n", "operator", "resolution", "channels", "layers");
  for (int i = 0; i < n; i++) {
    char res[24];
    snprintf(res, sizeof res, "%dx%d", rows[i].resolution, rows[i].resolution);
    printf("%5d  %-24s %11s %9d %7d\n", i + 1, rows[i].op, res, rows[i].channels, rows[i].layers);
  }
  char params[32], macs[32];
  with_commas(params, sizeof params, cost.params);
  with_commas(macs, sizeof macs, cost.macs);
  printf("\nparameters         %s\n", params);
  printf("multiply-adds      %.3f B per image at %dx%d (%s)\n", (double)cost.macs / 1e9, cfg.resolution, cfg.resolution,
         macs);
  printf("activation memory  %.1f MiB per training image, %.1f MiB per inference image (planned, f32)\n",
         (double)cost.train_bytes / 1048576.0, (double)cost.infer_bytes / 1048576.0);
  return 0;
}
