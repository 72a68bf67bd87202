// Matrix products on the GPU through cuBLAS: the linear layer y = x w^T + b and its two backward
// products, in f32 (TF32 when allowed). Row-major (M,K) arrays are column-major (K,M) to cuBLAS,
// so each product is written transposed; 16-bit operands are converted in the scratch first.
#include <stdio.h>

#include "cuda/cuda_internal.h"

enum { OP_A, OP_B, OP_C };

ef_status ef_cuda_linear_prepare(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s) {
  size_t end = 0;
  s->cdt = EF_F32;
  const ef_tensor *ops[3] = {node->src[0], node->src[1], node};
  for (int i = 0; i < 3; i++)
    if (ops[i]->dtype != EF_F32) s->off[i] = ef_cuda_reserve(&end, (size_t)ef_numel(ops[i]) * sizeof(float));
  s->scratch = end;
  snprintf(s->impl, sizeof s->impl, "cublas sgemm%s", cu->opts.allow_tf32 ? " (tf32)" : "");
  return EF_OK;
}

void ef_cuda_linear_run(ef_cuda *cu, const ef_tensor *node, ef_cuda_node *s, char *scratch) {
  const ef_tensor *ops[3] = {node->src[0], node->src[1], node};
  float *f[3];
  for (int i = 0; i < 3; i++) {
    f[i] = s->off[i] != EF_CUDA_NO_SCRATCH ? (float *)(scratch + s->off[i]) : ops[i]->data;
    if (i < 2 && s->off[i] != EF_CUDA_NO_SCRATCH)
      ef_k_cast((ef_dref){f[i], EF_F32}, ef_cuda_ref(ops[i]), ef_numel(ops[i]), cu->stream);
  }
  const float one = 1.0f, zero = 0.0f;
  cublasComputeType_t ct = cu->opts.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const ef_tensor *a = ops[0], *b = ops[1];
  int m, n, k, lda, ldb, ldc;
  cublasOperation_t ta, tb;
  const float *A, *B;
  switch (node->op) {
  case EF_OP_LINEAR: // y (M,O) = x (M,I) w (O,I)^T;  y^T (O,M) = w_cm^T x_cm
    m = (int)b->shape[0], n = (int)ef_rows(a), k = (int)ef_cols(a);
    ta = CUBLAS_OP_T, tb = CUBLAS_OP_N, A = f[OP_B], lda = k, B = f[OP_A], ldb = k, ldc = m;
    break;
  case EF_OP_LINEAR_BWD_DATA: // dx (M,I) = dy (M,O) w (O,I);  dx^T (I,M) = w_cm dy_cm
    m = (int)b->shape[1], n = (int)ef_rows(a), k = (int)ef_cols(a);
    ta = CUBLAS_OP_N, tb = CUBLAS_OP_N, A = f[OP_B], lda = m, B = f[OP_A], ldb = k, ldc = m;
    break;
  default: // dw (O,I) = dy (M,O)^T x (M,I);  dw^T (I,O) = x_cm dy_cm^T
    m = (int)ef_cols(b), n = (int)ef_cols(a), k = (int)ef_rows(a);
    ta = CUBLAS_OP_N, tb = CUBLAS_OP_T, A = f[OP_B], lda = m, B = f[OP_A], ldb = n, ldc = m;
    break;
  }
  EF_CUBLAS_CHECK(cublasGemmEx(cu->cublas, ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, &zero,
                               f[OP_C], CUDA_R_32F, ldc, ct, CUBLAS_GEMM_DEFAULT));
  if (node->op == EF_OP_LINEAR && node->n_src == 3)
    ef_k_add_bias((ef_dref){f[OP_C], EF_F32}, ef_cuda_ref(node->src[2]), ef_rows(node), ef_cols(node), cu->stream);
  if (s->off[OP_C] != EF_CUDA_NO_SCRATCH)
    ef_k_cast(ef_cuda_ref(node), (ef_dref){f[OP_C], EF_F32}, ef_numel(node), cu->stream);
}
