// Trainer: the reference loop, evaluation, and weight files.
#include "models/trainer.h"

#include "models/loss_layer.h"
#include "models/sequence_grads.h"

#include <chrono>
#include <cmath>
#include <map>

#include "runtime/checkpoint/shard_state.h"
#include "runtime/config/weights_config.h"
#include "runtime/data/fashion_mnist.h"
#include "runtime/data/text_dataset.h"
#include "runtime/io/safetensors.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/nonfinite.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/lr_schedule.h"

namespace troupe {

std::unique_ptr<Dataset> make_dataset(const RunConfig& config) {
  const bool shuffled = config.data.order == DataOrder::shuffled;
  if (config.model.kind == ModelKind::mlp || config.model.kind == ModelKind::cnn)
    return std::make_unique<FashionMnist>(config.data.path.empty() ? kFashionMnistDir : config.data.path, shuffled,
                                          config.train.seed);
  auto order = shuffled ? TextDataset::Order::shuffled : TextDataset::Order::sequential;
  if (config.data.path.empty())
    return std::make_unique<TextDataset>(load_default_corpus(), config.model.block_size, order, config.train.seed,
                                         "built-in corpus (/usr/share/common-licenses)");
  return std::make_unique<TextDataset>(load_file_bytes(config.data.path), config.model.block_size, order,
                                       config.train.seed, config.data.path);
}

Trainer::Trainer(const RunConfig& config, comm::TensorGroup group, comm::Transport* replicas)
    : config_(config), group_(group.transport, config.parallel.sequence_parallel), replicas_(replicas) {
  backend_ = std::make_unique<CpuBackend>(config.train.threads);
  backend_->set_deterministic(config.train.deterministic);
  backend_->set_precision(config.train.precision);
  dataset_ = make_dataset(config);
  model_ = std::make_unique<Model>(make_layer_specs(config.model, config.train.seed, group_));
  optimizer_ = make_optimizer(config.optim);
}

Trainer::~Trainer() = default;

// Every gradient averaged over the replicas in one allreduce of one packed buffer (a step's gradients
// are few and small next to a bucketed exchange's; one message per step keeps the latency down), and
// the loss sum with them so that every replica reports, and skips, the same step.
double Trainer::average_over_replicas(double loss_sum) {
  const std::vector<Param*> params = model_->params().all();
  std::size_t n = 1;
  for (const Param* p : params) n += static_cast<std::size_t>(p->grad.numel());
  std::vector<double> packed;
  packed.reserve(n);
  packed.push_back(loss_sum);
  for (const Param* p : params)
    for (float g : p->grad.span_f32()) packed.push_back(g);
  comm::allreduce_sum(comm::TensorGroup{replicas_}, std::span<double>(packed));
  const double inv = 1.0 / static_cast<double>(replicas_->size());
  std::size_t i = 1;
  for (const Param* p : params)
    for (float& g : p->grad.span_f32()) g = static_cast<float>(packed[i++] * inv);
  return packed[0] * inv;
}

// Deterministic mode: every gradient buffer's exact sum added over the replicas (integers: the total
// the single device forms from all rows), before it is rounded; and the loss, from every row's loss
// gathered in row order (replica d holds rows d·B/D ... (d+1)·B/D) and summed as one device sums them.
double Trainer::exact_sum_over_replicas(const Tensor& losses) {
  std::vector<std::span<ExactSum>> accs;
  std::size_t n = 0;
  for (std::size_t l = 0; l < model_->num_layers(); ++l)
    for (const Tensor& g : model_->grad_buffers(l)) {
      accs.push_back(backend_->exact_grad(g));
      n += accs.back().size();
    }
  std::vector<ExactSum> packed;
  packed.reserve(n);
  for (std::span<ExactSum> a : accs) packed.insert(packed.end(), a.begin(), a.end());
  const comm::TensorGroup group{replicas_};
  comm::allreduce_sum(group, std::span<ExactSum>(packed));
  std::size_t at = 0;
  for (std::span<ExactSum> a : accs) {
    std::copy_n(packed.begin() + static_cast<std::ptrdiff_t>(at), a.size(), a.begin());
    at += a.size();
  }
  std::vector<float> all(static_cast<std::size_t>(losses.numel() * replicas_->size()));
  comm::all_gather_rows(group, losses.span_f32(), all);
  double sum = 0.0;
  for (float l : all) sum += l;
  return sum;
}

MicroBatch Trainer::micro_batch(const Batch& batch) const {
  MicroBatch mb;
  mb.inputs = batch.inputs;
  mb.targets = batch.targets;
  // Deterministic data parallelism scales by the whole batch's tokens and sums the replicas' exact
  // gradients (exact_sum_over_replicas), as one device summing every token would; otherwise each
  // replica takes its own mean and the replicas average.
  const int replicas = replicas_ && config_.train.deterministic ? replicas_->size() : 1;
  mb.loss_scale = 1.0f / static_cast<float>(batch.targets.numel() * replicas);
  mb.row_block = dataset_->rows_per_sample();
  return mb;
}

StepStats Trainer::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  Batch batch = dataset_->train_batch(step, config_.train.batch_size);
  const int replicas = replicas_ ? replicas_->size() : 1;
  if (replicas > 1) {  // this replica's rows (the config checks that parallel.data divides the batch)
    const std::int64_t rows = batch.inputs.shape()[0] / replicas, first = rows * replicas_->rank();
    batch.inputs = batch.inputs.slice(first, first + rows);
    batch.targets = batch.targets.slice(first, first + rows);
  }
  const MicroBatch mb = micro_batch(batch);

