// What a mid-step restart redoes, without actors: restart_scope()'s rule, and the stage workers' side of
// keeping work — a stage that loses its step redoes it alone from its boundary while the others keep
// theirs and send it again what they had sent it — bitwise the uninterrupted pipeline.
#include <catch2/catch.hpp>

#include "actors/data_parallel.h"
#include "actors/state/restart_scope.h"
#include "actors/state/step_coordinator.h"
#include "runtime/config/config_loader.h"
#include "midstep_schedules.h"
#include "training_runs.h"

using namespace troupe;

TEST_CASE("restart scope: a stage that dies in the forward/backward phase redoes the step alone", "[restart_scope]") {
  RestartFacts f{.mid_step = true, .forward_backward = true, .can_redo_alone = true};
  CHECK(restart_scope(f) == RestartScope::stage_alone);
  CHECK(restart_scope(RestartFacts{}) == RestartScope::nothing);  // between steps
  auto with = [&](auto change) {
    RestartFacts g = f;
    change(g);
    return restart_scope(g);
  };
  CHECK(with([](RestartFacts& g) { g.forward_backward = false; }) == RestartScope::whole_step);
  CHECK(with([](RestartFacts& g) { g.reported_ready = true; }) == RestartScope::whole_step);
  CHECK(with([](RestartFacts& g) { g.can_redo_alone = false; }) == RestartScope::whole_step);
  CHECK(with([](RestartFacts& g) { g.faults_pending = true; }) == RestartScope::whole_step);
  CHECK(with([](RestartFacts& g) { g.group_round = true; }) == RestartScope::whole_step);
  // An optimizer-state actor holds nothing of the step before the update.
  CHECK(with([](RestartFacts& g) { g.optimizer_state = true; g.can_redo_alone = false; }) == RestartScope::nothing);
  CHECK(with([](RestartFacts& g) { g.optimizer_state = true; g.forward_backward = false; }) == RestartScope::whole_step);
}

TEST_CASE("restart scope: clauses waiting for a re-run of another actor", "[restart_scope]") {
  using supervision::parse_fault_plan;
  const auto pending = parse_fault_plan("throw stage 1 at step 2; kill optimizer 0 at step 3").clauses;
  CHECK_FALSE(faults_pending_for(pending, 2, 1));  // stage 1's own: fires in its redo
  CHECK(faults_pending_for(pending, 2, 0));
  CHECK(faults_pending_for(pending, 2, -1));
  CHECK(faults_pending_for(pending, 3, 0));  // the optimizer's
  CHECK_FALSE(faults_pending_for(pending, 4, -1));
}

namespace {
RunConfig small(const std::vector<std::string>& more) {
  std::vector<std::string> sets = {"model.n_layer=2",          "model.n_embd=32", "model.n_head=2",
                                   "model.block_size=16",      "train.batch_size=4", "train.threads=1",
                                   "train.deterministic=true", "parallel.pipeline=2"};
  sets.insert(sets.end(), more.begin(), more.end());
  return load_config(std::nullopt, sets);
}

TrainingRun weights_and(PipelineDriver& d, std::vector<double> losses) {
  TrainingRun r;
  r.losses = std::move(losses);
  for (Param* p : d.weights_in_order()) r.weights[p->name] = p->value.to_vector();
  return r;
}

// Step `step` of `d` driven by hand (PipelineDriver::train_step's loop) with every stage keeping what it
// sends; after `lose_after` rounds stage `lost` loses its step — inbox, activations, gradients — and redoes
// it alone from its boundary, the others sending it again what they had sent it.
double step_losing_a_stage(PipelineDriver& d, std::int64_t step, int lost, int lose_after) {
  StepCoordinator c(d.config(), d.options(), d.layout());
  const StepCoordinator::Start b = c.begin(step, d.dataset());
  for (int s = 0; s < d.num_stages(); ++s) {
    d.stage(s).keep_boundary(step);
    d.stage(s).keep_sent(true);
    d.stage(s).begin_step(b.batch, b.microbatches, b.loss_scale, b.rows_per_sample);
  }
  std::vector<Outgoing> out;
  for (int round = 0;; ++round) {
    if (round == lose_after) {
      StageWorker& w = d.stage(lost);
      w.rewind(step);
      w.begin_step(b.batch, b.microbatches, b.loss_scale, b.rows_per_sample);
      for (int s = 0; s < d.num_stages(); ++s)
        if (s != lost)
          for (Outgoing& o : d.stage(s).resend_to(lost)) w.deliver(std::move(o.message));
    }
    bool all_at_step = true;
    for (int s = 0; s < d.num_stages(); ++s) {
      out.clear();
      if (d.stage(s).advance(out) != StageWorker::Status::at_step) all_at_step = false;
      for (Outgoing& o : out) d.stage(o.to_stage).deliver(std::move(o.message));
    }
    if (all_at_step && round >= lose_after) break;
    REQUIRE(round < 1000);
  }
  for (int s = 0; s < d.num_stages(); ++s) c.ready(s, replicas_losses(d.stage(s)), d.stage(s).tied_grad());
  for (int s = 0; s < d.num_stages(); ++s) c.finished(s, d.stage(s).finish_step(c.tied_grad()));
  const StepUpdate& u = c.update();
  for (int s = 0; s < d.num_stages(); ++s) c.applied(s, d.stage(s).apply_step(u.clip, u.lr, u.skip));
  if (c.tied_weight().defined()) d.stage(c.last_stage()).set_tied_weight(c.tied_weight());
  return c.stats(1.0).loss;
}
}  // namespace

TEST_CASE("a stage that redoes its step alone while the others keep theirs gives the uninterrupted run, bitwise",
          "[restart_scope][pipeline]") {
  for (const std::vector<std::string>& layout : midstep_schedules()) {
    const RunConfig config = small(layout);
    PipelineDriver clean(config, pipeline_options(config, 0));
    std::vector<double> clean_losses;
    for (std::int64_t s = 0; s < 3; ++s) clean_losses.push_back(clean.train_step(s).loss);
    const TrainingRun reference = weights_and(clean, clean_losses);
    for (const int lost : {0, 1})
      for (const int lose_after : {1, 3, 6}) {
        INFO(layout.back() << ": stage " << lost << " after " << lose_after << " rounds");
        PipelineDriver d(config, pipeline_options(config, 0));
        std::vector<double> losses;
        std::size_t before = 0;
        for (std::int64_t s = 0; s < 3; ++s) {
          if (s == 1) before = d.stage(0).computed() + d.stage(1).computed();
          losses.push_back(s == 1 ? step_losing_a_stage(d, s, lost, lose_after) : d.train_step(s).loss);
          if (s == 1) {
            // The others computed their share once: the extra work is what the lost stage had done of its
            // share (its forwards and backwards), no more.
            auto share = [&](int stage) {
              std::size_t n = 0;
              for (const pipeline::Instr& i : d.stage(stage).program())
                n += std::holds_alternative<pipeline::Forward>(i) || std::holds_alternative<pipeline::Backward>(i);
              return n;
            };
            const std::size_t step_work = d.stage(0).computed() + d.stage(1).computed() - before;
            CHECK(step_work >= share(0) + share(1));
            CHECK(step_work - share(0) - share(1) <= share(lost));
          }
        }
        require_bitwise(reference, weights_and(d, losses));
      }
  }
}
