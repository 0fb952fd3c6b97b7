// Owns SGD's hyper-parameters and factory: torch.optim.SGD (momentum, dampening, Nesterov, L2 weight decay).
//
// Per parameter p with gradient g, learning rate lr (torch 1.13 / 2.x _single_tensor_sgd, maximize off):
//   d = g + weight_decay * p                            (only if weight_decay != 0)
//   if momentum != 0:
//     first step:  buf = d                              (a copy: no dampening on the first step, as PyTorch)
//     later steps: buf = momentum * buf + (1 - dampening) * d
//     d = nesterov ? d + momentum * buf : buf
//   p = p - lr * d
// State: "momentum_buffer" when momentum != 0; none otherwise.
#pragma once

#include <memory>

#include "runtime/optim/optimizer.h"

namespace troupe {

struct SgdOptions {
  double lr = 1e-3;        // base lr (OptimConfig's default; torch.optim.SGD has none)
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
};

// Throws troupe::Error (kConfig) on PyTorch's ValueError conditions: lr < 0, momentum < 0,
// weight_decay < 0, nesterov with momentum <= 0 or dampening != 0. Messages name optim.* keys.
std::unique_ptr<Optimizer> make_sgd(const SgdOptions& options);

}  // namespace troupe
