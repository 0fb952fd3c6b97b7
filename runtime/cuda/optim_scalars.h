// Owns the per-step scalars of the device optimizer updates (a C++17 header: CUDA sources include it).
//
// The CUDA update kernels reproduce runtime/optim's CPU updates (torch.optim's single-tensor path): the
// same formulas in the same order, with every Python scalar computed in double and rounded to float once,
// as ATen does. These functions compute those floats exactly as adam.cpp, sgd.cpp and rmsprop.cpp do, so
// the CPU and GPU updates start from bit-identical scalars.
#pragma once

#include <cmath>
#include <cstdint>

namespace troupe {

struct AdamStep {
  bool l2 = false;         // Adam with weight_decay != 0: grad += weight_decay * w
  bool decoupled = false;  // AdamW: w *= 1 - lr * weight_decay first
  float beta1 = 0, one_minus_beta1 = 0, beta2 = 0, one_minus_beta2 = 0;
  float weight_decay = 0, decay = 1, bias_correction2_sqrt = 1, eps = 0, neg_step_size = 0;
};

// t: this parameter's step count, 1 on its first update.
inline AdamStep adam_step(double beta1, double beta2, double eps, double weight_decay, bool decoupled, double lr,
                          std::int64_t t) {
  AdamStep k;
  k.decoupled = decoupled;
  k.l2 = !decoupled && weight_decay != 0.0;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  k.beta1 = static_cast<float>(beta1);
  k.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  k.beta2 = static_cast<float>(beta2);
  k.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  k.weight_decay = static_cast<float>(weight_decay);
  k.decay = static_cast<float>(1.0 - lr * weight_decay);
  k.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  k.eps = static_cast<float>(eps);
  k.neg_step_size = static_cast<float>(-(lr / bias_correction1));
  return k;
}

struct SgdStep {
  bool decay = false, momentum = false, nesterov = false;
  bool first = false;  // the momentum buffer's first step: buf = d (no dampening), as PyTorch
  float weight_decay = 0, momentum_value = 0, one_minus_dampening = 1, neg_lr = 0;
};

inline SgdStep sgd_step(double momentum, double dampening, double weight_decay, bool nesterov, double lr, bool first) {
  SgdStep k;
  k.decay = weight_decay != 0.0;
  k.momentum = momentum != 0.0;
  k.nesterov = nesterov;
  k.first = first;
  k.weight_decay = static_cast<float>(weight_decay);
  k.momentum_value = static_cast<float>(momentum);
  k.one_minus_dampening = static_cast<float>(1.0 - dampening);
  k.neg_lr = static_cast<float>(-lr);
  return k;
}

struct RmspropStep {
  bool decay = false, centered = false, momentum = false;
  float alpha = 0, one_minus_alpha = 0, eps = 0, weight_decay = 0, momentum_value = 0, neg_lr = 0;
};

inline RmspropStep rmsprop_step(double alpha, double eps, double weight_decay, double momentum, bool centered,
                                double lr) {
  RmspropStep k;
  k.decay = weight_decay != 0.0;
  k.centered = centered;
  k.momentum = momentum > 0.0;
  k.alpha = static_cast<float>(alpha);
  k.one_minus_alpha = static_cast<float>(1.0 - alpha);
  k.eps = static_cast<float>(eps);
  k.weight_decay = static_cast<float>(weight_decay);
  k.momentum_value = static_cast<float>(momentum);
  k.neg_lr = static_cast<float>(-lr);
  return k;
}

}  // namespace troupe
