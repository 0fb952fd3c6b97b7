// Owns the TCP transport's tests: chunking, SHA-256/HMAC, the frame codec, addresses, point-to-point semantics over loopback, authentication, malformed frames, failures, and ranks as separate processes.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp/auth.h"
#include "net/tcp/chunking.h"
#include "net/tcp/rendezvous.h"
#include "net/tcp/tcp_transport.h"
#include "net/wire/frame_codec.h"
#include "tests/byte_patterns.h"
#include "tests/dead_rank_checks.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"

using namespace troupe;
using namespace troupe::testing;
namespace wire = troupe::net::wire;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

net::TcpOptions options(int rank, int size, const std::string& address, std::chrono::milliseconds timeout = 5s) {
  net::TcpOptions o;
  o.rank = rank;
  o.size = size;
  o.address = address;
  o.secret = "test-secret";
  o.timeout = timeout;
  return o;
}

// Decodes one frame from a byte string, as a reader on a socket would.
wire::InFrame decode(const std::vector<std::byte>& bytes, wire::FrameReader& reader, const wire::FrameReader::Place& place) {
  std::size_t at = 0;
  return reader.read(
      [&](std::span<std::byte> out) {
        if (at + out.size() > bytes.size()) throw Error(ErrorKind::kIo, "end of test input");
        std::memcpy(out.data(), bytes.data() + at, out.size());
        at += out.size();
      },
      place);
}

std::vector<std::byte> flatten(const wire::OutFrame& frame) {
  std::vector<std::byte> out;
  for (const auto& p : frame.pieces()) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Rank 0 of a 2-rank group as a TcpTransport (options `o0`), rank 1 as a bare socket that made the
// handshake and read the roster, blocking from then on: a test writes rank 1's frames by hand.
struct HandWrittenPeer {
  boost::asio::io_context io;
  std::unique_ptr<net::TcpTransport> t0;
  std::unique_ptr<net::tcp::Socket> raw;

  explicit HandWrittenPeer(net::TcpOptions o0) {
    net::TcpListener listener("127.0.0.1:0");
    const auto address = net::tcp::parse_loopback_address(listener.address());
    std::thread rank0([&] { t0 = net::connect_tcp(o0, std::move(listener)); });
    std::string ignored;
    const auto deadline = net::tcp::Clock::now() + 5s;
    raw = net::tcp::connect_until(io, address, deadline, ignored);
    net::tcp::handshake_as_connector(*raw, "test-secret", 1, 2, 0, 0, address.text(), deadline);
    CHECK(std::holds_alternative<wire::Roster>(net::tcp::read_control(*raw, deadline)));
    rank0.join();
    raw->non_blocking(false);
  }
};

}  // namespace

TEST_CASE("chunk_ranges cuts whole words into chunks and keeps a ragged tail apart", "[tcp]") {
  using net::tcp::ChunkRange;
  using net::tcp::chunk_ranges;
  CHECK(chunk_ranges(0, 64) == std::vector<ChunkRange>{{0, 0}});
  CHECK(chunk_ranges(7, 64) == std::vector<ChunkRange>{{0, 7}});
  CHECK(chunk_ranges(64, 64) == std::vector<ChunkRange>{{0, 64}});
  CHECK(chunk_ranges(100, 64) == std::vector<ChunkRange>{{0, 64}, {64, 32}, {96, 4}});
  CHECK(chunk_ranges(200000, 65536) == std::vector<ChunkRange>{{0, 65536}, {65536, 65536}, {131072, 65536}, {196608, 3392}});
  CHECK(chunk_ranges(65541, 1 << 20) == std::vector<ChunkRange>{{0, 65536}, {65536, 5}});
  for (std::size_t n : {1, 8, 9, 1000, 65536, 100003}) {
    std::size_t next = 0;
    for (const auto& c : chunk_ranges(n, 256)) {
      CHECK(c.offset == next);
      CHECK(c.length <= 256);
      next += c.length;
    }
    CHECK(next == n);
  }
  CHECK_THROWS_AS(chunk_ranges(10, 12), InvariantError);
}

