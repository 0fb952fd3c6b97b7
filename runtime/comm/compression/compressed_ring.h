// Owns the ring allreduce whose every message is encoded by a BlockCodec (re-quantizing reduce-scatter, then an all-gather of the owners' encoded sums), and the ring all-gather of equal-sized byte blobs.
//
// compressed_allreduce_ring, n ranks, N floats, codec size E(L) bytes for L floats (gloo ring layout,
// chunks and steps from runtime/comm/ring.h):
//   reduce-scatter  n − 1 steps; at step s rank r encodes its partial sum of chunk (r − s) mod n, sends
//                   it right, receives chunk (r − s − 1) mod n from the left, decodes it and adds its
//                   own float32 values (accumulation is float32; only the wire is compressed).
//   all-gather      the owner of chunk c = (r + 1) mod n encodes the finished sum ONCE and overwrites
//                   its own copy with decode(encoded); the encoded bytes then travel the ring n − 1
//                   steps and are forwarded as received, never re-encoded.
//   Bytes sent per rank: Σ over the 2(n − 1) messages of E(chunk length) ≈ 2(n − 1)/n · E(N) — the
//   uncompressed ring's 2(n − 1)/n · 4N scaled by the codec's ratio, for any n.
//   Determinism: each chunk is summed once along the ring and every rank decodes the same bytes, so
//   all ranks end bitwise identical, run after run.
//   Error: every element passes through n encodings (n − 1 partial sums, one final sum); each adds at
//   most the codec's bound for the value it encodes (see cast_codec.h, int8_codec.h).
//   Error feedback (optional `feedback`, one float per element, kept by the caller across steps): the
//   rank that encodes a value knows exactly what the encoding lost (value − decode(encode(value))) and
//   adds it to its feedback; the next call first adds feedback into data. The result of a call is the
//   exact sum of its inputs minus every encoding's loss, so over steps the losses telescope:
//   Σ_steps result = Σ_steps Σ_ranks grad − Σ_ranks feedback (up to float32 additions) — no bias
//   accumulates, as with top-k's residual. Cost: one more decode per encode.
// allgather_ring_bytes: n − 1 steps; at step s rank r sends blob (r − s) mod n right and receives blob
//   (r − s − 1) mod n from the left. Bytes sent per rank: (n − 1) · blob size.
// Errors: whatever the Transport throws (troupe::Error(kIo)); afterwards the buffers are unspecified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/comm/transport.h"

namespace troupe::comm {

// Message tags of the compressed collectives (distinct from the ring collectives' 0x7272'xxxx).
inline constexpr std::uint32_t kCompressedReduceScatterTag = 0x636F'0001;
inline constexpr std::uint32_t kCompressedAllGatherTag = 0x636F'0002;
inline constexpr std::uint32_t kBlobAllGatherTag = 0x636F'0003;

// How a run of floats travels as bytes. encoded_bytes must depend on n only (the receiver sizes its
// buffer from it) and be 0 for n = 0. A codec keeps scratch space, so it is not shared across threads.
class BlockCodec {
 public:
  virtual ~BlockCodec() = default;
  virtual std::size_t encoded_bytes(std::size_t n) const = 0;
  // out.size() == encoded_bytes(in.size()).
  virtual void encode(std::span<const float> in, std::span<std::byte> out) = 0;
  // in.size() == encoded_bytes(out.size()).
  virtual void decode(std::span<const std::byte> in, std::span<float> out) = 0;
};

// float32 as is (4n bytes): the uncompressed ring.
std::unique_ptr<BlockCodec> make_f32_codec();
// [int32 exponent][n halves] (2n + 4 bytes): encode_fp16_block, see cast_codec.h.
std::unique_ptr<BlockCodec> make_fp16_codec();
// [n bfloat16] (2n bytes).
std::unique_ptr<BlockCodec> make_bf16_codec();
// [ceil(n/256) float scales][n int8] (n + 4·ceil(n/256) bytes), see int8_codec.h.
std::unique_ptr<BlockCodec> make_int8_codec();

// Buffers compressed_allreduce_ring reuses from call to call (a 4 MiB bucket would otherwise cost
// ~16 MiB of fresh, zeroed allocations per call). Owned by the caller, e.g. one per compressor.
struct RingScratch {
  std::vector<std::byte> wire;    // every chunk's encoded sum, for the all-gather
  std::vector<std::byte> outbox;  // one encoded partial sum
  std::vector<std::byte> inbox;
  std::vector<float> incoming;  // a decoded partial sum
  std::vector<float> decoded;   // what an encoding will decode to (error feedback)
};

// In place: every rank's `data` becomes the (codec-rounded) elementwise sum over ranks, bitwise equal
// on every rank. Returns the bytes this rank sent. `feedback` is empty (no error feedback) or has the
// size of `data`: added into data first, then set to what this call's encodings on this rank lost.
std::uint64_t compressed_allreduce_ring(Transport& transport, std::span<float> data, BlockCodec& codec,
                                        RingScratch& scratch, std::span<float> feedback = {});

// `blobs` holds size() blobs of `blob_bytes` each; on entry blob rank() is this rank's, on return every
// blob holds its rank's. Returns the bytes this rank sent.
std::uint64_t allgather_ring_bytes(Transport& transport, std::span<std::byte> blobs, std::size_t blob_bytes);

// The bytes `rank` sends in an uncompressed ring allreduce of n floats over `ranks` ranks
// (= 2(ranks − 1)/ranks · 4n up to chunk rounding; 0 for one rank).
std::uint64_t ring_allreduce_bytes(std::size_t n, int ranks, int rank);

}  // namespace troupe::comm
