// Owns the tests of the TCP links' frame protection: key derivation, sealing and opening frames, the level two ranks agree on, and links through a tampering proxy that must break, naming the peer.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/link_security.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"
#include "tests/byte_patterns.h"
#include "tests/tamper_proxy.h"

using namespace troupe;
using namespace troupe::testing;
namespace tcp = troupe::net::tcp;
namespace wire = troupe::net::wire;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;
using tcp::Protection;

namespace {

std::string hex(const tcp::Seal& s) {
  std::array<std::uint8_t, tcp::kSealBytes> a;
  std::transform(s.begin(), s.end(), a.begin(), [](std::byte b) { return static_cast<std::uint8_t>(b); });
  return troupe::testing::hex(a);
}

wire::Nonce counting_nonce(std::uint8_t from) {
  wire::Nonce n;
  for (std::size_t i = 0; i < n.size(); ++i) n[i] = static_cast<std::uint8_t>(from + i);
  return n;
}

tcp::Seal seal_of(tcp::FrameSealer& s, const std::vector<std::byte>& frame) {
  s.begin();
  s.authenticate(frame);
  return s.finish();
}
bool opens(tcp::FrameOpener& o, const std::vector<std::byte>& frame, const tcp::Seal& seal) {
  o.begin();
  o.authenticate(frame);
  return o.finish(seal);
}

net::TcpOptions protected_options(int rank, int size, const std::string& address, IntegrityPolicy integrity, bool encrypt,
                                  std::chrono::milliseconds timeout = 10s) {
  net::TcpOptions o;
  o.rank = rank;
  o.size = size;
  o.address = address;
  o.secret = "link-security-test-secret";
  o.integrity = integrity;
  o.encrypt = encrypt;
  o.timeout = timeout;
  return o;
}

// `size` ranks as threads: rank r runs with options[r] (rank 0 on `listener`), then fn; what each threw.
struct Ranks {
  std::vector<std::unique_ptr<net::TcpTransport>> transports;
  std::vector<std::exception_ptr> errors;
};
Ranks run_ranks(std::vector<net::TcpOptions> options, net::TcpListener listener,
                const std::function<void(net::TcpTransport&)>& fn) {
  const std::size_t n = options.size();
  Ranks out{std::vector<std::unique_ptr<net::TcpTransport>>(n), std::vector<std::exception_ptr>(n)};
  std::vector<std::thread> threads;
  for (std::size_t r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        out.transports[r] = r == 0 ? net::connect_tcp(options[r], std::move(listener)) : net::connect_tcp(options[r]);
        fn(*out.transports[r]);
      } catch (...) {
        out.errors[r] = std::current_exception();
        if (out.transports[r]) out.transports[r]->abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  return out;
}

std::string what(const std::exception_ptr& e) {
  if (!e) return "";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

}  // namespace

TEST_CASE("link keys: HKDF-SHA256 of the secret and both nonces, one key per direction, matching across the link", "[tcp][link_security]") {
  const auto na = counting_nonce(0), nc = counting_nonce(32);
  const auto acceptor = tcp::derive_link_keys("job-secret", na, nc, 0, 1, Protection::integrity, true);
  const auto connector = tcp::derive_link_keys("job-secret", na, nc, 0, 1, Protection::integrity, false);
  // RFC 5869 HKDF-SHA256(ikm = secret, salt = Na | Nc, info = direction, ranks, level), computed independently.
  CHECK(hex(acceptor.send) == "db544d9e7f6ec63744b871d1e3d7a166027ea3c76507c0262b01c4f198e018cf");
  CHECK(hex(acceptor.receive) == "2e277a2301576a502124b98f8be8b8941b50304ab3f0d2ccd296c063b91f6008");
  CHECK(acceptor.send == connector.receive);
  CHECK(acceptor.receive == connector.send);
  // Anything else about the link gives other keys.
  CHECK(tcp::derive_link_keys("job-secreT", na, nc, 0, 1, Protection::integrity, true).send != acceptor.send);
  CHECK(tcp::derive_link_keys("job-secret", nc, na, 0, 1, Protection::integrity, true).send != acceptor.send);
  CHECK(tcp::derive_link_keys("job-secret", na, counting_nonce(33), 0, 1, Protection::integrity, true).send != acceptor.send);
  CHECK(tcp::derive_link_keys("job-secret", na, nc, 0, 2, Protection::integrity, true).send != acceptor.send);
  CHECK(tcp::derive_link_keys("job-secret", na, nc, 0, 1, Protection::encrypt, true).send != acceptor.send);
}

TEST_CASE("frame seals are AES-256-GCM with the sequence number as nonce (NIST test vectors)", "[tcp][link_security]") {
  const tcp::SessionKey zero{};
  // GCM test case 13 (K = 0^256, IV = 0^96, nothing): the first frame's seal of an empty frame.
  tcp::FrameSealer mac(Protection::integrity, zero);
  mac.begin();
  CHECK(hex(mac.finish()) == "530f8afbc74536b9a963b4f1c4cb738b");
  // Test case 14 (P = 0^128): encrypting 16 zero bytes.
  tcp::FrameSealer aead(Protection::encrypt, zero);
  std::vector<std::byte> block(16);
  aead.begin();
  aead.encrypt(block, block);
  std::array<std::uint8_t, 16> cipher;
  std::transform(block.begin(), block.end(), cipher.begin(), [](std::byte b) { return static_cast<std::uint8_t>(b); });
  CHECK(hex(cipher) == "cea7403d4d606b6e074ec5d3baf39d18");
  CHECK(hex(aead.finish()) == "d0d1c8a799996bf0265b98b5d48ab919");
}

TEST_CASE("header tags: 8 bytes of GMAC over the header, under a nonce apart from the seal's, checked before the body", "[tcp][link_security]") {
  const tcp::SessionKey zero{};
  std::vector<std::byte> header(16);
  for (std::size_t i = 0; i < header.size(); ++i) header[i] = static_cast<std::byte>(i);
  tcp::FrameSealer sealer(Protection::integrity, zero);
  sealer.begin();
  const tcp::HeaderTag first = sealer.header_tag(header);
  sealer.authenticate(header);
  const tcp::Seal seal0 = sealer.finish();
  sealer.begin();
  const tcp::HeaderTag second = sealer.header_tag(header);
  // AES-256-GCM, K = 0^256, IV = 1 (u64 little-endian) | 0x01 | 0^24, A = the header, P empty; the
  // tag's first 8 bytes, computed independently (Python's cryptography package).
  std::array<std::uint8_t, 8> got;
  std::transform(second.begin(), second.end(), got.begin(), [](std::byte b) { return static_cast<std::uint8_t>(b); });
  CHECK(hex(got) == "d6c2149a906b93de");
  CHECK(first != second);  // each frame's own nonce
  CHECK(!std::equal(first.begin(), first.end(), seal0.begin()));  // not the seal's nonce

  tcp::FrameOpener opener(Protection::integrity, zero);
  opener.begin();
  CHECK(opener.header_matches(header, first));
  auto longer = header;
  longer[12] ^= std::byte{0x04};  // a segment's length
  CHECK_FALSE(opener.header_matches(longer, first));
  CHECK_FALSE(opener.header_matches(header, second));  // the next frame's tag: a replayed or reordered header
  opener.authenticate(header);
  CHECK(opener.finish(seal0));
  opener.begin();
  CHECK(opener.header_matches(header, second));
}

TEST_CASE("an opened frame must be exactly the next one sealed: changed, replayed, reordered or skipped frames fail", "[tcp][link_security]") {
  const auto keys = tcp::derive_link_keys("s", counting_nonce(1), counting_nonce(2), 0, 1, Protection::integrity, true);
  tcp::FrameSealer sealer(Protection::integrity, keys.send);
  const auto f0 = pattern(1000, 0), f1 = pattern(4099, 1), f2 = pattern(7, 2);
  const auto s0 = seal_of(sealer, f0), s1 = seal_of(sealer, f1), s2 = seal_of(sealer, f2);
  CHECK(sealer.frames() == 3);
  SECTION("in order, whatever the pieces") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    CHECK(opens(opener, f0, s0));
    opener.begin();  // one pass over pieces of any size
    opener.authenticate(std::span(f1).first(3));
    opener.authenticate(std::span(f1).subspan(3));
    CHECK(opener.finish(s1));
    CHECK(opens(opener, f2, s2));
  }
  SECTION("a changed byte") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    auto changed = f0;
    changed[500] ^= std::byte{0x10};
    CHECK_FALSE(opens(opener, changed, s0));
  }
  SECTION("a changed seal") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    auto seal = s0;
    seal[15] ^= std::byte{1};
    CHECK_FALSE(opens(opener, f0, seal));
  }
  SECTION("a replay") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    CHECK(opens(opener, f0, s0));
    CHECK_FALSE(opens(opener, f0, s0));
  }
  SECTION("reordered") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    CHECK_FALSE(opens(opener, f1, s1));
  }
  SECTION("one dropped") {
    tcp::FrameOpener opener(Protection::integrity, keys.send);
    CHECK(opens(opener, f0, s0));
    CHECK_FALSE(opens(opener, f2, s2));
  }
  SECTION("the other direction's key") {
    tcp::FrameOpener opener(Protection::integrity, keys.receive);
    CHECK_FALSE(opens(opener, f0, s0));
  }
}

