// Owns deterministic parameter initialisation: every parameter draws from its own stream, seeded by
// (seed, parameter name), so the values do not depend on construction order or on how layers are split.
#pragma once

#include <cstdint>
#include <string_view>

#include "runtime/tensor.h"

namespace troupe {

std::uint64_t init_stream_seed(std::uint64_t seed, std::string_view param_name);
void init_normal(const Tensor& t, std::uint64_t seed, std::string_view name, double std_dev);
void init_uniform(const Tensor& t, std::uint64_t seed, std::string_view name, double bound);  // U(-bound, bound)
void init_constant(const Tensor& t, float value);

}  // namespace troupe
