// Owns the tests of the hierarchical allreduce (host arithmetic against literal lists; sums over fake host layouts with ranks as threads, in-process and over real sockets) and of RoutedTransport (per-peer routes; shared memory inside a reported host, TCP between).
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "net/routed/routed_transport.h"
#include "net/tcp/tcp_transport.h"
#include "runtime/comm/group_allreduce.h"
#include "runtime/comm/hierarchical.h"
#include "runtime/comm/ring.h"
#include "runtime/exact_sum.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"

using namespace troupe;
using namespace troupe::comm;
using namespace std::chrono_literals;
using troupe::testing::require_no_errors;
using troupe::testing::spawn_world;

namespace {

// Irregular positive floats over 2^-8 .. 2^8: their sum depends on the order of the additions.
float input(int rank, std::size_t i) {
  const std::uint64_t h = (static_cast<std::uint64_t>(rank + 1) * 0x9E3779B97F4A7C15ull) ^ (i * 0xC2B2AE3D27D4EB4Full);
  const std::uint64_t m = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
  return std::ldexp(1.0f + static_cast<float>((m >> 40) & 0xFFFFFF) / 16777216.0f, static_cast<int>((m >> 20) % 17) - 8);
}

// Small blocks, so that small buffers take many (and the one-block-ahead path), and members paced at the
// fewest blocks ahead (6), so that they wait for totals while the leader waits for their blocks.
HierarchicalOptions small_blocks() {
  HierarchicalOptions o;
  o.block_bytes = 64;
  o.member_bytes_ahead = 64;
  return o;
}

struct Sums {
  std::vector<std::vector<float>> floats;
  std::vector<std::vector<ExactSum>> exact;
};

// Every rank of `t`'s group allreduces inputs hierarchically over `host_of`: floats and exact sums.
void sum_on_rank(Transport& t, const std::vector<int>& host_of, std::size_t n, Sums& out, HierarchicalOptions o) {
  const auto r = static_cast<std::size_t>(t.rank());
  auto& f = out.floats[r];
  auto& e = out.exact[r];
  for (std::size_t i = 0; i < n; ++i) {
    f.push_back(input(t.rank(), i));
    e.push_back(static_cast<ExactSum>(t.rank() + 1) * static_cast<ExactSum>(i + 1) * (ExactSum{1} << 80));
  }
  allreduce_hierarchical<float>(t, f, host_of, o);
  allreduce_hierarchical<ExactSum>(t, e, host_of, o);
}

// The documented order: each host's ranks in rank order, then the hosts in the order of their first rank.
float ordered_sum(const std::vector<int>& host_of, std::size_t i) {
  float total = 0;
  const auto hosts = host_members(host_of);
  for (std::size_t h = 0; h < hosts.size(); ++h) {
    float partial = input(hosts[h][0], i);
    for (std::size_t m = 1; m < hosts[h].size(); ++m) partial += input(hosts[h][m], i);
    total = h == 0 ? partial : total + partial;
  }
  return total;
}

// Every rank's floats bitwise the documented order's sum; exact sums exact.
void check_sums(const Sums& s, const std::vector<int>& host_of, std::size_t n) {
  const int ranks = static_cast<int>(host_of.size());
  for (std::size_t i = 0; i < n; ++i) {
    const float want = ordered_sum(host_of, i);
    CHECK(std::memcmp(&s.floats[0][i], &want, sizeof(float)) == 0);
    CHECK(s.exact[0][i] == static_cast<ExactSum>(ranks * (ranks + 1) / 2) * static_cast<ExactSum>(i + 1) * (ExactSum{1} << 80));
    for (int r = 1; r < ranks; ++r) {
      const auto rr = static_cast<std::size_t>(r);
      CHECK(std::memcmp(&s.floats[rr][i], &s.floats[0][i], sizeof(float)) == 0);
      CHECK(s.exact[rr][i] == s.exact[0][i]);
    }
  }
}

Sums run_inproc(const std::vector<int>& host_of, std::size_t n, HierarchicalOptions o = small_blocks()) {
  const int ranks = static_cast<int>(host_of.size());
  net::InprocWorld world(ranks, 10s);
  Sums s{std::vector<std::vector<float>>(host_of.size()), std::vector<std::vector<ExactSum>>(host_of.size())};
  require_no_errors(spawn_world(world, [&](Transport& t) { sum_on_rank(t, host_of, n, s, o); }));
  return s;
}

// `hosts.size()` ranks as threads, rank r reporting host name hosts[r], joined by `connect` (one of
// connect_tcp, connect_routed over loopback); runs fn on each.
template <class Connect>
void run_named_hosts(const std::vector<std::string>& hosts, Connect connect, const std::function<void(Transport&)>& fn) {
  const int ranks = static_cast<int>(hosts.size());
  net::TcpListener listener("127.0.0.1:0");
  const std::string address = listener.address();  // before rank 0's thread takes the listener
  std::vector<std::exception_ptr> errors(hosts.size());
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        net::ShmOptions o;
        o.tcp.rank = r;
        o.tcp.size = ranks;
        o.tcp.address = address;
        o.tcp.hostname = hosts[static_cast<std::size_t>(r)];
        o.tcp.secret = "hierarchical-test-secret";
        o.tcp.timeout = 20s;
        o.slot_bytes = 256;  // small slots: messages wrap the rings and overflow to the flusher
        o.slots = 3;
        auto t = connect(o, r == 0 ? &listener : nullptr);
        fn(*t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  require_no_errors(errors);
}

std::unique_ptr<Transport> routed(const net::ShmOptions& o, net::TcpListener* listener) {
  if (listener) return net::connect_routed(o, std::move(*listener));
  return net::connect_routed(o);
}

std::unique_ptr<Transport> tcp(const net::ShmOptions& o, net::TcpListener* listener) {
  if (listener) return net::connect_tcp(o.tcp, std::move(*listener));
  return net::connect_tcp(o.tcp);
}

}  // namespace

TEST_CASE("hosts: indices in order of first appearance, members and leaders per host", "[hierarchical]") {
  CHECK(host_indices({"b", "b", "a", "c", "a"}) == std::vector<int>{0, 0, 1, 2, 1});
  CHECK(host_indices({}).empty());
  const std::vector<int> interleaved = {1, 0, 1, 0, 2};
  CHECK(host_members(interleaved) == std::vector<std::vector<int>>{{0, 2}, {1, 3}, {4}});
  CHECK(host_leaders(interleaved) == std::vector<int>{0, 1, 4});
  CHECK(host_members(std::vector<int>{0, 0, 1, 1}) == std::vector<std::vector<int>>{{0, 1}, {2, 3}});
  // Worth it: several hosts, some holding several ranks.
  CHECK(hierarchy_pays(std::vector<int>{0, 0, 1, 1}));
  CHECK(hierarchy_pays(std::vector<int>{0, 0, 0, 1}));
  CHECK_FALSE(hierarchy_pays(std::vector<int>{0, 0, 0}));  // one host
  CHECK_FALSE(hierarchy_pays(std::vector<int>{0, 1, 2}));  // one rank per host: the flat ring
  CHECK_FALSE(hierarchy_pays(std::vector<int>{}));
  // Default blocks: a sixteenth of the buffer, within [64 KiB, 4 MiB].
  CHECK(hierarchical_block_bytes(16u << 20) == 1u << 20);
  CHECK(hierarchical_block_bytes(1024) == 64u << 10);
  CHECK(hierarchical_block_bytes(std::size_t{1} << 30) == 4u << 20);
  // Bytes sent: a member its buffer; a leader (k - 1)·B inside its host plus 2(h - 1)/h·B across.
  CHECK(hierarchical_bytes_sent(std::vector<int>{0, 0, 1, 1}, 1, 1000) == 1000);
  CHECK(hierarchical_bytes_sent(std::vector<int>{0, 0, 1, 1}, 2, 1000) == 1000 + 1000);
  CHECK(hierarchical_bytes_sent(std::vector<int>{0, 0, 0, 1, 2}, 0, 900) == 2 * 900 + 2 * 2 * 900 / 3);
}

TEST_CASE("hierarchical blocks: ramps of small blocks at both ends around near-equal full ones", "[hierarchical]") {
  using B = std::vector<ChunkRange>;
  // 16-element blocks: ramp 1, 2, 4, 8 (15), so 30 + 16 elements are the least that ramp.
  CHECK(hierarchical_blocks(46, 16) == B{{0, 1}, {1, 2}, {3, 4}, {7, 8}, {15, 16}, {31, 8}, {39, 4}, {43, 2}, {45, 1}});
  CHECK(hierarchical_blocks(65, 16) == B{{0, 1}, {1, 2}, {3, 4}, {7, 8}, {15, 12}, {27, 12}, {39, 11}, {50, 8}, {58, 4},
                                         {62, 2}, {64, 1}});
  // Too small for the ramps: near-equal blocks of at most 16.
  CHECK(hierarchical_blocks(45, 16) == B{{0, 15}, {15, 15}, {30, 15}});
  CHECK(hierarchical_blocks(16, 16) == B{{0, 16}});
  CHECK(hierarchical_blocks(0, 16).empty());
  // Blocks of one element: the ramp's blocks are one element too.
  CHECK(hierarchical_blocks(3, 1) == B{{0, 1}, {1, 1}, {2, 1}});
  CHECK(hierarchical_blocks(9, 1).size() == 9);
  // Any size: the blocks tile the buffer in order, none empty, none over the block.
  for (std::size_t block : {1u, 3u, 16u, 1000u})
    for (std::size_t n = 0; n < 3 * block + 40; n += 1 + n / 7) {
      std::size_t next = 0;
      for (const ChunkRange& c : hierarchical_blocks(n, block)) {
        CHECK(c.offset == next);
        CHECK(c.length >= 1);
        CHECK(c.length <= block);
        next += c.length;
      }
      CHECK(next == n);
    }
}

TEST_CASE("hierarchical allreduce sums over fake host layouts, bitwise equal on every rank (in-process)", "[hierarchical]") {
  const std::vector<int> host_of = GENERATE(std::vector<int>{0, 0, 1, 1}, std::vector<int>{0, 0, 0, 1, 1, 1},
                                            std::vector<int>{0, 1, 0, 1, 2}, std::vector<int>{0, 0, 1},
                                            std::vector<int>{0, 0, 0}, std::vector<int>{0, 1, 2}, std::vector<int>{0});
  const std::size_t n = GENERATE(std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000});
  INFO("hosts " << host_of.size() << " ranks, n " << n);
  const Sums s = run_inproc(host_of, n);
  check_sums(s, host_of, n);
}

