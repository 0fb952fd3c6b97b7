// Owns the config front end: TOML file and --set overrides into one validated RunConfig, TOML back out, help
// (text and Markdown).
//
// Precedence, lowest first: RunConfig's defaults, the TOML file, then each --set in order (a later --set
// of the same key wins). validate() runs once, on the result, so a file may hold a value that only a
// later --set makes consistent.
//
// Every rejection is a troupe::Error(ErrorKind::kConfig) whose message is one line naming the key, the
// value and what is allowed (see config_schema.h), prefixed with where the value came from: a file and
// position, or the overrides' source name ("override" for a library caller; the CLI says "--set"):
//   run.toml:3:9: train.steps = 'abc': expected an integer
//   override: unknown config key 'train.step' (did you mean 'train.steps'?)
//   run.toml: config file not found
//   run.toml:2:1: invalid TOML: <toml++'s description>
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/run_config.h"

namespace troupe {

// Where each key that was set explicitly came from: "model.n_embd" -> "--set" (the overrides' source
// name) or "run.toml" (the file's path). Keys left at their defaults are absent.
using ConfigOrigins = std::map<std::string, std::string>;

// Defaults, then the file at `toml_path` (if given), then each "key=value" override; then validate().
// The file may use tables ([model] n_layer = 4), dotted keys (model.n_layer = 4) or both.
// `origins`, when given, receives where each set key came from; `overrides_source` names the overrides
// in errors and origins (the CLI passes "--set").
RunConfig load_config(const std::optional<std::string>& toml_path, const std::vector<std::string>& set_overrides,
                      ConfigOrigins* origins = nullptr, const std::string& overrides_source = "override");

// Applies TOML text to `config`; `source` names it in errors (a path, or "<string>").
void apply_config_toml(RunConfig& config, std::string_view toml_text, const std::string& source);

// Applies one "key=value" (spaces around either side are ignored); the value is parsed by the key's type.
// `source` prefixes errors.
void apply_config_override(RunConfig& config, std::string_view key_equals_value,
                           const std::string& source = "override");

// The one place where a whole config is checked: every key's range and choices (so a RunConfig built in
// code is held to the same rules as a loaded one), then the rules that involve several keys:
//  - gpt: model.n_embd divisible by model.n_head;
//  - cosine schedule: train.warmup_steps <= train.steps, train.min_lr <= the effective optim.lr;
//  - an optim.* key set away from its default must be one the chosen optim.kind reads (optim.beta1 with
//    sgd is a mistake, not a no-op);
//  - optim.nesterov needs optim.momentum > 0 and optim.dampening = 0 (as torch.optim.SGD requires).
void validate(const RunConfig& config);

// Whether any pipeline stage computes on a GPU: train.device is cuda:N, or parallel.placement names a cuda
// device for a stage.
bool computes_on_cuda(const RunConfig& config);

// The effective config as TOML, one [section] per group and every key present: load_config() of the
// text gives back an equal RunConfig. optim.* values left unset are written as comments that show the
// torch default in effect, so they stay unset when read back.
std::string config_to_toml(const RunConfig& config);

// Every key with its type, default, allowed values and help, one aligned line each (a second line for a
// default that follows optim.kind), under a column heading, for `troupe train --help` (which adds the title).
std::string config_help();

// The same keys as a Markdown reference (`troupe config --markdown`, committed as docs/config.md): a short
// preamble, then one table per section with each key's name, type, default, allowed values and meaning.
// A test compares docs/config.md with this output, so the reference cannot drift from the schema.
std::string config_markdown();

}  // namespace troupe
