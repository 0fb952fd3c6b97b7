// Owns the collective tests: chunk/step/segment arithmetic, every collective algorithm over both transports (ranks as threads), LocalGroup, their failure modes, and `troupe bench allreduce`.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "runtime/comm/all_to_all.h"
#include "runtime/comm/allreduce.h"
#include "runtime/comm/halving_doubling.h"
#include "runtime/comm/local_group.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"
#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

using namespace troupe;
using namespace troupe::comm;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;
using troupe::testing::io_error;
using troupe::testing::require_no_errors;
using troupe::testing::spawn_world;

namespace {

// Positive values spanning 2^-12 .. 2^12 with irregular mantissas, so the float sum of one element
// over ranks depends on the order of the additions.
float input(int rank, std::size_t i) {
  const std::uint64_t h = (static_cast<std::uint64_t>(rank) * 0x9E3779B97F4A7C15ull) ^ (i * 0xC2B2AE3D27D4EB4Full);
  const std::uint64_t m = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
  const float mantissa = 1.0f + static_cast<float>((m >> 40) & 0xFFFFFF) / 16777216.0f;
  const int exponent = static_cast<int>((m >> 20) % 25) - 12;
  return std::ldexp(mantissa, exponent);
}

std::vector<float> inputs(int rank, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = input(rank, i);
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Allreduces inputs(r, n) on `ranks` ranks; returns every rank's result.
std::vector<std::vector<float>> run_allreduce(int ranks, std::size_t n) {
  net::InprocWorld world(ranks, 5s);
  std::vector<std::vector<float>> results(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) results[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn_world(world, [&](Transport& t) { allreduce_ring(t, results[static_cast<std::size_t>(t.rank())]); }));
  return results;
}

}  // namespace

TEST_CASE("ring_chunk splits n into near-equal contiguous chunks, longer ones first", "[collectives]") {
  CHECK(ring_chunk(10, 3, 0) == ChunkRange{0, 4});
  CHECK(ring_chunk(10, 3, 1) == ChunkRange{4, 3});
  CHECK(ring_chunk(10, 3, 2) == ChunkRange{7, 3});
  CHECK(ring_chunk(2, 4, 0) == ChunkRange{0, 1});
  CHECK(ring_chunk(2, 4, 1) == ChunkRange{1, 1});
  CHECK(ring_chunk(2, 4, 2) == ChunkRange{2, 0});
  CHECK(ring_chunk(2, 4, 3) == ChunkRange{2, 0});
  CHECK(ring_chunk(0, 3, 1) == ChunkRange{0, 0});
  CHECK(ring_chunk(7, 1, 0) == ChunkRange{0, 7});
  CHECK_THROWS_AS(ring_chunk(7, 3, 3), InvariantError);

  // Property: for every split the chunks tile [0, n) in order.
  for (int ranks = 1; ranks <= 8; ++ranks) {
    for (std::size_t n : {0, 1, 7, 1000, 100000}) {
      std::size_t next = 0;
      for (int i = 0; i < ranks; ++i) {
        const ChunkRange c = ring_chunk(n, ranks, i);
        CHECK(c.offset == next);
        CHECK(c.length + 1 >= n / static_cast<std::size_t>(ranks) + (n % static_cast<std::size_t>(ranks) ? 1 : 0));
        next += c.length;
      }
      CHECK(next == n);
    }
  }
}

TEST_CASE("ring steps follow the documented formulas", "[collectives]") {
  // 4 ranks, rank 0: reduce-scatter sends chunks 0, 3, 2 right and receives 3, 2, 1 from the left.
  CHECK(reduce_scatter_step(4, 0, 0) == RingStep{1, 0, 3, 3});
  CHECK(reduce_scatter_step(4, 0, 1) == RingStep{1, 3, 3, 2});
  CHECK(reduce_scatter_step(4, 0, 2) == RingStep{1, 2, 3, 1});
  CHECK(ring_owned_chunk(4, 0) == 1);
  // All-gather starts by sending the owned chunk and receiving the left neighbour's.
  CHECK(all_gather_step(4, 0, 0) == RingStep{1, 1, 3, 0});
  CHECK(all_gather_step(4, 0, 1) == RingStep{1, 0, 3, 3});
  CHECK(all_gather_step(4, 0, 2) == RingStep{1, 3, 3, 2});
  CHECK(reduce_scatter_step(3, 2, 1) == RingStep{0, 1, 1, 0});
  CHECK(ring_owned_chunk(1, 0) == 0);

  // Property: at every step what a rank sends is what its right neighbour receives, and after
  // reduce-scatter each chunk has visited every rank exactly once.
  for (int n = 2; n <= 8; ++n) {
    for (int s = 0; s < n - 1; ++s) {
      for (int r = 0; r < n; ++r) {
        const RingStep mine = reduce_scatter_step(n, r, s);
        const RingStep theirs = reduce_scatter_step(n, mine.send_to, s);
        CHECK(theirs.recv_from == r);
        CHECK(theirs.recv_chunk == mine.send_chunk);
        const RingStep g = all_gather_step(n, r, s);
        CHECK(all_gather_step(n, g.send_to, s).recv_chunk == g.send_chunk);
      }
    }
    for (int r = 0; r < n; ++r) CHECK(reduce_scatter_step(n, r, n - 2).recv_chunk == ring_owned_chunk(n, r));
  }
}

TEST_CASE("allreduce_ring is deterministic and matches a double-precision sum", "[collectives]") {
  const int ranks = GENERATE(range(1, 9));
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000, 100000);
  CAPTURE(ranks, n);

