// Owns the parsed form of a `comm.compression` value: none | fp16 | bf16 | int8 | topk:<fraction> | powersgd:<rank>.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace troupe::comm {

enum class CompressionKind { kNone, kFp16, kBf16, kInt8, kTopK, kPowerSgd };

struct CompressionSpec {
  CompressionKind kind = CompressionKind::kNone;
  double fraction = 1.0;  // topk: the fraction of entries each rank sends, in (0, 1]
  std::size_t rank = 0;   // powersgd: the approximation rank, >= 1
  std::string text = "none";  // the spec as given, for names and messages
  friend bool operator==(const CompressionSpec&, const CompressionSpec&) = default;
};

// Parses a spec: the one parser of comm.compression (the config schema runs it when the key is set). Throws
// troupe::Error(kConfig) naming the spec and listing the valid forms when it is unknown, when the
// top-k fraction is not a number in (0, 1], or when the PowerSGD rank is not a whole number in
// [1, 99999].
CompressionSpec parse_compression_spec(std::string_view spec);

}  // namespace troupe::comm
