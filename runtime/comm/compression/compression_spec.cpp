// Owns parsing and validating `comm.compression` specs into CompressionSpec.
#include "runtime/comm/compression/compression_spec.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::comm {

namespace {

constexpr std::string_view kForms =
    "none, fp16, bf16, int8, topk:<fraction> (e.g. topk:0.01), powersgd:<rank> (e.g. powersgd:4)";

// Every message lists the forms, so that one error shows what to write.
[[noreturn]] void invalid(std::string_view spec, std::string_view why) {
  throw Error(ErrorKind::kConfig, fmt::format("comm.compression = \"{}\": {}; valid forms are {}", spec, why, kForms));
}

}  // namespace

CompressionSpec parse_compression_spec(std::string_view spec) {
  CompressionSpec out;
  out.text = std::string(spec);
  if (spec == "none") return out;
  if (spec == "fp16" || spec == "bf16" || spec == "int8") {
    out.kind = spec == "fp16" ? CompressionKind::kFp16 : spec == "bf16" ? CompressionKind::kBf16 : CompressionKind::kInt8;
    return out;
  }
  if (spec.starts_with("topk:")) {
    const std::string v(spec.substr(5));
    char* end = nullptr;
    const double f = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(f > 0.0 && f <= 1.0)) invalid(spec, "the top-k fraction must be a number in (0, 1]");
    out.kind = CompressionKind::kTopK;
    out.fraction = f;
    return out;
  }
  if (spec.starts_with("powersgd:")) {
    const std::string_view v = spec.substr(9);
    const bool digits = !v.empty() && v.size() <= 5 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    const long r = digits ? std::strtol(std::string(v).c_str(), nullptr, 10) : 0;
    if (r < 1) invalid(spec, "the PowerSGD rank must be a whole number >= 1");
    out.kind = CompressionKind::kPowerSgd;
    out.rank = static_cast<std::size_t>(r);
    return out;
  }
  throw Error(ErrorKind::kConfig, fmt::format("comm.compression = \"{}\" is not one of {}", spec, kForms));
}

}  // namespace troupe::comm
