// The shared window's counters, staging pointers and waits over the segments' doorbells.
#include "net/shm/shm_window.h"

#include <algorithm>

#include "runtime/error.h"

namespace troupe::net::shm {

using Clock = std::chrono::steady_clock;

ShmWindow::ShmWindow(int rank, const SegmentLayout& layout, std::vector<const Segment*> segments,
                     std::chrono::milliseconds timeout, std::function<void(int, const char*)> check)
    : rank_(rank), layout_(layout), segments_(std::move(segments)), timeout_(timeout), check_(std::move(check)) {
  TROUPE_CHECK(layout_.pieces >= 2 && layout_.piece_bytes >= 64 && layout_.piece_bytes % 64 == 0, "a window of ",
               layout_.pieces, " pieces of ", layout_.piece_bytes, " bytes");
  TROUPE_CHECK(static_cast<int>(segments_.size()) == layout_.ranks, segments_.size(), " segments for ", layout_.ranks,
               " ranks");
}

std::byte* ShmWindow::staging(int owner, std::size_t piece) {
  TROUPE_CHECK(owner >= 0 && owner < size() && piece < layout_.pieces, "staging piece ", piece, " of rank ", owner);
  return segments_[static_cast<std::size_t>(owner)]->staging(piece);
}

void ShmWindow::publish(int counter, std::uint64_t value) {
  TROUPE_CHECK(counter >= 0 && counter < kCounters, "window counter ", counter);
  segments_[static_cast<std::size_t>(rank_)]->window().counters[counter].value.store(value, std::memory_order_seq_cst);
  for (int p = 0; p < size(); ++p) {
    if (p != rank_) segments_[static_cast<std::size_t>(p)]->header().data_bell.ring();
  }
}

std::uint64_t ShmWindow::published(int owner, int counter) const {
  TROUPE_CHECK(owner >= 0 && owner < size() && counter >= 0 && counter < kCounters, "counter ", counter, " of rank ", owner);
  return segments_[static_cast<std::size_t>(owner)]->window().counters[counter].value.load(std::memory_order_acquire);
}

int ShmWindow::behind(int owner, int counter, std::uint64_t value) const {
  if (owner >= 0) return published(owner, counter) >= value ? -1 : owner;
  for (int p = 0; p < size(); ++p) {
    if (published(p, counter) < value) return p;
  }
  return -1;
}

void ShmWindow::wait_for(int owner, int counter, std::uint64_t value, const char* what) {
  TROUPE_CHECK(owner < size() && counter >= 0 && counter < kCounters, "wait for counter ", counter, " of rank ", owner);
  if (behind(owner, counter, value) < 0) return;
  Doorbell& bell = segments_[static_cast<std::size_t>(rank_)]->header().data_bell;
  const auto deadline = Clock::now() + timeout_;
  while (true) {
    const std::uint32_t seen = bell.snapshot();
    const int late = behind(owner, counter, value);
    if (late < 0) return;
    check_(late, what);
    const auto now = Clock::now();
    if (now >= deadline) {
      throw Error(ErrorKind::kIo, detail::concat("rank ", rank_, ": ", what, " through shared memory: rank ", late,
                                                 " made no progress within ", timeout_.count(), " ms (its counter ", counter,
                                                 " is at ", published(late, counter), ", this rank waits for ", value, "); rank ",
                                                 late, " has failed, stalled or is running a different collective"));
    }
    bell.wait(seen, std::chrono::duration_cast<std::chrono::microseconds>(std::min<Clock::duration>(deadline - now, std::chrono::seconds(1))));
  }
}

}  // namespace troupe::net::shm