  model_->zero_grad();
  auto ctxs = model_->make_contexts();
  const double t0 = trace_ ? trace_->now_us() : 0.0;
  Tensor losses = model_->forward(*backend_, mb, ctxs, mb.inputs);
  const double t1 = trace_ ? trace_->now_us() : 0.0;
  if (fault_) {
    fault_ = false;
    throw Error(ErrorKind::kInternal, "tensor shard " + std::to_string(group_.rank()) +
                                          ": injected fault at the backward of step " + std::to_string(step));
  }
  model_->backward(*backend_, mb, ctxs, Tensor());
  sum_sequence_partial_grads(*backend_, group_, model_->params().all());
  const bool exact_replicas = replicas > 1 && config_.train.deterministic;
  const double exact_loss_sum = exact_replicas ? exact_sum_over_replicas(losses) : 0.0;
  model_->flush_exact_grads(*backend_);
  model_->finish_grads();
  double sum = 0.0;
  for (float l : losses.span_f32()) sum += l;
  // The mean over `rows`: this replica's rows of an averaged sum, or every row of the exact one.
  std::int64_t rows = losses.numel();
  if (exact_replicas) {
    sum = exact_loss_sum;
    rows *= replicas;
  } else if (replicas > 1) {
    sum = average_over_replicas(sum);
  }
  const double t2 = trace_ ? trace_->now_us() : 0.0;

  StepStats s;
  s.step = step;
  s.loss = sum / static_cast<double>(rows);
  s.lr = lr_at(config_.train, config_.optim.lr_or_default(), step);
  // train.on_nonfinite, before clipping and the update: a NaN or Inf would reach every weight.
  const Param* bad = first_nonfinite_grad(model_->params().all());
  if (bad || !std::isfinite(s.loss)) {
    const std::string what = describe_nonfinite(step, s.loss, bad ? bad->name : "");
    if (config_.train.on_nonfinite == NonfiniteAction::stop) throw_nonfinite(what);
    s.skipped = true;
    s.nonfinite = what;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    s.tokens_per_s = static_cast<double>(losses.numel() * replicas) / s.seconds;
    return s;
  }
  if (config_.train.grad_clip > 0.0) {
    if (group_.split() && config_.train.deterministic) {
      // The single device's additions, in its order: each parameter's whole gradient (a split one
      // gathered over the group), so the norm, and with it the clipping coefficient, has its bits.
      double total_sq = 0.0;
      for (Param* p : model_->params().all()) {
        Param grad_as_value{p->name, p->grad, Tensor(), p->split}, whole;
        whole.grad = comm::gather_whole(group_, grad_as_value);
        total_sq += grad_sum_squares({&whole}).at(0);
      }
      s.grad_norm = std::sqrt(total_sq);
      scale_grads(model_->params().all(), clip_coefficient(s.grad_norm, config_.train.grad_clip));
    } else if (group_.split()) {
      // The global norm: replicated gradients once (every shard holds the same), split ones summed
      // over the shards.
      std::vector<Param*> split, whole;
      for (Param* p : model_->params().all()) (p->split.split() ? split : whole).push_back(p);
      std::vector<double> sq{0.0};
      for (double v : grad_sum_squares(split)) sq[0] += v;
      comm::allreduce_sum(group_, std::span<double>(sq));
      for (double v : grad_sum_squares(whole)) sq[0] += v;
      s.grad_norm = std::sqrt(sq[0]);
      scale_grads(model_->params().all(), clip_coefficient(s.grad_norm, config_.train.grad_clip));
    } else {
      s.grad_norm = clip_grad_norm(model_->params().all(), config_.train.grad_clip);
    }
  }
  optimizer_->step(model_->params().all(), s.lr);
  if (trace_) {
    trace_->span(track_, "forward", "forward", t0, t1);
    trace_->span(track_, "backward", "backward", t1, t2);
    trace_->span(track_, "optimizer step", "optimizer", t2, trace_->now_us());
    trace_->window(t0, trace_->now_us());
  }

  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.tokens_per_s = static_cast<double>(losses.numel() * replicas) / s.seconds;
  return s;
}

