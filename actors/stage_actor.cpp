// The stage actor: deliver, advance, send; report at the optimizer step; apply on request.
#include "actors/stage_actor.h"

#include "actors/message_poll.h"
#include "actors/state/pipeline_driver.h"
#include "runtime/comm/group_aborted.h"

namespace troupe {

namespace {
using Self = caf::stateful_actor<StageActorState>;

// The step's groups were aborted (comm::GroupAborted: every replica re-runs the step): this stage is
// fine; it stops the step and waits for the re-run order. The error goes to whoever asked, who drops it.
caf::error abandon(Self* self) {
  self->state.running = false;
  self->state.abandoned = true;
  return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(ErrorKind::kIo),
                         "stage " + std::to_string(self->state.worker->stage()) + ": step abandoned");
}

// Runs `f`; a comm::GroupAborted abandons the step (any other exception ends the actor, as before).
template <class F>
auto unless_aborted(Self* self, F f) -> caf::result<decltype(f())> {
  try {
    return f();
  } catch (const comm::GroupAborted&) {
    return abandon(self);
  }
}

// Runs the worker as far as it can go and ships what it produced.
void pump_once(caf::stateful_actor<StageActorState>* self);
void pump(caf::stateful_actor<StageActorState>* self) {
  try {
    pump_once(self);
  } catch (const comm::GroupAborted&) {
    abandon(self);
  }
}

void pump_once(caf::stateful_actor<StageActorState>* self) {
  // A neighbour can start this step before the coordinator's run message reaches us: its messages wait
  // in the worker's inbox until then.
  if (!self->state.running) return;
  std::vector<Outgoing> out;
  StageWorker::Status status;
  do {
    out.clear();
    status = self->state.worker->advance(out);
    for (auto& o : out) {
      o.message.attempt = self->state.attempt;
      self->send(self->state.peers.at(o.to_stage), std::move(o.message));
    }
  } while (status == StageWorker::Status::sent);
  // fault.inject's mid-step kill: ended as a crash would end it, where the plan said.
  if (status == StageWorker::Status::killed) return self->quit(caf::exit_reason::kill);
  if (status == StageWorker::Status::at_step && !self->state.reported) {
    self->state.reported = true;
    StageWorker& w = *self->state.worker;
    // With data parallelism the last stage reports the whole batch's losses, gathered from its replicas.
    self->send(self->state.coordinator, proto::ready_atom::value, w.stage(), replicas_losses(w), w.tied_grad(),
               self->state.attempt);
  }
  // Mid-step and out of work: the next activation or gradient is usually close behind.
  if (status == StageWorker::Status::blocked) poll_for_message(self, self->state.poll);
}

// Begins the step (or its re-run) the coordinator ordered.
void start(caf::stateful_actor<StageActorState>* self, const proto::RunOrder& order) {
  auto& st = self->state;
  StageWorker& w = *st.worker;
  if (order.rewind) {
    w.rewind(order.step);
    // It never began the step (it died first): it stands at the step's start, which it keeps now, so that
    // a later rewind of this step finds it.
    if (w.boundary_step() != order.step) w.keep_boundary(order.step);
  } else if (order.keep_boundary) {
    w.keep_boundary(order.step);
  }
  st.attempt = order.attempt;
  // Restarts on: what this stage sends is kept until the step ends, for a neighbour that redoes it.
  w.keep_sent(order.keep_boundary || order.rewind);
  w.begin_step(order.batch, order.microbatches, order.loss_scale, order.row_block);
  st.reported = false;
  st.running = true;
  st.abandoned = false;
  // Neighbours that began this attempt first: their messages, kept until now.
  std::vector<StageMessage> early = std::move(st.early);
  st.early.clear();
  for (auto& m : early) {
    if (m.attempt == st.attempt) w.deliver(std::move(m));
    else if (m.attempt > st.attempt) st.early.push_back(std::move(m));
  }
  pump(self);
}

// The update is done (or its actor died): a re-run order that came meanwhile starts now.
void updated(caf::stateful_actor<StageActorState>* self) {
  self->state.updating = false;
  if (!self->state.pending_run) return;
  const proto::RunOrder order = std::move(*self->state.pending_run);
  self->state.pending_run.reset();
  start(self, order);
}
}  // namespace

