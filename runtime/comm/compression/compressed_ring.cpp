// Owns the compressed ring's step loops, the four BlockCodecs, and the blob all-gather.
#include "runtime/comm/compression/compressed_ring.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/comm/compression/cast_codec.h"
#include "runtime/comm/compression/int8_codec.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"

namespace troupe::comm {

namespace {

// Typed scratch <-> wire bytes by memcpy: the wire buffer holds bytes, not objects of the codec's types.
template <typename T>
void put(std::span<std::byte> out, std::size_t at, std::span<const T> in) {
  if (!in.empty()) std::memcpy(out.data() + at, in.data(), in.size_bytes());
}
template <typename T>
void get(std::span<const std::byte> in, std::size_t at, std::span<T> out) {
  if (!out.empty()) std::memcpy(out.data(), in.data() + at, out.size_bytes());
}

class F32Codec final : public BlockCodec {
 public:
  std::size_t encoded_bytes(std::size_t n) const override { return 4 * n; }
  void encode(std::span<const float> in, std::span<std::byte> out) override { put(out, 0, in); }
  void decode(std::span<const std::byte> in, std::span<float> out) override { get(in, 0, out); }
};

class Fp16Codec final : public BlockCodec {
 public:
  std::size_t encoded_bytes(std::size_t n) const override { return n == 0 ? 0 : 4 + 2 * n; }
  void encode(std::span<const float> in, std::span<std::byte> out) override {
    if (in.empty()) return;
    halves_.resize(in.size());
    const std::int32_t e = encode_fp16_block(in, halves_);
    put(out, 0, std::span<const std::int32_t>(&e, 1));
    put(out, 4, std::span<const std::uint16_t>(halves_));
  }
  void decode(std::span<const std::byte> in, std::span<float> out) override {
    if (out.empty()) return;
    std::int32_t e = 0;
    get(in, 0, std::span<std::int32_t>(&e, 1));
    // A corrupt exponent is a peer speaking another protocol, not a bug here.
    if (e < -126 || e > 126) throw Error(ErrorKind::kIo, "fp16 block with exponent " + std::to_string(e) + " from a peer: corrupt message");
    halves_.resize(out.size());
    get(in, 4, std::span<std::uint16_t>(halves_));
    decode_fp16_block(halves_, e, out);
  }

 private:
  std::vector<std::uint16_t> halves_;
};

class Bf16Codec final : public BlockCodec {
 public:
  std::size_t encoded_bytes(std::size_t n) const override { return 2 * n; }
  void encode(std::span<const float> in, std::span<std::byte> out) override {
    halves_.resize(in.size());
    encode_bf16(in, halves_);
    put(out, 0, std::span<const std::uint16_t>(halves_));
  }
  void decode(std::span<const std::byte> in, std::span<float> out) override {
    halves_.resize(out.size());
    get(in, 0, std::span<std::uint16_t>(halves_));
    decode_bf16(halves_, out);
  }

 private:
  std::vector<std::uint16_t> halves_;
};

class Int8Codec final : public BlockCodec {
 public:
  std::size_t encoded_bytes(std::size_t n) const override { return 4 * int8_scale_count(n) + n; }
  void encode(std::span<const float> in, std::span<std::byte> out) override {
    scales_.resize(int8_scale_count(in.size()));
    codes_.resize(in.size());
    quantize_int8(in, scales_, codes_);
    put(out, 0, std::span<const float>(scales_));
    put(out, 4 * scales_.size(), std::span<const std::int8_t>(codes_));
  }
  void decode(std::span<const std::byte> in, std::span<float> out) override {
    scales_.resize(int8_scale_count(out.size()));
    codes_.resize(out.size());
    get(in, 0, std::span<float>(scales_));
    get(in, 4 * scales_.size(), std::span<std::int8_t>(codes_));
    dequantize_int8(scales_, codes_, out);
  }

