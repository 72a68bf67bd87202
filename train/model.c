// Models (see model.h): descriptions read from and written to weights files' root attributes,
// the graph builder every command and test uses, models opened from files, and evaluation.
#include "train/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/tiny.h"

void ef_model_desc_effnet(ef_model_desc *d, const ef_effnet_config *cfg) {
  memset(d, 0, sizeof *d);
  snprintf(d->arch, sizeof d->arch, "efficientnet");
  d->cfg = *cfg;
  d->num_classes = cfg->num_classes, d->in_channels = cfg->in_channels;
  d->eval = ef_transform_defaults(false, cfg->resolution, cfg->in_channels);
}

void ef_model_desc_tiny(ef_model_desc *d, int classes, int channels, int size, float dropout) {
  memset(d, 0, sizeof *d);
  snprintf(d->arch, sizeof d->arch, "tiny");
  d->cfg.dropout = dropout;
  d->num_classes = classes, d->in_channels = channels;
  d->eval = ef_transform_defaults(false, size, channels);
}

int ef_model_desc_names(const ef_model_desc *d, char *copy, size_t len, const char **names, int max) {
  snprintf(copy, len, "%s", d->class_names);
  int n = 0;
  for (char *p = copy, *nl; *p && n < max && (nl = strchr(p, '\n')); p = nl + 1) *nl = 0, names[n++] = p;
  return n;
}

ef_status ef_model_desc_set_names(ef_model_desc *d, char *const *names, int n) {
  size_t used = 0, cap = sizeof d->class_names;
  for (int c = 0; c < n && used < cap; c++)
    used += (size_t)snprintf(d->class_names + used, cap - used, "%s\n", names[c]);
  if (used < cap) return EF_OK;
  d->class_names[0] = 0;
  return EF_ERROR(EF_ERR_INVALID, "the %d class names take more than %zu bytes, more than a weights file keeps", n,
                  cap - 1);
}

int ef_model_min_size(const ef_model_desc *d) { return strcmp(d->arch, "tiny") ? EF_EFFNET_MIN_RESOLUTION : 1; }

ef_status ef_model_check_size(const ef_model_desc *d, int size) {
  int least = ef_model_min_size(d);
  bool tiny = !strcmp(d->arch, "tiny");
  if (size < least || size > EF_EFFNET_MAX_RESOLUTION)
    return EF_ERROR(EF_ERR_INVALID, "%s needs images of at least %d pixels%s and at most %d: not %d",
                    tiny ? "the tiny net" : d->cfg.name, least, tiny ? "" : " (it downsamples 32 times)",
                    EF_EFFNET_MAX_RESOLUTION, size);
  return EF_OK;
}

ef_status ef_model_desc_validate(const ef_model_desc *d, const char *path) {
  bool effnet = !strcmp(d->arch, "efficientnet");
  if (!effnet && strcmp(d->arch, "tiny"))
    return EF_ERROR(EF_ERR_FORMAT, "%s: unknown architecture '%s'", path, d->arch);
  if (d->num_classes < 1 || d->num_classes > (1 << 24) || d->in_channels < 1 || d->in_channels > 64)
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s: %d classes and %d input channels: need 1 to 16777216 classes and 1 to 64 channels", path,
                    d->num_classes, d->in_channels);
  if (effnet && (d->cfg.num_classes != d->num_classes || d->cfg.in_channels != d->in_channels))
    return EF_ERROR(EF_ERR_FORMAT, "%s: the configuration has %d classes and %d channels, the description %d and %d",
                    path, d->cfg.num_classes, d->cfg.in_channels, d->num_classes, d->in_channels);
  if (d->eval.channels != d->in_channels)
    return EF_ERROR(EF_ERR_FORMAT, "%s: the evaluation transform gives %d channels, the model takes %d", path,
                    d->eval.channels, d->in_channels);
  for (int c = 0; c < 3; c++)
    if (!isfinite(d->eval.mean[c]) || !isfinite(d->eval.std[c]))
      return EF_ERROR(EF_ERR_FORMAT, "%s: the normalization's mean or std is not a number", path);
  if (ef_transform_validate(&d->eval) != EF_OK || ef_model_check_size(d, d->eval.size) != EF_OK)
    return EF_ERROR(EF_ERR_FORMAT, "%s: the evaluation transform: %s", path, ef_last_error());
  int lines = 0;
  for (const char *p = d->class_names; *p; p++) lines += *p == '\n';
  if (d->class_names[0] && lines != d->num_classes)
    return EF_ERROR(EF_ERR_FORMAT, "%s: %d class names for %d classes", path, lines, d->num_classes);
  return EF_OK;
}

