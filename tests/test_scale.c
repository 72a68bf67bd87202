// The scaling search's arithmetic (train/scale.h): multiply-adds of scaled networks against a
// count by hand from the layer formulas, the grid's constraint and de-duplication against a brute
// force over that count, the curves' closest budgets, the ranks' split, the result records
// (append, read back, a cut-short line, other settings, garbage) and the table's ties; and the
// plot (train/plot.h) puts its points, ring and text where it says.
#include <math.h>
#include <unistd.h>

#include "harness.h"
#include "train/plot.h"
#include "train/scale.h"

// The multiply-adds of cfg's network on size x size images, from the layer formulas: the stem
// (3x3, stride 2), each MBConv block (1x1 expansion, kxk depthwise with its stride,
// squeeze-excite's two 1x1 convolutions on the pooled vector with max(1, in / 4) channels, 1x1
// projection), the head's 1x1 convolution and the classifier. A stride-2 convolution's output
// side is ceil(side / 2), with either padding.
static int64_t hand_macs(const ef_effnet_config *cfg, int size) {
  ef_effnet_arch a;
  ef_effnet_arch_init(&a, cfg);
  int64_t h = (size + 1) / 2, m = h * h * 9 * cfg->in_channels * a.stem;
  for (int s = 0; s < EF_EFFNET_STAGES; s++) {
    const ef_effnet_stage *st = &a.stage[s];
    for (int r = 0; r < st->repeats; r++) {
      int64_t in = r ? st->out : st->in, mid = in * st->expand, ho = r == 0 && st->stride == 2 ? (h + 1) / 2 : h;
      if (st->expand != 1) m += h * h * in * mid;
      m += ho * ho * st->kernel * st->kernel * mid;
      int64_t se = in / 4 > 1 ? in / 4 : 1;
      if (cfg->squeeze_excite) m += 2 * mid * se;
      m += ho * ho * mid * st->out;
      h = ho;
    }
  }
  return m + h * h * a.stage[EF_EFFNET_STAGES - 1].out * a.head + (int64_t)a.head * cfg->num_classes;
}

// B0 for 10 classes of 1-channel images at `size` pixels, as ef_scale_base_open would describe it.
static void make_base(ef_scale_base *b, const char *preset, int size) {
  memset(b, 0, sizeof *b);
  b->train = ef_train_config_defaults();
  ef_effnet_config cfg;
  CHECK(ef_effnet_preset(preset, &cfg) == EF_OK, "%s", preset);
  cfg.num_classes = 10, cfg.in_channels = 1, cfg.resolution = size;
  ef_model_desc_effnet(&b->desc, &cfg);
  b->desc.eval.size = size;
  ef_scale_cand c = {.alpha = 1, .beta = 1, .gamma = 1};
  CHECK(ef_scale_measure(b, &c) == EF_OK, "%s", ef_last_error());
  b->macs = c.macs, b->params = c.params;
}