  const auto first = run_allreduce(ranks, n);
  const auto second = run_allreduce(ranks, n);
  for (int r = 0; r < ranks; ++r) {
    CAPTURE(r);
    CHECK(bitwise_equal(first[static_cast<std::size_t>(r)], first[0]));   // equal on every rank
    CHECK(bitwise_equal(second[static_cast<std::size_t>(r)], first[0]));  // and across runs
  }

  std::size_t order_sensitive = 0;  // elements whose float sum in rank order differs from reverse order
  std::size_t far = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double reference = 0.0;
    float forward = 0.0f, backward = 0.0f;
    for (int r = 0; r < ranks; ++r) {
      reference += input(r, i);
      forward += input(r, i);
      backward += input(ranks - 1 - r, i);
    }
    if (forward != backward) ++order_sensitive;
    if (std::abs(first[0][i] - reference) > 1e-5 * std::abs(reference)) ++far;
  }
  CHECK(far == 0);
  if (ranks >= 3 && n >= 1000) CHECK(order_sensitive > 0);  // the inputs give bitwise checks teeth
}

TEST_CASE("reduce_scatter_ring leaves each rank its owned chunk summed, all_gather_ring spreads them", "[collectives]") {
  const int ranks = GENERATE(1, 2, 3, 5, 8);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 7, 1000);
  CAPTURE(ranks, n);
  net::InprocWorld world(ranks, 5s);

  std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn_world(world, [&](Transport& t) { reduce_scatter_ring(t, data[static_cast<std::size_t>(t.rank())]); }));
  const auto full = run_allreduce(ranks, n);
  for (int r = 0; r < ranks; ++r) {
    const ChunkRange c = ring_chunk(n, ranks, ring_owned_chunk(ranks, r));
    for (std::size_t i = c.offset; i < c.offset + c.length; ++i) {
      CAPTURE(r, i);
      REQUIRE(data[static_cast<std::size_t>(r)][i] == full[0][i]);  // bitwise the allreduce's sum
    }
  }

  // All-gather: rank r writes r + 0.5 into its owned chunk and garbage elsewhere.
  for (int r = 0; r < ranks; ++r) {
    auto& v = data[static_cast<std::size_t>(r)];
    std::fill(v.begin(), v.end(), -1.0f);
    const ChunkRange c = ring_chunk(n, ranks, ring_owned_chunk(ranks, r));
    std::fill_n(v.begin() + static_cast<std::ptrdiff_t>(c.offset), c.length, static_cast<float>(r) + 0.5f);
  }
  require_no_errors(spawn_world(world, [&](Transport& t) { all_gather_ring(t, data[static_cast<std::size_t>(t.rank())]); }));
  std::vector<float> expected(n);
  for (int r = 0; r < ranks; ++r) {
    const ChunkRange c = ring_chunk(n, ranks, ring_owned_chunk(ranks, r));
    std::fill_n(expected.begin() + static_cast<std::ptrdiff_t>(c.offset), c.length, static_cast<float>(r) + 0.5f);
  }
  for (int r = 0; r < ranks; ++r) CHECK(bitwise_equal(data[static_cast<std::size_t>(r)], expected));
}

TEST_CASE("broadcast copies the root's buffer to every rank", "[collectives]") {
  const int ranks = GENERATE(1, 2, 3, 8);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 100000);
  for (int root : {0, ranks - 1, ranks / 2}) {
    CAPTURE(ranks, n, root);
    net::InprocWorld world(ranks, 5s);
    std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
    require_no_errors(spawn_world(world, [&](Transport& t) { broadcast(t, data[static_cast<std::size_t>(t.rank())], root); }));
    const auto expected = inputs(root, n);
    for (int r = 0; r < ranks; ++r) CHECK(bitwise_equal(data[static_cast<std::size_t>(r)], expected));
  }
}

