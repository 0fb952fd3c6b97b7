// Tests the shared-memory allreduce (runtime/comm/shared_memory_allreduce.h) over the shm transport's window: its piece arithmetic, bitwise equality with the ring over messages, and its failures.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/inproc/inproc_transport.h"
#include "net/shm/shm_transport.h"
#include "runtime/comm/allreduce.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/shared_memory_allreduce.h"
#include "runtime/error.h"
#include "runtime/exact_sum.h"
#include "tests/dev_shm.h"
#include "tests/dead_rank_checks.h"
#include "tests/rank_errors.h"
#include "tests/rank_threads.h"

using namespace troupe;
using namespace troupe::comm;
using namespace troupe::testing;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

// Values whose float sums depend on the order of the additions (irregular mantissas, exponents -12..12).
template <class T>
T input(int rank, std::size_t i) {
  const std::uint64_t h = (static_cast<std::uint64_t>(rank + 1) * 0x9E3779B97F4A7C15ull) ^ (i * 0xC2B2AE3D27D4EB4Full);
  const std::uint64_t m = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
  if constexpr (std::is_floating_point_v<T>) {
    const T mantissa = T(1) + static_cast<T>((m >> 40) & 0xFFFFFF) / T(16777216);
    return std::ldexp(mantissa, static_cast<int>((m >> 20) % 25) - 12);
  } else {
    return static_cast<T>(m);  // wraps when summed
  }
}

template <class T>
std::vector<std::vector<T>> inputs(int ranks, std::size_t n) {
  std::vector<std::vector<T>> v(static_cast<std::size_t>(ranks), std::vector<T>(n));
  for (int r = 0; r < ranks; ++r) {
    for (std::size_t i = 0; i < n; ++i) v[static_cast<std::size_t>(r)][i] = input<T>(r, i);
  }
  return v;
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

// The ring over messages between threads (net/inproc): the reference the shared-memory allreduce must
// equal bit for bit.
template <class T>
std::vector<std::vector<T>> ring_reference(int ranks, std::size_t n) {
  auto data = inputs<T>(ranks, n);
  net::InprocWorld world(ranks, 10s);
  require_no_errors(spawn_world(world, [&](Transport& t) { allreduce_ring<T>(t, data[static_cast<std::size_t>(t.rank())]); }));
  return data;
}

void shared_memory(Transport& t, std::span<float> d) { allreduce(t, d, AllreduceAlgo::kSharedMemory); }

}  // namespace

TEST_CASE("shared-memory allreduce: pieces tile the buffer, parts are the ring's chunks of a piece, and every element "
          "knows the ring chunk its sum starts at",
          "[shm][collectives]") {
  CHECK(shared_piece_count(0, 4) == 0);
  CHECK(shared_piece_count(9, 4) == 3);
  CHECK(shared_piece(9, 4, 2) == ChunkRange{8, 1});
  CHECK_THROWS_AS(shared_piece(9, 4, 3), InvariantError);
  CHECK(shared_reduce_part(ChunkRange{8, 10}, 4, 0) == ChunkRange{8, 3});  // 10 = 3 + 3 + 2 + 2
  CHECK(shared_reduce_part(ChunkRange{8, 10}, 4, 3) == ChunkRange{16, 2});
  CHECK(shared_reduce_part(ChunkRange{8, 1}, 3, 2) == ChunkRange{9, 0});
  // ring_chunk_of inverts ring_chunk, also for buffers shorter than the rank count.
  for (int ranks = 1; ranks <= 8; ++ranks) {
    for (std::size_t n : {1, 2, 7, 8, 9, 1000, 1001}) {
      for (int c = 0; c < ranks; ++c) {
        const ChunkRange chunk = ring_chunk(n, ranks, c);
        for (std::size_t i = chunk.offset; i < chunk.offset + chunk.length; ++i) {
          CAPTURE(ranks, n, c, i);
          REQUIRE(ring_chunk_of(n, ranks, i) == c);
        }
      }
    }
  }
}

TEST_CASE("shared-memory allreduce: bitwise equal to the ring over messages, for 2-4 ranks and sizes not divisible by "
          "the ranks or the pieces, back to back on one window",
          "[shm][collectives]") {
  const int ranks = GENERATE(2, 3, 4);
  const std::size_t piece_bytes = GENERATE(as<std::size_t>{}, 64, 4096);
  CAPTURE(ranks, piece_bytes);
  RankGroup group(TransportKind::shm, ranks, 10s, piece_bytes);
  REQUIRE(group.transport(0).shared_window() != nullptr);
  // One window for every size and type: the counters carry on from one collective to the next.
  for (std::size_t n : {0, 1, 7, 16, 1000, 4099, 100003}) {
    CAPTURE(n);
    auto f = inputs<float>(ranks, n);
    auto d = inputs<double>(ranks, n);
    auto e = inputs<ExactSum>(ranks, n);
    require_no_errors(group.run([&](Transport& t) {
      const auto r = static_cast<std::size_t>(t.rank());
      allreduce_shared_memory<float>(*t.shared_window(), f[r]);
      allreduce_shared_memory<double>(*t.shared_window(), d[r]);
      allreduce_shared_memory<ExactSum>(*t.shared_window(), e[r]);
    }));
    const auto want_f = ring_reference<float>(ranks, n);
    const auto want_d = ring_reference<double>(ranks, n);
    const auto want_e = ring_reference<ExactSum>(ranks, n);
    for (int r = 0; r < ranks; ++r) {
      CAPTURE(r);
      const auto i = static_cast<std::size_t>(r);
      REQUIRE(bitwise_equal(f[i], want_f[0]));
      REQUIRE(bitwise_equal(d[i], want_d[0]));
      REQUIRE(bitwise_equal(e[i], want_e[0]));
    }
  }
}

