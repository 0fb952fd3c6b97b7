// The GPU check's arithmetic and its table as text.
#include "bench/gpu_report.h"

#include <algorithm>

#include <fmt/format.h>

namespace troupe {

double model_flop_utilisation(std::int64_t n_params, double tokens_per_s, double peak_flops) {
  return 6.0 * static_cast<double>(n_params) * tokens_per_s / peak_flops;
}

std::int64_t padded_vocab(std::int64_t vocab, std::int64_t multiple) { return (vocab + multiple - 1) / multiple * multiple; }

std::string format_gpu_report(const std::string& title, const std::vector<GpuReportRow>& rows) {
  std::size_t w = 4;
  for (const auto& r : rows) w = std::max(w, r.what.size());
  std::string out = title + "\n";
  out += fmt::format("{:<{}}  {:>14}  {:>26}  {:>7}\n", "what", w, "measured", "reference", "ratio");
  for (const auto& r : rows) {
    const std::string measured = fmt::format("{:.2f} {}", r.value, r.unit);
    const std::string ref = r.reference > 0.0 ? fmt::format("{:.2f} ({})", r.reference, r.reference_name) : "-";
    const std::string ratio = r.reference > 0.0 ? fmt::format("{:.1f}%", 100.0 * r.value / r.reference) : "-";
    out += fmt::format("{:<{}}  {:>14}  {:>26}  {:>7}\n", r.what, w, measured, ref, ratio);
  }
  return out;
}

}  // namespace troupe
