// Owns the tensor-shard processes' commands: what rank 0 tells every other rank process of a tensor-parallel job to do next (a step, an evaluation, a weights file, a checkpoint's state, the end), and their form on the wire.
//
// Under comm.transport = tcp (or shm) every tensor shard is a process of its own. Rank 0 (the process
// the user started) runs the training loop; each operation it runs on its own shard it first sends, as
// a command, to the ranks that must take part (the tensor group's collectives need every shard of a
// replica; evaluation and files need replica 0's), which run it on theirs. One command is two messages
// from rank 0 under kShardCommandTag: a fixed header (op, argument, path length) and, when the path is
// not empty, the path's bytes. Plain code over comm::Transport, tested without processes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/comm/transport.h"

namespace troupe {

inline constexpr std::uint32_t kShardCommandTag = 0x7470'1000;

enum class ShardOp : std::int64_t {
  step,     // arg: the step; every rank
  eval,     // replica 0's ranks
  load,     // path: a weights file; every rank
  save,     // path: the file shard 0 writes; replica 0's ranks
  state,    // arg: steps done; a checkpoint's state, gathered; replica 0's ranks
  restore,  // path: the checkpoint every rank reads and restores its slices from; every rank
  copy,     // arg: the step whose boundary the rank stands at; it sends rank 0 a copy of its shard's state
            // (actors/tensor_shard_recovery.h); the ranks of one replica with restarts on
  end,      // the run is over: the rank process returns; every rank
};

struct ShardCommand {
  ShardOp op = ShardOp::end;
  std::int64_t arg = 0;
  std::string path;
  friend bool operator==(const ShardCommand&, const ShardCommand&) = default;
};

void send_command(comm::Transport& world, int to, const ShardCommand& command);

// The next command from `from`. Throws troupe::Error(kIo) naming `from` for a header that is no
// command, and the transport's errors (a dead or closed rank 0, a timeout).
ShardCommand recv_command(comm::Transport& world, int from);

// recv_command, waiting as long as it takes while `from` is alive: rank 0 may spend longer than the
// transport's timeout between two commands (measuring the CPU's peak before the first step, a replica
// other than 0 idle while replica 0 evaluates). A recv that fails after waiting about `timeout` timed
// out and is tried again; one that fails sooner failed for a reason (rank 0 dead or gone) and throws.
ShardCommand wait_command(comm::Transport& world, int from, std::chrono::milliseconds timeout);

}  // namespace troupe
