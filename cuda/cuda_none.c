// The CUDA backend's entry points in a build without CUDA (EFFNET_CUDA=OFF, or no nvcc found):
// every request for a GPU gets a message saying how to build one.
#include <stdio.h>

#include "cuda/cuda.h"

#define NO_CUDA "this effnet was built without CUDA (EFFNET_CUDA=OFF or no nvcc/cuDNN found at configure time); " \
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
