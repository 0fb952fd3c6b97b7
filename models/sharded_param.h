// Owns add_sharded: registering a parameter as one tensor-parallel shard's slice of its whole (nanoGPT-shaped) tensor, initialised as the whole would be.
//
// Initialisation draws per (seed, name) stream over the whole tensor (models/init.h); a shard draws
// the whole tensor and keeps its slice, so every T starts from the single device's weights.
#pragma once

#include <functional>
#include <string>

#include "runtime/param.h"

namespace troupe {

// Adds `name` to `params` with the shard shape of `whole` under `split` (the whole shape when not
// split), filled by init(whole tensor) and sliced. Returns the new parameter.
Param* add_sharded(ParamSet& params, const std::string& name, const Shape& whole, const TensorSplit& split,
                   const std::function<void(const Tensor&, const std::string&)>& init);

}  // namespace troupe
