// The communicator and the bucketed gradient all-reduce, run by ctest under `mpirun -np 2` (and
// alone as one rank): sums, averages, maxima and broadcasts across ranks; the tiny net's gradient
// all-reduced (one call, and in small buckets started from the executor's hook during the
// backward pass) equals, bit for bit, the average of the ranks' own gradients computed apart.
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "tests/harness.h"
#include "train/comm.h"
#include "train/step.h"

#define BATCH 8
#define SIDE 12
#define CLASSES 4

static ef_comm *comm;

static void test_collectives(void) {
  int r = comm->rank, w = comm->world;
  double d[3] = {r + 1, r + 1, r + 1};
  comm->allreduce(comm, d, 1, EF_COMM_F64, EF_COMM_SUM);
  comm->allreduce(comm, d + 1, 1, EF_COMM_F64, EF_COMM_AVG);
  comm->allreduce(comm, d + 2, 1, EF_COMM_F64, EF_COMM_MAX);
  CHECK(d[0] == w * (w + 1) / 2.0, "sum %g, want %g", d[0], w * (w + 1) / 2.0);
  CHECK(d[1] == (w + 1) / 2.0, "average %g, want %g", d[1], (w + 1) / 2.0);
  CHECK(d[2] == w, "max %g, want %d", d[2], w);
  float f[5];
  for (int i = 0; i < 5; i++) f[i] = (float)(r * 10 + i);
  comm->allreduce(comm, f, 5, EF_COMM_F32, EF_COMM_SUM);
  for (int i = 0; i < 5; i++) CHECK(f[i] == (float)(10 * w * (w - 1) / 2 + w * i), "f32 sum [%d] %g", i, f[i]);
  int root = w - 1, v = r == root ? 1234 : -1;
  comm->broadcast(comm, &v, sizeof v, root);
  CHECK(v == 1234, "broadcast from rank %d gave %d", root, v);
  comm->barrier(comm);
}

// The tiny net's training graph on BATCH images and its training step, as the trainer builds them;
// each rank feeds its own images. The rate is 0, so that steps leave the weights as they are and
// the gradient arena holds the step's (all-reduced, once connected) gradients.
typedef struct {
  ef_store *store;
  ef_model_graph graph;
  ef_step step;
  float x[BATCH * SIDE * SIDE * 3];
  int32_t y[BATCH];
} net;

static void net_init(net *n, ef_backend *be) {
  ef_model_desc d;
  ef_model_desc_tiny(&d, CLASSES, 3, SIDE, 0.1f);
  n->store = ef_store_new();
  ef_model_graph_new(&n->graph, n->store, &d, &(ef_graph_opts){.batch = BATCH, .training = true, .seed = 5});
  CHECK(ef_store_bind(n->store, be) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(n->store, 5);
  CHECK(ef_model_graph_plan(&n->graph, be, NULL) == EF_OK, "%s", ef_last_error());
  ef_step_config sc = {.optim = ef_optim_defaults(EF_OPT_SGD)};
  CHECK(ef_step_init(&n->step, &n->graph, &sc) == EF_OK, "%s", ef_last_error());
  test_fill_uniform(n->x, BATCH * SIDE * SIDE * 3, 17, (uint32_t)comm->rank, -1, 1); // this rank's images
  for (int i = 0; i < BATCH; i++) n->y[i] = (i + comm->rank) % CLASSES;
}

// One step's gradient into the store's arena (all-reduced once the step is connected).
static void net_backward(net *n) {
  ef_step_result r;
  ef_step_run(&n->step, n->x, n->y, NULL, 0, 3, &r);
}

static void test_gradient_average(void) {
  ef_backend *be = ef_cpu_backend_new(1);
  net n;
  net_init(&n, be);
  size_t numel = n.store->numel[0];
  float *grad = n.store->mem[EF_ARENA_GRAD], *own = ef_xmalloc(sizeof(float) * numel),
        *want = ef_xcalloc(numel, sizeof(float)), *other = ef_xmalloc(sizeof(float) * numel);
  net_backward(&n);
  memcpy(own, grad, sizeof(float) * numel);
  // The average computed apart: every rank's gradient, broadcast in turn, summed in rank order.
  for (int root = 0; root < comm->world; root++) {
    memcpy(other, own, sizeof(float) * numel);
    comm->broadcast(comm, other, sizeof(float) * numel, root);
    for (size_t i = 0; i < numel; i++) want[i] += other[i];
  }
  for (size_t i = 0; i < numel; i++) want[i] *= 1.0f / (float)comm->world;
  // Two ranks: a + b is the same bits in either order, so the average is exact. More ranks may
  // add in another order: within a few ulps.
  double tol = comm->world <= 2 ? 0 : 1e-6;
  size_t differs_from_own = 0;
  comm->allreduce(comm, grad, numel, EF_COMM_F32, EF_COMM_AVG);
  for (size_t i = 0; i < numel; i++) differs_from_own += grad[i] != own[i];
  CHECK_CLOSE(grad, want, (int64_t)numel, TEST_EACH, 1e-6, tol,
              "one all-reduce against the average of the ranks' gradients");
  if (comm->world > 1)
    CHECK(differs_from_own > numel / 2, "the ranks' data differ, yet only %zu gradients changed", differs_from_own);
  float *once = ef_xmalloc(sizeof(float) * numel);
  memcpy(once, grad, sizeof(float) * numel);
  // Buckets of 4 KiB, started during the backward pass: the same bits as one all-reduce.
  ef_step_connect(&n.step, comm, NULL, 4096);
  const ef_grad_sync *gs = &n.step.sync;
  const ef_plan *p = n.graph.plan;
  CHECK(gs->n > 3, "%d buckets of 4 KiB over %zu gradients", gs->n, numel);
  size_t covered = 0;
  for (int k = 0; k < gs->n; k++) covered += gs->b[k].hi - gs->b[k].lo;
  CHECK(covered == numel, "the buckets cover %zu of %zu gradients", covered, numel);
  CHECK(gs->b[0].ready >= 0 && gs->b[0].ready < p->n - 10, "the first bucket is ready at position %d of %d: no overlap",
        gs->b[0].ready, p->n);
  CHECK(gs->b[0].lo > gs->b[gs->n - 1].lo,
        "the first bucket started holds the arena's start, not its end (backward order)");
  net_backward(&n);
  CHECK(!memcmp(grad, once, sizeof(float) * numel), "the bucketed all-reduce differs from the single one");
  free(own), free(want), free(other), free(once);
  ef_step_free(&n.step);
  ef_model_graph_free(&n.graph);
  ef_store_free(n.store);
  ef_backend_free(be);
}

int main(void) {
  if (ef_comm_new(&comm) != EF_OK) {
    fprintf(stderr, "%s\n", ef_last_error());
    return 1;
  }
  if (comm->rank == 0) printf("test_comm: %s communicator, %d rank(s)\n", comm->name, comm->world);
  RUN(test_collectives);
  RUN(test_gradient_average);
  int rc = test_exit_code();
  double worst = rc; // the job fails when any rank failed
  comm->allreduce(comm, &worst, 1, EF_COMM_F64, EF_COMM_MAX);
  ef_comm_free(comm);
  return worst != 0;
}
