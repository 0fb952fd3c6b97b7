// Owns the choice of collective backend for a group: NCCL when every member is its own GPU, else the CPU ring.
//
// NCCL needs one GPU per rank: two ranks of one communicator on the same device deadlock or fail at
// init. So a group uses NCCL only when every member is a CUDA device and no two members share a
// device on the same host; otherwise (a CPU member, a GPU shared by several ranks — the one-GPU
// machine — or a build without NCCL) it falls back to runtime/comm's ring over the actor transport.
#pragma once

#include <string>
#include <vector>

#include "runtime/device.h"

namespace troupe::nccl {

struct GroupMember {
  std::string host;  // where the rank runs ("" = this host)
  Device device;
};

struct BackendChoice {
  bool use_nccl = false;
  std::string reason;  // why, in words: printed with the run's topology
};

// `nccl_built`: this build has NCCL (TROUPE_HAVE_NCCL).
BackendChoice choose_collective_backend(const std::vector<GroupMember>& members, bool nccl_built);

// True when this build has NCCL.
bool nccl_built();

}  // namespace troupe::nccl
