// Owns the settings of the small GPT the tensor-parallel tests train, and how they compare its losses.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

namespace troupe::testing {

// A GPT of 4 layers (embedding, 2 blocks, head): enough for 2 stages x 2 chunks, 2 or 4 heads per shard.
inline std::vector<std::string> small_gpt(bool deterministic) {
  return {"model.n_layer=2", "model.n_embd=32", "model.n_head=4", "model.block_size=16", "model.vocab_size=256",
          "train.batch_size=4", "train.threads=1", "data.order=sequential", "optim.kind=adamw", "train.grad_clip=1.0",
          deterministic ? "train.deterministic=true" : "train.deterministic=false"};
}

inline std::vector<std::string> with(std::vector<std::string> base, std::initializer_list<std::string> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

// The largest relative difference between two runs' per-step losses.
inline double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return m;
}

}  // namespace troupe::testing