TEST_CASE("encrypted frames: header authenticated, payload encrypted in one pass, opened in place", "[tcp][link_security]") {
  const auto keys = tcp::derive_link_keys("s", counting_nonce(3), counting_nonce(4), 2, 5, Protection::encrypt, false);
  tcp::FrameSealer sealer(Protection::encrypt, keys.send);
  const auto header = pattern(40, 7), payload = pattern(70001, 8);
  std::vector<std::byte> wire_payload(payload.size());
  sealer.begin();
  sealer.authenticate(header);
  sealer.encrypt(payload, wire_payload);
  const auto seal = sealer.finish();
  CHECK(wire_payload != payload);
  // Not a byte-wise XOR with one repeated block (a counter mode's stream never repeats).
  CHECK(!std::equal(wire_payload.begin(), wire_payload.begin() + 16, wire_payload.begin() + 16));

  auto open = [&](std::vector<std::byte> h, std::vector<std::byte> p) {
    tcp::FrameOpener opener(Protection::encrypt, keys.send);
    opener.begin();
    opener.authenticate(h);
    opener.decrypt(p);
    const bool ok = opener.finish(seal);
    return std::pair{ok, p};
  };
  const auto [ok, plain] = open(header, wire_payload);
  CHECK(ok);
  CHECK(plain == payload);
  auto changed_header = header;
  changed_header[3] ^= std::byte{1};
  CHECK_FALSE(open(changed_header, wire_payload).first);
  auto changed_payload = wire_payload;
  changed_payload[60000] ^= std::byte{1};
  CHECK_FALSE(open(header, changed_payload).first);
}