// The description's attributes that map onto its fields; the transform's interpolation, mean
// and std are written as text.
static const ef_attr_field desc_fields[] = {
    EF_ATTR_STR_FIELD(ef_model_desc, "arch", arch),
    EF_ATTR_INT_FIELD(ef_model_desc, "classes", num_classes),
    EF_ATTR_INT_FIELD(ef_model_desc, "channels", in_channels),
    {"class_names", EF_ATTR_STRING, offsetof(ef_model_desc, class_names),
     (int)sizeof(((ef_model_desc *)0)->class_names), true},
    EF_ATTR_INT_FIELD(ef_model_desc, "image_size", eval.size),
    EF_ATTR_INT_FIELD(ef_model_desc, "image_channels", eval.channels),
    EF_ATTR_DBL_FIELD(ef_model_desc, "crop_pct", eval.crop_pct),
};
enum { DESC_FIELDS = sizeof desc_fields / sizeof desc_fields[0] };

static void triple(char *buf, size_t len, const float v[3]) { snprintf(buf, len, "%.9g,%.9g,%.9g", v[0], v[1], v[2]); }

void ef_model_desc_attrs(const ef_model_desc *d, ef_desc_attrs *out) {
  _Static_assert(DESC_FIELDS + 3 <= sizeof out->attrs / sizeof out->attrs[0], "room for the description's attributes");
  ef_attr_fields_bind(desc_fields, DESC_FIELDS, d, out->attrs);
  snprintf(out->interp, sizeof out->interp, "%s", d->eval.interp == EF_INTERP_BICUBIC ? "bicubic" : "bilinear");
  triple(out->mean, sizeof out->mean, d->eval.mean), triple(out->std, sizeof out->std, d->eval.std);
  out->n = DESC_FIELDS;
  out->attrs[out->n++] = (ef_attr){.name = "interpolation", .kind = EF_ATTR_STRING, .s = out->interp};
  out->attrs[out->n++] = (ef_attr){.name = "mean", .kind = EF_ATTR_STRING, .s = out->mean};
  out->attrs[out->n++] = (ef_attr){.name = "std", .kind = EF_ATTR_STRING, .s = out->std};
}

static ef_status parse_triple(const char *path, const char *name, const char *text, float v[3]) {
  char tail;
  if (sscanf(text, "%f,%f,%f%c", &v[0], &v[1], &v[2], &tail) != 3)
    return EF_ERROR(EF_ERR_FORMAT, "%s: attribute %s is '%s', expected three numbers", path, name, text);
  return EF_OK;
}

ef_status ef_model_desc_set_norm(ef_model_desc *d, const char *mean, const char *std, const char *path) {
  EF_TRY(parse_triple(path, "mean", mean, d->eval.mean));
  return parse_triple(path, "std", std, d->eval.std);
}

