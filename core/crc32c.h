// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): TFRecord frames (train/metrics.c) and
// the per-tensor checksums of weights files (models/weights.c).
#ifndef EF_CORE_CRC32C_H
#define EF_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// CRC-32C of n bytes (initial value and final xor 0xffffffff, as iSCSI and TFRecord use it).
uint32_t ef_crc32c(const void *data, size_t n);
// The CRC-32C of (what gave `crc`) followed by n more bytes: ef_crc32c_extend(0, ...) is
// ef_crc32c, and pieces chain (as zlib's crc32).
uint32_t ef_crc32c_extend(uint32_t crc, const void *data, size_t n);

#endif
