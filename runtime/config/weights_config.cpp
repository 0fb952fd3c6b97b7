// A weights file's model configuration: written as safetensors metadata, adopted when the file is loaded.
#include "runtime/config/weights_config.h"

#include <fmt/format.h>

#include "runtime/config/config_loader.h"
#include "runtime/config/config_schema.h"
#include "runtime/error.h"
#include "runtime/io/safetensors.h"
#include "runtime/version.h"

namespace troupe {

namespace {
constexpr std::string_view kModelPrefix = "model.";
constexpr const char* kVersionKey = "troupe.version";

// model.* keys that say how to train rather than what the weights are: not recorded, not adopted.
bool is_training_choice(std::string_view name) { return name == "model.sync_batchnorm"; }

bool is_model_key(const ConfigKey& key) {
  return key.name.compare(0, kModelPrefix.size(), kModelPrefix) == 0 && !is_training_choice(key.name);
}
}  // namespace

std::map<std::string, std::string> weights_metadata(const RunConfig& config) {
  std::map<std::string, std::string> meta{
      {"format", "pt"}, {"producer", "troupe"}, {kVersionKey, std::string(troupe_version())}};
  for (const ConfigKey& key : config_schema())
    if (is_model_key(key))
      if (auto value = key.get(config)) meta[key.name] = config_value_to_text(*value);
  return meta;
}

RunConfig adopt_model_config(RunConfig config, const ConfigOrigins& explicit_keys,
                             const std::map<std::string, std::string>& metadata, const std::string& weights_name) {
  auto version = metadata.find(kVersionKey);
  const std::string writer =
      version == metadata.end() ? std::string("troupe") : fmt::format("troupe {}", version->second);
  for (const auto& [name, text] : metadata) {
    if (name.compare(0, kModelPrefix.size(), kModelPrefix) != 0 || is_training_choice(name)) continue;
    const ConfigKey* key = find_config_key(name);
    if (!key) continue;  // a key this version does not have: the tensors' shapes are still checked on load
    ConfigValue value;
    try {
      value = parse_config_text(*key, text);
    } catch (const Error& e) {
      throw Error(ErrorKind::kInput, fmt::format("{}: its metadata (written by {}) is not valid here: {}",
                                                 weights_name, writer, e.what()));
    }
    if (auto origin = explicit_keys.find(name); origin != explicit_keys.end()) {
      const std::optional<ConfigValue> mine = key->get(config);
      if (!mine || *mine != value)
        throw Error(ErrorKind::kConfig,
                    fmt::format("{} = {} ({}) but {} was written with {} = {}; remove the setting to use the "
                                "file's, or load weights of that shape",
                                name, mine ? config_value_to_text(*mine) : std::string("unset"), origin->second,
                                weights_name, name, text));
      continue;
    }
    key->set(config, value);
  }
  // DeepFM's weights come from parameter servers, the only way it trains: reading them (troupe eval) needs
  // no parallel.gradient_exchange = ps from the user.
  if (is_recommender(config.model.kind) && !explicit_keys.count("parallel.gradient_exchange"))
    config.parallel.gradient_exchange = GradientExchange::ps;
  try {
    validate(config);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kConfig) throw;
    throw Error(ErrorKind::kConfig,
                fmt::format("with the model configuration of {} (written by {}): {}", weights_name, writer, e.what()));
  }
  return config;
}

RunConfig adopt_model_config_from_weights(const RunConfig& config, const ConfigOrigins& explicit_keys,
                                          const std::string& path) {
  if (path.empty()) return config;
  return adopt_model_config(config, explicit_keys, load_safetensors_metadata(path), path);
}

}  // namespace troupe
