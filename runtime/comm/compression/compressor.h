// Owns the gradient-compressor interface: one object per gradient bucket, holding that bucket's error-feedback state, whose allreduce() sums a flat float bucket over a Transport's ranks through a lossy codec.
//
// Use (data-parallel training, per bucket per step, on each rank's own thread):
//
//   auto comp = comm::make_compressor(config.comm.compression);   // once per bucket, same spec on every rank
//   ...
//   comm::CompressStats s = comp->allreduce(transport, bucket_grads, bucket_layout);
//   // bucket_grads now holds the SUM over ranks (divide by D for the mean), bitwise equal on all ranks
//
// Contract:
//  * The result is what an uncompressed allreduce-SUM would give, up to the codec's error (stated per
//    codec in README "Gradient compression"). Every rank ends with bitwise-identical values.
//  * All ranks call with buckets of the same length and the same layout, in the same order of buckets
//    (one Transport carries the buckets one after another; messages are FIFO per tag).
//  * A compressor belongs to ONE bucket: its error-feedback state (what was lost or not sent; for
//    PowerSGD also the warm-started Q) is sized on the first call; a later call with another length
//    (or, for PowerSGD, layout) throws troupe::Error(kShape).
//  * Every lossy codec (fp16, bf16, int8, topk, powersgd) keeps error feedback: what this rank's
//    encodings lost or did not send is added to its next step's gradient, so the sum over steps of
//    results tracks the sum over steps of true gradients (no bias accumulates). A non-finite loss is
//    not carried over: an inf/NaN gradient shows in its own step's result only.
//  * With one rank nothing is sent, but the codec still applies (the result is what the exchange
//    would deliver): tests and single-device runs see the same numerics as D = 1 data parallelism.
//  * Transport errors (troupe::Error(kIo)) pass through; the bucket is then unspecified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "runtime/comm/compression/compression_spec.h"
#include "runtime/comm/transport.h"

namespace troupe::comm {

// One parameter inside a flat bucket: elements [offset, offset + rows·cols), a row-major rows × cols
// matrix. A vector (bias, LayerNorm weight) is rows = numel, cols = 1; a tensor of rank > 2 is given as
// [shape[0], product of the rest] (as torch's PowerSGD hook views it). Only PowerSGD reads the shape;
// the other codecs treat the bucket as one flat run. Entries are sorted by offset, do not overlap and
// lie inside the bucket (else troupe::Error(kShape)); elements no entry covers are reduced exactly
// (uncompressed). An empty layout means "one flat vector".
struct BucketParam {
  std::size_t offset = 0;
  std::size_t rows = 0;
  std::size_t cols = 1;
};

// What one allreduce() call cost THIS rank on the wire.
struct CompressStats {
  std::uint64_t bytes_sent = 0;          // bytes this rank passed to Transport::send
  std::uint64_t bytes_uncompressed = 0;  // what an uncompressed float32 ring allreduce of the bucket
                                         // would have sent from this rank: ≈ 2(n − 1)/n · 4·N
  CompressStats& operator+=(const CompressStats& o) {
    bytes_sent += o.bytes_sent;
    bytes_uncompressed += o.bytes_uncompressed;
    return *this;
  }
  // bytes_uncompressed / bytes_sent; 0 when nothing was sent (one rank, empty bucket).
  double ratio() const {
    return bytes_sent == 0 ? 0.0 : static_cast<double>(bytes_uncompressed) / static_cast<double>(bytes_sent);
  }
};

class GradientCompressor {
 public:
  virtual ~GradientCompressor() = default;

  // In place: `grad` (this rank's gradient bucket) becomes the compressed allreduce-sum over all
  // ranks of `transport`. See the contract above.
  virtual CompressStats allreduce(Transport& transport, std::span<float> grad, std::span<const BucketParam> layout) = 0;

  // The spec this compressor was made from ("int8", "topk:0.01", ...), for logs.
  virtual std::string_view name() const = 0;
};

// A compressor for `spec` (none | fp16 | bf16 | int8 | topk:<fraction> | powersgd:<rank>); throws
// troupe::Error(kConfig) naming the spec when it is not one of these. "none" is the plain float32
// ring (bytes_sent == bytes_uncompressed), so callers need no separate uncompressed path.
std::unique_ptr<GradientCompressor> make_compressor(std::string_view spec);
std::unique_ptr<GradientCompressor> make_compressor(const CompressionSpec& spec);

// Throws troupe::Error(kShape) unless `layout` is sorted by offset, non-overlapping and inside a
// bucket of `n` elements; `who` names the caller in the message.
void validate_layout(std::span<const BucketParam> layout, std::size_t n, std::string_view who);

}  // namespace troupe::comm
