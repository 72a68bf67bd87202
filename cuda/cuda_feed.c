// What lets a training loop keep the GPU busy: the feed (uint8 batches uploaded through two pinned
// buffers on a copy stream of its own, then normalized on the GPU into the plan's input) and the
// readback (a step's small results copied to pinned memory after it, read one step later).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_internal.h"

// ---- the feed ------------------------------------------------------------------------------------

struct ef_cuda_feed {
  ef_cuda *cu;
  cudaStream_t copy; // the uploads'
  int64_t pixels, batch;
  int channels;
  uint8_t *host_px[2], *dev_px[2];   // slot k: pinned and device copies of a batch's pixels ...
  int32_t *host_lab[2], *dev_lab[2]; // ... and labels
  cudaEvent_t uploaded[2];           // on the copy stream, after slot k's upload
  cudaEvent_t taken[2];              // on the backend's stream, after slot k's normalization
  float *lut;                        // (3, 256) on the device
  uint32_t puts, takes;
};

void ef_cuda_feed_free(ef_cuda_feed *f) {
  if (!f) return;
  if (f->copy) EF_CUDA_CHECK(cudaStreamSynchronize(f->copy));
  for (int k = 0; k < 2; k++) {
    if (f->host_px[k]) EF_CUDA_CHECK(cudaFreeHost(f->host_px[k]));
    if (f->host_lab[k]) EF_CUDA_CHECK(cudaFreeHost(f->host_lab[k]));
    if (f->dev_px[k]) EF_CUDA_CHECK(cudaFree(f->dev_px[k]));
    if (f->dev_lab[k]) EF_CUDA_CHECK(cudaFree(f->dev_lab[k]));
    if (f->uploaded[k]) EF_CUDA_CHECK(cudaEventDestroy(f->uploaded[k]));
    if (f->taken[k]) EF_CUDA_CHECK(cudaEventDestroy(f->taken[k]));
  }
  if (f->lut) EF_CUDA_CHECK(cudaFree(f->lut));
  if (f->copy) EF_CUDA_CHECK(cudaStreamDestroy(f->copy));
  free(f);
}

ef_status ef_cuda_feed_new(ef_cuda_feed **out, ef_backend *be, int64_t pixels, int channels, int64_t batch,
                           const float lut[3 * 256]) {
  EF_ASSERT(ef_backend_is_cuda(be) && (channels == 1 || channels == 3) && pixels > 0 && batch > 0,
            "a feed of %lld pixel values, %d channels, %lld labels on %s", (long long)pixels, channels,
            (long long)batch, be->name);
  ef_cuda_feed *f = ef_xcalloc(1, sizeof *f);
  *f = (ef_cuda_feed){.cu = be->impl, .pixels = pixels, .batch = batch, .channels = channels};
  cudaError_t st = cudaStreamCreateWithFlags(&f->copy, cudaStreamNonBlocking);
  for (int k = 0; k < 2 && st == cudaSuccess; k++) {
    st = cudaHostAlloc((void **)&f->host_px[k], (size_t)pixels, cudaHostAllocDefault);
    if (st == cudaSuccess)
      st = cudaHostAlloc((void **)&f->host_lab[k], sizeof(int32_t) * (size_t)batch, cudaHostAllocDefault);
    if (st == cudaSuccess) st = cudaMalloc((void **)&f->dev_px[k], (size_t)pixels);
    if (st == cudaSuccess) st = cudaMalloc((void **)&f->dev_lab[k], sizeof(int32_t) * (size_t)batch);
    if (st == cudaSuccess) st = cudaEventCreateWithFlags(&f->uploaded[k], cudaEventDisableTiming);
    if (st == cudaSuccess) st = cudaEventCreateWithFlags(&f->taken[k], cudaEventDisableTiming);
  }
  if (st == cudaSuccess) st = cudaMalloc((void **)&f->lut, sizeof(float) * 3 * 256);
  if (st == cudaSuccess) st = cudaMemcpy(f->lut, lut, sizeof(float) * 3 * 256, cudaMemcpyHostToDevice);
  if (st != cudaSuccess) {
    cudaGetLastError(); // clear it: the caller reports
    ef_cuda_feed_free(f);
    return EF_ERROR(st == cudaErrorMemoryAllocation ? EF_ERR_NOMEM : EF_ERR_UNSUPPORTED,
                    "cannot set up the GPU feed for batches of %lld bytes: %s", (long long)pixels,
                    cudaGetErrorString(st));
  }
  *out = f;
  return EF_OK;
}

void ef_cuda_feed_put(ef_cuda_feed *f, const uint8_t *pixels, const int32_t *labels) {
  EF_ASSERT(f->puts - f->takes < 2, "a third batch put before the first was taken");
  int k = (int)(f->puts & 1);
  EF_CUDA_CHECK(cudaEventSynchronize(f->uploaded[k])); // the slot's previous upload left its pinned buffers
  memcpy(f->host_px[k], pixels, (size_t)f->pixels);
  memcpy(f->host_lab[k], labels, sizeof(int32_t) * (size_t)f->batch);
  EF_CUDA_CHECK(cudaStreamWaitEvent(f->copy, f->taken[k], 0)); // and its device copy was normalized
  EF_CUDA_CHECK(cudaMemcpyAsync(f->dev_px[k], f->host_px[k], (size_t)f->pixels, cudaMemcpyHostToDevice, f->copy));
  EF_CUDA_CHECK(cudaMemcpyAsync(f->dev_lab[k], f->host_lab[k], sizeof(int32_t) * (size_t)f->batch,
                                cudaMemcpyHostToDevice, f->copy));
  EF_CUDA_CHECK(cudaEventRecord(f->uploaded[k], f->copy));
  f->puts++;
}

