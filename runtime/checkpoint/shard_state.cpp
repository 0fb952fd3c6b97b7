// gather_shard_optimizer_state and shard_of_state: a shard's state, whole by gathering, sliced by cutting.
#include "runtime/checkpoint/shard_state.h"

#include <map>
#include <string>

#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/tensor_split.h"

namespace troupe {

OptimizerState gather_shard_optimizer_state(comm::TensorGroup group, const OptimizerState& mine,
                                            const std::vector<Param*>& params) {
  OptimizerState whole;
  whole.step = mine.step;
  for (const Param* p : params) {
    const ParamState* ps = mine.find(p->name);
    if (!ps) continue;
    ParamState& to = whole.get_or_create(p->name);
    to.step = ps->step;
    for (const auto& [name, t] : ps->tensors) {
      Param view;
      view.name = p->name + "." + name;
      view.value = t;
      view.split = p->split;
      to.tensors[name] = comm::gather_whole(group, view);
    }
  }
  return whole;
}

TrainingState shard_of_state(const TrainingState& whole, const std::vector<Param*>& params) {
  std::map<std::string, const Param*> split;
  for (const Param* p : params)
    if (p->split.split()) split[p->name] = p;
  auto slice = [&](const std::string& param, const Tensor& t) {
    const auto it = split.find(param);
    if (it == split.end() || t.shape() != comm::gather_shape(*it->second)) return t;
    return shard_of(t, it->second->split);
  };
  TrainingState mine;
  mine.step = whole.step;
  for (const auto& [name, t] : whole.params) mine.params.emplace_back(name, slice(name, t));
  mine.optimizer.step = whole.optimizer.step;
  for (const auto& [name, ps] : whole.optimizer.params) {
    ParamState& to = mine.optimizer.get_or_create(name);
    to.step = ps.step;
    for (const auto& [k, t] : ps.tensors) to.tensors[k] = slice(name, t);
  }
  return mine;
}

}  // namespace troupe
