// OptimizerState: lookups and size accounting over the per-parameter state maps.
#include "runtime/optim/optimizer_state.h"

#include "runtime/error.h"

namespace troupe {

Tensor* ParamState::find(const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

const Tensor* ParamState::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

ParamState* OptimizerState::find(const std::string& param) {
  auto it = params.find(param);
  return it == params.end() ? nullptr : &it->second;
}

const ParamState* OptimizerState::find(const std::string& param) const {
  auto it = params.find(param);
  return it == params.end() ? nullptr : &it->second;
}

ParamState& OptimizerState::get_or_create(const std::string& param) { return params[param]; }

const Tensor& OptimizerState::tensor(const std::string& param, const std::string& name) const {
  const ParamState* ps = find(param);
  if (!ps) throw Error(ErrorKind::kInput, "optimizer state has no entry for parameter '" + param + "' (it has not been stepped)");
  const Tensor* t = ps->find(name);
  if (!t) throw Error(ErrorKind::kInput, "optimizer state of parameter '" + param + "' has no tensor named '" + name + "'");
  return *t;
}

std::size_t OptimizerState::bytes() const {
  std::size_t total = 0;
  for (const auto& [name, ps] : params)
    for (const auto& [key, t] : ps.tensors) total += t.nbytes();
  return total;
}

std::size_t OptimizerState::tensor_count() const {
  std::size_t n = 0;
  for (const auto& [name, ps] : params) n += ps.tensors.size();
  return n;
}

void OptimizerState::clear() {
  step = 0;
  params.clear();
}

OptimizerState OptimizerState::clone() const {
  OptimizerState copy;
  copy.step = step;
  for (const auto& [name, ps] : params) {
    ParamState& dst = copy.get_or_create(name);
    dst.step = ps.step;
    for (const auto& [slot, t] : ps.tensors) dst.tensors[slot] = t.clone();
  }
  return copy;
}

}  // namespace troupe
