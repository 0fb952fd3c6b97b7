// Owns the GPU check's arithmetic and table: model-FLOP utilisation, padded vocabulary, rows of measured figures beside their reference.
#pragma once

#include <cstdint>
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

// Model-FLOP utilisation as the issue defines it: 6 N tokens_per_s / peak_flops, N = every parameter
// (the 6 N training FLOPs per token of Kaplan et al.; attention's T-dependent FLOPs are not counted).
double model_flop_utilisation(std::int64_t n_params, double tokens_per_s, double peak_flops);
// vocab rounded up to a multiple of `multiple` (GPT-2's 50257 -> 50304 for 128).
std::int64_t padded_vocab(std::int64_t vocab, std::int64_t multiple);

// One line per row: what | value unit | reference | ratio (value / reference, as a percentage).
std::string format_gpu_report(const std::string& title, const std::vector<GpuReportRow>& rows);

}  // namespace troupe