TEST_CASE("SHA-256 and HMAC-SHA256 match the published test vectors", "[tcp]") {
  using net::tcp::hmac_sha256;
  using net::tcp::sha256;
  CHECK(hex(sha256(bytes_of(""))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(sha256(bytes_of("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(hex(sha256(bytes_of(std::string(1000, 'a')))) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
  // RFC 4231 test cases 2 and 6 (a key longer than the block).
  CHECK(hex(hmac_sha256("Jefe", bytes_of("what do ya want for nothing?"))) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hex(hmac_sha256(std::string(131, '\xaa'), bytes_of("Test Using Larger Than Block-Size Key - Hash Key First"))) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(net::tcp::fresh_nonce() != net::tcp::fresh_nonce());
}

TEST_CASE("frame codec round-trips control frames and chunks, in place or through scratch", "[tcp]") {
  wire::FrameReader reader;
  auto no_place = [](const wire::ChunkHeader&, std::size_t) -> std::byte* { return nullptr; };
  const std::vector<wire::Control> controls = {
      wire::Goodbye{}, wire::Goodbye{"rank 2 (on host node02) is dead"}, wire::Challenge{3, net::tcp::fresh_nonce()},
      wire::Hello{2, 4, 40000, net::tcp::fresh_nonce(), net::tcp::fresh_nonce()},
      wire::Hello{2, 4, 40000, net::tcp::fresh_nonce(), net::tcp::fresh_nonce(), 0x0A4D0002, "node02"},
      wire::Welcome{1, net::tcp::fresh_nonce()}, wire::Reject{"no, because"}, wire::Roster{{0, 1234, 65535}},
      wire::Roster{{0, 1234, 65535}, {0, 0x0A4D0002, 0x7F000001}, {"node01", "node02", ""}}};
  for (const auto& c : controls) {
    auto frame = decode(flatten(wire::encode(c)), reader, no_place);
    REQUIRE(std::holds_alternative<wire::Control>(frame));
    CHECK(std::get<wire::Control>(frame) == c);
  }

  const auto payload = pattern(1000, 1);
  auto storage = std::make_unique<std::uint64_t[]>(125);
  std::memcpy(storage.get(), payload.data(), payload.size());
  const wire::ChunkHeader header{77, 2, 5000, 1000};
  const auto bytes = flatten(wire::encode_chunk(header, std::move(storage), payload.size()));

  auto through_scratch = decode(bytes, reader, no_place);
  auto& chunk = std::get<wire::InChunk>(through_scratch);
  CHECK(chunk.header == header);
  CHECK(std::equal(chunk.payload.begin(), chunk.payload.end(), payload.begin(), payload.end()));

  std::vector<std::uint64_t> dest(5000 / 8, 0);
  auto in_place = decode(bytes, reader, [&](const wire::ChunkHeader& h, std::size_t segment_bytes) {
    CHECK(h == header);
    CHECK(segment_bytes == 1000);
    return reinterpret_cast<std::byte*>(dest.data()) + h.offset;
  });
  const auto& placed = std::get<wire::InChunk>(in_place);
  CHECK(placed.payload.data() == reinterpret_cast<std::byte*>(dest.data()) + 1000);
  CHECK(std::memcmp(placed.payload.data(), payload.data(), payload.size()) == 0);

  auto empty = decode(flatten(wire::encode_chunk(wire::ChunkHeader{5, 0, 0, 0}, nullptr, 0)), reader, no_place);
  CHECK(std::get<wire::InChunk>(empty).payload.empty());
}

TEST_CASE("frame codec rejects malformed frames with a precise reason", "[tcp]") {
  wire::FrameReader reader;
  auto no_place = [](const wire::ChunkHeader&, std::size_t) -> std::byte* { return nullptr; };
  auto good = flatten(wire::encode(wire::Goodbye{}));
  auto expect = [&](std::vector<std::byte> bytes, const std::string& reason) {
    try {
      decode(bytes, reader, no_place);
      FAIL("decoded: " << reason);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kIo);
      CHECK_THAT(e.what(), Contains(reason));
    }
  };
  auto garbage = good;
  std::memcpy(garbage.data(), "GET / HT", 8);
  expect(garbage, "bad magic");
  auto version = good;
  version[4] = std::byte{9};
  expect(version, "unsupported frame version 9");
  auto segments = good;
  segments[8] = std::byte{200};  // 201 segments
  expect(segments, "201 segments");
  auto huge = good;
  huge[12] = std::byte{0xFF};
  huge[13] = std::byte{0xFF};
  huge[14] = std::byte{0xFF};  // a first segment of 16 Mi words
  expect(huge, "exceeds the limit");
  auto bad_pointer = good;
  bad_pointer[16] = std::byte{0x02};  // the root pointer becomes a far pointer into a missing segment
  bad_pointer[20] = std::byte{0x07};
  expect(bad_pointer, "Cap'n Proto could not decode the frame");
}

TEST_CASE("TCP addresses must be loopback HOST:PORT", "[tcp]") {
  const auto a = net::tcp::parse_loopback_address("127.0.0.1:29500");
  CHECK(a.text() == "127.0.0.1:29500");
  CHECK(net::tcp::parse_loopback_address("localhost:0").text() == "127.0.0.1:0");
  CHECK(net::tcp::parse_loopback_address("127.3.4.5:7").host_text() == "127.3.4.5");
  auto rejects = [](const std::string& address, const std::string& reason) {
    try {
      net::tcp::parse_loopback_address(address);
      FAIL("accepted " << address);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kConfig);
      CHECK_THAT(e.what(), Contains(reason));
    }
  };
  rejects("10.0.0.1:29500", "not a loopback address");
  rejects("192.168.1.2:1", "not a loopback address");
  rejects("127.0.0.1", "not HOST:PORT");
  rejects("127.0.0.1:99999", "not a number in [0, 65535]");
  rejects("127.0.0.1:http", "not a number");
  rejects("example.com:80", "not an IPv4 address");
  // connect_tcp refuses before touching the network.
  CHECK_THROWS_WITH(net::connect_tcp(options(1, 2, "10.1.2.3:29500")), Contains("not a loopback address"));
  CHECK_THROWS_WITH(net::connect_tcp(options(0, 2, "8.8.8.8:0")), Contains("not a loopback address"));
  auto no_secret = options(1, 2, "127.0.0.1:1");
  no_secret.secret.clear();
  CHECK_THROWS_WITH(net::connect_tcp(no_secret), Contains("TROUPE_SECRET"));
}

TEST_CASE("tcp point-to-point: sizes, FIFO per (peer, tag), independent tags, itself", "[tcp]") {
  const std::size_t chunk = GENERATE(as<std::size_t>{}, 0, 64);  // 0: the default chunk size
  CAPTURE(chunk);
  RankGroup group(TransportKind::tcp, 3, 5s, chunk);
  const std::vector<std::size_t> sizes = {0, 1, 7, 8, 1000, 4099, 70001};
  require_no_errors(group.run([&](comm::Transport& t) {
    const int r = t.rank();
    const int right = (r + 1) % 3, left = (r + 2) % 3;
    // Everything is sent before anything is received: send() must not wait for the receiver.
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      t.send(right, 10, pattern(sizes[i], r * 100 + static_cast<int>(i)));
      t.send(right, 11, pattern(sizes[i], r * 100 + 50 + static_cast<int>(i)));
    }
    t.send(r, 12, pattern(33, r));
    // Tag 11 first: tags are independent queues; within a tag, order is kept.
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::byte> got(sizes[i]);
      t.recv(left, 11, got);
      REQUIRE(got == pattern(sizes[i], left * 100 + 50 + static_cast<int>(i)));
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::byte> got(sizes[i]);
      t.recv(left, 10, got);
      REQUIRE(got == pattern(sizes[i], left * 100 + static_cast<int>(i)));
    }
    std::vector<std::byte> self(33);
    t.recv(r, 12, self);
    REQUIRE(self == pattern(33, r));
  }));
}

TEST_CASE("tcp: a ring where every rank sends 16 MiB before receiving does not deadlock", "[tcp]") {
  RankGroup group(TransportKind::tcp, 4, 10s);
  const std::size_t n = 16u << 20;
  require_no_errors(group.run([&](comm::Transport& t) {
    const int r = t.rank();
    t.send((r + 1) % 4, 1, pattern(n, r));
    std::vector<std::byte> got(n);
    t.recv((r + 3) % 4, 1, got);
    REQUIRE(got == pattern(n, (r + 3) % 4));
  }));
}

TEST_CASE("tcp: lent sends are written from the caller's memory, and release_lent gives it back", "[tcp]") {
  const std::size_t chunk = GENERATE(as<std::size_t>{}, 0, 4096);  // 0: the default chunk size
  CAPTURE(chunk);
  RankGroup group(TransportKind::tcp, 2, 10s, chunk);
  // Larger than the sockets hold, so most of it waits in the queue for the writer, by reference.
  const std::vector<std::size_t> sizes = {0, 1, 7, 70001, (8u << 20) + 4};
  require_no_errors(group.run([&](comm::Transport& t) {
    if (t.rank() == 0) {
      std::vector<std::vector<std::byte>> lent;
      for (std::size_t i = 0; i < sizes.size(); ++i) lent.push_back(pattern(sizes[i], static_cast<int>(i)));
      for (std::size_t i = 0; i < sizes.size(); ++i) t.send_lent(1, 5, lent[i]);
      t.send_lent(0, 6, lent[3]);  // to itself: copied
      t.release_lent();
      for (auto& b : lent) std::fill(b.begin(), b.end(), std::byte{0xEE});  // free again: the wire has its copy
      std::vector<std::byte> self(sizes[3]);
      t.recv(0, 6, self);
      REQUIRE(self == pattern(sizes[3], 3));
      std::byte ack{};
      t.recv(1, 7, std::span(&ack, 1));
      return;
    }
    std::this_thread::sleep_for(100ms);  // the sender releases while most of it is still queued or in the socket
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::vector<std::byte> got(sizes[i]);
      t.recv(0, 5, got);
      REQUIRE(got == pattern(sizes[i], static_cast<int>(i)));
    }
    const std::byte ack{1};
    t.send(0, 7, std::span(&ack, 1));
  }));
}

TEST_CASE("tcp: a 64 MiB message arrives whole across many chunks, received late or waited for", "[tcp]") {
  RankGroup group(TransportKind::tcp, 2, 20s);
  const std::size_t n = (64u << 20) + 4;  // not a whole number of words: the ragged tail chunk too
  const auto sent = pattern(n, 9);
  const bool late = GENERATE(false, true);
  CAPTURE(late);
  require_no_errors(group.run([&](comm::Transport& t) {
    if (t.rank() == 0) {
      t.send(1, 3, sent);
      std::byte ack{};
      t.recv(1, 4, std::span(&ack, 1));
      return;
    }
    if (late) std::this_thread::sleep_for(300ms);  // most chunks are buffered before recv is called
    std::vector<std::byte> got(n);
    t.recv(0, 3, got);
    REQUIRE(got == sent);
    const std::byte ack{1};
    t.send(0, 4, std::span(&ack, 1));
  }));
}

TEST_CASE("tcp recv reports a wrong size and a timeout, naming the peer", "[tcp]") {
  RankGroup group(TransportKind::tcp, 2, 300ms);
  auto& a = group.transport(0);
  auto& b = group.transport(1);
  const std::vector<std::byte> three(3);
  std::vector<std::byte> four(4);
  a.send(1, 7, three);
  try {
    b.recv(0, 7, four);
    FAIL("no size error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(e.what(), Contains("from rank 0") && Contains("tag 7") && Contains("3 bytes") && Contains("expected 4 bytes"));
  }
  try {
    b.recv(0, 7, four);
    FAIL("no timeout");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("rank 1: no message from rank 0") && Contains("300 ms"));
  }
  // The link survives both: the next message goes through.
  a.send(1, 7, four);
  b.recv(0, 7, four);
}

TEST_CASE("tcp: a rank that dies mid-collective fails every other rank at once, naming it", "[tcp]") {
  const int ranks = GENERATE(2, 4);
  CAPTURE(ranks);
  check_aborted_rank_fails_the_others(TransportKind::tcp, ranks, 10s, 5s);  // 10 s: passing must not depend on it
}

TEST_CASE("tcp: a peer that dies after sending a message nobody asked for yet is still seen dead at once", "[tcp]") {
  // Rank 1's 1 MiB message waits unread in rank 0's socket (no recv asks for it); rank 1 then dies
  // while rank 0 waits on rank 2, which never sends. Rank 0 must not wait for its 10 s timeout.
  RankGroup group(TransportKind::tcp, 3, 10s);
  group.transport(1).send(0, 5, pattern(1 << 20, 1));
  std::this_thread::sleep_for(100ms);  // the header has arrived and the payload waits
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    group.kill(1);
  });
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::byte> out(4);
  CHECK_THROWS_WITH(group.transport(0).recv(2, 6, out), Contains("rank 1 is dead, so the group is broken"));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  killer.join();
}

