// `effnet cam --weights A.h5[,B.h5...] IMAGE...`: for each image a PNG of the photo beside each
// model's map of its top-1 class (or --class K) blended over it (train/cam.h), captioned with the
// class and its probability; --save-maps keeps each raw map as .npy.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "data/encode.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/cam.h"
#include "train/plot.h"

enum { MAX_IMAGES = 4096, MAX_MODELS = 8 };

typedef struct {
  const char *weights, *out, *method, *layer;
  long cls;
  double alpha;
  bool save_maps;
  ef_eval_spec eval;
  ef_device_spec dev;
} cam_opts;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(cam_opts, kind, field)
static const ef_flag cam_flags[] = {
    {ROW(EF_FLAG_STR, "--weights", weights), 0, 0, NULL, "FILES",
     "weights files (any effnet weights; commas: several models side by side)", false},
    {ROW(EF_FLAG_STR, "--out", out), 0, 0, NULL, "DIR", "where the PNGs go, one per image", false},
    {ROW(EF_FLAG_STR, "--method", method), 0, 0, "cam|grad-cam", "M",
     "cam (the head's features weighted by the classifier's row) or\ngrad-cam (any --layer)", false},
    {ROW(EF_FLAG_STR, "--layer", layer), 0, 0, NULL, "NAME",
     "grad-cam's layer: a block's output (blocks.5.2) or the head (bn2)", false},
    {ROW(EF_FLAG_LONG, "--class", cls), -1, 1 << 24, NULL, "K", "the class mapped (-1: each model's top-1)", false},
    {ROW(EF_FLAG_DOUBLE, "--alpha", alpha), 0, 1, NULL, "F", "the map's weight over the photo", false},
    {ROW(EF_FLAG_BOOL, "--save-maps", save_maps), 0, 0, NULL, NULL,
     "also write each raw map (the layer's height x width) as .npy", false},
};
#undef ROW

// The image's name without folders and extension, for the files written.
static void stem(const char *path, char *buf, size_t len) {
  const char *slash = strrchr(path, '/');
  snprintf(buf, len, "%s", slash ? slash + 1 : path);
  char *dot = strrchr(buf, '.');
  if (dot && dot != buf) *dot = 0;
}

// Panel k of a row: the image at (x, 0), its caption under it.
static void paste(ef_image *row, const ef_image *im, int x) {
  for (int y = 0; y < im->h; y++)
    for (int i = 0; i < im->w; i++)
      for (int k = 0; k < 3; k++)
        row->px[((size_t)y * row->w + x + i) * 3 + k] = im->px[((size_t)y * im->w + i) * im->c + (im->c == 3 ? k : 0)];
}

