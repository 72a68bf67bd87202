// Losses and full reductions on the CPU: softmax cross-entropy against smoothed labels or soft
// targets (per-row terms in double, summed in order), its gradient, and sum / mean of a whole tensor.
#include "core/cpu/cpu_internal.h"

#define F(t) ((float *)(t)->data)

ef_status ef_cpu_softmax_ce_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  *scratch = (size_t)node->src[0]->shape[0] * sizeof(double);
  return EF_OK;
}

static int32_t checked_label(const int32_t *labels, int64_t i, int64_t k) {
  int32_t y = labels[i];
  if (y < 0 || y >= k)
    EF_FATAL("label %d of sample %lld is outside [0, %lld): labels must be class indices below the model's class count "
             "(validate them when loading the data)",
             y, (long long)i, (long long)k);
  return y;
}

// One row's targets: labels[i] smoothed by eps (t_j = (1 - eps) [j = y] + eps / K), or soft
// probabilities (a row of (N,K)).
typedef struct {
  const int32_t *labels;
  const float *soft;
  double eps;
} ce_targets;

static ce_targets targets_of(const ef_tensor *node, const ef_tensor *t) {
  return (ce_targets){t->dtype == EF_I32 ? t->data : NULL, t->dtype == EF_F32 ? t->data : NULL, node->p.ce.smoothing};
}

// loss = mean over rows of sum_j t_j (logsumexp(z) - z_j): with labels, logsumexp(z) - (1 - eps) z_y
// - eps / K sum_j z_j.
void ef_cpu_softmax_ce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *lt = node->src[0];
  const float *z = F(lt);
  ce_targets tg = targets_of(node, node->src[1]);
  int64_t n = lt->shape[0], k = lt->shape[1];
  double eps = tg.eps, *row_loss = scratch;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * k;
    double mx = zi[0], sum = 0, zsum = 0;
    for (int64_t j = 1; j < k; j++) mx = zi[j] > mx ? zi[j] : mx;
    for (int64_t j = 0; j < k; j++) {
      sum += exp((double)zi[j] - mx);
      zsum += zi[j];
    }
    double lse = mx + log(sum);
    if (tg.soft) {
      const float *ti = tg.soft + i * k;
      double acc = 0;
      for (int64_t j = 0; j < k; j++) acc += (double)ti[j] * (lse - zi[j]);
      row_loss[i] = acc;
    } else {
      int32_t y = checked_label(tg.labels, i, k);
      row_loss[i] = lse - (1 - eps) * zi[y] - eps / (double)k * zsum;
    }
  }
  double total = 0;
  for (int64_t i = 0; i < n; i++) total += row_loss[i];
  F(node)[0] = (float)(total / (double)n);
}

// dz = dloss / N * (softmax(z) sum_j t_j - t)
void ef_cpu_softmax_ce_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const ef_tensor *lt = node->src[1];
  const float *z = F(lt);
  ce_targets tg = targets_of(node, node->src[2]);
  float *dz = F(node);
  int64_t n = lt->shape[0], k = lt->shape[1];
  double eps = tg.eps, g = F(node->src[0])[0] / (double)n;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * k, *ti = tg.soft ? tg.soft + i * k : NULL;
    int32_t y = ti ? -1 : checked_label(tg.labels, i, k);
    double mx = zi[0], sum = 0, tsum = 1;
    for (int64_t j = 1; j < k; j++) mx = zi[j] > mx ? zi[j] : mx;
    for (int64_t j = 0; j < k; j++) sum += exp((double)zi[j] - mx);
    if (ti) {
      tsum = 0;
      for (int64_t j = 0; j < k; j++) tsum += ti[j];
    }
    for (int64_t j = 0; j < k; j++) {
      double t = ti ? ti[j] : eps / (double)k + (j == y ? 1 - eps : 0);
      dz[i * k + j] = (float)(g * (exp((double)zi[j] - mx) / sum * tsum - t));
    }
  }
}

ef_status ef_cpu_reduce_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  *scratch = (size_t)ef_cpu_chunks(ef_numel(node->src[0])) * sizeof(double);
  return EF_OK;
}

void ef_cpu_reduce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  const float *x = F(node->src[0]);
  int64_t n = ef_numel(node->src[0]), nch = ef_cpu_chunks(n);
  double *part = scratch;
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < nch; ch++) {
    int64_t i0, i1;
    ef_cpu_chunk_range(n, ch, &i0, &i1);
    double acc = 0;
    for (int64_t i = i0; i < i1; i++) acc += x[i];
    part[ch] = acc;
  }
  double total = 0;
  for (int64_t ch = 0; ch < nch; ch++) total += part[ch];
  F(node)[0] = (float)(total * node->p.value.value);
}
