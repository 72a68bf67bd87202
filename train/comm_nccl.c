// The NCCL communicator on a GPU (see comm.h): every collective on one stream of its own, in the
// order the host issues them (the same on every rank), ordered after the backend's stream by an
// event and before what is queued there after it by another; host buffers copied through pinned
// and device staging; every wait polled against NCCL's asynchronous errors and a timeout.
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda.h"
#include "train/comm.h"

#define MAX_GROUPS 8

typedef struct { // shared by the job's communicator and its groups (split)
  cudaStream_t compute;          // the backend's stream
  cudaStream_t stream;           // every collective's
  cudaEvent_t ready, done, fence;
  void *host_stage, *dev_stage;  // host buffers go through these (pinned, device)
  size_t stage_bytes;
  double timeout;
  ef_comm *host;                 // what the job was launched with (MPI, or "launched"): its abort
  ncclComm_t comms[MAX_GROUPS];  // the job's, then its groups': polled for asynchronous errors
  int n_comms;
} nccl_shared;

typedef struct {
  ncclComm_t comm;
  nccl_shared *sh;
  bool job;                      // the job's communicator (frees the shared part), not a group
} nccl_impl;

// Ends the job after a failure here: every communicator aborted (kernels waiting on a dead peer
// return), then the launcher's or MPI's abort ends the other ranks.
static _Noreturn void nccl_fail(nccl_shared *sh, const char *what) {
  fprintf(stderr, "effnet: rank %d of %d: %s. Every rank stops now.\n", sh->host->rank, sh->host->world, what);
  fflush(stdout), fflush(stderr);
  for (int i = 0; i < sh->n_comms; i++) ncclCommAbort(sh->comms[i]);
  ef_comm_abort(sh->host, 1);
}

static _Noreturn void call_failed(nccl_shared *sh, const char *call, const char *file, int line, const char *text) {
  char what[1024];
  snprintf(what, sizeof what, "%s failed at %s:%d: %s (in a collective, a rank that died or a broken link between GPUs is "
           "the usual cause; NCCL_DEBUG=WARN says more)", call, file, line, text);
  nccl_fail(sh, what);
}

