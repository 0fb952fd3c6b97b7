// StepCoordinator: the phases of a pipeline step as state, checked at each transition.
#include "actors/state/step_coordinator.h"

#include <cmath>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/nonfinite.h"

namespace troupe {

StepCoordinator::StepCoordinator(const RunConfig& config, const PipelineOptions& options, const pipeline::Layout& layout,
                                 std::function<std::vector<Param*>()> params_in_order)
    : config_(config),
      options_(options),
      layout_(layout),
      stages_(layout.stages),
      last_(layout.stage_of(layout.num_virtual() - 1)),
      params_in_order_(std::move(params_in_order)),
      ready_from_(static_cast<std::size_t>(layout.stages), 0) {}

StepCoordinator::Start StepCoordinator::begin(std::int64_t step, Dataset& dataset) {
  step_ = step;
  ready_ = finished_ = applied_ = 0;
  ready_from_.assign(static_cast<std::size_t>(stages_), 0);
  losses_.clear();
  tied_grad_ = Tensor();
  tied_weight_ = Tensor();
  sumsq_.assign(static_cast<std::size_t>(stages_), {});
  updated_ = false;
  const Batch whole = dataset.train_batch(step, config_.train.batch_size);
  Start s;
  s.loss_scale = 1.0f / static_cast<float>(whole.targets.numel());
  s.batch = replica_share(whole, options_.replica, options_.replicas);
  s.microbatches = options_.microbatches;
  s.rows_per_sample = dataset.rows_per_sample();
  return s;
}

void StepCoordinator::ready(int stage, std::vector<Tensor> losses, Tensor tied_grad) {
  TROUPE_CHECK(stage >= 0 && stage < stages_ && ready_ < stages_ && !ready_from_[static_cast<std::size_t>(stage)],
               "ready from stage ", stage, " in step ", step_);
  ready_from_[static_cast<std::size_t>(stage)] = 1;
  if (stage == last_) {
    losses_ = std::move(losses);
    tied_grad_ = std::move(tied_grad);
  }
  ++ready_;
}

void StepCoordinator::finished(int stage, std::vector<std::vector<double>> sumsq) {
  TROUPE_CHECK(all_ready() && stage >= 0 && stage < stages_, "finished from stage ", stage, " before every stage was ready");
  sumsq_[static_cast<std::size_t>(stage)] = std::move(sumsq);
  ++finished_;
}

const StepUpdate& StepCoordinator::update() {
  TROUPE_CHECK(all_finished(), "update before every stage finished backward");
  if (updated_) return update_;
  update_ = plan_update(config_, layout_, sumsq_, step_);
  updated_ = true;
  // train.on_nonfinite: the first parameter in layer order whose sum of squares is not finite.
  std::string bad;
  std::size_t flat = 0;
  for (int k = 0; k < layout_.num_virtual() && bad.empty(); ++k) {
    const auto& sums = sumsq_.at(static_cast<std::size_t>(layout_.stage_of(k))).at(static_cast<std::size_t>(layout_.chunk_of(k)));
    for (std::size_t j = 0; j < sums.size() && bad.empty(); ++j, ++flat) {
      if (std::isfinite(sums[j])) continue;
      const std::vector<Param*> params = params_in_order_ ? params_in_order_() : std::vector<Param*>{};
      bad = flat < params.size() ? params[flat]->name : fmt::format("virtual stage {} parameter {}", k, j);
    }
  }
  std::int64_t rows = 0;
  const double loss = mean_loss(losses_, &rows);  // the whole batch's: replicas gather their losses
  if (bad.empty() && std::isfinite(loss)) return update_;
  const std::string what = describe_nonfinite(step_, loss, bad);
  if (config_.train.on_nonfinite == NonfiniteAction::stop) throw_nonfinite(what);
  update_.skip = true;
  update_.nonfinite = what;
  return update_;
}

void StepCoordinator::applied(int stage, Tensor tied_weight) {
  TROUPE_CHECK(updated_ && stage >= 0 && stage < stages_, "applied from stage ", stage, " before the update");
  if (tied_weight.defined()) tied_weight_ = std::move(tied_weight);
  ++applied_;
}

StepStats StepCoordinator::stats(double seconds) const {
  TROUPE_CHECK(all_applied(), "stats before every stage applied the update");
  StepStats s;
  s.step = step_;
  std::int64_t rows = 0;
  s.loss = mean_loss(losses_, &rows);
  s.grad_norm = update_.grad_norm;
  s.lr = update_.lr;
  s.seconds = seconds;
  s.tokens_per_s = static_cast<double>(rows) / seconds;
  s.skipped = update_.skip;
  s.nonfinite = update_.nonfinite;
  return s;
}

}  // namespace troupe
