// The executor: binds a planned graph to a backend (arena, addresses, per-node preparation,
// shared scratch), runs its schedule, moves inputs and outputs, and reports per-op timings.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/plan.h"
#include "core/store.h"

#define POISON 0xff // NaN as f32, -1 as i32
#define CANARY 0xfe // red zones

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void *arena_base(const ef_plan *p, ef_mem mem) {
  switch (mem) {
  case EF_MEM_PLANNED: return p->arena;
  case EF_MEM_PARAM: return p->g->store->mem[EF_ARENA_PARAM];
  case EF_MEM_GRAD: return p->g->store->mem[EF_ARENA_GRAD];
  case EF_MEM_STATE: return p->g->store->mem[EF_ARENA_STATE];
  }
  EF_FATAL("unknown memory kind %d", (int)mem);
}

ef_status ef_plan_new(ef_plan **out, ef_graph *g, ef_backend *be, const ef_plan_opts *opts) {
  *out = NULL;
  EF_ASSERT(!g->plan, "graph already has a plan: free it first (a graph is bound to one plan at a time)");
  ef_plan *p = ef_xcalloc(1, sizeof *p);
  g->plan = p;
  p->g = g;
  p->be = be;
  if (opts) p->opts = *opts;
  ef_plan_schedule_and_place(p);
  p->state = ef_xcalloc((size_t)(p->n ? p->n : 1), sizeof(void *));
  p->ms = ef_xcalloc((size_t)(p->n ? p->n : 1), sizeof(double));

  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->mem != EF_MEM_PLANNED)
      EF_ASSERT(g->store && g->store->be == be, "'%s' lives in a store that is not bound to backend %s", t->name,
                be->name);
    if (t->op != EF_OP_LEAF && !be->supports_op(be, t)) {
      ef_plan_free(p);
      return EF_ERROR(EF_ERR_UNSUPPORTED, "backend %s cannot run op %s (node '%s', %s)", be->name, ef_op_name(t->op),
                      t->name, ef_dtype_name(t->dtype));
    }
  }
  p->arena = be->alloc(be, p->arena_bytes ? p->arena_bytes : 64);
  if (!p->arena) {
    size_t mib = p->arena_bytes >> 20;
    ef_plan_free(p);
    return EF_ERROR(EF_ERR_NOMEM, "%s: out of memory for the activation arena (%zu MiB planned); reduce the batch size",
                    be->name, mib);
  }
  for (int i = 0; i < g->n; i++) g->nodes[i]->data = NULL;
  for (int i = 0; i < p->n; i++) {
    ef_tensor *t = p->sched[i], *o = ef_plan_owner(t);
    t->data = (char *)arena_base(p, o->mem) + o->offset;
  }
  size_t scratch = 0;
  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->op == EF_OP_LEAF) continue;
    size_t need = 0;
    ef_status st = be->prepare(be, t, &p->state[i], &need);
    if (st != EF_OK) {
      ef_plan_free(p);
      return st;
    }
    if (need > scratch) scratch = need;
  }
  p->scratch_bytes = scratch;
  if (scratch && !(p->scratch = be->alloc(be, scratch))) {
    ef_plan_free(p);
    return EF_ERROR(EF_ERR_NOMEM, "%s: out of memory for %zu bytes of kernel scratch; reduce the batch size", be->name,
                    scratch);
  }
  if (p->opts.poison) be->memset(be, p->arena, POISON, p->arena_bytes);
  *out = p;
  return EF_OK;
}

void ef_plan_free(ef_plan *p) {
  if (!p) return;
  ef_capture_free(&p->capture, p->be);
  for (int i = 0; i < p->n; i++) {
    if (p->state && p->state[i]) p->be->release(p->be, p->state[i]);
    p->sched[i]->data = NULL;
  }
  if (p->arena) p->be->free(p->be, p->arena);
  if (p->scratch) p->be->free(p->be, p->scratch);
  free(p->state);
  free(p->ms);
  free(p->bufs);
  free(p->written);
  free(p->sched);
  p->g->plan = NULL;
  free(p);
}