TEST_CASE("back-to-back collectives on one transport do not mix their messages", "[collectives]") {
  net::InprocWorld world(5, 5s);
  const std::size_t n = 1003;
  std::vector<std::vector<float>> data(5);
  for (int r = 0; r < 5; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn_world(world, [&](Transport& t) {
    auto& v = data[static_cast<std::size_t>(t.rank())];
    allreduce_ring(t, v);
    broadcast(t, v, 3);
    allreduce_ring(t, v);
  }));
  for (int r = 1; r < 5; ++r) CHECK(bitwise_equal(data[static_cast<std::size_t>(r)], data[0]));
}

TEST_CASE("inproc recv reports a wrong size and a timeout, naming the peer", "[collectives]") {
  net::InprocWorld world(2, 200ms);
  auto a = world.transport(0);
  auto b = world.transport(1);
  const std::vector<std::byte> three(3);
  std::vector<std::byte> four(4);
  a->send(1, 7, three);
  try {
    b->recv(0, 7, four);
    FAIL("no size error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(e.what(), Contains("from rank 0") && Contains("tag 7") && Contains("3 bytes") && Contains("expected 4 bytes"));
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    b->recv(0, 7, four);
    FAIL("no timeout");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("no message from rank 0") && Contains("200 ms"));
  }
  CHECK(std::chrono::steady_clock::now() - start < 2s);
}

TEST_CASE("a rank sending a wrong-sized buffer fails its receiver, and the others time out", "[collectives]") {
  // 4 ranks, 1000 floats: every chunk is 250 floats (1000 bytes). Rank 2 sends 3 floats instead of
  // running the allreduce; rank 3 gets the size error, ranks 0 and 1 wait for stalled peers and time out.
  const auto timeout = 500ms;
  net::InprocWorld world(4, timeout);
  std::vector<std::vector<float>> data(4, std::vector<float>(1000, 1.0f));
  const auto start = std::chrono::steady_clock::now();
  const auto errors = spawn_world(world, [&](Transport& t) {
    if (t.rank() == 2) {
      const std::vector<float> wrong(3, 1.0f);
      t.send(3, kReduceScatterTag, std::as_bytes(std::span<const float>(wrong)));
      return;
    }
    allreduce_ring(t, data[static_cast<std::size_t>(t.rank())]);
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;

  CHECK_FALSE(errors[2]);
  CHECK_THAT(io_error(errors[3]), Contains("rank 3: message from rank 2") && Contains("has 12 bytes, expected 1000 bytes"));
  CHECK_THAT(io_error(errors[0]), Contains("no message from rank 3"));
  CHECK_THAT(io_error(errors[1]), Contains("no message from rank 0"));
  CHECK(elapsed < 3 * timeout);
}

TEST_CASE("a killed rank makes every other rank fail at once, naming it", "[collectives]") {
  const int ranks = GENERATE(2, 3, 8);
  const int victim = ranks - 2;
  CAPTURE(ranks, victim);
  net::InprocWorld world(ranks, 10s);  // long: passing must not depend on the timeout
  std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks), std::vector<float>(1000, 1.0f));
  std::thread killer([&] {
    std::this_thread::sleep_for(50ms);
    world.kill(victim);
  });
  const auto start = std::chrono::steady_clock::now();
  const auto errors = spawn_world(world, [&](Transport& t) {
    if (t.rank() == victim) {
      // Stands in for a crashed process: never sends, and waits on a message nobody sends.
      std::vector<std::byte> never(1);
      t.recv((t.rank() + 1) % ranks, 0xDEAD, never);
      return;
    }
    allreduce_ring(t, data[static_cast<std::size_t>(t.rank())]);
  });
  killer.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;

  for (int r = 0; r < ranks; ++r) {
    CAPTURE(r);
    CHECK_THAT(io_error(errors[static_cast<std::size_t>(r)]),
               Contains("rank " + std::to_string(victim) + " is dead"));
  }
  CHECK(elapsed < 2s);  // at once, not after the 10 s timeout
}

