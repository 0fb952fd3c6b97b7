// Owns the protection of a TCP link's frames after the handshake: the level two ranks agree on, the per-link, per-direction session keys, and sealing and opening frames (AES-256-GCM from OpenSSL).
//
// Why: the handshake (net/tcp/auth.h) proves who is at the other end, but on a real network
// anyone on the path could change, inject, replay, reorder or drop frames after it. So each frame
// of a protected link carries a 16-byte seal: the GCM tag over the frame's bytes, keyed by the
// sender's direction of the link, with the frame's sequence number (0, 1, 2, ... per direction, never
// sent) as the GCM nonce. A changed or injected frame fails its tag; a replayed, reordered or dropped
// one fails because the receiver expects the next number. Levels:
//   off        frames as they are (loopback by default: only users of this host can reach the socket)
//   integrity  every byte of the frame is authenticated (GCM's additional data; GMAC), sent in the clear
//   encrypt    the frame's header is authenticated, its payload encrypted and authenticated (AEAD)
// On the wire a sealed frame is the frame's header (net/wire/frame_codec.h: preamble and segment table,
// which says how long the frame is), an 8-byte header tag, the rest of the frame, then its 16-byte seal:
//   preamble | segment table | header tag | segments | seal
// The header tag is a GMAC over the header alone, under the same key and a nonce of its own (the
// sequence number with a domain byte; the seal's nonce has a different one), and the receiver checks
// it before it reads a byte of the body: a changed or injected length breaks the link at once instead
// of leaving the reader waiting for bytes that never come (until comm.timeout_s) or reading into the
// next frame. 8 bytes suffice there: the tag only guards the wait, since the seal, which covers the
// header too, still decides whether the frame counts; and a forgery has one try per connection (a
// wrong tag breaks the link) at 2^-64.
//
// Keys: HKDF-SHA256 (RFC 5869) with the job's secret as input key material, both handshake nonces as
// salt, and an info string naming the direction, both ranks and the level; so every link and every
// direction has keys of its own, fresh for each connection, and a recorded link cannot be replayed
// into another.
//
// Plain code, no threads: a Link owns one FrameSealer (its writer side) and one FrameOpener (its reader).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "net/wire/frame_codec.h"
#include "runtime/config/choices.h"

namespace troupe::net::tcp {

enum class Protection : std::uint8_t { off = 0, integrity = 1, encrypt = 2 };

// "off", "integrity", "encrypt": for messages.
const char* protection_name(Protection level);

// What one rank asks of a link (comm.integrity, comm.encrypt): encrypt always wins; integrity auto
// means on unless the peer's address is loopback.
Protection wanted_protection(IntegrityPolicy integrity, bool encrypt, bool loopback_peer);

// The level a link runs at: the stronger of the two ranks' wishes, so neither end gets less than it
// asked for, and a wish changed on the way makes the two ends disagree, which breaks the link at
// its first frame instead of weakening it.
Protection agreed_protection(Protection a, Protection b);

// A wire value of Protection from a peer's handshake; nullopt when it is not one.
std::optional<Protection> protection_from_wire(std::uint8_t value);

using SessionKey = std::array<std::uint8_t, 32>;

// The two keys of one end of a link: `send` seals what this end writes, `receive` opens what it reads.
struct LinkKeys {
  SessionKey send{};
  SessionKey receive{};
};

// The keys of the link between an acceptor and a connector after their handshake (the nonces are
// the challenge's and the hello's). The acceptor's `send` is the connector's `receive` and vice
// versa. Throws Error(kInternal) if OpenSSL fails.
LinkKeys derive_link_keys(std::string_view secret, const wire::Nonce& acceptor_nonce, const wire::Nonce& connector_nonce,
                          int acceptor_rank, int connector_rank, Protection level, bool as_acceptor);

// What a handshake settles for its link: the level and, unless off, the keys.
struct LinkSecurity {
  Protection level = Protection::off;
  LinkKeys keys;
};

inline constexpr std::size_t kSealBytes = 16;
using Seal = std::array<std::byte, kSealBytes>;
inline constexpr std::size_t kHeaderTagBytes = 8;
using HeaderTag = std::array<std::byte, kHeaderTagBytes>;

// What a sealed frame carries beside its bytes: the tag after its header, the seal after its end.
struct FrameSeals {
  HeaderTag header_tag{};
  Seal seal{};
};

// Seals the frames one direction of a link sends, in order: begin(), then the frame's bytes in wire
// order (authenticate() for bytes sent as they are, encrypt() for a payload at Protection::encrypt),
// then finish() gives the seal that follows the frame on the wire. One pass over the bytes.
// header_tag() (between begin() and finish()) gives the tag that follows the frame's header.
class FrameSealer {
 public:
  FrameSealer(Protection level, const SessionKey& key);  // level != off
  ~FrameSealer();
  FrameSealer(const FrameSealer&) = delete;
  FrameSealer& operator=(const FrameSealer&) = delete;

  Protection level() const { return level_; }
  void begin();
  void authenticate(std::span<const std::byte> bytes);
  // Protection::encrypt: `out` (same size as `in`, may be `in` itself) receives the ciphertext,
  // which is what goes on the wire. Every authenticate() of a frame comes before its first encrypt().
  void encrypt(std::span<const std::byte> in, std::span<std::byte> out);
  Seal finish();
  // The tag over this frame's header (its preamble and segment table, as on the wire).
  HeaderTag header_tag(std::span<const std::byte> header);
  std::uint64_t frames() const { return sequence_; }  // frames sealed so far

 private:
  Protection level_;
  std::uint64_t sequence_ = 0;
  struct Cipher;
  std::unique_ptr<Cipher> cipher_;
  std::unique_ptr<Cipher> header_cipher_;  // the header tags' GMAC, apart from the frame's running seal
};

// Opens the frames the other direction sends, in the same order: begin(), the frame's bytes in wire
// order (authenticate(), or decrypt() in place for a payload at Protection::encrypt), then
// finish(seal) says whether the frame is exactly the next one its sender sealed. Decrypted bytes must
// not be trusted before finish() returns true. header_matches() (between begin() and finish()) checks
// the header tag as soon as the header has arrived, before the reader waits for the body it announces.
class FrameOpener {
 public:
  FrameOpener(Protection level, const SessionKey& key);  // level != off
  ~FrameOpener();
  FrameOpener(const FrameOpener&) = delete;
  FrameOpener& operator=(const FrameOpener&) = delete;

  Protection level() const { return level_; }
  void begin();
  void authenticate(std::span<const std::byte> bytes);
  void decrypt(std::span<std::byte> in_place);
  bool finish(const Seal& seal);
  // Whether `tag` is this frame's header tag over `header` (its preamble and segment table).
  bool header_matches(std::span<const std::byte> header, const HeaderTag& tag);
  std::uint64_t frames() const { return sequence_; }  // frames opened (or tried) so far

 private:
  Protection level_;
  std::uint64_t sequence_ = 0;
  struct Cipher;
  std::unique_ptr<Cipher> cipher_;
  std::unique_ptr<Cipher> header_cipher_;
};

}  // namespace troupe::net::tcp
