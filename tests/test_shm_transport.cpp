// Owns the shared-memory transport's tests: ring arithmetic, the segment layout, point-to-point semantics (tags, FIFO, wrapping and overflowing rings), failures, and ranks as processes killed with SIGKILL leaving nothing in /dev/shm.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/shm/segment.h"
#include "net/shm/shm_transport.h"
#include "net/shm/slot_ring.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"
#include "tests/dev_shm.h"
#include "tests/byte_patterns.h"
#include "tests/dead_rank_checks.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"

using namespace troupe;
using namespace troupe::testing;
namespace shm = troupe::net::shm;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

net::ShmOptions options(int rank, int size, const std::string& address, std::chrono::milliseconds timeout) {
  net::ShmOptions o;
  o.tcp.rank = rank;
  o.tcp.size = size;
  o.tcp.address = address;
  o.tcp.secret = "shm-test-secret";
  o.tcp.timeout = timeout;
  o.tcp.rendezvous_timeout = 10s;
  o.slot_bytes = 4096;
  o.slots = 3;
  return o;
}

}  // namespace

TEST_CASE("shm: ring counters name slots, count free and used slots, and cut messages into slots", "[shm]") {
  CHECK(shm::slot_of(0, 4) == 0);
  CHECK(shm::slot_of(5, 4) == 1);
  CHECK(shm::slot_of((std::uint64_t{1} << 40) + 3, 4) == 3);
  CHECK(shm::used_slots(7, 7) == 0);
  CHECK(shm::used_slots(9, 7) == 2);
  CHECK(shm::free_slots(9, 7, 4) == 2);
  CHECK(shm::free_slots(11, 7, 4) == 0);  // full: head - tail == slots, told apart from empty without a spare slot
  CHECK(shm::valid_counters(11, 7, 4));
  CHECK_FALSE(shm::valid_counters(12, 7, 4));  // more than `slots` ahead
  CHECK_FALSE(shm::valid_counters(6, 7, 4));   // consumer ahead of producer
  CHECK(shm::slots_for(0, 64) == 1);  // an empty message is one empty slot
  CHECK(shm::slots_for(1, 64) == 1);
  CHECK(shm::slots_for(64, 64) == 1);
  CHECK(shm::slots_for(65, 64) == 2);
  CHECK(shm::slots_for(std::uint64_t{64} << 20, std::size_t{1} << 20) == 64);
  CHECK(shm::slot_payload(0, 0, 64) == 0);
  CHECK(shm::slot_payload(100, 0, 64) == 64);
  CHECK(shm::slot_payload(100, 64, 64) == 36);
  CHECK(shm::slot_payload(128, 64, 64) == 64);
}

TEST_CASE("shm: the segment layout keeps controls on their own cache lines and slots 64-aligned and disjoint", "[shm]") {
  const shm::SegmentLayout l{3, 4, 4096};
  CHECK(sizeof(shm::RingControl) % 64 == 0);
  CHECK(sizeof(shm::SlotHeader) == 64);
  CHECK(l.control_offset(0) >= sizeof(shm::SegmentHeader));
  CHECK(l.control_offset(1) - l.control_offset(0) == sizeof(shm::RingControl));
  CHECK(l.slot_offset(0, 0) >= l.control_offset(2) + sizeof(shm::RingControl));
  CHECK(l.slot_offset(0, 0) % 4096 == 0);
  CHECK(l.slot_offset(0, 1) - l.slot_offset(0, 0) == 64 + 4096);
  CHECK(l.slot_offset(1, 0) == l.slot_offset(0, 3) + l.slot_stride());
  CHECK(l.bytes() >= l.slot_offset(2, 3) + l.slot_stride());
  CHECK(l.bytes() % 4096 == 0);
}

TEST_CASE("shm: point-to-point sizes across slot boundaries, FIFO per tag, independent tags, sends to itself", "[shm]") {
  RankGroup group(TransportKind::shm, 3, 5s, 64);  // 3 slots of 64 bytes: everything wraps and overflows
  const std::vector<std::size_t> sizes = {0, 1, 63, 64, 65, 191, 192, 193, 1000, 70001};
  require_no_errors(group.run([&](comm::Transport& t) {
    const int r = t.rank();
    for (int to = 0; to < 3; ++to) {
      for (std::size_t s : sizes) t.send(to, 7, pattern(s, r * 100 + static_cast<int>(s)));
    }
    // Tag 9 is sent after tag 8 but received first: tag 8 waits in the inbox meanwhile.
    for (int to = 0; to < 3; ++to) {
      t.send(to, 8, pattern(5000, r + 1));
      t.send(to, 9, pattern(300, r + 2));
    }
    for (int from = 0; from < 3; ++from) {
      for (std::size_t s : sizes) {
        std::vector<std::byte> got(s);
        t.recv(from, 7, got);
        REQUIRE(got == pattern(s, from * 100 + static_cast<int>(s)));
      }
      std::vector<std::byte> nine(300), eight(5000);
      t.recv(from, 9, nine);
      t.recv(from, 8, eight);
      REQUIRE(nine == pattern(300, from + 2));
      REQUIRE(eight == pattern(5000, from + 1));
    }
  }));
}

TEST_CASE("shm: every rank sends 16 MiB before anyone receives, and send never waits for the receiver", "[shm]") {
  RankGroup group(TransportKind::shm, 3, 10s);
  require_no_errors(group.run([&](comm::Transport& t) {
    const std::size_t n = std::size_t{16} << 20;
    const int right = (t.rank() + 1) % t.size(), left = (t.rank() + t.size() - 1) % t.size();
    t.send(right, 1, pattern(n, t.rank()));
    std::vector<std::byte> got(n);
    t.recv(left, 1, got);
    REQUIRE(got == pattern(n, left));
  }));
}