 private:
  std::vector<float> scales_;
  std::vector<std::int8_t> codes_;
};

int mod(int a, int n) { return ((a % n) + n) % n; }

}  // namespace

std::unique_ptr<BlockCodec> make_f32_codec() { return std::make_unique<F32Codec>(); }
std::unique_ptr<BlockCodec> make_fp16_codec() { return std::make_unique<Fp16Codec>(); }
std::unique_ptr<BlockCodec> make_bf16_codec() { return std::make_unique<Bf16Codec>(); }
std::unique_ptr<BlockCodec> make_int8_codec() { return std::make_unique<Int8Codec>(); }

std::uint64_t compressed_allreduce_ring(Transport& transport, std::span<float> data, BlockCodec& codec,
                                        RingScratch& scratch, std::span<float> feedback) {
  TROUPE_CHECK(feedback.empty() || feedback.size() == data.size(), feedback.size(), " != ", data.size());
  const int n = transport.size();
  const int rank = transport.rank();
  const int left = mod(rank - 1, n);   // receives come from here
  const int right = mod(rank + 1, n);  // sends go here
  auto chunk = [&](int index) {
    const ChunkRange c = ring_chunk(data.size(), n, index);
    return data.subspan(c.offset, c.length);
  };
  // Each chunk's slot in `wire`, where the all-gather keeps the encoded sums it forwards.
  std::vector<std::size_t> at(static_cast<std::size_t>(n) + 1, 0);
  for (int c = 0; c < n; ++c) at[c + 1] = at[c] + codec.encoded_bytes(chunk(c).size());
  scratch.wire.resize(at.back());
  auto slot = [&](int c) { return std::span<std::byte>(scratch.wire).subspan(at[c], at[c + 1] - at[c]); };
  std::uint64_t sent = 0;

  // Error feedback: owe this step what earlier encodings here lost; then start owing afresh.
  const bool ef = !feedback.empty();
  if (ef) {
    for (std::size_t i = 0; i < data.size(); ++i) {
      data[i] += feedback[i];
      feedback[i] = 0.0f;
    }
    scratch.decoded.resize(chunk(0).size());
  }
  // Adds what encoding `values` (chunk `c`) into `bytes` lost to the feedback; with `replace`, also
  // overwrites `values` with the decoded ones (one pass instead of a second decode).
  auto record_loss = [&](int c, std::span<float> values, std::span<const std::byte> bytes, bool replace) {
    const std::span<float> decoded(scratch.decoded.data(), values.size());
    codec.decode(bytes, decoded);
    float* owed = feedback.data() + ring_chunk(data.size(), n, c).offset;
    constexpr float kMax = std::numeric_limits<float>::max();
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float lost = values[i] - decoded[i];
      // An inf/NaN shows in this step only, not forever. (fabs <= max rather than isfinite: it vectorizes.)
      owed[i] += std::fabs(lost) <= kMax ? lost : 0.0f;
      if (replace) values[i] = decoded[i];
    }
  };

  // Reduce-scatter: re-encode the partial sum at every hop; accumulate in float32.
  if (n > 1) {  // chunk 0 is the longest
    scratch.outbox.resize(codec.encoded_bytes(chunk(0).size()));
    scratch.inbox.resize(scratch.outbox.size());
    scratch.incoming.resize(chunk(0).size());
  }
  for (int s = 0; s < n - 1; ++s) {
    const RingStep step = reduce_scatter_step(n, rank, s);
    const std::span<float> out = chunk(step.send_chunk);  // partial sum, to `right`
    const std::span<float> mine = chunk(step.recv_chunk);  // our values of what `left` sends
    const std::span<std::byte> ob(scratch.outbox.data(), codec.encoded_bytes(out.size()));
    const std::span<std::byte> ib(scratch.inbox.data(), codec.encoded_bytes(mine.size()));
    codec.encode(out, ob);
    transport.send(right, kCompressedReduceScatterTag, ob);
    sent += ob.size();
    if (ef) record_loss(step.send_chunk, out, ob, false);
    transport.recv(left, kCompressedReduceScatterTag, ib);
    const std::span<float> in(scratch.incoming.data(), mine.size());
    codec.decode(ib, in);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = in[i] + mine[i];
  }

  // All-gather: the owner encodes its finished sum once and keeps exactly what the others will decode.
  const int owned = ring_owned_chunk(n, rank);
  codec.encode(chunk(owned), slot(owned));
  if (ef) {
    record_loss(owned, chunk(owned), slot(owned), true);
  } else {
    codec.decode(slot(owned), chunk(owned));
  }
  for (int s = 0; s < n - 1; ++s) {
    const RingStep step = all_gather_step(n, rank, s);
    transport.send(right, kCompressedAllGatherTag, slot(step.send_chunk));
    sent += slot(step.send_chunk).size();
    transport.recv(left, kCompressedAllGatherTag, slot(step.recv_chunk));
    codec.decode(slot(step.recv_chunk), chunk(step.recv_chunk));
  }
  return sent;
}

std::uint64_t allgather_ring_bytes(Transport& transport, std::span<std::byte> blobs, std::size_t blob_bytes) {
  const int n = transport.size();
  const int rank = transport.rank();
  TROUPE_CHECK(blobs.size() == blob_bytes * static_cast<std::size_t>(n), blobs.size(), " bytes for ", n, " blobs of ",
               blob_bytes);
  auto blob = [&](int r) { return blobs.subspan(static_cast<std::size_t>(r) * blob_bytes, blob_bytes); };
  std::uint64_t sent = 0;
  for (int s = 0; s < n - 1; ++s) {
    transport.send(mod(rank + 1, n), kBlobAllGatherTag, blob(mod(rank - s, n)));  // to the right
    sent += blob_bytes;
    transport.recv(mod(rank - 1, n), kBlobAllGatherTag, blob(mod(rank - s - 1, n)));  // from the left
  }
  return sent;
}

std::uint64_t ring_allreduce_bytes(std::size_t n, int ranks, int rank) {
  std::uint64_t bytes = 0;
  for (int s = 0; s < ranks - 1; ++s) {
    bytes += 4 * ring_chunk(n, ranks, reduce_scatter_step(ranks, rank, s).send_chunk).length;
    bytes += 4 * ring_chunk(n, ranks, all_gather_step(ranks, rank, s).send_chunk).length;
  }
  return bytes;
}

}  // namespace troupe::comm