// Poison mode: the bytes of a buffer past its data (alignment padding and the red zone) hold a
// canary unlike the NaN poison (which arithmetic on poison reproduces); after the buffer's
// writer ran they must still hold it.
static void check_red_zone(const ef_plan *p, const ef_tensor *t, const ef_buffer *b) {
  unsigned char tail[EF_PLAN_ALIGN + EF_PLAN_RED_ZONE];
  size_t used = ef_nbytes(t), n = b->bytes - used;
  EF_ASSERT(n <= sizeof tail, "red zone of %zu bytes", n);
  p->be->download(p->be, tail, (const char *)t->data + used, n);
  for (size_t i = 0; i < n; i++)
    if (tail[i] != CANARY)
      EF_FATAL("op %s (node '%s') wrote past the end of its output (byte %zu after it)", ef_op_name(t->op), t->name, i);
}

// Runs scheduled position i (a node that computes: not a leaf, not a view).
static void run_node(ef_plan *p, int i, const ef_run_ctx *ctx) {
  ef_backend *be = p->be;
  ef_tensor *t = p->sched[i];
  const ef_buffer *own = p->written[i] >= 0 ? &p->bufs[p->written[i]] : NULL;
  if (p->opts.poison && p->scratch) be->memset(be, p->scratch, POISON, p->scratch_bytes);
  if (p->opts.poison && own) { // an heir's data is its source's until the node runs
    if (!own->inherited) be->memset(be, t->data, POISON, ef_nbytes(t));
    be->memset(be, (char *)t->data + ef_nbytes(t), CANARY, own->bytes - ef_nbytes(t));
  }
  double t0 = p->opts.profile ? now_ms() : 0;
  be->compute(be, t, p->state[i], p->scratch, ctx);
  if (p->opts.profile) {
    be->synchronize(be);
    p->ms[i] += now_ms() - t0;
  }
  if (!p->opts.poison) return;
  if (own) check_red_zone(p, t, own);
  for (int k = 0; k < p->n_bufs; k++) // buffers whose last reader was this node, but for an heir's space
    if (p->bufs[k].death == i && p->bufs[k].heir < 0)
      be->memset(be, (char *)p->arena + p->bufs[k].offset, POISON, p->bufs[k].bytes);
}

static void run_schedule(ef_plan *p, const ef_run_ctx *ctx) {
  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->op != EF_OP_LEAF && ef_op_get(t->op)->storage != EF_STORAGE_VIEW) run_node(p, i, ctx);
    if (ctx->after_node) ctx->after_node(ctx->user, i);
  }
}

void ef_capture_run(ef_capture *c, ef_backend *be, const ef_run_ctx *ctx, void (*fn)(void *arg), void *arg) {
  if (be->begin_run) be->begin_run(be, ctx);
  if (!be->capture_begin || c->runs++ == 0) {
    fn(arg);
    return;
  }
  if (!c->graph) {
    be->capture_begin(be);
    fn(arg);
    c->graph = be->capture_end(be);
  }
  be->replay(be, c->graph);
}

void ef_capture_free(ef_capture *c, ef_backend *be) {
  if (c->graph) be->graph_free(be, c->graph);
  *c = (ef_capture){0};
}

typedef struct {
  ef_plan *p;
  const ef_run_ctx *ctx;
} schedule_args;

static void schedule_fn(void *arg) {
  schedule_args *a = arg;
  run_schedule(a->p, a->ctx);
}

void ef_plan_run(ef_plan *p, const ef_run_ctx *ctx) {
  ef_backend *be = p->be;
  if (p->opts.graph && !p->opts.profile && !p->opts.poison && !ctx->after_node && !ctx->group_mean) {
    ef_capture_run(&p->capture, be, ctx, schedule_fn, &(schedule_args){p, ctx});
  } else {
    if (be->begin_run) be->begin_run(be, ctx);
    run_schedule(p, ctx);
  }
  p->runs++;
}

