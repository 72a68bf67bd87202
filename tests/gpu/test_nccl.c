// The NCCL communicator with one rank on the GPU, call by call (effnet train --gpus 1 is the
// whole path; this names the call that fails): host and device all-reduces (sum, average,
// maximum; f32 and f64), broadcasts, a group from split, the barrier and sync, and a bucket
// all-reduced between two kernels while the backend records a CUDA graph, replayed with the
// kernels' results intact, a host all-reduce (the per-step scalars' communicator) issued while
// the replay is outstanding. With one rank every collective must leave the values as they are.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/plan.h"
#include "tests/gpu/gpu_harness.h"
#include "tests/harness.h"
#include "train/comm.h"

static ef_backend *gpu;
static ef_comm *comm;

static void test_host_buffers(void) {
  double d[3] = {1.5, -2, 3};
  comm->allreduce(comm, d, 3, EF_COMM_F64, EF_COMM_SUM);
  CHECK(d[0] == 1.5 && d[1] == -2 && d[2] == 3, "f64 sum of one rank: %g %g %g", d[0], d[1], d[2]);
  float f[5] = {1, 2, 3, 4, 5};
  comm->allreduce(comm, f, 5, EF_COMM_F32, EF_COMM_AVG);
  comm->allreduce(comm, f, 5, EF_COMM_F32, EF_COMM_MAX);
  for (int i = 0; i < 5; i++) CHECK(f[i] == (float)(i + 1), "f32 average and maximum [%d] = %g", i, f[i]);
  double big[20000]; // past the 64 KiB staging reserved at the start
  for (int i = 0; i < 20000; i++) big[i] = i * 0.5;
  comm->allreduce(comm, big, 20000, EF_COMM_F64, EF_COMM_SUM);
  CHECK(big[0] == 0 && big[19999] == 19999 * 0.5, "a 160 KB host all-reduce: %g", big[19999]);
  int v = 1234;
  comm->broadcast(comm, &v, sizeof v, 0);
  CHECK(v == 1234, "host broadcast gave %d", v);
  comm->barrier(comm);
}

static void test_device_buffers(void) {
  enum { N = 3000 };
  float h[N], back[N];
  for (int i = 0; i < N; i++) h[i] = (float)i - 1000.5f;
  float *x = gpu->alloc(gpu, sizeof h);
  gpu->upload(gpu, x, h, sizeof h);
  comm->allreduce(comm, x, N, EF_COMM_F32, EF_COMM_AVG);
  comm->broadcast(comm, x, sizeof h, 0);
  ef_comm *group = comm->split(comm, 1);
  CHECK(group && group->world == 1 && group->rank == 0, "a group of one");
  group->allreduce(group, x, N, EF_COMM_F32, EF_COMM_SUM);
  comm->sync(comm);
  gpu->download(gpu, back, x, sizeof back);
  CHECK(!memcmp(back, h, sizeof h), "device all-reduces and broadcast of one rank change nothing");
  ef_comm_free(group);
  gpu->free(gpu, x);
}

typedef struct {
  float *x, *y;
  size_t n;
  int step;
} bucket_args;

// A kernel writes the bucket, NCCL all-reduces it, a kernel writes after it: the order a
// training step has (accum nodes, the bucket's all-reduce, the update).
static void bucket_step(void *arg) {
  bucket_args *a = arg;
  gpu->arena->fill(gpu, a->x, 3.0f, a->n);
  ef_comm_request r = {.buf = a->x, .count = a->n, .dtype = EF_COMM_F32, .op = EF_COMM_AVG};
  comm->iallreduce(comm, &r);
  gpu->arena->fill(gpu, a->y, 5.0f, a->n);
  comm->wait(comm, &r);
  gpu->arena->swap(gpu, a->x, a->y, a->n); // after the wait: x holds 5, y the all-reduced 3
}

static void test_captured_bucket(void) {
  enum { N = 1 << 16 };
  bucket_args a = {.x = gpu->alloc(gpu, sizeof(float) * N), .y = gpu->alloc(gpu, sizeof(float) * N), .n = N};
  ef_capture cap = {0};
  static float hx[N], hy[N];
  for (int run = 0; run < 4; run++) { // eager, recorded and replayed, replayed twice
    ef_run_ctx ctx = {.step = (uint32_t)run};
    ef_capture_run(&cap, gpu, &ctx, bucket_step, &a);
    double loss = 2.5 + run; // the previous step's loss, agreed while this one runs
    comm->allreduce(comm, &loss, 1, EF_COMM_F64, EF_COMM_SUM);
    CHECK(loss == 2.5 + run, "run %d: a host all-reduce during the step gave %g", run, loss);
    comm->sync(comm);
    gpu->download(gpu, hx, a.x, sizeof hx);
    gpu->download(gpu, hy, a.y, sizeof hy);
    CHECK(hx[0] == 5 && hx[N - 1] == 5 && hy[0] == 3 && hy[N - 1] == 3, "run %d (%s): x %g, y %g", run,
          run == 0 ? "eager" : "graph", hx[N - 1], hy[N - 1]);
  }
  CHECK(cap.graph != NULL, "the step was recorded as a graph");
  ef_capture_free(&cap, gpu);
  gpu->free(gpu, a.x), gpu->free(gpu, a.y);
}

int main(void) {
  ef_backend *cpu;
  test_gpu_backends(1, &cpu, &gpu);
  char id[300];
  if (ef_nccl_unique_id(id, sizeof id) != EF_OK) {
    fprintf(stderr, "%s\n", ef_last_error());
    return 1;
  }
  setenv(EF_LAUNCH_RANK, "0", 1), setenv(EF_LAUNCH_WORLD, "1", 1), setenv(EF_LAUNCH_NCCL_ID, id, 1);
  CHECK(ef_comm_new(&comm) == EF_OK, "%s", ef_last_error());
  CHECK(ef_comm_nccl_new(&comm, gpu, 60) == EF_OK, "%s", ef_last_error());
  CHECK(!strcmp(comm->name, "nccl") && comm->rank == 0 && comm->world == 1, "NCCL, rank 0 of 1: %s", comm->name);
  RUN(test_host_buffers);
  RUN(test_device_buffers);
  RUN(test_captured_bucket);
  ef_comm_free(comm);
  ef_backend_free(gpu);
  ef_backend_free(cpu);
  return test_exit_code();
}