TEST_CASE("ring collectives are generic: double, int64 and wrapping __int128 sums", "[collectives]") {
  const int ranks = GENERATE(1, 3, 4);
  const std::size_t n = 1001;
  CAPTURE(ranks);
  net::InprocWorld world(ranks, 5s);
  std::vector<std::vector<double>> d(static_cast<std::size_t>(ranks));
  std::vector<std::vector<std::int64_t>> i64(static_cast<std::size_t>(ranks));
  std::vector<std::vector<__int128>> i128(static_cast<std::size_t>(ranks));
  const __int128 big = static_cast<__int128>(static_cast<unsigned __int128>(1) << 126);  // 4 of these wrap
  for (int r = 0; r < ranks; ++r) {
    for (std::size_t i = 0; i < n; ++i) {
      d[static_cast<std::size_t>(r)].push_back(static_cast<double>(input(r, i)));
      i64[static_cast<std::size_t>(r)].push_back(static_cast<std::int64_t>(i) * 1000 - r * 7);
      i128[static_cast<std::size_t>(r)].push_back(big + static_cast<__int128>(i) - r);
    }
  }
  require_no_errors(spawn_world(world, [&](Transport& t) {
    const auto r = static_cast<std::size_t>(t.rank());
    allreduce_ring<double>(t, d[r]);
    allreduce_ring<std::int64_t>(t, i64[r]);
    allreduce_ring<__int128>(t, i128[r]);
  }));
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i);
    std::int64_t s64 = 0;
    unsigned __int128 s128 = 0;
    double sd = 0.0;
    for (int r = 0; r < ranks; ++r) {
      s64 += static_cast<std::int64_t>(i) * 1000 - r * 7;
      s128 += static_cast<unsigned __int128>(big + static_cast<__int128>(i) - r);
      sd += static_cast<double>(input(r, i));
    }
    for (int r = 0; r < ranks; ++r) {
      REQUIRE(i64[static_cast<std::size_t>(r)][i] == s64);
      REQUIRE(i128[static_cast<std::size_t>(r)][i] == static_cast<__int128>(s128));
      REQUIRE(d[static_cast<std::size_t>(r)][i] == d[0][i]);
    }
    REQUIRE(std::abs(d[0][i] - sd) <= 1e-12 * std::abs(sd));
  }
}

// ---------------------------------------------------------------------------------------------------
// Every algorithm (ring with segments, halving-doubling, allreduce's choice, all-to-all) through one
// spawn helper that takes the transport kind, so the same cases run over any transport.

namespace {

// Runs fn(transport) on one thread per rank of a fresh group of either transport (tests/rank_threads.h);
// a rank that throws is killed, as a crashed process would be, so its peers fail at once.
using troupe::testing::spawn_ranks;
using troupe::testing::TransportKind;

struct Algo {
  const char* name;
  std::function<void(Transport&, std::span<float>)> run;
};

// The allreduce variants under test; segments of 12 bytes push every non-empty chunk through the
// multi-segment path (4 KiB for the large size, to keep the message count sane).
std::vector<Algo> allreduce_algos(std::size_t n) {
  const RingOptions small{n > 10000 ? std::size_t{4096} : std::size_t{12}};
  return {
      {"ring", [](Transport& t, std::span<float> d) { allreduce_ring(t, d); }},
      {"ring, small segments", [small](Transport& t, std::span<float> d) { allreduce_ring(t, d, small); }},
      {"halving-doubling", [](Transport& t, std::span<float> d) { allreduce_halving_doubling<float>(t, d); }},
      {"auto", [](Transport& t, std::span<float> d) { allreduce(t, d); }},
      // Over shm with a window: the shared-memory allreduce (elsewhere the ring), with the ring's bits.
      {"shared memory", [](Transport& t, std::span<float> d) {
         allreduce(t, d, t.shared_window() ? AllreduceAlgo::kSharedMemory : AllreduceAlgo::kRing);
       }},
  };
}

std::vector<std::vector<float>> run_algo(TransportKind kind, const Algo& algo, int ranks, std::size_t n) {
  std::vector<std::vector<float>> results(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) results[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn_ranks(kind, ranks, 5s, [&](Transport& t) { algo.run(t, results[static_cast<std::size_t>(t.rank())]); }));
  return results;
}

}  // namespace

TEST_CASE("ring segments tile a chunk", "[collectives]") {
  CHECK(ring_segment_count(0, 4) == 0);
  CHECK(ring_segment_count(1, 4) == 1);
  CHECK(ring_segment_count(8, 4) == 2);
  CHECK(ring_segment_count(9, 4) == 3);
  CHECK(ring_segment(ChunkRange{10, 9}, 4, 0) == ChunkRange{10, 4});
  CHECK(ring_segment(ChunkRange{10, 9}, 4, 2) == ChunkRange{18, 1});
  CHECK_THROWS_AS(ring_segment(ChunkRange{10, 9}, 4, 3), InvariantError);
  CHECK_THROWS_AS(ring_segment_count(3, 0), InvariantError);
}

