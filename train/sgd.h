// Stochastic gradient descent with momentum (PyTorch semantics), optionally Nesterov, with L2
// weight decay on the entries marked for it, over the store's flat arenas. Runs on host memory:
// the CPU backend's store.
#ifndef EF_TRAIN_SGD_H
#define EF_TRAIN_SGD_H

#include <stdbool.h>

#include "core/store.h"

typedef struct {
  float momentum;      // 0: plain SGD
  float weight_decay;  // L2, added to the gradient of entries with decay set
  bool nesterov;
} ef_sgd_config;

typedef struct {
  ef_sgd_config cfg;
  float *velocity;     // one per trainable element, same offsets as the parameters
  size_t n;
} ef_sgd;

// Fails with EF_ERR_UNSUPPORTED unless the store lives in host memory (the CPU backend).
ef_status ef_sgd_init(ef_sgd *o, const ef_store *s, const ef_sgd_config *cfg);
void ef_sgd_free(ef_sgd *o);
// g = grad + wd * p;  v = momentum * v + g;  p -= lr * (nesterov ? g + momentum * v : v)
void ef_sgd_step(ef_sgd *o, ef_store *s, float lr);

#endif
