// Where a model looks: class activation maps (CAM, Zhou et al. 2016; the maps of the EfficientNet
// paper's Figure 7) from the head's features and the classifier's weights, and Grad-CAM
// (Selvaraju et al. 2017) at any layer, for a weights file and image files; and a map drawn over
// its photo (min-max scaled, upsampled, coloured, blended) for `effnet cam`'s PNGs.
#ifndef EF_TRAIN_CAM_H
#define EF_TRAIN_CAM_H

#include <stdbool.h>

#include "data/image.h"
#include "train/device.h"
#include "train/model.h"

typedef struct {
  bool grad_cam;     // Grad-CAM at `layer`; else CAM (the head's features, "bn2")
  const char *layer; // Grad-CAM: a 4-d tensor's name, a block's output "blocks.5.2" or "bn2" (NULL: "bn2")
  ef_eval_spec eval; // the weights (EMA or raw) and the evaluation transform's changes
} ef_cam_options;

typedef struct {
  ef_model model;     // the weights and the evaluation graph (unused but for the weights)
  ef_model_graph sal; // the differentiable evaluation graph: logits, the layer and its gradient
  ef_cam_options o;
  ef_transform tf;
  float lut[3 * 256];
  ef_transform_scratch scratch;
  uint8_t *file;
  size_t file_cap;
  float *image, *logits, *dlogits, *act, *grad, *map; // the model's input, outputs, the layer, its gradient, the map
  float *weights;                                     // CAM: the classifier's (classes, C)
  int h, w, c;                                        // the layer's map
} ef_cam;

// Opens a weights file on `be` for maps. EF_ERR_INVALID when the layer does not exist (naming
// `effnet info --layers`) or CAM is asked of a model without EfficientNet's head.
ef_status ef_cam_open(ef_cam *c, const char *weights, const ef_cam_options *o, ef_backend *be);
void ef_cam_close(ef_cam *c);

typedef struct {
  int cls;    // the class mapped
  int top1;   // the model's top-1
  float prob; // the softmax probability of cls
  float *map; // (h, w): CAM's sum_c w[cls,c] A[y,x,c], or Grad-CAM's ReLU(sum_c alpha_c A[y,x,c]),
              // alpha_c = the mean over y, x of d logit[cls] / d A[y,x,c]; points into the ef_cam
  int h, w;
  ef_image input; // the photo as the model saw it (resized, cropped), 8-bit; points into the ef_cam
} ef_cam_result;

// The map of class `cls` (-1: the top-1) for one image file. EF_ERR_INVALID for a class out of
// range; the decoder's errors for a bad file.
ef_status ef_cam_image(ef_cam *c, const char *path, int cls, ef_cam_result *r);
// The same on an image already transformed and normalized (h x w x channels floats, the model's
// input): the library's core, which ef_cam_image and the tests call.
ef_status ef_cam_run(ef_cam *c, const float *image, int cls, ef_cam_result *r);

// The map over its photo: scaled to [0, 1] by its minimum and maximum, upsampled to the photo's
// side bilinearly (half-pixel centres, as OpenCV's resize), coloured by the jet scale, blended with
// weight alpha over the photo (gray photos made RGB). out is made side x side x 3.
void ef_cam_overlay(const ef_cam_result *r, float alpha, ef_image *out);

// Writes a (rows, cols) float32 array as a NumPy .npy file (atomically).
ef_status ef_write_npy(const char *path, const float *x, int rows, int cols);

#endif
