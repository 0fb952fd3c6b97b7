// The GPU check's table as text.
#include "bench/gpu_report.h"

#include <algorithm>

#include <fmt/format.h>

namespace troupe {

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