static void test_macs_by_hand(void) {
  ef_scale_base b;
  make_base(&b, "b0", 224);
  ef_effnet_config full;
  ef_effnet_preset("b0", &full);
  // B0 on ImageNet: 0.39 B in the paper's Table 2.
  ef_scale_base in1k = b;
  in1k.desc.cfg = full, in1k.desc.num_classes = 1000, in1k.desc.in_channels = 3;
  ef_scale_cand c = {.alpha = 1, .beta = 1, .gamma = 1};
  CHECK(ef_scale_measure(&in1k, &c) == EF_OK, "%s", ef_last_error());
  CHECK(c.macs == hand_macs(&full, 224), "b0 at 224: graph %lld, by hand %lld", (long long)c.macs,
        (long long)hand_macs(&full, 224));
  CHECK(fabs((double)c.macs / 0.39e9 - 1) < 0.02, "b0: %lld MACs, the paper 0.39 B", (long long)c.macs);
  // Scaled networks, rounding included: channels to multiples of 8, repeats up, sides rounded and
  // halved up (37 px: maps 19, 10, 5, 3, 2), the Lite variant without squeeze-excite.
  const double mult[][3] = {{1, 1, 1}, {1.2, 1.1, 1.15}, {1.05, 1.4, 1}, {1.4, 1, 1.35}, {1.35, 1.1, 1}, {2, 2, 2}};
  const char *presets[] = {"b0", "lite0"};
  const int sides[] = {32, 37, 48};
  for (int p = 0; p < 2; p++)
    for (int s = 0; s < 3; s++) {
      make_base(&b, presets[p], sides[s]);
      for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++) {
        ef_scale_cand x = {.alpha = mult[i][0], .beta = mult[i][1], .gamma = mult[i][2]};
        CHECK(ef_scale_measure(&b, &x) == EF_OK, "%s", ef_last_error());
        ef_effnet_config cfg = b.desc.cfg;
        cfg.depth *= x.alpha, cfg.width *= x.beta;
        int side = (int)lround(sides[s] * x.gamma);
        CHECK(x.size == side && x.depth == cfg.depth && x.width == cfg.width, "%s %g %g %g: %d px", presets[p], x.alpha,
              x.beta, x.gamma, x.size);
        CHECK(x.macs == hand_macs(&cfg, side), "%s at %d x (%g, %g, %g): graph %lld, by hand %lld", presets[p],
              sides[s], x.alpha, x.beta, x.gamma, (long long)x.macs, (long long)hand_macs(&cfg, side));
      }
    }
  // A side below what an EfficientNet takes: not a network.
  make_base(&b, "b0", 32);
  ef_scale_cand small = {.alpha = 1, .beta = 1, .gamma = 0.5};
  CHECK(ef_scale_measure(&b, &small) == EF_ERR_INVALID, "16 px built");
}

static void test_ranges(void) {
  ef_scale_range r;
  double v[300];
  CHECK(ef_scale_range_parse("1.0:1.4:0.05", "--alphas", &r) == EF_OK, "%s", ef_last_error());
  int n = ef_scale_range_values(&r, v, 300);
  CHECK(n == 9 && v[0] == 1 && v[3] == 1.15 && v[8] == 1.4, "%d values, %g %g %g", n, v[0], v[3], v[8]);
  CHECK(ef_scale_range_parse("1.2", "--alphas", &r) == EF_OK && ef_scale_range_values(&r, v, 300) == 1 && v[0] == 1.2,
        "one value");
  const char *bad[] = {"0.9:1.4:0.1", "1.4:1.0:0.1", "1:2:0", "1:2", "abc", "1:2:-0.1", "1:4:0.001", "1.2x", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(ef_scale_range_parse(bad[i], "--alphas", &r) == EF_ERR_INVALID, "'%s' accepted", bad[i]);
    CHECK(strstr(ef_last_error(), "--alphas"), "'%s': %s", bad[i], ef_last_error());
  }
}