TEST_CASE("link protection: each end asks by policy and peer address, and the link runs at the stronger wish", "[tcp][link_security]") {
  using tcp::wanted_protection;
  CHECK(wanted_protection(IntegrityPolicy::automatic, false, true) == Protection::off);
  CHECK(wanted_protection(IntegrityPolicy::automatic, false, false) == Protection::integrity);
  CHECK(wanted_protection(IntegrityPolicy::on, false, true) == Protection::integrity);
  CHECK(wanted_protection(IntegrityPolicy::off, false, false) == Protection::off);
  CHECK(wanted_protection(IntegrityPolicy::off, true, true) == Protection::encrypt);
  CHECK(tcp::agreed_protection(Protection::off, Protection::integrity) == Protection::integrity);
  CHECK(tcp::agreed_protection(Protection::encrypt, Protection::integrity) == Protection::encrypt);
  CHECK(tcp::protection_from_wire(2) == Protection::encrypt);
  CHECK_FALSE(tcp::protection_from_wire(3).has_value());

  // Over real handshakes: loopback with auto stays off; one rank asking is enough for every link it has.
  const auto [policy1, encrypt2, expected01, expected02, expected12] =
      GENERATE(table<IntegrityPolicy, bool, Protection, Protection, Protection>({
          {IntegrityPolicy::automatic, false, Protection::off, Protection::off, Protection::off},
          {IntegrityPolicy::on, false, Protection::integrity, Protection::off, Protection::integrity},
          {IntegrityPolicy::on, true, Protection::integrity, Protection::encrypt, Protection::encrypt},
      }));
  net::TcpListener listener("127.0.0.1:0");
  std::vector<net::TcpOptions> options = {
      protected_options(0, 3, listener.address(), IntegrityPolicy::automatic, false),
      protected_options(1, 3, listener.address(), policy1, false),
      protected_options(2, 3, listener.address(), IntegrityPolicy::automatic, encrypt2)};
  std::vector<std::vector<Protection>> seen(3);
  auto ranks = run_ranks(options, std::move(listener), [&](net::TcpTransport& t) {
    for (int p = 0; p < 3; ++p) seen[static_cast<std::size_t>(t.rank())].push_back(t.protection(p));
  });
  for (const auto& e : ranks.errors) REQUIRE(what(e).empty());
  CHECK(seen[0] == std::vector<Protection>{Protection::off, expected01, expected02});
  CHECK(seen[1] == std::vector<Protection>{expected01, Protection::off, expected12});
  CHECK(seen[2] == std::vector<Protection>{expected02, expected12, Protection::off});
}

