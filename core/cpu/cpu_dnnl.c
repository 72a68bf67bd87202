// The oneDNN primitive wrapper shared by convolutions and matrix products: memory objects over
// our buffers, weights reordered between our plain layout and the primitive's format, the user
// scratchpad inside the plan's scratch, and running it all.
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu/cpu_internal.h"

ef_dnnl_node *ef_dnnl_node_new(void **state) {
  ef_dnnl_node *s = ef_xcalloc(1, sizeof *s);
  *state = s; // owned by the plan from here on, so a failure below leaks nothing
  return s;
}

ef_status ef_cpu_kept_alloc(const ef_tensor *node, ef_dnnl_node *s, size_t bytes) {
  if (!(s->kept_w = ef_aligned_alloc(bytes)))
    return EF_ERROR(EF_ERR_NOMEM, "out of memory for the weights of node '%s' (%zu bytes)", node->name, bytes);
  memset(s->kept_w, 0, bytes);
  return EF_OK;
}

ef_status ef_dnnl_arg(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, int arg, const dnnl_memory_desc_t *md,
                      void *data) {
  EF_ASSERT(s->nargs < EF_DNNL_MAX_ARGS, "node '%s': too many oneDNN arguments", node->name);
  dnnl_memory_t m;
  EF_DNNL_TRY(dnnl_memory_create(&m, md, cpu->engine, data ? data : DNNL_MEMORY_NONE), node);
  s->args[s->nargs++] = (dnnl_exec_arg_t){arg, m};
  return EF_OK;
}

static dnnl_memory_t last_arg(const ef_dnnl_node *s) { return s->args[s->nargs - 1].memory; }

// Weights in the primitive's format at the start of the scratch, and the reorder to or from ours.
static ef_status weights_reorder(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, int warg,
                                 const dnnl_memory_desc_t *prim_md, const dnnl_memory_desc_t *plain_md, void *plain) {
  EF_TRY(ef_dnnl_arg(cpu, node, s, warg, prim_md, NULL));
  s->prim_w = last_arg(s);
  s->reorder_after = warg == DNNL_ARG_DIFF_WEIGHTS;
  EF_DNNL_TRY(dnnl_memory_create(&s->plain_w, plain_md, cpu->engine, plain), node);
  const dnnl_memory_desc_t *from = s->reorder_after ? prim_md : plain_md, *to = s->reorder_after ? plain_md : prim_md;
  dnnl_primitive_desc_t rpd;
  EF_DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, from, cpu->engine, to, cpu->engine, NULL), node);
  dnnl_status_t st = dnnl_primitive_create(&s->reorder, rpd);
  dnnl_primitive_desc_destroy(rpd);
  EF_DNNL_TRY(st, node);
  s->reorder_args[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, s->reorder_after ? s->prim_w : s->plain_w};
  s->reorder_args[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, s->reorder_after ? s->plain_w : s->prim_w};
  return EF_OK;
}

ef_status ef_dnnl_finish(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, dnnl_primitive_desc_t pd, int warg,
                         const dnnl_memory_desc_t *plain_md, void *plain, size_t *scratch) {
  const char *impl = "?";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  snprintf(s->impl, sizeof s->impl, "%s", impl);
  size_t wbytes = 0;
  if (warg) {
    const dnnl_memory_desc_t *prim_md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, warg);
    EF_ASSERT(prim_md, "node '%s': oneDNN has no weights descriptor", node->name);
    if (dnnl_memory_desc_equal(prim_md, plain_md)) {
      EF_TRY(ef_dnnl_arg(cpu, node, s, warg, plain_md, plain));
    } else {
      EF_TRY(weights_reorder(cpu, node, s, warg, prim_md, plain_md, plain));
      size_t bytes = dnnl_memory_desc_get_size(prim_md);
      if (s->keep_weights) EF_TRY(ef_cpu_kept_alloc(node, s, bytes));
      if (s->kept_w) EF_DNNL_TRY(dnnl_memory_set_data_handle(s->prim_w, s->kept_w), node);
      else wbytes = EF_ALIGN64(bytes);
    }
  }
  const dnnl_memory_desc_t *sp_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t sp_bytes = sp_md ? dnnl_memory_desc_get_size(sp_md) : 0;
  if (sp_bytes) {
    EF_TRY(ef_dnnl_arg(cpu, node, s, DNNL_ARG_SCRATCHPAD, sp_md, NULL));
    s->scratchpad = last_arg(s);
  }
  s->scratchpad_offset = wbytes;
  *scratch = wbytes + sp_bytes;
  EF_DNNL_TRY(dnnl_primitive_create(&s->prim, pd), node);
  return EF_OK;
}

void ef_cpu_dnnl_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  (void)node;
  ef_dnnl_node *s = state;
  if (s->scratchpad) EF_DNNL(dnnl_memory_set_data_handle(s->scratchpad, (char *)scratch + s->scratchpad_offset));
  if (s->reorder && !s->kept_w) EF_DNNL(dnnl_memory_set_data_handle(s->prim_w, scratch));
  if (ef_cpu_derive_now(s, ctx)) { // the weights the primitive takes
    if (s->fold) ef_cpu_conv_fold(s);
    if (s->reorder && !s->reorder_after) EF_DNNL(dnnl_primitive_execute(s->reorder, cpu->stream, 2, s->reorder_args));
  }
  if (s->gate) { // the gate changes with every run's images
    ef_cpu_gate_weights(s, scratch);
    EF_DNNL(dnnl_memory_set_data_handle(s->gated_w, scratch));
  }
  EF_DNNL(dnnl_primitive_execute(s->prim, cpu->stream, s->nargs, s->args));
  if (s->reorder && s->reorder_after) EF_DNNL(dnnl_primitive_execute(s->reorder, cpu->stream, 2, s->reorder_args));
  EF_DNNL(dnnl_stream_wait(cpu->stream));
}

void ef_dnnl_release(ef_dnnl_node *s) {
  if (!s) return;
  if (s->prim) dnnl_primitive_destroy(s->prim);
  if (s->reorder) dnnl_primitive_destroy(s->reorder);
  if (s->plain_w) dnnl_memory_destroy(s->plain_w);
  free(s->kept_w), free(s->fold_w), free(s->fold_bias);
  for (int i = 0; i < s->nargs; i++) dnnl_memory_destroy(s->args[i].memory);
}
