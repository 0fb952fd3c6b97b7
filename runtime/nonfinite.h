// Owns the non-finite checks: the first NaN or Inf among a run's numbers, named, for weights that are
// loaded and for train.on_nonfinite (a step whose loss or gradients are not finite).
//
// The checks only read: no number changes, so bitwise results stay bitwise. A gradient's sum of squares
// is non-finite exactly when one of its elements is (squares of finite floats cannot overflow a double),
// so pipelines decide from the sums they already report for clipping, without another pass.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/config/choices.h"
#include "runtime/param.h"

namespace troupe {

// Index of the first element that is NaN or +-Inf, or nullopt.
std::optional<std::int64_t> first_nonfinite(std::span<const float> values);

// The first parameter, in the given order, whose gradient holds a NaN or Inf, or nullptr.
const Param* first_nonfinite_grad(const std::vector<Param*>& params);

// What went wrong in step `step` (counted from 0, printed from 1 as the progress line does): the loss
// when it is not finite, and the first parameter whose gradient is not (empty when none).
// "step 12: loss nan; gradient of 'transformer.h.0.attn.c_attn.weight' holds NaN or Inf"
std::string describe_nonfinite(std::int64_t step, double loss, const std::string& first_param);

// The error that ends a run under train.on_nonfinite = stop (ErrorKind::kNumeric), saying what to do.
[[noreturn]] void throw_nonfinite(const std::string& what);

}  // namespace troupe
