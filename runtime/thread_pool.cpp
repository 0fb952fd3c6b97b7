// ThreadPool: spin-then-sleep workers running contiguous ranges of a loop.
#include "runtime/thread_pool.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe {

namespace {
// About 50 microseconds of spinning before a worker sleeps.
constexpr int kSpinIterations = 20000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
}  // namespace

ThreadPool::ThreadPool(int threads) {
  TROUPE_CHECK(threads >= 1, "thread count ", threads);
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
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
  int parts = static_cast<int>(std::min<std::int64_t>(size(), std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_grain))));
  if (parts <= 1) {
    body(0, n);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    body_ = &body;
    n_ = n;
    parts_ = parts;
    pending_.store(parts - 1);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  auto [b, e] = chunk(n, parts, 0);
  body(b, e);
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void ThreadPool::worker_loop(int index) {
  std::uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
    }
    if (stop_.load()) return;
    const std::function<void(std::int64_t, std::int64_t)>* body;
    std::int64_t n;
    int parts;
    {
      std::lock_guard lock(mutex_);
      seen = generation_.load();
      body = body_;
      n = n_;
      parts = parts_;
    }
    if (index < parts) {
      auto [b, e] = chunk(n, parts, index);
      (*body)(b, e);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace troupe
