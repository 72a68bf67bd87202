// effnet's public API. Link with libeffnet: find_package(effnet) then effnet::effnet in CMake, or
// `pkg-config --cflags --libs effnet`. Functions that can fail return NULL or a status other than
// EF_OK and leave a message (file:line and what to do) for ef_last_error().
//
// Inference: open any effnet weights file (from `effnet import`, `effnet export --to` effnet's
// HDF5, or a training checkpoint) and classify images or read their features:
//
//   ef_net *net = ef_net_open("b0.h5", NULL);              // CPU, batch 1, the model's resolution
//   float *image = malloc(ef_net_input_floats(net) * sizeof(float)), logits[1000];
//   ef_net_load_image(net, "cat.jpg", image);              // decode, resize, crop, normalize
//   ef_net_run(net, image, 1, logits, NULL);
//   int best[5]; float prob[5];
//   ef_top_k(logits, ef_net_classes(net), 5, best, prob);  // ef_net_class_name(net, best[0])
//   ef_net_close(net);
//
// Training, in-process, through the trainer effnet train runs (train/trainer.h):
//
//   ef_train_config c = ef_train_config_defaults();         // the tiny net on Fashion-MNIST, SGD
//   c.model = "b0", c.image_size = 32, c.epochs = 1, c.out = NULL;  // NULL: runs/b0-<time>
//   ef_trainer t;
//   ef_fit_result r;
//   ef_status st = ef_trainer_open(&t, &c, ef_comm_single());
//   if (st == EF_OK) st = ef_trainer_connect(&t);
//   if (st == EF_OK) st = ef_trainer_fit(&t, &(ef_fit_hooks){0}, &r);   // checkpoints in c.out
//   ef_trainer_close(&t);
//
// The library's own headers are installed beside this one (core/, data/, models/, train/):
// the graph, the model builder, the step and the loader, for what this page does not cover.
#ifndef EFFNET_EFFNET_H
#define EFFNET_EFFNET_H

#include <stdbool.h>

#include "core/log.h"
#include "train/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

// A model opened for inference.
typedef struct ef_net ef_net;

typedef struct {
  const char *device;        // "cpu", "cuda" or "cuda:N"  [cpu]
  const char *precision;     // "f32"; on CUDA also "tf32", "bf16" or "f16"  [f32]
  int threads;               // CPU threads (0: one per core)
  int batch;                 // the most images one ef_net_run takes  [1]
  int image_size;            // the input side (0: the model's evaluation size)
  double crop_pct;           // the centre crop over the resized shorter side (0: the model's)
  const char *interpolation; // "bilinear" or "bicubic" (NULL: the model's)
  bool raw;                  // a checkpoint's raw weights instead of its EMA
} ef_net_options;

// Opens `weights` (options may be NULL: the defaults above). NULL on failure.
ef_net *ef_net_open(const char *weights, const ef_net_options *options);
void ef_net_close(ef_net *net);

// The model: classes, the name of class c (NULL when the file records none), the input side
// and channels, the floats one input image takes (side x side x channels), and the size of its
// pooled features (the classifier's input).
int ef_net_classes(const ef_net *net);
const char *ef_net_class_name(const ef_net *net, int c);
int ef_net_image_size(const ef_net *net);
int ef_net_channels(const ef_net *net);
long ef_net_input_floats(const ef_net *net);
int ef_net_features(const ef_net *net);
// Its full description (architecture, evaluation transform): train/model.h.
const ef_model_desc *ef_net_desc(const ef_net *net);

// A JPEG or PNG file through the model's evaluation transform (resize the shorter side, centre
// crop, normalize) into image (side, side, channels), as `effnet predict` feeds it. JPEGs are
// decoded in full (the pixels PIL gives), never shrunk in the DCT domain as the loader does.
ef_status ef_net_load_image(ef_net *net, const char *path, float *image);
// `count` images (1 ... batch, (count, side, side, channels) one after another) through the
// model: logits (count, classes) and features (count, features); either may be NULL.
ef_status ef_net_run(ef_net *net, const float *images, int count, float *logits, float *features);

// The k most likely classes of a row of logits, best first, with their softmax probabilities;
// returns how many (k or classes, the fewer; 0 when the row holds a NaN).
int ef_top_k(const float *logits, int classes, int k, int *index, float *prob);

#ifdef __cplusplus
}
#endif

#endif
