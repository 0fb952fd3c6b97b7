// Fuzzes the frame decoder (net/wire's FrameReader::read) with arbitrary byte streams: every input must decode or fail with troupe::Error(kIo), never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <variant>
#include <vector>

#include "net/wire/frame_codec.h"
#include "runtime/error.h"

namespace {

using namespace troupe::net::wire;

// The input ran out: the stream's end, as a socket's EOF would be (not a decoder error).
struct EndOfInput {};

// Reads every byte a decoded frame exposes, so AddressSanitizer checks that the spans are valid.
std::size_t touch(const InFrame& frame) {
  std::size_t sum = 0;
  if (const auto* chunk = std::get_if<InChunk>(&frame)) {
    for (std::byte b : chunk->payload) sum += static_cast<std::size_t>(b);
    return sum + chunk->header.index;
  }
  const auto& control = std::get<Control>(frame);
  sum += std::strlen(control_name(control));
  if (const auto* hello = std::get_if<Hello>(&control)) sum += hello->hostname.size();
  if (const auto* reject = std::get_if<Reject>(&control)) sum += reject->reason.size();
  if (const auto* roster = std::get_if<Roster>(&control)) {
    for (const auto& name : roster->hostnames) sum += name.size();
  }
  return sum;
}

// Decodes frames from `input` until it ends or a frame is malformed. With `place_in_caller`, a
// chunk's payload segment goes into caller memory as the TCP link reader places it.
void decode_stream(std::span<const std::byte> input, bool place_in_caller) {
  std::size_t at = 0;
  const ReadExact read_exact = [&](std::span<std::byte> out) {
    if (out.size() > input.size() - at) throw EndOfInput{};
    std::memcpy(out.data(), input.data() + at, out.size());
    at += out.size();
  };
  std::vector<std::uint64_t> destination;
  const FrameReader::Place place = [&](const ChunkHeader&, std::size_t segment_bytes) -> std::byte* {
    // Only as much as the input could still fill: the decoder bounds the size, not the fuzzer's memory.
    if (!place_in_caller || segment_bytes > input.size() - at) return nullptr;
    destination.assign(segment_bytes / 8, 0);
    return reinterpret_cast<std::byte*>(destination.data());
  };
  FrameReader reader;
  volatile std::size_t sink = 0;
  try {
    while (at < input.size()) sink = sink + touch(reader.read(read_exact, place));
  } catch (const EndOfInput&) {
  } catch (const troupe::Error& e) {
    // A malformed frame must be reported as an I/O error; any other kind is a decoder bug.
    if (e.kind() != troupe::ErrorKind::kIo) std::abort();
  }
  // Anything else (troupe::InvariantError, a kj::Exception that escaped, std::bad_alloc) propagates
  // and libFuzzer reports it as a crash.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  decode_stream(input, false);
  decode_stream(input, true);
  return 0;
}
