// EF_HD: a static inline function compiled for the host and, under nvcc, for the device too, so that
// a CUDA kernel and its CPU twin (or a launcher and its host-side test) share one definition.
#ifndef EF_HD_H
#define EF_HD_H

#ifdef __CUDACC__
#define EF_HD static __host__ __device__ __forceinline__
#else
#define EF_HD static inline __attribute__((always_inline))
#endif

#endif
