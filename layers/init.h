// Parameter initialization as in the official TensorFlow EfficientNet (design §4): conv kernels
// normal(0, sqrt(2 / fan_out)) with fan_out = KH*KW*O/groups, dense kernels uniform(+-1/sqrt(O)),
// biases and BN beta 0, BN gamma 1, running mean 0 and variance 1. Draws come from Philox
// (seed, stream EF_RNG_INIT + the entry's index), so they do not depend on the order of
// initialization.
#ifndef EF_LAYERS_INIT_H
#define EF_LAYERS_INIT_H

#include <stdint.h>

#include "core/store.h"

// Conv weights (O,KH,KW,I/groups).
void ef_init_conv(ef_store *s, int entry, int groups, uint64_t seed);
// Dense weights (O,I).
void ef_init_dense(ef_store *s, int entry, uint64_t seed);
// Every element of an entry's values to `value`.
void ef_init_const(ef_store *s, int entry, float value);

#endif
