// The replica actor: a pipeline replica's step, phase by phase, its supervisor's reports, and its
// one-for-one restarts.
#include "actors/replica_actor.h"

#include "actors/optimizer_actor.h"
#include "actors/stage_actor.h"
#include "actors/state/restart_scope.h"
#include "runtime/schedule/grid.h"

namespace troupe {

namespace {
// A step that makes no progress for this long is reported instead of waited on forever.
constexpr auto kStepTimeout = std::chrono::minutes(10);
// Restarts on: a failed request waits this long for the death behind it (which restarts the step) before
// it fails the step itself. A child's death reaches its monitor within microseconds.
constexpr auto kDeathGrace = std::chrono::seconds(5);

using Self = caf::stateful_actor<ReplicaActorState>;

enum class Helper { none, optimizer_state, gradient_exchange };

// A dead child, as its supervisor tells it.
struct Failure {
  ErrorKind kind = ErrorKind::kInternal;
  std::string child;   // the supervision node's name
  std::string cause;   // the child's own words (and the phase)
  std::string report;  // the supervisor's paragraph
  std::string grid;    // where each stage stood
};

std::string grid_of(Self* self) {
  PipelineDriver& driver = *self->state.driver;
  pipeline::GridOptions grid;
  grid.show_communication = true;
  for (int s = 0; s < driver.num_stages(); ++s) {
    const StageWorker& w = driver.stage(s);
    if (w.cursor() < w.program().size()) grid.marks.push_back({s, w.cursor()});
  }
  return "\nwhere each stage stood (marked):\n" +
         pipeline::render_grid(driver.schedule(), driver.num_stages(), driver.layout().virtual_stages, grid);
}

// The supervisor's account of a failed child of stage `stage` (or, for -1, whatever the error says),
// with the step x stage grid, each stage's position marked (">B3<").
Failure describe_failure(Self* self, const caf::error& reason, const char* during, int stage, std::int64_t step,
                         Helper helper) {
  Failure f;
  // A child's own failure carries (kind, text) (stage_actor.h: failure_handler); anything else is CAF's.
  std::string what = self->system().render(reason);
  const caf::message& ctx = reason.context();
  if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)) {
    f.kind = static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0));
    what = ctx.get_as<std::string>(1);
  }
  // No step in progress (a child died between steps): the supervisor says so, `during` adds nothing.
  f.cause = step < 0 ? what : what + " (" + during + ")";
  f.report = std::string("a pipeline stage failed ") + during + ": " + what;
  if (stage >= 0) {
    const supervision::Node& child = self->state.supervisor->node().children.at(static_cast<std::size_t>(stage));
    f.child = child.name;
    for (const supervision::Node& c : child.children)
      if ((helper == Helper::optimizer_state && c.kind == supervision::NodeKind::optimizer_state) ||
          (helper == Helper::gradient_exchange && c.kind == supervision::NodeKind::gradient_exchange))
        f.child = c.name;
    f.report = self->state.supervisor->on_down(f.child, step, f.cause).report;
  }
  f.grid = grid_of(self);
  return f;
}

// This pipeline as its answers name it (PipelineOptions::member).
int replica_of(Self* self) {
  const PipelineOptions& o = self->state.driver->options();
  return o.member >= 0 ? o.member : o.replica;
}

// Ends the step in progress (if any) with `failure`, which every later step repeats.
void fail(Self* self, std::pair<ErrorKind, std::string> failure) {
  auto& st = self->state;
  if (!st.failure) st.failure = std::move(failure);
  if (!st.step) return;
  st.step.reset();
  self->send(st.requester, proto::failed_atom::value, replica_of(self), static_cast<std::int32_t>(st.failure->first),
             st.failure->second);
}

// Tells the requester the failure every step now ends with.
void answer_failure(Self* self) {
  auto& st = self->state;
  self->send(st.requester, proto::failed_atom::value, replica_of(self), static_cast<std::int32_t>(st.failure->first),
             st.failure->second);
}

// Whether a reply belongs to the step and attempt in progress (an abandoned attempt's does not).
bool current(Self* self, std::uint64_t attempt) { return self->state.step && self->state.attempt == attempt; }

