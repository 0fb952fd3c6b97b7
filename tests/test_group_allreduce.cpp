// GroupAllreduce: the algorithm is chosen once from what the group is, and each choice sums a bucket
// to the same bits on every rank, over both transports (ranks as threads).
#include <catch2/catch.hpp>

#include <chrono>

#include "rank_threads.h"
#include "runtime/comm/group_allreduce.h"

using namespace troupe;
using namespace troupe::comm;
using troupe::testing::RankGroup;
using Algo = GroupAllreduce::Algo;

TEST_CASE("GroupAllreduce picks its algorithms once, from the exchange and the local group", "[comm][group]") {
  net::InprocWorld world(2, std::chrono::seconds(5));
  auto t = world.transport(0);
  auto local = std::make_shared<LocalGroup>(2, std::chrono::seconds(5));
  // exchange, local group -> float algorithm, exact-sum algorithm
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr).float_algo() == Algo::ring);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, nullptr).exact_algo() == Algo::direct);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, local).float_algo() == Algo::local);
  CHECK(GroupAllreduce(*t, GradientExchange::ring, local).exact_algo() == Algo::local);
  CHECK(GroupAllreduce(*t, GradientExchange::alltoall, nullptr).float_algo() == Algo::direct);
  CHECK(GroupAllreduce(*t, GradientExchange::alltoall, local).float_algo() == Algo::direct);
  CHECK(GroupAllreduce(*t, GradientExchange::alltoall, local).exact_algo() == Algo::local);
  CHECK_THROWS_WITH(GroupAllreduce(*t, GradientExchange::ps, nullptr), Catch::Contains("parameter servers do not allreduce"));
}

TEST_CASE("GroupAllreduce sums float and exact buckets on every rank, each algorithm", "[comm][group]") {
  const auto kind = GENERATE(TransportKind::inproc, TransportKind::tcp, TransportKind::shm);
  const auto exchange = GENERATE(GradientExchange::ring, GradientExchange::alltoall);
  const bool use_local = GENERATE(false, true);
  if (use_local && kind != TransportKind::inproc) return;  // a LocalGroup is for ranks of one process
  const int n = 3;
  const std::size_t len = 1001;
  INFO(kind << " " << exchange << " local " << use_local);
  RankGroup group(kind, n, std::chrono::seconds(10));
  auto local = use_local ? std::make_shared<LocalGroup>(n, std::chrono::seconds(10)) : nullptr;
  std::vector<std::vector<float>> floats(n);
  std::vector<std::vector<ExactSum>> exact(n);
  const auto errors = group.run([&](Transport& t) {
    const int r = t.rank();
    GroupAllreduce sum(t, exchange, local);
    auto& f = floats[static_cast<std::size_t>(r)];
    auto& e = exact[static_cast<std::size_t>(r)];
    for (std::size_t i = 0; i < len; ++i) {
      f.push_back(static_cast<float>((r + 1) * (i % 7)) * 0.25f);
      e.push_back(static_cast<ExactSum>(r + 1) * static_cast<ExactSum>(i) * (ExactSum{1} << 70));
    }
    sum.sum(std::span<float>(f));
    sum.sum(std::span<ExactSum>(e));
  });
  for (const auto& e : errors) REQUIRE_FALSE(e);
  for (std::size_t i = 0; i < len; ++i) {
    CHECK(floats[0][i] == static_cast<float>(6 * (i % 7)) * 0.25f);  // small integers: exact in any order
    CHECK(exact[0][i] == ExactSum{6} * static_cast<ExactSum>(i) * (ExactSum{1} << 70));
    for (int r = 1; r < n; ++r) {
      CHECK(floats[static_cast<std::size_t>(r)][i] == floats[0][i]);
      CHECK(exact[static_cast<std::size_t>(r)][i] == exact[0][i]);
    }
  }
}