TEST_CASE("tcp with integrity or encryption on: point-to-point sizes, FIFO order, and a 16 MiB ring arrive exactly", "[tcp][link_security]") {
  const bool encrypt = GENERATE(false, true);
  const std::size_t chunk = GENERATE(as<std::size_t>{}, 0, 64);
  CAPTURE(encrypt, chunk);
  net::TcpListener listener("127.0.0.1:0");
  std::vector<net::TcpOptions> options;
  for (int r = 0; r < 3; ++r) {
    options.push_back(protected_options(r, 3, listener.address(), IntegrityPolicy::on, encrypt));
    if (chunk) options.back().chunk_bytes = chunk;
  }
  const std::vector<std::size_t> sizes = {0, 1, 7, 8, 1000, 4099, 70001};
  const std::size_t big = chunk ? 0 : 16u << 20;  // the ring at the default chunk size only (64-byte frames are slow)
  auto ranks = run_ranks(options, std::move(listener), [&](net::TcpTransport& t) {
    const int r = t.rank(), right = (r + 1) % 3, left = (r + 2) % 3;
    REQUIRE(t.protection(right) == (encrypt ? Protection::encrypt : Protection::integrity));
    for (std::size_t i = 0; i < sizes.size(); ++i) t.send(right, 10, pattern(sizes[i], r * 100 + static_cast<int>(i)));
    if (big) t.send(right, 11, pattern(big, r));
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::byte> got(sizes[i]);
      t.recv(left, 10, got);
      REQUIRE(got == pattern(sizes[i], left * 100 + static_cast<int>(i)));
    }
    if (big) {
      std::vector<std::byte> got(big);
      t.recv(left, 11, got);
      REQUIRE(got == pattern(big, left));
    }
  });
  for (const auto& e : ranks.errors) CHECK(what(e).empty());
}

