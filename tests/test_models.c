// The EfficientNet zoo: the exact parameter counts of B0-B8, L2 and Lite0-Lite4 (1000 classes; the
// references agree), multiply-adds equal to the references' graphs and close to the paper's Table 2, TF's
// channel rounding, custom phi, a B0 training step on the CPU that runs and stays finite, the
// per-node costs and scopes the benchmark's profile sums, and which tensors mixed precision
// makes 16-bit. Graphs come from the builder every command uses (train/model.h).
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "tests/harness.h"
#include "train/step.h"

// The graph of a configuration as every command builds it (train/model.h), at `batch` images of
// `size` pixels (0: its resolution): the caller frees m and its store.
static ef_store *build(ef_model_graph *m, const ef_effnet_config *cfg, int64_t batch, int size, bool training,
                       ef_dtype activations) {
  ef_model_desc *d = malloc(sizeof *d);
  ef_model_desc_effnet(d, cfg);
  ef_store *s = ef_store_new();
  ef_model_graph_new(m, s, d,
                     &(ef_graph_opts){.batch = batch,
                                      .training = training,
                                      .smoothing = 0.1f,
                                      .seed = 1,
                                      .image_size = size,
                                      .activations = activations,
                                      .fusions = EF_FUSE_GATES | EF_FUSE_EXPAND_DW});
  free(d);
  return s;
}

static void release(ef_model_graph *m, ef_store *s) {
  ef_model_graph_free(m);
  ef_store_free(s);
}

// Builds the inference graph of a configuration at batch 1 and its own resolution.
static void count(const ef_effnet_config *cfg, int64_t *params, int64_t *macs, size_t *store_params) {
  ef_model_graph m;
  ef_store *s = build(&m, cfg, 1, 0, false, EF_F32);
  *params = m.params, *macs = m.macs, *store_params = ef_store_count(s, true);
  release(&m, s);
}

// Multiply-adds of every Conv2d and Linear of torchvision 0.14's efficientnet_b* (B0-B7), and of
// efficientnet_lite_pytorch 0.1.0 (efficientnet_pytorch's code with the Lite builder: B8, L2,
// Lite0-Lite4), at batch 1 and the model's resolution, counted with forward hooks (output elements
// x in/groups x KH x KW, and output elements x in_features), and the paper's Table 2 (B0-B7). The
// paper's B4 (4.2B) and B5 (9.9B) lie 4.6% and 3.7% below the count of the very architecture whose
// parameters match the paper exactly; the others are within 2%. So the exact check is against the
// references' graphs, and the paper check allows 5% for those two.
static void test_presets_params_and_macs(void) {
  static const struct {
    const char *name;
    int64_t params, reference_macs;
    double gmacs, tol; // the paper's; 0: not in its Table 2
  } presets[] = {
      {"b0", 5288548, 385814752, 0.39, 0.03},  {"b1", 7794184, 686802832, 0.70, 0.03},
      {"b2", 9109994, 993561872, 1.0, 0.03},   {"b3", 12233232, 1827141392, 1.8, 0.03},
      {"b4", 19341616, 4393771024, 4.2, 0.05}, {"b5", 30389784, 10266384752, 9.9, 0.05},
      {"b6", 43040704, 19067593536, 19, 0.03}, {"b7", 66347960, 37745884192, 37, 0.03},
      {"b8", 87413142, 62597461568, 0, 0},     {"l2", 480309308, 475703653280, 0, 0},
      {"lite0", 4652008, 385187552, 0, 0},     {"lite1", 5416680, 600185232, 0, 0},
      {"lite2", 6092072, 859736272, 0, 0},     {"lite3", 8197096, 1383321872, 0, 0},
      {"lite4", 13006568, 2553034336, 0, 0},
  };
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
    ef_effnet_config cfg;
    CHECK(ef_effnet_preset(presets[i].name, &cfg) == EF_OK, "%s", ef_last_error());
    int64_t params, macs;
    size_t stored;
    count(&cfg, &params, &macs, &stored);
    double gmacs = (double)macs / 1e9, paper = presets[i].gmacs;
    printf("  %s: %lld parameters, %.3f GMACs at %d", presets[i].name, (long long)params, gmacs, cfg.resolution);
    if (paper) printf(" (paper %.2g, %+.1f%%)", paper, 100 * (gmacs / paper - 1));
    printf("\n");
    CHECK(params == presets[i].params && (int64_t)stored == params, "%s: %lld parameters (store %zu), want %lld",
          presets[i].name, (long long)params, stored, (long long)presets[i].params);
    CHECK(macs == presets[i].reference_macs, "%s: %lld MACs, the reference's graph has %lld", presets[i].name,
          (long long)macs, (long long)presets[i].reference_macs);
    CHECK(!paper || fabs(gmacs - paper) / paper <= presets[i].tol, "%s: %.3f GMACs, paper %.2g", presets[i].name, gmacs,
          paper);
  }
}