// The grid's candidates are exactly the points whose hand-counted MACs are within the tolerance,
// one per network.
static void test_search_constraint(void) {
  ef_scale_base b;
  make_base(&b, "b0", 48);
  CHECK(b.macs == hand_macs(&b.desc.cfg, 48), "base");
  ef_scale_grid g = {.factor = 2, .tolerance = 0.05};
  ef_scale_range_parse("1.0:1.4:0.05", "a", &g.alpha), ef_scale_range_parse("1.0:1.4:0.05", "b", &g.beta);
  ef_scale_range_parse("1.0:1.3:0.05", "g", &g.gamma);
  ef_scale_cand *c;
  int n, points;
  double base_s = 0;
  CHECK(ef_scale_search_candidates(&b, &g, &c, &n, &points, &base_s) == EF_OK, "%s", ef_last_error());
  CHECK(points == 9 * 9 * 7, "%d points", points);
  int inside = 0, aliases = 0;
  for (int i = 0; i < 9; i++)
    for (int j = 0; j < 9; j++)
      for (int k = 0; k < 7; k++) {
        ef_effnet_config cfg = b.desc.cfg;
        double al = round((1 + 0.05 * i) * 1e9) / 1e9, be = round((1 + 0.05 * j) * 1e9) / 1e9,
               ga = round((1 + 0.05 * k) * 1e9) / 1e9;
        cfg.depth *= al, cfg.width *= be;
        double ratio = (double)hand_macs(&cfg, (int)lround(48 * ga)) / (double)b.macs;
        bool want = fabs(ratio - 2) <= 0.1;
        inside += want;
        int found = -1;
        for (int m = 0; m < n; m++)
          if (c[m].alpha == al && c[m].beta == be && c[m].gamma == ga) found = m;
        ef_scale_cand x = {.alpha = al, .beta = be, .gamma = ga};
        ef_scale_measure(&b, &x);
        int same = -1;
        for (int m = 0; m < n; m++)
          if (!strcmp(c[m].key, x.key)) same = m;
        CHECK(!want || same >= 0, "(%g, %g, %g) at %.3fx is missing", al, be, ga, ratio);
        CHECK(want || same < 0, "(%g, %g, %g) at %.3fx was kept", al, be, ga, ratio);
        if (want && found < 0) aliases++; // kept through an earlier point with the same network
      }
  int counted = 0;
  for (int m = 0; m < n; m++) {
    counted += c[m].aliases;
    double ratio = (double)c[m].macs / (double)b.macs;
    CHECK(fabs(ratio - 2) <= 0.1 && c[m].strategy == EF_SCALE_COMPOUND && c[m].budget == 2, "%g", ratio);
    for (int k = 0; k < m; k++) CHECK(strcmp(c[k].key, c[m].key), "candidates %d and %d are one network", k, m);
  }
  CHECK(n + aliases == inside && counted == aliases, "%d kept + %d aliases (counted %d) != %d inside", n, aliases,
        counted, inside);
  CHECK(n >= 12, "only %d candidates at 48 px", n);
  free(c);
  g.factor = 50; // nothing costs that much in this grid
  CHECK(ef_scale_search_candidates(&b, &g, &c, &n, &points, &base_s) == EF_OK && n == 0 && !c, "%d kept", n);
}

// Each curve's candidate for a budget is the scanned multiplier closest to it (checked against
// the neighbours of the chosen one by hand).
static void test_curves(void) {
  ef_scale_base b;
  make_base(&b, "b0", 32);
  double budgets[] = {2, 4};
  ef_scale_cand *c;
  int n;
  CHECK(ef_scale_curve_candidates(&b, budgets, 2, EF_COMPOUND_PAPER, &c, &n) == EF_OK, "%s", ef_last_error());
  CHECK(n == 9 && c[0].strategy == EF_SCALE_BASE && c[0].macs == b.macs, "%d candidates", n);
  for (int i = 1; i < n; i++) {
    ef_scale_cand *x = &c[i];
    double target = budgets[(i - 1) % 2], err = fabs(log((double)x->macs / b.macs / target));
    CHECK(x->budget == target && x->strategy == (ef_scale_strategy)(EF_SCALE_COMPOUND + (i - 1) / 2), "%d", i);
    for (int d = -1; d <= 1; d += 2) { // the scan's neighbours are no closer
      ef_scale_cand y = *x;
      if (x->strategy == EF_SCALE_WIDTH) y.beta += 0.01 * d;
      if (x->strategy == EF_SCALE_DEPTH) y.alpha += 0.05 * d;
      if (x->strategy == EF_SCALE_RESOLUTION) y.gamma = (double)(x->size + d) / 32;
      if (x->strategy == EF_SCALE_COMPOUND) {
        double phi = log(x->alpha) / log(1.2) + 0.01 * d;
        y.alpha = pow(1.2, phi), y.beta = pow(1.1, phi), y.gamma = pow(1.15, phi);
      }
      if (ef_scale_measure(&b, &y) != EF_OK) continue;
      CHECK(fabs(log((double)y.macs / b.macs / target)) >= err - 1e-12, "%s x%g: a neighbour is closer",
            ef_scale_strategy_name(x->strategy), target);
    }
    CHECK(err < log(1.35), "%s x%g: %.2fx", ef_scale_strategy_name(x->strategy), target, (double)x->macs / b.macs);
    if (x->strategy == EF_SCALE_WIDTH) CHECK(x->alpha == 1 && x->gamma == 1 && x->beta > 1, "width only");
    if (x->strategy == EF_SCALE_DEPTH) CHECK(x->beta == 1 && x->gamma == 1 && x->alpha > 1, "depth only");
    if (x->strategy == EF_SCALE_RESOLUTION) CHECK(x->alpha == 1 && x->beta == 1 && x->size > 32, "resolution only");
  }
  free(c);
  double bad = 0.5;
  CHECK(ef_scale_curve_candidates(&b, &bad, 1, EF_COMPOUND_PAPER, &c, &n) == EF_ERR_INVALID && !c, "budget 0.5");
}

