// Owns Adam's and AdamW's hyper-parameters and factory: torch.optim.Adam (L2 decay) and torch.optim.AdamW.
//
// Per parameter p with gradient g, learning rate lr, t = this parameter's step count starting at 1
// (torch 1.13 / 2.x _single_tensor_adam and _single_tensor_adamw, amsgrad and maximize off):
//   AdamW:  p = p * (1 - lr * weight_decay)             (decoupled decay, before the update)
//   Adam:   g = g + weight_decay * p                    (L2 decay, only if weight_decay != 0)
//   m = beta1 * m + (1 - beta1) * g                     ("exp_avg", starts at 0)
//   v = beta2 * v + (1 - beta2) * g * g                 ("exp_avg_sq", starts at 0)
//   bias_correction1 = 1 - beta1^t,  bias_correction2 = 1 - beta2^t     (double)
//   denom = sqrt(v) / sqrt(bias_correction2) + eps
//   p = p - (lr / bias_correction1) * m / denom
#pragma once

#include <memory>

#include "runtime/optim/optimizer.h"

namespace troupe {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 for Adam; decoupled for AdamW (torch.optim.AdamW's default is 1e-2)
  bool decoupled = false;     // true: AdamW
};

// Throws troupe::Error (kConfig) on PyTorch's ValueError conditions: lr < 0, eps < 0, beta1 or beta2
// outside [0, 1), weight_decay < 0. Messages name optim.* keys.
std::unique_ptr<Optimizer> make_adam(const AdamOptions& options);

}  // namespace troupe