ef_status ef_weights_info_read(const char *path, ef_weights_info *w) {
  memset(w, 0, sizeof *w);
  ef_model_desc *d = &w->desc;
  char interp[16] = "", mean[64] = "", std[64] = "", classifier[16] = "";
  enum { EXTRA = 7 };
  ef_attr attrs[DESC_FIELDS + EXTRA];
  ef_attr_fields_bind(desc_fields, DESC_FIELDS, d, attrs);
  for (int i = 0; i < DESC_FIELDS; i++) attrs[i].optional = true; // imports from before descriptions have none
  ef_attr *extra = attrs + DESC_FIELDS;
  extra[0] =
      (ef_attr){.name = "interpolation", .kind = EF_ATTR_STRING, .s = interp, .cap = sizeof interp, .optional = true};
  extra[1] = (ef_attr){.name = "mean", .kind = EF_ATTR_STRING, .s = mean, .cap = sizeof mean, .optional = true};
  extra[2] = (ef_attr){.name = "std", .kind = EF_ATTR_STRING, .s = std, .cap = sizeof std, .optional = true};
  extra[3] = (ef_attr){.name = "ema_updates", .kind = EF_ATTR_INT, .optional = true};
  extra[4] = (ef_attr){.name = "step", .kind = EF_ATTR_INT, .optional = true};
  extra[5] = (ef_attr){
      .name = "classifier", .kind = EF_ATTR_STRING, .s = classifier, .cap = sizeof classifier, .optional = true};
  extra[6] =
      (ef_attr){.name = "source", .kind = EF_ATTR_STRING, .s = w->source, .cap = sizeof w->source, .optional = true};
  EF_TRY(ef_weights_read_attrs(path, attrs, DESC_FIELDS + EXTRA));
  EF_TRY(ef_attr_fields_store(desc_fields, DESC_FIELDS, d, attrs, path));
  bool described = attrs[0].found;
  if (described) {
    for (int i = 0; i < DESC_FIELDS; i++)
      if (!attrs[i].found && !desc_fields[i].optional)
        return EF_ERROR(EF_ERR_FORMAT, "%s has an architecture but no attribute '%s': a damaged file?", path,
                        attrs[i].name);
    if (!extra[0].found || !extra[1].found || !extra[2].found)
      return EF_ERROR(EF_ERR_FORMAT,
                      "%s has an architecture but no complete evaluation transform (interpolation, "
                      "mean, std): a damaged file?",
                      path);
  } else { // an import from before descriptions: all from its configuration
    snprintf(d->arch, sizeof d->arch, "efficientnet");
  }
  if (!strcmp(d->arch, "efficientnet")) {
    EF_TRY(ef_weights_read_config(path, &d->cfg));
    if (!described) {
      char names[sizeof d->class_names];
      ef_effnet_config cfg = d->cfg;
      memcpy(names, d->class_names, sizeof names); // an older import may have recorded names only
      ef_model_desc_effnet(d, &cfg);
      memcpy(d->class_names, names, sizeof names);
    }
  } else {
    d->cfg = (ef_effnet_config){0};
  }
  // Only the evaluation geometry is recorded: the rest of the transform is the defaults.
  double crop_pct = d->eval.crop_pct;
  ef_transform t = ef_transform_defaults(false, d->eval.size, d->eval.channels);
  t.crop_pct = described ? crop_pct : t.crop_pct;
  if (extra[0].found) t.interp = strcmp(interp, "bilinear") ? EF_INTERP_BICUBIC : EF_INTERP_BILINEAR;
  if (extra[0].found && strcmp(interp, "bilinear") && strcmp(interp, "bicubic"))
    return EF_ERROR(EF_ERR_FORMAT, "%s: unknown interpolation '%s'", path, interp);
  d->eval = t;
  w->recorded_norm = extra[1].found && extra[2].found;
  if (w->recorded_norm) EF_TRY(ef_model_desc_set_norm(d, mean, std, path));
  EF_TRY(ef_model_desc_validate(d, path));
  w->has_ema = extra[3].found && extra[3].i >= 0;
  w->checkpoint = extra[4].found;
  w->headless = !strcmp(classifier, "absent");
  return EF_OK;
}

