// The communicator's single-process implementation (rank 0 of 1: every collective leaves the
// buffers as they are), the detection of a launch (MPI's, or effnet's own --gpus) from the
// environment and the choice between them, and the timed polling of the NCCL communicator's waits
// (train/comm_mpi.c holds the MPI one, train/comm_nccl.c the NCCL one).
#include "train/comm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void single_allreduce(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op) {}
static void single_iallreduce(ef_comm *c, ef_comm_request *r) { r->impl = NULL; }
static bool single_test(ef_comm *c, ef_comm_request *r) { return true; }
static void single_wait(ef_comm *c, ef_comm_request *r) {}
static void single_broadcast(ef_comm *c, void *buf, size_t bytes, int root) {}
static void single_barrier(ef_comm *c) {}
static void single_sync(ef_comm *c) {}
static void single_abort(ef_comm *c, int code) { exit(code); }
static void single_free(ef_comm *c) { free(c); }
static ef_comm *single_split(ef_comm *c, int group) {
  EF_ASSERT(group == 1, "a group of %d ranks in a single process", group);
  return ef_comm_single();
}

ef_comm *ef_comm_single(void) {
  ef_comm *c = ef_xcalloc(1, sizeof *c);
  *c = (ef_comm){.name = "single",
                 .rank = 0,
                 .world = 1,
                 .local_rank = 0,
                 .allreduce = single_allreduce,
                 .iallreduce = single_iallreduce,
                 .test = single_test,
                 .wait = single_wait,
                 .broadcast = single_broadcast,
                 .barrier = single_barrier,
                 .sync = single_sync,
                 .abort = single_abort,
                 .free = single_free,
                 .split = single_split};
  return c;
}

bool ef_comm_launched(void) { return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE"); }

// The launcher ends the others when one exits; _exit, not exit: a GPU waiting on a dead rank would
// hold the CUDA runtime's teardown for ever.
static void launched_abort(ef_comm *c, int code) {
  fflush(stdout), fflush(stderr);
  _exit(code);
}
static void launched_free(ef_comm *c) { free(c); }

// EFFNET_RANK / EFFNET_WORLD_SIZE as a number in [lo, hi].
static ef_status launch_number(const char *name, long lo, long hi, int *out) {
  const char *v = getenv(name);
  char *end = NULL;
  errno = 0;
  long n = v ? strtol(v, &end, 10) : 0;
  if (!v || end == v || *end || errno || n < lo || n > hi)
    return EF_ERROR(EF_ERR_INVALID,
                    "%s is '%s', not a number in [%ld, %ld]: it is set by `effnet train --gpus N` for the "
                    "workers it starts; unset it to run effnet yourself",
                    name, v ? v : "(unset)", lo, hi);
  *out = (int)n;
  return EF_OK;
}

// A worker of `effnet train --gpus`: its place, and no collectives until NCCL connects it.
static ef_status launched_new(ef_comm **out) {
  int world, rank;
  EF_TRY(launch_number(EF_LAUNCH_WORLD, 1, 1 << 16, &world));
  EF_TRY(launch_number(EF_LAUNCH_RANK, 0, world - 1, &rank));
  ef_comm *c = ef_xcalloc(1, sizeof *c);
  *c = (ef_comm){.name = "launched",
                 .rank = rank,
                 .world = world,
                 .local_rank = rank,
                 .abort = launched_abort,
                 .free = launched_free};
  *out = c;
  ef_log_set_rank(rank);
  return EF_OK;
}

ef_status ef_comm_new(ef_comm **out) {
  *out = NULL;
  if (getenv(EF_LAUNCH_RANK)) {
    if (ef_comm_launched())
      return EF_ERROR(EF_ERR_INVALID,
                      "started both by an MPI launcher and by `effnet train --gpus` (EFFNET_RANK is set): "
                      "use one of them");
    return launched_new(out);
  }
  if (!ef_comm_launched()) {
    *out = ef_comm_single();
    return EF_OK;
  }
#ifdef EFFNET_MPI
  EF_TRY(ef_comm_mpi_new(out));
  ef_log_set_rank((*out)->rank);
  return EF_OK;
#else
  return EF_ERROR(EF_ERR_UNSUPPORTED,
                  "started by an MPI launcher (mpirun or srun), but this effnet was built without MPI: "
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

ef_status ef_comm_poll(int (*done)(void *user, char *why, size_t len), void *user, double timeout_s, const char *what) {
  struct timespec t0, now, nap = {0, 1000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char why[512] = "";
  for (;;) {
    int d = done(user, why, sizeof why);
    if (d > 0) return EF_OK;
    if (d < 0) return EF_ERROR(EF_ERR_IO, "%s failed: %s", what, why);
    clock_gettime(CLOCK_MONOTONIC, &now);
    double waited = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
    if (waited > timeout_s)
      return EF_ERROR(EF_ERR_IO,
                      "%s has not finished after %.0f s: a rank died, hangs or is far behind (see the other "
                      "ranks' messages), or the timeout (--comm-timeout) is too short for this step",
                      what, waited);
    nanosleep(&nap, NULL);
    if (nap.tv_nsec < 100000) nap.tv_nsec *= 2; // at most ~0.1 ms late
  }
}
