// Owns the parameter-server link format: a worker's pull, push, clip and loss report, and the server's answers, as byte messages over a comm::Transport.
//
// Every exchange is one request and one answer, each a fixed 32-byte header message (tag
// kPsHeaderTag) followed, when its payload_bytes > 0, by one payload message (tag kPsPayloadTag):
//
//   header: u32 magic 'TPS1' | u32 kind | i64 step | f64 scalar | u64 payload_bytes   (host byte order:
//           loopback only, both ends are the same build)
//
//   kind        scalar        payload (request)                          answer payload
//   pull        1 = dense     per table: i64 n, n x i64 row ids          dense, then per table rows; i64 min_version
//   push        lr            dense gradients, per table: ids + rows     -
//   push_exact  lr            per dense: i32 buffers, i64 n, n x i128    -
//   clip        max_norm      -                                          f64 norm
//   report      -             i64 n, n x f64 (the step's losses)         -
//   hello       -             -                                          i64 the first step not yet pushed
//   bye         -             -                                          -
// Dense tensors are i64 numel then numel x f32, in dense-index order, checked against the layout's
// shapes. An answer's kind is kOk, or kError with the server's troupe::Error text as payload.
// Decoding checks every count against the layout and the payload's length before allocating, so a
// malformed message is a troupe::Error(kIo) naming the field, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "actors/state/ps/ps_endpoint.h"
#include "actors/state/ps/ps_layout.h"

namespace troupe::ps::wire {

inline constexpr std::uint32_t kPsHeaderTag = 0x50530001;
inline constexpr std::uint32_t kPsPayloadTag = 0x50530002;
inline constexpr std::uint32_t kMagic = 0x31535054;  // "TPS1"

enum class Kind : std::uint32_t {
  pull = 1, push = 2, push_exact = 3, clip = 4, report = 5, bye = 6, hello = 7, ok = 100, error = 101
};
const char* kind_name(Kind kind);

struct Header {
  std::uint32_t magic = kMagic;
  Kind kind = Kind::ok;
  std::int64_t step = 0;
  double scalar = 0.0;
  std::uint64_t payload_bytes = 0;
};
static_assert(sizeof(Header) == 32);

// Checks magic and kind; throws troupe::Error(kIo) naming `peer` otherwise.
void check_header(const Header& h, const std::string& peer);

// Payload builders and readers. The readers throw troupe::Error(kIo) "malformed ps <what> from <peer>: ..."
// on a short, long or inconsistent payload.
std::vector<std::byte> encode_pull(const std::vector<std::vector<std::int64_t>>& ids);
std::vector<std::vector<std::int64_t>> decode_pull(std::span<const std::byte> payload, const PsLayout& layout,
                                                   const std::string& peer);
std::vector<std::byte> encode_pulled(const PsPulled& pulled);
PsPulled decode_pulled(std::span<const std::byte> payload, const PsLayout& layout, bool dense,
                       const std::vector<std::vector<std::int64_t>>& ids, const std::string& peer);

struct PushPayload {
  std::vector<Tensor> dense;
  std::vector<SparseRows> tables;
};
std::vector<std::byte> encode_push(const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables);
PushPayload decode_push(std::span<const std::byte> payload, const PsLayout& layout, const std::string& peer);
std::vector<std::byte> encode_push_exact(const std::vector<ExactGrad>& exact);
std::vector<ExactGrad> decode_push_exact(std::span<const std::byte> payload, const PsLayout& layout, const std::string& peer);

std::vector<std::byte> encode_losses(const std::vector<double>& losses);
std::vector<double> decode_losses(std::span<const std::byte> payload, const std::string& peer);

std::vector<std::byte> encode_i64(std::int64_t value);
std::int64_t decode_i64(std::span<const std::byte> payload, const std::string& what, const std::string& peer);
std::vector<std::byte> encode_f64(double value);
double decode_f64(std::span<const std::byte> payload, const std::string& what, const std::string& peer);

}  // namespace troupe::ps::wire