TEST_CASE("tcp: a transport closed normally delivers what it sent, then recv from it fails at once", "[tcp]") {
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  std::unique_ptr<net::TcpTransport> t0;
  std::thread rank0([&] { t0 = net::connect_tcp(options(0, 2, ""), std::move(listener)); });
  auto t1 = net::connect_tcp(options(1, 2, address));
  rank0.join();
  const auto sent = pattern(3000, 4);
  t1->send(0, 1, sent);
  t1.reset();  // goodbye after the message
  std::vector<std::byte> got(3000);
  t0->recv(1, 1, got);
  CHECK(got == sent);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(t0->recv(1, 1, got), Contains("rank 1 closed its transport"));
  CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("tcp: a process without the secret is refused on both sides and never joins", "[tcp]") {
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  std::mutex mu;
  std::vector<std::string> refused;
  auto o0 = options(0, 2, "");
  o0.on_reject = [&](const std::string& why) {
    std::lock_guard lock(mu);
    refused.push_back(why);
  };
  std::unique_ptr<net::TcpTransport> t0;
  std::thread rank0([&] { t0 = net::connect_tcp(o0, std::move(listener)); });

  auto intruder = options(1, 2, address);
  intruder.secret = "wrong-secret";
  CHECK_THROWS_WITH(net::connect_tcp(intruder),
                    Contains("rank 1: rank 0 at " + address + " refused this rank: authentication failed"));
  auto t1 = net::connect_tcp(options(1, 2, address));  // the real rank 1 still gets in
  rank0.join();
  REQUIRE(refused.size() == 1);
  CHECK_THAT(refused[0], Contains("rank 0 refused a connection from 127.0.0.1:") && Contains("does not know the job's secret"));

  const auto sent = pattern(100, 1);
  t1->send(0, 9, sent);
  std::vector<std::byte> got(100);
  t0->recv(1, 9, got);
  CHECK(got == sent);
}

TEST_CASE("tcp: rendezvous that cannot complete fails with a clear error, not a hang", "[tcp]") {
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  std::exception_ptr rank0_error;
  std::thread rank0([&] {
    try {
      auto o = options(0, 3, "", 700ms);
      o.on_reject = [](const std::string&) {};
      net::connect_tcp(o, std::move(listener));
    } catch (...) {
      rank0_error = std::current_exception();
    }
  });
  auto wrong = options(2, 3, address, 700ms);
  wrong.secret = "other";
  CHECK_THROWS_WITH(net::connect_tcp(wrong), Contains("refused this rank"));
  CHECK_THROWS_WITH(net::connect_tcp(options(1, 4, address, 700ms)), Contains("group of 4 ranks, this group has 3"));
  rank0.join();
  CHECK_THAT(io_error(rank0_error), Contains("timed out after 700 ms: rank(s) 1, 2 of 3 did not join") &&
                                        Contains("refused:") && Contains("secret"));
  // Nobody listening at all.
  net::TcpListener closed("127.0.0.1:0");
  const std::string nowhere = closed.address();
  { net::TcpListener gone = std::move(closed); }
  CHECK_THROWS_WITH(net::connect_tcp(options(1, 2, nowhere, 300ms)), Contains("could not reach rank 0 at " + nowhere));
}

TEST_CASE("tcp: garbage on the rendezvous port is refused and the group still forms", "[tcp]") {
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  std::vector<std::string> refused;
  auto o0 = options(0, 2, "");
  o0.on_reject = [&](const std::string& why) { refused.push_back(why); };
  std::unique_ptr<net::TcpTransport> t0;
  std::thread rank0([&] { t0 = net::connect_tcp(o0, std::move(listener)); });
  boost::asio::io_context io;
  std::string ignored;
  auto raw = net::tcp::connect_until(io, net::tcp::parse_loopback_address(address), net::tcp::Clock::now() + 2s, ignored);
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  raw->non_blocking(false);
  boost::asio::write(*raw, boost::asio::buffer(junk));
  // Rank 1 joins only once rank 0 has closed the junk connection: handshakes run concurrently, so a rank 1
  // that joined first could form the group while the junk's handshake had not yet been read (under load).
  for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
    pollfd fd{raw->native_handle(), POLLIN, 0};
    if (::poll(&fd, 1, 100) <= 0) continue;
    char byte[256];
    if (::recv(raw->native_handle(), byte, sizeof byte, 0) <= 0) break;  // closed by rank 0
  }
  auto t1 = net::connect_tcp(options(1, 2, address));
  rank0.join();
  REQUIRE(refused.size() == 1);
  CHECK_THAT(refused[0], Contains("bad magic"));
}

