// Owns the collective tests: ring chunk/step arithmetic, ring collectives over the in-process transport (ranks as threads), and their failure modes.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "runtime/comm/ring.h"
#include "runtime/error.h"

using namespace troupe;
using namespace troupe::comm;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

// Runs fn(transport) on one thread per rank of `world` (gloo test/base_test.h spawn()) and returns
// what each rank threw (null when it returned normally).
std::vector<std::exception_ptr> spawn(net::InprocWorld& world, const std::function<void(Transport&)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(world.size()));
  std::vector<std::thread> threads;
  for (int r = 0; r < world.size(); ++r) {
    threads.emplace_back([&, r, t = world.transport(r)]() mutable {
      try {
        fn(*t);
      } catch (...) {
        errors[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// The message of the troupe::Error in `e`; fails the test for anything else, or for no error.
std::string error_message(const std::exception_ptr& e) {
  REQUIRE(e);
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    CHECK(err.kind() == ErrorKind::kIo);
    return err.what();
  } catch (const std::exception& other) {
    FAIL("not a troupe::Error: " << other.what());
  }
  return {};
}

void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (std::size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r]) continue;
    try {
      std::rethrow_exception(errors[r]);
    } catch (const std::exception& e) {
      FAIL("rank " << r << " threw: " << e.what());
    }
  }
}

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
  require_no_errors(spawn(world, [&](Transport& t) { allreduce_ring(t, results[static_cast<std::size_t>(t.rank())]); }));
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

TEST_CASE("reduce_scatter_ring leaves each rank its owned chunk summed; all_gather_ring spreads them", "[collectives]") {
  const int ranks = GENERATE(1, 2, 3, 5, 8);
  const std::size_t n = GENERATE(as<std::size_t>{}, 0, 7, 1000);
  CAPTURE(ranks, n);
  net::InprocWorld world(ranks, 5s);

  std::vector<std::vector<float>> data(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn(world, [&](Transport& t) { reduce_scatter_ring(t, data[static_cast<std::size_t>(t.rank())]); }));
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
  require_no_errors(spawn(world, [&](Transport& t) { all_gather_ring(t, data[static_cast<std::size_t>(t.rank())]); }));
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
    require_no_errors(spawn(world, [&](Transport& t) { broadcast(t, data[static_cast<std::size_t>(t.rank())], root); }));
    const auto expected = inputs(root, n);
    for (int r = 0; r < ranks; ++r) CHECK(bitwise_equal(data[static_cast<std::size_t>(r)], expected));
  }
}

TEST_CASE("back-to-back collectives on one transport do not mix their messages", "[collectives]") {
  net::InprocWorld world(5, 5s);
  const std::size_t n = 1003;
  std::vector<std::vector<float>> data(5);
  for (int r = 0; r < 5; ++r) data[static_cast<std::size_t>(r)] = inputs(r, n);
  require_no_errors(spawn(world, [&](Transport& t) {
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
  const auto errors = spawn(world, [&](Transport& t) {
    if (t.rank() == 2) {
      const std::vector<float> wrong(3, 1.0f);
      t.send(3, kReduceScatterTag, std::as_bytes(std::span<const float>(wrong)));
      return;
    }
    allreduce_ring(t, data[static_cast<std::size_t>(t.rank())]);
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;

  CHECK_FALSE(errors[2]);
  CHECK_THAT(error_message(errors[3]), Contains("rank 3: message from rank 2") && Contains("has 12 bytes, expected 1000 bytes"));
  CHECK_THAT(error_message(errors[0]), Contains("no message from rank 3"));
  CHECK_THAT(error_message(errors[1]), Contains("no message from rank 0"));
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
  const auto errors = spawn(world, [&](Transport& t) {
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
    CHECK_THAT(error_message(errors[static_cast<std::size_t>(r)]),
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
  require_no_errors(spawn(world, [&](Transport& t) {
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
