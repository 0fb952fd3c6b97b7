// Owns the config schema: the one table of every RunConfig key, with its type, default, range, help and setter.
//
// Everything that reads or writes a setting by name goes through this table: the TOML loader, `--set
// key=value`, config_help() (`troupe train --help`) and config_to_toml (all in config_loader.h). Adding a setting means adding one row here (and
// the field in run_config.h); the loader, the help text and the tests pick it up from the table.
//
// Errors in this file are user-facing: every function that rejects a value throws
// troupe::Error(ErrorKind::kConfig) with one line naming the key, the value and what is allowed, e.g.
//   train.steps = 'abc': expected an integer
//   train.batch_size = 0: must be >= 1
//   optim.kind = 'adamx': expected one of sgd, adam, adamw, rmsprop
//   unknown config key 'train.step' (did you mean 'train.steps'?)
// Callers add where the value came from (a file and line, or --set) as a prefix.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/config/run_config.h"

namespace troupe {

enum class KeyType {
  kInt,      // signed integer; the range keeps it within the field's C++ type
  kUint64,   // unsigned 64-bit (seeds); TOML integers stop at 2^63-1, so a TOML string is also accepted
  kFloat,    // finite double; a TOML integer is accepted (min_lr = 0)
  kBool,     // true/false; from text also 1/0
  kString,   // any text
  kEnum,     // one of ConfigKey::choices
  kIntList,  // "1024,1024" from text, [1024, 1024] (or that string) in TOML; may be empty
};

// A parsed value. Which alternative a key holds follows its KeyType: kInt -> int64, kUint64 -> uint64,
// kFloat -> double, kBool -> bool, kString/kEnum -> string, kIntList -> vector<int64>.
using ConfigValue =
    std::variant<std::int64_t, std::uint64_t, double, bool, std::string, std::vector<std::int64_t>>;

// Allowed numeric values; applies to kInt, kFloat and to each element of kIntList. Unset bounds are open.
struct Range {
  std::optional<double> min, max;
  bool min_exclusive = false;  // "> min" instead of ">= min"
  bool max_exclusive = false;
  bool integral = false;       // an integer key: both sides are written out, ">= 1 and <= 1048576"

  bool contains(double v) const;
  // ">= 1", "> 0", "in [0, 1)", ">= 1 and <= 1048576" (integral); empty when unbounded.
  std::string bounds() const;
  // "must be >= 1", "must be > 0", "must be in [0, 1)"; empty when unbounded.
  std::string describe() const;
};

struct ConfigKey {
  std::string name;                  // dotted: "train.steps"
  KeyType type;
  std::vector<std::string> choices;  // kEnum only, in the order help lists them
  std::string default_text;          // for help; optim.* defaults that follow optim.kind say so
  Range range;
  // What the C++ field can hold (an int field stops at 2^31-1); checked after `range` for kInt and each
  // element of kIntList, so a huge value is an error rather than a silent wrap.
  std::int64_t int_min = INT64_MIN, int_max = INT64_MAX;
  std::string help;                  // one line
  // Optimizer kinds that read this key; empty: not an optim.* key. validate() rejects a key set for a
  // kind that ignores it, because a silently ignored setting is a mistake the user would not notice.
  std::vector<OptimKind> used_by;
  // For an optional float (the optim.* torch defaults): the value in effect while get() says unset.
  std::function<double(const RunConfig&)> unset_value;
  // Writes a value (already of the key's type and in range) into the config.
  std::function<void(RunConfig&, const ConfigValue&)> set;
  // Reads the current value; nullopt for an optional setting left unset (optim.* torch defaults).
  std::function<std::optional<ConfigValue>(const RunConfig&)> get;
};

// Every key, grouped by section (model, data, train, optim) in the order help prints them.
const std::vector<ConfigKey>& config_schema();

// The key named `name`, or nullptr.
const ConfigKey* find_config_key(std::string_view name);

// The known key closest to a misspelt `name` ("train.step" -> "train.steps", "steps" -> "train.steps"),
// or empty when nothing is close enough to be a plausible typo.
std::string closest_config_key(std::string_view name);

// `text` as an error message echoes it: whole up to `max_chars`, else its first `max_chars` characters and
// "... (N characters)", so that a pasted megabyte never becomes a megabyte-long error line.
std::string echo_text(std::string_view text, std::size_t max_chars = 64);

// Throws the "unknown config key" error for `name`, with a suggestion when there is one.
[[noreturn]] void throw_unknown_key(std::string_view name);

// Parses `text` (the right-hand side of --set key=value) by the key's type and checks its range.
ConfigValue parse_config_text(const ConfigKey& key, std::string_view text);

// A device as a config names it (train.device, each parallel.placement entry): "cpu", "cpu:0", "cuda"
// (GPU 0) or "cuda:N"; nullopt for anything else. The CPU is one device to a config (train.threads sizes
// it), so "cpu:1" is none.
std::optional<Device> parse_config_device(std::string_view text);

// Checks a value of the key's type against its range, limits and choices.
void check_config_value(const ConfigKey& key, const ConfigValue& value);

// The value as TOML text: 4, 0.001, true, "gpt", [1024, 1024]. Floats are written so that reading them
// back gives the same double; a uint64 above 2^63-1 is written as a string (see kUint64).
std::string config_value_to_toml(const ConfigValue& value);

// The value as --set text: 4, 0.001, true, gpt, 1024,1024 (parse_config_text reads it back).
std::string config_value_to_text(const ConfigValue& value);

// The names of key.used_by, comma-separated: "adam, adamw".
std::string used_by_names(const ConfigKey& key);

// Name of a key's type for help: "int", "uint64", "float", "bool", "string", "enum", "int list".
std::string config_type_name(const ConfigKey& key);

}  // namespace troupe
