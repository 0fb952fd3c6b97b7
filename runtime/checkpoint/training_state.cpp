// TrainingState: gather by name from a layout's holders, scatter by name back into another layout's.
#include "runtime/checkpoint/training_state.h"

#include <map>
#include <set>

#include "runtime/error.h"

namespace troupe {

void gather_params(const std::vector<Param*>& params, NamedTensors& out) {
  for (const Param* p : params) out.emplace_back(p->name, p->value.clone());
}

void gather_optimizer_state(const OptimizerState& part, OptimizerState& whole, bool first) {
  if (first) whole.step = part.step;
  for (const auto& [name, ps] : part.params) {
    TROUPE_CHECK(!whole.find(name), "optimizer state of '", name, "' held twice");
    ParamState& dst = whole.get_or_create(name);
    dst.step = ps.step;
    for (const auto& [slot, t] : ps.tensors) dst.tensors[slot] = t.clone();
  }
}

void scatter_params(const NamedTensors& from, const std::vector<Param*>& params, const std::string& source) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : from) by_name.emplace(name, &t);
  for (const Param* p : params) {
    auto it = by_name.find(p->name);
    if (it == by_name.end())
      throw Error(ErrorKind::kInput, source + ": no tensor '" + p->name + "' (written for another model?)");
    if (it->second->shape() != p->value.shape() || it->second->dtype() != p->value.dtype())
      throw Error(ErrorKind::kInput, source + ": tensor '" + p->name + "' has shape " + shape_str(it->second->shape()) +
                                         ", the model expects " + shape_str(p->value.shape()));
  }
  for (Param* p : params) p->value.copy_from(*by_name.at(p->name));
}

OptimizerState optimizer_state_for(const OptimizerState& whole, const std::vector<Param*>& params) {
  OptimizerState share;
  share.step = whole.step;
  for (const Param* p : params)
    if (const ParamState* ps = whole.find(p->name)) {
      ParamState& dst = share.get_or_create(p->name);
      dst.step = ps->step;
      for (const auto& [slot, t] : ps->tensors) dst.tensors[slot] = t.clone();
    }
  return share;
}

void check_covers(const TrainingState& state, const std::vector<Param*>& all, const std::string& source) {
  std::set<std::string> names;
  for (const Param* p : all) names.insert(p->name);
  for (const auto& [name, t] : state.params)
    if (!names.count(name))
      throw Error(ErrorKind::kInput, source + ": tensor '" + name + "' is not a parameter of this model (check model.*)");
  for (const auto& [name, ps] : state.optimizer.params) {
    if (!names.count(name))
      throw Error(ErrorKind::kInput, source + ": optimizer state for '" + name + "', which this model does not have");
    for (const Param* p : all)
      if (p->name == name)
        for (const auto& [slot, t] : ps.tensors)
          if (t.shape() != p->value.shape())
            throw Error(ErrorKind::kInput, source + ": optimizer state '" + name + "." + slot + "' has shape " +
                                               shape_str(t.shape()) + ", the parameter " + shape_str(p->value.shape()));
  }
}

}  // namespace troupe