// A request of the current attempt failed. Without restarts that fails the step. With them, the failure
// is a child's death (a dead stage, or a stage whose optimizer-state actor died), whose down message
// restarts the step; should none come within kDeathGrace, the failure stands.
void request_failed(Self* self, std::uint64_t attempt, const caf::error& e, const char* during, int stage,
                    std::int64_t step) {
  auto& st = self->state;
  if (!current(self, attempt)) return;
  if (!st.restarts) {
    const Failure f = describe_failure(self, e, during, stage, step, Helper::none);
    return fail(self, {f.kind, f.report + f.grid});
  }
  if (!st.suspect) st.suspect = std::make_pair(ErrorKind::kInternal, std::string(during) + ": " + self->system().render(e));
  self->delayed_send(self, kDeathGrace, proto::check_atom::value, attempt);
}

// Runs `f` (a phase of the step coordinator); an exception (a non-finite step under stop) fails the step.
template <class F>
void guarded(Self* self, F f) {
  try {
    f();
  } catch (const Error& e) {
    fail(self, {e.kind(), e.what()});
  } catch (const std::exception& e) {
    fail(self, {ErrorKind::kInternal, e.what()});
  }
}

void finish(Self* self) {
  auto& st = self->state;
  TraceRecorder* trace = *st.trace;
  if (trace) trace->window(st.trace_begin, trace->now_us());
  const auto now = std::chrono::steady_clock::now();
  st.supervisor->intensity().recovered(std::chrono::duration<double>(now - st.born).count());
  const StepStats stats = st.step->stats(std::chrono::duration<double>(now - st.started).count());
  st.step.reset();
  st.suspect.reset();
  self->send(st.requester, proto::done_atom::value, replica_of(self), stats);
}

// Phase 4: the tied weight's replica on the last stage, then the answer.
void refresh_tied(Self* self) {
  auto& st = self->state;
  if (!st.step->tied_weight().defined()) return finish(self);
  const int last = st.step->last_stage();
  const std::int64_t step = st.step->step();
  const std::uint64_t attempt = st.attempt;
  self->request(st.stages[static_cast<std::size_t>(last)], caf::infinite, proto::tied_atom::value, st.step->tied_weight())
      .then([=](bool) {
              if (current(self, attempt)) finish(self);
            },
            [=](caf::error& e) { request_failed(self, attempt, e, "refreshing the tied embedding", last, step); });
}

// Phase 3: every stage applies the update (its optimizer-state actor does); stages work in parallel.
void apply(Self* self) {
  auto& st = self->state;
  const StepUpdate& u = st.step->update();
  const std::int64_t step = st.step->step();
  const std::uint64_t attempt = st.attempt;
  for (int i = 0; i < static_cast<int>(st.stages.size()); ++i)
    self->request(st.stages[static_cast<std::size_t>(i)], caf::infinite, proto::apply_atom::value, u.clip, u.lr, u.skip)
        .then(
            [=](Tensor& w) {
              if (!current(self, attempt)) return;
              ++self->state.progress;
              self->state.step->applied(i, std::move(w));
              if (self->state.step->all_applied()) refresh_tied(self);
            },
            [=](caf::error& e) { request_failed(self, attempt, e, "applying the optimizer step", i, step); });
}

// Phase 2: every stage finishes its backward (waits for its gradient exchange) and reports its
// gradients' sums of squares.
void finish_backward(Self* self) {
  auto& st = self->state;
  const std::int64_t step = st.step->step();
  const std::uint64_t attempt = st.attempt;
  for (int i = 0; i < static_cast<int>(st.stages.size()); ++i)
    self->request(st.stages[static_cast<std::size_t>(i)], caf::infinite, proto::finish_atom::value, st.step->tied_grad())
        .then(
            [=](std::vector<std::vector<double>>& v) {
              if (!current(self, attempt)) return;
              ++self->state.progress;
              self->state.step->finished(i, std::move(v));
              if (self->state.step->all_finished()) guarded(self, [&] { apply(self); });
            },
            [=](caf::error& e) { request_failed(self, attempt, e, "finishing the backward pass", i, step); });
}

// Checks, every kStepTimeout, that the step `step` is still moving.
void watch(Self* self, std::int64_t step, std::uint64_t progress) {
  self->delayed_send(self, kStepTimeout, proto::check_atom::value, step, progress);
}

void monitor_new(Self* self, std::vector<caf::actor>& known, const std::vector<caf::actor>& given) {
  known.resize(given.size());
  for (std::size_t i = 0; i < given.size(); ++i)
    if (given[i] && given[i] != known[i]) {
      known[i] = given[i];
      self->monitor(known[i]);
    }
}

