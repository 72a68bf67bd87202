// The public inference API (include/effnet/effnet.h): a model opened from a weights file on a
// device, its evaluation transform for image files, and batches through its plan.
#include "effnet/effnet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "train/device.h"
#include "train/model.h"

enum { MAX_NAMES = 1 << 16 };

struct ef_net {
  ef_device dev;
  ef_model model;
  ef_transform tf;    // the evaluation transform at the graph's size
  float lut[3 * 256]; // its normalization
  ef_transform_scratch scratch;
  uint8_t *file; // the last image file read, and its buffer's size
  size_t file_cap;
  float *batch, *logits, *features; // (batch, ...) on the host
  char *names;                      // the class names, NUL-separated
  const char **name;                // (n_names) into names
  int n_names;
};

ef_net *ef_net_open(const char *weights, const ef_net_options *options) {
  ef_net_options o = options ? *options : (ef_net_options){0};
  ef_device_spec spec = {o.device ? o.device : "cpu", o.precision ? o.precision : "f32", o.threads, NULL};
  if (o.batch < 0 || o.image_size < 0 || o.image_size > 4096 || !(o.crop_pct >= 0 && o.crop_pct <= 1)) {
    EF_ERROR(EF_ERR_INVALID,
             "ef_net_open: batch %d, image size %d, crop %g: give a batch >= 1 (0: 1), a size in "
             "[0, 4096] and a crop in [0, 1]",
             o.batch, o.image_size, o.crop_pct);
    return NULL;
  }
  ef_net *n = ef_xcalloc(1, sizeof *n);
  if (ef_device_open(&n->dev, &spec, NULL) != EF_OK) {
    free(n);
    return NULL;
  }
  ef_graph_opts go = {
      .batch = o.batch ? o.batch : 1, .activations = n->dev.activations, .image_size = o.image_size, .features = true};
  if (ef_model_open(&n->model, weights, !o.raw, &go, n->dev.be) != EF_OK) {
    ef_device_close(&n->dev);
    free(n);
    return NULL;
  }
  const ef_model_graph *g = &n->model.graph;
  ef_eval_spec e = {.image_size = o.image_size, .crop_pct = o.crop_pct, .interpolation = o.interpolation};
  if (ef_eval_transform(&n->model.info.desc, &e, &n->tf) != EF_OK) {
    ef_net_close(n);
    return NULL;
  }
  n->tf.dct = false; // one image at a time: decode JPEGs in full, as PIL does (the model's time dominates)
  ef_transform_lut(&n->tf, n->lut);
  n->batch = ef_xcalloc((size_t)ef_numel(g->images), sizeof(float));
  n->logits = ef_xmalloc(sizeof(float) * (size_t)ef_numel(g->logits));
  n->features = ef_xmalloc(sizeof(float) * (size_t)ef_numel(g->features));
  n->names = ef_xmalloc(sizeof n->model.info.desc.class_names);
  n->name = ef_xmalloc(sizeof *n->name * MAX_NAMES);
  n->n_names =
      ef_model_desc_names(&n->model.info.desc, n->names, sizeof n->model.info.desc.class_names, n->name, MAX_NAMES);
  return n;
}

void ef_net_close(ef_net *n) {
  if (!n) return;
  ef_model_close(&n->model);
  ef_device_close(&n->dev);
  ef_transform_scratch_free(&n->scratch);
  free(n->file), free(n->batch), free(n->logits), free(n->features), free(n->names), free(n->name);
  free(n);
}

int ef_net_classes(const ef_net *n) { return n->model.info.desc.num_classes; }
const char *ef_net_class_name(const ef_net *n, int c) { return c >= 0 && c < n->n_names ? n->name[c] : NULL; }
int ef_net_image_size(const ef_net *n) { return n->tf.size; }
int ef_net_channels(const ef_net *n) { return n->tf.channels; }
long ef_net_input_floats(const ef_net *n) { return (long)n->tf.size * n->tf.size * n->tf.channels; }
int ef_net_features(const ef_net *n) { return (int)n->model.graph.features->shape[1]; }
const ef_model_desc *ef_net_desc(const ef_net *n) { return &n->model.info.desc; }

ef_status ef_net_load_image(ef_net *n, const char *path, float *image) {
  size_t len;
  EF_TRY(ef_read_file(path, &n->file, &n->file_cap, &len));
  ef_sample_src src = {.name = path, .bytes = n->file, .len = len};
  EF_TRY(ef_transform_sample(&n->tf, &src, &(ef_rng_seq){0}, &n->scratch));
  ef_transform_normalize(n->lut, &n->scratch.out, image);
  return EF_OK;
}

ef_status ef_net_run(ef_net *n, const float *images, int count, float *logits, float *features) {
  ef_model_graph *g = &n->model.graph;
  if (count < 1 || count > g->batch)
    return EF_ERROR(EF_ERR_INVALID,
                    "ef_net_run: %d images, but the model was opened for 1 to %lld (ef_net_options.batch)", count,
                    (long long)g->batch);
  size_t per_image = (size_t)ef_net_input_floats(n), k = (size_t)g->classes, c = (size_t)ef_net_features(n);
  memcpy(n->batch, images, sizeof(float) * per_image * (size_t)count); // the rest of a short batch stays as it was
  ef_plan_set(g->plan, g->images, n->batch);
  ef_plan_run(g->plan, &(ef_run_ctx){.weights_unchanged = true}); // loaded once, by ef_net_open
  ef_plan_get(g->plan, g->logits, n->logits);
  ef_plan_get(g->plan, g->features, n->features);
  if (logits) memcpy(logits, n->logits, sizeof(float) * k * (size_t)count);
  if (features) memcpy(features, n->features, sizeof(float) * c * (size_t)count);
  return EF_OK;
}

int ef_top_k(const float *logits, int classes, int k, int *index, float *prob) {
  if (k > classes) k = classes;
  double mx = logits[0], sum = 0;
  for (int c = 1; c < classes; c++) mx = fmax(mx, logits[c]);
  for (int c = 0; c < classes; c++) sum += exp(logits[c] - mx);
  for (int r = 0; r < k; r++) { // the class of rank r
    int c = 0;
    while (c < classes && ef_label_rank(logits, classes, c) != r) c++;
    if (c == classes) return 0; // a NaN: no ranks
    index[r] = c, prob[r] = (float)(exp(logits[c] - mx) / sum);
  }
  return k;
}
