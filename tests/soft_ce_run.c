// The effnet half of tests/soft_ce_torch.py: the softmax cross-entropy op against soft targets on
// the CPU backend, forward and backward.
//   soft_ce_run IN.f32 OUT.f32 N K
// IN holds logits (N,K) then targets (N,K), float32; OUT gets the loss, then d loss / d logits (N,K).
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu/cpu.h"
#include "core/graph.h"
#include "core/plan.h"
#include "core/store.h"

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: soft_ce_run IN.f32 OUT.f32 N K\n");
    return 2;
  }
  int64_t n = atol(argv[3]), k = atol(argv[4]);
  if (n < 1 || k < 1 || n * k > (1 << 24)) {
    fprintf(stderr, "soft_ce_run: N %lld, K %lld: both at least 1, N*K at most 2^24\n", (long long)n, (long long)k);
    return 2;
  }
  size_t m = (size_t)(n * k);
  float *in = malloc(sizeof(float) * 2 * m), *out = malloc(sizeof(float) * (1 + m));
  if (!in || !out) return fprintf(stderr, "soft_ce_run: out of memory\n"), 1;
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(in, sizeof(float), 2 * m, f) != 2 * m) {
    fprintf(stderr, "soft_ce_run: cannot read %zu floats from %s\n", 2 * m, argv[1]);
    return 1;
  }
  fclose(f);
  ef_backend *be = ef_cpu_backend_new(0);
  ef_store *s = ef_store_new();
  if (ef_store_bind(s, be) != EF_OK) return fprintf(stderr, "soft_ce_run: %s\n", ef_last_error()), 1;
  ef_graph *g = ef_graph_new(s, 1);
  ef_tensor *z = ef_input(g, "logits", EF_F32, 2, (int64_t[]){n, k});
  ef_tensor *t = ef_input(g, "targets", EF_F32, 2, (int64_t[]){n, k});
  z->requires_grad = true;
  ef_tensor *loss = ef_softmax_ce(g, z, t, 0);
  ef_tensor *dloss = ef_input(g, "dloss", EF_F32, 1, (int64_t[]){1});
  ef_graph_keep(g, loss);
  ef_graph_backward_from(g, loss, dloss);
  ef_plan *p;
  if (ef_plan_new(&p, g, be, NULL) != EF_OK) return fprintf(stderr, "soft_ce_run: %s\n", ef_last_error()), 1;
  float one = 1;
  ef_plan_set(p, z, in), ef_plan_set(p, t, in + m), ef_plan_set(p, dloss, &one);
  ef_plan_run(p, &(ef_run_ctx){0});
  ef_plan_get(p, loss, out), ef_plan_get(p, z->grad, out + 1);
  f = fopen(argv[2], "wb");
  if (!f || fwrite(out, sizeof(float), 1 + m, f) != 1 + m || fclose(f)) {
    fprintf(stderr, "soft_ce_run: cannot write %s\n", argv[2]);
    return 1;
  }
  ef_plan_free(p), ef_graph_free(g), ef_store_free(s), ef_backend_free(be);
  free(in), free(out);
  return 0;
}