TEST_CASE("tcp: 40 silent and 3 trickling connections to rank 0 do not delay the rendezvous", "[tcp]") {
  // One handshake at a time, 2 s each, these would hold ranks 1 and 2 out far past the 3 s
  // rendezvous timeout; concurrent handshakes let them in beside the strays. 43 strays exceed the
  // 32 pending connections allowed, so the oldest are closed for the limit.
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();
  std::mutex mu;
  std::vector<std::string> refused;
  auto o0 = options(0, 3, "", 3s);
  o0.on_reject = [&](const std::string& why) {
    std::lock_guard lock(mu);
    refused.push_back(why);
  };
  boost::asio::io_context io;
  std::vector<std::unique_ptr<net::tcp::Socket>> silent;
  std::string ignored;
  const auto to = net::tcp::parse_loopback_address(address);
  for (int i = 0; i < 40; ++i) silent.push_back(net::tcp::connect_until(io, to, net::tcp::Clock::now() + 2s, ignored));
  std::atomic<bool> done{false};
  std::vector<std::thread> trickling;
  for (int i = 0; i < 3; ++i) {
    trickling.emplace_back([&] {
      boost::asio::io_context own_io;
      std::string unused;
      auto socket = net::tcp::connect_until(own_io, to, net::tcp::Clock::now() + 2s, unused);
      socket->non_blocking(false);
      const auto frame = flatten(wire::encode(wire::Hello{1, 3, 0, {}, {}, 0, "slow"}));
      for (std::size_t at = 0; at < frame.size() && !done; ++at) {
        boost::system::error_code ec;
        boost::asio::write(*socket, boost::asio::buffer(&frame[at], 1), ec);
        if (ec) return;  // rank 0 closed it
        std::this_thread::sleep_for(50ms);
      }
    });
  }
  std::unique_ptr<net::TcpTransport> t0, t2;
  std::thread rank0([&] { t0 = net::connect_tcp(o0, std::move(listener)); });
  std::thread rank2([&] { t2 = net::connect_tcp(options(2, 3, address, 3s)); });
  auto t1 = net::connect_tcp(options(1, 3, address, 3s));
  rank0.join();
  rank2.join();
  done = true;
  for (auto& t : trickling) t.join();
  REQUIRE(t0);
  REQUIRE(t2);
  {
    std::lock_guard lock(mu);
    CHECK(std::any_of(refused.begin(), refused.end(),
                      [](const std::string& why) { return why.find("closed unauthenticated: more than 32") != std::string::npos; }));
  }
  const auto sent = pattern(1000, 3);
  t2->send(0, 1, sent);
  t1->send(2, 1, sent);
  std::vector<std::byte> got(1000);
  t0->recv(2, 1, got);
  CHECK(got == sent);
  t2->recv(1, 1, got);
  CHECK(got == sent);
}

