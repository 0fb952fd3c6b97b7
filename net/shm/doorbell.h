// Owns the doorbell: a 32-bit counter in shared memory that one rank sleeps on (futex) and any process rings.
//
// A waiter reads `snapshot()`, checks its condition, and only if it still does not hold calls
// `wait(snapshot, ...)`: a ring between the snapshot and the wait changes the counter, so the futex
// returns at once and no wakeup is lost. ring() skips the futex system call while nobody sleeps,
// which is the common case on the data path. Both sides use sequentially consistent operations on
// `seq` and `sleepers` (the Dekker pattern: a ringer that sees no sleeper was ordered before the
// sleeper's re-check). The futex is a shared one (not FUTEX_PRIVATE), since the counter lives in a
// mapping that several processes share.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace troupe::net::shm {

struct alignas(64) Doorbell {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleepers{0};

  std::uint32_t snapshot() const { return seq.load(); }
  // Wakes every sleeper (after the caller published what it rang for).
  void ring();
  // Sleeps until the counter differs from `seen`, a ring, or `limit` passes (spurious returns are
  // allowed: callers re-check their condition). Spins briefly first: on a busy ring the next slot
  // often lands within microseconds, cheaper than two context switches.
  void wait(std::uint32_t seen, std::chrono::microseconds limit);
};

static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "a futex word must be a plain 32-bit integer");

}  // namespace troupe::net::shm
