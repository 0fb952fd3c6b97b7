// Owns how the verbs that use a trained model (sample, eval) find it: the configuration from --config/--set
// with the model.* keys the --weights file records, and the file checked before anything is built.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "runtime/config/run_config.h"

namespace troupe {

struct WeightsInput {
  std::string weights;                   // --weights FILE (required)
  std::optional<std::string> config_path;
  std::vector<std::string> sets;         // "key=value"
};

// The run configuration for `in.weights`: a missing file is a usage error naming it; model keys not set
// explicitly come from the file's metadata, and one set to another value is a config error
// (runtime/config/weights_config.h). The tensors themselves are checked when loaded.
RunConfig config_for_weights(const WeightsInput& in);

}  // namespace troupe
