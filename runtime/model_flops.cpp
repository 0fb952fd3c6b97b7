// Model FLOPs of a training step (the PaLM/Megatron count) and MFU.
#include "runtime/model_flops.h"

#include <cmath>

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

double cnn_train_flops_per_sample(const std::vector<int>& channels, const std::vector<int>& blocks, int side,
                                  int stem_stride, int classes) {
  // A 3x3 (or 1x1) convolution with padding 1 (0) at stride s leaves (side - 1) / s + 1 rows and columns.
  const auto side_after = [](double in_side, int stride) { return std::floor((in_side - 1) / stride) + 1; };
  double in = channels.at(0), at = side_after(side, stem_stride);
  double macs = 9.0 * in * at * at;  // the stem: 1 -> C0 channels
  for (std::size_t s = 0; s < channels.size(); ++s)
    for (int b = 0; b < blocks.at(s); ++b) {
      const double out = channels[s];
      const int stride = s > 0 && b == 0 ? 2 : 1;
      const double out_side = side_after(at, stride), plane = out_side * out_side;
      macs += 9.0 * in * out * plane + 9.0 * out * out * plane;  // conv1, conv2
      if (stride != 1 || in != out) macs += in * out * plane;  // the 1x1 projection on the skip path
      in = out;
      at = out_side;
    }
  return 6.0 * (macs + in * classes);  // and the pooled classifier
}

double lstm_train_flops_per_token(std::int64_t n_layer, std::int64_t hidden, std::int64_t vocab) {
  const double h = static_cast<double>(hidden);
  return 6.0 * (static_cast<double>(n_layer) * 8.0 * h * h + static_cast<double>(vocab) * h);
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
    case ModelKind::cnn:  // Fashion-MNIST: 28 x 28 single-channel images, 10 classes
      return cnn_train_flops_per_sample(model.cnn_channels, model.cnn_blocks, 28, model.cnn_stem_stride, 10);
    case ModelKind::lstm: return lstm_train_flops_per_token(model.n_layer, model.n_embd, model.vocab_size);
    case ModelKind::deepfm: return 0.0;
  }
  return 0.0;
}

double model_flops_per_s(double flops_per_unit, double units_per_s) { return flops_per_unit * units_per_s; }

double mfu(double flops_per_s, double peak_flops_per_s) {
  return peak_flops_per_s > 0.0 ? flops_per_s / peak_flops_per_s : 0.0;
}

}  // namespace troupe
