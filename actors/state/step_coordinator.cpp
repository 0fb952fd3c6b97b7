// StepCoordinator: the phases of a pipeline step as state, checked at each transition.
#include "actors/state/step_coordinator.h"

#include "runtime/error.h"

namespace troupe {

StepCoordinator::StepCoordinator(const RunConfig& config, const PipelineOptions& options, const pipeline::Layout& layout)
    : config_(config),
      options_(options),
      layout_(layout),
      stages_(layout.stages),
      last_(layout.stage_of(layout.num_virtual() - 1)) {}

StepCoordinator::Start StepCoordinator::begin(std::int64_t step, Dataset& dataset) {
  step_ = step;
  ready_ = finished_ = applied_ = 0;
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
  TROUPE_CHECK(stage >= 0 && stage < stages_ && ready_ < stages_, "ready from stage ", stage, " in step ", step_);
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
  if (!updated_) update_ = plan_update(config_, layout_, sumsq_, step_);
  updated_ = true;
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
  return s;
}

}  // namespace troupe