static void test_rounding(void) {
  struct {
    int filters;
    double width;
    int want;
  } f[] = {
      {32, 1.0, 32}, {32, 1.1, 32}, {1280, 1.1, 1408}, {32, 1.2, 40},   {1280, 2.0, 2560}, {16, 1.8, 32},
      {24, 1.4, 32}, {40, 1.6, 64}, {8, 0.1, 8},       {112, 1.8, 200}, {192, 1.4, 272},   {320, 1.6, 512},
  };
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    CHECK(ef_round_filters(f[i].filters, f[i].width) == f[i].want, "round_filters(%d, %g) = %d, want %d", f[i].filters,
          f[i].width, ef_round_filters(f[i].filters, f[i].width), f[i].want);
  CHECK(ef_round_repeats(2, 1.1) == 3 && ef_round_repeats(3, 3.1) == 10 && ef_round_repeats(1, 1.0) == 1,
        "round_repeats");
}

static void test_custom_phi(void) {
  ef_effnet_config cfg;
  ef_effnet_from_phi(1.0, EF_COMPOUND_PAPER, &cfg);
  CHECK(fabs(cfg.width - 1.1) < 1e-12 && fabs(cfg.depth - 1.2) < 1e-12 && cfg.resolution == 258, "phi 1: %g %g %d",
        cfg.width, cfg.depth, cfg.resolution);
  ef_effnet_from_phi(2.5, EF_COMPOUND_PAPER, &cfg);
  CHECK(ef_effnet_validate(&cfg) == EF_OK, "%s", ef_last_error());
  int64_t params, macs;
  size_t stored;
  count(&cfg, &params, &macs, &stored);
  printf("  phi 2.5: width %.4f, depth %.4f, resolution %d: %lld parameters, %.2f GMACs\n", cfg.width, cfg.depth,
         cfg.resolution, (long long)params, (double)macs / 1e9);
  CHECK(params > 12233232 && params < 19341616, "phi 2.5 lies between B3 and B4 in size: %lld", (long long)params);
  cfg.resolution = 16;
  CHECK(ef_effnet_validate(&cfg) == EF_ERR_INVALID && strstr(ef_last_error(), "resolution 16"), "%s", ef_last_error());
  CHECK(ef_effnet_preset("b9", &cfg) == EF_ERR_INVALID && strstr(ef_last_error(), "unknown model 'b9'"), "%s",
        ef_last_error());
}

