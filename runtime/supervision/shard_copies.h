// Owns ShardCopies: the copies of the other tensor shards' step-boundary states that rank 0 keeps in a
// job of one replica of tensor-shard processes with restarts on — the "copy on a peer" a restarted shard
// process comes back from, since no other process holds its shard.
//
// Each shard process sends its state (its slices, as bytes: state_bytes.h) after every step. Rank 0
// keeps the copies of the last boundary every shard's copy arrived for (committed), and the ones
// arriving for the next (pending): a step whose copies did not all arrive is re-run from the committed
// boundary, which every survivor can still rewind to. Rank 0 never parses a copy; it hands the bytes to
// the restarted process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace troupe::supervision {

class ShardCopies {
 public:
  // Rank `rank`'s copy of step `step`'s boundary arrived (pending until commit).
  void offer(int rank, std::int64_t step, std::vector<std::byte> bytes);
  // Every shard's copy of `step` arrived: the pending copies of `step` replace the kept ones.
  void commit(std::int64_t step);
  // The pending copies are dropped (their step is re-run); the kept ones stay.
  void discard_pending() { pending_.clear(); }
  // The kept copies are no longer the shards' states (weights loaded, a checkpoint restored).
  void forget();

  // The step whose boundary the kept copies are of; -1 when none.
  std::int64_t step() const { return step_; }
  // Rank `rank`'s kept copy (TROUPE_CHECK: kept).
  const std::vector<std::byte>& of(int rank) const;
  // Bytes kept, pending ones included.
  std::size_t bytes() const;

 private:
  std::int64_t step_ = -1;
  std::map<int, std::vector<std::byte>> kept_;
  std::map<int, std::pair<std::int64_t, std::vector<std::byte>>> pending_;
};

}  // namespace troupe::supervision
