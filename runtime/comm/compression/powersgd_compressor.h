// Owns PowerSgdCompressor: rank-r PowerSGD with error feedback and warm-started Q per matrix of a bucket; vectors and small matrices go uncompressed.
//
// Per step, on every rank, for each parameter the layout gives (Vogels et al. 2019, Algorithm 1 with
// error feedback; the same steps as torch's powerSGD_hook, but summing instead of averaging):
//   M   = grad + residual                       (rows × cols, this rank's)
//   P   = M Q                                    (rows × r; Q is the same on every rank)
//   allreduce-sum P (together with the exact sum of every uncompressed element, one message)
//   P̂   = orthogonalize_columns(P)              (identical on every rank: identical input)
//   Q'  = Mᵀ P̂;  allreduce-sum Q'               (cols × r)
//   approx = P̂ Q'ᵀ ≈ Σ_ranks M                  (written into grad)
//   residual = M − approx / n                    (this rank's share of what was not sent)
//   Q   = Q'                                     (warm start; after a non-finite step, the initial Q)
// Which parameters are compressed: powersgd_compresses(rows, cols, r) (powersgd_math.h) — matrices
// with (rows + cols)·r < rows·cols; the rest (vectors, tiny matrices, layout gaps) are summed exactly.
// The two allreduces are float32 rings (compressed_ring.h with the f32 codec), so bytes sent per rank
// ≈ 2(n − 1)/n · 4 · (Σ (rows + cols)·r + uncompressed elements). Q starts as standard normal values
// seeded by the matrix's offset in the bucket, so every rank starts from the same Q.
// Error: exact for a sum of rank ≤ r; otherwise the best rank-r part found by one power iteration per
// step, and error feedback re-sends the rest later (Σ_steps results + Σ_ranks residual = Σ_steps Σ_ranks
// grad up to float rounding).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/comm/compression/compressed_ring.h"
#include "runtime/comm/compression/compressor.h"

namespace troupe::comm {

class PowerSgdCompressor final : public GradientCompressor {
 public:
  // rank >= 1 (TROUPE_CHECK; make_compressor validates user input first).
  PowerSgdCompressor(std::size_t rank, std::string name);
  CompressStats allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) override;
  std::string_view name() const override { return name_; }

  // This rank's error-feedback residual over the whole bucket (0 outside compressed matrices; empty
  // before the first call).
  std::span<const float> residual() const { return residual_; }
  // How many of the layout's parameters are sent as P and Q (after the first call).
  std::size_t compressed_matrices() const { return matrices_.size(); }

 private:
  struct Matrix {
    std::size_t offset = 0, rows = 0, cols = 0;
    std::vector<float> q;  // cols × r, warm-started across steps
  };
  struct Range {
    std::size_t offset = 0, length = 0;
  };
  void plan(std::size_t n, std::span<const BucketParam> layout);

  std::size_t rank_;
  std::string name_;
  bool planned_ = false;
  std::vector<BucketParam> layout_;  // as first given: later calls must pass the same
  std::vector<Matrix> matrices_;
  std::vector<Range> exact_;
  std::vector<float> residual_;
  std::vector<float> first_;   // [P of each matrix][exact elements]
  std::vector<float> second_;  // [Q' of each matrix]
  std::unique_ptr<BlockCodec> f32_ = make_f32_codec();
  RingScratch scratch_;
};

}  // namespace troupe::comm