TEST_CASE("hierarchical allreduce is deterministic: the same bits on every run and for any block size", "[hierarchical]") {
  const std::vector<int> host_of = {0, 0, 1, 1, 1};
  const Sums a = run_inproc(host_of, 3001);
  const Sums b = run_inproc(host_of, 3001);
  CHECK(std::memcmp(a.floats[0].data(), b.floats[0].data(), 3001 * sizeof(float)) == 0);
  // Large blocks (one block) give exact sums the same value.
  const Sums one_block = run_inproc(host_of, 3001, HierarchicalOptions{});
  CHECK(one_block.exact[0] == a.exact[0]);
  // Each element's order does not depend on the blocks: ranges cut per block only move the owner.
  // (Floats: the order within a host and across hosts is per element, so even they agree.)
  CHECK(std::memcmp(one_block.floats[0].data(), a.floats[0].data(), 3001 * sizeof(float)) == 0);
}

TEST_CASE("hierarchical allreduce: only leaders send across hosts", "[hierarchical]") {
  // A transport that records who sent to whom (through an in-process world).
  struct Recording final : Transport {
    Recording(std::unique_ptr<Transport> t, std::vector<int> host_of, std::vector<int>& crossings)
        : inner(std::move(t)), hosts(std::move(host_of)), crossed(crossings) {}
    int rank() const override { return inner->rank(); }
    int size() const override { return inner->size(); }
    void send(int to, std::uint32_t tag, std::span<const std::byte> d) override {
      if (hosts[static_cast<std::size_t>(to)] != hosts[static_cast<std::size_t>(rank())]) crossed[static_cast<std::size_t>(rank())] += 1;
      inner->send(to, tag, d);
    }
    void recv(int from, std::uint32_t tag, std::span<std::byte> out) override { inner->recv(from, tag, out); }
    std::unique_ptr<Transport> inner;
    std::vector<int> hosts;
    std::vector<int>& crossed;
  };
  const std::vector<int> host_of = {0, 0, 1, 1, 0, 1};  // leaders 0 and 2
  net::InprocWorld world(6, 10s);
  std::vector<int> crossings(6);
  std::vector<std::vector<float>> data(6, std::vector<float>(100, 1.0f));
  std::vector<std::exception_ptr> errors(6);
  std::vector<std::thread> threads;
  for (int r = 0; r < 6; ++r)
    threads.emplace_back([&, r] {
      try {
        Recording t(world.transport(r), host_of, crossings);
        allreduce_hierarchical<float>(t, data[static_cast<std::size_t>(r)], host_of, small_blocks());
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        world.kill(r);
      }
    });
  for (auto& t : threads) t.join();
  require_no_errors(errors);
  CHECK(crossings[0] > 0);
  CHECK(crossings[2] > 0);
  for (int r : {1, 3, 4, 5}) CHECK(crossings[static_cast<std::size_t>(r)] == 0);
  for (const auto& d : data) CHECK(d == std::vector<float>(100, 6.0f));
}