// Phase 1 of the step in progress, as attempt st.attempt: every stage begins (rewind: re-runs) it.
void run_stages(Self* self, std::int64_t step, bool rewind) {
  auto& st = self->state;
  guarded(self, [&] {
    const StepCoordinator::Start begin = st.step->begin(step, st.driver->dataset());
    st.start = begin;
    const proto::RunOrder order{begin.batch, begin.microbatches, begin.loss_scale, begin.rows_per_sample,
                                step,        st.attempt,         st.restarts && !rewind, rewind};
    for (auto& a : st.stages) self->send(a, proto::run_atom::value, order);
  });
  if (rewind)
    st.supervisor->intensity().rerun(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - st.born).count());
}

// Where a mid-step clause strikes in a stage's program: its first Forward (or Backward) of the clause's
// micro-batch, in program order (config_loader checks the micro-batch exists).
std::size_t fault_point(const pipeline::Program& program, const supervision::FaultClause& c) {
  for (std::size_t i = 0; i < program.size(); ++i) {
    const bool pass = c.pass == supervision::FaultPass::forward ? std::holds_alternative<pipeline::Forward>(program[i])
                                                                : std::holds_alternative<pipeline::Backward>(program[i]);
    if (pass && pipeline::microbatch_of(program[i]) == c.microbatch) return i;
  }
  return program.size();
}

// fault.inject: the clauses of step `step` that act before the stages begin it (throw, nan), then,
// after, those that end an actor (kill). One clause per actor and attempt: a second clause for the same
// actor and step fires in the re-run (a fault during the re-run).
void inject(Self* self, std::int64_t step, bool before_run) {
  auto& st = self->state;
  // Actors with an earlier clause at this step (fired in this attempt, or still waiting).
  if (before_run) st.fired.clear();
  std::vector<std::pair<supervision::FaultTarget, int>> hit = st.fired;
  for (auto it = st.faults.begin(); it != st.faults.end();) {
    const supervision::FaultClause c = *it;
    const bool kill = c.action == supervision::FaultAction::kill;
    // A kill as the step begins is sent after the run orders; every other fault is armed on the worker first.
    const bool sent_after_run = kill && c.microbatch < 0;
    const auto actor = std::make_pair(c.target, c.index);
    if (c.step != step || sent_after_run == before_run || std::find(hit.begin(), hit.end(), actor) != hit.end()) {
      if (c.step == step) hit.push_back(actor);
      ++it;
      continue;
    }
    hit.push_back(actor);
    st.fired.push_back(actor);
    it = st.faults.erase(it);
    StageWorker& w = st.driver->stage(c.index);
    const auto s = static_cast<std::size_t>(c.index);
    if (c.microbatch >= 0) {  // mid-step: the worker stops (kill) or throws where the clause says
      const std::size_t at = fault_point(w.program(), c);
      if (kill) w.inject_kill(at);
      else w.inject_fault(at);
    } else if (kill) {
      self->send_exit(c.target == supervision::FaultTarget::stage ? st.stages[s] : st.optimizers[s],
                      caf::exit_reason::kill);
    } else if (c.action == supervision::FaultAction::nan) {
      w.inject_nan();
    } else if (c.target == supervision::FaultTarget::optimizer) {
      w.inject_update_fault();
    } else {  // the stage's first backward (between steps the stage actor is idle: its worker is ours)
      std::size_t at = 0;
      while (at < w.program().size() && !std::holds_alternative<pipeline::Backward>(w.program()[at])) ++at;
      w.inject_fault(at);
    }
  }
}