TEST_CASE("through a forwarding proxy: unaltered frames allreduce exactly, encrypted ones hide their payload", "[tcp][link_security]") {
  const bool encrypt = GENERATE(false, true);
  CAPTURE(encrypt);
  net::TcpListener listener("127.0.0.1:0");
  TamperProxy proxy(listener.port(), Tamper::none, 0, true);
  const std::string via = "127.0.0.1:" + std::to_string(proxy.port());
  std::vector<net::TcpOptions> options = {protected_options(0, 2, listener.address(), IntegrityPolicy::on, encrypt),
                                          protected_options(1, 2, via, IntegrityPolicy::on, encrypt)};
  const std::size_t n = 300000;  // floats: several frames through the proxy
  auto ranks = run_ranks(options, std::move(listener), [&](net::TcpTransport& t) {
    std::vector<float> data(n);
    for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(static_cast<int>((i * 7 + t.rank() * 13) % 61) - 30);
    comm::allreduce_ring(t, data);
    for (std::size_t i = 0; i < n; ++i) {
      const float expected = static_cast<float>(static_cast<int>((i * 7) % 61) - 30 + static_cast<int>((i * 7 + 13) % 61) - 30);
      if (data[i] != expected) throw std::runtime_error(detail::concat("element ", i, " is ", data[i], ", expected ", expected));
    }
    // What rank 1 sends in the clear after this: a recognisable pattern.
    if (t.rank() == 1) t.send(0, 5, pattern(4096, 77));
    std::vector<std::byte> got(4096);
    if (t.rank() == 0) {
      t.recv(1, 5, got);
      REQUIRE(got == pattern(4096, 77));
    }
  });
  for (const auto& e : ranks.errors) REQUIRE(what(e).empty());
  ranks.transports.clear();  // goodbyes through the proxy
  const auto wire_bytes = proxy.from_connector();
  const auto plain = pattern(4096, 77);
  const bool in_clear = std::search(wire_bytes.begin(), wire_bytes.end(), plain.begin(), plain.begin() + 64) != wire_bytes.end();
  CHECK(in_clear == !encrypt);
}

TEST_CASE("a frame changed (its body or its length), injected, replayed, reordered or dropped on the way breaks the link at once, naming the peer", "[tcp][link_security]") {
  const Tamper tamper = GENERATE(Tamper::flip, Tamper::length, Tamper::inject, Tamper::replay, Tamper::reorder, Tamper::drop);
  const bool encrypt = GENERATE(false, true);
  CAPTURE(static_cast<int>(tamper), encrypt);
  constexpr int kMessages = 6, kTampered = 2;  // data frame 2 carries the third message
  net::TcpListener listener("127.0.0.1:0");
  TamperProxy proxy(listener.port(), tamper, kTampered, true);
  const std::string via = "127.0.0.1:" + std::to_string(proxy.port());
  std::vector<net::TcpOptions> options = {protected_options(0, 2, listener.address(), IntegrityPolicy::on, encrypt, 20s),
                                          protected_options(1, 2, via, IntegrityPolicy::on, encrypt, 20s)};
  int received = 0;
  const auto start = std::chrono::steady_clock::now();
  auto ranks = run_ranks(options, std::move(listener), [&](net::TcpTransport& t) {
    if (t.rank() == 1) {
      for (int m = 0; m < kMessages; ++m) t.send(0, static_cast<std::uint32_t>(m), pattern(4000, m));
      std::byte ack{};
      t.recv(0, 99, std::span(&ack, 1));  // fails when rank 0 drops the link
      return;
    }
    for (int m = 0; m < kMessages; ++m) {
      std::vector<std::byte> got(4000);
      t.recv(1, static_cast<std::uint32_t>(m), got);
      REQUIRE(got == pattern(4000, m));
      ++received;
    }
  });
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(received == kTampered);  // the messages before the tampered frame arrived intact, nothing after
  const std::string error = what(ranks.errors[0]);
  CHECK_THAT(error, Contains("rank 0: recv with rank 1 failed: the link to rank 1 at 127.0.0.1:") &&
                        Contains("failed its integrity check") && Contains("frame 2 from it"));
  if (tamper == Tamper::length || tamper == Tamper::inject) {  // caught by the header's tag, before the body
    CHECK_THAT(error, Contains("its header's tag does not match"));
  }
  CHECK(ranks.errors[1] != nullptr);  // rank 1 sees its link end too
  CHECK(took < 10s);                  // at once, not the 20 s timeout
}