ef_status ef_model_save(const char *path, const ef_store *s, const ef_model_desc *d, const ef_attr *extra,
                        int n_extra) {
  ef_desc_attrs da;
  ef_model_desc_attrs(d, &da);
  enum { MAX_EXTRA = 8 };
  EF_ASSERT(n_extra <= MAX_EXTRA, "%d extra attributes", n_extra);
  ef_attr attrs[sizeof da.attrs / sizeof da.attrs[0] + MAX_EXTRA];
  memcpy(attrs, da.attrs, sizeof(ef_attr) * (size_t)da.n);
  if (n_extra) memcpy(attrs + da.n, extra, sizeof(ef_attr) * (size_t)n_extra); // extra may be NULL
  const ef_effnet_config *cfg = strcmp(d->arch, "tiny") ? &d->cfg : NULL;
  return ef_weights_save_sets(path, s, cfg, &(ef_tensor_set){"model", NULL, NULL, NULL}, 1, attrs, da.n + n_extra);
}

ef_status ef_eval_transform(const ef_model_desc *d, const ef_eval_spec *e, ef_transform *out) {
  *out = d->eval;
  if (e->interpolation && strcmp(e->interpolation, "bilinear") && strcmp(e->interpolation, "bicubic"))
    return EF_ERROR(EF_ERR_INVALID, "interpolation '%s': bilinear or bicubic", e->interpolation);
  if (e->image_size) out->size = (int)e->image_size;
  if (e->crop_pct > 0) out->crop_pct = e->crop_pct;
  if (e->interpolation) out->interp = strcmp(e->interpolation, "bilinear") ? EF_INTERP_BICUBIC : EF_INTERP_BILINEAR;
  return ef_transform_validate(out);
}

// ---- graphs -------------------------------------------------------------------------------------

void ef_model_graph_new(ef_model_graph *m, ef_store *s, const ef_model_desc *d, const ef_graph_opts *o) {
  memset(m, 0, sizeof *m);
  m->batch = o->batch, m->classes = d->num_classes, m->activations = o->activations;
  m->g = ef_graph_new(s, o->seed);
  m->g->bn_group = o->bn_group;
  m->g->fusions = o->training ? 0 : o->fusions;
  int64_t size = o->image_size ? o->image_size : d->eval.size;
  m->images = ef_input(m->g, "images", EF_F32, 4, (int64_t[]){o->batch, size, size, d->in_channels});
  ef_layer_ctx c;
  // Saliency: the training graph's differentiable layers, on frozen (running) statistics, no dropout.
  bool differentiable = o->training || o->saliency;
  ef_effnet_config cfg = d->cfg;
  if (o->saliency) {
    EF_ASSERT(!o->training, "a saliency graph is an evaluation");
    for (int i = 0; i < s->n; i++) s->entries[i].frozen = true;
    cfg.dropout = 0, cfg.drop_path = 0;
    m->images->requires_grad = true; // every activation then gets a gradient
  }
  if (!strcmp(d->arch, "tiny")) {
    c = (ef_layer_ctx){
        .g = m->g, .training = differentiable, .padding = EF_PAD_SYMMETRIC, .bn_eps = 1e-3f, .bn_momentum = 0.1f};
    m->logits = ef_tiny_forward(&c, m->images, d->num_classes, cfg.dropout);
  } else {
    m->logits = ef_effnet_build(&cfg, m->g, m->images, differentiable, o->summary, &c);
  }
  m->params = c.params, m->macs = c.macs / o->batch;
  ef_graph_keep(m->g, m->logits);
  if (o->features) ef_graph_keep(m->g, m->features = c.features);
  if (o->saliency) { // (m->layer stays NULL, and nothing is differentiated, when no such tensor exists)
    for (int i = 0; i < m->g->n && !m->layer; i++)
      if (!strcmp(m->g->nodes[i]->name, o->saliency) && m->g->nodes[i]->ndim == 4 && m->g->nodes[i]->op != EF_OP_LEAF)
        m->layer = m->g->nodes[i]; // an activation (not a weight or the input)
  }
  if (m->layer) {
    m->dlogits = ef_input(m->g, "dlogits", EF_F32, 2, (int64_t[]){o->batch, d->num_classes});
    ef_graph_backward_from(m->g, m->logits, m->dlogits);
    EF_ASSERT(m->layer->grad, "'%s' got no gradient", o->saliency); // every activation is on the logits' path
    ef_graph_keep(m->g, m->layer);
    ef_graph_keep(m->g, m->layer_grad = m->layer->grad);
  }
  if (o->training) {
    if (o->soft_targets) {
      m->targets = ef_input(m->g, "targets", EF_F32, 2, (int64_t[]){o->batch, d->num_classes});
      m->loss = ef_softmax_ce(m->g, m->logits, m->targets, 0);
    } else {
      m->labels = ef_input(m->g, "labels", EF_I32, 1, (int64_t[]){o->batch});
      m->loss = ef_softmax_ce(m->g, m->logits, m->labels, o->smoothing);
    }
    m->loss_scale = ef_input(m->g, "loss_scale", EF_F32, 1, (int64_t[]){1});
    ef_graph_backward_from(m->g, m->loss, m->loss_scale);
    ef_graph_keep(m->g, m->loss);
  }
  ef_graph_set_precision(m->g, o->activations, false);
}

