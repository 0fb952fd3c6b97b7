// Owns TopKCompressor: top-k sparsification with error feedback per rank, an all-gather of every rank's (index, value) list, and a sum in rank order.
//
// Per step, n ranks, N floats, k = topk_count(N, fraction):
//   each rank: topk_with_feedback (topk_codec.h) → k (index u32, value f32) pairs, indices ascending;
//   allgather_ring_bytes of the n lists (8k bytes each): (n − 1) · 8k bytes sent per rank;
//   every rank: grad = 0, then for r = 0, 1, …, n − 1: grad[index] += value. The same additions in
//   the same order everywhere, so the result is bitwise identical on every rank.
// The result is exactly the sum of what the ranks sent (no rounding beyond the float additions);
// what was not sent waits in each rank's residual. Compared with the float32 ring's
// 2(n − 1)/n · 4N the ratio is N / (n k) ≈ 1/(n · fraction). So top-k pays off when
// fraction ≪ 1/n (at n = 4, topk:0.01 is 25× smaller; topk:0.25 is not smaller at all).
#pragma once

#include <span>
#include <string>
#include <vector>

#include "runtime/comm/compression/compressor.h"
#include "runtime/comm/compression/topk_codec.h"

namespace troupe::comm {

class TopKCompressor final : public GradientCompressor {
 public:
  // fraction in (0, 1] (TROUPE_CHECK; make_compressor validates user input first).
  TopKCompressor(double fraction, std::string name);
  CompressStats allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) override;
  std::string_view name() const override { return name_; }

  // This rank's error-feedback residual: what it has not sent yet (empty before the first call).
  std::span<const float> residual() const { return residual_; }

 private:
  double fraction_;
  std::string name_;
  bool sized_ = false;
  std::vector<float> residual_;
  std::vector<std::uint32_t> scratch_;
  SparseGrad sent_;
  std::vector<std::byte> blobs_;
  std::vector<std::uint32_t> indices_;
  std::vector<float> values_;
};

}  // namespace troupe::comm
