// Owns FashionMnist: the IDX image/label files (gzip) of Debian's dataset-fashion-mnist, as a Dataset.
//
// Features are pixel/255 as f32 [B, 784]; targets i32 [B]. Orders: sequential = example
// (i*B + b) mod N; shuffled = the same position in a per-epoch permutation (Fisher-Yates driven by
// order_hash(seed, epoch), epoch = (i*B + b) div N). Evaluation walks the test set in order.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "runtime/data/dataset.h"

namespace troupe {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

class FashionMnist final : public Dataset {
 public:
  // dir holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-..., t10k-labels-...
  FashionMnist(const std::string& dir, bool shuffled, std::uint64_t seed);

  Batch train_batch(std::int64_t step, int batch_size) const override;
  Batch eval_batch(std::int64_t k, int batch_size) const override;
  std::int64_t eval_batches_full(int batch_size) const override;
  std::int64_t rows_per_sample() const override { return 1; }
  std::string describe() const override;

  std::int64_t train_size() const { return static_cast<std::int64_t>(train_labels_.size()); }
  std::int64_t test_size() const { return static_cast<std::int64_t>(test_labels_.size()); }

 private:
  std::int64_t train_index(std::int64_t position) const;
  Batch gather(const std::vector<std::uint8_t>& images, const std::vector<std::uint8_t>& labels,
               const std::vector<std::int64_t>& rows) const;

  std::string dir_;
  bool shuffled_;
  std::uint64_t seed_;
  std::vector<std::uint8_t> train_images_, train_labels_, test_images_, test_labels_;
  mutable std::mutex permutation_mutex_;  // train_batch is const and may be called from several actors
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> permutation_;
};

// Reads one gzip'd IDX file; checks magic, dimensions and length. Returns the payload bytes.
std::vector<std::uint8_t> read_idx_gz(const std::string& path, int expected_dims, std::vector<std::int64_t>* dims);

}  // namespace troupe