ef_status ef_model_graph_plan(ef_model_graph *m, ef_backend *be, const ef_plan_opts *po) {
  ef_store *s = m->g->store;
  EF_ASSERT(!s->be || s->be == be, "the store is on %s, the plan asked for %s", s->be->name, be->name);
  if (!s->be) EF_TRY(ef_store_bind(s, be));
  EF_TRY(ef_plan_new(&m->plan, m->g, be, po));
  if (m->loss_scale) ef_model_graph_loss_scale(m, 1.0f);
  return EF_OK;
}

void ef_model_graph_loss_scale(ef_model_graph *m, float scale) { ef_plan_set(m->plan, m->loss_scale, &scale); }

void ef_model_graph_free(ef_model_graph *m) {
  ef_plan_free(m->plan);
  ef_graph_free(m->g);
  memset(m, 0, sizeof *m);
}

ef_status ef_model_load_weights(const char *path, const ef_weights_info *w, bool ema, const char *skip, ef_store *s) {
  if (ema && !w->has_ema) return EF_ERROR(EF_ERR_INVALID, "%s holds no EMA weights", path);
  // The EMA's group read straight into the store's arenas, as /model would be.
  ef_tensor_set set = {ema ? "ema" : "model", ema ? s->mem[EF_ARENA_PARAM] : NULL, ema ? s->mem[EF_ARENA_STATE] : NULL,
                       skip};
  return ef_weights_load_sets(path, s, &set, 1);
}

ef_status ef_model_open(ef_model *m, const char *path, bool ema, const ef_graph_opts *o, ef_backend *be) {
  memset(m, 0, sizeof *m);
  EF_ASSERT(!o->training, "ef_model_open builds the evaluation graph");
  EF_TRY(ef_weights_info_read(path, &m->info));
  if (o->image_size) EF_TRY(ef_model_check_size(&m->info.desc, o->image_size));
  m->used_ema = ema && m->info.has_ema;
  m->store = ef_store_new();
  ef_graph_opts go = *o;
  go.fusions = be->eval_fusions;
  ef_model_graph_new(&m->graph, m->store, &m->info.desc, &go);
  ef_status st = ef_model_graph_plan(&m->graph, be, NULL);
  if (st == EF_OK) st = ef_model_load_weights(path, &m->info, m->used_ema, NULL, m->store);
  if (st != EF_OK) ef_model_close(m);
  return st;
}

void ef_model_close(ef_model *m) {
  ef_model_graph_free(&m->graph);
  ef_store_free(m->store);
  m->store = NULL;
}

// ---- memory -------------------------------------------------------------------------------------