// Abandon round `round` (group restarts): every stage stops the step (a stage blocked in an aborted
// collective has thrown out of it); then every bucket submitted to a gradient-exchange actor and every
// update asked of an optimizer-state actor is done. Then nothing of this replica touches a group, and
// the requester hears (quiet_atom). A child that dies meanwhile counts as stopped (its restart is
// reported separately, and the re-run covers it).
void quiesce(Self* self, std::uint64_t round) {
  auto& st = self->state;
  auto stages_left = std::make_shared<std::size_t>(st.stages.size());
  auto stage_stopped = [=] {
    if (self->state.round != round || --*stages_left != 0) return;
    std::vector<caf::actor> helpers;
    for (const auto* v : {&self->state.exchanges, &self->state.optimizers})
      for (const caf::actor& a : *v)
        if (a) helpers.push_back(a);
    auto helpers_left = std::make_shared<std::size_t>(helpers.size());
    auto helper_done = [=] {
      if (self->state.round == round && --*helpers_left == 0)
        self->send(self->state.requester, proto::quiet_atom::value, replica_of(self), round);
    };
    if (helpers.empty()) return self->send(self->state.requester, proto::quiet_atom::value, replica_of(self), round);
    for (const caf::actor& a : helpers)
      self->request(a, caf::infinite, proto::quiet_atom::value).then([=](bool) { helper_done(); },
                                                                      [=](caf::error&) { helper_done(); });
  };
  for (const caf::actor& a : st.stages)
    self->request(a, caf::infinite, proto::abandon_atom::value).then([=](bool) { stage_stopped(); },
                                                                      [=](caf::error&) { stage_stopped(); });
}

// The interrupted step again, as a new attempt: every stage rewinds to its boundary; faults meant for
// the re-run fire.
void rerun(Self* self, std::int64_t step) {
  inject(self, step, true);
  run_stages(self, step, true);
  inject(self, step, false);
}

// One-for-one: child `stage`'s dead actor (`helper`: its optimizer-state actor) is spawned again on the
// same StageWorker; then, mid-step, every optimizer-state actor is waited for (an update of the
// abandoned attempt may still be running on a worker) and the step is re-run as a new attempt.
// The facts restart_scope() decides on, for child `stage` (`helper`: its optimizer-state actor) now dead.
RestartScope scope_of(Self* self, int stage, Helper helper) {
  auto& st = self->state;
  RestartFacts f;
  f.mid_step = st.step.has_value();
  if (!f.mid_step) return restart_scope(f);
  const std::int64_t step = st.step->step();
  f.optimizer_state = helper == Helper::optimizer_state;
  f.forward_backward = !st.step->all_ready();
  f.reported_ready = st.step->has_ready(stage);
  // The dead actor's worker is idle now (its thread has ended): reading it races with nothing.
  f.can_redo_alone = helper == Helper::none && st.driver->stage(stage).can_redo_alone();
  f.faults_pending = faults_pending_for(st.faults, step, f.optimizer_state ? -1 : stage);
  f.group_round = st.group_round;
  return restart_scope(f);
}

// RestartScope::stage_alone: the new stage actor redoes the step from its boundary, in the same attempt;
// every other stage keeps its work and sends it again what it had sent it. Ordered so that nothing
// reaches the new actor before its run order: its peers and run order first, then the others' new
// peers and their resends (which they send only after that).
void redo_alone(Self* self, int stage) {
  auto& st = self->state;
  const std::int64_t step = st.step->step();
  const auto s = static_cast<std::size_t>(stage);
  const caf::actor me = caf::actor_cast<caf::actor>(self);
  self->send(st.stages[s], proto::peers_atom::value, st.stages, me);
  inject(self, step, true);  // only this stage's clauses wait (restart_scope): its fault in the redo
  const StepCoordinator::Start& b = *st.start;
  const proto::RunOrder order{b.batch, b.microbatches, b.loss_scale, b.rows_per_sample, step, st.attempt, false, true};
  self->send(st.stages[s], proto::run_atom::value, order);
  inject(self, step, false);
  for (std::size_t i = 0; i < st.stages.size(); ++i) {
    if (i == s) continue;
    self->send(st.stages[i], proto::peers_atom::value, st.stages, me);
    self->send(st.stages[i], proto::resend_atom::value, stage);
  }
  st.supervisor->intensity().rerun(std::chrono::duration<double>(std::chrono::steady_clock::now() - st.born).count());
}