std::function<caf::error(caf::scheduled_actor*, std::exception_ptr&)> failure_handler(std::string where) {
  return [where = std::move(where)](caf::scheduled_actor*, std::exception_ptr& eptr) -> caf::error {
    try {
      std::rethrow_exception(eptr);
    } catch (const Error& e) {
      return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(e.kind()), where + e.what());
    } catch (const std::exception& e) {
      return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(ErrorKind::kInternal), where + e.what());
    }
    return caf::make_error(caf::sec::runtime_error, static_cast<std::int32_t>(ErrorKind::kInternal),
                           where + "unknown exception");
  };
}

caf::behavior stage_actor(caf::stateful_actor<StageActorState>* self, StageWorker* worker, caf::actor optimizer,
                          std::chrono::microseconds poll) {
  self->state.worker = worker;
  self->state.poll = poll;
  self->state.optimizer = std::move(optimizer);
  self->set_exception_handler(failure_handler("stage " + std::to_string(worker->stage()) + ": "));
  return {
      [=](proto::peers_atom, const std::vector<caf::actor>& peers, const caf::actor& coordinator) {
        self->state.peers = peers;
        self->state.coordinator = coordinator;
      },
      [=](proto::run_atom, const proto::RunOrder& order) {
        if (self->state.updating) self->state.pending_run = order;
        else start(self, order);
      },
      [=](const StageMessage& message) {
        if (message.attempt < self->state.attempt) return;  // from an abandoned attempt
        if (message.attempt > self->state.attempt) return self->state.early.push_back(message);
        self->state.worker->deliver(message);
        pump(self);
      },
      [=](proto::optimizer_atom, const caf::actor& optimizer) { self->state.optimizer = optimizer; },
      // Stage `stage` restarted mid-step and redoes it alone from its boundary: it gets again everything
      // this stage sent it in the step (its peers handle names it already).
      [=](proto::resend_atom, int stage) {
        for (Outgoing& o : self->state.worker->resend_to(stage)) {
          o.message.attempt = self->state.attempt;
          self->send(self->state.peers.at(o.to_stage), std::move(o.message));
        }
      },
      [=](proto::finish_atom, const Tensor& tied_grad) {
        return unless_aborted(self, [&] { return self->state.worker->finish_step(tied_grad); });
      },
      [=](proto::apply_atom, double clip, double lr, bool skip) -> caf::result<Tensor> {
        self->state.running = false;
        if (skip) return unless_aborted(self, [&] { return self->state.worker->apply_step(clip, lr, true); });  // no update: weights and state stay
        // The optimizer-state actor updates the parameters; then this stage finishes the step and answers.
        auto answer = self->make_response_promise<Tensor>();
        self->state.updating = true;
        const std::uint64_t attempt = self->state.attempt;
        self->request(self->state.optimizer, caf::infinite, proto::update_atom::value, clip, lr)
            .then(
                [=](bool) mutable {
                  // Abandoned meanwhile: finishing would use a group the other replicas have left.
                  if (self->state.abandoned || self->state.attempt != attempt) {
                    answer.deliver(abandon(self));
                  } else {
                    try {
                      answer.deliver(self->state.worker->finish_update());
                    } catch (const comm::GroupAborted&) {
                      answer.deliver(abandon(self));
                    }
                  }
                  updated(self);
                },
                [=](caf::error& e) mutable {
                  answer.deliver(std::move(e));
                  updated(self);
                });
        return answer;
      },
      // The step's groups are aborted: stop it (a pump blocked in a collective has already thrown), and
      // answer once nothing of it runs any more.
      [=](proto::abandon_atom) {
        abandon(self);
        return true;
      },
      [=](proto::tied_atom, const Tensor& wte) {
        self->state.worker->set_tied_weight(wte);
        return true;
      },
  };
}

}  // namespace troupe
