// Owns LocalGroup's barrier (spin, then sleep; timeout; dead ranks) and its by-reference allreduce.
#include "runtime/comm/local_group.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/comm/elementwise.h"
#include "runtime/comm/ring.h"
#include "runtime/comm/group_aborted.h"
#include "runtime/error.h"

namespace troupe::comm {

struct LocalGroup::State {
  State(int n, std::chrono::milliseconds t)
      : ranks(n), timeout(t), passed(static_cast<std::size_t>(n), 0), arrivals(static_cast<std::size_t>(n)),
        buffers(static_cast<std::size_t>(n)), lengths(static_cast<std::size_t>(n)) {}

  const int ranks;
  const std::chrono::milliseconds timeout;
  std::atomic<std::uint64_t> arrived{0};  // barrier arrivals of all ranks, ever
  std::atomic<int> first_dead{-1};
  std::atomic<bool> aborted{false};  // abort() until reform()
  std::mutex mu;  // only for sleeping waiters
  std::condition_variable cv;
  std::vector<std::uint64_t> passed;                   // barriers each rank has passed (its own thread only)
  std::vector<std::atomic<std::uint64_t>> arrivals;    // per rank, to name the missing ones on a timeout
  std::vector<const void*> buffers;                    // published before the first barrier of a collective
  std::vector<std::size_t> lengths;

  void throw_if_dead(int rank) const {
    const int dead = first_dead.load();
    if (dead >= 0)
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": local allreduce failed: rank ", dead,
                                                 " is dead, so the group is broken; restart the group without it"));
  }
};

LocalGroup::LocalGroup(int ranks, std::chrono::milliseconds timeout) {
  TROUPE_CHECK(ranks >= 1, "ranks = ", ranks);
  TROUPE_CHECK(timeout.count() > 0, "timeout = ", timeout.count(), " ms");
  state_ = std::make_unique<State>(ranks, timeout);
}

LocalGroup::~LocalGroup() = default;

int LocalGroup::size() const { return state_->ranks; }

void LocalGroup::kill(int rank) {
  State& s = *state_;
  TROUPE_CHECK(rank >= 0 && rank < s.ranks, "rank ", rank, " of ", s.ranks);
  int none = -1;
  s.first_dead.compare_exchange_strong(none, rank);
  { std::lock_guard lock(s.mu); }  // orders this after any sleeper's predicate check: no lost wake-up
  s.cv.notify_all();
}

void LocalGroup::abort() {
  State& s = *state_;
  s.aborted.store(true);
  { std::lock_guard lock(s.mu); }
  s.cv.notify_all();
}

void LocalGroup::reform() {
  State& s = *state_;
  s.arrived.store(0);
  for (int r = 0; r < s.ranks; ++r) {
    s.passed[static_cast<std::size_t>(r)] = 0;
    s.arrivals[static_cast<std::size_t>(r)].store(0);
  }
  s.aborted.store(false);
}

// `abortable`: the collective's first barrier, before which no rank reads another's buffer; abort()
// ends only it. A rank that leaves it for an abort withdraws its arrival, so the barrier can never fill
// behind its back and let the others read a buffer it no longer holds; once it has filled, every rank
// finishes the collective (its later phases wait for nothing outside it).
void LocalGroup::barrier(int rank, const char* phase, bool abortable) {
  State& s = *state_;
  s.throw_if_dead(rank);
  auto abandoned = [&] {
    return GroupAborted(detail::concat("rank ", rank, ": local allreduce abandoned: the step is re-run on every rank"));
  };
  if (abortable && s.aborted.load()) throw abandoned();
  const std::uint64_t k = ++s.passed[static_cast<std::size_t>(rank)];
  const std::uint64_t target = k * static_cast<std::uint64_t>(s.ranks);
  s.arrivals[static_cast<std::size_t>(rank)].store(k);
  if (s.arrived.fetch_add(1) + 1 == target) {  // the last one in wakes the sleepers
    { std::lock_guard lock(s.mu); }
    s.cv.notify_all();
    return;
  }
  auto filled = [&] { return s.arrived.load() >= target; };
  auto done = [&] { return filled() || s.first_dead.load() >= 0 || (abortable && s.aborted.load()); };
  for (int spin = 0; spin < 4000 && !done(); ++spin) {
    if (spin >= 64) std::this_thread::yield();  // other ranks may need this core (threads > cores)
  }
  if (!done()) {
    std::unique_lock lock(s.mu);
    if (!s.cv.wait_for(lock, s.timeout, done)) {
      std::string missing;
      for (int r = 0; r < s.ranks; ++r)
        if (s.arrivals[static_cast<std::size_t>(r)].load() < k) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": local allreduce (", phase, "): rank(s) ", missing,
                                                 " did not arrive within ", s.timeout.count(),
                                                 " ms; they failed, stalled or run a different collective"));
    }
  }
  s.throw_if_dead(rank);
  for (std::uint64_t now = s.arrived.load(); now < target;)  // aborted and not filled: withdraw, then leave
    if (s.arrived.compare_exchange_weak(now, now - 1)) throw abandoned();
}

template <class T>
void LocalGroup::allreduce(int rank, std::span<T> data) {
  State& s = *state_;
  TROUPE_CHECK(rank >= 0 && rank < s.ranks, "rank ", rank, " of ", s.ranks);
  if (s.ranks == 1) return;
  const auto me = static_cast<std::size_t>(rank);
  s.buffers[me] = data.data();  // publish; the barrier's atomic orders it before the others' reads
  s.lengths[me] = data.size();
  barrier(rank, "publish", true);
  for (int r = 1; r < s.ranks; ++r)  // every rank finds the same first mismatch, so all throw alike
    if (s.lengths[static_cast<std::size_t>(r)] != s.lengths[0])
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank, ": local allreduce: rank ", r, " passed ",
                                                 s.lengths[static_cast<std::size_t>(r)], " elements, rank 0 ",
                                                 s.lengths[0], "; the ranks disagree on the buffer size"));
  auto buffer = [&](int r) { return static_cast<const T*>(s.buffers[static_cast<std::size_t>(r)]); };

  // reduce: my slice, from every rank's buffer, in rank order, through a scratch block
  const ChunkRange mine = ring_chunk(data.size(), s.ranks, rank);
  constexpr std::size_t kBlock = (16 << 10) / sizeof(T);
  T scratch[kBlock];
  for (std::size_t begin = mine.offset; begin < mine.offset + mine.length; begin += kBlock) {
    const std::size_t len = std::min(kBlock, mine.offset + mine.length - begin);
    add_into(scratch, buffer(0) + begin, buffer(1) + begin, len);
    for (int r = 2; r < s.ranks; ++r) add_into(scratch, scratch, buffer(r) + begin, len);
    std::memcpy(data.data() + begin, scratch, len * sizeof(T));
  }
  barrier(rank, "reduce", false);

  // gather: every other slice, from its owner's buffer
  for (int o = 1; o < s.ranks; ++o) {
    const int owner = (rank + o) % s.ranks;  // staggered, so the ranks do not all read one buffer first
    const ChunkRange c = ring_chunk(data.size(), s.ranks, owner);
    if (c.length) std::memcpy(data.data() + c.offset, buffer(owner) + c.offset, c.length * sizeof(T));
  }
  barrier(rank, "gather", false);
}

template void LocalGroup::allreduce<float>(int, std::span<float>);
template void LocalGroup::allreduce<double>(int, std::span<double>);
template void LocalGroup::allreduce<std::int64_t>(int, std::span<std::int64_t>);
template void LocalGroup::allreduce<__int128>(int, std::span<__int128>);

}  // namespace troupe::comm
