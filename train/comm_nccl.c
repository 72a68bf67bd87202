// The NCCL communicator on a GPU (see comm.h): device collectives on one stream of its own, in the
// order the host issues them (the same on every rank), ordered after the backend's stream by an
// event and before what is queued there after it by another; host buffers (the per-step scalars)
// on a communicator and stream of their own, never in a captured graph (docs/distributed.md has
// the rule); every wait polled against NCCL's asynchronous errors and a timeout.
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda.h"
#include "train/comm.h"

#define MAX_GROUPS 8

typedef struct {        // shared by the job's communicator and its groups (split)
  cudaStream_t compute; // the backend's stream
  cudaStream_t stream;  // every device collective's
  cudaEvent_t ready, done, fence;
  ncclComm_t scalars;         // host buffers' collectives: the job's ranks, never captured ...
  cudaStream_t scalar_stream; // ... on a stream not ordered after the backend's,
  cudaEvent_t scalar_done;
  void *host_stage, *dev_stage; // through these (pinned, device)
  size_t stage_bytes;
  double timeout;
  ef_comm *host;                // what the job was launched with (MPI, or "launched"): its abort
  ncclComm_t comms[MAX_GROUPS]; // the job's, then its groups': polled for asynchronous errors
  int n_comms;
} nccl_shared;

typedef struct {
  ncclComm_t comm;
  nccl_shared *sh;
  bool job; // the job's communicator (frees the shared part), not a group
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
  snprintf(what, sizeof what,
           "%s failed at %s:%d: %s (in a collective, a rank that died or a broken link between GPUs is "
           "the usual cause; NCCL_DEBUG=WARN says more)",
           call, file, line, text);
  nccl_fail(sh, what);
}

