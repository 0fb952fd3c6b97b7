// Owns ThreadPool: the worker threads that CPU kernels split their loops over (train.threads of them).
//
// parallel_for splits [0, n) into one contiguous range per thread; the caller runs the first range
// itself. Threads spin for a few microseconds before sleeping, because waking a sleeping thread costs
// tens of microseconds and a training step issues hundreds of parallel loops back to back; they do not
// spin longer, because on a busy machine a spinning thread takes the core from one with work.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace troupe {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls body(begin, end) on disjoint ranges covering [0, n), at most size() of them, and waits.
  // Ranges are a pure function of (n, size()), so results do not depend on timing.
  // Ranges smaller than min_grain are merged (small loops stay on the calling thread).
  void parallel_for(std::int64_t n, const std::function<void(std::int64_t, std::int64_t)>& body,
                    std::int64_t min_grain = 1);

  // Range i of `parts` equal parts of [0, n): the split parallel_for uses.
  static std::pair<std::int64_t, std::int64_t> chunk(std::int64_t n, int parts, int i);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  // A job is published by writing body_/n_/parts_ and then bumping generation_ (release); workers
  // read them after seeing the new generation (acquire). Waiting is a short spin, then a futex wait
  // (std::atomic::wait), so idle or oversubscribed threads give their core away.
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(std::int64_t, std::int64_t)>* body_ = nullptr;
  std::int64_t n_ = 0;
  int parts_ = 0;
};

}  // namespace troupe