TEST_CASE("tcp: a malformed frame on an established link fails the receiving rank, naming the peer and the problem", "[tcp]") {
  // Rank 1 is played by hand: it completes the real handshake, then writes bytes of its choosing.
  auto goodbye = flatten(wire::encode(wire::Goodbye{}));
  auto garbage = std::vector<std::byte>(64, std::byte{0x5A});
  auto version = goodbye;
  version[4] = std::byte{2};
  auto undecodable = goodbye;
  undecodable[16] = std::byte{0x02};
  undecodable[20] = std::byte{0x07};
  // Preamble and a segment table whose payload segment claims 2^24 words = 128 MiB.
  const std::uint32_t words[] = {wire::kMagic, wire::kVersion, 1, 1, 1u << 24, 0};
  std::vector<std::byte> too_big(sizeof words);
  std::memcpy(too_big.data(), words, sizeof words);
  auto stray_hello = flatten(wire::encode(wire::Hello{}));
  const auto [bytes, reason] = GENERATE_COPY(table<std::vector<std::byte>, std::string>({
      {garbage, "bad magic 0x5a5a5a5a"},
      {version, "unsupported frame version 2"},
      {undecodable, "Cap'n Proto could not decode the frame"},
      {too_big, "exceeds the limit"},
      {stray_hello, "unexpected hello frame after the handshake"},
  }));
  CAPTURE(reason);

  HandWrittenPeer peer(options(0, 2, ""));
  auto& t0 = peer.t0;
  auto& raw = peer.raw;
  boost::asio::write(*raw, boost::asio::buffer(bytes.data(), bytes.size()));

  std::vector<std::byte> out(8);
  const auto start = std::chrono::steady_clock::now();
  try {
    t0->recv(1, 1, out);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(e.what(), Contains("rank 0: recv with rank 1 failed: rank 1 sent a malformed frame: ") && Contains(reason));
  }
  CHECK(std::chrono::steady_clock::now() - start < 3s);  // not the 5 s timeout
}