// The Lite switch: Lite4's stem, head and first and last stages are not scaled; its graph has no
// squeeze-excite and no swish, and relu6 after every batch norm but the projections'; --phi with
// --variant lite scales Lite0 with Lite's conventions; B0 switched to Lite is Lite0 by another name.
static void test_lite_switch(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("lite4", &cfg);
  ef_effnet_arch a;
  ef_effnet_arch_init(&a, &cfg);
  CHECK(a.stem == 32 && a.head == 1280 && a.stage[0].in == 32 && a.stage[0].repeats == 1 && a.stage[6].repeats == 1 &&
            a.stage[1].repeats == 4 && a.stage[6].out == 448 && a.blocks == 30,
        "lite4: stem %d, head %d, repeats %d %d %d, last %d channels, %d blocks", a.stem, a.head, a.stage[0].repeats,
        a.stage[1].repeats, a.stage[6].repeats, a.stage[6].out, a.blocks);
  CHECK(!strcmp(ef_effnet_variant(&cfg), "lite") && cfg.padding == EF_PAD_SAME && cfg.bn_eps == 1e-3f &&
            cfg.bn_momentum == 0.01f,
        "lite4's conventions");
  ef_model_graph m;
  ef_store *s = build(&m, &cfg, 1, 64, false, EF_F32);
  int se = 0, swish = 0, relu6 = 0, plain = 0;
  for (int i = 0; i < m.g->n; i++) {
    const ef_tensor *t = m.g->nodes[i];
    se += t->op == EF_OP_CHANNEL_MUL || (t->scope && !strcmp(t->scope, EF_SCOPE_SE));
    if (t->op == EF_OP_CONV2D_BN || t->op == EF_OP_EXPAND_DW) { // an evaluation graph: each batch norm
      int bns = t->op == EF_OP_EXPAND_DW ? 2 : 1;               // folded into its convolution
      ef_act act = t->p.conv.act;
      swish += bns * (act == EF_ACT_SWISH), relu6 += bns * (act == EF_ACT_RELU6), plain += bns * (act == EF_ACT_NONE);
    }
  }
  // Stem, head, and per block: expansion (all but block 0's) and depthwise; the projections have none.
  CHECK(se == 0 && swish == 0 && relu6 == 2 + 2 * a.blocks - 1 && plain == a.blocks,
        "lite4 graph: %d squeeze-excite nodes, %d swish, %d relu6, %d plain batch norms", se, swish, relu6, plain);
  release(&m, s);

  ef_effnet_spec spec = ef_effnet_spec_none();
  spec.phi = 1, spec.variant = "lite";
  CHECK(ef_effnet_spec_config(&spec, &cfg) == EF_OK, "%s", ef_last_error());
  ef_effnet_arch_init(&a, &cfg);
  CHECK(!strcmp(ef_effnet_variant(&cfg), "lite") && cfg.padding == EF_PAD_SAME && a.stem == 32 && a.head == 1280 &&
            a.stage[6].out == ef_round_filters(320, 1.1) && a.stage[1].repeats == 3,
        "phi 1 lite: %s, stem %d head %d", cfg.name, a.stem, a.head);
  spec = ef_effnet_spec_none();
  spec.name = "b0", spec.variant = "lite";
  int64_t params, macs;
  size_t stored;
  CHECK(ef_effnet_spec_config(&spec, &cfg) == EF_OK && !strcmp(cfg.name, "b0-custom"), "%s", cfg.name);
  count(&cfg, &params, &macs, &stored);
  CHECK(params == 4652008, "b0 switched to lite: %lld parameters, lite0 has 4652008", (long long)params);
  spec.variant = "mobile";
  CHECK(ef_effnet_spec_config(&spec, &cfg) == EF_ERR_INVALID && strstr(ef_last_error(), "unknown variant 'mobile'"),
        "%s", ef_last_error());
}

