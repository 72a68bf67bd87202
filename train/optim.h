// The optimizers (SGD with momentum, TF-style RMSProp, AdamW) over the store's flat arenas, their
// slot arrays (same offsets as the parameters, named for checkpoints), and global-norm gradient
// clipping. The loops here run on host memory (the CPU backend's store); on a device store the
// slots live on the device and train/update.h runs the same formulas as kernels.
#ifndef EF_TRAIN_OPTIM_H
#define EF_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/store.h"

typedef enum { EF_OPT_SGD, EF_OPT_RMSPROP, EF_OPT_ADAMW } ef_optim_kind;

typedef struct {
  ef_optim_kind kind;
  double momentum;     // SGD (0: plain SGD) and RMSProp (0.9)
  bool nesterov;       // SGD, needs momentum > 0
  double rho;          // RMSProp: decay of the mean square (0.9)
  double eps;          // RMSProp: 1e-3, inside the square root (TF); AdamW: 1e-8, outside it
  double beta1, beta2; // AdamW (0.9, 0.999)
  double weight_decay; // SGD, RMSProp: L2 added to the gradient; AdamW: decoupled
  bool decay_all;      // false: decay only entries with `decay` set (conv and dense weights)
} ef_optim_config;

#define EF_OPTIM_MAX_SLOTS 2

typedef struct {
  ef_optim_config cfg;
  int64_t step; // steps taken; AdamW's bias correction uses t = step after the increment
  size_t n;     // trainable elements: the length of every slot
  int n_slots;
  const char *slot_names[EF_OPTIM_MAX_SLOTS];
  float *slots[EF_OPTIM_MAX_SLOTS]; // host memory, or the device's (device != NULL)
  struct ef_backend *device;        // the store's backend when it updates on the device
} ef_optim;

// The usual settings per kind: SGD momentum 0.9, wd 1e-4; RMSProp as the official EfficientNet
// (rho 0.9, momentum 0.9, eps 1e-3, wd 1e-5); AdamW as torch.optim.AdamW (0.9, 0.999, 1e-8, 1e-2).
ef_optim_config ef_optim_defaults(ef_optim_kind kind);

// Validates the configuration (EF_ERR_INVALID), refuses a store it cannot update
// (EF_ERR_UNSUPPORTED) and allocates the slots where the store lives (EF_ERR_NOMEM): RMSProp's
// "rms" starts at 1, every other slot at 0.
ef_status ef_optim_init(ef_optim *o, const ef_store *s, const ef_optim_config *cfg);
void ef_optim_free(ef_optim *o);

// One update of every trainable entry that is not frozen, from the GRAD arena, at lr times the
// entry's lr_scale; then step += 1. Host stores only. Elementwise, so the same bits for any thread count. With
// g = grad + wd * p where L2 applies:
//   SGD:     v = momentum * v + g;  p -= lr * (nesterov ? g + momentum * v : v)   (PyTorch)
//   RMSProp: ms = rho * ms + (1 - rho) * g^2;  mom = momentum * mom + lr * g / sqrt(ms + eps);
//            p -= mom   (tf.compat.v1.train.RMSPropOptimizer)
//   AdamW:   p *= 1 - lr * wd;  m = b1 * m + (1 - b1) * grad;  v = b2 * v + (1 - b2) * grad^2;
//            p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)   (torch.optim.AdamW)
void ef_optim_step(ef_optim *o, ef_store *s, double lr);

// The slots, for checkpoints: "momentum" (SGD with momentum > 0, RMSProp), "rms" (RMSProp),
// "exp_avg", "exp_avg_sq" (AdamW). Each is o->n floats; an entry's part starts at its offset.
int ef_optim_slots(const ef_optim *o);
const char *ef_optim_slot_name(const ef_optim *o, int slot);
// Whether a slot holds mean squares (RMSProp's rms, AdamW's exp_avg_sq): never below 0.
bool ef_optim_slot_squares(const ef_optim *o, int slot);
float *ef_optim_slot(ef_optim *o, int slot);

// EF_ERR_UNSUPPORTED, naming `who`, unless the store is on the CPU backend or on one that updates
// its own memory (ef_backend.arena: CUDA).
ef_status ef_require_updatable_store(const ef_store *s, const char *who);
// The store's backend when it updates on the device (ef_backend.arena), else NULL (host memory).
struct ef_backend *ef_device_of(const ef_store *s);
// n floats set to value on the device (device != NULL) or the host; NULL when out of memory.
float *ef_arena_alloc(struct ef_backend *device, size_t n, float value);
void ef_arena_free(struct ef_backend *device, float *p);

// Host stores only: sqrt of the sum of squares over the whole GRAD arena, accumulated in double over fixed chunks
// added in a fixed order: the same bits for any thread count.
double ef_grad_global_norm(const ef_store *s);
// Scales every gradient by max_norm / (norm + 1e-6) when that is below 1, as
// torch.nn.utils.clip_grad_norm_; `norm` is ef_grad_global_norm's. A NaN norm changes nothing:
// check it before stepping.
void ef_grad_clip(ef_store *s, double max_norm, double norm);

#endif
