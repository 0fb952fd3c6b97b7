// ParamSet: registration, lookup and gradient reset.
#include "runtime/param.h"

#include <cstring>

namespace troupe {

Param& ParamSet::add(const std::string& name, Shape shape) {
  TROUPE_CHECK(!by_name_.count(name), "parameter registered twice: ", name);
  for (const Param* b : buffers_) TROUPE_CHECK(b->name != name, "name of a buffer registered as a parameter: ", name);
  auto p = std::make_unique<Param>();
  p->name = name;
  p->value = Tensor::empty(shape);
  p->grad = Tensor::zeros(shape);
  Param* raw = p.get();
  storage_.push_back(std::move(p));
  ordered_.push_back(raw);
  by_name_[name] = raw;
  return *raw;
}

Param& ParamSet::add_buffer(const std::string& name, Shape shape) {
  TROUPE_CHECK(!by_name_.count(name), "parameter registered twice: ", name);
  for (const Param* b : buffers_) TROUPE_CHECK(b->name != name, "buffer registered twice: ", name);
  auto p = std::make_unique<Param>();
  p->name = name;
  p->value = Tensor::empty(shape);
  Param* raw = p.get();
  storage_.push_back(std::move(p));
  buffers_.push_back(raw);
  return *raw;
}

std::vector<Param*> ParamSet::state() const {
  std::vector<Param*> out = ordered_;
  out.insert(out.end(), buffers_.begin(), buffers_.end());
  return out;
}

Param* ParamSet::find(const std::string& name) {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const Param* ParamSet::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Param& ParamSet::at(const std::string& name) {
  Param* p = find(name);
  if (!p) throw Error(ErrorKind::kInput, "no parameter named '" + name + "' in this model");
  return *p;
}

std::int64_t ParamSet::numel() const {
  std::int64_t n = 0;
  for (auto* p : ordered_) n += p->value.numel();
  return n;
}

void ParamSet::zero_grad() {
  for (auto* p : ordered_)
    if (p->grad.nbytes()) std::memset(p->grad.raw(), 0, p->grad.nbytes());
}

}  // namespace troupe