TEST_CASE("halving-doubling folds the first 2*(n - p) ranks pairwise into virtual ranks", "[collectives]") {
  CHECK(hd_power(1) == 1);
  CHECK(hd_power(6) == 4);
  CHECK(hd_power(8) == 8);
  // 6 ranks: p = 4, rem = 2; 0 folds into 1, 2 into 3.
  const std::vector<int> virt6 = {-1, 0, -1, 1, 2, 3};
  for (int r = 0; r < 6; ++r) CHECK(hd_virtual_rank(6, r) == virt6[static_cast<std::size_t>(r)]);
  CHECK(hd_real_rank(6, 0) == 1);
  CHECK(hd_real_rank(6, 1) == 3);
  CHECK(hd_real_rank(6, 3) == 5);
  // Property: virtual ranks are a bijection onto [0, p) and real_rank inverts them.
  for (int n = 1; n <= 8; ++n) {
    int participants = 0;
    for (int r = 0; r < n; ++r) {
      const int v = hd_virtual_rank(n, r);
      if (v < 0) continue;
      ++participants;
      CHECK(hd_real_rank(n, v) == r);
    }
    CHECK(participants == hd_power(n));
  }
}

TEST_CASE("every allreduce algorithm is bitwise equal on every rank and across runs, and near the exact sum", "[collectives]") {
  const int ranks = GENERATE(range(1, 9));
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000, 100000);
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  CAPTURE(kind);
  std::vector<float> ring_result;
  for (const Algo& algo : allreduce_algos(n)) {
    CAPTURE(ranks, n, algo.name);
    const auto first = run_algo(kind, algo, ranks, n);
    const auto second = run_algo(kind, algo, ranks, n);
    for (int r = 0; r < ranks; ++r) {
      CAPTURE(r);
      REQUIRE(bitwise_equal(first[static_cast<std::size_t>(r)], first[0]));
      REQUIRE(bitwise_equal(second[static_cast<std::size_t>(r)], first[0]));
    }
    std::size_t far = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double reference = 0.0;
      for (int r = 0; r < ranks; ++r) reference += input(r, i);
      if (std::abs(first[0][i] - reference) > 1e-5 * std::abs(reference)) ++far;
    }
    CHECK(far == 0);
    // Segments change the messages, not the order of the additions.
    if (std::string(algo.name) == "ring") ring_result = first[0];
    if (std::string(algo.name) == "ring, small segments") CHECK(bitwise_equal(first[0], ring_result));
    if (std::string(algo.name) == "shared memory") CHECK(bitwise_equal(first[0], ring_result));
  }
}

TEST_CASE("segmented reduce-scatter, all-gather and broadcast match the unsegmented ones", "[collectives]") {
  const int ranks = GENERATE(1, 2, 3, 5, 8);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000);
  const RingOptions tiny{8};  // two floats per message
  CAPTURE(ranks, n);
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  CAPTURE(kind);
  auto run = [&](const std::function<void(Transport&, std::span<float>)>& fn) {
    std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
    require_no_errors(spawn_ranks(kind, ranks, 5s, [&](Transport& t) { fn(t, data[static_cast<std::size_t>(t.rank())]); }));
    return data;
  };
  const auto rs = run([](Transport& t, std::span<float> d) { reduce_scatter_ring(t, d); });
  const auto rs_tiny = run([&](Transport& t, std::span<float> d) { reduce_scatter_ring(t, d, tiny); });
  const auto ag_tiny = run([&](Transport& t, std::span<float> d) {
    reduce_scatter_ring(t, d, tiny);
    all_gather_ring(t, d, tiny);
  });
  const auto full = run([](Transport& t, std::span<float> d) { allreduce_ring(t, d); });
  const int root = ranks / 2;
  const auto bc = run([&](Transport& t, std::span<float> d) { broadcast(t, d, root, tiny); });
  for (int r = 0; r < ranks; ++r) {
    CAPTURE(r);
    const ChunkRange c = ring_chunk(n, ranks, ring_owned_chunk(ranks, r));
    for (std::size_t i = c.offset; i < c.offset + c.length; ++i) {
      REQUIRE(rs_tiny[static_cast<std::size_t>(r)][i] == rs[static_cast<std::size_t>(r)][i]);
      REQUIRE(rs_tiny[static_cast<std::size_t>(r)][i] == full[0][i]);
    }
    CHECK(bitwise_equal(ag_tiny[static_cast<std::size_t>(r)], full[0]));
    CHECK(bitwise_equal(bc[static_cast<std::size_t>(r)], inputs(root, n)));
  }
}

