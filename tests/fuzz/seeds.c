// The fuzz targets' seed inputs, written into DIR/weights and DIR/decode: weights and training
// checkpoints of the tiny net and of a small custom EfficientNet (with class names, an EMA and SGD
// momentum), and small JPEGs and PNGs (gray and RGB) behind the decode target's 4 choice bytes.
// usage: fuzz_seeds DIR
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cpu/cpu.h"
#include "data/encode.h"
#include "train/checkpoint.h"

static char dir[4096];

static ef_status weights(const char *name, const ef_model_desc *d, bool checkpoint, ef_backend *be) {
  char path[4200];
  snprintf(path, sizeof path, "%s/weights/%s", dir, name);
  ef_store *s = ef_store_new();
  ef_model_graph g;
  ef_model_graph_new(&g, s, d, &(ef_graph_opts){.batch = 1});
  ef_status st = ef_store_bind(s, be);
  ef_store_initialize(s, 1);
  if (st == EF_OK && !checkpoint) st = ef_model_save(path, s, d, NULL, 0);
  if (st == EF_OK && checkpoint) {
    ef_ema ema;
    ef_optim opt;
    ef_optim_config sgd = ef_optim_defaults(EF_OPT_SGD);
    ef_checkpoint_info *info = calloc(1, sizeof *info);
    info->model = *d, info->step = 12, info->epoch = 1, info->batch = 4, info->seed = 1, info->epoch_loss = 2.5;
    info->epoch_correct = 7, info->epoch_seen = 32, info->best_top1 = 0.25, info->loss_scale = 1;
    snprintf(info->args, sizeof info->args, "--epochs\n3\n--ema\n0.9\n");
    if ((st = ef_ema_init(&ema, s, 0.9)) == EF_OK && (st = ef_optim_init(&opt, s, &sgd)) == EF_OK) {
      st = ef_checkpoint_save(path, s, &ema, &opt, info);
      ef_optim_free(&opt), ef_ema_free(&ema);
    }
    free(info);
  }
  ef_model_graph_free(&g);
  ef_store_free(s);
  return st;
}

// An image behind the 4 bytes that choose how it is decoded.
static ef_status image(const char *name, int w, int h, int c, bool jpeg, const uint8_t choice[4]) {
  ef_image im = {0};
  ef_image_reshape(&im, w, h, c);
  for (size_t i = 0; i < (size_t)w * h * c; i++) im.px[i] = (uint8_t)(i * 7 + i / 13);
  uint8_t *buf;
  size_t len;
  ef_status st = jpeg ? ef_image_encode_jpeg(&im, 90, &buf, &len) : ef_image_encode_png(&im, &buf, &len);
  ef_image_free(&im);
  if (st != EF_OK) return st;
  uint8_t *file = malloc(len + 4);
  memcpy(file, choice, 4), memcpy(file + 4, buf, len);
  char path[4200];
  snprintf(path, sizeof path, "%s/decode/%s", dir, name);
  st = ef_write_file(path, file, len + 4);
  free(buf), free(file);
  return st;
}

int main(int argc, char **argv) {
  if (argc != 2) return fprintf(stderr, "usage: fuzz_seeds DIR\n"), 2;
  snprintf(dir, sizeof dir, "%s", argv[1]);
  char sub[4200];
  mkdir(dir, 0755);
  snprintf(sub, sizeof sub, "%s/weights", dir), mkdir(sub, 0755);
  snprintf(sub, sizeof sub, "%s/decode", dir), mkdir(sub, 0755);
  ef_backend *be = ef_cpu_backend_new(1);
  ef_model_desc *d = malloc(sizeof *d);
  ef_model_desc_tiny(d, 2, 1, 8, 0.2f);
  char *names[] = {"cat", "dog", "coffee"};
  ef_status st = ef_model_desc_set_names(d, names, 2);
  if (st == EF_OK) st = weights("tiny.h5", d, false, be);
  if (st == EF_OK) st = weights("tiny-checkpoint.h5", d, true, be);
  ef_effnet_config cfg;
  ef_effnet_preset("b0", &cfg);
  cfg.width = cfg.depth = 0.1, cfg.num_classes = 3, cfg.resolution = 32, snprintf(cfg.name, sizeof cfg.name, "custom");
  ef_model_desc_effnet(d, &cfg);
  if (st == EF_OK) st = ef_model_desc_set_names(d, names, 3);
  if (st == EF_OK) st = weights("effnet.h5", d, false, be);
  if (st == EF_OK) st = weights("effnet-checkpoint.h5", d, true, be);
  ef_effnet_preset("lite0", &cfg); // the Lite switch: relu6, no squeeze-excite, fixed stem and head
  cfg.width = cfg.depth = 0.1, cfg.num_classes = 3, cfg.resolution = 32, snprintf(cfg.name, sizeof cfg.name, "custom");
  ef_model_desc_effnet(d, &cfg);
  if (st == EF_OK) st = ef_model_desc_set_names(d, names, 3);
  if (st == EF_OK) st = weights("lite.h5", d, false, be);
  const uint8_t eval_rgb[4] = {0x01, 5, 9, 3}, train_gray_region[4] = {0x16, 40, 7, 11},
                strict_dct[4] = {0x2b, 17, 3, 6};
  if (st == EF_OK) st = image("rgb.jpg", 37, 29, 3, true, eval_rgb);
  if (st == EF_OK) st = image("gray.jpg", 40, 24, 1, true, train_gray_region);
  if (st == EF_OK) st = image("rgb-strict.jpg", 64, 48, 3, true, strict_dct);
  if (st == EF_OK) st = image("rgb.png", 21, 17, 3, false, train_gray_region);
  if (st == EF_OK) st = image("gray.png", 16, 33, 1, false, eval_rgb);
  free(d);
  ef_backend_free(be);
  if (st != EF_OK) fprintf(stderr, "fuzz_seeds: %s\n", ef_last_error());
  return st != EF_OK;
}