void ef_plan_set(ef_plan *p, const ef_tensor *t, const void *host) {
  EF_ASSERT(t->op == EF_OP_LEAF && t->mem == EF_MEM_PLANNED, "'%s' is not an input", t->name);
  if (t->data) p->be->upload(p->be, t->data, host, ef_nbytes(t)); // else: nothing kept needs it
}

void ef_plan_get(const ef_plan *p, const ef_tensor *t, void *host) {
  EF_ASSERT(t->data, "'%s' is not scheduled in this plan", t->name);
  p->be->download(p->be, host, t->data, ef_nbytes(t));
}

void ef_plan_profile_reset(ef_plan *p) {
  if (p->ms) memset(p->ms, 0, sizeof(double) * (size_t)p->n);
  p->runs = 0;
}

// The largest of v[0 .. n) whose `done` is false, marked done; -1 when none is left. The profiles'
// tables list their rows largest first this way.
static int take_largest(const double *v, bool *done, int n) {
  int best = -1;
  for (int i = 0; i < n; i++)
    if (!done[i] && (best < 0 || v[i] > v[best])) best = i;
  if (best >= 0) done[best] = true;
  return best;
}

void ef_plan_profile_print(const ef_plan *p, FILE *f) {
  double ms[EF_OP_COUNT] = {0}, total = 0;
  int count[EF_OP_COUNT] = {0};
  for (int i = 0; i < p->n; i++) {
    ms[p->sched[i]->op] += p->ms[i];
    count[p->sched[i]->op]++;
    total += p->ms[i];
  }
  int runs = p->runs ? p->runs : 1;
  fprintf(f, "plan: %d nodes, activation arena %.1f MiB planned (%.1f MiB without reuse), scratch %.1f MiB\n", p->n,
          (double)p->arena_bytes / 1048576.0, (double)p->naive_bytes / 1048576.0, (double)p->scratch_bytes / 1048576.0);
  if (!p->opts.profile || total <= 0) return;
  fprintf(f, "%-20s %6s %10s %6s\n", "op", "nodes", "ms/run", "%");
  bool shown[EF_OP_COUNT];
  for (int op = 0; op < EF_OP_COUNT; op++) shown[op] = !(count[op] && ms[op] > 0);
  for (int best; (best = take_largest(ms, shown, EF_OP_COUNT)) >= 0;)
    fprintf(f, "%-20s %6d %10.3f %6.1f\n", ef_op_name(best), count[best], ms[best] / runs, 100.0 * ms[best] / total);
  fprintf(f, "%-20s %6d %10.3f\n", "total", p->n, total / runs);
}

void ef_plan_profile_nodes(const ef_plan *p, FILE *f, int top) {
  if (!p->opts.profile || top <= 0) return;
  double total = 0;
  for (int i = 0; i < p->n; i++) total += p->ms[i];
  if (total <= 0) return;
  int runs = p->runs ? p->runs : 1;
  bool *shown = ef_xcalloc((size_t)p->n, sizeof *shown);
  for (int i = 0; i < p->n; i++) shown[i] = p->sched[i]->op == EF_OP_LEAF;
  fprintf(f, "%-4s %10s %6s  %-20s %-32s %-20s %s\n", "rank", "ms/run", "%", "op", "node", "shape", "implementation");
  for (int r = 1, best = -1; r <= top && (best = take_largest(p->ms, shown, p->n)) >= 0; r++) {
    const ef_tensor *t = p->sched[best];
    const char *impl = p->be->describe ? p->be->describe(p->be, p->state[best]) : NULL;
    char shape[64];
    fprintf(f, "%-4d %10.3f %6.1f  %-20s %-32s %-20s %s\n", r, p->ms[best] / runs, 100.0 * p->ms[best] / total,
            ef_op_name(t->op), t->name, ef_shape_str(t, shape, sizeof shape), impl ? impl : "-");
  }
  free(shown);
}

