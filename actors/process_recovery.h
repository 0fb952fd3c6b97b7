// Owns ProcessRecovery: how the replica processes of a data-parallel group (comm.transport = tcp) carry on
// when one of them dies or hangs — rank 0 restarts it, every process forms the groups again, and the state
// moves live from rank 0 to whichever process does not stand at the step to re-run (no checkpoint read).
//
// After every process has abandoned the interrupted step (DataParallelTrainer, actors/data_parallel.h):
//   1. rank 0 binds its rendezvous addresses again and waits for every rank to join; meanwhile it reaps
//      each rank process that ended (killed, crashed, or killed by its heartbeats for hanging) and starts
//      a new one with the same rank — within fault.max_restarts in fault.restart_window_s, past which it
//      stops the job with an error naming the rank, its place and each restart before;
//   2. the survivors (never restarted: same processes) and the new process join; the groups form again;
//   3. agreement, over stage 0's new group: each rank tells rank 0 the step whose boundary it can rewind to
//      (its kept copy; -1 for a new process); rank 0 answers with the step it re-runs — its own — and sends
//      its whole training state (state_bytes.h) to every rank that stands elsewhere;
//   4. every process re-runs that step. In deterministic mode the run goes on bitwise as if nothing happened.
// Rank 0 is the one process that is not restarted: its death ends the run (its ranks follow it,
// runtime/process/parent_watch.h), and `troupe train --resume` continues from the newest checkpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint/training_state.h"
#include "runtime/comm/transport.h"
#include "runtime/config/run_config.h"
#include "runtime/supervision/forwarded_restarts.h"
#include "runtime/supervision/restart_intensity.h"

namespace troupe {

class ReplicaProcesses;

// Whether a multi-process data-parallel run restarts its dead replica processes: fault.max_restarts > 0
// over tcp, with nothing a dead replica keeps alone (ZeRO-1 shards, compression residuals, synchronised
// batch-norm groups) and ranks that rank 0 started itself. "" when it does, else why not.
std::string process_restart_refusal(const RunConfig& config, bool launcher_started);

// What the processes agreed on: the step every process runs next, and rank 0's state when this process
// does not stand at that step's boundary.
struct Agreement {
  std::int64_t step = 0;
  std::optional<TrainingState> state;
};

// The groups of one process after a re-form, and what it runs next.
struct ReformedGroups {
  std::vector<std::unique_ptr<comm::Transport>> transports;  // one per group, in the rendezvous order
  std::vector<std::function<void()>> breakers;                // each ends its transport without a goodbye
  Agreement agreed;
};

class ProcessRecovery {
 public:
  // Connects every group of this rank (one rendezvous each); rank 0 calls `while_waiting` as it waits.
  using Connect = std::function<ReformedGroups(const std::function<void()>& while_waiting)>;

  // `processes`: rank 0's rank processes (null on the others).
  ProcessRecovery(const RunConfig& config, int rank, Connect connect, ReplicaProcesses* processes);

  // Steps 1-3 above. `boundary`: the step whose boundary this process stands at (-1: none);
  // `gather`: this process's whole training state (rank 0 calls it when some rank needs it); `cause`:
  // what interrupted this process (its first failed call), "" when one of its own actors died and was
  // restarted (its replica counted that). On rank 0, a round in which no rank process died and no actor of
  // its own (a collective timed out, an actor died in another process) counts toward the restart intensity
  // too, as the group's own restart, so that a step that keeps failing ends in the escalation, not a loop.
  // Rank 0 throws troupe::Error past the restart intensity; any process throws when the group cannot form.
  ReformedGroups reform(std::int64_t boundary, std::int64_t step, const std::function<TrainingState()>& gather,
                        const std::string& cause = {});
  // Step 3 alone, over stage 0's group `t`, formed already (a restarted process joins this way).
  Agreement agree(comm::Transport& t, std::int64_t boundary, const std::function<TrainingState()>& gather);

  // After the last step, over stage 0's group `t` (a ReformableTransport): returns once every process has
  // run every step (each tells rank 0, which answers all), so that none leaves while another may still need
  // it to re-run a step; a failure meanwhile throws comm::GroupAborted.
  void barrier(comm::Transport& t);

  // The re-run was ordered / its step is done: the restarts' recovery times (rank 0), and the restarts the
  // rank processes reported so far.
  void rerun_ordered();
  void step_done();
  // Rank 0: takes the restarts the rank processes reported since (their actors', restarted inside them).
  void collect_forwarded();
  // Rank 0: every restart so far, with its step, cause and recovery times — its own of rank processes and
  // of the group, then those the rank processes reported (child "rank R/...").
  std::vector<supervision::Restart> restarts() const;
  // Rank r > 0 started by rank 0: what sends rank 0 each restart of this process's own actors as its
  // replica's supervisor records it and as its times become known (RestartIntensity::observe); empty where
  // there is no rank 0 to tell (a launcher started this rank).
  static supervision::RestartIntensity::Observer restart_forwarder(int rank);
  // The same for the escalation of this process's replica supervisor (past fault.max_restarts): rank 0 then
  // stops the job when this process ends, as when its own supervisor gives up, instead of restarting it.
  static supervision::RestartIntensity::EscalationObserver escalation_forwarder(int rank);
  int max_restarts() const { return intensity_.max_restarts(); }

 private:
  double now_s() const;
  // Rank 0: reaps every rank process that ended and starts it again (or throws past the intensity, or
  // when the process ended because its own supervisor gave up).
  void restart_dead(std::int64_t step);
  // Rank 0: whether a restart a rank process reported for `step` explains a re-form in which no rank died.
  bool explained(std::int64_t step);

  RunConfig config_;
  int rank_;
  Connect connect_;
  ReplicaProcesses* processes_;
  supervision::RestartIntensity intensity_;
  supervision::ForwardedRestarts forwarded_;  // rank 0: the rank processes' own restarts
  int restarted_ = 0;  // rank processes restarted so far
  std::chrono::steady_clock::time_point born_ = std::chrono::steady_clock::now();
};

// Set in the environment of a rank process rank 0 started again: it joins the group being re-formed.
inline constexpr const char* kRejoinEnv = "TROUPE_REJOIN";

}  // namespace troupe
