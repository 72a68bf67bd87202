// The MPI communicator on host buffers (OpenMPI; the CPU backend's data-parallel path): every MPI
// call checked by EF_MPI, which names the call, file:line and rank and then ends the whole job
// (MPI_Abort), so that a failed or dead rank never leaves the others waiting.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/comm.h"

typedef struct {
  MPI_Comm comm; // a duplicate of MPI_COMM_WORLD (or a group of it), errors returned
  bool world;    // the job's communicator: freeing it finalizes MPI
} mpi_impl;

static int mpi_rank = -1, mpi_world = 0;

static _Noreturn void mpi_fail(const char *call, const char *file, int line, int code) {
  char text[MPI_MAX_ERROR_STRING] = "";
  int len = 0;
  MPI_Error_string(code, text, &len);
  fprintf(stderr,
          "effnet: %s failed at %s:%d on rank %d of %d: %s. Every rank stops now; a rank that died or a "
          "network failure is the usual cause (see the other ranks' messages)\n",
          call, file, line, mpi_rank, mpi_world, text);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  abort(); // MPI_Abort does not return; this is for the compiler
}

// Checks an MPI call (design §6): on failure, a message naming it, then the job ends.
#define EF_MPI(call)                                                                                                   \
  do {                                                                                                                 \
    int ef_mpi_rc_ = (call);                                                                                           \
    if (ef_mpi_rc_ != MPI_SUCCESS) mpi_fail(#call, __FILE__, __LINE__, ef_mpi_rc_);                                    \
  } while (0)

static MPI_Comm comm_of(const ef_comm *c) { return ((const mpi_impl *)c->impl)->comm; }
static MPI_Datatype type_of(ef_comm_dtype t) { return t == EF_COMM_F32 ? MPI_FLOAT : MPI_DOUBLE; }
static MPI_Op op_of(ef_comm_op op) { return op == EF_COMM_MAX ? MPI_MAX : MPI_SUM; }

// AVG: the sum (the same bits on every rank), times 1/world.
static void finish_average(const ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {
  if (op != EF_COMM_AVG) return;
  if (dtype == EF_COMM_F32) {
    float s = 1.0f / (float)c->world, *x = buf;
    for (size_t i = 0; i < count; i++) x[i] *= s;
  } else {
    double s = 1.0 / c->world, *x = buf;
    for (size_t i = 0; i < count; i++) x[i] *= s;
  }
}

// MPI counts are int: larger buffers go in pieces of at most 2^30 elements.
#define MPI_PIECE ((size_t)1 << 30)

static void mpi_allreduce(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {
  size_t esize = dtype == EF_COMM_F32 ? 4 : 8;
  for (size_t done = 0; done < count; done += MPI_PIECE) {
    size_t n = count - done < MPI_PIECE ? count - done : MPI_PIECE;
    EF_MPI(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * esize, (int)n, type_of(dtype), op_of(op), comm_of(c)));
  }
  finish_average(c, buf, count, dtype, op);
}

static void mpi_iallreduce(ef_comm *c, ef_comm_request *r) {
  EF_ASSERT(r->count <= MPI_PIECE, "a non-blocking all-reduce of %zu elements: split it into buckets", r->count);
  MPI_Request *req = ef_xmalloc(sizeof *req);
  EF_MPI(MPI_Iallreduce(MPI_IN_PLACE, r->buf, (int)r->count, type_of(r->dtype), op_of(r->op), comm_of(c), req));
  r->impl = req;
}

// A request that completed: its handle released, the average finished.
static void complete(const ef_comm *c, ef_comm_request *r) {
  free(r->impl);
  r->impl = NULL;
  finish_average(c, r->buf, r->count, r->dtype, r->op);
}

static bool mpi_test(ef_comm *c, ef_comm_request *r) {
  if (!r->impl) return true;
  int done = 0;
  EF_MPI(MPI_Test((MPI_Request *)r->impl, &done, MPI_STATUS_IGNORE));
  if (done) complete(c, r);
  return done != 0;
}

static void mpi_wait(ef_comm *c, ef_comm_request *r) {
  if (!r->impl) return;
  EF_MPI(MPI_Wait((MPI_Request *)r->impl, MPI_STATUS_IGNORE));
  complete(c, r);
}

static void mpi_broadcast(ef_comm *c, void *buf, size_t bytes, int root) {
  for (size_t done = 0; done < bytes; done += MPI_PIECE) {
    size_t n = bytes - done < MPI_PIECE ? bytes - done : MPI_PIECE;
    EF_MPI(MPI_Bcast((char *)buf + done, (int)n, MPI_BYTE, root, comm_of(c)));
  }
}

static void mpi_barrier(ef_comm *c) { EF_MPI(MPI_Barrier(comm_of(c))); }
static void mpi_sync(ef_comm *c) {} // blocking calls finish inside; requests finish in test or wait

static void mpi_abort(ef_comm *c, int code) {
  fflush(stdout), fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
}

static void mpi_free(ef_comm *c) {
  mpi_impl *m = c->impl;
  EF_MPI(MPI_Comm_free(&m->comm));
  if (m->world) EF_MPI(MPI_Finalize());
  free(m);
  free(c);
}

static ef_comm *mpi_split(ef_comm *c, int group);

// An ef_comm over `comm` (owned: freed with it).
static ef_comm *mpi_wrap(MPI_Comm comm, bool world, int local_rank) {
  mpi_impl *m = ef_xcalloc(1, sizeof *m);
  *m = (mpi_impl){.comm = comm, .world = world};
  int rank, size;
  EF_MPI(MPI_Comm_rank(comm, &rank));
  EF_MPI(MPI_Comm_size(comm, &size));
  ef_comm *c = ef_xcalloc(1, sizeof *c);
  *c = (ef_comm){.name = "mpi",
                 .rank = rank,
                 .world = size,
                 .local_rank = local_rank,
                 .allreduce = mpi_allreduce,
                 .iallreduce = mpi_iallreduce,
                 .test = mpi_test,
                 .wait = mpi_wait,
                 .broadcast = mpi_broadcast,
                 .barrier = mpi_barrier,
                 .sync = mpi_sync,
                 .abort = mpi_abort,
                 .free = mpi_free,
                 .split = mpi_split,
                 .impl = m};
  return c;
}

static ef_comm *mpi_split(ef_comm *c, int group) {
  EF_ASSERT(group >= 1 && c->world % group == 0, "groups of %d ranks out of %d", group, c->world);
  MPI_Comm sub;
  EF_MPI(MPI_Comm_split(comm_of(c), c->rank / group, c->rank, &sub));
  EF_MPI(MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN));
  return mpi_wrap(sub, false, c->local_rank);
}

ef_status ef_comm_mpi_new(ef_comm **out) {
  *out = NULL;
  int rc = MPI_Init(NULL, NULL);
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return EF_ERROR(EF_ERR_UNSUPPORTED, "MPI_Init failed: %s (is the launcher's MPI the one effnet was built with?)",
                    text);
  }
  EF_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_Comm comm, local;
  EF_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  EF_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  EF_MPI(MPI_Comm_rank(comm, &mpi_rank));
  EF_MPI(MPI_Comm_size(comm, &mpi_world));
  int local_rank;
  EF_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, mpi_rank, MPI_INFO_NULL, &local));
  EF_MPI(MPI_Comm_rank(local, &local_rank));
  EF_MPI(MPI_Comm_free(&local));
  *out = mpi_wrap(comm, true, local_rank);
  return EF_OK;
}
