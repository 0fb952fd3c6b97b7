// Owns TextDataset: byte-level text, its 90/10 train/validation split, and the two batch orders.
//
// Orders (B = batch, T = block, N = train bytes, i = step from 0, b = sample in the step):
//   sequential: start = ((i*B + b) * T) mod (N - T - 1)
//   shuffled:   start = order_hash(seed, i*B + b) mod (N - T - 1)
// x = the T bytes at start, y = the T bytes at start + 1. Validation batch k uses the sequential
// formula over the validation split.
#pragma once

#include <string>
#include <vector>

#include "runtime/data/dataset.h"

namespace troupe {

// The built-in corpus: every regular file directly in /usr/share/common-licenses (present on every
// Debian system), sorted by name bytewise, concatenated.
std::vector<std::uint8_t> load_default_corpus();
std::vector<std::uint8_t> load_file_bytes(const std::string& path);

class TextDataset final : public Dataset {
 public:
  enum class Order { sequential, shuffled };
  // Throws troupe::Error (kInput) when a split is too short for one block.
  TextDataset(std::vector<std::uint8_t> bytes, int block_size, Order order, std::uint64_t seed, std::string source);

  Batch train_batch(std::int64_t step, int batch_size) const override;
  Batch eval_batch(std::int64_t k, int batch_size) const override;
  std::int64_t rows_per_sample() const override { return block_; }
  std::string describe() const override;

  std::int64_t train_size() const { return split_; }
  std::int64_t val_size() const { return static_cast<std::int64_t>(bytes_.size()) - split_; }
  std::int64_t train_start(std::int64_t step, int batch_size, int b) const;

 private:
  Batch make_batch(std::int64_t base, std::int64_t size, const std::vector<std::int64_t>& starts) const;

  std::vector<std::uint8_t> bytes_;
  std::int64_t split_;
  int block_;
  Order order_;
  std::uint64_t seed_;
  std::string source_;
};

}  // namespace troupe