double ef_model_planned_bytes(const ef_model_desc *d, int64_t batch, bool training, ef_dtype activations,
                              unsigned fusions, double *largest) {
  ef_store *s = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, s, d,
                     &(ef_graph_opts){.batch = batch,
                                      .training = training,
                                      .smoothing = 0.1f,
                                      .seed = 1,
                                      .activations = activations,
                                      .fusions = fusions});
  size_t arena, naive;
  ef_plan_measure(m.g, &arena, &naive);
  // Parameters (training: + gradients + SGD momentum) and state.
  double bytes = (double)arena + (double)(s->numel[0] * (training ? 3 : 1) + s->numel[1]) * sizeof(float);
  for (int i = 0; largest && i < m.g->n; i++) *largest = fmax(*largest, (double)ef_numel(m.g->nodes[i]));
  ef_model_graph_free(&m);
  ef_store_free(s);
  return bytes;
}

// From two images on the arena grows linearly with the batch (one image's evaluation graph is not
// fused: layers/), so the plans of 2 and 3 give the estimate and more plans confirm it.
int64_t ef_model_max_batch(const ef_model_desc *d, bool training, ef_dtype activations, unsigned fusions, double budget,
                           bool gpu) {
  double largest = 0, one = ef_model_planned_bytes(d, 1, training, activations, fusions, &largest);
  if (one > budget) return 0;
  double two = ef_model_planned_bytes(d, 2, training, activations, fusions, NULL);
  double per_image = ef_model_planned_bytes(d, 3, training, activations, fusions, NULL) - two;
  int64_t b = two > budget ? 1 : per_image > 0 ? 2 + (int64_t)((budget - two) / per_image) : 1 << 16;
  if (b > 1 << 16) b = 1 << 16;
  if (gpu) b = (int64_t)fmin((double)b, floor(2147483647.0 / largest));
  while (b > 1 && ef_model_planned_bytes(d, b, training, activations, fusions, NULL) > budget) b--;
  return b;
}

// ---- evaluation ---------------------------------------------------------------------------------

int ef_label_rank(const float *logits, int classes, int label) {
  int rank = 0;
  for (int c = 0; c < classes; c++) {
    if (isnan(logits[c])) return classes; // a NaN anywhere: never counted correct
    rank += logits[c] > logits[label] || (logits[c] == logits[label] && c < label);
  }
  return rank;
}

ef_status ef_model_evaluate(ef_model_graph *m, ef_loader *l, ef_eval_result *r) {
  *r = (ef_eval_result){0};
  const ef_tensor *in = m->images;
  size_t sample = (size_t)(in->shape[1] * in->shape[2] * in->shape[3]);
  float *images = ef_xcalloc(sample * (size_t)m->batch, sizeof(float));
  float *logits = ef_xmalloc(sizeof(float) * (size_t)m->batch * (size_t)m->classes);
  double loss = 0;
  int64_t top1 = 0, top5 = 0;
  ef_status st = ef_loader_start(l, 0, 0);
  const ef_batch *b;
  for (int64_t batches = 0; st == EF_OK && (st = ef_loader_next(l, &b)) == EF_OK && b; batches++) {
    memcpy(images, b->images, sizeof(float) * sample * (size_t)b->n);
    ef_plan_set(m->plan, m->images, images);
    ef_plan_run(m->plan, &(ef_run_ctx){.weights_unchanged = batches > 0}); // the weights may be new at each call
    ef_plan_get(m->plan, m->logits, logits);
    for (int i = 0; i < b->real; i++) {
      if (b->corrupt[i]) continue; // a corrupt image's stand-in: left out, as the loader reported
      const float *row = logits + (size_t)i * m->classes;
      int rank = ef_label_rank(row, m->classes, b->labels[i]);
      top1 += rank == 0, top5 += rank < 5;
      double mx = row[0], sum = 0;
      for (int c = 1; c < m->classes; c++) mx = fmax(mx, row[c]);
      for (int c = 0; c < m->classes; c++) sum += exp(row[c] - mx);
      loss += mx + log(sum) - row[b->labels[i]];
      r->images++;
    }
  }
  free(images), free(logits);
  if (r->images)
    r->loss = loss / (double)r->images, r->top1 = (double)top1 / (double)r->images,
    r->top5 = (double)top5 / (double)r->images;
  return st;
}
