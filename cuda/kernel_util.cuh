// What the CUDA kernels share: the choice of a kernel's instantiation by dtype (16-byte vectors of
// one type, or scalars of any types read at run time), launches over (rows, vectors) checked against
// the GPU's limits, and a block sum in a fixed order. Activations come from core/act.h.
#ifndef EF_CUDA_KERNEL_UTIL_CUH
#define EF_CUDA_KERNEL_UTIL_CUH

#include <initializer_list>

#include "core/act.h"
#include "core/lanes.h"
#include "core/log.h"
#include "cuda/kernels.h"
#include "cuda/launch.h"

namespace ef {

constexpr int THREADS = 256;
constexpr ef_dtype ANY = EF_DTYPE_COUNT; // an instantiation that reads each operand's type at run time

// The type an operand of type `runtime` is read as in an instantiation for DT.
__host__ __device__ constexpr ef_dtype type_in(ef_dtype DT, ef_dtype runtime) { return DT == ANY ? runtime : DT; }

// A kernel is a class template K<DT, LANES> with `static void run(const Args &)`, which launches it
// for operands of type DT read and written LANES at a time (DT = ANY, LANES = 1: any types, read at
// run time). by_dtype runs K<dt, 16 bytes of dt> when every operand is of type dt, `cols` (elements
// a row, or in all) is a multiple of those lanes and every address is on 16 bytes; else K<ANY, 1>.
template <template <ef_dtype, int> class K, class Args>
void by_dtype(std::initializer_list<ef_dref> ops, int64_t cols, const Args &args) {
  ef_dtype dt = ops.begin()->dt;
  bool vec = cols % (dt == EF_F32 ? 4 : 8) == 0;
  for (const ef_dref &r : ops) vec = vec && r.dt == dt && (uintptr_t)r.p % 16 == 0;
  if (vec && dt == EF_F32) K<EF_F32, 4>::run(args);
  else if (vec && dt == EF_BF16) K<EF_BF16, 8>::run(args);
  else if (vec && dt == EF_F16) K<EF_F16, 8>::run(args);
  else K<ANY, 1>::run(args);
}

// A launch's geometry, or an abort naming the kernel when it is past the GPU's limits (a tensor of
// 2^31 elements or more; plans refuse those).
inline void check_launch(const ef_launch &l, const char *what) {
  if (!ef_launch_ok(&l))
    EF_FATAL("%s: a launch of (%u,%u,%u) blocks of (%u,%u,%u) threads is past the GPU's limits", what, l.grid.x,
             l.grid.y, l.grid.z, l.block.x, l.block.y, l.block.z);
}
inline dim3 grid_of(const ef_launch &l) { return dim3(l.grid.x, l.grid.y, l.grid.z); }
inline dim3 block_of(const ef_launch &l) { return dim3(l.block.x, l.block.y, l.block.z); }

template <class F> __global__ void k_rows(int64_t rows, int64_t vecs, F f) {
  int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y, v = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
  if (row < rows && v < vecs) f(row, v);
}

// f(row, v) for every row and vector (ef_launch_rows), on the stream.
template <class F> void for_rows(int64_t rows, int64_t vecs, cudaStream_t s, const char *what, F f) {
  if (rows <= 0 || vecs <= 0) return;
  ef_launch l = ef_launch_rows(rows, vecs);
  check_launch(l, what);
  k_rows<<<grid_of(l), block_of(l), 0, s>>>(rows, vecs, f);
}

template <class F> __global__ void k_flat(int64_t n, F f) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) f(i);
}

// f(i) for i in [0, n) on the stream: blocks of THREADS, at most 2^20 of them, striding past.
template <class F> void for_each(int64_t n, cudaStream_t s, F f) {
  if (n <= 0) return;
  int64_t blocks = (n + THREADS - 1) / THREADS;
  k_flat<<<(unsigned)(blocks < (1 << 20) ? blocks : (1 << 20)), THREADS, 0, s>>>(n, f);
}

// The sum of every thread's v over a block of THREADS, by the same tree every time; valid in every
// thread. sh: THREADS doubles of shared memory.
__device__ inline double block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int half = THREADS / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) sh[threadIdx.x] += sh[threadIdx.x + half];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

// The sum of part[0 .. n) in a fixed order: each thread adds its stride in order, then the tree.
__device__ inline double block_sum_of(const double *part, int64_t n, double *sh) {
  double acc = 0;
  for (int64_t k = threadIdx.x; k < n; k += THREADS) acc += part[k];
  return block_sum(acc, sh);
}

} // namespace ef

#endif
