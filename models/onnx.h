// ONNX export of an inference graph: walks effnet's own graph (core/graph.h) node by node, maps each
// op to ONNX operators (opset 17, IR version 8), and writes the model atomically through protobuf-c
// with ONNX's onnx.proto (docs/models.md says why that serializer).
#ifndef EF_MODELS_ONNX_H
#define EF_MODELS_ONNX_H

#include <stdbool.h>

#include "core/store.h"
#include "models/efficientnet.h"

#define EF_ONNX_OPSET 17
#define EF_ONNX_IR_VERSION 8

typedef enum { EF_ONNX_NCHW, EF_ONNX_NHWC } ef_onnx_layout;

typedef struct {
  ef_onnx_layout layout;       // of the input "images"; inside the model, activations are NCHW
  bool keep_bn;                // BatchNormalization nodes (false: folded into the convolutions before them)
  float pixel_max;             // > 0: the model takes pixels in [0, pixel_max] (1 or 255) and normalizes them
                               // itself, (x / pixel_max - mean) / std; 0: it takes normalized images
  const float *mean, *std;     // per input channel (3 values, a gray image takes the first): the normalization
                               // the weights expect, for pixel_max and the metadata; NULL when unknown
  const ef_effnet_config *cfg; // the model's configuration, for the metadata (NULL: none)
  const char *class_names;     // one per line, for the metadata (NULL: none)
  const char *source;          // where the weights came from, for the metadata ("run/best.h5 (/ema)")
} ef_onnx_opts;

// Writes the inference graph g, from `images` (N,H,W,C) to `logits` (N,K), with the store's values
// (a bound store, any backend) as OUT.onnx at `path`: input "images" with a dynamic batch
// dimension N, output "logits". A node that has no ONNX form (a training graph's batch
// statistics, a loss, a backward op, 16-bit activations, ...) is an EF_ERR_UNSUPPORTED naming it;
// a failed write is an EF_ERR_IO and leaves `path` as it was (temporary file, fsync, rename).
ef_status ef_onnx_export(const ef_graph *g, const ef_tensor *images, const ef_tensor *logits, const ef_store *s,
                         const ef_onnx_opts *o, const char *path);

#endif
