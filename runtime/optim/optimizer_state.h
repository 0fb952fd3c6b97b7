// Owns OptimizerState: an optimizer's per-parameter state tensors and step counts, keyed by parameter name.
//
// The state is a plain value, separate from the update rules, so that it can be checkpointed and moved
// (to an optimizer actor, to another rank) without the Optimizer that produced it. It mirrors
// torch.optim's `optimizer.state`:
//   - one ParamState per parameter name, created the first time that parameter is stepped (a parameter
//     that has never had a gradient has no entry, as in PyTorch);
//   - ParamState::step counts the updates applied to that parameter (PyTorch's state[p]["step"]);
//     Adam's and RMSprop's bias corrections use it;
//   - ParamState::tensors holds the named f32 tensors, each shaped like its parameter, under PyTorch's
//     names: "momentum_buffer" (SGD, RMSprop), "exp_avg" and "exp_avg_sq" (Adam, AdamW),
//     "square_avg" and "grad_avg" (RMSprop).
// Maps are ordered, so walking the state (to save it, to hash it) visits entries in the same order on
// every rank and every run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "runtime/tensor.h"

namespace troupe {

struct ParamState {
  std::int64_t step = 0;                  // updates applied to this parameter
  std::map<std::string, Tensor> tensors;  // state name -> tensor shaped like the parameter

  // The named tensor, or nullptr when this parameter has none of that name.
  Tensor* find(const std::string& name);
  const Tensor* find(const std::string& name) const;
};

class OptimizerState {
 public:
  // Optimizer::step() calls so far (a parameter skipped for lack of a gradient still counts them).
  std::int64_t step = 0;
  // Parameter name -> its state.
  std::map<std::string, ParamState> params;

  ParamState* find(const std::string& param);
  const ParamState* find(const std::string& param) const;
  // The state of `param`, created empty (step 0, no tensors) if absent.
  ParamState& get_or_create(const std::string& param);

  // The named tensor of a parameter; throws troupe::Error (kInput) naming both when either is missing.
  const Tensor& tensor(const std::string& param, const std::string& name) const;

  // Bytes held by all state tensors (what a checkpoint or a transfer of this state costs).
  std::size_t bytes() const;
  // Number of state tensors across all parameters.
  std::size_t tensor_count() const;
  void clear();
  // A deep copy: its tensors do not follow the training that goes on (snapshots, checkpoints).
  OptimizerState clone() const;
};

}  // namespace troupe