TEST_CASE("shm: a lent send is written from the caller's memory as slots free, and release_lent frees that memory at once", "[shm]") {
  RankGroup group(TransportKind::shm, 2, 5s, 64);  // 3 slots of 64 bytes: all but 192 bytes wait for room
  std::atomic<int> phase{0};                      // the sender's progress, for the receiver to wait on
  const auto wait_for = [&](int p) {
    while (phase.load() < p) std::this_thread::yield();
  };
  require_no_errors(group.run([&](comm::Transport& t) {
    const std::size_t n = 5000;
    if (t.rank() == 0) {
      std::vector<std::byte> lent = pattern(n, 1);
      t.send_lent(1, 1, lent);
      // Nobody has received yet, so bytes past the ring are still read from here: the change shows.
      std::fill(lent.begin() + 1000, lent.end(), std::byte{0x5a});
      phase.store(1);
      std::vector<std::byte> second = pattern(n, 2);
      t.send_lent(1, 2, second);
      t.release_lent();  // copies what is still waiting: `second` may change from here on
      std::fill(second.begin(), second.end(), std::byte{0xa5});
      phase.store(2);
      t.release_lent();  // nothing lent is left: returns at once
      return;
    }
    wait_for(1);
    std::vector<std::byte> got(n), expected = pattern(n, 1);
    std::fill(expected.begin() + 1000, expected.end(), std::byte{0x5a});
    wait_for(2);
    t.recv(0, 1, got);
    REQUIRE(got == expected);
    t.recv(0, 2, got);
    REQUIRE(got == pattern(n, 2));
  }));
}

TEST_CASE("shm: a wrong size and a silent peer fail with errors naming the peer, and the ring stays in step", "[shm]") {
  RankGroup group(TransportKind::shm, 2, 300ms, 64);
  require_no_errors(group.run([&](comm::Transport& t) {
    if (t.rank() == 1) {
      t.send(0, 3, pattern(500, 1));
      t.send(0, 3, pattern(10, 2));
      return;
    }
    std::vector<std::byte> wrong(400), right(10), never(8);
    CHECK_THROWS_WITH(t.recv(1, 3, wrong), Contains("message from rank 1 with tag 3 has 500 bytes, expected 400"));
    t.recv(1, 3, right);  // the wrong-sized message was consumed whole
    CHECK(right == pattern(10, 2));
    CHECK_THROWS_WITH(t.recv(1, 4, never), Contains("no message from rank 1 (tag 4, 8 bytes expected) within 300 ms"));
  }));
}

TEST_CASE("shm: an aborted rank fails the others at once, naming it", "[shm]") {
  const int ranks = GENERATE(2, 4);
  CAPTURE(ranks);
  check_aborted_rank_fails_the_others(TransportKind::shm, ranks, 30s, 20s);  // 30 s: a failure must come from the abort
}

TEST_CASE("shm: a closed transport's messages are delivered, and a recv that needs more says it closed", "[shm]") {
  RankGroup group(TransportKind::shm, 2, 5s, 64);
  auto& t1 = group.transport(1);
  t1.send(0, 5, pattern(1000, 9));  // 16 slots of 64 bytes through a 3-slot ring: most of it waits in the flusher
  std::thread closer([&] { group.close(1); });
  std::vector<std::byte> got(1000);
  group.transport(0).recv(1, 5, got);
  CHECK(got == pattern(1000, 9));
  closer.join();
  CHECK_THROWS_WITH(group.transport(0).recv(1, 5, got), Contains("rank 1 closed its transport"));
}

TEST_CASE("shm: ranks as processes allreduce, and a SIGKILLed rank fails the others promptly and leaves nothing in /dev/shm", "[shm]") {
  const bool crash = GENERATE(false, true);
  CAPTURE(crash);
  const std::set<std::string> before = dev_shm();
  // 30 s timeouts: a failure within seconds is the dead peer seen, not the timeout.
  auto big_slots = [](int r, int ranks, const std::string& address) {
    net::ShmOptions o = options(r, ranks, address, 30s);
    o.slot_bytes = std::size_t{1} << 16;
    return o;
  };
  ProcessTransport shm;
  shm.connect = [=](int r, int ranks, const std::string& address) { return net::connect_shm(big_slots(r, ranks, address)); };
  shm.connect_rank0 = [=](int ranks, net::TcpListener listener) {
    return net::connect_shm(big_slots(0, ranks, ""), std::move(listener));
  };
  shm.send_before_kill = true;
  shm.fails_within = 20s;  // not the 30 s timeout
  check_killed_rank_fails_the_others(shm, crash);
  CHECK(dev_shm() == before);  // segments are memfds: no name to leave behind, whatever the exit
}

TEST_CASE("shm: bad slot settings are config errors before anything connects", "[shm]") {
  net::ShmOptions o = options(0, 2, "127.0.0.1:0", 1s);
  o.slot_bytes = 100;
  CHECK_THROWS_WITH(net::connect_shm(o), Contains("slot_bytes 100 must be a multiple of 64"));
  o.slot_bytes = 4096;
  o.slots = 1;
  CHECK_THROWS_WITH(net::connect_shm(o), Contains("slots 1 must lie in [2, 1024]"));
}
