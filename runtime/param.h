// Owns Param and ParamSet: named parameters with their gradients (and untrained buffers), in a stable registration order.
//
// A Param's name is its stable identity (nanoGPT's names for the GPT), used by checkpoints, weight
// files and optimizer state. Order of registration is the order of iteration, so anything that walks
// the parameters (clipping, optimizer steps, export) does so in the same order every run.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/tensor.h"
#include "runtime/tensor_split.h"

namespace troupe {

struct Param {
  std::string name;
  Tensor value;  // f32 master weights
  Tensor grad;   // same shape; accumulated by backward passes, zeroed by zero_grad()
  // Under tensor parallelism, which slice of the whole (nanoGPT-shaped) parameter `value` holds;
  // replicated (the whole tensor) by default. Weight files and checkpoints hold whole tensors.
  TensorSplit split = {};
  // Under sequence parallelism, a replicated parameter whose gradient each shard forms from its own
  // tokens only (a LayerNorm's): the gradients are summed over the tensor group before the step.
  bool sequence_partial = false;
};

class ParamSet {
 public:
  // Creates value (uninitialised) and grad (zeros) for a new parameter; names must be unique.
  Param& add(const std::string& name, Shape shape);
  Param* find(const std::string& name);
  const Param* find(const std::string& name) const;
  Param& at(const std::string& name);  // throws troupe::Error naming the missing parameter

  // A buffer: named state that weight files hold but no optimizer trains (batch-norm running statistics,
  // updated by forward passes). Its grad is undefined, and buffers are not in all(), so optimizers,
  // clipping and gradient exchange never see them. Names are unique across parameters and buffers.
  Param& add_buffer(const std::string& name, Shape shape);
  const std::vector<Param*>& buffers() const { return buffers_; }
  // What a weights file holds: all() then buffers(), each in registration order.
  std::vector<Param*> state() const;

  std::vector<Param*>& all() { return ordered_; }
  const std::vector<Param*>& all() const { return ordered_; }
  std::size_t size() const { return ordered_.size(); }
  std::int64_t numel() const;  // trainable values only (buffers not counted, as torch's parameters())

  void zero_grad();

 private:
  std::vector<std::unique_ptr<Param>> storage_;
  std::vector<Param*> ordered_;
  std::vector<Param*> buffers_;
  std::unordered_map<std::string, Param*> by_name_;
};

}  // namespace troupe