int ef_cmd_cam(int argc, char **argv) {
  cam_opts o = {.out = "cam",
                .method = "cam",
                .cls = -1,
                .alpha = 0.5,
                .eval = EF_EVAL_SPEC_DEFAULT,
                .dev = EF_DEVICE_SPEC_DEFAULT};
  ef_flags *f = ef_xmalloc(sizeof *f);
  ef_flags_init(f, "cam",
                "usage: effnet cam --weights FILE[,FILE...] IMAGE... [flags]\n"
                "\n"
                "Where a model looks (the EfficientNet paper's Figure 7): the class activation map of each image's\n"
                "top-1 class over the photo, one PNG per image in --out, models side by side (docs/scaling.md).\n"
                "\n",
                NULL);
  ef_flags_add(f, cam_flags, (int)(sizeof cam_flags / sizeof cam_flags[0]), &o);
  ef_flags_add(f, ef_eval_flags, EF_EVAL_FLAGS, &o.eval);
  ef_flags_add(f, ef_device_flags, EF_DEVICE_FLAGS, &o.dev);
  const char **images = ef_xcalloc(MAX_IMAGES + 1, sizeof *images);
  int rc = ef_flags_apply(f, argc, argv, EF_FROM_FLAG, images, MAX_IMAGES);
  int n_images = 0;
  while (!rc && images[n_images]) n_images++;
  if (!rc && (!o.weights || !n_images)) {
    fprintf(stderr, "effnet cam: give --weights FILE and at least one image\n");
    rc = 2;
  }
  char names[MAX_MODELS][4096], stems[2][1024];
  int n_models = 0;
  for (const char *p = o.weights; !rc && p && *p; n_models++) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (n_models == MAX_MODELS || !len || len >= sizeof names[0]) {
      fprintf(stderr, "effnet cam: --weights '%s': 1 to %d files, comma-separated\n", o.weights, MAX_MODELS);
      rc = 2;
      break;
    }
    memcpy(names[n_models], p, len), names[n_models][len] = 0;
    p = comma ? comma + 1 : NULL;
  }
  for (int i = 0; !rc && i < n_images; i++)
    for (int j = 0; j < i && !rc; j++) {
      stem(images[i], stems[0], sizeof stems[0]), stem(images[j], stems[1], sizeof stems[1]);
      if (!strcmp(stems[0], stems[1])) {
        fprintf(stderr, "effnet cam: %s and %s would both write %s/%s.png: rename one\n", images[j], images[i], o.out,
                stems[0]);
        rc = 2;
      }
    }
  ef_device dev;
  bool dev_open = false;
  if (!rc) rc = ef_device_args_open(&dev, "cam", &o.dev), dev_open = !rc;
  ef_cam *cams = ef_xcalloc(MAX_MODELS, sizeof *cams);
  int opened = 0;
  ef_cam_options co = {.grad_cam = !strcmp(o.method, "grad-cam"), .layer = o.layer, .eval = o.eval};
  while (!rc && opened < n_models) { // (a bad --layer or --class: a usage error)
    ef_status st = ef_cam_open(&cams[opened], names[opened], &co, dev.be);
    if (st == EF_OK) opened++;
    else rc = ef_report("cam", st == EF_ERR_INVALID ? 2 : 1);
  }
  if (!rc && mkdir(o.out, 0777) != 0 && errno != EEXIST) { // (once the models opened: a bad flag makes nothing)
    fprintf(stderr, "effnet cam: cannot make %s: %s\n", o.out, strerror(errno));
    rc = 1;
  }
  if (!rc)
    for (int m = 0; m < opened; m++) {
      const ef_cam *c = &cams[m];
      printf("%s: %s, %s of %s (%dx%d x %d), input %d px\n", names[m], c->model.info.desc.cfg.name,
             co.grad_cam ? "Grad-CAM" : "CAM", c->sal.layer->name, c->h, c->w, c->c, c->tf.size);
    }
  char *class_names = ef_xmalloc(sizeof cams[0].model.info.desc.class_names);
  const char **class_name = ef_xmalloc(sizeof *class_name * 65536);
  ef_image overlay = {0}, row = {0};
  for (int i = 0; !rc && i < n_images; i++) {
    char base[1024], path[4200];
    stem(images[i], base, sizeof base);
    // The row: the photo as the first model saw it, then each model's map over its own input.
    int width = 0, height = 0;
    ef_cam_result r[MAX_MODELS];
    char caption[MAX_MODELS][128];
    for (int m = 0; !rc && m < opened; m++) {
      ef_status st = ef_cam_image(&cams[m], images[i], (int)o.cls, &r[m]);
      if (st != EF_OK) {
        rc = ef_report("cam", st == EF_ERR_INVALID ? 2 : 1);
        break;
      }
      const ef_model_desc *d = &cams[m].model.info.desc;
      int n = ef_model_desc_names(d, class_names, sizeof d->class_names, class_name, 65536);
      const char *name = r[m].cls < n ? class_name[r[m].cls] : "";
      snprintf(caption[m], sizeof caption[m], "%.60s\n%d %.40s (%.0f%%)", d->cfg.name, r[m].cls, name, 100 * r[m].prob);
      printf("%s  %s: class %d %s (p %.3f; top-1 %d)\n", images[i], names[m], r[m].cls, name, r[m].prob, r[m].top1);
      if (o.save_maps) {
        snprintf(path, sizeof path, "%s/%s.%d.npy", o.out, base, m);
        if (ef_write_npy(path, r[m].map, r[m].h, r[m].w) != EF_OK) rc = ef_report("cam", 1);
      }
      width += r[m].input.w + 8, height = r[m].input.h > height ? r[m].input.h : height;
      if (m == 0) width += r[m].input.w + 8;
    }
    if (rc) break;
    ef_image_reshape(&row, width, height + 24, 3);
    memset(row.px, 255, (size_t)row.w * row.h * 3);
    int x = 0;
    for (int m = 0; m < opened; m++) {
      if (m == 0) paste(&row, &r[0].input, 0), x += r[0].input.w + 8;
      ef_cam_overlay(&r[m], (float)o.alpha, &overlay);
      paste(&row, &overlay, x);
      char *second = strchr(caption[m], '\n'); // the model, then the class: two lines of the small font
      *second = 0;
      ef_plot_text(&row, x + 2, height + 4, caption[m], 1, 0x202020);
      ef_plot_text(&row, x + 2, height + 14, second + 1, 1, 0x202020);
      x += overlay.w + 8;
    }
    snprintf(path, sizeof path, "%s/%s.png", o.out, base);
    uint8_t *png = NULL;
    size_t len = 0;
    if (ef_image_encode_png(&row, &png, &len) != EF_OK || ef_file_write(path, png, len) != EF_OK)
      rc = ef_report("cam", 1);
    else printf("  -> %s\n", path);
    free(png);
  }
  ef_image_free(&overlay), ef_image_free(&row);
  for (int m = 0; m < opened; m++) ef_cam_close(&cams[m]);
  if (dev_open) ef_device_close(&dev);
  free(class_names), free(class_name), free(cams), free(images), free(f);
  return rc;
}
