// Owns lr_at: the learning rate of a training step under train.lr_schedule, train.warmup_steps and train.min_lr.
#pragma once

#include <cstdint>

#include "runtime/config/run_config.h"

namespace troupe {

// The learning rate for step `step` (counted from 0; `step` >= 0), given the configured base_lr
// (optim.lr). With W = train.warmup_steps, S = train.steps, m = train.min_lr:
//
//   warmup (both schedules), when W > 0 and step < W:
//       lr = base_lr * (step + 1) / W
//   "constant", after warmup:
//       lr = base_lr
//   "cosine", after warmup:
//       progress = clamp((step - W) / max(1, S - W), 0, 1)
//       lr = m + 0.5 * (1 + cos(pi * progress)) * (base_lr - m)
//
// So warmup reaches base_lr at step W - 1, cosine starts from base_lr at step W and reaches m at step S
// (and stays there past S). All arithmetic is in double. A PyTorch reference script reproduces these
// formulas to compare training runs: change both together.
// Throws troupe::Error (kConfig) naming train.lr_schedule when it is neither "constant" nor "cosine",
// and naming train.warmup_steps when it is negative.
double lr_at(const TrainConfig& train, double base_lr, std::int64_t step);

}  // namespace troupe
