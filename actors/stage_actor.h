// Owns the stage actor: a thin CAF shell mapping protocol messages onto a StageWorker.
#pragma once

#include <chrono>
#include <optional>

#include "actors/protocol.h"

namespace troupe {

struct StageActorState {
  StageWorker* worker = nullptr;  // owned by the coordinator, which outlives the actor
  caf::actor optimizer;           // this stage's optimizer-state actor (optimizer_actor.h)
  std::vector<caf::actor> peers;
  caf::actor coordinator;
  bool running = false;   // between run_atom and apply_atom; messages may arrive before run_atom
  bool reported = false;
  // Restarts: the attempt this stage runs (RunOrder::attempt); messages of a later one, which a
  // neighbour sends once it began the re-run, wait here until this stage begins it too.
  std::uint64_t attempt = 0;
  std::vector<StageMessage> early;
  // Its optimizer-state actor is updating the worker: a re-run order waits until it is done (the
  // rewind would race with the update).
  bool updating = false;
  std::optional<proto::RunOrder> pending_run;
  // The step was abandoned (its groups aborted, abandon_atom): nothing more of it runs — no pump, no
  // finish of an update still in flight — until the next run order.
  bool abandoned = false;
  std::chrono::microseconds poll{0};  // comm.poll_us: how long an idle stage polls for its next message
  static inline const char* name = "troupe.stage";
};

// Runs as a detached actor (its own thread: the CPU "device" the stage is pinned to); `optimizer` applies
// its updates. Mid-step and out of work, it polls its mailbox for up to `poll` (message_poll.h).
caf::behavior stage_actor(caf::stateful_actor<StageActorState>* self, StageWorker* worker, caf::actor optimizer,
                          std::chrono::microseconds poll);

// An actor's exception handler that ends it with (its error's kind, `where` + its text) as the exit
// reason, so the coordinator can say what failed and keep the kind (a dead peer stays an I/O failure).
std::function<caf::error(caf::scheduled_actor*, std::exception_ptr&)> failure_handler(std::string where);

}  // namespace troupe