void restart(Self* self, int stage, Helper helper, const std::string& child) {
  auto& st = self->state;
  const RestartScope scope = scope_of(self, stage, helper);
  if (scope == RestartScope::whole_step) ++st.attempt;
  st.suspect.reset();
  const auto s = static_cast<std::size_t>(stage);
  StageWorker* worker = &st.driver->stage(stage);
  if (helper == Helper::optimizer_state) {
    st.optimizers[s] = self->system().spawn(optimizer_actor, worker);
    self->monitor(st.optimizers[s]);
    self->send(st.stages[s], proto::optimizer_atom::value, st.optimizers[s]);
  } else {
    st.stages[s] = self->system().spawn<caf::detached>(stage_actor, worker, st.optimizers[s],
                                                       std::chrono::microseconds(st.driver->config().comm.poll_us));
    self->monitor(st.stages[s]);
  }
  st.supervisor->on_restart(child);
  if (scope == RestartScope::stage_alone) return redo_alone(self, stage);
  const caf::actor me = caf::actor_cast<caf::actor>(self);
  for (auto& a : st.stages) self->send(a, proto::peers_atom::value, st.stages, me);
  if (!st.step) return;  // between steps: the next step begins as usual
  if (scope == RestartScope::nothing) {  // the step goes on: the new optimizer-state actor does its update
    st.supervisor->intensity().rerun(std::chrono::duration<double>(std::chrono::steady_clock::now() - st.born).count());
    return;
  }
  if (st.group) {        // the group's supervisor re-runs the step on every replica
    self->send(st.requester, proto::interrupted_atom::value, replica_of(self), st.step->step(), st.round);
    return;
  }
  const std::uint64_t attempt = st.attempt;
  auto left = std::make_shared<std::size_t>(st.optimizers.size());
  for (auto& o : st.optimizers)
    self->request(o, caf::infinite, proto::quiet_atom::value)
        .then(
            [=](bool) {
              if (current(self, attempt) && --*left == 0) rerun(self, self->state.step->step());
            },
            [](caf::error&) {});  // that optimizer-state actor died: its own restart re-runs the step
}
}  // namespace

Error replica_failure(std::int32_t kind, const std::string& report) { return Error(static_cast<ErrorKind>(kind), report); }

