// Owns ClickLog: a synthetic click log (categorical ids with Zipf popularity, dense features, click
// labels from a hidden logistic model) — the data of the Wide & Deep recommender example.
//
// Every sample is a pure function of (seed, split, index): nothing is stored, any worker can generate
// any slice, and a run is reproducible whatever the number of workers. Sample i of a split:
//   - field f's id: Zipf-like over [0, cardinalities[f]) with exponent `zipf` (id 0 the most popular),
//     drawn by inverting the continuous power law: x = (1 + u((N+1)^(1-a) - 1))^(1/(1-a)), id = floor(x) - 1;
//   - dense feature j: standard normal;
//   - label: Bernoulli(sigmoid(z)) with the hidden ground truth
//       z = bias + id_scale * sum_f b_f(id_f) + cross_scale * sum_f <e_f(id_f), e_{f+1}(id_{f+1})> / sqrt(truth_dim)
//           + dense_scale * sum_j w_j x_j
//     where b_f(id), e_f(id) (truth_dim values) and w_j are standard normals hashed from (seed, f, id):
//     per-id effects (what the wide part memorises) plus pairwise interactions of neighbouring fields
//     (what embeddings generalise). Rare ids are seen too seldom to learn, which bounds the reachable
//     AUC below the oracle's (ClickBatch::truth holds the hidden probability, to report that bound).
// Train batch `step` of size B takes training samples (step * B + b) mod train_samples; a data-parallel
// worker takes a contiguous slice of that global batch (ClickBatch::slice).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace troupe {

struct ClickLogOptions {
  std::vector<std::int64_t> cardinalities = {1000000, 100000, 30000, 10000, 1000, 100};
  int dense_features = 4;
  double zipf = 1.2;
  std::int64_t train_samples = 1 << 22;
  std::int64_t test_samples = 1 << 15;
  std::uint64_t seed = 1;
  int truth_dim = 4;
  double bias = -1.0;
  double id_scale = 0.8;
  double cross_scale = 1.0;
  double dense_scale = 0.5;
};

struct ClickBatch {
  Tensor categorical;  // i32 [B, F]: field f's id in [0, cardinalities[f])
  Tensor dense;        // f32 [B, D]
  Tensor labels;       // f32 [B]: 1 = click
  Tensor truth;        // f32 [B]: the hidden model's click probability

  std::int64_t size() const { return labels.defined() ? labels.dim(0) : 0; }
  // Samples [begin, end), sharing storage.
  ClickBatch slice(std::int64_t begin, std::int64_t end) const;
};

class ClickLog {
 public:
  // Throws troupe::Error (kConfig) on no fields, a cardinality outside [1, 2^31 - 1], dense_features < 0,
  // zipf <= 0, sample counts < 1, or truth_dim < 1.
  explicit ClickLog(ClickLogOptions options);

  const ClickLogOptions& options() const { return options_; }
  int fields() const { return static_cast<int>(options_.cardinalities.size()); }

  ClickBatch train_batch(std::int64_t step, int batch_size) const;
  // Samples [begin, end) of train_batch(step, batch_size), generated alone (what one worker computes).
  ClickBatch train_slice(std::int64_t step, int batch_size, std::int64_t begin, std::int64_t end) const;
  // Test samples [first, first + count) (count clipped to the split's end).
  ClickBatch test_batch(std::int64_t first, std::int64_t count) const;
  std::string describe() const;

 private:
  // Fills row r of `out` with sample `index` of `split` (0 train, 1 test).
  void generate(int split, std::int64_t index, const ClickBatch& out, std::int64_t r) const;

  ClickLogOptions options_;
  std::vector<double> dense_weights_;
};

}  // namespace troupe
