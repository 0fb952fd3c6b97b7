// The configuration of a trained model's weights file, for troupe sample and troupe eval.
#include "cli/weights_input.h"

#include <filesystem>

#include "runtime/config/config_loader.h"
#include "runtime/config/weights_config.h"
#include "runtime/error.h"

namespace troupe {

RunConfig config_for_weights(const WeightsInput& in) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(in.weights, ec))
    throw Error(ErrorKind::kUsage, "--weights " + in.weights +
                                       ": no such file (write one with troupe train --save FILE, or give its path)");
  ConfigOrigins explicit_keys;
  return adopt_model_config_from_weights(load_config(in.config_path, in.sets, &explicit_keys, "--set"), explicit_keys,
                                         in.weights);
}

}  // namespace troupe
