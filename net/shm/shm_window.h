// Owns ShmWindow: the shared-memory transport's comm::SharedWindow — every rank's staging region and progress counters in its segment, waits on the doorbell with the transport's failure checks.
//
// Rank r's counters (WindowControl) and staging pieces live in r's own segment (segment.h), which
// every peer has mapped; r alone writes its counters. A publish stores the counter (seq_cst) and
// rings each peer's data doorbell, the one its recv sleeps on, so a waiting rank sleeps on its own
// doorbell whatever it waits for, and the transport's link-end callback (a dead peer) wakes it.
// A wait polls the counters, spins briefly, then sleeps (Doorbell::wait); between sleeps it asks
// the transport whether the group broke or the peer closed, and gives up at the timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "net/shm/segment.h"
#include "runtime/comm/shared_window.h"

namespace troupe::net::shm {

class ShmWindow final : public comm::SharedWindow {
 public:
  // `segments[r]`: rank r's segment as this rank maps it (its own included), all with `layout`.
  // `check(peer, what)` throws troupe::Error(kIo) when the group is broken or `peer` closed its
  // transport; it is called only while a wait is not yet satisfied.
  ShmWindow(int rank, const SegmentLayout& layout, std::vector<const Segment*> segments,
            std::chrono::milliseconds timeout, std::function<void(int peer, const char* what)> check);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(segments_.size()); }
  std::size_t pieces() const override { return layout_.pieces; }
  std::size_t piece_bytes() const override { return layout_.piece_bytes; }
  std::byte* staging(int owner, std::size_t piece) override;
  void publish(int counter, std::uint64_t value) override;
  std::uint64_t published(int owner, int counter) const override;
  void wait_for(int owner, int counter, std::uint64_t value, const char* what) override;

 private:
  // A rank (owner, or any when owner < 0) whose counter is still below value, or -1.
  int behind(int owner, int counter, std::uint64_t value) const;

  int rank_;
  SegmentLayout layout_;
  std::vector<const Segment*> segments_;
  std::chrono::milliseconds timeout_;
  std::function<void(int, const char*)> check_;
};

}  // namespace troupe::net::shm
