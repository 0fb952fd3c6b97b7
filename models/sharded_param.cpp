// add_sharded: the whole tensor initialised, then this shard's slice kept.
#include "models/sharded_param.h"

namespace troupe {

Param* add_sharded(ParamSet& params, const std::string& name, const Shape& whole, const TensorSplit& split,
                   const std::function<void(const Tensor&, const std::string&)>& init) {
  Param* p = &params.add(name, shard_shape(whole, split));
  p->split = split;
  if (!split.split()) {
    init(p->value, name);
    return p;
  }
  Tensor full = Tensor::empty(whole);
  init(full, name);
  p->value.copy_from(shard_of(full, split));
  return p;
}

}  // namespace troupe
