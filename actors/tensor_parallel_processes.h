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
//
// Restarts (fault.max_restarts > 0 over tcp; docs/failures.md): every shard keeps its step-boundary copy
// as a step begins, and the world is a comm::ReformableTransport whose failures abandon the step. A rank
// process that dies (killed, crashed, its step threw) or hangs (its heartbeats stop; it is killed) makes
// every process abandon the step: each breaks its world, so all learn of it at once. Rank 0 reaps the
// dead process and starts a new one with the same rank (within fault.max_restarts in
// fault.restart_window_s, past which it stops the job naming the rank, its place and each restart);
// the survivors — the same processes — join it in a new world on the rendezvous listener rank 0 kept
// bound; every process says where it stands and rank 0 names the step it re-runs (its own) and who
// hands the new process its shard's state (actors/tensor_shard_recovery.h): the shard of the same
// tensor index in another replica, or, with one replica, the copy rank 0 keeps of every other shard's
// step-boundary state, sent to it after every step (runtime/supervision/shard_copies.h). Then the step
// is re-run: in deterministic mode the run goes on bitwise as if nothing happened. Rank 0's own shard
// actor, killed or failing, is restarted in place and the other processes re-run the step with it.
// Rank 0 is the one process not restarted: its death ends the run (the ranks follow it), and
// `troupe train --resume` continues from the newest checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/runner.h"
#include "runtime/plan/topology.h"

namespace troupe {

// Whether the shard processes restart: "" when they do, else why not ("fault.max_restarts = 0").
std::string shard_restart_refusal(const RunConfig& config);

// Rank 0's job. `args`: the command line the rank processes are started with (plus --rank r).
std::unique_ptr<Job> launch_tensor_parallel_processes(const RunConfig& config, const plan::Topology& topology,
                                                      const std::vector<std::string>& args);

// A rank process rank 0 started: joins the world, runs rank 0's commands on its shard until the end.
// Dies abruptly (as a killed process would) before step `crash_at` when it is >= 0 (the failure drill).
// A process rank 0 restarted (kRejoinEnv, actors/process_recovery.h) takes its shard's state first.
// Errors name the rank and its coordinate.
void run_tensor_shard_process(const RunConfig& config, const plan::Topology& topology, int rank, long long crash_at);

}  // namespace troupe