void ef_cuda_feed_take(ef_cuda_feed *f, const ef_tensor *images, const ef_tensor *labels) {
  EF_ASSERT(f->takes < f->puts, "a batch taken before it was put");
  EF_ASSERT(ef_numel(images) == f->pixels && ef_numel(labels) == f->batch && labels->dtype == EF_I32,
            "images '%s' or labels '%s' of another size than the feed's", images->name, labels->name);
  EF_ASSERT(!f->cu->capturing, "a batch taken inside a capture would be frozen into it");
  int k = (int)(f->takes & 1);
  cudaStream_t st = f->cu->stream;
  EF_CUDA_CHECK(cudaStreamWaitEvent(st, f->uploaded[k], 0));
  ef_k_normalize_u8(ef_cuda_ref(images), f->dev_px[k], f->lut, f->channels, f->pixels, st);
  EF_CUDA_CHECK(cudaGetLastError());
  EF_CUDA_CHECK(
      cudaMemcpyAsync(labels->data, f->dev_lab[k], sizeof(int32_t) * (size_t)f->batch, cudaMemcpyDeviceToDevice, st));
  EF_CUDA_CHECK(cudaEventRecord(f->taken[k], st));
  f->takes++;
}

// ---- the readback --------------------------------------------------------------------------------

struct ef_cuda_readback {
  ef_cuda *cu;
  size_t bytes;
  char *slot[2];       // pinned
  cudaEvent_t done[2]; // after slot k's copies
  uint32_t queued;     // the next step number to queue
};

void ef_cuda_readback_free(ef_cuda_readback *r) {
  if (!r) return;
  for (int k = 0; k < 2; k++) {
    if (r->done[k]) EF_CUDA_CHECK(cudaEventSynchronize(r->done[k]));
    if (r->done[k]) EF_CUDA_CHECK(cudaEventDestroy(r->done[k]));
    if (r->slot[k]) EF_CUDA_CHECK(cudaFreeHost(r->slot[k]));
  }
  free(r);
}

ef_status ef_cuda_readback_new(ef_cuda_readback **out, ef_backend *be, size_t bytes) {
  EF_ASSERT(ef_backend_is_cuda(be), "a readback on %s", be->name);
  ef_cuda_readback *r = ef_xcalloc(1, sizeof *r);
  *r = (ef_cuda_readback){.cu = be->impl, .bytes = bytes};
  cudaError_t st = cudaSuccess;
  for (int k = 0; k < 2 && st == cudaSuccess; k++) {
    st = cudaHostAlloc((void **)&r->slot[k], bytes ? bytes : 1, cudaHostAllocDefault);
    if (st == cudaSuccess) st = cudaEventCreateWithFlags(&r->done[k], cudaEventDisableTiming);
  }
  if (st != cudaSuccess) {
    cudaGetLastError();
    ef_cuda_readback_free(r);
    return EF_ERROR(EF_ERR_NOMEM, "cannot allocate %zu bytes of pinned memory for the step's results: %s", bytes,
                    cudaGetErrorString(st));
  }
  *out = r;
  return EF_OK;
}

void ef_cuda_readback_queue(ef_cuda_readback *r, uint32_t seq, const void *const *src, const size_t *bytes, int n) {
  EF_ASSERT(seq == r->queued, "readback of step %u queued out of order (next: %u)", seq, r->queued);
  EF_ASSERT(!r->cu->capturing, "a readback inside a capture");
  int k = (int)(seq & 1);
  EF_CUDA_CHECK(cudaEventSynchronize(r->done[k])); // step seq - 2's copies were read (or never queued)
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    EF_ASSERT(at + bytes[i] <= r->bytes, "%zu bytes of results past the readback's %zu", at + bytes[i], r->bytes);
    EF_CUDA_CHECK(cudaMemcpyAsync(r->slot[k] + at, src[i], bytes[i], cudaMemcpyDeviceToHost, r->cu->stream));
    at += bytes[i];
  }
  EF_CUDA_CHECK(cudaEventRecord(r->done[k], r->cu->stream));
  r->queued++;
}

int ef_cuda_readback_ready(ef_cuda_readback *r, uint32_t seq, char *why, size_t len) {
  EF_ASSERT(seq < r->queued && r->queued - seq <= 2, "step %u's results are not in the readback (queued: %u)", seq,
            r->queued);
  cudaError_t e = cudaEventQuery(r->done[seq & 1]);
  if (e == cudaSuccess) return 1;
  if (e == cudaErrorNotReady) return 0;
  snprintf(why, len, "CUDA reported %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
  return -1;
}

const void *ef_cuda_readback_wait(ef_cuda_readback *r, uint32_t seq) {
  char why[256];
  if (ef_cuda_readback_ready(r, seq, why, sizeof why) != 1) EF_CUDA_CHECK(cudaEventSynchronize(r->done[seq & 1]));
  return r->slot[seq & 1];
}