TEST_CASE("halving-doubling and the ring give the same integer sums, wrapping, for every rank count", "[collectives]") {
  const int ranks = GENERATE(range(1, 9));
  const std::size_t n = 37;
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  CAPTURE(ranks, kind);
  // Inputs near the top of the range, so sums wrap; formed in unsigned arithmetic (signed overflow is
  // undefined, the wrapping the collectives implement is not).
  const unsigned __int128 big = static_cast<unsigned __int128>(3) << 125;
  auto input = [&](int r, std::size_t i) {
    return static_cast<__int128>(big * (i % 3) + static_cast<unsigned __int128>(r * 1000) + i);
  };
  std::vector<std::vector<__int128>> hd(static_cast<std::size_t>(ranks)), ring(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r)
    for (std::size_t i = 0; i < n; ++i) {
      hd[static_cast<std::size_t>(r)].push_back(input(r, i));
      ring[static_cast<std::size_t>(r)].push_back(hd[static_cast<std::size_t>(r)].back());
    }
  require_no_errors(spawn_ranks(kind, ranks, 5s, [&](Transport& t) {
    allreduce<__int128>(t, hd[static_cast<std::size_t>(t.rank())], AllreduceAlgo::kHalvingDoubling);
    allreduce<__int128>(t, ring[static_cast<std::size_t>(t.rank())], AllreduceAlgo::kRing, RingOptions{16});
  }));
  for (std::size_t i = 0; i < n; ++i) {
    unsigned __int128 sum = 0;
    for (int r = 0; r < ranks; ++r)
      sum += static_cast<unsigned __int128>(input(r, i));
    for (int r = 0; r < ranks; ++r) {
      REQUIRE(hd[static_cast<std::size_t>(r)][i] == static_cast<__int128>(sum));
      REQUIRE(ring[static_cast<std::size_t>(r)][i] == static_cast<__int128>(sum));
    }
  }
}

TEST_CASE("allreduce picks halving-doubling below the crossover and the ring from it on", "[collectives]") {
  CHECK(choose_allreduce(0, 4) == AllreduceAlgo::kHalvingDoubling);
  CHECK(choose_allreduce(kAllreduceCrossoverBytes - 1, 8) == AllreduceAlgo::kHalvingDoubling);
  CHECK(choose_allreduce(kAllreduceCrossoverBytes, 8) == AllreduceAlgo::kRing);
  CHECK(choose_allreduce(64, 2) == AllreduceAlgo::kRing);
  CHECK(parse_allreduce_algo("hd") == AllreduceAlgo::kHalvingDoubling);
  CHECK(allreduce_algo_name(AllreduceAlgo::kRing) == "ring");
  CHECK_THROWS_WITH(parse_allreduce_algo("tree"), Contains("auto, ring, hd (halving-doubling) or shm"));
}

TEST_CASE("all_to_all delivers block s of rank r's send buffer to block r of rank s's receive buffer", "[collectives]") {
  const int ranks = GENERATE(range(1, 9));
  const std::size_t block = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000);
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  CAPTURE(ranks, block, kind);
  const auto total = static_cast<std::size_t>(ranks) * block;
  std::vector<std::vector<float>> recv(static_cast<std::size_t>(ranks), std::vector<float>(total, -1.0f));
  require_no_errors(spawn_ranks(kind, ranks, 5s, [&](Transport& t) {
    const std::vector<float> send = inputs(t.rank(), total);
    all_to_all<float>(t, send, recv[static_cast<std::size_t>(t.rank())]);
  }));
  for (int r = 0; r < ranks; ++r)
    for (int s = 0; s < ranks; ++s)
      for (std::size_t i = 0; i < block; ++i) {
        CAPTURE(r, s, i);
        // rank r's block s comes from rank s's block r
        REQUIRE(recv[static_cast<std::size_t>(r)][static_cast<std::size_t>(s) * block + i] ==
                input(s, static_cast<std::size_t>(r) * block + i));
      }
}

TEST_CASE("all_to_all_v moves variable-sized blocks and rejects counts that do not add up", "[collectives]") {
  const int ranks = GENERATE(1, 2, 3, 5, 8);
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  CAPTURE(ranks, kind);
  // Rank r sends (r + 2s) mod 4 elements to rank s, each element 100·r + s.
  auto count = [](int from, int to) { return static_cast<std::size_t>((from + 2 * to) % 4); };
  std::vector<std::vector<std::int64_t>> got(static_cast<std::size_t>(ranks));
  require_no_errors(spawn_ranks(kind, ranks, 5s, [&](Transport& t) {
    const int me = t.rank();
    std::vector<std::size_t> sc, rc;
    std::vector<std::int64_t> send;
    for (int s = 0; s < ranks; ++s) {
      sc.push_back(count(me, s));
      rc.push_back(count(s, me));
      send.insert(send.end(), count(me, s), 100 * me + s);
    }
    auto& recv = got[static_cast<std::size_t>(me)];
    recv.assign(std::accumulate(rc.begin(), rc.end(), std::size_t{0}), -1);
    all_to_all_v<std::int64_t>(t, send, sc, recv, rc);
  }));
  for (int r = 0; r < ranks; ++r) {
    std::vector<std::int64_t> expected;
    for (int s = 0; s < ranks; ++s) expected.insert(expected.end(), count(s, r), 100 * s + r);
    CHECK(got[static_cast<std::size_t>(r)] == expected);
  }

  net::InprocWorld world(2, 1s);
  auto t = world.transport(0);
  std::vector<float> buf(5);
  CHECK_THROWS_WITH(all_to_all<float>(*t, buf, buf), Contains("same multiple of the 2 ranks"));
  const std::vector<std::size_t> counts{2, 2};
  CHECK_THROWS_WITH(all_to_all_v<float>(*t, buf, counts, buf, counts), Contains("add up to 4"));
}

