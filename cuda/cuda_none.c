// The CUDA backend's entry points in a build without CUDA (EFFNET_CUDA=OFF, or no nvcc found):
// every request for a GPU gets a message saying how to build one.
#include <stdio.h>

#include "cuda/cuda.h"

#define NO_CUDA                                                                                                        \
  "this effnet was built without CUDA (EFFNET_CUDA=OFF or no nvcc/cuDNN found at configure time); "                    \
  "rebuild with the CUDA toolkit and cuDNN installed"

int ef_cuda_device_count(char *why, size_t len) {
  snprintf(why, len, "%s", NO_CUDA);
  return 0;
}

ef_backend *ef_cuda_backend_new(const ef_cuda_opts *opts) {
  (void)opts;
  EF_ERROR(EF_ERR_UNSUPPORTED, "%s", NO_CUDA);
  return NULL;
}

bool ef_backend_is_cuda(const ef_backend *be) {
  (void)be;
  return false;
}

const char *ef_cuda_describe(const ef_backend *be) {
  (void)be;
  return "none";
}

size_t ef_cuda_peak_bytes(const ef_backend *be) {
  (void)be;
  return 0;
}

size_t ef_cuda_peak_device_bytes(const ef_backend *be) {
  (void)be;
  return 0;
}

size_t ef_cuda_free_bytes(const ef_backend *be) {
  (void)be;
  return 0;
}

void *ef_cuda_stream(const ef_backend *be) {
  (void)be;
  return NULL;
}

ef_status ef_cuda_feed_new(ef_cuda_feed **out, ef_backend *be, int64_t pixels, int channels, int64_t batch,
                           const float lut[3 * 256]) {
  (void)be, (void)pixels, (void)channels, (void)batch, (void)lut;
  *out = NULL;
  return EF_ERROR(EF_ERR_UNSUPPORTED, "%s", NO_CUDA);
}

void ef_cuda_feed_free(ef_cuda_feed *f) { EF_ASSERT(!f, "a feed without CUDA"); }

void ef_cuda_feed_put(ef_cuda_feed *f, const uint8_t *pixels, const int32_t *labels) {
  (void)pixels, (void)labels;
  EF_FATAL("a feed (%p) without CUDA", (void *)f);
}

void ef_cuda_feed_take(ef_cuda_feed *f, const ef_tensor *images, const ef_tensor *labels) {
  (void)images, (void)labels;
  EF_FATAL("a feed (%p) without CUDA", (void *)f);
}

ef_status ef_cuda_readback_new(ef_cuda_readback **out, ef_backend *be, size_t bytes) {
  (void)be, (void)bytes;
  *out = NULL;
  return EF_ERROR(EF_ERR_UNSUPPORTED, "%s", NO_CUDA);
}

void ef_cuda_readback_free(ef_cuda_readback *r) { EF_ASSERT(!r, "a readback without CUDA"); }

void ef_cuda_readback_queue(ef_cuda_readback *r, uint32_t seq, const void *const *src, const size_t *bytes, int n) {
  (void)seq, (void)src, (void)bytes, (void)n;
  EF_FATAL("a readback (%p) without CUDA", (void *)r);
}

int ef_cuda_readback_ready(ef_cuda_readback *r, uint32_t seq, char *why, size_t len) {
  (void)seq, (void)why, (void)len;
  EF_FATAL("a readback (%p) without CUDA", (void *)r);
}

const void *ef_cuda_readback_wait(ef_cuda_readback *r, uint32_t seq) {
  (void)seq;
  EF_FATAL("a readback (%p) without CUDA", (void *)r);
}
