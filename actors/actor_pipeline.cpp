// ActorPipeline: spawning the stage actors and coordinating one training step over the protocol.
#include "actors/actor_pipeline.h"

#include <chrono>

#include "actors/actor_system.h"
#include "actors/exchange_actor.h"
#include "actors/optimizer_actor.h"
#include "actors/stage_actor.h"
#include "actors/state/step_coordinator.h"
#include "runtime/schedule/grid.h"

namespace troupe {

namespace {
// A step that makes no progress for this long is reported instead of waited on forever.
constexpr auto kStepTimeout = std::chrono::minutes(10);

PipelineOptions concurrent(PipelineOptions o) {
  o.concurrent_stages = true;
  return o;
}

}  // namespace

struct ActorPipeline::Actors {
  std::shared_ptr<ActorSystem> system;
  std::unique_ptr<caf::scoped_actor> self;
  std::vector<caf::actor> stages;
  std::vector<caf::actor> optimizers;  // stage s's optimizer-state actor
  std::vector<caf::actor> exchanges;   // stage s's gradient-exchange actor, where it has one
};

// Reports a failed stage as its supervisor sees it (which actor, where in the Topology, the step, the
// cause) with the step x stage grid, each stage's position marked (">B3<").
void ActorPipeline::stage_failed(const caf::error& reason, const char* during, int stage, std::int64_t step,
                                 Helper helper) {
  pipeline::GridOptions grid;
  grid.show_communication = true;
  for (int s = 0; s < driver_.num_stages(); ++s) {
    const StageWorker& w = driver_.stage(s);
    if (w.cursor() < w.program().size()) grid.marks.push_back({s, w.cursor()});
  }
  // A stage's own failure carries (kind, text) (stage_actor.h); anything else is CAF's.
  ErrorKind kind = ErrorKind::kInternal;
  std::string what = actors_->system->get().render(reason);
  const caf::message& ctx = reason.context();
  if (ctx.size() == 2 && ctx.match_element<std::int32_t>(0) && ctx.match_element<std::string>(1)) {
    kind = static_cast<ErrorKind>(ctx.get_as<std::int32_t>(0));
    what = ctx.get_as<std::string>(1);
  }
  std::string report = std::string("a pipeline stage failed ") + during + ": " + what;
  if (stage >= 0) {
    const supervision::Node& child = supervisor_->node().children.at(static_cast<std::size_t>(stage));
    std::string name = child.name;
    for (const supervision::Node& c : child.children)
      if ((helper == Helper::optimizer_state && c.kind == supervision::NodeKind::optimizer_state) ||
          (helper == Helper::gradient_exchange && c.kind == supervision::NodeKind::gradient_exchange))
        name = c.name;
    report = supervisor_->on_down(name, step, what + " (" + during + ")").report;
  }
  throw Error(kind, report + "\nwhere each stage stood (marked):\n" +
                        pipeline::render_grid(driver_.schedule(), driver_.num_stages(), driver_.layout().virtual_stages,
                                              grid));
}

namespace {
// The Topology this replica is part of, as its options describe it (tests build pipelines whose
// options differ from config.parallel), for the supervisor to name its stages' places.
plan::Topology replica_topology(const PipelineDriver& driver) {
  RunConfig c = driver.config();
  const PipelineOptions& o = driver.options();
  c.parallel.pipeline = o.stages;
  c.parallel.virtual_stages = o.virtual_stages;
  c.parallel.microbatches = o.microbatches;
  c.parallel.schedule = o.schedule;
  c.parallel.boundaries = o.boundaries;
  c.parallel.data = o.replicas;
  if (c.parallel.gradient_exchange == GradientExchange::ps) c.parallel.gradient_exchange = GradientExchange::ring;
  return plan::make_topology(c, layer_info(make_layer_specs(c.model, c.train.seed)),
                             std::vector<std::string>(static_cast<std::size_t>(o.stages), "cpu:0"));
}
}  // namespace

ActorPipeline::ActorPipeline(const RunConfig& config, PipelineOptions options, std::shared_ptr<ActorSystem> system)
    : driver_(config, concurrent(std::move(options))), actors_(std::make_unique<Actors>()) {
  const plan::Topology topology = replica_topology(driver_);
  supervisor_ = std::make_unique<supervision::Supervisor>(
      supervision::make_supervision_tree(topology).children.at(static_cast<std::size_t>(driver_.options().replica)),
      topology);
  actors_->system = system ? std::move(system) : std::make_shared<ActorSystem>();
  actors_->self = std::make_unique<caf::scoped_actor>(actors_->system->get());
  const auto poll = std::chrono::microseconds(driver_.config().comm.poll_us);
  for (int s = 0; s < driver_.num_stages(); ++s) {
    // The optimizer state runs on the system's scheduler (its work comes while the stage waits for it).
    actors_->optimizers.push_back(actors_->system->get().spawn(optimizer_actor, &driver_.stage(s)));
    (*actors_->self)->monitor(actors_->optimizers.back());
    actors_->stages.push_back(
        actors_->system->get().spawn<caf::detached>(stage_actor, &driver_.stage(s), actors_->optimizers.back(), poll));
    (*actors_->self)->monitor(actors_->stages.back());
  }
  for (auto& a : actors_->stages) (*actors_->self)->send(a, proto::peers_atom::value, actors_->stages, caf::actor(*actors_->self));
}

ActorPipeline::~ActorPipeline() {
  // Waits for this pipeline's own stages only: the system may hold other replicas' stages, still running.
  caf::scoped_actor& self = *actors_->self;
  for (auto& a : actors_->stages) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : actors_->optimizers) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : actors_->exchanges) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  self->wait_for(actors_->stages, actors_->optimizers, actors_->exchanges);
  actors_->self.reset();
}

