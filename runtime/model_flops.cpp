// Model FLOPs of a training step (the PaLM/Megatron count) and MFU.
#include "runtime/model_flops.h"

namespace troupe {

double gpt_matmul_weights(std::int64_t n_layer, std::int64_t n_embd, std::int64_t vocab) {
  const double c = static_cast<double>(n_embd);
  return 12.0 * static_cast<double>(n_layer) * c * c + static_cast<double>(vocab) * c;
}

double gpt_train_flops_per_token(std::int64_t n_layer, std::int64_t n_embd, std::int64_t block_size,
                                 std::int64_t vocab) {
  return 6.0 * gpt_matmul_weights(n_layer, n_embd, vocab) +
         12.0 * static_cast<double>(n_layer) * static_cast<double>(n_embd) * static_cast<double>(block_size);
}

double dense_train_flops_per_sample(const std::vector<int>& widths) {
  double weights = 0.0;
  for (std::size_t k = 0; k + 1 < widths.size(); ++k) weights += static_cast<double>(widths[k]) * widths[k + 1];
  return 6.0 * weights;
}

double train_flops_per_unit(const ModelConfig& model) {
  switch (model.kind) {
    case ModelKind::gpt:
      return gpt_train_flops_per_token(model.n_layer, model.n_embd, model.block_size, model.vocab_size);
    case ModelKind::mlp: {
      std::vector<int> widths = {784};  // Fashion-MNIST's 28 x 28 pixels in, 10 classes out (models/model.cpp)
      widths.insert(widths.end(), model.mlp_hidden.begin(), model.mlp_hidden.end());
      widths.push_back(10);
      return dense_train_flops_per_sample(widths);
    }
    case ModelKind::cnn:
    case ModelKind::lstm:
    case ModelKind::deepfm:
      return 0.0;
  }
  return 0.0;
}

double model_flops_per_s(double flops_per_unit, double units_per_s) { return flops_per_unit * units_per_s; }

double mfu(double flops_per_s, double peak_flops_per_s) {
  return peak_flops_per_s > 0.0 ? flops_per_s / peak_flops_per_s : 0.0;
}

}  // namespace troupe
