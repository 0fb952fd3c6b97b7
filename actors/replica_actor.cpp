// The replica actor: a pipeline replica's step, phase by phase, and its supervisor's reports.
#include "actors/replica_actor.h"

#include "runtime/schedule/grid.h"

namespace troupe {

namespace {
// A step that makes no progress for this long is reported instead of waited on forever.
constexpr auto kStepTimeout = std::chrono::minutes(10);

using Self = caf::stateful_actor<ReplicaActorState>;

enum class Helper { none, optimizer_state, gradient_exchange };

// The supervisor's report on a failed child of stage `stage` (or, for -1, whatever the error says),
// with the step x stage grid, each stage's position marked (">B3<").
std::pair<ErrorKind, std::string> failure_report(Self* self, const caf::error& reason, const char* during, int stage,
                                                 std::int64_t step, Helper helper) {
  PipelineDriver& driver = *self->state.driver;
  pipeline::GridOptions grid;
  grid.show_communication = true;
  for (int s = 0; s < driver.num_stages(); ++s) {
    const StageWorker& w = driver.stage(s);
    if (w.cursor() < w.program().size()) grid.marks.push_back({s, w.cursor()});
  }
  // A child's own failure carries (kind, text) (stage_actor.h: failure_handler); anything else is CAF's.
  ErrorKind kind = ErrorKind::kInternal;
  std::string what = self->system().render(reason);
  const caf::message& ctx = reason.context();
  if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)) {
    kind = static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0));
    what = ctx.get_as<std::string>(1);
  }
  // No step in progress (a child died between steps): the supervisor says so, `during` adds nothing.
  const std::string cause = step < 0 ? what : what + " (" + during + ")";
  std::string report = std::string("a pipeline stage failed ") + during + ": " + what;
  if (stage >= 0) {
    const supervision::Node& child = self->state.supervisor->node().children.at(static_cast<std::size_t>(stage));
    std::string name = child.name;
    for (const supervision::Node& c : child.children)
      if ((helper == Helper::optimizer_state && c.kind == supervision::NodeKind::optimizer_state) ||
          (helper == Helper::gradient_exchange && c.kind == supervision::NodeKind::gradient_exchange))
        name = c.name;
    report = self->state.supervisor->on_down(name, step, cause).report;
  }
  return {kind, report + "\nwhere each stage stood (marked):\n" +
                    pipeline::render_grid(driver.schedule(), driver.num_stages(), driver.layout().virtual_stages, grid)};
}

int replica_of(Self* self) { return self->state.driver->options().replica; }

// Ends the step in progress (if any) with `failure`, which every later step repeats.
void fail(Self* self, std::pair<ErrorKind, std::string> failure) {
  auto& st = self->state;
  if (!st.failure) st.failure = std::move(failure);
  if (!st.step) return;
  st.step.reset();
  self->send(st.requester, proto::failed_atom::value, replica_of(self), static_cast<std::int32_t>(st.failure->first),
             st.failure->second);
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
  const StepStats stats =
      st.step->stats(std::chrono::duration<double>(std::chrono::steady_clock::now() - st.started).count());
  st.step.reset();
  self->send(st.requester, proto::done_atom::value, replica_of(self), stats);
}

// Phase 4: the tied weight's replica on the last stage, then the answer.
void refresh_tied(Self* self) {
  auto& st = self->state;
  if (!st.step->tied_weight().defined()) return finish(self);
  const int last = st.step->last_stage();
  const std::int64_t step = st.step->step();
  self->request(st.stages[static_cast<std::size_t>(last)], caf::infinite, proto::tied_atom::value, st.step->tied_weight())
      .then([=](bool) {
              if (self->state.step) finish(self);
            },
            [=](caf::error& e) {
              if (self->state.step) fail(self, failure_report(self, e, "refreshing the tied embedding", last, step, Helper::none));
            });
}

// Phase 3: every stage applies the update (its optimizer-state actor does); stages work in parallel.
void apply(Self* self) {
  auto& st = self->state;
  const StepUpdate& u = st.step->update();
  const std::int64_t step = st.step->step();
  for (int i = 0; i < static_cast<int>(st.stages.size()); ++i)
    self->request(st.stages[static_cast<std::size_t>(i)], caf::infinite, proto::apply_atom::value, u.clip, u.lr, u.skip)
        .then(
            [=](Tensor& w) {
              if (!self->state.step) return;
              ++self->state.progress;
              self->state.step->applied(i, std::move(w));
              if (self->state.step->all_applied()) refresh_tied(self);
            },
            [=](caf::error& e) {
              if (self->state.step) fail(self, failure_report(self, e, "applying the optimizer step", i, step, Helper::none));
            });
}

// Phase 2: every stage finishes its backward (waits for its gradient exchange) and reports its
// gradients' sums of squares.
void finish_backward(Self* self) {
  auto& st = self->state;
  const std::int64_t step = st.step->step();
  for (int i = 0; i < static_cast<int>(st.stages.size()); ++i)
    self->request(st.stages[static_cast<std::size_t>(i)], caf::infinite, proto::finish_atom::value, st.step->tied_grad())
        .then(
            [=](std::vector<std::vector<double>>& v) {
              if (!self->state.step) return;
              ++self->state.progress;
              self->state.step->finished(i, std::move(v));
              if (self->state.step->all_finished()) guarded(self, [&] { apply(self); });
            },
            [=](caf::error& e) {
              if (self->state.step) fail(self, failure_report(self, e, "finishing the backward pass", i, step, Helper::none));
            });
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
}  // namespace

Error replica_failure(std::int32_t kind, const std::string& report) { return Error(static_cast<ErrorKind>(kind), report); }

caf::behavior replica_actor(Self* self, PipelineDriver* driver, supervision::Supervisor* supervisor,
                            TraceRecorder* const* trace) {
  self->state.driver = driver;
  self->state.supervisor = supervisor;
  self->state.trace = trace;
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
    if (stage < 0 || st.failure) return;  // not a child, or the step already failed (its peers follow)
    const std::int64_t step = st.step ? st.step->step() : -1;
    fail(self, failure_report(self, down.reason, "during the forward/backward pass", stage, step, helper));
  });
  return {
      [=](proto::children_atom, const std::vector<caf::actor>& stages, const std::vector<caf::actor>& optimizers,
          const std::vector<caf::actor>& exchanges) {
        monitor_new(self, self->state.stages, stages);
        monitor_new(self, self->state.optimizers, optimizers);
        monitor_new(self, self->state.exchanges, exchanges);
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
        guarded(self, [&] {
          const StepCoordinator::Start begin = st.step->begin(step, driver->dataset());
          for (auto& a : st.stages)
            self->send(a, proto::run_atom::value, begin.batch, begin.microbatches, begin.loss_scale, begin.rows_per_sample);
        });
        watch(self, step, st.progress);
      },
      // Phase 1: every stage reports when it stands at its optimizer step.
      [=](proto::ready_atom, int stage, std::vector<Tensor>& losses, Tensor& tied) {
        auto& st = self->state;
        if (!st.step) return;
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
  };
}

}  // namespace troupe
