// Owns the frame codec: encoding troupe's frames (net/wire/frame.capnp) for the wire and decoding them, with every limit a malformed frame must respect.
//
// This header and its .cpp are the only place in troupe that touches Cap'n Proto; nothing here
// includes a capnp header, so the transports above it compile without one.
//
// A frame on the stream:
//   preamble   8 bytes: magic 0x46505254 ("TRPF" in memory), version u16 = kVersion, reserved u16 = 0
//   capnp      one Cap'n Proto message in the standard stream framing: u32 (segments - 1),
//              u32 words per segment, padding to a word; then the segments.
// A chunk's payload is its message's last segment (written without copying, by reference), so a
// reader that knows where the chunk belongs reads that segment straight into the destination.
//
// Limits a receiver enforces before it allocates or reads anything (a frame that breaks one is
// malformed): at most kMaxSegments segments; all segments but the last ("head") at most
// kMaxHeadBytes together; the last at most kMaxChunkBytes + 8.
//
// Errors: every problem throws troupe::Error(ErrorKind::kIo) with a one-line description of what is
// wrong with the frame ("bad magic 0x...", "frame of N bytes exceeds the limit ..."); the caller
// adds which peer sent it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace troupe::net::wire {

inline constexpr std::uint32_t kMagic = 0x46505254;  // bytes "TRPF" little-endian
inline constexpr std::uint16_t kVersion = 1;
inline constexpr std::size_t kPreambleBytes = 8;
inline constexpr std::size_t kMaxSegments = 16;
inline constexpr std::size_t kMaxHeadBytes = 64 * 1024;
// One chunk's payload at most. A capnp Data holds < 512 MiB; 64 MiB keeps a malformed header from
// making a reader allocate much, and is far above the chunk size that is fastest (net/tcp).
inline constexpr std::size_t kMaxChunkBytes = std::size_t{64} << 20;

using Nonce = std::array<std::uint8_t, 32>;
using Mac = std::array<std::uint8_t, 32>;

// The header fields of one chunk of a tagged message (see frame.capnp's Chunk).
struct ChunkHeader {
  std::uint32_t tag = 0;
  std::uint32_t index = 0;
  std::uint64_t total_bytes = 0;
  std::uint64_t offset = 0;
  bool operator==(const ChunkHeader&) const = default;
};

// Control frames: the handshake, the rendezvous roster, and the orderly close.
struct Goodbye {
  // Empty when the rank finished; else why it leaves: its group broke ("rank 2 (on host h) is dead"),
  // so a peer still waiting on it can name the root failure. Travels as a farewell frame.
  std::string why;
  bool operator==(const Goodbye&) const = default;
};
struct Challenge {
  int rank = 0;
  Nonce nonce{};
  bool operator==(const Challenge&) const = default;
};
struct Hello {
  int rank = 0;
  int size = 0;
  std::uint16_t listen_port = 0;
  Nonce nonce{};
  Mac mac{};
  std::uint32_t listen_host = 0;  // IPv4, host order; 0: the address the connection came from
  std::string hostname;
  std::uint8_t protection = 0;  // the level the connector asks for its link (net/tcp/link_security.h)
  bool operator==(const Hello&) const = default;
};
struct Welcome {
  int rank = 0;
  Mac mac{};
  std::uint8_t protection = 0;  // the level the acceptor asks for the link
  bool operator==(const Welcome&) const = default;
};
struct Reject {
  std::string reason;
  bool operator==(const Reject&) const = default;
};
struct Roster {
  std::vector<std::uint16_t> ports;  // by rank
  std::vector<std::uint32_t> hosts;  // by rank: listening IPv4 addresses, host order
  std::vector<std::string> hostnames;  // by rank
  bool operator==(const Roster&) const = default;
};
using Control = std::variant<Goodbye, Challenge, Hello, Welcome, Reject, Roster>;

// The name of a control frame's kind, for error messages ("hello", "goodbye", ...).
const char* control_name(const Control& control);

// An encoded frame, ready for one scatter-gather write: pieces() in order are the whole frame, and
// pieces()[0] is its header (the preamble and the segment table, which say how long the frame is).
// It owns everything its pieces point at (including a chunk's payload storage).
class OutFrame {
 public:
  OutFrame();
  OutFrame(OutFrame&&) noexcept;
  OutFrame& operator=(OutFrame&&) noexcept;
  ~OutFrame();

  const std::vector<std::span<const std::byte>>& pieces() const;
  std::size_t bytes() const;

  // After the frame has been written: hands back a chunk's payload storage (null for control
  // frames) so the sender can reuse it; the frame must not be written again.
  std::unique_ptr<std::uint64_t[]> take_storage();

  struct Impl;

 private:
  explicit OutFrame(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend OutFrame encode(const Control&);
  friend OutFrame encode_chunk(const ChunkHeader&, std::unique_ptr<std::uint64_t[]>, std::size_t);
  friend OutFrame encode_chunk_header(const ChunkHeader&, std::size_t);
};

OutFrame encode(const Control& control);

// A chunk whose payload is the first `payload_bytes` bytes of `storage` (which the frame takes
// over). The storage must hold ceil(payload_bytes / 8) words; the bytes after the payload in the
// last word are sent too, so the caller zeroes them. payload_bytes <= kMaxChunkBytes.
OutFrame encode_chunk(const ChunkHeader& header, std::unique_ptr<std::uint64_t[]> storage, std::size_t payload_bytes);

// The same frame without its payload, for a sender that writes the payload from its own memory
// (no copy, no alignment needed): pieces() are everything before the payload; the frame continues
// on the wire with the `payload_bytes` bytes of payload, then payload_padding(payload_bytes) zero
// bytes. payload_bytes > 0.
OutFrame encode_chunk_header(const ChunkHeader& header, std::size_t payload_bytes);
inline std::size_t payload_padding(std::size_t payload_bytes) { return (8 - payload_bytes % 8) % 8; }

// Where a reader gets its bytes: fills `out` completely or throws.
using ReadExact = std::function<void(std::span<std::byte> out)>;

// A decoded chunk: its header and its payload. The payload lies either in the destination the
// caller chose (see FrameReader::read) or in the reader's scratch, valid until the next read.
struct InChunk {
  ChunkHeader header;
  std::span<const std::byte> payload;
};
using InFrame = std::variant<InChunk, Control>;

// Reads frames one after another from a stream, reusing its buffers. Not thread-safe; one per link.
class FrameReader {
 public:
  FrameReader();
  ~FrameReader();
  FrameReader(const FrameReader&) = delete;
  FrameReader& operator=(const FrameReader&) = delete;

  // Where a chunk's payload segment should land: called once the whole frame but that segment has
  // been read and decoded (so nothing after the segment's read can fail), and only when the payload
  // is that whole segment but for a last word's padding; with the segment's size (a multiple of 8,
  // >= the payload). Return a writable, 8-byte-aligned pointer to that many bytes to receive it in
  // place, or nullptr to use the reader's scratch. The segment's read is the frame's last step.
  using Place = std::function<std::byte*(const ChunkHeader& header, std::size_t segment_bytes)>;

  // Called with the frame's header (preamble and segment table, as read) once it has arrived and
  // before the limits are checked or anything else is read: a link that authenticates headers
  // (net/tcp/link_security.h) reads and checks the header's tag here, and throws if it fails.
  using HeaderRead = std::function<void(std::span<const std::byte> header)>;

  // Reads and decodes the next frame. For a chunk placed in the caller's memory, the returned
  // payload starts exactly there.
  InFrame read(const ReadExact& read_exact, const Place& place, const HeaderRead& on_header = {});

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe::net::wire
