// Element types. The CPU backend computes in f32 (i32 for labels); bf16 and f16 are storage
// types that the CUDA backend computes in, converted here with round-to-nearest-even.
#ifndef EF_DTYPE_H
#define EF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { EF_F32, EF_BF16, EF_F16, EF_I32, EF_DTYPE_COUNT } ef_dtype;

size_t ef_dtype_size(ef_dtype t);
const char *ef_dtype_name(ef_dtype t);

uint16_t ef_f32_to_bf16(float x);
float ef_bf16_to_f32(uint16_t h);
uint16_t ef_f32_to_f16(float x);
float ef_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