static void test_split(void) {
  for (int world = 1; world <= 5; world++)
    for (int run = 0; run < 23; run++) {
      int owners = 0;
      for (int r = 0; r < world; r++) owners += ef_scale_mine(run, r, world);
      CHECK(owners == 1, "run %d has %d owners among %d ranks", run, owners, world);
    }
}

static void test_records(void) {
  char dir[] = "/tmp/effnet-scale-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char *path = ef_path_join(dir, "r.jsonl");
  ef_scale_record *rec;
  int n;
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_OK && n == 0 && !rec, "a missing file is no records");
  ef_scale_record a = {.cand = {.strategy = EF_SCALE_WIDTH,
                                .budget = 4,
                                .alpha = 1,
                                .beta = 2.06,
                                .gamma = 1,
                                .depth = 1,
                                .width = 2.06,
                                .size = 48,
                                .macs = 89712345,
                                .params = 12345678,
                                .images_s = 123.5,
                                .key = "0a1b2c3d",
                                .aliases = 2},
                       .seed = 7,
                       .rank = 1,
                       .r = {.top1 = 0.8125, .best_top1 = 0.8375, .loss = 0.51234, .seconds = 61.25, .resumed = true}};
  ef_scale_record b = a;
  b.seed = 8, b.rank = 0, b.r.top1 = NAN, b.r.loss = INFINITY, b.r.resumed = false, b.cand.strategy = EF_SCALE_BASE;
  CHECK(ef_scale_append(path, "abc", &a) == EF_OK && ef_scale_append(path, "abc", &b) == EF_OK, "%s", ef_last_error());
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_OK && n == 2, "%d records: %s", n, ef_last_error());
  if (n == 2) {
    const ef_scale_record *x = &rec[0], *y = &rec[1];
    CHECK(x->cand.strategy == EF_SCALE_WIDTH && x->cand.budget == 4 && x->cand.beta == 2.06 && x->cand.size == 48 &&
              x->cand.macs == 89712345 && x->cand.params == 12345678 && x->cand.images_s == 123.5 &&
              !strcmp(x->cand.key, "0a1b2c3d") && x->cand.aliases == 2 && x->seed == 7 && x->rank == 1 &&
              x->r.top1 == 0.8125 && x->r.best_top1 == 0.8375 && x->r.loss == 0.51234 && x->r.seconds == 61.25 &&
              x->r.resumed,
          "record 1 read back differs");
    CHECK(y->cand.strategy == EF_SCALE_BASE && isnan(y->r.top1) && isnan(y->r.loss) && !y->r.resumed && y->seed == 8,
          "record 2: top1 %g", y->r.top1);
    CHECK(ef_scale_find(rec, n, "0a1b2c3d", 8) == y && !ef_scale_find(rec, n, "0a1b2c3d", 9), "find");
  }
  free(rec);
  // A kill mid-write leaves a line without its newline: left out, the run trains again.
  FILE *f = fopen(path, "a");
  fputs("{\"strategy\":\"width\",\"budget\":4,\"alp", f);
  fclose(f);
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_OK && n == 2, "with a cut-short line: %d", n);
  free(rec);
  // The next record goes on a line of its own, and reads back whole.
  ef_scale_record c = a;
  c.seed = 11, c.cand.strategy = EF_SCALE_DEPTH, c.r.top1 = 0.5;
  CHECK(ef_scale_append(path, "abc", &c) == EF_OK, "%s", ef_last_error());
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_OK && n == 3, "after the cut-short line: %d (%s)", n,
        ef_last_error());
  if (n == 3)
    CHECK(rec[2].seed == 11 && rec[2].cand.strategy == EF_SCALE_DEPTH && rec[2].r.top1 == 0.5 &&
              rec[2].cand.macs == 89712345,
          "the record after a cut-short line: seed %llu", rec[2].seed);
  free(rec);
  CHECK(ef_scale_read(path, "xyz", &rec, &n) == EF_ERR_INVALID && strstr(ef_last_error(), "other settings") && !rec,
        "other settings: %s", ef_last_error());
  f = fopen(path, "a");
  fputs("not a record\n", f);
  fclose(f);
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_ERR_FORMAT && strstr(ef_last_error(), ":5:"), "garbage: %s",
        ef_last_error());
  // Integers out of range (a seed past 2^64, a negative size) are not records.
  FILE *g = fopen(path, "w");
  fputs("{\"strategy\":\"base\",\"budget\":1,\"alpha\":1,\"beta\":1,\"gamma\":1,\"depth\":1,\"width\":1,\"size\":-3,"
        "\"macs\":1,\"params\":1,\"images_s\":0,\"key\":\"k\",\"aliases\":0,\"seed\":99999999999999999999,\"rank\":0,"
        "\"top1\":0.5,\"best_top1\":0.5,\"loss\":1,\"seconds\":1,\"resumed\":false,\"settings\":\"abc\"}\n",
        g);
  fclose(g);
  CHECK(ef_scale_read(path, "abc", &rec, &n) == EF_ERR_FORMAT, "out-of-range integers read as %d records", n);
  test_rmtree(dir);
  free(path);
}