void ef_plan_profile_kinds(const ef_plan *p, ef_kind_profile *k) {
  memset(k, 0, sizeof *k);
  int runs = p->runs ? p->runs : 1;
  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->op == EF_OP_LEAF) continue;
    ef_kind kind = ef_node_kind(t);
    k->nodes[kind]++;
    k->ms[kind] += p->ms ? p->ms[i] / runs : 0;
    k->macs[kind] += (double)ef_node_macs(t);
    k->bytes[kind] += (double)ef_node_bytes(t);
  }
}

void ef_kind_profile_finish(ef_kind_profile *k) {
  k->total_ms = 0;
  for (int i = 0; i < EF_KIND_COUNT; i++) k->total_ms += k->ms[i];
}

void ef_kind_profile_print(const ef_kind_profile *k, FILE *f) {
  bool peaks = k->peak_gflops > 0 && k->peak_gbs > 0;
  fprintf(f, "  by kind (GB/s: each operand read once and each result written once)\n");
  if (peaks)
    fprintf(f, "  the machine, measured: %.1f GFLOP/s (f32 FMA chains), %.1f GB/s (a scaled copy)\n", k->peak_gflops,
            k->peak_gbs);
  fprintf(f, "  %-16s %6s %9s %6s %9s %8s%s\n", "kind", "nodes", "ms/step", "%", "GFLOP/s", "GB/s",
          peaks ? "  % FLOP/s  % GB/s" : "");
  for (int i = 0; i < EF_KIND_COUNT; i++) {
    if (k->ms[i] <= 0) continue;
    char gflops[16] = "-", nodes[16] = "-", gbs[16] = "-", pf[16] = "-", pb[16] = "-";
    double fl = 2 * k->macs[i] / (k->ms[i] * 1e6), by = k->bytes[i] / (k->ms[i] * 1e6);
    if (k->macs[i] > 0) snprintf(gflops, sizeof gflops, "%.1f", fl);
    if (k->nodes[i]) snprintf(nodes, sizeof nodes, "%d", k->nodes[i]);
    if (k->bytes[i] > 0) snprintf(gbs, sizeof gbs, "%.1f", by);
    if (peaks && k->macs[i] > 0) snprintf(pf, sizeof pf, "%.1f", 100 * fl / k->peak_gflops);
    if (peaks && k->bytes[i] > 0) snprintf(pb, sizeof pb, "%.1f", 100 * by / k->peak_gbs);
    fprintf(f, "  %-16s %6s %9.2f %6.1f %9s %8s", ef_kind_name((ef_kind)i), nodes, k->ms[i],
            100 * k->ms[i] / k->total_ms, gflops, gbs);
    if (peaks) fprintf(f, " %9s %7s", pf, pb);
    fputc('\n', f);
  }
  fprintf(f, "  %-16s %6s %9.2f\n", "total", "", k->total_ms);
}

void ef_kind_profile_json(const ef_kind_profile *k, FILE *f) {
  fprintf(f, "{");
  for (int i = 0, first = 1; i < EF_KIND_COUNT; i++) {
    if (k->ms[i] <= 0) continue;
    fprintf(f, "%s\"%s\": {\"nodes\": %d, \"ms\": %.3f, \"percent\": %.2f, \"gflops\": %.2f, \"gbytes_per_s\": %.2f}",
            first ? "" : ", ", ef_kind_name((ef_kind)i), k->nodes[i], k->ms[i], 100 * k->ms[i] / k->total_ms,
            2 * k->macs[i] / (k->ms[i] * 1e6), k->bytes[i] / (k->ms[i] * 1e6));
    first = 0;
  }
  if (k->peak_gflops > 0)
    fprintf(f, ", \"peak_gflops\": %.2f, \"peak_gbytes_per_s\": %.2f", k->peak_gflops, k->peak_gbs);
  fprintf(f, "}");
}
