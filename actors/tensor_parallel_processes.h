// Owns tensor-parallel shards as processes: under comm.transport = tcp (or shm) each of the parallel.data x parallel.tensor ranks is a process running one shard, its tensor-shard actor, over one transport of every rank, the tensor and data groups views of it.
//
// Rank 0 (the process the user started) binds the rendezvous, starts ranks 1..D·T-1 as copies of
// itself (runtime/process/replica_processes.h: heartbeats, parent watch, no stray process after a
// failure), joins them in one TCP (or shared-memory) world and runs shard (0, 0). Rank r is the
// Topology's rank r = d·T + t (runtime/plan/topology.h): its tensor group is the ranks of replica d,
// its data group those of tensor rank t, each a comm::SubgroupTransport over the world, so the layers'
// collectives (runtime/comm/tensor_parallel_ops.h) and the data-parallel gradient sum run over the
// real transport unchanged. Rank 0's Job sends each operation to the ranks that take part in it
// (actors/tensor_shard_commands.h) before running it on its own shard; every rank process runs the
// commands on its shard until the end. Each shard is run by a detached tensor-shard actor
// (actors/tensor_shard_actor.h), as in one process; a shard that throws aborts its world, so its
// peers fail at once, naming it, instead of waiting out comm.timeout_s.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/runner.h"
#include "runtime/plan/topology.h"

namespace troupe {

// Rank 0's job. `args`: the command line the rank processes are started with (plus --rank r).
std::unique_ptr<Job> launch_tensor_parallel_processes(const RunConfig& config, const plan::Topology& topology,
                                                      const std::vector<std::string>& args);

// A rank process rank 0 started: joins the world, runs rank 0's commands on its shard until the end.
// Dies abruptly (as a killed process would) before step `crash_at` when it is >= 0 (the failure drill).
// Errors name the rank and its coordinate.
void run_tensor_shard_process(const RunConfig& config, const plan::Topology& topology, int rank, long long crash_at);

}  // namespace troupe
