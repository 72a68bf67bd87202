// Plans: a graph scheduled, its memory planned from liveness into one arena, and bound to a
// backend that runs it. The planner (plan.c) is pure bookkeeping; the executor (exec.c) binds
// addresses, prepares every node once, and runs the schedule as often as asked.
#ifndef EF_PLAN_H
#define EF_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/backend.h"
#include "core/graph.h"
#include "core/log.h"

typedef struct {
  bool no_reuse; // give every buffer its own space (the naive layout, for comparisons)
  bool poison;   // fill each computed buffer (and the kernels' scratch) with NaN bytes
                 // before it is written (but an heir, whose bytes are its source's), and each
                 // buffer again after its last reader (but one with an heir); give it a red
                 // zone that is checked after its writer runs: a planner or kernel bug shows up
                 // as NaN or an abort naming the node, never as luck
  bool profile;  // time every node (ef_plan_profile_print)
  bool graph;    // on backends that capture (CUDA): runs go through ef_capture_run; runs
                 // that profile, poison, or call back (after_node, group_mean) stay eager
} ef_plan_opts;

// Work recorded once as a device graph and replayed (CUDA graphs): the first ef_capture_run runs
// fn eagerly (libraries finish their lazy set-up), the second records fn's work and replays it,
// later ones replay. The run's step is written before each (ef_backend.begin_run). On backends
// that do not capture, fn runs every time. fn must issue the same work every time.
typedef struct {
  void *graph;
  int runs;
} ef_capture;

void ef_capture_run(ef_capture *c, ef_backend *be, const ef_run_ctx *ctx, void (*fn)(void *arg), void *arg);
void ef_capture_free(ef_capture *c, ef_backend *be);

// Planned buffers start on 256-byte boundaries of the arena (whose base the backend aligns as
// much): kernels may use 16-byte vector accesses anywhere, and a convolution's algorithm, chosen
// for one alignment, holds for every buffer. In poison mode each buffer has at least a 64-byte red
// zone after its data.
#define EF_PLAN_ALIGN 256
#define EF_PLAN_RED_ZONE 64

// One planned buffer: live from the step that writes it to the last step that reads it.
typedef struct {
  ef_tensor *t;         // the tensor that owns the memory (views resolve to it)
  int birth, death;     // schedule positions; inputs live from -1 to n, kept outputs die at n
  size_t offset, bytes; // in the activation arena; bytes: the data (and the red zone in poison
                        // mode) rounded up to EF_PLAN_ALIGN
  int heir;             // -1, or the buffer (index in bufs) that its last reader, an EF_STORAGE_REUSE
                        // node, writes over it: its space then passes to the heir, not to the free list
  bool inherited;       // it is an heir: the same bytes as its source, which its writer reads
} ef_buffer;

typedef struct ef_plan {
  ef_graph *g;
  ef_backend *be;
  ef_plan_opts opts;
  ef_tensor **sched; // the nodes that run, in a topological order
  int n;
  ef_buffer *bufs; // every planned buffer, in order of birth
  int n_bufs;
  int *written;       // per scheduled node: the index in bufs of the buffer it writes, or -1
  size_t arena_bytes; // the planned peak: the size of the activation arena
  size_t naive_bytes; // the sum of all planned buffers (no reuse)
  void *arena;        // backend memory
  void *scratch;      // shared scratch for kernels, the largest any node asked for
  size_t scratch_bytes;
  void **state; // per scheduled node: what the backend prepared
  double *ms;   // per scheduled node: accumulated milliseconds when profiling
  int runs;
  ef_capture capture; // the captured schedule (opts.graph)
} ef_plan;

// Schedules everything the graph's kept tensors need, plans memory, binds it on the backend and
// prepares every node. Fails (EF_ERR_NOMEM, EF_ERR_UNSUPPORTED, ...) with a message. A graph
// has one plan at a time, and the plan must be freed before the graph.
ef_status ef_plan_new(ef_plan **out, ef_graph *g, ef_backend *be, const ef_plan_opts *opts);
void ef_plan_free(ef_plan *p);

// Runs the schedule once.
void ef_plan_run(ef_plan *p, const ef_run_ctx *ctx);

// Copies an input in (ignored when nothing the plan computes needs it), or any scheduled tensor
// out (ef_nbytes(t) bytes of host memory). Inputs keep their values from one run to the next.
void ef_plan_set(ef_plan *p, const ef_tensor *t, const void *host);
void ef_plan_get(const ef_plan *p, const ef_tensor *t, void *host);

// Time per op kind over all runs so far, largest first, and the memory plan's summary.
void ef_plan_profile_print(const ef_plan *p, FILE *f);
// The `top` slowest nodes over all runs so far, slowest first: time per run, share, op, name, shape
// and the backend's implementation (its describe).
void ef_plan_profile_nodes(const ef_plan *p, FILE *f, int top);
// Forgets the runs so far (the warm-up's), for the profile to cover the steps after.
void ef_plan_profile_reset(ef_plan *p);

// The profiled time per run summed by kind (ef_node_kind), with each kind's nodes, multiply-adds
// and least traffic (ef_node_bytes); the caller adds what it timed around the plan (the
// optimizer's update, the wait for data) before ef_kind_profile_finish totals it.
typedef struct {
  int nodes[EF_KIND_COUNT];
  double ms[EF_KIND_COUNT], macs[EF_KIND_COUNT], bytes[EF_KIND_COUNT], total_ms;
  double peak_gflops, peak_gbs; // the machine's measured limits (0: not measured): each kind's share
} ef_kind_profile;
void ef_plan_profile_kinds(const ef_plan *p, ef_kind_profile *k);
void ef_kind_profile_finish(ef_kind_profile *k);
// The table (kind, nodes, ms per run, share, GFLOP/s, GB/s, and with the peaks the share of each),
// or the same as a JSON object.
void ef_kind_profile_print(const ef_kind_profile *k, FILE *f);
void ef_kind_profile_json(const ef_kind_profile *k, FILE *f);

// The planned peak and the naive sum of a graph's activation memory, without binding a backend
// (for `effnet info`).
void ef_plan_measure(ef_graph *g, size_t *arena_bytes, size_t *naive_bytes);

// ---- the planner, used by ef_plan_new (exposed for tests) -------------------------------
// The tensor whose memory t uses: t itself, or the owner behind views and in-place ops.
ef_tensor *ef_plan_owner(ef_tensor *t);
// Fills p->sched, p->bufs, p->written, p->arena_bytes and p->naive_bytes; assigns offsets.
void ef_plan_schedule_and_place(ef_plan *p);

#endif