TEST_CASE("shared-memory allreduce: auto takes it over shm where it would take the ring, with the ring's bits, and "
          "asked for without a window it is a config error",
          "[shm][collectives]") {
  const int ranks = GENERATE(2, 4);
  CAPTURE(ranks);
  const std::size_t n = (kAllreduceCrossoverBytes / sizeof(float)) + 3;  // the ring's size range at any rank count
  auto data = inputs<float>(ranks, n);
  require_no_errors(spawn_ranks(TransportKind::shm, ranks, 10s, [&](Transport& t) {
    REQUIRE(t.shared_window() != nullptr);
    allreduce(t, std::span<float>(data[static_cast<std::size_t>(t.rank())]));
  }));
  const auto want = ring_reference<float>(ranks, n);
  for (const auto& d : data) CHECK(bitwise_equal(d, want[0]));

  net::InprocWorld world(2, 5s);
  std::vector<float> v(8);
  CHECK_THROWS_WITH(allreduce(*world.transport(0), std::span<float>(v), AllreduceAlgo::kSharedMemory),
                    Contains("the shared-memory allreduce needs ranks that share memory"));
  CHECK(parse_allreduce_algo("shm") == AllreduceAlgo::kSharedMemory);
  CHECK(allreduce_algo_name(AllreduceAlgo::kSharedMemory) == "shm");
}

TEST_CASE("shared-memory allreduce: a rank aborted while the others wait fails them at once, naming it", "[shm][collectives]") {
  const int ranks = GENERATE(2, 3, 4);
  CAPTURE(ranks);
  check_aborted_rank_fails_the_others(TransportKind::shm, ranks, 30s, 20s, shared_memory);
}

TEST_CASE("shared-memory allreduce: a silent rank times out naming it, and a closed one says it left", "[shm][collectives]") {
  {
    RankGroup group(TransportKind::shm, 3, 300ms);
    const auto errors = group.run([](Transport& t) {
      if (t.rank() == 2) {
        std::this_thread::sleep_for(1s);  // never joins, stays alive past the others' timeout
        return;
      }
      std::vector<float> v(1000, 1.0f);
      shared_memory(t, v);
    });
    CHECK_THAT(io_error(errors[0]), Contains("rank 2 made no progress within 300 ms") || Contains("is dead"));
    CHECK_THAT(io_error(errors[0]) + io_error(errors[1]), Contains("rank 2 made no progress within 300 ms"));
  }
  {
    RankGroup group(TransportKind::shm, 2, 10s);
    group.close(1);
    std::vector<float> v(1000, 1.0f);
    CHECK_THROWS_WITH(shared_memory(group.transport(0), v), Contains("rank 1 closed its transport"));
  }
}

TEST_CASE("shared-memory allreduce: ranks as processes get the exact sum, and a rank SIGKILLed in the middle of "
          "allreduces fails the others promptly and leaves nothing in /dev/shm",
          "[shm][collectives]") {
  const bool crash = GENERATE(false, true);
  CAPTURE(crash);
  const std::set<std::string> before = dev_shm();
  {
    // The job of tests/dead_rank_checks.h: the victim dies before the collective, the others wait in it.
    ProcessTransport shm;
    auto options = [](int r, int ranks, const std::string& address) {
      net::ShmOptions o;
      o.tcp = {.rank = r, .size = ranks, .address = address, .secret = "shm-allreduce-test", .timeout = 30s};
      o.tcp.rendezvous_timeout = 10s;
      o.piece_bytes = 4096;  // 300001 floats in about 300 pieces
      return o;
    };
    shm.connect = [=](int r, int ranks, const std::string& address) { return net::connect_shm(options(r, ranks, address)); };
    shm.connect_rank0 = [=](int ranks, net::TcpListener listener) {
      return net::connect_shm(options(0, ranks, ""), std::move(listener));
    };
    shm.fails_within = 20s;  // not the 30 s timeout
    shm.collective = shared_memory;
    check_killed_rank_fails_the_others(shm, crash);
  }
  if (crash) {
    // Now the victim dies inside the collective: it kills itself from another thread while every rank
    // allreduces 1 MiB over and over.
    net::TcpListener listener("127.0.0.1:0");
    const std::string address = listener.address();
    const int ranks = 3;
    auto options = [&](int r) {
      net::ShmOptions o;
      o.tcp = {.rank = r, .size = ranks, .address = address, .secret = "shm-allreduce-test", .timeout = 30s};
      o.tcp.rendezvous_timeout = 10s;
      o.piece_bytes = 16384;
      return o;
    };
    const pid_t victim = fork();
    REQUIRE(victim >= 0);
    if (victim == 0) {
      try {
        auto t = net::connect_shm(options(2));
        std::thread([] {
          std::this_thread::sleep_for(300ms);
          ::kill(::getpid(), SIGKILL);
        }).detach();
        std::vector<float> v(1 << 18, 1.0f);
        while (true) shared_memory(*t, v);
      } catch (...) {
      }
      ::_exit(4);
    }
    std::string errors[2];
    std::vector<std::thread> threads;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        try {
          auto t = r == 0 ? net::connect_shm(options(0), std::move(listener)) : net::connect_shm(options(1));
          std::vector<float> v(1 << 18, 1.0f);
          while (true) shared_memory(*t, v);
        } catch (const Error& e) {
          errors[r] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    int status = 0;
    REQUIRE(waitpid(victim, &status, 0) == victim);
    CHECK(WIFSIGNALED(status));
    CHECK(std::chrono::steady_clock::now() - start < 20s);
    for (const std::string& e : errors) CHECK_THAT(e, Contains("rank 2 is dead"));
  }
  CHECK(dev_shm() == before);  // segments are memfds: nothing is left, however a rank ends
}
