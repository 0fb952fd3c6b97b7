// Optimizer::step's validate-then-update walk over the parameters, and make_optimizer's mapping from OptimConfig.
#include "runtime/optim/optimizer.h"

#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "runtime/error.h"
#include "runtime/optim/adam.h"
#include "runtime/optim/rmsprop.h"
#include "runtime/optim/sgd.h"

namespace troupe {

void Optimizer::step(std::vector<Param*>& params, double lr) {
  if (!(lr >= 0.0) || !std::isfinite(lr))
    throw Error(ErrorKind::kConfig, fmt::format("learning rate {} at optimizer step {} is invalid: it must be finite and >= 0 "
                                                "(check optim.lr, train.lr_schedule and train.min_lr)",
                                                lr, state_.step + 1));
  // Validate everything first, so that a bad state tensor (say, from a checkpoint of another model)
  // cannot leave half of the parameters updated.
  for (Param* p : params) {
    TROUPE_CHECK(p != nullptr, "null parameter in optimizer step");
    if (!p->grad.defined()) continue;
    TROUPE_CHECK(p->grad.shape() == p->value.shape(), "gradient of ", p->name, " is ", shape_str(p->grad.shape()),
                 " but the parameter is ", shape_str(p->value.shape()));
    const ParamState* s = state_.find(p->name);
    if (!s) continue;
    for (const auto& [name, t] : s->tensors)
      if (t.shape() != p->value.shape() || t.dtype() != DType::f32 || !t.device().is_cpu())
        throw Error(ErrorKind::kInput,
                    fmt::format("optimizer state '{}' of parameter '{}' is {} {} on {} but the parameter is f32 {} on cpu "
                                "(was the state restored from another model?)",
                                name, p->name, dtype_name(t.dtype()), shape_str(t.shape()), t.device().str(),
                                shape_str(p->value.shape())));
  }
  ++state_.step;
  for (Param* p : params) {
    if (!p->grad.defined()) continue;
    ParamState& s = state_.get_or_create(p->name);
    ++s.step;
    update(*p, s, lr);
  }
}

Tensor& Optimizer::state_zeros(ParamState& s, const std::string& name, const Param& p) {
  auto it = s.tensors.find(name);
  if (it == s.tensors.end()) it = s.tensors.emplace(name, Tensor::zeros(p.value.shape())).first;
  return it->second;
}

namespace {

// Rejects a hyper-parameter that `kind` does not take, as torch.optim does with a TypeError.
void reject_unused(const OptimConfig& c, bool is_set, std::string_view key, std::string_view takers) {
  if (is_set)
    throw Error(ErrorKind::kConfig,
                fmt::format("{} is set but optim.kind = {} does not take it (only {} do); remove it", key, c.kind, takers));
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& c) {
  const bool sgd = c.kind == OptimKind::sgd, adam = c.kind == OptimKind::adam || c.kind == OptimKind::adamw,
             rmsprop = c.kind == OptimKind::rmsprop;

  if (!adam) {
    reject_unused(c, c.beta1.has_value(), "optim.beta1", "adam and adamw");
    reject_unused(c, c.beta2.has_value(), "optim.beta2", "adam and adamw");
  }
  if (sgd) reject_unused(c, c.eps.has_value(), "optim.eps", "adam, adamw and rmsprop");
  if (adam) reject_unused(c, c.momentum.has_value(), "optim.momentum", "sgd and rmsprop");
  if (!sgd) {
    reject_unused(c, c.dampening.has_value(), "optim.dampening", "sgd");
    reject_unused(c, c.nesterov, "optim.nesterov", "sgd");
  }
  if (!rmsprop) {
    reject_unused(c, c.alpha.has_value(), "optim.alpha", "rmsprop");
    reject_unused(c, c.centered, "optim.centered", "rmsprop");
  }

  if (sgd) {
    SgdOptions o;
    o.lr = c.lr_or_default();
    o.momentum = c.momentum_or_default();
    o.dampening = c.dampening_or_default();
    o.weight_decay = c.weight_decay_or_default();
    o.nesterov = c.nesterov;
    return make_sgd(o);
  }
  if (adam) {
    AdamOptions o;
    o.lr = c.lr_or_default();
    o.beta1 = c.beta1_or_default();
    o.beta2 = c.beta2_or_default();
    o.eps = c.eps_or_default();
    o.weight_decay = c.weight_decay_or_default();
    o.decoupled = c.kind == OptimKind::adamw;
    return make_adam(o);
  }
  RmspropOptions o;
  o.lr = c.lr_or_default();
  o.alpha = c.alpha_or_default();
  o.eps = c.eps_or_default();
  o.weight_decay = c.weight_decay_or_default();
  o.momentum = c.momentum_or_default();
  o.centered = c.centered;
  return make_rmsprop(o);
}

}  // namespace troupe
