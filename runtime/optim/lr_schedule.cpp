// lr_at: linear warmup followed by a constant or cosine-annealed learning rate.
#include "runtime/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

double lr_at(const TrainConfig& train, double base_lr, std::int64_t step) {
  TROUPE_CHECK(step >= 0, "negative step ", step);
  const bool cosine = train.lr_schedule == LrScheduleKind::cosine;
  if (train.warmup_steps < 0)
    throw Error(ErrorKind::kConfig, fmt::format("train.warmup_steps = {} is invalid: it must be >= 0", train.warmup_steps));

  const std::int64_t warmup = train.warmup_steps;
  if (warmup > 0 && step < warmup) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (!cosine) return base_lr;
  const double span = static_cast<double>(std::max<std::int64_t>(1, train.steps - warmup));
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  return train.min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * progress)) * (base_lr - train.min_lr);
}

}  // namespace troupe
