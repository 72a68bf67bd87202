// The communicator's single-process implementation (rank 0 of 1: every collective leaves the
// buffers as they are), the detection of an MPI launch from the environment, and the choice
// between the two (train/comm_mpi.c holds the MPI one).
#include "train/comm.h"

#include <stdlib.h>

static void single_allreduce(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {}
static void single_iallreduce(ef_comm *c, ef_comm_request *r) { r->impl = NULL; }
static bool single_test(ef_comm *c, ef_comm_request *r) { return true; }
static void single_wait(ef_comm *c, ef_comm_request *r) {}
static void single_broadcast(ef_comm *c, void *buf, size_t bytes, int root) {}
static void single_barrier(ef_comm *c) {}
static void single_abort(ef_comm *c, int code) { exit(code); }
static void single_free(ef_comm *c) { free(c); }
static ef_comm *single_split(ef_comm *c, int group) {
  EF_ASSERT(group == 1, "a group of %d ranks in a single process", group);
  return ef_comm_single();
}

ef_comm *ef_comm_single(void) {
  ef_comm *c = ef_xcalloc(1, sizeof *c);
  *c = (ef_comm){.name = "single", .rank = 0, .world = 1, .local_rank = 0, .allreduce = single_allreduce,
                 .iallreduce = single_iallreduce, .test = single_test, .wait = single_wait, .broadcast = single_broadcast,
                 .barrier = single_barrier, .abort = single_abort, .free = single_free, .split = single_split};
  return c;
}

bool ef_comm_launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

ef_status ef_comm_new(ef_comm **out) {
  *out = NULL;
  if (!ef_comm_launched()) {
    *out = ef_comm_single();
    return EF_OK;
  }
#ifdef EFFNET_MPI
  EF_TRY(ef_comm_mpi_new(out));
  ef_log_set_rank((*out)->rank);
  return EF_OK;
#else
  return EF_ERROR(EF_ERR_UNSUPPORTED, "started by an MPI launcher (mpirun or srun), but this effnet was built without MPI: "
                  "install OpenMPI (libopenmpi-dev) and rebuild with -DEFFNET_MPI=ON, or run effnet without mpirun");
#endif
}

void ef_comm_free(ef_comm *c) {
  if (c) c->free(c);
}

_Noreturn void ef_comm_abort(ef_comm *c, int code) {
  c->abort(c, code);
  abort();
}