static void test_summary(void) {
  ef_scale_cand c[3] = {{.strategy = EF_SCALE_COMPOUND, .key = "a"},
                        {.strategy = EF_SCALE_COMPOUND, .key = "b"},
                        {.strategy = EF_SCALE_COMPOUND, .key = "c"}};
  ef_scale_record r[5] = {{.cand = {.key = "a"}, .r = {.top1 = 0.80}},
                          {.cand = {.key = "a"}, .r = {.top1 = 0.84}},
                          {.cand = {.key = "b"}, .r = {.top1 = 0.78}},
                          {.cand = {.key = "b"}, .r = {.top1 = 0.80}},
                          {.cand = {.key = "c"}, .r = {.top1 = NAN}}};
  ef_scale_row rows[3];
  ef_scale_summarize(c, 3, r, 5, EF_SCALE_COMPOUND, rows);
  CHECK(rows[0].runs == 2 && fabs(rows[0].mean - 0.82) < 1e-12 && fabs(rows[0].half - 0.02) < 1e-12 && rows[0].best,
        "a: %d runs, %g +- %g", rows[0].runs, rows[0].mean, rows[0].half);
  // b: 0.79 + 0.01 = 0.80 >= 0.82 - 0.02: not distinguishable; c: a broken run scores 0.
  CHECK(rows[1].tied && !rows[1].best && rows[2].runs == 1 && rows[2].mean == 0 && !rows[2].tied, "ties");
  r[3].r.top1 = 0.785; // b: 0.7825 + 0.0025 < 0.80
  ef_scale_summarize(c, 3, r, 5, EF_SCALE_COMPOUND, rows);
  CHECK(!rows[1].tied, "b is below a's spread");
  // The table's order: best first, equal means in the candidates' order; then as given, without a
  // row that has no results.
  ef_scale_row t[3] = {{.runs = 2, .mean = 0.82}, {.runs = 2, .mean = 0.82}, {.runs = 1, .mean = 0.9}};
  int order[3], m = ef_scale_order(t, 3, true, order);
  CHECK(m == 3 && order[0] == 2 && order[1] == 0 && order[2] == 1, "by mean: %d rows, %d %d %d", m, order[0], order[1],
        order[2]);
  t[1].runs = 0;
  m = ef_scale_order(t, 3, false, order);
  CHECK(m == 2 && order[0] == 0 && order[1] == 2, "as given, without the row lacking results: %d rows", m);
}

