// Owns what may not change when a run resumes from a checkpoint: the model (model.*: kind and shape, so
// every tensor keeps its name and shape), the optimizer kind (optim.kind: its state tensors mean
// nothing to another) and, for model.kind = deepfm, train.seed (it makes the click log). Everything else
// may change — the layout (parallel.*, ps.shards), the number of steps, the threads — and the resumed
// run continues the same training.
#pragma once

#include <string>

#include "runtime/config/run_config.h"

namespace troupe {

// Throws troupe::Error(kConfig) naming the first key that differs, both values and `checkpoint`.
void check_resumable(const RunConfig& resumed, const RunConfig& written, const std::string& checkpoint);

}  // namespace troupe
