// The non-finite checks: a linear scan that reads and never writes.
#include "runtime/nonfinite.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe {

std::optional<std::int64_t> first_nonfinite(std::span<const float> values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i])) return static_cast<std::int64_t>(i);
  return std::nullopt;
}

const Param* first_nonfinite_grad(const std::vector<Param*>& params) {
  for (const Param* p : params)
    if (p->grad.defined() && first_nonfinite(p->grad.span_f32())) return p;
  return nullptr;
}

std::string describe_nonfinite(std::int64_t step, double loss, const std::string& first_param) {
  std::string out = fmt::format("step {}: ", step + 1);
  if (std::isnan(loss)) out += "loss nan";  // a NaN's sign means nothing: never "-nan"
  else if (!std::isfinite(loss)) out += fmt::format("loss {}", loss);
  if (!first_param.empty())
    out += fmt::format("{}gradient of '{}' holds NaN or Inf", std::isfinite(loss) ? "" : "; ", first_param);
  return out;
}

void throw_nonfinite(const std::string& what) {
  throw Error(ErrorKind::kNumeric,
              what + " (train.on_nonfinite = stop); lower optim.lr, set train.grad_clip, check the data, or set "
                     "train.on_nonfinite = skip to skip such steps");
}

}  // namespace troupe