// Checks an NCCL or CUDA call (design §6): on failure, a message naming it, then the job ends.
#define EF_NCCL(sh, call)                                                                           \
  do {                                                                                              \
    ncclResult_t ef_nccl_rc_ = (call);                                                              \
    if (ef_nccl_rc_ != ncclSuccess) call_failed((sh), #call, __FILE__, __LINE__, ncclGetErrorString(ef_nccl_rc_)); \
  } while (0)
#define EF_NCCL_CUDA(sh, call)                                                                      \
  do {                                                                                              \
    cudaError_t ef_nccl_cu_ = (call);                                                               \
    if (ef_nccl_cu_ != cudaSuccess) call_failed((sh), #call, __FILE__, __LINE__, cudaGetErrorString(ef_nccl_cu_)); \
  } while (0)

static nccl_impl *impl_of(const ef_comm *c) { return c->impl; }
static ncclDataType_t type_of(ef_comm_dtype t) { return t == EF_COMM_F32 ? ncclFloat32 : ncclFloat64; }
static size_t size_of(ef_comm_dtype t) { return t == EF_COMM_F32 ? 4 : 8; }
// AVG: NCCL's average, the same bits on every rank (it may round otherwise than MPI's sum, then
// times 1/world).
static ncclRedOp_t op_of(ef_comm_op op) { return op == EF_COMM_MAX ? ncclMax : op == EF_COMM_AVG ? ncclAvg : ncclSum; }

static bool on_device(nccl_shared *sh, const void *p) {
  struct cudaPointerAttributes a;
  EF_NCCL_CUDA(sh, cudaPointerGetAttributes(&a, p));
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static bool capturing(nccl_shared *sh) {
  enum cudaStreamCaptureStatus st;
  EF_NCCL_CUDA(sh, cudaStreamIsCapturing(sh->compute, &st));
  return st != cudaStreamCaptureStatusNone;
}

// A collective's bracket: after the work queued on the backend's stream so far (begin); that
// stream's later work after it (end).
static void begin(nccl_shared *sh) {
  EF_NCCL_CUDA(sh, cudaEventRecord(sh->ready, sh->compute));
  EF_NCCL_CUDA(sh, cudaStreamWaitEvent(sh->stream, sh->ready, 0));
}
static void end(nccl_shared *sh) {
  EF_NCCL_CUDA(sh, cudaEventRecord(sh->done, sh->stream));
  EF_NCCL_CUDA(sh, cudaStreamWaitEvent(sh->compute, sh->done, 0));
}

typedef struct {
  nccl_shared *sh;
  cudaEvent_t ev;
} poll_args;

static int event_done(void *user, char *why, size_t len) {
  const poll_args *a = user;
  cudaError_t e = cudaEventQuery(a->ev);
  if (e == cudaSuccess) return 1;
  if (e != cudaErrorNotReady) {
    snprintf(why, len, "CUDA reported %s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
    return -1;
  }
  for (int i = 0; i < a->sh->n_comms; i++) {
    ncclResult_t as = ncclSuccess, rc = ncclCommGetAsyncError(a->sh->comms[i], &as);
    if (rc != ncclSuccess || (as != ncclSuccess && as != ncclInProgress)) {
      snprintf(why, len, "NCCL reported %s (%s)", ncclGetErrorString(rc != ncclSuccess ? rc : as),
               ncclGetLastError(a->sh->comms[i]));
      return -1;
    }
  }
  return 0;
}

// Waits for ev (recorded), within the timeout.
static void wait_event(nccl_shared *sh, cudaEvent_t ev, const char *what) {
  poll_args a = {sh, ev};
  if (ef_comm_poll(event_done, &a, sh->timeout, what) != EF_OK) nccl_fail(sh, ef_last_error());
}

// Host buffers: staged through pinned and device memory of at least `bytes`.
static void stage_reserve(nccl_shared *sh, size_t bytes) {
  if (bytes <= sh->stage_bytes) return;
  if (sh->host_stage) EF_NCCL_CUDA(sh, cudaFreeHost(sh->host_stage));
  if (sh->dev_stage) EF_NCCL_CUDA(sh, cudaFree(sh->dev_stage));
  sh->host_stage = sh->dev_stage = NULL, sh->stage_bytes = 0;
  EF_NCCL_CUDA(sh, cudaMallocHost(&sh->host_stage, bytes));
  EF_NCCL_CUDA(sh, cudaMalloc(&sh->dev_stage, bytes));
  sh->stage_bytes = bytes;
}

// The device buffer a collective works on: buf itself, or buf's bytes copied up to the stage.
static void *stage_in(nccl_shared *sh, void *buf, size_t bytes, bool device) {
  if (device) return buf;
  EF_ASSERT(!capturing(sh), "a collective on host memory while a device graph is being recorded");
  stage_reserve(sh, bytes);
  memcpy(sh->host_stage, buf, bytes);
  EF_NCCL_CUDA(sh, cudaMemcpyAsync(sh->dev_stage, sh->host_stage, bytes, cudaMemcpyHostToDevice, sh->stream));
  return sh->dev_stage;
}

// After the collective: the backend's later work ordered after it; host buffers waited for and
// copied back (device ones are waited for by ef_comm.sync, and can be recorded in a graph).
static void finish(nccl_shared *sh, void *buf, size_t bytes, bool device, const char *what) {
  if (!device) EF_NCCL_CUDA(sh, cudaMemcpyAsync(sh->host_stage, sh->dev_stage, bytes, cudaMemcpyDeviceToHost, sh->stream));
  end(sh);
  if (device) return;
  wait_event(sh, sh->done, what);
  memcpy(buf, sh->host_stage, bytes);
}

static void nccl_allreduce(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {
  nccl_impl *m = impl_of(c);
  nccl_shared *sh = m->sh;
  size_t bytes = count * size_of(dtype);
  bool device = on_device(sh, buf);
  begin(sh);
  void *d = stage_in(sh, buf, bytes, device);
  EF_NCCL(sh, ncclAllReduce(d, d, count, type_of(dtype), op_of(op), m->comm, sh->stream));
  finish(sh, buf, bytes, device, "an all-reduce");
}

// Device buffers only (the gradient buckets): queued; wait orders the backend's stream after it.
static void nccl_iallreduce(ef_comm *c, ef_comm_request *r) {
  nccl_impl *m = impl_of(c);
  EF_ASSERT(on_device(m->sh, r->buf), "a non-blocking all-reduce of host memory on NCCL");
  begin(m->sh);
  EF_NCCL(m->sh, ncclAllReduce(r->buf, r->buf, r->count, type_of(r->dtype), op_of(r->op), m->comm, m->sh->stream));
  r->impl = m;
}

static bool nccl_test(ef_comm *c, ef_comm_request *r) { return r->impl == NULL; } // NCCL progresses by itself

static void nccl_wait(ef_comm *c, ef_comm_request *r) {
  if (!r->impl) return;
  end(impl_of(c)->sh);
  r->impl = NULL;
}

static void nccl_broadcast(ef_comm *c, void *buf, size_t bytes, int root) {
  nccl_impl *m = impl_of(c);
  nccl_shared *sh = m->sh;
  bool device = on_device(sh, buf);
  begin(sh);
  void *d = stage_in(sh, buf, bytes, device);
  EF_NCCL(sh, ncclBroadcast(d, d, bytes, ncclUint8, root, m->comm, sh->stream));
  finish(sh, buf, bytes, device, "a broadcast");
}

static void nccl_barrier(ef_comm *c) {
  float one = 1;
  nccl_allreduce(c, &one, 1, EF_COMM_F32, EF_COMM_SUM);
}

static void nccl_sync(ef_comm *c) {
  nccl_shared *sh = impl_of(c)->sh;
  EF_NCCL_CUDA(sh, cudaEventRecord(sh->fence, sh->compute));
  wait_event(sh, sh->fence, "the GPU's work (a training step with its all-reduces)");
}

static void nccl_abort(ef_comm *c, int code) {
  nccl_shared *sh = impl_of(c)->sh;
  for (int i = 0; i < sh->n_comms; i++) ncclCommAbort(sh->comms[i]);
  ef_comm_abort(sh->host, code);
}

static void nccl_free(ef_comm *c) {
  nccl_impl *m = impl_of(c);
  nccl_shared *sh = m->sh;
  EF_NCCL(sh, ncclCommDestroy(m->comm));
  for (int i = 0; i < sh->n_comms; i++)
    if (sh->comms[i] == m->comm) sh->comms[i] = sh->comms[--sh->n_comms];
  if (m->job) {
    EF_ASSERT(sh->n_comms == 0, "the NCCL communicator freed before its groups");
    EF_NCCL_CUDA(sh, cudaEventDestroy(sh->ready));
    EF_NCCL_CUDA(sh, cudaEventDestroy(sh->done));
    EF_NCCL_CUDA(sh, cudaEventDestroy(sh->fence));
    EF_NCCL_CUDA(sh, cudaStreamDestroy(sh->stream));
    if (sh->host_stage) EF_NCCL_CUDA(sh, cudaFreeHost(sh->host_stage));
    if (sh->dev_stage) EF_NCCL_CUDA(sh, cudaFree(sh->dev_stage));
    ef_comm_free(sh->host);
    free(sh);
  }
  free(m);
  free(c);
}

static ef_comm *wrap(nccl_shared *sh, ncclComm_t comm, bool job, int rank, int world) {
  EF_ASSERT(sh->n_comms < MAX_GROUPS, "more than %d NCCL communicators", MAX_GROUPS);
  sh->comms[sh->n_comms++] = comm;
  nccl_impl *m = ef_xcalloc(1, sizeof *m);
  *m = (nccl_impl){.comm = comm, .sh = sh, .job = job};
  ef_comm *c = ef_xcalloc(1, sizeof *c);
  *c = (ef_comm){.name = "nccl", .rank = rank, .world = world, .local_rank = sh->host->local_rank,
                 .allreduce = nccl_allreduce, .iallreduce = nccl_iallreduce, .test = nccl_test, .wait = nccl_wait,
                 .broadcast = nccl_broadcast, .barrier = nccl_barrier, .sync = nccl_sync, .abort = nccl_abort,
                 .free = nccl_free, .impl = m};
  return c;
}

static ef_comm *nccl_split(ef_comm *c, int group) {
  nccl_impl *m = impl_of(c);
  EF_ASSERT(group >= 1 && c->world % group == 0, "groups of %d ranks out of %d", group, c->world);
  ncclComm_t sub;
  EF_NCCL(m->sh, ncclCommSplit(m->comm, c->rank / group, c->rank, &sub, NULL));
  ef_comm *g = wrap(m->sh, sub, false, c->rank % group, group);
  g->split = nccl_split;
  return g;
}

static void to_hex(const unsigned char *b, size_t n, char *hex) {
  for (size_t i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", b[i]);
}

static bool from_hex(const char *hex, unsigned char *b, size_t n) {
  if (!hex || strlen(hex) != 2 * n) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return false;
    b[i] = (unsigned char)v;
  }
  return true;
}

ef_status ef_nccl_unique_id(char *hex, size_t len) {
  ncclUniqueId id;
  EF_ASSERT(len >= 2 * sizeof id.internal + 1, "room for %zu hex digits", 2 * sizeof id.internal);
  ncclResult_t rc = ncclGetUniqueId(&id);
  if (rc != ncclSuccess)
    return EF_ERROR(EF_ERR_UNSUPPORTED, "ncclGetUniqueId failed: %s (%s); NCCL_DEBUG=INFO says which network interface "
                    "it tried (NCCL_SOCKET_IFNAME chooses one)", ncclGetErrorString(rc), ncclGetLastError(NULL));
  to_hex((const unsigned char *)id.internal, sizeof id.internal, hex);
  return EF_OK;
}

ef_status ef_comm_nccl_new(ef_comm **c, ef_backend *be, double timeout_s) {
  ef_comm *host = *c;
  bool launched = !strcmp(host->name, "launched");
  EF_ASSERT(launched || (host->world > 1 && host->broadcast), "NCCL over a '%s' communicator of %d", host->name, host->world);
  ncclUniqueId id;
  if (launched) {
    if (!from_hex(getenv(EF_LAUNCH_NCCL_ID), (unsigned char *)id.internal, sizeof id.internal))
      return EF_ERROR(EF_ERR_INVALID, "%s is not %zu hex digits: it is set by `effnet train --gpus N` for the workers it starts",
                      EF_LAUNCH_NCCL_ID, 2 * sizeof id.internal);
  } else {
    char hex[2 * sizeof id.internal + 1];
    if (host->rank == 0 && ef_nccl_unique_id(hex, sizeof hex) != EF_OK) return EF_ERR_UNSUPPORTED; // the caller aborts the job
    if (host->rank == 0) from_hex(hex, (unsigned char *)id.internal, sizeof id.internal);
    host->broadcast(host, &id, sizeof id, 0);
  }
  nccl_shared *sh = ef_xcalloc(1, sizeof *sh);
  *sh = (nccl_shared){.compute = ef_cuda_stream(be), .timeout = timeout_s, .host = host};
  cudaError_t ce = cudaStreamCreateWithFlags(&sh->stream, cudaStreamNonBlocking);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&sh->ready, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&sh->done, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&sh->fence, cudaEventDisableTiming);
  if (ce != cudaSuccess) {
    free(sh);
    return EF_ERROR(EF_ERR_UNSUPPORTED, "cannot create the NCCL communicator's stream and events: %s", cudaGetErrorString(ce));
  }
  ncclComm_t comm;
  ncclResult_t rc = ncclCommInitRank(&comm, host->world, id, host->rank);
  if (rc != ncclSuccess) {
    cudaEventDestroy(sh->ready), cudaEventDestroy(sh->done), cudaEventDestroy(sh->fence), cudaStreamDestroy(sh->stream);
    free(sh);
    return EF_ERROR(EF_ERR_UNSUPPORTED, "ncclCommInitRank (rank %d of %d) failed: %s (%s); NCCL_DEBUG=INFO shows how far it "
                    "got", host->rank, host->world, ncclGetErrorString(rc), ncclGetLastError(NULL));
  }
  ef_comm *n = wrap(sh, comm, true, host->rank, host->world);
  n->split = nccl_split;
  stage_reserve(sh, 64 << 10); // growing it later would synchronize the device (cudaFree)
  *c = n;
  return EF_OK;
}
