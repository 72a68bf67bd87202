// The data-parallel communicator: rank, world size and local rank, plus the collectives training
// needs (all-reduce of a buffer, broadcast, barrier), behind one interface with three builds: a
// single process (always), MPI on host buffers (EFFNET_MPI; the CPU backend's path), and NCCL on
// GPU buffers (EFFNET_NCCL, train/comm_nccl.c; host buffers go through the GPU there).
#ifndef EF_TRAIN_COMM_H
#define EF_TRAIN_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"
#include "core/log.h"

typedef enum { EF_COMM_F32, EF_COMM_F64 } ef_comm_dtype;
typedef enum { EF_COMM_SUM, EF_COMM_AVG, EF_COMM_MAX } ef_comm_op;

// A non-blocking all-reduce in flight (ef_comm.iallreduce), finished by ef_comm.test or .wait.
typedef struct {
  void *impl; // the implementation's handle (MPI_Request); NULL when already done
  void *buf;  // the buffer reduced in place, (count) elements of dtype
  size_t count;
  ef_comm_dtype dtype;
  ef_comm_op op;
} ef_comm_request;

typedef struct ef_comm ef_comm;
struct ef_comm {
  const char *name; // "single", "mpi", "nccl", or "launched" (ranks of `effnet train --gpus`
                    // before NCCL connects them: no collectives, the members below are NULL)
  int rank, world;  // this process, and how many take part
  int local_rank;   // this process's index among those on its host (the GPU it would use)
  // In place over `count` elements of every rank's buf: the sum, the average (the same bits on
  // every rank: MPI's is the sum times 1/world, NCCL's each term times 1/world, summed) or the
  // maximum. Blocking; on NCCL, device buffers are queued on the GPU instead, before the
  // backend's later work (sync waits for them), and host buffers go through the GPU.
  void (*allreduce)(ef_comm *c, void *buf, size_t count, ef_comm_dtype dtype, ef_comm_op op);
  // The same, started now (r's buf, count, dtype and op filled in by the caller); the buffer is
  // not to be touched until `test` says it is done or `wait` returns. `test` also lets MPI make
  // progress while the caller computes (MPI has no progress thread of its own).
  void (*iallreduce)(ef_comm *c, ef_comm_request *r);
  bool (*test)(ef_comm *c, ef_comm_request *r);
  void (*wait)(ef_comm *c, ef_comm_request *r);
  // root's `bytes` bytes into every rank's buf (blocking as allreduce is).
  void (*broadcast)(ef_comm *c, void *buf, size_t bytes, int root);
  void (*barrier)(ef_comm *c);
  // Returns once every collective issued so far has finished, those queued on a GPU included. One
  // that failed, or that waited longer than the communicator's timeout (a rank died or hangs), ends
  // the job with a message naming this rank. Nothing to wait for on MPI, whose calls finish inside.
  void (*sync)(ef_comm *c);
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

// What `effnet train --gpus N` (train/launch.c) gives each worker it starts, in its environment:
// the rank, the world size (the local rank is the rank: one host), and NCCL's unique id in hex.
#define EF_LAUNCH_RANK "EFFNET_RANK"
#define EF_LAUNCH_WORLD "EFFNET_WORLD_SIZE"
#define EF_LAUNCH_NCCL_ID "EFFNET_NCCL_ID"

// The communicator for this process: MPI when launched by an MPI launcher; "launched" (rank and
// world only, until ef_comm_nccl_new connects it) when started by `effnet train --gpus`; else a
// single process. Fails (EF_ERR_UNSUPPORTED) when launched by MPI but built without EFFNET_MPI,
// when MPI cannot start, or (EF_ERR_INVALID) on a malformed EFFNET_RANK / EFFNET_WORLD_SIZE.
// Sets the rank that error messages print (ef_log_set_rank).
ef_status ef_comm_new(ef_comm **out);
// The single-process communicator: rank 0 of 1, collectives that change nothing.
ef_comm *ef_comm_single(void);
void ef_comm_free(ef_comm *c); // NULL is fine; finalizes MPI
// Ends every rank of the job with `code`: after a local failure the others cannot know about,
// which would otherwise leave them waiting in a collective.
_Noreturn void ef_comm_abort(ef_comm *c, int code);

// Polls `done` (1: finished, 0: not yet, -1: failed, with the reason in why) until it finishes,
// sleeping a little longer each time (up to about 0.1 ms). EF_OK when it finished; EF_ERR_IO with a message
// naming `what` and the reason when it failed, or when timeout_s seconds passed first. The
// NCCL communicator's waits (a rank that died leaves the others' GPUs waiting for ever).
ef_status ef_comm_poll(int (*done)(void *user, char *why, size_t len), void *user, double timeout_s, const char *what);

#ifdef EFFNET_MPI
ef_status ef_comm_mpi_new(ef_comm **out);
#endif

#ifdef EFFNET_NCCL
// NCCL on the GPU of `be` (a CUDA backend), for the ranks of *c (MPI with world > 1, or
// "launched", one rank included), which it takes over: *c becomes the NCCL communicator and the old
// one is freed with it. The
// unique id comes from EFFNET_NCCL_ID when launched, else rank 0 makes it and broadcasts it
// through *c. Collectives run on a stream of their own, ordered after the work queued on the
// backend's stream and before the work queued after them, so that they overlap only with what
// does not depend on them; their waits end the job after timeout_s (ef_comm.sync). Host buffers
// are copied through the GPU. Fails (EF_ERR_UNSUPPORTED) when NCCL cannot start; *c is then
// unchanged.
ef_status ef_comm_nccl_new(ef_comm **c, ef_backend *be, double timeout_s);
// A new NCCL unique id, in hex (EFFNET_NCCL_ID), into hex[2 * 128 + 1]: for the launcher. This
// process hosts NCCL's bootstrap for it and must outlive the ranks' start.
ef_status ef_nccl_unique_id(char *hex, size_t len);
#endif

#endif
