// Launch geometry of the CUDA kernels, in plain C so that a host test (tests/test_cuda_host.c)
// checks it against the hardware's limits for any batch: grid.x below 2^31, grid.y and grid.z at
// most 65535, 1024 threads a block. Only grid.x grows with the batch.
#ifndef EF_CUDA_LAUNCH_H
#define EF_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/hd.h"

typedef struct {
  uint32_t x, y, z;
} ef_dim;

typedef struct {
  ef_dim grid, block;
} ef_launch;

#define EF_GRID_X_MAX 2147483647LL
#define EF_GRID_YZ_MAX 65535LL

// Whether a launch is within the limits (a kernel launched past them fails with "invalid
// configuration argument", or never runs).
EF_HD bool ef_launch_ok(const ef_launch *l) {
  int64_t threads = (int64_t)l->block.x * l->block.y * l->block.z;
  return l->grid.x >= 1 && l->grid.x <= EF_GRID_X_MAX && l->grid.y >= 1 && l->grid.y <= EF_GRID_YZ_MAX &&
         l->grid.z >= 1 && l->grid.z <= EF_GRID_YZ_MAX && threads >= 1 && threads <= 1024;
}

// ---- per-channel reductions over (groups, rows, C) ----------------------------------------------
// Blocks of (EF_RED_TX channels, EF_RED_TY rows). Block x of the grid is a (group, channel tile):
// group x / tiles, tile x % tiles (groups, which is the batch for pooling, would overflow grid.z);
// block y is a split of the group's rows, about 2048 blocks in all and 64 rows or more a split.
#define EF_RED_TX 32
#define EF_RED_TY 8

EF_HD int ef_reduce_splits(int64_t groups, int64_t rows, int64_t c) {
  int64_t tiles = (c + EF_RED_TX - 1) / EF_RED_TX, blocks = groups * tiles;
  int64_t want = (2048 + blocks - 1) / blocks, most = (rows + 63) / 64;
  int64_t s = want < most ? want : most;
  return (int)(s < 1 ? 1 : s > 1024 ? 1024 : s);
}

EF_HD ef_launch ef_launch_reduce(int64_t groups, int64_t rows, int64_t c) {
  int64_t tiles = (c + EF_RED_TX - 1) / EF_RED_TX, x = groups * tiles;
  ef_launch l = {{(uint32_t)(x > EF_GRID_X_MAX ? 0 : x), (uint32_t)ef_reduce_splits(groups, rows, c), 1},
                 {EF_RED_TX, EF_RED_TY, 1}};
  return l;
}

// The group and the first channel of reduction block bx.
EF_HD void ef_reduce_block(uint32_t bx, int64_t c, int64_t *group, int64_t *c0) {
  uint32_t tiles = (uint32_t)((c + EF_RED_TX - 1) / EF_RED_TX);
  *group = bx / tiles;
  *c0 = (int64_t)(bx % tiles) * EF_RED_TX;
}

// ---- work over (rows, vectors) ------------------------------------------------------------------
// Rows of `vectors` units each (16-byte vectors of channels, or pixels' channel groups): blocks of
// 256 threads, (bx units, by rows) with bx the smallest power of two covering the units, 64 at
// most; grid.x the row blocks, grid.y the unit tiles.
EF_HD ef_launch ef_launch_rows(int64_t rows, int64_t vectors) {
  uint32_t bx = 1;
  while (bx < 64 && (int64_t)bx < vectors) bx *= 2;
  uint32_t by = 256 / bx;
  int64_t gx = (rows + by - 1) / by, gy = (vectors + bx - 1) / bx;
  ef_launch l = {{(uint32_t)(gx > EF_GRID_X_MAX ? 0 : gx), (uint32_t)(gy > EF_GRID_YZ_MAX ? 0 : gy), 1}, {bx, by, 1}};
  return l;
}

#endif