// The training graph has one drop-path per residual block, dropping with drop_path * i / N for
// block i of N, and one dropout before the classifier; the inference graph has none.
static void test_dropout_schedule(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b2", &cfg);
  ef_effnet_arch a;
  ef_effnet_arch_init(&a, &cfg);
  for (int training = 0; training < 2; training++) {
    ef_model_graph m;
    ef_store *s = build(&m, &cfg, 1, 64, training, EF_F32);
    const ef_graph *g = m.g;
    int drop_paths = 0, heads = 0, residual = 0, others = 0;
    for (int i = 0; i < g->n && g->nodes[i] != m.loss;
         i++) { // the forward pass (the backward's dropouts follow the loss)
      const ef_tensor *t = g->nodes[i];
      if (t->op != EF_OP_DROPOUT) continue;
      int stage, index;
      if (sscanf(t->name, "blocks.%d.%d.drop_path", &stage, &index) == 2 && t->p.dropout.per_sample) {
        int block = index; // the block's position in the whole network
        for (int s2 = 0; s2 < stage; s2++) block += a.stage[s2].repeats;
        double want = 0.2 * block / a.blocks;
        CHECK(fabs(t->p.dropout.rate - want) < 1e-6, "%s drops with %g, want 0.2 * %d / %d = %g", t->name,
              t->p.dropout.rate, block, a.blocks, want);
        drop_paths++;
      } else if (!strcmp(t->name, "head.dropout") && !t->p.dropout.per_sample) {
        CHECK(t->p.dropout.rate == cfg.dropout, "head dropout %g, want %g", t->p.dropout.rate, cfg.dropout);
        heads++;
      } else {
        others++;
      }
    }
    for (int s2 = 0; s2 < EF_EFFNET_STAGES; s2++) // residual: every block of a stage but a first that changes shape
      residual += a.stage[s2].repeats - (a.stage[s2].stride != 1 || a.stage[s2].in != a.stage[s2].out);
    int want_paths = training ? residual : 0; // block 0 (rate 0) is never residual: 32w -> 16w channels
    CHECK(drop_paths == want_paths && heads == training && others == 0,
          "%s graph: %d drop-paths (want %d), %d head dropouts, %d other dropouts", training ? "training" : "inference",
          drop_paths, want_paths, heads, others);
    release(&m, s);
  }
}

// B0 with 10 classes at size x size, batch 2, its store bound to a new CPU backend *be.
static ef_store *b0_on_cpu(ef_model_graph *m, ef_backend **be, int size, bool training) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.num_classes = 10;
  *be = ef_cpu_backend_new(0);
  ef_store *s = build(m, &cfg, 2, size, training, EF_F32);
  CHECK(ef_store_bind(s, *be) == EF_OK, "%s", ef_last_error());
  return s;
}