TEST_CASE("tcp: a peer that leaves because its group broke says why, and a recv waiting on it names the root failure", "[tcp]") {
  // Rank 1 is played by hand: it learnt that rank 2 died before rank 0 did, and leaves in order.
  HandWrittenPeer peer(options(0, 2, ""));
  const auto farewell = flatten(wire::encode(wire::Goodbye{"rank 2 (on host node02) is dead (its host stopped acknowledging)"}));
  boost::asio::write(*peer.raw, boost::asio::buffer(farewell.data(), farewell.size()));
  peer.raw.reset();  // the stream ends after the farewell, as a transport's close() ends it
  std::vector<std::byte> out(8);
  const auto start = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(peer.t0->recv(1, 1, out),
                    Contains("rank 1 closed its transport without sending it; it has left the collective because its group "
                             "broke: rank 2 (on host node02) is dead (its host stopped acknowledging)"));
  CHECK(std::chrono::steady_clock::now() - start < 3s);  // at once, not the 5 s timeout
}

TEST_CASE("tcp: a peer that stalls in the middle of a message times the recv out and closes the link", "[tcp]") {
  auto o0 = options(0, 2, "", 400ms);
  o0.rendezvous_timeout = 5s;
  HandWrittenPeer peer(o0);
  auto& t0 = peer.t0;
  auto& raw = peer.raw;
  // A well-formed 64 KiB chunk, cut off after its first 1000 payload bytes.
  const std::size_t n = 64 * 1024;
  auto frame = flatten(wire::encode_chunk(wire::ChunkHeader{3, 0, n, 0}, std::make_unique<std::uint64_t[]>(n / 8), n));
  std::vector<std::byte> out(n);
  std::thread stall([&] {
    std::this_thread::sleep_for(50ms);  // the recv is waiting by then
    boost::asio::write(*raw, boost::asio::buffer(frame.data(), frame.size() - n + 1000));
  });
  try {
    t0->recv(1, 3, out);
    FAIL("no timeout");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("no message from rank 1") && Contains("400 ms") &&
                             Contains("it stopped in the middle of the message; the link is now closed"));
  }
  stall.join();
  CHECK_THROWS_WITH(t0->recv(1, 3, out), Contains("rank 1 stalled in the middle of a message, so the group is broken"));
}

