// Owns the ThreadPool tests: exact coverage of [0, n), the documented split, repeated use without deadlock, min_grain.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/error.h"
#include "runtime/thread_pool.h"

using namespace troupe;

namespace {

using Range = std::pair<std::int64_t, std::int64_t>;

// Runs one parallel_for and returns the ranges its body saw, sorted, after checking each index once.
std::vector<Range> run_and_check(ThreadPool& pool, std::int64_t n, std::int64_t grain = 1) {
  std::vector<std::atomic<int>> hits(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)));
  std::mutex mu;
  std::vector<Range> ranges;
  pool.parallel_for(n, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    std::lock_guard lock(mu);
    ranges.emplace_back(b, e);
  }, grain);
  std::int64_t wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1;
  INFO("n " << n << ", threads " << pool.size() << ", grain " << grain);
  CHECK(wrong == 0);
  std::sort(ranges.begin(), ranges.end());
  return ranges;
}

}  // namespace

TEST_CASE("ThreadPool::chunk splits 0..n into contiguous parts that differ by at most one", "[threads]") {
  for (std::int64_t n : {0, 1, 2, 3, 5, 7, 16, 17, 100, 1001}) {
    for (int parts = 1; parts <= 8; ++parts) {
      INFO("n " << n << ", parts " << parts);
      std::int64_t expect_begin = 0, lo = n, hi = 0;
      for (int i = 0; i < parts; ++i) {
        auto [b, e] = ThreadPool::chunk(n, parts, i);
        CHECK(b == expect_begin);
        CHECK(e >= b);
        lo = std::min(lo, e - b);
        hi = std::max(hi, e - b);
        expect_begin = e;
      }
      CHECK(expect_begin == n);
      CHECK(hi - lo <= 1);
    }
  }
  // The first n % parts parts are the longer ones.
  CHECK(ThreadPool::chunk(10, 4, 0) == Range{0, 3});
  CHECK(ThreadPool::chunk(10, 4, 1) == Range{3, 6});
  CHECK(ThreadPool::chunk(10, 4, 2) == Range{6, 8});
  CHECK(ThreadPool::chunk(10, 4, 3) == Range{8, 10});
}

TEST_CASE("parallel_for covers 0..n exactly once, in ThreadPool::chunk's ranges", "[threads]") {
  for (int threads = 1; threads <= 4; ++threads) {
    ThreadPool pool(threads);
    REQUIRE(pool.size() == threads);
    for (std::int64_t n : {0, 1, 2, 3, 4, 5, 7, 8, 31, 64, 100, 1000, 4097}) {
      const std::vector<Range> ranges = run_and_check(pool, n);
      INFO("n " << n << ", threads " << threads);
      if (n == 0) {
        CHECK(ranges.empty());  // the body is not called at all
        continue;
      }
      // One range per thread, or one per index when there are fewer indices than threads.
      const int parts = static_cast<int>(std::min<std::int64_t>(threads, n));
      REQUIRE(ranges.size() == static_cast<std::size_t>(parts));
      for (int i = 0; i < parts; ++i) CHECK(ranges[i] == ThreadPool::chunk(n, parts, i));
    }
  }
}

TEST_CASE("parallel_for's ranges respect min_grain and small loops stay on the calling thread", "[threads]") {
  ThreadPool pool(4);
  SECTION("a loop smaller than two grains is one range on the caller") {
    const auto caller = std::this_thread::get_id();
    std::vector<std::thread::id> ran_on;
    std::vector<Range> ranges;
    pool.parallel_for(100, [&](std::int64_t b, std::int64_t e) {
      ranges.emplace_back(b, e);  // expected to run once, on this thread
      ran_on.push_back(std::this_thread::get_id());
    }, 64);
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0] == Range{0, 100});
    CHECK(ran_on[0] == caller);
  }
  SECTION("ranges are never shorter than the grain") {
    for (std::int64_t n : {10, 63, 64, 127, 128, 129, 191, 192, 255, 256, 1000}) {
      const std::vector<Range> ranges = run_and_check(pool, n, 64);
      INFO("n " << n);
      CHECK(ranges.size() >= 1);
      CHECK(ranges.size() <= 4);
      CHECK(static_cast<std::int64_t>(ranges.size()) <= std::max<std::int64_t>(1, n / 64));
      if (ranges.size() > 1)
        for (const Range& r : ranges) CHECK(r.second - r.first >= 64);
      for (std::size_t i = 0; i < ranges.size(); ++i)
        CHECK(ranges[i] == ThreadPool::chunk(n, static_cast<int>(ranges.size()), static_cast<int>(i)));
    }
  }
}

TEST_CASE("parallel_for really runs ranges on other threads", "[threads]") {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::thread::id> ids;
  pool.parallel_for(3, [&](std::int64_t, std::int64_t) {
    std::lock_guard lock(mu);
    ids.push_back(std::this_thread::get_id());
  });
  std::sort(ids.begin(), ids.end());
  CHECK(std::unique(ids.begin(), ids.end()) == ids.end());  // three distinct threads
  CHECK(ids.size() == 3);
}

TEST_CASE("10,000 small parallel loops in a row neither deadlock nor lose work", "[threads]") {
  // 4 threads is more than the 2 cores CI may have: oversubscribed workers must still make progress.
  // Each batch runs on a helper thread so that a deadlock fails the test instead of hanging the suite.
  for (auto [threads, loops] : std::vector<std::pair<int, int>>{{2, 10000}, {3, 10000}, {4, 10000}}) {
    auto pool = std::make_shared<ThreadPool>(threads);
    auto total = std::make_shared<std::atomic<std::int64_t>>(0);
    std::promise<void> done;
    std::future<void> finished = done.get_future();
    std::thread runner([pool, total, threads = threads, loops = loops, p = std::move(done)]() mutable {
      for (int iter = 0; iter < loops; ++iter) {
        const std::int64_t n = 1 + iter % (2 * threads + 1);  // includes n < threads and n == threads
        pool->parallel_for(n, [&](std::int64_t b, std::int64_t e) { total->fetch_add(e - b); });
      }
      p.set_value();
    });
    const bool ok = finished.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
    INFO("threads " << threads << ", loops " << loops);
    if (!ok) {
      runner.detach();  // leaks the stuck pool; the failure is what matters
      FAIL("parallel_for did not finish its loops within 60 s (deadlock?)");
    }
    runner.join();
    std::int64_t expect = 0;
    for (int iter = 0; iter < loops; ++iter) expect += 1 + iter % (2 * threads + 1);
    CHECK(total->load() == expect);
  }
}

TEST_CASE("a pool can be created and destroyed repeatedly, idle or after work", "[threads]") {
  CHECK_THROWS_AS(ThreadPool(0), InvariantError);
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(1 + i % 4);
    if (i % 2) {
      std::atomic<int> sum{0};
      pool.parallel_for(8, [&](std::int64_t b, std::int64_t e) { sum += static_cast<int>(e - b); });
      CHECK(sum.load() == 8);
    }
  }
}
