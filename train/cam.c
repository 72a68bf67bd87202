// CAM and Grad-CAM (see cam.h): one differentiable evaluation graph per model, whose layer and
// gradient the maps are made from; the overlay and the .npy writer.
#include "train/cam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "data/dataset.h"

ef_status ef_cam_open(ef_cam *c, const char *weights, const ef_cam_options *o, ef_backend *be) {
  memset(c, 0, sizeof *c);
  c->o = *o;
  const char *layer = o->grad_cam && o->layer ? o->layer : "bn2";
  if (!o->grad_cam && o->layer && strcmp(o->layer, "bn2"))
    return EF_ERROR(EF_ERR_INVALID,
                    "CAM maps the head's features (bn2): layer '%s' maps through Grad-CAM (--method "
                    "grad-cam)",
                    o->layer);
  ef_graph_opts go = {.batch = 1, .image_size = o->eval.image_size};
  EF_TRY(ef_model_open(&c->model, weights, o->eval.ema, &go, be));
  const ef_model_desc *d = &c->model.info.desc;
  ef_status st = ef_eval_transform(d, &o->eval, &c->tf);
  int w_entry = ef_store_find(c->model.store, "classifier.weight");
  if (st == EF_OK && !o->grad_cam && (strcmp(d->arch, "efficientnet") || w_entry < 0))
    st = EF_ERROR(EF_ERR_INVALID, "CAM needs an EfficientNet's head and classifier; %s is a %s: use --method grad-cam",
                  weights, d->arch);
  if (st != EF_OK) {
    ef_model_close(&c->model);
    return st;
  }
  go.image_size = c->tf.size, go.saliency = layer;
  ef_model_graph_new(&c->sal, c->model.store, d, &go);
  if (!c->sal.layer) {
    st = EF_ERROR(EF_ERR_INVALID,
                  "%s has no layer '%s': give a block's output (blocks.S.R) or the head's features (bn2); `effnet "
                  "info` with --layers lists the blocks",
                  weights, layer);
  } else {
    st = ef_model_graph_plan(&c->sal, be, NULL);
  }
  if (st != EF_OK) {
    ef_cam_close(c);
    return st;
  }
  c->tf.dct = false; // one image at a time, decoded in full as PIL does
  ef_transform_lut(&c->tf, c->lut);
  const ef_tensor *a = c->sal.layer;
  c->h = (int)a->shape[1], c->w = (int)a->shape[2], c->c = (int)a->shape[3];
  int classes = d->num_classes;
  c->image = ef_xmalloc(sizeof(float) * (size_t)ef_numel(c->sal.images));
  c->logits = ef_xmalloc(sizeof(float) * (size_t)classes);
  c->dlogits = ef_xmalloc(sizeof(float) * (size_t)classes);
  c->act = ef_xmalloc(sizeof(float) * (size_t)ef_numel(a));
  c->grad = ef_xmalloc(sizeof(float) * (size_t)ef_numel(a));
  c->map = ef_xmalloc(sizeof(float) * (size_t)c->h * c->w);
  if (!o->grad_cam) {
    c->weights = ef_xmalloc(sizeof(float) * (size_t)classes * (size_t)c->c);
    ef_store_read(c->model.store, w_entry, EF_ARENA_PARAM, c->weights);
  }
  return EF_OK;
}

void ef_cam_close(ef_cam *c) {
  if (c->sal.g) ef_model_graph_free(&c->sal);
  ef_model_close(&c->model);
  ef_transform_scratch_free(&c->scratch);
  free(c->file), free(c->image), free(c->logits), free(c->dlogits), free(c->act), free(c->grad), free(c->map);
  free(c->weights);
  memset(c, 0, sizeof *c);
}