TEST_CASE("a rank with a wrong-sized buffer makes every rank of every algorithm fail with a clear error", "[collectives]") {
  const int ranks = GENERATE(2, 3, 5, 8);
  const std::string op = GENERATE(as<std::string>{}, "ring", "halving-doubling", "all_to_all");
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  const int culprit = ranks / 2;
  CAPTURE(ranks, op, kind, culprit);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = spawn_ranks(kind, ranks, 2s, [&](Transport& t) {
    const std::size_t n = t.rank() == culprit ? 1680 : 840;  // 840: a multiple of every rank count
    std::vector<float> data = inputs(t.rank(), n), out(n);
    if (op == "ring") allreduce_ring(t, data, RingOptions{64});
    else if (op == "halving-doubling") allreduce_halving_doubling<float>(t, data);
    else all_to_all<float>(t, data, out);
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  int size_errors = 0;
  for (int r = 0; r < ranks; ++r) {
    CAPTURE(r);
    const std::string message = io_error(errors[static_cast<std::size_t>(r)]);
    if (message.find("the ranks disagree on the buffer size") != std::string::npos) ++size_errors;
    else CHECK_THAT(message, Contains("is dead") || Contains("no message from rank"));
  }
  CHECK(size_errors >= 1);  // someone names the mismatch; everyone else learns the group broke
  CHECK(elapsed < 10s);     // within the 2 s timeout (plus slack for a loaded machine), never a hang
}

TEST_CASE("a rank that dies mid-collective makes every rank of every algorithm fail at once, naming it", "[collectives]") {
  const int ranks = GENERATE(2, 3, 6);
  const std::string op = GENERATE(as<std::string>{}, "ring", "halving-doubling", "all_to_all");
  const TransportKind kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  const int victim = ranks - 1;
  CAPTURE(ranks, op, kind);
  const auto start = std::chrono::steady_clock::now();
  const auto errors = spawn_ranks(kind, ranks, 30s, [&](Transport& t) {
    std::vector<float> data = inputs(t.rank(), 8400), out(8400);  // 8400: a multiple of every rank count
    // The victim takes part in a first collective, then crashes during the second one.
    for (int round = 0; round < 2; ++round) {
      if (round == 1 && t.rank() == victim) {
        std::this_thread::sleep_for(50ms);
        throw Error(ErrorKind::kIo, "rank crashed");  // spawn_ranks kills it, as a dying process
      }
      if (op == "ring") allreduce_ring(t, data, RingOptions{256});
      else if (op == "halving-doubling") allreduce_halving_doubling<float>(t, data);
      else all_to_all<float>(t, data, out);
    }
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  int naming_victim = 0;
  for (int r = 0; r < ranks; ++r) {
    if (r == victim) continue;
    CAPTURE(r);
    // A failed rank dies too (spawn_ranks), so a rank may learn of the break from a neighbour's death.
    const std::string message = io_error(errors[static_cast<std::size_t>(r)]);
    CHECK_THAT(message, Contains("is dead, so the group is broken"));
    if (message.find("rank " + std::to_string(victim) + " is dead") != std::string::npos) ++naming_victim;
  }
  CHECK(naming_victim >= 1);
  CHECK(elapsed < 10s);  // at once, not after the 30 s timeout
}

TEST_CASE("LocalGroup allreduce by reference is bitwise equal everywhere, across runs, in rank order", "[collectives]") {
  const int ranks = GENERATE(range(1, 9));
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 1, 7, 1000, 100000);
  CAPTURE(ranks, n);
  auto run = [&] {
    comm::LocalGroup group(ranks, 5s);
    std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks; ++r)
      threads.emplace_back([&, r] {
        group.allreduce<float>(r, data[static_cast<std::size_t>(r)]);
        group.allreduce<float>(r, std::span<float>(data[static_cast<std::size_t>(r)]).first(n / 2));  // back to back
      });
    for (auto& t : threads) t.join();
    return data;
  };
  const auto first = run(), second = run();
  for (int r = 0; r < ranks; ++r) {
    CAPTURE(r);
    REQUIRE(bitwise_equal(first[static_cast<std::size_t>(r)], first[0]));
    REQUIRE(bitwise_equal(second[static_cast<std::size_t>(r)], first[0]));
  }
  for (std::size_t i = 0; i < n; ++i) {
    float in_rank_order = input(0, i);  // every element: ((x_0 + x_1) + x_2) + ...
    for (int r = 1; r < ranks; ++r) in_rank_order += input(r, i);
    if (i >= n / 2) REQUIRE(first[0][i] == in_rank_order);  // the first half went through a second allreduce
  }
}

TEST_CASE("LocalGroup reports a wrong length on every rank, and a dead or missing rank", "[collectives]") {
  {
    comm::LocalGroup group(3, 5s);
    std::vector<std::string> messages(3);
    std::vector<std::thread> threads;
    for (int r = 0; r < 3; ++r)
      threads.emplace_back([&, r] {
        std::vector<double> data(r == 1 ? 11 : 10, 1.0);
        try {
          group.allreduce<double>(r, data);
        } catch (const Error& e) {
          messages[static_cast<std::size_t>(r)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (const auto& m : messages) CHECK_THAT(m, Contains("rank 1 passed 11 elements") && Contains("disagree on the buffer size"));
  }
  {
    comm::LocalGroup group(3, 300ms);
    std::vector<std::string> messages(3);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r)  // rank 2 never comes
      threads.emplace_back([&, r] {
        std::vector<float> data(10, 1.0f);
        try {
          group.allreduce<float>(r, data);
        } catch (const Error& e) {
          messages[static_cast<std::size_t>(r)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    CHECK_THAT(messages[0], Contains("rank(s) 2 did not arrive within 300 ms"));
    CHECK_THAT(messages[1], Contains("rank(s) 2 did not arrive within 300 ms"));
  }
  {
    comm::LocalGroup group(4, 30s);
    std::vector<std::string> messages(4);
    std::vector<std::thread> threads;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < 4; ++r)
      threads.emplace_back([&, r] {
        std::vector<float> data(1000, 1.0f);
        try {
          group.allreduce<float>(r, data);
          if (r == 3) {
            std::this_thread::sleep_for(50ms);
            group.kill(3);  // crashes before the second allreduce
            return;
          }
          group.allreduce<float>(r, data);
        } catch (const Error& e) {
          messages[static_cast<std::size_t>(r)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (int r = 0; r < 3; ++r) CHECK_THAT(messages[static_cast<std::size_t>(r)], Contains("rank 3 is dead"));
    CHECK(std::chrono::steady_clock::now() - start < 10s);  // at once, not after the 30 s timeout
  }
}

TEST_CASE("troupe bench allreduce prints one checked JSON line over either transport, and rejects bad options", "[collectives]") {
  TempDir scratch("troupe_bench");
  for (const std::string transport : {"inproc", "tcp"}) {
    for (const std::string algo : {"auto", "ring", "hd", "direct"}) {
      CAPTURE(transport, algo);
      const TroupeRun run = run_troupe(scratch.path, "bench allreduce --ranks 3 --bytes 12KiB --iters 2 --warmup 1 --transport " +
                                                         transport + " --algo " + algo + " --segment-kib 1");
      REQUIRE(run.code == 0);
      const auto line = nlohmann::json::parse(run.out.substr(0, run.out.find('\n')));
      CHECK(line["op"] == "allreduce");
      CHECK(line["ranks"] == 3);
      CHECK(line["bytes"] == 12288);
      CHECK(line["transport"] == transport);
      CHECK(line["time_ms"].get<double>() > 0.0);
      CHECK(line["busbw_gbps"].get<double>() > 0.0);
    }
  }
  CHECK_THAT(run_troupe(scratch.path, "bench allreduce --bytes 13").err, Contains("give a multiple of 4"));
  CHECK_THAT(run_troupe(scratch.path, "bench allreduce --bytes lots").err, Contains("give a byte count such as"));
  CHECK_THAT(run_troupe(scratch.path, "bench allreduce --algo tree").err, Contains("choose auto, ring, hd (halving-doubling) or shm"));
  CHECK_THAT(run_troupe(scratch.path, "bench allreduce --algo local --transport tcp").err, Contains("only with --transport inproc"));
  CHECK(run_troupe(scratch.path, "bench allreduce --ranks 0").code == 2);
}
