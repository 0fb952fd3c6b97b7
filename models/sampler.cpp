// Text generation: one forward pass per new token over the trailing window, then temperature and top-k.
#include "models/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "models/loss_layer.h"

namespace troupe {

int pick_token(const float* probs, int vocab, double temperature, int top_k, double uniform) {
  if (temperature <= 0.0) return static_cast<int>(std::max_element(probs, probs + vocab) - probs);
  std::vector<int> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  // Most probable first, ties by index, so that the choice depends on the distribution alone.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[a] > probs[b]; });
  const std::size_t keep = top_k > 0 ? std::min<std::size_t>(static_cast<std::size_t>(top_k), order.size()) : order.size();
  // p^(1/T), computed as exp(log p / T) relative to the largest, so small temperatures do not underflow.
  const double top = std::log(std::max<double>(probs[order[0]], 1e-300));
  std::vector<double> w(keep);
  double total = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    const double p = probs[order[i]];
    w[i] = p > 0.0 ? std::exp((std::log(p) - top) / temperature) : 0.0;
    total += w[i];
  }
  double x = uniform * total;
  for (std::size_t i = 0; i < keep; ++i) {
    if (x < w[i]) return order[i];
    x -= w[i];
  }
  return order[0];  // rounding left x just above the total: the most probable
}

std::vector<std::int32_t> sample_tokens(Backend& be, Model& model, int block_size, std::vector<std::int32_t> prompt,
                                        const SampleOptions& opts) {
  TROUPE_CHECK(!prompt.empty(), "sample_tokens needs a prompt of at least one token");
  auto* head = dynamic_cast<LossLayer*>(&model.layer(model.num_layers() - 1));
  TROUPE_CHECK(head, "sample_tokens needs a model that ends in a loss layer");
  std::mt19937_64 rng(opts.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<std::int32_t> out;
  std::vector<std::int32_t> text = std::move(prompt);
  for (int n = 0; n < opts.tokens; ++n) {
    const std::size_t t = std::min<std::size_t>(text.size(), static_cast<std::size_t>(block_size));
    const std::span<const std::int32_t> window(text.data() + text.size() - t, t);
    const std::int64_t len = static_cast<std::int64_t>(t);
    MicroBatch mb;
    mb.inputs = Tensor::from_i32({1, len}, window);
    mb.targets = Tensor::zeros({1, len}, DType::i32);  // the loss is not used, only the probabilities
    mb.row_block = len;
    mb.training = false;
    auto ctxs = model.make_contexts();
    model.forward(be, mb, ctxs, mb.inputs);
    const Tensor probs = head->probabilities(ctxs.back());
    const int vocab = static_cast<int>(probs.dim(1));
    const double u = uniform(rng);
    const int next = pick_token(probs.f32() + (len - 1) * vocab, vocab, opts.temperature, opts.top_k, u);
    out.push_back(next);
    text.push_back(next);
  }
  return out;
}

}  // namespace troupe