// B0 at 64x64, batch 2: one planned, poisoned training step on the CPU (the trainer's step).
static void test_b0_step_on_cpu(void) {
  ef_backend *be;
  ef_model_graph m;
  ef_store *s = b0_on_cpu(&m, &be, 64, true);
  ef_store_initialize(s, 3);
  CHECK(ef_model_graph_plan(&m, be, &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
  ef_step step;
  CHECK(ef_step_init(&step, &m, &(ef_step_config){.optim = ef_optim_defaults(EF_OPT_SGD)}) == EF_OK, "%s",
        ef_last_error());
  float *xv = malloc(sizeof(float) * 2 * 64 * 64 * 3);
  test_fill_uniform(xv, 2 * 64 * 64 * 3, 1, 0, -1, 1);
  ef_step_result r;
  ef_step_run(&step, xv, (int32_t[]){3, 7}, NULL, 0.1, 0, &r);
  double gnorm = 0;
  for (size_t i = 0; i < s->numel[0]; i++) gnorm += (double)s->mem[EF_ARENA_GRAD][i] * s->mem[EF_ARENA_GRAD][i];
  const ef_plan *p = m.plan;
  printf("  B0 64x64 batch 2: loss %.4f, gradient norm %.4g, %d nodes, arena %.1f MiB (naive %.1f MiB)\n", r.loss,
         sqrt(gnorm), p->n, p->arena_bytes / 1048576.0, p->naive_bytes / 1048576.0);
  CHECK(isfinite(r.loss) && r.loss > 0 && isfinite(gnorm) && gnorm > 0 && r.applied, "loss %g, gradient norm %g",
        r.loss, gnorm);
  free(xv);
  ef_step_free(&step);
  release(&m, s);
  ef_backend_free(be);
}

// An evaluation plan derives its convolutions' weights (batch norm folded in, reordered for oneDNN)
// at a run whose weights_unchanged is false, and reuses them while it is true: new weights take
// effect at the next run that says so (as ef_model_evaluate's first batch does), with the same
// logits as a fresh plan's.
static void test_weights_derived_again(void) {
  ef_backend *be;
  ef_model_graph m;
  ef_store *s = b0_on_cpu(&m, &be, 32, false);
  CHECK(ef_model_graph_plan(&m, be, NULL) == EF_OK, "%s", ef_last_error());
  float xv[2 * 32 * 32 * 3], a[20], again[20], stale[20], b[20], fresh[20];
  test_fill_uniform(xv, 2 * 32 * 32 * 3, 1, 0, -1, 1);
  ef_plan_set(m.plan, m.images, xv);
  ef_store_initialize(s, 3);
  test_fill_uniform(s->mem[EF_ARENA_STATE], (int64_t)s->numel[1], 5, 0, 0.2f, 1.5f); // running statistics
  ef_plan_run(m.plan, &(ef_run_ctx){0});
  ef_plan_get(m.plan, m.logits, a);
  ef_plan_run(m.plan, &(ef_run_ctx){.weights_unchanged = true});
  ef_plan_get(m.plan, m.logits, again);
  ef_store_initialize(s, 4);
  test_fill_uniform(s->mem[EF_ARENA_STATE], (int64_t)s->numel[1], 6, 0, 0.2f, 1.5f);
  // Told nothing changed: the folded convolutions keep the old weights (the nodes that read the
  // store directly, the squeeze-excite convolutions and the classifier, see the new ones).
  ef_plan_run(m.plan, &(ef_run_ctx){.weights_unchanged = true});
  ef_plan_get(m.plan, m.logits, stale);
  ef_plan_run(m.plan, &(ef_run_ctx){0});
  ef_plan_get(m.plan, m.logits, b);
  ef_plan_free(m.plan);
  CHECK(ef_model_graph_plan(&m, be, NULL) == EF_OK, "%s", ef_last_error());
  ef_plan_set(m.plan, m.images, xv);
  ef_plan_run(m.plan, &(ef_run_ctx){0});
  ef_plan_get(m.plan, m.logits, fresh);
  CHECK(!memcmp(a, again, sizeof a), "reused weights give the same logits");
  CHECK(memcmp(a, b, sizeof a) != 0, "new weights change the logits (%g, then %g)", a[0], b[0]);
  CHECK(memcmp(stale, b, sizeof b) != 0, "a run told the weights are unchanged reuses what it derived");
  CHECK(!memcmp(b, fresh, sizeof b), "after new weights, the plan's logits equal a fresh plan's (%g, %g)", b[0],
        fresh[0]);
  release(&m, s);
  ef_backend_free(be);
}

// The per-node costs behind `effnet bench --profile`: the multiply-adds of the nodes add up to the
// layers' count (forward), and to three passes less the stem's input gradient (training); the
// squeeze-excite and classifier scopes reach their gradient nodes, and only theirs.
static void test_node_costs_and_scopes(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.num_classes = 10;
  for (int training = 0; training < 2; training++) {
    ef_model_graph m;
    ef_store *s = build(&m, &cfg, 2, 64, training, EF_F32);
    const ef_graph *g = m.g;
    const ef_tensor *x = m.images;
    int64_t layer_macs = m.macs * 2; // the whole batch's
    int64_t macs = 0, stem = 0, se_grads = 0, cls_grads = 0, channel_mul = 0, fused = 0, spread = 0, bytes = 0,
            gated = 0, expand_dw = 0;
    for (int i = 0; i < g->n; i++) {
      const ef_tensor *t = g->nodes[i];
      macs += ef_node_macs(t);
      bytes += ef_node_bytes(t);
      if ((t->op == EF_OP_CONV2D || t->op == EF_OP_CONV2D_BN) && t->src[0] == x) stem = ef_node_macs(t);
      bool se = t->scope && !strcmp(t->scope, EF_SCOPE_SE), cls = t->scope && !strcmp(t->scope, EF_SCOPE_CLASSIFIER);
      spread += t->op == EF_OP_GAP_BWD;
      if (t->op == EF_OP_CHANNEL_MUL) {
        channel_mul++, fused += t->n_src == 3;
        CHECK(se, "channel_mul '%s' outside the squeeze-excite scope", t->name);
      }
      if (t->op == EF_OP_CONV2D_BN && t->n_src == 5) {
        gated++;
        const char *scope = t->src[4]->scope;
        CHECK(scope && !strcmp(scope, EF_SCOPE_SE), "the gate of '%s' outside the squeeze-excite scope", t->name);
      }
      if (t->op == EF_OP_EXPAND_DW) { // its weights are the two conv_bn's
        expand_dw++;
        CHECK(strstr(t->src[1]->name, ".conv_pw.") && strstr(t->src[4]->name, ".conv_dw.") &&
                  strstr(t->src[2]->name, ".bn1.") && strstr(t->src[5]->name, ".bn2.") && strstr(t->name, ".bn2"),
              "expand_dw '%s' reads %s, %s, %s, %s", t->name, t->src[1]->name, t->src[2]->name, t->src[4]->name,
              t->src[5]->name);
      }
      if (t->op == EF_OP_CONV2D_BWD_WEIGHT && se) se_grads++;
      if (t->op == EF_OP_LINEAR_BWD_WEIGHT) cls_grads += cls;
      if ((t->op == EF_OP_BN || t->op == EF_OP_BN_BWD_DATA) && (se || cls))
        CHECK(0, "'%s' is scoped %s", t->name, t->scope);
    }
    int64_t want = training ? 3 * layer_macs - stem : layer_macs;
    printf("  %s: %lld node MACs (layers: %lld; stem %lld), %lld bytes\n", training ? "training" : "inference",
           (long long)macs, (long long)layer_macs, (long long)stem, (long long)bytes);
    CHECK(stem == 2LL * 32 * 32 * 32 * 27, "stem %lld MACs", (long long)stem);
    CHECK(macs == want, "nodes sum to %lld MACs, want %lld", (long long)macs, (long long)want);
    // Inference folds the scale into the projection where the maps are large (H*W >= 8 * out): at 64x64,
    // stage 1's block (32x32 -> 16) and stage 2's two (16x16 -> 24).
    CHECK(channel_mul + gated == (training ? 32 : 16) && gated == (training ? 0 : 3),
          "%lld squeeze-excite scales, %lld folded into gated convolutions", (long long)channel_mul,
          (long long)gated); // + dy * s
    // Each block's input gradient: dy * s and the pooling's share in one node (core/op.c's backward_gap);
    // the head's pooling alone spreads its gradient.
    CHECK(fused == (training ? 16 : 0) && spread == training, "%lld fused input gradients, %lld gap_bwd",
          (long long)fused, (long long)spread);
    // Inference's expansion and depthwise convolution in one node where the block's input has at most 40
    // channels: stage 2's two blocks (16, 24), stage 3's (24, 40), stage 4's first (40).
    CHECK(expand_dw == (training ? 0 : 5), "%lld expand_dw nodes", (long long)expand_dw);
    CHECK(se_grads == (training ? 32 : 0) && cls_grads == training, "%lld SE weight gradients, %lld classifier",
          (long long)se_grads, (long long)cls_grads);
    release(&m, s);
  }
}

// ef_graph_set_precision on a B0 training graph: activations and their gradients with a spatial
// size above 1x1 become bf16; statistics, the squeeze-excite path, the classifier, the loss and
// every parameter gradient stay f32; views follow their source; the plan shrinks; and the CPU
// backend refuses the graph with a message naming the op and the type.
static void test_mixed_precision_types(void) {
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.num_classes = 10;
  size_t arena[2];
  for (int half = 0; half < 2; half++) {
    ef_model_graph m;
    ef_store *s = build(&m, &cfg, 2, 64, true, half ? EF_BF16 : EF_F32);
    ef_graph *g = m.g;
    const ef_tensor *out = m.logits, *loss = m.loss;
    int wrong = 0, halved = 0;
    for (int i = 0; i < g->n && half; i++) {
      const ef_tensor *t = g->nodes[i];
      bool spatial = t->ndim == 4 && t->shape[1] * t->shape[2] > 1;
      bool activation = t->op == EF_OP_CONV2D || t->op == EF_OP_CONV2D_BWD_DATA || t->op == EF_OP_BN ||
                        t->op == EF_OP_BN_BWD_DATA || t->op == EF_OP_ACT || t->op == EF_OP_ACT_BWD ||
                        t->op == EF_OP_ADD || t->op == EF_OP_CHANNEL_MUL || t->op == EF_OP_GAP_BWD ||
                        t->op == EF_OP_DROPOUT;
      ef_dtype want = t->op == EF_OP_RESHAPE  ? t->src[0]->dtype
                      : t->op == EF_OP_LEAF   ? (t->dtype == EF_I32 ? EF_I32 : EF_F32)
                      : activation && spatial ? EF_BF16
                                              : EF_F32;
      if (t->dtype != want && wrong++ < 5)
        CHECK(0, "'%s' (%s, %s) is %s, want %s", t->name, ef_op_name(t->op), t->scope ? t->scope : "-",
              ef_dtype_name(t->dtype), ef_dtype_name(want));
      halved += t->dtype == EF_BF16;
      if (t->scope && (!strcmp(t->scope, EF_SCOPE_SE) || !strcmp(t->scope, EF_SCOPE_CLASSIFIER)) &&
          t->op != EF_OP_CHANNEL_MUL && t->op != EF_OP_GAP_BWD && t->op != EF_OP_ADD)
        CHECK(t->dtype != EF_BF16, "'%s' in %s is bf16", t->name, t->scope);
    }
    CHECK(!half || (wrong == 0 && halved > 200), "%d nodes of the wrong type, %d bf16", wrong, halved);
    CHECK(loss->dtype == EF_F32 && out->dtype == EF_F32, "loss %s, logits %s", ef_dtype_name(loss->dtype),
          ef_dtype_name(out->dtype));
    size_t naive;
    ef_plan_measure(g, &arena[half], &naive);
    ef_backend *cpu = NULL;
    if (half) {
      cpu = ef_cpu_backend_new(1);
      ef_plan *p = NULL;
      CHECK(ef_store_bind(s, cpu) == EF_OK, "%s", ef_last_error());
      ef_status st = ef_plan_new(&p, g, cpu, NULL);
      CHECK(st == EF_ERR_UNSUPPORTED && !p && strstr(ef_last_error(), "bf16"), "the CPU with bf16: %d %s", st,
            ef_last_error());
    }
    release(&m, s);
    ef_backend_free(cpu);
  }
  printf("  activation arena at batch 2, 64x64: f32 %.1f MiB, bf16 %.1f MiB\n", arena[0] / 1048576.0,
         arena[1] / 1048576.0);
  CHECK(arena[1] < 0.6 * arena[0], "bf16 plans %zu bytes, f32 %zu", arena[1], arena[0]);
}

int main(void) {
  RUN(test_rounding);
  RUN(test_presets_params_and_macs);
  RUN(test_custom_phi);
  RUN(test_lite_switch);
  RUN(test_dropout_schedule);
  RUN(test_b0_step_on_cpu);
  RUN(test_weights_derived_again);
  RUN(test_node_costs_and_scopes);
  RUN(test_mixed_precision_types);
  return test_exit_code();
}
