// ThreadPool: spin-then-wait workers running contiguous ranges of a loop.
#include "runtime/thread_pool.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe {

namespace {
// About 10-20 microseconds of polling before blocking in the kernel.
constexpr int kSpinIterations = 2000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits until `value` differs from `old`: polls first, then sleeps on the atomic.
template <typename T>
T wait_for_change(const std::atomic<T>& value, T old) {
  for (int i = 0; i < kSpinIterations; ++i) {
    T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
    cpu_relax();
  }
  for (;;) {
    value.wait(old, std::memory_order_acquire);
    T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  TROUPE_CHECK(threads >= 1, "thread count ", threads);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

std::pair<std::int64_t, std::int64_t> ThreadPool::chunk(std::int64_t n, int parts, int i) {
  std::int64_t base = n / parts, extra = n % parts;
  std::int64_t begin = i * base + std::min<std::int64_t>(i, extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}

void ThreadPool::parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body,
                              std::int64_t min_grain) {
  if (n <= 0) return;
  const std::int64_t grain = std::max<std::int64_t>(1, min_grain);
  const int parts = static_cast<int>(std::min<std::int64_t>(size(), std::max<std::int64_t>(1, n / grain)));
  if (parts <= 1) {
    body(0, n);
    return;
  }
  body_ = &body;
  n_ = n;
  parts_ = parts;
  // Every worker acknowledges every job, even one with no range for it, so that no worker can still be
  // reading this job's fields when the next job overwrites them.
  pending_.store(size() - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  auto [b, e] = chunk(n, parts, 0);
  body(b, e);
  int left = pending_.load(std::memory_order_acquire);
  while (left != 0) left = wait_for_change(pending_, left);
}

void ThreadPool::worker_loop(int index) {
  std::uint64_t seen = 0;
  for (;;) {
    seen = wait_for_change(generation_, seen);
    if (stop_.load(std::memory_order_acquire)) return;
    if (index < parts_) {
      auto [b, e] = chunk(n_, parts_, index);
      (*body_)(b, e);
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace troupe