TEST_CASE("GroupAllreduce takes the hierarchy when several hosts hold several ranks", "[hierarchical][comm][group]") {
  using Algo = GroupAllreduce::Algo;
  net::InprocWorld world(4, 5s);
  auto t = world.transport(0);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr, {0, 0, 1, 1}).float_algo() == Algo::hierarchical);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr, {0, 0, 1, 1}).exact_algo() == Algo::hierarchical);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr, {0, 1, 2, 3}).float_algo() == Algo::ring);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr, {0, 0, 0, 0}).exact_algo() == Algo::direct);
  CHECK(GroupAllreduce(*t, GradientExchange::alltoall, nullptr, {0, 0, 1, 1}).float_algo() == Algo::direct);  // as asked
  auto local = std::make_shared<LocalGroup>(4, 5s);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, local, {0, 0, 1, 1}).float_algo() == Algo::local);
}

TEST_CASE("RoutedTransport sends each peer's messages through the transport its route names", "[routed]") {
  net::InprocWorld near(3, 5s), far(3, 5s);
  // Rank 0 and 1 are near each other, rank 2 far from both.
  const std::vector<std::vector<bool>> near_peers = {{false, true, false}, {true, false, false}, {false, false, false}};
  std::vector<std::exception_ptr> errors(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      try {
        auto n = std::shared_ptr<Transport>(near.transport(r));
        auto f = std::shared_ptr<Transport>(far.transport(r));
        net::RoutedTransport t(*n, *f, near_peers[static_cast<std::size_t>(r)], std::make_shared<std::vector<std::shared_ptr<Transport>>>(
                                                                                    std::vector<std::shared_ptr<Transport>>{n, f}));
        std::byte b{static_cast<unsigned char>(r)};
        if (r == 0) {
          t.send(1, 7, std::span(&b, 1));  // near
          t.send(2, 7, std::span(&b, 1));  // far
          CHECK(t.near(1));
          CHECK_FALSE(t.near(2));
        } else {
          std::byte got{0xFF};
          (r == 1 ? *n : *f).recv(0, 7, std::span(&got, 1));  // straight off the route it must have taken
          CHECK(got == std::byte{0});
        }
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
        near.kill(r);
        far.kill(r);
      }
    });
  for (auto& t : threads) t.join();
  require_no_errors(errors);
}