void Trainer::keep_boundary(std::int64_t step) {
  auto b = std::make_unique<Boundary>();
  for (const Param* p : model_->params().state()) b->state.push_back(p->value.clone());
  b->optimizer = optimizer_->state().clone();
  boundary_ = std::move(b);
  boundary_step_ = step;
}

void Trainer::rewind(std::int64_t step) {
  // A backward cut short leaves exact sums in the backend (deterministic mode): flushing moves them into
  // the gradients, which are then zeroed with the rest.
  model_->flush_exact_grads(*backend_);
  model_->zero_grad();
  if (!boundary_ || boundary_step_ != step) return;
  const std::vector<Param*> mine = model_->params().state();
  TROUPE_CHECK(mine.size() == boundary_->state.size(), "a boundary copy of ", boundary_->state.size(),
               " tensors for ", mine.size());
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i]->value.copy_from(boundary_->state[i]);
  optimizer_->state() = boundary_->optimizer.clone();
}

TrainingState Trainer::shard_state(std::int64_t steps_done) const {
  TrainingState s;
  s.step = steps_done;
  gather_params(model_->params().state(), s.params);
  s.optimizer = optimizer_->state().clone();
  return s;
}

TrainingState Trainer::shard_state_view(std::int64_t steps_done) const {
  TrainingState s;
  s.step = steps_done;
  for (const Param* p : model_->params().state()) s.params.emplace_back(p->name, p->value);
  s.optimizer = optimizer_->state();  // its tensors shared, not cloned
  return s;
}

void Trainer::restore_shard_state(const TrainingState& mine, const std::string& source) {
  check_covers(mine, model_->params().state(), source);
  scatter_params(mine.params, model_->params().state(), source);  // checks every shape before it copies
  optimizer_->state() = optimizer_state_for(mine.optimizer, model_->params().all());
  keep_boundary(mine.step);
}

EvalStats evaluate_models(Backend& be, const Dataset& dataset, const RunConfig& config,
                          const std::vector<Model*>& models) {
  const int bsz = config.train.batch_size;
  std::int64_t batches = dataset.eval_batches_full(bsz);
  if (batches == 0) batches = config.train.eval_batches;
  EvalStats e;
  double loss_sum = 0.0;
  std::int64_t correct = 0;
  for (std::int64_t k = 0; k < batches; ++k) {
    const Batch batch = dataset.eval_batch(k, bsz);
    const MicroBatch mb{batch.inputs, batch.targets, 1.0f / static_cast<float>(batch.targets.numel()),
                        dataset.rows_per_sample(), /*training=*/false};
    Tensor x = mb.inputs;
    std::vector<LayerCtx> ctxs;
    for (Model* m : models) {
      ctxs = m->make_contexts();
      x = m->forward(be, mb, ctxs, x);
    }
    const Tensor& losses = x;
    for (float l : losses.span_f32()) loss_sum += l;
    e.rows += losses.numel();
    Model& last = *models.back();
    if (auto* head = dynamic_cast<LossLayer*>(&last.layer(last.num_layers() - 1))) {
      Tensor probs = head->probabilities(ctxs.back());
      const std::int64_t classes = probs.dim(-1);
      const float* p = probs.f32();
      const std::int32_t* y = mb.targets.i32();
      for (std::int64_t r = 0; r < losses.numel(); ++r) {
        std::int64_t best = 0;
        for (std::int64_t j = 1; j < classes; ++j)
          if (p[r * classes + j] > p[r * classes + best]) best = j;
        correct += best == y[r];
      }
    }
  }
  e.loss = e.rows ? loss_sum / static_cast<double>(e.rows) : 0.0;
  e.accuracy = e.rows ? static_cast<double>(correct) / static_cast<double>(e.rows) : -1.0;
  return e;
}

EvalStats Trainer::evaluate() { return evaluate_models(*backend_, *dataset_, config_, {model_.get()}); }

