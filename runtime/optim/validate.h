// Owns the range checks shared by the optimizers' factories, and their one-line kConfig messages.
//
// Each check mirrors one of torch.optim's ValueError conditions, written so that NaN fails it
// (`!(0 <= v)`, as PyTorch's `not 0.0 <= v` does).
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::optim_detail {

// `key` must be >= 0.
inline void require_non_negative(std::string_view kind, std::string_view key, double value) {
  if (!(value >= 0.0))
    throw Error(ErrorKind::kConfig, fmt::format("{} = {} is invalid for {}: it must be >= 0", key, value, kind));
}

// `key` must be in [0, 1).
inline void require_unit_interval(std::string_view kind, std::string_view key, double value) {
  if (!(value >= 0.0 && value < 1.0))
    throw Error(ErrorKind::kConfig, fmt::format("{} = {} is invalid for {}: it must be in [0, 1)", key, value, kind));
}

}  // namespace troupe::optim_detail
