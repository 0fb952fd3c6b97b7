// Owns Model: a sequence of layers built from LayerSpecs into one ParamSet, run forward and backward
// over a micro-batch. A pipeline stage is a Model built from a contiguous range of the same specs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/layer.h"
#include "runtime/comm/tensor_group.h"
#include "runtime/config/run_config.h"
#include "runtime/plan/topology.h"

namespace troupe {

// How to build one layer, and what it costs: the unit that partitioners assign to stages.
struct LayerSpec {
  std::string name;
  double flops_per_row = 0.0;
  std::function<std::unique_ptr<Layer>(ParamSet&)> make;
  // The name of another layer's parameter this layer uses (a tied weight); empty: none. The model
  // declares its ties here so that pipeline stages handle them without knowing the model.
  std::string tied_weight = {};
  // Parameter elements of the whole layer that tensor parallelism splits over the shards, and those
  // every shard holds whole: the plan's per-shard parameter bytes (runtime/plan/topology.h).
  std::int64_t split_params = 0;
  std::int64_t replicated_params = 0;
};

// The tied weight the model declares (its first), or empty.
std::string tied_weight_of(const std::vector<LayerSpec>& specs);

// The layer list of model.kind, with parameters initialised from seed; built as shard group.rank()
// of group.size() tensor-parallel shards (the whole layers for a group of one).
std::vector<LayerSpec> make_layer_specs(const ModelConfig& config, std::uint64_t seed, comm::TensorGroup group = {});

// The layers' names and costs, as the planner (runtime/plan/topology.h) lays them out.
plan::LayerInfo layer_info(const std::vector<LayerSpec>& specs);

class Model {
 public:
  // Builds specs[first, last) (all of them by default).
  explicit Model(const std::vector<LayerSpec>& specs, std::size_t first = 0, std::size_t last = SIZE_MAX);

  ParamSet& params() { return params_; }
  const ParamSet& params() const { return params_; }
  std::size_t num_layers() const { return layers_.size(); }
  Layer& layer(std::size_t i) { return *layers_.at(i); }

  // One LayerCtx per layer for one micro-batch in flight.
  std::vector<LayerCtx> make_contexts() const { return std::vector<LayerCtx>(layers_.size()); }
  // Forward through every layer; the result is the last layer's output (per-row losses for a full model).
  Tensor forward(Backend& be, const MicroBatch& mb, std::vector<LayerCtx>& ctxs, const Tensor& input);
  // Backward through every layer in reverse, starting from dy (undefined when the last layer is the loss).
  // after_layer(i), when given, runs once layer i's backward is done (its gradients hold this
  // micro-batch's contribution): data parallelism starts reducing a bucket from there.
  Tensor backward(Backend& be, const MicroBatch& mb, std::vector<LayerCtx>& ctxs, const Tensor& dy,
                  const std::function<void(std::size_t)>& after_layer = {});

  // Every gradient buffer of layer i: its parameters' gradients, then its extra ones (a tied weight's).
  std::vector<Tensor> grad_buffers(std::size_t layer) const;
  // In deterministic mode, turns the exact gradient sums of every buffer into float gradients
  // (Backend::flush_exact_grad); a no-op otherwise. Call before finish_grads().
  void flush_exact_grads(Backend& be) const;

  void zero_grad();
  // Before an optimizer step: fold gradients kept outside the ParamSet (tied weights) into their owners.
  void finish_grads();

 private:
  ParamSet params_;
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace troupe