// Checks an NCCL or CUDA call (design §6): on failure, a message naming it, then the job ends.
#define EF_NCCL(sh, call)                                                                                              \
  do {                                                                                                                 \
    ncclResult_t ef_nccl_rc_ = (call);                                                                                 \
    if (ef_nccl_rc_ != ncclSuccess) call_failed((sh), #call, __FILE__, __LINE__, ncclGetErrorString(ef_nccl_rc_));     \
  } while (0)
#define EF_NCCL_CUDA(sh, call)                                                                                         \
  do {                                                                                                                 \
    cudaError_t ef_nccl_cu_ = (call);                                                                                  \
    if (ef_nccl_cu_ != cudaSuccess) call_failed((sh), #call, __FILE__, __LINE__, cudaGetErrorString(ef_nccl_cu_));     \
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

// Collectives outside a captured graph on a communicator the graph uses wait until the GPU has
// done what was queued (the graph included): NCCL's graph mixing support is off (see
// ef_comm_nccl_new), and without it such a collective must not start while a graph using the same
// communicator is outstanding.
static void wait_gpu(nccl_shared *sh, const char *what) {
  EF_NCCL_CUDA(sh, cudaEventRecord(sh->fence, sh->compute));
  wait_event(sh, sh->fence, what);
}

static void settle(nccl_shared *sh) {
  if (!capturing(sh)) wait_gpu(sh, "the GPU's work before a collective outside the step's graph");
}

// A host buffer's collective (fn on the scalars communicator, in place on the staged copy),
// waited for and copied back: the per-step scalars, which depend on nothing the GPU computes.
typedef struct {
  void *buf;
  size_t count;
  ef_comm_dtype dtype;
  ef_comm_op op;
  int root; // broadcast: the root; all-reduce: -1
} host_call;

static void host_collective(nccl_shared *sh, const host_call *h, const char *what) {
  EF_ASSERT(!capturing(sh), "a collective on host memory while a device graph is being recorded");
  size_t bytes = h->root >= 0 ? h->count : h->count * size_of(h->dtype);
  stage_reserve(sh, bytes);
  memcpy(sh->host_stage, h->buf, bytes);
  cudaStream_t s = sh->scalar_stream;
  EF_NCCL_CUDA(sh, cudaMemcpyAsync(sh->dev_stage, sh->host_stage, bytes, cudaMemcpyHostToDevice, s));
  if (h->root >= 0) EF_NCCL(sh, ncclBroadcast(sh->dev_stage, sh->dev_stage, bytes, ncclUint8, h->root, sh->scalars, s));
  else
    EF_NCCL(sh, ncclAllReduce(sh->dev_stage, sh->dev_stage, h->count, type_of(h->dtype), op_of(h->op), sh->scalars, s));
  EF_NCCL_CUDA(sh, cudaMemcpyAsync(sh->host_stage, sh->dev_stage, bytes, cudaMemcpyDeviceToHost, s));
  EF_NCCL_CUDA(sh, cudaEventRecord(sh->scalar_done, s));
  wait_event(sh, sh->scalar_done, what);
  memcpy(h->buf, sh->host_stage, bytes);
}

static void nccl_allreduce(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {
  nccl_impl *m = impl_of(c);
  nccl_shared *sh = m->sh;
  if (!on_device(sh, buf)) {
    EF_ASSERT(m->job, "a host all-reduce on a group of ranks: groups take device buffers");
    host_collective(sh, &(host_call){buf, count, dtype, op, -1}, "an all-reduce");
    return;
  }
  settle(sh);
  begin(sh);
  EF_NCCL(sh, ncclAllReduce(buf, buf, count, type_of(dtype), op_of(op), m->comm, sh->stream));
  end(sh);
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
  if (!on_device(sh, buf)) {
    EF_ASSERT(m->job, "a host broadcast on a group of ranks: groups take device buffers");
    host_collective(sh, &(host_call){buf, bytes, EF_COMM_F32, EF_COMM_SUM, root}, "a broadcast");
    return;
  }
  settle(sh);
  begin(sh);
  EF_NCCL(sh, ncclBroadcast(buf, buf, bytes, ncclUint8, root, m->comm, sh->stream));
  end(sh);
}

static void nccl_barrier(ef_comm *c) {
  float one = 1;
  nccl_allreduce(c, &one, 1, EF_COMM_F32, EF_COMM_SUM);
}

static void nccl_sync(ef_comm *c) { wait_gpu(impl_of(c)->sh, "the GPU's work (a training step with its all-reduces)"); }

static void nccl_abort(ef_comm *c, int code) {
  nccl_shared *sh = impl_of(c)->sh;
  for (int i = 0; i < sh->n_comms; i++) ncclCommAbort(sh->comms[i]);
  ef_comm_abort(sh->host, code);
}

// Destroys one of the shared part's communicators and stops polling it.
static void drop(nccl_shared *sh, ncclComm_t comm) {
  EF_NCCL(sh, ncclCommDestroy(comm));
  for (int i = 0; i < sh->n_comms; i++)
    if (sh->comms[i] == comm) sh->comms[i] = sh->comms[--sh->n_comms];
}

// The shared part's streams, events and staging (those made so far).
static void release_cuda(nccl_shared *sh) {
  cudaEvent_t *events[] = {&sh->ready, &sh->done, &sh->fence, &sh->scalar_done};
  for (int i = 0; i < 4; i++)
    if (*events[i]) EF_NCCL_CUDA(sh, cudaEventDestroy(*events[i]));
  if (sh->stream) EF_NCCL_CUDA(sh, cudaStreamDestroy(sh->stream));
  if (sh->scalar_stream) EF_NCCL_CUDA(sh, cudaStreamDestroy(sh->scalar_stream));
  if (sh->host_stage) EF_NCCL_CUDA(sh, cudaFreeHost(sh->host_stage));
  if (sh->dev_stage) EF_NCCL_CUDA(sh, cudaFree(sh->dev_stage));
}

static void nccl_free(ef_comm *c) {
  nccl_impl *m = impl_of(c);
  nccl_shared *sh = m->sh;
  drop(sh, m->comm);
  if (m->job) {
    drop(sh, sh->scalars);
    EF_ASSERT(sh->n_comms == 0, "the NCCL communicator freed before its groups");
    release_cuda(sh);
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
  *c = (ef_comm){.name = "nccl",
                 .rank = rank,
                 .world = world,
                 .local_rank = sh->host->local_rank,
                 .allreduce = nccl_allreduce,
                 .iallreduce = nccl_iallreduce,
                 .test = nccl_test,
                 .wait = nccl_wait,
                 .broadcast = nccl_broadcast,
                 .barrier = nccl_barrier,
                 .sync = nccl_sync,
                 .abort = nccl_abort,
                 .free = nccl_free,
                 .impl = m};
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

// NCCL's graph mixing support lets a communicator's captured and uncaptured collectives be
// outstanding together; NCCL documents that its mechanism has hung CUDA launches when graphs of
// several communicators are launched from one thread, and the step's graph holds the gradient
// buckets' and SyncBN's. effnet never needs it (docs/distributed.md): it is off unless the user
// set it. Read by NCCL when it starts, so set before any NCCL call.
static void nccl_environment(void) { setenv("NCCL_GRAPH_MIXING_SUPPORT", "0", 0); }

ef_status ef_nccl_unique_id(char *hex, size_t len) {
  nccl_environment();
  ncclUniqueId id;
  EF_ASSERT(len >= 2 * sizeof id.internal + 1, "room for %zu hex digits", 2 * sizeof id.internal);
  ncclResult_t rc = ncclGetUniqueId(&id);
  if (rc != ncclSuccess)
    return EF_ERROR(EF_ERR_UNSUPPORTED,
                    "ncclGetUniqueId failed: %s (%s); NCCL_DEBUG=INFO says which network interface "
                    "it tried (NCCL_SOCKET_IFNAME chooses one)",
                    ncclGetErrorString(rc), ncclGetLastError(NULL));
  to_hex((const unsigned char *)id.internal, sizeof id.internal, hex);
  return EF_OK;
}

ef_status ef_comm_nccl_new(ef_comm **c, ef_backend *be, double timeout_s) {
  nccl_environment();
  ef_comm *host = *c;
  bool launched = !strcmp(host->name, "launched");
  EF_ASSERT(launched || (host->world > 1 && host->broadcast), "NCCL over a '%s' communicator of %d", host->name,
            host->world);
  ncclUniqueId id;
  if (launched) {
    if (!from_hex(getenv(EF_LAUNCH_NCCL_ID), (unsigned char *)id.internal, sizeof id.internal))
      return EF_ERROR(EF_ERR_INVALID,
                      "%s is not %zu hex digits: it is set by `effnet train --gpus N` for the workers it starts",
                      EF_LAUNCH_NCCL_ID, 2 * sizeof id.internal);
  } else {
    char hex[2 * sizeof id.internal + 1];
    if (host->rank == 0 && ef_nccl_unique_id(hex, sizeof hex) != EF_OK)
      return EF_ERR_UNSUPPORTED; // the caller aborts the job
    if (host->rank == 0) from_hex(hex, (unsigned char *)id.internal, sizeof id.internal);
    host->broadcast(host, &id, sizeof id, 0);
  }
  nccl_shared *sh = ef_xcalloc(1, sizeof *sh);
  *sh = (nccl_shared){.compute = ef_cuda_stream(be), .timeout = timeout_s, .host = host};
  cudaError_t ce = cudaStreamCreateWithFlags(&sh->stream, cudaStreamNonBlocking);
  if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&sh->scalar_stream, cudaStreamNonBlocking);
  cudaEvent_t *events[] = {&sh->ready, &sh->done, &sh->fence, &sh->scalar_done};
  for (int i = 0; i < 4 && ce == cudaSuccess; i++) ce = cudaEventCreateWithFlags(events[i], cudaEventDisableTiming);
  if (ce != cudaSuccess) {
    release_cuda(sh);
    free(sh);
    return EF_ERROR(EF_ERR_UNSUPPORTED, "cannot create the NCCL communicator's streams and events: %s",
                    cudaGetErrorString(ce));
  }
  // The job's communicator, and the scalars' (the same ranks, resources of its own).
  ncclComm_t comm = NULL;
  ncclResult_t rc = ncclCommInitRank(&comm, host->world, id, host->rank);
  const char *call = "ncclCommInitRank";
  if (rc == ncclSuccess) rc = ncclCommSplit(comm, 0, host->rank, &sh->scalars, NULL), call = "ncclCommSplit";
  if (rc != ncclSuccess) {
    char what[512];
    snprintf(what, sizeof what, "%s (rank %d of %d) failed: %s (%s); NCCL_DEBUG=INFO shows how far it got", call,
             host->rank, host->world, ncclGetErrorString(rc), ncclGetLastError(comm));
    if (comm) EF_NCCL(sh, ncclCommDestroy(comm));
    release_cuda(sh);
    free(sh);
    return EF_ERROR(EF_ERR_UNSUPPORTED, "%s", what);
  }
  sh->comms[sh->n_comms++] = sh->scalars; // polled for asynchronous errors with the others
  ef_comm *n = wrap(sh, comm, true, host->rank, host->world);
  n->split = nccl_split;
  stage_reserve(sh, 64 << 10); // growing it later would synchronize the device (cudaFree)
  *c = n;
  return EF_OK;
}
