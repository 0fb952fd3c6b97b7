// Owns the plan of a tensor-shard process group's re-form: which step every process re-runs after one of
// them was restarted, which processes cannot stand at that step's boundary on their own, and from where
// each of those takes its shard's state — so that the process code (actors/tensor_parallel_processes.h)
// only moves bytes, and the choice is tested without processes.
//
// Ranks are the Topology's: rank = d * tensor + t for replica d and tensor index t. A shard's state (its
// slices of the parameters, its buffers and optimizer state) is held by no other shard of its replica;
// the same tensor index of another replica holds an identical one (replicas stay bitwise equal). With one
// replica, rank 0 keeps a copy of every other shard's step-boundary state (ShardCopies), since rank 0 is
// the one process that is never restarted.
#pragma once

#include <cstdint>
#include <vector>

namespace troupe::supervision {

// Where one shard process stands after abandoning a step: its live state is the boundary of step
// `standing`, and it kept a copy of step `kept`'s boundary (Trainer::keep_boundary; -1: none). A new
// process stands nowhere: {-1, -1}.
struct ShardStanding {
  std::int64_t standing = -1;
  std::int64_t kept = -1;
  friend bool operator==(const ShardStanding&, const ShardStanding&) = default;
};

// Whether a process standing at `s` can stand at `step`'s boundary on its own (it is there, or rewinds).
constexpr bool reaches(const ShardStanding& s, std::int64_t step) { return step >= 0 && (s.standing == step || s.kept == step); }

// One process's state move: rank `to` takes the state of `from` — its live shard state at the step's
// boundary, or (kept_copy, from = 0) the copy rank 0 keeps of `to`'s shard.
struct StateMove {
  int to = 0;
  int from = 0;
  bool kept_copy = false;
  friend bool operator==(const StateMove&, const StateMove&) = default;
};

// The moves that make every rank of `data` x `tensor` stand at `step`: each rank that does not reach it
// takes the live state of the lowest rank with its tensor index that does, else rank 0's kept copy of its
// shard when `copies_step` (the boundary rank 0's copies are of, -1: none) is `step`. `ranks`: every
// rank's standing, by rank (rank 0 reaches `step` always). Throws troupe::Error(kIo) naming a rank whose
// shard's state is nowhere (every process holding it died at once).
std::vector<StateMove> plan_state_moves(int data, int tensor, const std::vector<ShardStanding>& ranks, std::int64_t step,
                                        std::int64_t copies_step);

}  // namespace troupe::supervision
