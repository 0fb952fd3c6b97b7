// Owns the Optimizer interface (one update step over a list of parameters) and make_optimizer.
//
// Each optimizer reproduces torch.optim.X with one parameter group holding every parameter, on PyTorch's
// single-tensor (foreach=False, non-fused) code path: the same formulas, in the same order, on float32
// tensors, with scalars such as bias corrections computed in double (as Python does) and rounded to
// float when applied. Results match PyTorch to float precision (about 1e-6 relative); they are not
// promised bit-identical, because PyTorch's vectorised kernels may fuse a multiply-add that troupe
// rounds twice.
//
// The learning rate is an argument of step(), not a member, so that a schedule (lr_schedule.h) drives
// it; this is PyTorch's `param_groups[0]["lr"] = ...` before each step. Decoupled weight decay (AdamW)
// uses the lr passed to that step, as PyTorch does.
//
// All mutable per-parameter data lives in an OptimizerState (optimizer_state.h) keyed by parameter
// name, so it can be saved, restored or moved while the Optimizer itself keeps only hyper-parameters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/run_config.h"
#include "runtime/optim/optimizer_state.h"
#include "runtime/param.h"

namespace troupe {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "sgd", "adam", "adamw" or "rmsprop" (the optim.kind that makes it).
  virtual std::string_view kind() const = 0;

  // One update of every parameter in `params` that has a gradient (Param::grad defined), in order, with
  // learning rate `lr`. A parameter whose grad is undefined is skipped and gets no state, as PyTorch
  // skips `p.grad is None`. Gradients are read, never modified.
  // Throws troupe::Error: kConfig when lr is negative or not finite; kInput when a parameter's existing
  // state tensor (e.g. restored from a checkpoint) does not have the parameter's shape or is not f32.
  // Both are checked before any parameter changes, so a throwing step leaves parameters and state as
  // they were.
  virtual void step(std::vector<Param*>& params, double lr);

  // optim.lr as configured: the value a schedule starts from (lr_at(train, base_lr(), step)).
  double base_lr() const { return base_lr_; }
  // step() calls so far.
  std::int64_t step_count() const { return state_.step; }

  OptimizerState& state() { return state_; }
  const OptimizerState& state() const { return state_; }
  // Bytes held by state tensors: 0 for plain SGD, one parameter copy for SGD with momentum, two for
  // Adam/AdamW, one to three for RMSprop.
  std::size_t state_bytes() const { return state_.bytes(); }

 protected:
  explicit Optimizer(double base_lr) : base_lr_(base_lr) {}

  // Updates one parameter. `s.step` has already been incremented for this step (it is 1 on the first
  // update). Called only after step() has validated every parameter's state.
  virtual void update(Param& p, ParamState& s, double lr) = 0;

  // The state tensor `name` of `s`, created as zeros shaped like `p` if absent.
  static Tensor& state_zeros(ParamState& s, const std::string& name, const Param& p);

 private:
  double base_lr_;
  OptimizerState state_;
};

// Builds the optimizer that `config.kind` names, with unset hyper-parameters at torch.optim's defaults
// (OptimConfig's *_or_default()). Throws troupe::Error (kConfig) with a one-line message naming the key
// (e.g. "optim.beta1"), the value and the allowed range when:
//   - optim.kind is not sgd, adam, adamw or rmsprop;
//   - a hyper-parameter is outside the range torch.optim accepts (see sgd.h, adam.h, rmsprop.h; a NaN is
//     always rejected);
//   - a hyper-parameter is set that the kind does not take (e.g. optim.momentum for adam), as
//     torch.optim.Adam(momentum=...) is a TypeError: a silently ignored setting is a mistake hidden.
std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& config);

}  // namespace troupe
