// Owns the parameter-server protocol: every atom and message type PS shard actors and their clients
// exchange (CAF 0.17).
//
//   worker -> shard   (ps_push_atom, PsPush)          -> int64_t version       gradients of one step
//   worker -> shard   (ps_pull_atom, PsPullRequest)   -> PsPullReply           parameters for one step;
//                                                        answered late when the mode says wait
//   worker -> shard   (ps_norm_atom, int64_t step)    -> std::vector<double>   clipping round (sync, clip):
//                                                        sums of squares once the step is summed
//   worker -> shard   (ps_clip_atom, int64_t step, double coefficient) -> int64_t version   apply the step
//   driver -> shard   (ps_snap_atom)                  -> PsSnapshot            the shard's whole slice
//   driver -> shard   (ps_save_atom)                  -> PsShardState          a checkpoint's share (between steps)
//   driver -> shard   (ps_load_atom, PsShardState, int64_t steps_done) -> int64_t version   restore it
// A bad push or pull is answered with an error (sec::runtime_error, the troupe::Error text); the shard
// keeps running. Tensors travel by reference inside one process (unsafe message types, as the pipeline's),
// so these messages never leave the process.
#pragma once

#include <caf/all.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "actors/state/ps/ps_shard.h"

namespace troupe::ps {

// A shard's whole state for inspection: dense values (dense_of_shard order), table slices [local rows, dim].
struct PsSnapshot {
  int shard = 0;
  std::int64_t version = 0;
  std::vector<Tensor> dense;
  std::vector<Tensor> tables;
  std::size_t state_bytes = 0;
};

namespace proto {
using ps_push_atom = caf::atom_constant<caf::atom("ps_push")>;
using ps_pull_atom = caf::atom_constant<caf::atom("ps_pull")>;
using ps_snap_atom = caf::atom_constant<caf::atom("ps_snap")>;
using ps_norm_atom = caf::atom_constant<caf::atom("ps_norm")>;
using ps_clip_atom = caf::atom_constant<caf::atom("ps_clip")>;
using ps_save_atom = caf::atom_constant<caf::atom("ps_save")>;
using ps_load_atom = caf::atom_constant<caf::atom("ps_load")>;
}  // namespace proto

}  // namespace troupe::ps

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::PsPush)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::PsPullRequest)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::PsPullReply)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::PsSnapshot)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::ps::PsShardState)