ef_status ef_cam_run(ef_cam *c, const float *image, int cls, ef_cam_result *r) {
  int classes = c->model.info.desc.num_classes;
  if (cls < -1 || cls >= classes)
    return EF_ERROR(EF_ERR_INVALID, "class %d: the model has classes 0 ... %d", cls, classes - 1);
  ef_model_graph *m = &c->sal;
  // One pass, differentiated from logit `cls` when it is known; for the top-1, a forward pass first.
  ef_plan_set(m->plan, m->images, image);
  memset(c->dlogits, 0, sizeof(float) * (size_t)classes);
  if (cls >= 0) c->dlogits[cls] = 1;
  ef_plan_set(m->plan, m->dlogits, c->dlogits);
  ef_plan_run(m->plan, &(ef_run_ctx){.weights_unchanged = true});
  ef_plan_get(m->plan, m->logits, c->logits);
  int top1 = 0;
  for (int k = 1; k < classes; k++)
    if (c->logits[k] > c->logits[top1]) top1 = k;
  if (!isfinite(c->logits[top1])) return EF_ERROR(EF_ERR_NUMERIC, "the model's logits are not finite");
  bool again = cls < 0 && c->o.grad_cam; // Grad-CAM of the top-1: the backward pass from it
  if (cls < 0) cls = top1;
  double z = 0;
  for (int k = 0; k < classes; k++) z += exp((double)c->logits[k] - c->logits[top1]);
  *r = (ef_cam_result){.cls = cls,
                       .top1 = top1,
                       .prob = (float)(exp((double)c->logits[cls] - c->logits[top1]) / z),
                       .map = c->map,
                       .h = c->h,
                       .w = c->w,
                       .input = c->scratch.out};
  size_t hw = (size_t)c->h * c->w, ch = (size_t)c->c;
  float *map = c->map;
  if (c->o.grad_cam) {
    if (again) {
      c->dlogits[cls] = 1;
      ef_plan_set(m->plan, m->dlogits, c->dlogits);
      ef_plan_run(m->plan, &(ef_run_ctx){.weights_unchanged = true});
    }
    ef_plan_get(m->plan, m->layer, c->act);
    ef_plan_get(m->plan, m->layer_grad, c->grad);
    // alpha_c: the gradient's mean over the map; then ReLU(sum_c alpha_c A_c).
    double *alpha = ef_xcalloc(ch, sizeof *alpha);
    for (size_t p = 0; p < hw; p++)
      for (size_t k = 0; k < ch; k++) alpha[k] += c->grad[p * ch + k];
    for (size_t k = 0; k < ch; k++) alpha[k] /= (double)hw;
    for (size_t p = 0; p < hw; p++) {
      double s = 0;
      for (size_t k = 0; k < ch; k++) s += alpha[k] * c->act[p * ch + k];
      map[p] = s > 0 ? (float)s : 0;
    }
    free(alpha);
  } else {
    ef_plan_get(m->plan, m->layer, c->act);
    const float *wk = c->weights + (size_t)cls * ch;
    for (size_t p = 0; p < hw; p++) {
      double s = 0;
      for (size_t k = 0; k < ch; k++) s += (double)wk[k] * c->act[p * ch + k];
      map[p] = (float)s;
    }
  }
  return EF_OK;
}

ef_status ef_cam_image(ef_cam *c, const char *path, int cls, ef_cam_result *r) {
  size_t len;
  EF_TRY(ef_read_file(path, &c->file, &c->file_cap, &len));
  ef_sample_src src = {.name = path, .bytes = c->file, .len = len};
  EF_TRY(ef_transform_sample(&c->tf, &src, &(ef_rng_seq){0}, &c->scratch));
  ef_transform_normalize(c->lut, &c->scratch.out, c->image);
  return ef_cam_run(c, c->image, cls, r);
}

// The jet colour scale at t in [0, 1].
static void jet(float t, uint8_t rgb[3]) {
  for (int k = 0; k < 3; k++) {
    float v = 1.5f - fabsf(4 * t - (float)(3 - k));
    rgb[k] = (uint8_t)lrintf(255 * (v < 0 ? 0 : v > 1 ? 1 : v));
  }
}

void ef_cam_overlay(const ef_cam_result *r, float alpha, ef_image *out) {
  const ef_image *in = &r->input;
  int side = in->w, n = r->h * r->w;
  float lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; i++) lo = fminf(lo, r->map[i]), hi = fmaxf(hi, r->map[i]);
  float scale = hi > lo ? 1 / (hi - lo) : 0;
  ef_image_reshape(out, in->w, in->h, 3);
  for (int y = 0; y < in->h; y++)
    for (int x = 0; x < in->w; x++) {
      // Half-pixel centres: source coordinate (x + 0.5) * w / side - 0.5, clamped at the edges.
      float sy = fmaxf(0, (y + 0.5f) * r->h / (float)in->h - 0.5f),
            sx = fmaxf(0, (x + 0.5f) * r->w / (float)side - 0.5f);
      int y0 = (int)sy, x0 = (int)sx, y1 = y0 + 1 < r->h ? y0 + 1 : y0, x1 = x0 + 1 < r->w ? x0 + 1 : x0;
      float fy = sy - y0, fx = sx - x0;
      float v = (1 - fy) * ((1 - fx) * r->map[y0 * r->w + x0] + fx * r->map[y0 * r->w + x1]) +
                fy * ((1 - fx) * r->map[y1 * r->w + x0] + fx * r->map[y1 * r->w + x1]);
      uint8_t colour[3];
      jet((v - lo) * scale, colour);
      const uint8_t *p = in->px + ((size_t)y * in->w + x) * in->c;
      uint8_t *q = out->px + ((size_t)y * in->w + x) * 3;
      for (int k = 0; k < 3; k++) q[k] = (uint8_t)lrintf((1 - alpha) * p[in->c == 3 ? k : 0] + alpha * colour[k]);
    }
}

ef_status ef_write_npy(const char *path, const float *x, int rows, int cols) {
  char header[128];
  int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
  int total = 10 + n + 1, pad = (64 - total % 64) % 64; // magic, version, length; the header ends with \n
  size_t bytes = (size_t)(total + pad) + sizeof(float) * (size_t)rows * cols;
  uint8_t *buf = ef_xmalloc(bytes);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  int hlen = n + pad + 1;
  buf[8] = (uint8_t)(hlen & 255), buf[9] = (uint8_t)(hlen >> 8);
  memcpy(buf + 10, header, (size_t)n);
  memset(buf + 10 + n, ' ', (size_t)pad);
  buf[10 + n + pad] = '\n';
  memcpy(buf + total + pad, x, sizeof(float) * (size_t)rows * cols); // little-endian hosts (x86, ARM)
  ef_status st = ef_file_write(path, buf, bytes);
  free(buf);
  return st;
}
