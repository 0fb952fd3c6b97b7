// Owns the GPU check's table: rows of measured figures beside their reference, printed as one aligned text table.
#pragma once

#include <string>
#include <vector>

namespace troupe {

struct GpuReportRow {
  std::string what;       // "matmul bf16 8192^3"
  double value = 0.0;     // measured
  std::string unit;       // "TFLOP/s"
  double reference = 0.0; // what it is compared with (0: none)
  std::string reference_name;  // "cuBLAS direct", "peak 790"
};

// One line per row: what | value unit | reference | ratio (value / reference, as a percentage).
std::string format_gpu_report(const std::string& title, const std::vector<GpuReportRow>& rows);

}  // namespace troupe
