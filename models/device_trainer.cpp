// DeviceTrainer: Trainer's loop, evaluation and weight files around a DeviceGpt.
#include "models/device_trainer.h"

#include <chrono>

namespace troupe {

DeviceTrainer::DeviceTrainer(const RunConfig& config, const Device& device) : config_(config), device_(device) {
  if (config.model.kind != ModelKind::gpt)
    throw Error(ErrorKind::kConfig, "model.kind = " + std::string(name_of(config.model.kind)) + " on " + device.str() +
                                        ": only the gpt trains on a CUDA device so far; use train.device = cpu");
  ops_ = make_device_ops(config, device);
  dataset_ = make_dataset(config);
  gpt_ = std::make_unique<DeviceGpt>(config, *ops_, config.train.precision);
}

DeviceTrainer::~DeviceTrainer() = default;

void DeviceTrainer::set_trace(TraceRecorder* trace) {
  trace_ = trace;
  track_ = trace->track(device_.str());
}

StepStats DeviceTrainer::train_step(std::int64_t step) {
  const auto start = std::chrono::steady_clock::now();
  const double t0 = trace_ ? trace_->now_us() : 0.0;
  const Batch batch = dataset_->train_batch(step, config_.train.batch_size);
  const GptStepResult r = gpt_->step(batch, step);
  ops_->synchronize();
  if (trace_) {
    trace_->span(track_, "step", "forward", t0, trace_->now_us());
    trace_->window(t0, trace_->now_us());
  }
  StepStats s;
  s.step = step;
  s.loss = r.loss;
  s.lr = r.lr;
  s.grad_norm = r.grad_norm;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.tokens_per_s = static_cast<double>(batch.targets.numel()) / s.seconds;
  return s;
}

EvalStats DeviceTrainer::evaluate() {
  // evaluate_models' batches: train.eval_batches validation batches of train.batch_size.
  const int bsz = config_.train.batch_size;
  std::int64_t batches = dataset_->eval_batches_full(bsz);
  if (batches == 0) batches = config_.train.eval_batches;
  EvalStats e;
  double sum = 0.0;
  for (std::int64_t k = 0; k < batches; ++k) {
    const Batch batch = dataset_->eval_batch(k, bsz);
    sum += gpt_->loss_sum(batch);
    e.rows += batch.targets.numel();
  }
  e.loss = e.rows ? sum / static_cast<double>(e.rows) : 0.0;
  return e;
}

void DeviceTrainer::load_weights(const std::string& path) {
  // Checked and converted on the host by the reference's loader, then copied to the device.
  std::vector<Param> host;
  for (Param* p : gpt_->params()) host.push_back({p->name, ops_->download(p->value), Tensor()});
  std::vector<Param*> ptrs;
  for (Param& p : host) ptrs.push_back(&p);
  load_weights_into(ptrs, path);
  const auto params = gpt_->params();
  for (std::size_t i = 0; i < params.size(); ++i) params[i]->value = ops_->upload(host[i].value);
}

void DeviceTrainer::save_weights(const std::string& path) {
  std::vector<Param> host;
  for (Param* p : gpt_->params()) host.push_back({p->name, ops_->download(p->value), Tensor()});
  std::vector<Param*> ptrs;
  for (Param& p : host) ptrs.push_back(&p);
  save_weights_from(ptrs, path, config_);
}

}  // namespace troupe
