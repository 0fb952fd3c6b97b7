// Owns the model configuration that a weights file carries: what a writer records in the safetensors
// "__metadata__", and how a reader adopts it into the run's configuration.
//
// A weights file written by troupe describes itself: its metadata holds every model.* key (as --set text:
// "model.n_embd" -> "256", "model.mlp_hidden" -> "1024,1024"), the troupe version that wrote it
// ("troupe.version" -> "0.1.0"), and "format" -> "pt", "producer" -> "troupe" for other readers. Loading
// such a file needs no model keys: a key the user did not set explicitly is taken from the file, and a key
// set explicitly to another value is a config error that names both values and where each came from:
//   model.n_embd = 128 (--set) but w.safetensors was written with model.n_embd = 256
// A file without model.* metadata (written by troupe before 0.1.0, or by another program) leaves the
// configuration as it is; the tensors' names and shapes are then checked when the weights are loaded.
//
// Errors are troupe::Error: kConfig for a disagreement or a resulting configuration that validate()
// refuses; kInput when the file's metadata holds a value that is not valid for its key; kIo/kInput from
// reading the file (runtime/io/safetensors.h).
#pragma once

#include <map>
#include <string>

#include "runtime/config/config_loader.h"
#include "runtime/config/run_config.h"

namespace troupe {

// The metadata a weights file of a model with `config` carries (see above).
std::map<std::string, std::string> weights_metadata(const RunConfig& config);

// `config` with the file's model.* keys adopted (see above), validated. `metadata` is the file's
// "__metadata__"; `weights_name` names the file in messages. Keys of the metadata that this troupe does
// not know (a newer writer) and keys outside model.* are ignored.
// `explicit_keys` is what load_config reports in its `origins`.
RunConfig adopt_model_config(RunConfig config, const ConfigOrigins& explicit_keys,
                             const std::map<std::string, std::string>& metadata, const std::string& weights_name);

// adopt_model_config with the metadata of the safetensors file at `path` (only its header is read).
// An empty `path` returns `config` unchanged.
RunConfig adopt_model_config_from_weights(const RunConfig& config, const ConfigOrigins& explicit_keys,
                                          const std::string& path);

}  // namespace troupe
