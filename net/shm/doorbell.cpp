// The doorbell's futex calls and its short spin before sleeping.
#include "net/shm/doorbell.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <climits>

namespace troupe::net::shm {

namespace {

long futex(std::atomic<std::uint32_t>& word, int op, std::uint32_t value, const timespec* timeout) {
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, value, timeout, nullptr, 0);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

void Doorbell::ring() {
  seq.fetch_add(1);
  if (sleepers.load() > 0) futex(seq, FUTEX_WAKE, INT_MAX, nullptr);
}

void Doorbell::wait(std::uint32_t seen, std::chrono::microseconds limit) {
  // About a few microseconds of spinning: long enough for a producer in the middle of a slot copy on
  // another core, short enough not to matter when ranks outnumber cores (they then sleep).
  for (int i = 0; i < 256; ++i) {
    if (seq.load(std::memory_order_acquire) != seen) return;
    cpu_relax();
  }
  sleepers.fetch_add(1);
  if (seq.load() == seen) {
    const auto us = limit.count() > 0 ? limit.count() : 1;
    const timespec timeout{static_cast<time_t>(us / 1'000'000), static_cast<long>(us % 1'000'000) * 1000};
    futex(seq, FUTEX_WAIT, seen, &timeout);
  }
  sleepers.fetch_sub(1);
}

}  // namespace troupe::net::shm
