// Which collective backend a group gets: NCCL only when every rank is its own GPU; the CPU ring otherwise.
#include <catch2/catch.hpp>

#include "net/nccl/nccl_group.h"

using namespace troupe;
using namespace troupe::nccl;

TEST_CASE("NCCL for distinct GPUs, the CPU ring for CPU members, a shared GPU, or no NCCL", "[nccl]") {
  const std::vector<GroupMember> two_gpus{{"", Device::cuda(0)}, {"", Device::cuda(1)}};
  BackendChoice c = choose_collective_backend(two_gpus, true);
  CHECK(c.use_nccl);
  CHECK(c.reason == "NCCL: 2 ranks, one GPU each");

  c = choose_collective_backend(two_gpus, false);
  CHECK_FALSE(c.use_nccl);
  CHECK_THAT(c.reason, Catch::Contains("no NCCL"));

  // One GPU shared by several ranks (the one-GPU machine) cannot form a communicator.
  c = choose_collective_backend({{"", Device::cuda(0)}, {"", Device::cuda(1)}, {"", Device::cuda(0)}}, true);
  CHECK_FALSE(c.use_nccl);
  CHECK(c.reason == "CPU ring: ranks 0 and 2 share cuda:0; an NCCL communicator needs one GPU per rank");

  // The same index on two hosts is two GPUs.
  CHECK(choose_collective_backend({{"a", Device::cuda(0)}, {"b", Device::cuda(0)}}, true).use_nccl);
  c = choose_collective_backend({{"a", Device::cuda(0)}, {"a", Device::cuda(0)}}, true);
  CHECK_THAT(c.reason, Catch::Contains("share cuda:0 on a"));

  c = choose_collective_backend({{"", Device::cuda(0)}, {"", Device::cpu()}}, true);
  CHECK_FALSE(c.use_nccl);
  CHECK_THAT(c.reason, Catch::Contains("rank 1 is on cpu:0"));

  CHECK_FALSE(choose_collective_backend({{"", Device::cuda(0)}}, true).use_nccl);
#ifdef TROUPE_HAVE_NCCL
  CHECK(nccl_built());
#else
  CHECK_FALSE(nccl_built());
#endif
}