void ActorPipeline::start_gradient_exchanges() {
  TROUPE_CHECK(actors_->exchanges.empty(), "the gradient exchanges are started once");
  for (int s = 0; s < driver_.num_stages(); ++s) {
    GradientSync* sync = driver_.stage(s).gradient_sync();
    if (!sync || !sync->can_overlap()) {
      actors_->exchanges.emplace_back();  // keeps index = stage
      continue;
    }
    actors_->exchanges.push_back(spawn_exchange_actor(actors_->system->get(), *sync));
    (*actors_->self)->monitor(actors_->exchanges.back());
  }
}

void ActorPipeline::end_gradient_exchange(int stage) {
  const caf::actor& exchange = actors_->exchanges.at(static_cast<std::size_t>(stage));
  TROUPE_CHECK(exchange, "stage ", stage, " has no gradient-exchange actor");
  caf::anon_send_exit(exchange, caf::exit_reason::kill);
  (*actors_->self)->wait_for(exchange);
}

void ActorPipeline::set_trace(TraceRecorder* trace) {
  trace_ = trace;
  for (int s = 0; s < driver_.num_stages(); ++s) driver_.stage(s).set_trace(trace, trace->track("stage " + std::to_string(s)));
}

StepStats ActorPipeline::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  const double trace_begin = trace_ ? trace_->now_us() : 0.0;
  caf::scoped_actor& self = *actors_->self;
  const int p = driver_.num_stages();
  StepCoordinator step_of(driver_.config(), driver_.options(), driver_.layout(), [this] { return driver_.params_in_order(); });

  const StepCoordinator::Start begin = step_of.begin(step, driver_.dataset());
  for (auto& a : actors_->stages)
    self->send(a, proto::run_atom::value, begin.batch, begin.microbatches, begin.loss_scale, begin.rows_per_sample);

  // Phase 1: every stage reports when it stands at its optimizer step.
  while (!step_of.all_ready()) {
    self->receive(
        [&](proto::ready_atom, int stage, std::vector<Tensor>& losses, Tensor& tied) {
          step_of.ready(stage, std::move(losses), std::move(tied));
        },
        [&](caf::down_msg& down) {
          int stage = -1;
          Helper helper = Helper::none;
          for (int i = 0; i < p; ++i) {
            const auto at = static_cast<std::size_t>(i);
            if (down.source == actors_->stages[at].address()) stage = i;
            if (down.source == actors_->optimizers[at].address()) stage = i, helper = Helper::optimizer_state;
            if (at < actors_->exchanges.size() && actors_->exchanges[at] && down.source == actors_->exchanges[at].address())
              stage = i, helper = Helper::gradient_exchange;
          }
          stage_failed(down.reason, "during the forward/backward pass", stage, step, helper);
        },
        caf::after(kStepTimeout) >> [&] {
          throw Error(ErrorKind::kInternal, "pipeline step " + std::to_string(step) + ": no progress for 10 minutes");
        });
  }

  // Phases 2 and 3 go to every stage at once, then the replies are collected: stages work in parallel.
  {
    std::vector<decltype(self->request(actors_->stages[0], caf::infinite, proto::finish_atom::value, Tensor()))> pending;
    for (int i = 0; i < p; ++i)
      pending.push_back(self->request(actors_->stages[i], caf::infinite, proto::finish_atom::value, step_of.tied_grad()));
    for (int i = 0; i < p; ++i)
      pending[i].receive([&](std::vector<std::vector<double>>& v) { step_of.finished(i, std::move(v)); },
                         [&](caf::error& e) { stage_failed(e, "finishing the backward pass", i, step); });
  }
  const StepUpdate& u = step_of.update();
  {
    std::vector<decltype(self->request(actors_->stages[0], caf::infinite, proto::apply_atom::value, u.clip, u.lr, u.skip))> pending;
    for (int i = 0; i < p; ++i)
      pending.push_back(self->request(actors_->stages[i], caf::infinite, proto::apply_atom::value, u.clip, u.lr, u.skip));
    for (int i = 0; i < p; ++i)
      pending[i].receive([&](Tensor& w) { step_of.applied(i, std::move(w)); },
                         [&](caf::error& e) { stage_failed(e, "applying the optimizer step", i, step); });
  }
  // Phase 4: the tied weight's replica.
  if (step_of.tied_weight().defined())
    self->request(actors_->stages[step_of.last_stage()], caf::infinite, proto::tied_atom::value, step_of.tied_weight())
        .receive([](bool) {}, [&](caf::error& e) { stage_failed(e, "refreshing the tied embedding", step_of.last_stage(), step); });

  if (trace_) trace_->window(trace_begin, trace_->now_us());
  return step_of.stats(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace troupe
