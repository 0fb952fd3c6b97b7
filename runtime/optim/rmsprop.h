// Owns RMSprop's hyper-parameters and factory: torch.optim.RMSprop (momentum, centered, L2 weight decay).
//
// Per parameter p with gradient g, learning rate lr (torch 1.13 / 2.x _single_tensor_rmsprop, maximize
// off; every state tensor starts at 0):
//   g = g + weight_decay * p                            (only if weight_decay != 0)
//   square_avg = alpha * square_avg + (1 - alpha) * g * g
//   if centered:
//     grad_avg = alpha * grad_avg + (1 - alpha) * g
//     avg = sqrt(square_avg - grad_avg * grad_avg) + eps
//   else:
//     avg = sqrt(square_avg) + eps
//   if momentum > 0:
//     buf = momentum * buf + g / avg                    ("momentum_buffer")
//     p = p - lr * buf
//   else:
//     p = p - lr * g / avg
// State: "square_avg"; "grad_avg" when centered; "momentum_buffer" when momentum > 0.
#pragma once

#include <memory>

#include "runtime/optim/optimizer.h"

namespace troupe {

struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
};

// Throws troupe::Error (kConfig) on PyTorch's ValueError conditions: lr, eps, momentum, weight_decay or
// alpha < 0. (PyTorch puts no upper bound on alpha; neither does troupe.) Messages name optim.* keys.
std::unique_ptr<Optimizer> make_rmsprop(const RmspropOptions& options);

}  // namespace troupe
