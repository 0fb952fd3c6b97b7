// Seeded normal/uniform initialisation from a splitmix64 stream per parameter.
#include "models/init.h"

#include <cmath>
#include <numbers>

#include "runtime/splitmix64.h"

namespace troupe {

namespace {
// Uniform in (0, 1): 53 random bits, never exactly 0 (Box-Muller takes its log).
double unit(std::uint64_t& state) { return (static_cast<double>(splitmix64_next(state) >> 11) + 0.5) * 0x1.0p-53; }
}  // namespace

std::uint64_t init_stream_seed(std::uint64_t seed, std::string_view param_name) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char ch : param_name) h = (h ^ ch) * 0x100000001b3ull;
  std::uint64_t s = seed ^ h;
  return splitmix64_next(s);
}

void init_normal(const Tensor& t, std::uint64_t seed, std::string_view name, double std_dev) {
  std::uint64_t state = init_stream_seed(seed, name);
  float* p = t.f32();
  const std::int64_t n = t.numel();
  for (std::int64_t i = 0; i < n; i += 2) {
    double r = std::sqrt(-2.0 * std::log(unit(state)));
    double a = 2.0 * std::numbers::pi * unit(state);
    p[i] = static_cast<float>(std_dev * r * std::cos(a));
    if (i + 1 < n) p[i + 1] = static_cast<float>(std_dev * r * std::sin(a));
  }
}

void init_uniform(const Tensor& t, std::uint64_t seed, std::string_view name, double bound) {
  std::uint64_t state = init_stream_seed(seed, name);
  float* p = t.f32();
  for (std::int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = static_cast<float>((2.0 * unit(state) - 1.0) * bound);
}

void init_constant(const Tensor& t, float value) { t.fill(value); }

}  // namespace troupe