TEST_CASE("tcp: a message whose header arrived before its recv is read whole, in order, by the receiving rank's thread", "[tcp]") {
  // Each recv comes after its message's header has arrived and while its payload waits in the socket
  // (for at most 50 ms): the rank's own thread reads the payload (TcpTransport::Impl::take_payload).
  // 1 MiB + 8 is two chunks and 16 KiB + 4 not whole words: those go through the reader as before.
  RankGroup group(TransportKind::tcp, 2, 10s);
  const std::vector<std::size_t> sizes = {16u << 10, 1u << 20, (1u << 20) + 8, (16u << 10) + 4, 64u << 10, 1u << 20};
  require_no_errors(group.run([&](comm::Transport& t) {
    if (t.rank() == 1) {
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        t.send(0, 3, pattern(sizes[i], static_cast<int>(i)));
        std::byte ack{};
        t.recv(0, 4, std::span(&ack, 1));  // one message in flight at a time
      }
      return;
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      std::this_thread::sleep_for(15ms);  // the header is in, the payload waits in the socket
      std::vector<std::byte> got(sizes[i]);
      t.recv(1, 3, got);
      REQUIRE(got == pattern(sizes[i], static_cast<int>(i)));
      const std::byte ack{1};
      t.send(1, 4, std::span(&ack, 1));
    }
  }));
}