caf::behavior replica_actor(Self* self, PipelineDriver* driver, supervision::Supervisor* supervisor,
                            TraceRecorder* const* trace) {
  self->state.driver = driver;
  self->state.supervisor = supervisor;
  self->state.trace = trace;
  // Replicas in other processes that do not restart (see the header): no boundary copies either.
  const PipelineOptions& options = driver->options();
  self->state.group = options.group_restarts && (options.replicas > 1 || !options.tensor_groups.empty());
  self->state.restarts =
      supervisor->intensity().max_restarts() > 0 && (driver->options().replicas == 1 || self->state.group);
  // This pipeline's clauses: its replica's, and its tensor shard's (a stage or optimizer clause is shard
  // 0's; "shard T of stage P" is stage P of tensor rank T's pipeline). Rank clauses are the process's
  // (runner.cpp).
  const int shard = options.tensor_groups.empty() ? 0 : options.tensor_groups.front().rank();
  for (supervision::FaultClause c : supervision::parse_fault_plan(driver->config().fault.inject).clauses)
    if (c.replica == options.replica && c.shard == shard && c.target != supervision::FaultTarget::rank) {
      if (c.target == supervision::FaultTarget::shard) c.target = supervision::FaultTarget::stage;
      self->state.faults.push_back(c);
    }
  self->set_down_handler([=](caf::down_msg& down) {
    auto& st = self->state;
    int stage = -1;
    Helper helper = Helper::none;
    for (std::size_t i = 0; i < st.stages.size(); ++i) {
      if (down.source == st.stages[i].address()) stage = static_cast<int>(i);
      if (i < st.optimizers.size() && down.source == st.optimizers[i].address())
        stage = static_cast<int>(i), helper = Helper::optimizer_state;
      if (i < st.exchanges.size() && st.exchanges[i] && down.source == st.exchanges[i].address())
        stage = static_cast<int>(i), helper = Helper::gradient_exchange;
    }
    // Not a child (or an old one, restarted since), the step already failed (its peers follow), or the
    // owner ending the pipeline.
    if (stage < 0 || st.failure || down.reason == caf::exit_reason::user_shutdown) return;
    const std::int64_t step = st.step ? st.step->step() : -1;
    const Failure f = describe_failure(self, down.reason, "during the forward/backward pass", stage, step, helper);
    if (!st.restarts || helper == Helper::gradient_exchange) {
      const bool wanted = st.supervisor->intensity().max_restarts() > 0;
      const char* why = helper == Helper::gradient_exchange
                            ? "\nno restart: a gradient-exchange actor is not restarted yet (its collective "
                              "would have to start over on every replica); the job stops"
                            : "\nno restart: this replica's peers are processes that do not restart here (see "
                              "docs/failures.md, Replica processes), and every replica would have to re-run the "
                              "step together; the job stops";
      return fail(self, {f.kind, f.report + (wanted ? why : "") + f.grid});
    }
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - st.born).count();
    if (!st.supervisor->intensity().allow(f.child, step, f.cause, now))
      return fail(self, {f.kind, st.supervisor->intensity().escalation(st.supervisor->place(f.child), step, f.cause,
                                                                      driver->config().train.checkpoint_dir) +
                                     f.grid});
    restart(self, stage, helper, f.child);
  });
  return {
      [=](proto::children_atom, const std::vector<caf::actor>& stages, const std::vector<caf::actor>& optimizers,
          const std::vector<caf::actor>& exchanges) {
        monitor_new(self, self->state.stages, stages);
        monitor_new(self, self->state.optimizers, optimizers);
        monitor_new(self, self->state.exchanges, exchanges);
      },
      [=](proto::children_atom) {
        std::vector<caf::actor> all;
        for (const auto* v : {&self->state.stages, &self->state.optimizers, &self->state.exchanges})
          for (const caf::actor& a : *v)
            if (a) all.push_back(a);
        return all;
      },
      [=](proto::step_atom, std::int64_t step) {
        auto& st = self->state;
        st.requester = caf::actor_cast<caf::actor>(self->current_sender());
        if (st.failure) {
          self->send(st.requester, proto::failed_atom::value, replica_of(self), static_cast<std::int32_t>(st.failure->first),
                     st.failure->second);
          return;
        }
        TROUPE_CHECK(!st.step, "step ", step, " requested while a step is in progress");
        st.started = std::chrono::steady_clock::now();
        st.trace_begin = *st.trace ? (*st.trace)->now_us() : 0.0;
        st.step.emplace(driver->config(), driver->options(), driver->layout(), [driver] { return driver->params_in_order(); });
        inject(self, step, true);
        run_stages(self, step, false);
        inject(self, step, false);
        watch(self, step, st.progress);
      },
      // Phase 1: every stage reports when it stands at its optimizer step.
      [=](proto::ready_atom, int stage, std::vector<Tensor>& losses, Tensor& tied, std::uint64_t attempt) {
        auto& st = self->state;
        if (!current(self, attempt)) return;
        ++st.progress;
        st.step->ready(stage, std::move(losses), std::move(tied));
        if (st.step->all_ready()) finish_backward(self);
      },
      [=](proto::check_atom, std::int64_t step, std::uint64_t progress) {
        auto& st = self->state;
        if (!st.step || st.step->step() != step) return;
        if (st.progress != progress) return watch(self, step, st.progress);
        fail(self, {ErrorKind::kInternal, "pipeline step " + std::to_string(step) + ": no progress for 10 minutes"});
      },
      [=](proto::check_atom, std::uint64_t attempt) {
        auto& st = self->state;
        if (current(self, attempt) && st.suspect) fail(self, *st.suspect);
      },
      // The group's supervisor (data_parallel.h): abandon the step, whatever phase it reached — or, done
      // already, undo it — and say when none of this replica's actors uses a group any more.
      [=](proto::abandon_atom, std::int64_t step, std::uint64_t round) {
        auto& st = self->state;
        st.round = round;
        st.group_round = true;
        if (st.failure) return answer_failure(self);
        ++st.attempt;
        st.suspect.reset();
        if (!st.step) {  // this replica had finished the step: it is re-run all the same
          st.step.emplace(driver->config(), driver->options(), driver->layout(), [driver] { return driver->params_in_order(); });
          st.started = std::chrono::steady_clock::now();
        }
        (void)step;
        quiesce(self, round);
      },
      [=](proto::rerun_atom, std::int64_t step, std::uint64_t round) {
        auto& st = self->state;
        st.round = round;
        st.group_round = false;
        if (st.failure) return answer_failure(self);
        rerun(self, step);
        watch(self, step, st.progress);
      },
      // Another replica failed for good: so does this one's step, and every later step.
      [=](proto::stop_atom, std::int32_t kind, const std::string& report) {
        auto& st = self->state;
        if (!st.failure) st.failure = std::make_pair(static_cast<ErrorKind>(kind), report);
        st.step.reset();
        answer_failure(self);
      },
  };
}

}  // namespace troupe