TEST_CASE("connect_routed: shared memory between ranks that report one host, TCP between hosts", "[routed][shm][tcp]") {
  const std::vector<std::string> hosts = {"hostA", "hostA", "hostB", "hostB", "hostA"};
  run_named_hosts(hosts, routed, [&](Transport& t) {
    auto& r = dynamic_cast<net::RoutedTransport&>(t);
    CHECK(r.hostnames() == hosts);
    for (int p = 0; p < t.size(); ++p) CHECK(r.near(p) == (hosts[static_cast<std::size_t>(p)] == hosts[static_cast<std::size_t>(t.rank())]));
    // The Transport contract across both routes: a flat ring with small segments, then the hierarchy.
    std::vector<float> flat(777, static_cast<float>(t.rank() + 1));
    allreduce_ring<float>(t, flat, RingOptions{64});
    CHECK(flat == std::vector<float>(777, 15.0f));
  });
}

TEST_CASE("hierarchical allreduce over real sockets: routed (shared memory + TCP) and plain TCP, fake host names",
          "[hierarchical][routed][tcp]") {
  const bool use_routed = GENERATE(true, false);
  const std::vector<std::string> hosts = {"a", "a", "b", "b", "b"};
  const std::vector<int> host_of = host_indices(hosts);
  const std::size_t n = 2501;
  Sums s{std::vector<std::vector<float>>(hosts.size()), std::vector<std::vector<ExactSum>>(hosts.size())};
  HierarchicalOptions o;
  o.block_bytes = 1024;
  o.member_bytes_ahead = 8192;  // members paced, 8 blocks ahead
  const auto fn = [&](Transport& t) { sum_on_rank(t, host_of, n, s, o); };
  if (use_routed) run_named_hosts(hosts, routed, fn);
  else run_named_hosts(hosts, tcp, fn);
  check_sums(s, host_of, n);
  // The bits do not depend on the transport: the in-process run's are the same.
  const Sums inproc = run_inproc(host_of, n, o);
  CHECK(std::memcmp(inproc.floats[3].data(), s.floats[3].data(), n * sizeof(float)) == 0);
}