static void test_plot(void) {
  double x[2] = {10, 20}, y[2] = {50, 80}, e[2] = {0, 5};
  ef_plot_series s = {.label = "points", .x = x, .y = y, .err = e, .n = 2, .rgb = 0x2060C0, .lines = true};
  ef_plot p = {.title = "t",
               .x_label = "MACs",
               .y_label = "top-1",
               .series = &s,
               .n_series = 1,
               .mark = true,
               .mark_x = 20,
               .mark_y = 80,
               .mark_label = "best"};
  ef_image im = {0};
  ef_plot_draw(&p, &im);
  CHECK(im.w == EF_PLOT_W && im.h == EF_PLOT_H && im.c == 3, "%dx%dx%d", im.w, im.h, im.c);
  int blue = 0, red = 0, dark = 0;
  for (int i = 0; i < im.w * im.h; i++) {
    const uint8_t *q = im.px + 3 * i;
    blue += q[0] == 0x20 && q[1] == 0x60 && q[2] == 0xC0;
    red += q[0] == 0xD0 && q[1] == 0x10 && q[2] == 0x10;
    dark += q[0] == 0x20 && q[1] == 0x20 && q[2] == 0x20;
  }
  CHECK(blue > 100 && red > 50 && dark > 500, "blue %d, red %d, ink %d", blue, red, dark);
  // The first point lies at the left of the plot area, the second at the right and higher.
  int first_x = -1, last_x = -1;
  for (int xx = 0; xx < im.w; xx++)
    for (int yy = 100; yy < im.h - 70; yy++) {
      const uint8_t *q = im.px + 3 * ((size_t)yy * im.w + xx);
      if (q[0] == 0x20 && q[1] == 0x60 && q[2] == 0xC0) {
        if (first_x < 0) first_x = xx;
        last_x = xx;
      }
    }
  CHECK(first_x > 100 && first_x < 200 && last_x > 800, "points from x %d to %d", first_x, last_x);
  ef_image_free(&im);
  char dir[] = "/tmp/effnet-plot-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char *path = ef_path_join(dir, "p.png");
  CHECK(ef_plot_png(&p, path) == EF_OK, "%s", ef_last_error());
  FILE *f = fopen(path, "rb");
  unsigned char sig[8] = {0};
  CHECK(f && fread(sig, 1, 8, f) == 8 && !memcmp(sig, "\x89PNG\r\n\x1a\n", 8), "not a PNG");
  if (f) fclose(f);
  free(path);
  test_rmtree(dir);
}

int main(void) {
  RUN(test_macs_by_hand);
  RUN(test_ranges);
  RUN(test_search_constraint);
  RUN(test_curves);
  RUN(test_split);
  RUN(test_records);
  RUN(test_summary);
  RUN(test_plot);
  return test_exit_code();
}