void load_weights_into(const std::vector<Param*>& params, const std::string& path) {
  std::map<std::string, Tensor> by_name;
  for (auto& [name, t] : load_safetensors(path)) by_name.emplace(name, t);
  // Check everything before changing anything: a bad file leaves the model as it was.
  std::map<std::string, const Param*> known;
  for (const Param* p : params) {
    known.emplace(p->name, p);
    auto it = by_name.find(p->name);
    if (it == by_name.end())
      throw Error(ErrorKind::kInput, path + ": missing tensor '" + p->name + "' " + shape_str(p->value.shape()) +
                                         " (file written for another model? check model.* settings)");
    if (it->second.shape() != p->value.shape())
      throw Error(ErrorKind::kInput, path + ": tensor '" + p->name + "' has shape " + shape_str(it->second.shape()) +
                                         ", the model expects " + shape_str(p->value.shape()) + " (check model.* settings)");
    if (it->second.dtype() != DType::f32 && it->second.dtype() != DType::bf16)
      throw Error(ErrorKind::kInput, path + ": tensor '" + p->name + "' is " + std::string(dtype_name(it->second.dtype())) +
                                         "; weights must be f32 or bf16");
  }
  for (auto& [name, t] : by_name)
    if (!known.count(name))
      throw Error(ErrorKind::kInput, path + ": tensor '" + name + "' is not a parameter of this model (check model.* settings)");
  // NaN or Inf in a starting weight spreads to every output in one step: refused with where it is.
  std::map<std::string, Tensor> f32;
  for (Param* p : params) {
    const Tensor& t = by_name.at(p->name);
    const Tensor& v = f32.emplace(p->name, t.dtype() == DType::f32 ? t : t.to(DType::f32)).first->second;
    if (auto i = first_nonfinite(v.span_f32()))
      throw Error(ErrorKind::kInput, fmt::format("{}: tensor '{}' holds {} at element {} (of {}); weights must be finite "
                                                 "(was the file saved from a run that diverged?)",
                                                 path, p->name, v.span_f32()[static_cast<std::size_t>(*i)], *i, v.numel()));
  }
  for (Param* p : params) p->value.copy_from(f32.at(p->name));
}

void save_weights_from(const std::vector<Param*>& params, const std::string& path, const RunConfig& config) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Param* p : params) tensors.emplace_back(p->name, p->value);
  save_safetensors(path, tensors, weights_metadata(config));  // the file describes its model (weights_config.h)
}

// Parameters and buffers (batch-norm running statistics): the model's whole state.
void Trainer::load_weights(const std::string& path) {
  if (!group_.split()) return load_weights_into(model_->params().state(), path);
  // Whole tensors, checked as the single device checks them, then each shard keeps its slice.
  std::vector<std::unique_ptr<Param>> whole;
  std::vector<Param*> view;
  for (Param* p : model_->params().state()) {
    auto w = std::make_unique<Param>();
    w->name = p->name;
    w->value = Tensor::empty(p->split.split() ? comm::gather_shape(*p) : p->value.shape());
    view.push_back(w.get());
    whole.push_back(std::move(w));
  }
  load_weights_into(view, path);
  const std::vector<Param*> state = model_->params().state();
  for (std::size_t i = 0; i < state.size(); ++i) state[i]->value.copy_from(shard_of(view[i]->value, state[i]->split));
}

void Trainer::save_weights(const std::string& path) const {
  if (!group_.split()) return save_weights_from(model_->params().state(), path, config_);
  std::vector<std::unique_ptr<Param>> whole;
  std::vector<Param*> view;
  for (const Param* p : model_->params().state()) {
    auto w = std::make_unique<Param>();
    w->name = p->name;
    w->value = comm::gather_whole(group_, *p);
    view.push_back(w.get());
    whole.push_back(std::move(w));
  }
  if (group_.rank() == 0) save_weights_from(view, path, config_);
}

TrainingState Trainer::training_state(std::int64_t steps_done) const {
  TrainingState s;
  s.step = steps_done;
  if (!group_.split()) {
    gather_params(model_->params().state(), s.params);
    s.optimizer = optimizer_->state().clone();
    return s;
  }
  // A state is whole tensors by name, whatever the layout (training_state.h): split parameters and
  // their optimizer state are gathered over the shards (a collective: every shard calls, every shard
  // gets the whole state), so it restores into any parallel.tensor.
  for (const Param* p : model_->params().state()) s.params.emplace_back(p->name, comm::gather_whole(group_, *p));
  // The same order, the same entries on every shard.
  s.optimizer = gather_shard_optimizer_state(group_, optimizer_->state(), model_->params().all());
  return s;
}

void Trainer::restore_training_state(const TrainingState& state, const std::string& source) {
  if (!group_.split()) {
    check_covers(state, model_->params().state(), source);
    scatter_params(state.params, model_->params().state(), source);
    optimizer_->state() = optimizer_state_for(state.optimizer, model_->params().all());
    return;
  }
  // Whole tensors in, this shard's slices kept.
  const TrainingState mine = shard_of_state(state, model_->params().state());
  check_covers(mine, model_->params().state(), source);
  scatter_params(mine.params, model_->params().state(), source);
  optimizer_->state() = optimizer_state_for(mine.optimizer, model_->params().all());
}

}  // namespace troupe