TEST_CASE("tcp: a peer that stalls or dies in a payload the receiving rank's thread reads fails the recv as it would the reader", "[tcp]") {
  const bool dies = GENERATE(false, true);
  CAPTURE(dies);
  auto o0 = options(0, 2, "", 400ms);
  o0.rendezvous_timeout = 5s;
  HandWrittenPeer peer(o0);
  auto& t0 = peer.t0;
  auto& raw = peer.raw;
  // A well-formed 64 KiB chunk, cut off after its first 1000 payload bytes, sent before the recv.
  const std::size_t n = 64 * 1024;
  auto frame = flatten(wire::encode_chunk(wire::ChunkHeader{3, 0, n, 0}, std::make_unique<std::uint64_t[]>(n / 8), n));
  boost::asio::write(*raw, boost::asio::buffer(frame.data(), frame.size() - n + 1000));
  std::thread closer;
  if (dies) {
    closer = std::thread([&] {
      std::this_thread::sleep_for(100ms);  // the recv is reading the payload by then
      raw->close();
    });
  }
  std::this_thread::sleep_for(15ms);  // the header is in, the payload waits for its recv
  std::vector<std::byte> out(n);
  try {
    t0->recv(1, 3, out);
    FAIL("no error");
  } catch (const Error& e) {
    if (dies) {
      CHECK_THAT(e.what(), Contains("rank 1 is dead, so the group is broken") && Contains("closed in the middle of a frame"));
    } else {
      CHECK_THAT(e.what(), Contains("no message from rank 1") && Contains("400 ms") &&
                               Contains("it stopped in the middle of the message; the link is now closed"));
    }
  }
  if (closer.joinable()) closer.join();
  if (!dies) CHECK_THROWS_WITH(t0->recv(1, 3, out), Contains("rank 1 stalled in the middle of a message, so the group is broken"));
}

TEST_CASE("tcp: ranks as separate processes allreduce, and a killed process fails the others", "[tcp]") {
  const bool crash = GENERATE(false, true);
  CAPTURE(crash);
  ProcessTransport tcp;
  tcp.connect = [](int r, int ranks, const std::string& address) { return net::connect_tcp(options(r, ranks, address, 5s)); };
  tcp.connect_rank0 = [](int ranks, net::TcpListener listener) {
    return net::connect_tcp(options(0, ranks, "", 5s), std::move(listener));
  };
  check_killed_rank_fails_the_others(tcp, crash);
}

TEST_CASE("tcp across hosts (Reach::network): every rank learns every rank's host name, and a name resolves", "[tcp]") {
  net::TcpListener listener("0.0.0.0:0", net::Reach::network);  // every interface, as a joined rank 0 listens
  const std::string address = "localhost:" + std::to_string(listener.port());  // a name, resolved
  const std::vector<std::string> names = {"node-a", "node-b", "node-b"};
  std::vector<std::vector<std::string>> learned(3);
  std::vector<std::string> errors(3);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      try {
        net::TcpOptions o{.rank = r, .size = 3, .address = address, .reach = net::Reach::network, .hostname = names[r],
                          .secret = "s", .timeout = std::chrono::seconds(10)};
        auto t = r == 0 ? net::connect_tcp(o, std::move(listener)) : net::connect_tcp(o);
        learned[r] = t->hostnames();
        t->send((r + 1) % 3, 1, pattern(100, r));
        std::vector<std::byte> got(100);
        t->recv((r + 2) % 3, 1, got);
        if (got != pattern(100, (r + 2) % 3)) errors[r] = "wrong bytes";
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 3; ++r) {
    CHECK(errors[r].empty());
    CHECK(learned[r] == names);
  }
  CHECK_THROWS_WITH(net::tcp::parse_endpoint("no-such-host.invalid:1", net::Reach::network),
                    Contains("does not resolve to an IPv4 address"));
  CHECK_THROWS_WITH(net::tcp::interface_address("no-such-if0"), Contains("comm.interface = \"no-such-if0\": this host has no "
                                                                         "interface of that name with an IPv4 address; it has: "));
  CHECK(net::tcp::parse_endpoint("10.77.0.3:7", net::Reach::network).text() == "10.77.0.3:7");
  CHECK(net::tcp::Endpoint{net::tcp::interface_address("lo"), 0}.host_text() == "127.0.0.1");
}
