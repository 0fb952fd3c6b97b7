// PipelineDriver: partition, schedule, and the per-step coordination of the stage workers.
#include "actors/state/pipeline_driver.h"

#include "actors/state/step_coordinator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "runtime/checkpoint/shard_state.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/schedule/comm_pass.h"
#include "runtime/schedule/generators.h"
#include "runtime/schedule/grid.h"

namespace troupe {

PipelineDriver::PipelineDriver(const RunConfig& config, const PipelineOptions& options)
    : config_(config), options_(options), layout_{options.stages, options.virtual_stages} {
  if (options.microbatches < 1 || config.train.batch_size % options.microbatches != 0)
    throw Error(ErrorKind::kConfig, "parallel.microbatches = " + std::to_string(options.microbatches) +
                                        " must divide train.batch_size = " + std::to_string(config.train.batch_size) +
                                        " (micro-batches hold whole samples)");
  backend_ = std::make_unique<CpuBackend>(config.train.threads);
  backend_->set_deterministic(config.train.deterministic);
  backend_->set_precision(config.train.precision);
  dataset_ = make_dataset(config);
  specs_ = make_layer_specs(config.model, config.train.seed);
  ParallelConfig split;  // the partition is decided in one place, with the Topology's
  split.pipeline = options.stages;
  split.virtual_stages = options.virtual_stages;
  split.boundaries = options.boundaries;
  partition_ = plan::partition_for(split, layer_info(specs_));
  schedule_ = pipeline::add_communication(
      pipeline::make_schedule(options.schedule, options.stages, options.microbatches, options.virtual_stages),
      options.stages, options.virtual_stages);
  for (int s = 0; s < options.stages; ++s) {
    Backend* be = backend_.get();
    if (options.concurrent_stages) {
      const int threads = config.train.threads > 0 ? config.train.threads : backend_->threads();
      stage_backends_.push_back(std::make_unique<CpuBackend>(std::max(1, threads / options.stages)));
      stage_backends_.back()->set_deterministic(config.train.deterministic);
      stage_backends_.back()->set_precision(config.train.precision);
      be = stage_backends_.back().get();
    }
    if (options.tensor_groups.empty()) {
      stages_.push_back(std::make_unique<StageWorker>(s, layout_, specs_, partition_.boundaries, schedule_[s], *be,
                                                      config.optim));
    } else {
      // The stage's layers as its tensor shard (every shard initialises the whole tensors and keeps its slice).
      const comm::TensorGroup group = options.tensor_groups.at(static_cast<std::size_t>(s));
      stages_.push_back(std::make_unique<StageWorker>(s, layout_, make_layer_specs(config.model, config.train.seed, group),
                                                      partition_.boundaries, schedule_[s], *be, config.optim));
      stages_.back()->set_tensor_group(group, config.train.deterministic);
    }
    stages_.back()->set_credits(options.credits);
  }
}

Batch replica_share(const Batch& batch, int replica, int replicas) {
  if (replicas == 1) return batch;
  const std::int64_t per = batch.inputs.dim(0) / replicas;
  TROUPE_CHECK(per * replicas == batch.inputs.dim(0), batch.inputs.dim(0), " samples for ", replicas, " replicas");
  Batch share = batch;
  share.inputs = batch.inputs.slice(replica * per, (replica + 1) * per);
  share.targets = batch.targets.slice(replica * per, (replica + 1) * per);
  return share;
}

std::vector<Tensor> replicas_losses(StageWorker& last) {
  GradientSync* sync = last.gradient_sync();
  if (!sync || sync->replicas() == 1 || !last.holds_loss()) return last.losses();
  std::vector<float> mine;
  for (const Tensor& l : last.losses())
    for (float v : l.span_f32()) mine.push_back(v);
  const std::vector<float> all = sync->all_gather_losses(mine);
  Tensor t = Tensor::empty({static_cast<std::int64_t>(all.size())});
  std::copy(all.begin(), all.end(), t.f32());
  return {t};
}

double mean_loss(const std::vector<Tensor>& microbatch_losses, std::int64_t* rows) {
  double sum = 0.0;
  *rows = 0;
  for (const Tensor& l : microbatch_losses) {
    for (float v : l.span_f32()) sum += v;
    *rows += l.numel();
  }
  return *rows ? sum / static_cast<double>(*rows) : 0.0;
}

double global_grad_norm(const pipeline::Layout& layout, const std::vector<std::vector<std::vector<double>>>& sumsq) {
  double total_sq = 0.0;
  for (int k = 0; k < layout.num_virtual(); ++k)
    for (double v : sumsq.at(layout.stage_of(k)).at(layout.chunk_of(k))) total_sq += v;
  return std::sqrt(total_sq);
}

std::string PipelineDriver::describe_partition() const {
  std::vector<std::string> names;
  for (const auto& spec : specs_) names.push_back(spec.name);
  return plan::describe(partition_, names);
}

std::vector<Param*> PipelineDriver::params_in_order() const {
  std::vector<Param*> all;
  for (int k = 0; k < layout_.num_virtual(); ++k)
    for (Param* p : stages_[layout_.stage_of(k)]->chunk(layout_.chunk_of(k)).params().all()) all.push_back(p);
  return all;
}

EvalStats PipelineDriver::evaluate() {
  std::vector<Model*> models;
  for (int k = 0; k < layout_.num_virtual(); ++k) models.push_back(&stages_[layout_.stage_of(k)]->chunk(layout_.chunk_of(k)));
  return evaluate_models(*backend_, *dataset_, config_, models);
}

void PipelineDriver::load_weights(const std::string& path) {
  if (options_.tensor_groups.empty()) {
    load_weights_into(weights_in_order(), path);
  } else {
    // Whole tensors, checked as the single device checks them, then each shard keeps its slice.
    const std::vector<Param*> mine = weights_in_order();
    std::vector<Param> whole(mine.size());
    std::vector<Param*> view;
    for (std::size_t i = 0; i < mine.size(); ++i) {
      whole[i].name = mine[i]->name;
      whole[i].value = Tensor::empty(mine[i]->split.split() ? comm::gather_shape(*mine[i]) : mine[i]->value.shape());
      view.push_back(&whole[i]);
    }
    load_weights_into(view, path);
    for (std::size_t i = 0; i < mine.size(); ++i) mine[i]->value.copy_from(shard_of(whole[i].value, mine[i]->split));
  }
  const std::string tied = tied_weight_of(specs_);
  for (Param* p : params_in_order())
    if (!tied.empty() && p->name == tied)
      for (auto& st : stages_) st->set_tied_weight(p->value);
}

namespace {
// What a weights file or a checkpoint holds, in the order one device's model lists it: every
// parameter in layer order, then every buffer (batch-norm running statistics) in layer order.
std::vector<Param*> state_in_order(const pipeline::Layout& layout, const std::vector<std::unique_ptr<StageWorker>>& stages) {
  std::vector<Param*> all;
  for (int k = 0; k < layout.num_virtual(); ++k)
    for (Param* p : stages[layout.stage_of(k)]->chunk(layout.chunk_of(k)).params().all()) all.push_back(p);
  for (int k = 0; k < layout.num_virtual(); ++k)
    for (Param* p : stages[layout.stage_of(k)]->chunk(layout.chunk_of(k)).params().buffers()) all.push_back(p);
  return all;
}
}  // namespace

std::map<const Param*, comm::TensorGroup> PipelineDriver::tensor_group_of_params() const {
  std::map<const Param*, comm::TensorGroup> group_of;
  for (const auto& st : stages_)
    for (int c = 0; c < st->num_chunks(); ++c)
      for (Param* p : st->chunk(c).params().state()) group_of[p] = st->tensor_group();
  return group_of;
}

void PipelineDriver::gather_params_into(TrainingState& state) const {
  if (options_.tensor_groups.empty()) return gather_params(state_in_order(layout_, stages_), state.params);
  const std::map<const Param*, comm::TensorGroup> group_of = tensor_group_of_params();
  for (const Param* p : state_in_order(layout_, stages_)) state.params.emplace_back(p->name, comm::gather_whole(group_of.at(p), *p));
}

void PipelineDriver::gather_optimizer_state_into(OptimizerState& whole, bool first) const {
  for (std::size_t s = 0; s < stages_.size(); ++s) {
    const OptimizerState& mine = stages_[s]->optimizer_state();
    if (options_.tensor_groups.empty()) {
      gather_optimizer_state(mine, whole, first && s == 0);
      continue;
    }
    // Each state tensor gathered whole over the stage's group, in the stage's parameter order (the same
    // entries on every shard: ZeRO-1 owners are chosen by sizes, which the shards share).
    const OptimizerState gathered = gather_shard_optimizer_state(stages_[s]->tensor_group(), mine, stages_[s]->params());
    gather_optimizer_state(gathered, whole, first && s == 0);
  }
}

void PipelineDriver::restore_training_state(const TrainingState& whole, const std::string& source) {
  TrainingState sliced;
  if (!options_.tensor_groups.empty()) sliced = shard_of_state(whole, state_in_order(layout_, stages_));
  const TrainingState& state = options_.tensor_groups.empty() ? whole : sliced;
  const std::vector<Param*> all = state_in_order(layout_, stages_);
  check_covers(state, all, source);
  scatter_params(state.params, all, source);
  const std::string tied = tied_weight_of(specs_);
  for (Param* p : all)
    if (!tied.empty() && p->name == tied)
      for (auto& st : stages_) st->set_tied_weight(p->value);
  for (auto& st : stages_) {
    const std::vector<Param*> mine = st->params();
    st->optimizer_state() = optimizer_state_for(state.optimizer, st->gradient_sync() ? st->gradient_sync()->owned(mine) : mine);
  }
}

void PipelineDriver::save_weights(const std::string& path) const {
  if (options_.tensor_groups.empty()) return save_weights_from(weights_in_order(), path, config_);
  // Whole tensors in the file's order, each split one gathered over the group of the stage holding it.
  const std::map<const Param*, comm::TensorGroup> group_of = tensor_group_of_params();
  const std::vector<Param*> mine = weights_in_order();
  std::vector<Param> whole(mine.size());
  std::vector<Param*> view;
  for (std::size_t i = 0; i < mine.size(); ++i) {
    whole[i].name = mine[i]->name;
    whole[i].value = comm::gather_whole(group_of.at(mine[i]), *mine[i]);
    view.push_back(&whole[i]);
  }
  if (options_.tensor_groups.front().rank() == 0) save_weights_from(view, path, config_);
}

std::vector<Param*> PipelineDriver::weights_in_order() const { return state_in_order(layout_, stages_); }

StepUpdate plan_update(const RunConfig& config, const pipeline::Layout& layout,
                       const std::vector<std::vector<std::vector<double>>>& sumsq, std::int64_t step) {
  StepUpdate u;
  if (config.train.grad_clip > 0.0) {
    u.grad_norm = global_grad_norm(layout, sumsq);
    u.clip = clip_coefficient(u.grad_norm, config.train.grad_clip);
  }
  u.lr = lr_at(config.train, config.optim.lr_or_default(), step);
  return u;
}

StepStats PipelineDriver::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  StepCoordinator step_of(config_, options_, layout_, [this] { return params_in_order(); });
  const StepCoordinator::Start begin = step_of.begin(step, *dataset_);
  for (auto& st : stages_) st->begin_step(begin.batch, begin.microbatches, begin.loss_scale, begin.rows_per_sample);

