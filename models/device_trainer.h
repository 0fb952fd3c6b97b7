// Owns DeviceTrainer: the single-device training loop with the model in a device's memory (train.device = cuda:N), for `troupe train`.
//
// The same contract as Trainer (models/trainer.h): batches by step from the same dataset, the same
// loss, schedule, clipping and optimizer; evaluation over the same validation batches; weight files
// with the same names. The model is a DeviceGpt (GPT only; f32), so on the CPU (used by the tests)
// every loss and weight equals Trainer's bit for bit; on a GPU it is checked against the CPU by the
// [cuda] tests.
#pragma once

#include <memory>
#include <string>

#include "models/device_gpt.h"
#include "models/trainer.h"

namespace troupe {

class DeviceTrainer {
 public:
  // Throws troupe::Error (kConfig) for a model other than gpt, or a device this build or machine lacks.
  DeviceTrainer(const RunConfig& config, const Device& device);
  ~DeviceTrainer();

  StepStats train_step(std::int64_t step);
  EvalStats evaluate();
  void load_weights(const std::string& path);
  void save_weights(const std::string& path);
  // One span per step on the device's track (device work is asynchronous; a step ends when its loss
  // is read back).
  void set_trace(TraceRecorder* trace);

  Backend& backend() { return ops_->backend(); }
  Dataset& dataset() { return *dataset_; }
  DeviceGpt& model() { return *gpt_; }
  std::int64_t num_params() const { return gpt_->num_params(); }

 private:
  RunConfig config_;
  Device device_;
  std::unique_ptr<DeviceOps> ops_;
  std::unique_ptr<Dataset> dataset_;
  std::unique_ptr<DeviceGpt> gpt_;
  TraceRecorder* trace_ = nullptr;
  int track_ = 0;
};

}  // namespace troupe
