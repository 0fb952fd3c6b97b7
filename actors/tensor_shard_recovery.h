// Owns the tensor-shard processes' re-form on the wire: what the processes of a tensor-parallel job say to
// each other after rank 0 restarted one of them — where each stands, the step rank 0 re-runs and who
// sends whose shard state (runtime/supervision/shard_state_moves.h) — and the copies of shard states
// that rank 0 keeps after every step (runtime/supervision/shard_copies.h).
//
// Over the world formed again (before any command or collective uses it):
//   1. every rank r > 0 tells rank 0 where it stands (kStandingTag: standing, kept; -1, -1 when new);
//   2. rank 0 plans the moves and tells each rank its verdict (kVerdictTag: the step, the rank it takes
//      its state from or -1, how many ranks it sends its own state to; then those ranks);
//   3. each sender sends its shard's state (kStateTag: byte count, then state_bytes.h), and each rank
//      that takes one receives it.
// A copy (kCopyTag) is the step it is of and a byte count, then the bytes. Sends never wait for the
// receiver (comm::Transport), so no order of them deadlocks. Plain code over comm::Transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/comm/transport.h"
#include "runtime/supervision/shard_state_moves.h"

namespace troupe {

// What rank 0 decided for one rank.
struct ShardVerdict {
  std::int64_t step = 0;     // every rank re-runs this step (stands at its boundary)
  int from = -1;             // the rank whose bytes this one installs (-1: none)
  std::vector<int> send_to;  // the ranks this one sends its own shard's state to
};

// Rank r > 0, step 1.
void send_standing(comm::Transport& world, const supervision::ShardStanding& standing);
// Rank 0, step 1: every rank's standing by rank, rank 0's (`mine`) first.
std::vector<supervision::ShardStanding> recv_standings(comm::Transport& world, const supervision::ShardStanding& mine);
// Rank 0, step 2: sends every other rank its verdict; returns rank 0's own.
ShardVerdict send_verdicts(comm::Transport& world, std::int64_t step, const std::vector<supervision::StateMove>& moves);
// Rank r > 0, step 2. Throws troupe::Error(kIo) for a verdict that is none.
ShardVerdict recv_verdict(comm::Transport& world);

// Step 3, and the copies: a state's bytes (state_bytes.h) to and from a rank.
void send_state_bytes(comm::Transport& world, int to, std::span<const std::byte> bytes);
std::vector<std::byte> recv_state_bytes(comm::Transport& world, int from);

// Rank r > 0 after a step (or on ShardOp::copy): its shard's state at `step`'s boundary, for rank 0 to keep.
void send_copy(comm::Transport& world, std::int64_t step, std::span<const std::byte> bytes);
// Rank 0: rank `from`'s copy, which must be of `step` (troupe::Error(kIo) otherwise).
std::vector<std::byte> recv_copy(comm::Transport& world, int from, std::int64_t step);

}  // namespace troupe