  // Run every stage as far as it can go, deliver what it sent, repeat until all stand at the step.
  std::vector<Outgoing> out;
  for (;;) {
    bool all_at_step = true, progress = false;
    for (auto& st : stages_) {
      const std::size_t before = st->cursor();
      out.clear();
      if (st->advance(out) != StageWorker::Status::at_step) all_at_step = false;
      progress |= st->cursor() != before || !out.empty();
      for (auto& o : out) stages_.at(o.to_stage)->deliver(std::move(o.message));
    }
    if (all_at_step) break;
    if (!progress) {
      pipeline::GridOptions grid;
      grid.show_communication = true;
      for (auto& st : stages_)
        if (st->cursor() < st->program().size()) grid.marks.push_back({st->stage(), st->cursor()});
      throw Error(ErrorKind::kInternal, "pipeline step " + std::to_string(step) +
                                            " stalled: every stage waits for a message that was never sent\n" +
                                            pipeline::render_grid(schedule_, options_.stages, options_.virtual_stages, grid));
    }
  }

  // The coordinator's phases, each over every stage in order (what the stage actors do at once).
  for (auto& st : stages_) step_of.ready(st->stage(), replicas_losses(*st), st->tied_grad());
  for (auto& st : stages_) step_of.finished(st->stage(), st->finish_step(step_of.tied_grad()));
  const StepUpdate& u = step_of.update();
  for (auto& st : stages_) step_of.applied(st->stage(), st->apply_step(u.clip, u.lr, u.skip));
  if (step_of.tied_weight().defined()) stages_.at(step_of.last_stage())->set_tied_weight(step_of.tied_weight());
  return step_of.stats(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace troupe
