// The data-parallel communicator: rank, world size and local rank, plus the collectives training
// needs (all-reduce of a buffer, broadcast, barrier), behind one interface with two builds: a
// single process (always), and MPI on host buffers (EFFNET_MPI; the CPU backend's path).
#ifndef EF_TRAIN_COMM_H
#define EF_TRAIN_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/log.h"

typedef enum { EF_COMM_F32, EF_COMM_F64 } ef_comm_dtype;
typedef enum { EF_COMM_SUM, EF_COMM_AVG, EF_COMM_MAX } ef_comm_op;

// A non-blocking all-reduce in flight (ef_comm.iallreduce), finished by ef_comm.test or .wait.
typedef struct {
  void *impl;           // the implementation's handle (MPI_Request); NULL when already done
  void *buf;            // the buffer reduced in place, (count) elements of dtype
  size_t count;
  ef_comm_dtype dtype;
  ef_comm_op op;
} ef_comm_request;

typedef struct ef_comm ef_comm;
struct ef_comm {
  const char *name;     // "single" or "mpi"
  int rank, world;      // this process, and how many take part
  int local_rank;       // this process's index among those on its host (the GPU it would use)
  // In place over `count` elements of every rank's buf: the sum, the average (the sum times
  // 1/world, the same bits on every rank) or the maximum. Blocking.
  void (*allreduce)(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op);
  // The same, started now (r's buf, count, dtype and op filled in by the caller); the buffer is
  // not to be touched until `test` says it is done or `wait` returns. `test` also lets MPI make
  // progress while the caller computes (MPI has no progress thread of its own).
  void (*iallreduce)(ef_comm *c, ef_comm_request *r);
  bool (*test)(ef_comm *c, ef_comm_request *r);
  void (*wait)(ef_comm *c, ef_comm_request *r);
  // root's `bytes` bytes into every rank's buf.
  void (*broadcast)(ef_comm *c, void *buf, size_t bytes, int root);
  void (*barrier)(ef_comm *c);
  // Ends every rank of the job with `code` (ef_comm_abort); does not return.
  void (*abort)(ef_comm *c, int code);
  // The communicator of this rank's group: ranks [k*group, (k+1)*group) (group divides world),
  // for collectives over part of the job (SyncBN's groups). Freed with ef_comm_free before c.
  ef_comm *(*split)(ef_comm *c, int group);
  void (*free)(ef_comm *c);
  void *impl;
};

// Whether an MPI launcher started this process (mpirun, or srun with PMI/PMIx): the environment
// holds OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE. A plain `effnet train` never starts MPI.
bool ef_comm_launched(void);

// The communicator for this process: MPI when launched by an MPI launcher, else a single
// process. Fails (EF_ERR_UNSUPPORTED) when launched by one but built without EFFNET_MPI, or when
// MPI cannot start. Sets the rank that error messages print (ef_log_set_rank).
ef_status ef_comm_new(ef_comm **out);
// The single-process communicator: rank 0 of 1, collectives that change nothing.
ef_comm *ef_comm_single(void);
void ef_comm_free(ef_comm *c);   // NULL is fine; finalizes MPI
// Ends every rank of the job with `code`: after a local failure the others cannot know about,
// which would otherwise leave them waiting in a collective.
_Noreturn void ef_comm_abort(ef_comm *c, int code);

#ifdef EFFNET_MPI
ef_status ef_comm_mpi_new(ef_comm **out);
#endif

#endif
