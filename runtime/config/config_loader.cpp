// Reading a RunConfig from TOML and --set, the whole-config validation, writing it back as TOML, and help.
#include "runtime/config/config_loader.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

#include "runtime/comm/compression/compression_spec.h"
#include "runtime/launch/host_port.h"
#include "runtime/config/config_schema.h"
#include "runtime/config/stage_devices.h"
#include "runtime/error.h"
#include "runtime/plan/topology.h"
#include "runtime/supervision/fault_plan.h"

namespace troupe {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Runs `fn`; a config error it throws is rethrown with `prefix` (where the value came from) in front.
template <class Fn>
void with_prefix(const std::string& prefix, Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kConfig) throw;
    throw Error(ErrorKind::kConfig, prefix + e.what());
  }
}

std::string location(const std::string& source, const toml::source_position& pos) {
  if (!pos) return source + ": ";
  return fmt::format("{}:{}:{}: ", source, pos.line, pos.column);
}

// A TOML value as it appears in messages: strings in single quotes like the --set errors, the rest in
// TOML syntax.
std::string show_node(const toml::node& node) {
  if (auto s = node.as_string()) return fmt::format("'{}'", echo_text(s->get()));
  if (node.is_table()) return "a table";
  std::ostringstream out;
  node.visit([&](const auto& v) { out << v; });
  return out.str();
}

[[noreturn]] void wrong_type(const ConfigKey& key, const toml::node& node, std::string_view expected) {
  throw Error(ErrorKind::kConfig, fmt::format("{} = {}: {}", key.name, show_node(node), expected));
}

// Converts a TOML value by the key's type. TOML's own types are used where they exist (an integer key
// wants a TOML integer, not "300"); the documented exceptions are in KeyType.
ConfigValue from_toml(const ConfigKey& key, const toml::node& node) {
  switch (key.type) {
    case KeyType::kInt:
      if (auto v = node.as_integer()) return std::int64_t{v->get()};
      wrong_type(key, node, "expected an integer");
    case KeyType::kUint64:
      if (auto v = node.as_integer()) {
        if (v->get() < 0) wrong_type(key, node, "expected an integer in [0, 2^64)");
        return static_cast<std::uint64_t>(v->get());
      }
      if (auto s = node.as_string()) return parse_config_text(key, s->get());
      wrong_type(key, node, "expected an integer in [0, 2^64)");
    case KeyType::kFloat:
      if (auto v = node.as_floating_point()) return double{v->get()};
      if (auto v = node.as_integer()) return static_cast<double>(v->get());
      wrong_type(key, node, "expected a number");
    case KeyType::kBool:
      if (auto v = node.as_boolean()) return bool{v->get()};
      wrong_type(key, node, "expected true or false");
    case KeyType::kString:
      if (auto s = node.as_string()) return std::string(s->get());
      wrong_type(key, node, "expected a string");
    case KeyType::kEnum: {
      if (auto s = node.as_string()) return std::string(s->get());
      std::string choices;
      for (const auto& c : key.choices) choices += (choices.empty() ? "" : ", ") + c;
      wrong_type(key, node, "expected one of " + choices);
    }
    case KeyType::kIntList: {
      if (auto s = node.as_string()) return parse_config_text(key, s->get());
      auto arr = node.as_array();
      if (!arr) wrong_type(key, node, "expected a list of integers, e.g. [1024, 1024]");
      std::vector<std::int64_t> list;
      for (const auto& item : *arr) {
        auto v = item.as_integer();
        if (!v) wrong_type(key, node, "expected a list of integers, e.g. [1024, 1024]");
        list.push_back(v->get());
      }
      return list;
    }
  }
  wrong_type(key, node, "unsupported key type");
}

bool is_section(std::string_view dotted) {
  const auto& schema = config_schema();
  return std::any_of(schema.begin(), schema.end(), [&](const ConfigKey& k) {
    return k.name.size() > dotted.size() && k.name.compare(0, dotted.size(), dotted) == 0 && k.name[dotted.size()] == '.';
  });
}

// Walks nested tables, so [model] n_layer = 4, model.n_layer = 4 and [model] with dotted keys below it
// all arrive here as the key "model.n_layer". An unknown table is walked too, so that the error names a
// whole key ("modle.n_layer", with its suggestion) rather than just the table.
void apply_table(RunConfig& config, const toml::table& table, const std::string& prefix, const std::string& source,
                 ConfigOrigins* origins) {
  for (auto&& [k, node] : table) {
    std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    std::string where = location(source, node.source().begin);
    const ConfigKey* key = find_config_key(name);
    if (auto sub = node.as_table(); sub && !key) {
      if (sub->empty() && !is_section(name)) with_prefix(where, [&] { throw_unknown_key(name); });
      apply_table(config, *sub, name, source, origins);
      continue;
    }
    with_prefix(where, [&] {
      if (!key) throw_unknown_key(name);
      ConfigValue value = from_toml(*key, node);
      check_config_value(*key, value);
      key->set(config, value);
      if (origins) (*origins)[key->name] = source;
    });
  }
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    throw Error(ErrorKind::kConfig, fmt::format("{}: config file not found", path));
  if (std::filesystem::is_directory(status))
    throw Error(ErrorKind::kConfig, fmt::format("{}: config file is a directory, not a TOML file", path));
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) throw Error(ErrorKind::kConfig, fmt::format("{}: cannot read the config file", path));
  return text.str();
}

}  // namespace

namespace {

void apply_toml(RunConfig& config, std::string_view toml_text, const std::string& source, ConfigOrigins* origins) {
  toml::table table;
  try {
    table = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    throw Error(ErrorKind::kConfig,
                fmt::format("{}invalid TOML: {}", location(source, e.source().begin), e.description()));
  }
  apply_table(config, table, "", source, origins);
}

void apply_override(RunConfig& config, std::string_view key_equals_value, const std::string& source,
                    ConfigOrigins* origins) {
  with_prefix(source + ": ", [&] {
    std::size_t eq = key_equals_value.find('=');
    if (eq == std::string_view::npos)
      throw Error(ErrorKind::kConfig,
                  fmt::format("'{}' has no '=': expected key=value, e.g. train.steps=500", echo_text(key_equals_value)));
    std::string_view name = trim(key_equals_value.substr(0, eq));
    if (name.empty())
      throw Error(ErrorKind::kConfig,
                  fmt::format("'{}' has no key before '=': expected key=value, e.g. train.steps=500", echo_text(key_equals_value)));
    const ConfigKey* key = find_config_key(name);
    if (!key) throw_unknown_key(name);
    ConfigValue value = parse_config_text(*key, trim(key_equals_value.substr(eq + 1)));
    key->set(config, value);
    if (origins) (*origins)[key->name] = source;
  });
}

}  // namespace

void apply_config_toml(RunConfig& config, std::string_view toml_text, const std::string& source) {
  apply_toml(config, toml_text, source, nullptr);
}

void apply_config_override(RunConfig& config, std::string_view key_equals_value, const std::string& source) {
  apply_override(config, key_equals_value, source, nullptr);
}

RunConfig load_config(const std::optional<std::string>& toml_path, const std::vector<std::string>& set_overrides,
                      ConfigOrigins* origins, const std::string& overrides_source) {
  RunConfig config;
  ConfigOrigins seen;
  if (toml_path) apply_toml(config, read_file(*toml_path), *toml_path, &seen);
  for (const auto& s : set_overrides) apply_override(config, s, overrides_source, &seen);
  validate(config);
  if (origins) *origins = std::move(seen);
  return config;
}

namespace {

[[noreturn]] void invalid(std::string message) { throw Error(ErrorKind::kConfig, std::move(message)); }

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

namespace {

// The data-parallel, communication, parameter-server and placement keys, checked against each other.
// comm.compression asks for a compressor (its spec was parsed, and checked, when it was set).
bool compression_on(const RunConfig& config) { return config.comm.compression.kind != comm::CompressionKind::kNone; }

void validate_parallel(const RunConfig& config) {
  const ParallelConfig& par = config.parallel;
  const TrainConfig& t = config.train;
  if (t.batch_size % (par.data * par.microbatches) != 0)
    invalid(fmt::format("train.batch_size = {} is not divisible by parallel.data x parallel.microbatches = {} x {}: "
                        "every replica takes an equal share of whole samples per micro-batch",
                        t.batch_size, par.data, par.microbatches));
  static const RunConfig defaults;
  const bool ps = par.gradient_exchange == GradientExchange::ps;
  if (!ps && !(config.ps == defaults.ps))
    invalid(fmt::format("ps.* is set, but parallel.gradient_exchange = {}; set parallel.gradient_exchange = ps or "
                        "remove the ps.* keys",
                        name_of(par.gradient_exchange)));
  if (config.ps.staleness > 0 && config.ps.mode != PsMode::ssp)
    invalid(fmt::format("ps.staleness = {} needs ps.mode = ssp (got {})", config.ps.staleness, name_of(config.ps.mode)));
  if (ps && t.on_nonfinite == NonfiniteAction::skip)
    invalid("train.on_nonfinite = skip with parallel.gradient_exchange = ps: parameter servers apply each push as "
            "it comes, so a step cannot be skipped as a whole; use ring or alltoall, or train.on_nonfinite = stop");
  if (ps && par.zero)
    invalid("parallel.zero = 1 with parallel.gradient_exchange = ps: parameter servers already own the optimizer "
            "state, sharded over ps.shards; remove parallel.zero");
  if (ps && par.pipeline > 1)
    invalid(fmt::format("parallel.gradient_exchange = ps with parallel.pipeline = {}: parameter servers serve "
                        "data-parallel replicas of a whole model; use ring or alltoall with pipelines",
                        par.pipeline));
  if (t.deterministic && ps && config.ps.mode != PsMode::sync)
    invalid(fmt::format("train.deterministic = true with ps.mode = {}: asynchronous updates depend on timing; use "
                        "ps.mode = sync",
                        config.ps.mode));
  const std::string& comp = config.comm.compression.text;
  if (compression_on(config)) {
    if (t.deterministic)
      invalid(fmt::format("comm.compression = {} with train.deterministic = true: compression is lossy and its "
                          "result depends on how gradients are split; use comm.compression = none",
                          comp));
    if (ps)
      invalid("comm.compression applies to ring and alltoall gradient exchange; parameter servers take "
              "uncompressed (or sparse-row) pushes");
    if (par.zero)
      invalid(fmt::format("comm.compression = {} with parallel.zero = 1: ZeRO-1 reduce-scatters uncompressed "
                          "shards to their owners; drop one of the two",
                          comp));
  }
  if (ranks_are_processes(config.comm.transport)) {
    // Whether the host may be beyond loopback depends on who starts the ranks: net/tcp refuses it for
    // ranks troupe starts itself (before any starts), allows it for ranks a launcher started.
    launcher::parse_host_port("comm.address", config.comm.address, "127.0.0.1:29500");
  }
  if (!parse_config_device(t.device.short_str()))  // cpu:N past 0, in a RunConfig built in code
    invalid(fmt::format("train.device = \"{}\" is not a device; use cpu, cuda or cuda:N (troupe devices lists them)",
                        t.device.short_str()));
  check_one_device_per_stage(par.placement, par.pipeline);
  parse_stage_devices("parallel.placement", stage_devices_text(par.placement));  // cpu:N past 0, built in code
}

// Checkpoints: what they need, and the layouts whose whole state they cannot hold yet.
void validate_checkpoints(const RunConfig& config) {
  const TrainConfig& t = config.train;
  if (t.checkpoint_dir.empty()) {
    if (t.checkpoint_every > 0)
      invalid(fmt::format("train.checkpoint_every = {} without train.checkpoint_dir: set train.checkpoint_dir to the "
                          "directory the checkpoints go to",
                          t.checkpoint_every));
    return;
  }
  const ParallelConfig& par = config.parallel;
  // DeepFM's shards hand their state over between steps (PsCluster::training_state); the GPT's and the
  // MLP's parameter-server trainer does not yet.
  if (par.gradient_exchange == GradientExchange::ps && !is_recommender(config.model.kind))
    invalid("train.checkpoint_dir with parallel.gradient_exchange = ps: checkpoints of parameter-server runs are not "
            "built yet for model.kind = gpt, mlp, cnn or lstm (the optimizer state lives in the shard actors and pushes "
            "arrive asynchronously; model.kind = deepfm has them); use ring or alltoall, or remove "
            "train.checkpoint_dir");
  if (is_recommender(config.model.kind) && ranks_are_processes(config.comm.transport) && par.data > 1 &&
      config.ps.mode != PsMode::sync)
    invalid(fmt::format("train.checkpoint_dir with model.kind = {}, comm.transport = {} and ps.mode = {}: worker "
                        "processes push later steps while rank 0 takes the state at a step boundary, so there is no "
                        "consistent state to write; use ps.mode = sync, or comm.transport = inproc (workers as "
                        "threads), or remove train.checkpoint_dir",
                        name_of(config.model.kind), config.comm.transport, config.ps.mode));
  if (compression_on(config))
    invalid(fmt::format("train.checkpoint_dir with comm.compression = {}: the compressors' error-feedback state is "
                        "not checkpointed yet, so a resumed run would differ; use comm.compression = none, or remove "
                        "train.checkpoint_dir",
                        config.comm.compression.text));
  if (ranks_are_processes(config.comm.transport) && par.data > 1 && par.zero)
    invalid("train.checkpoint_dir with comm.transport = tcp or shm and parallel.zero = 1: the optimizer state is sharded over "
            "processes and gathering it into a checkpoint is not built yet; use comm.transport = inproc (replicas as "
            "threads, the same results), or parallel.zero = 0");
}

// fault.inject: a plan that parses, on actors that exist in this layout, at steps the run reaches.
void validate_faults(const RunConfig& config) {
  const supervision::FaultPlan plan = supervision::parse_fault_plan(config.fault.inject);  // kConfig on a bad clause
  if (plan.empty()) return;
  const ParallelConfig& par = config.parallel;
  auto never_reached = [&](const supervision::FaultClause& c) {
    if (c.step >= config.train.steps)
      invalid(fmt::format("fault.inject: clause '{}': step {} is never reached, the run ends after train.steps = {} "
                          "(steps 0 to {})",
                          supervision::to_string(c), c.step, config.train.steps, config.train.steps - 1));
  };
  if (is_recommender(config.model.kind) && config.comm.transport != TransportKind::inproc)
    for (const supervision::FaultClause& c : plan.clauses)
      if (c.target == supervision::FaultTarget::worker)
        invalid(fmt::format("fault.inject: clause '{}': model.kind = {} with worker processes (comm.transport = {}) "
                            "does not restart a worker whose step failed yet; 'kill rank W at step S' and 'stall rank "
                            "W at step S' rehearse a worker process's death and hang (comm.transport = inproc restarts "
                            "worker actors)",
                            supervision::to_string(c), config.model.kind, config.comm.transport));
  if (par.gradient_exchange == GradientExchange::ps) {
    // Parameter-server runs have workers (threads, or processes over tcp) and shard actors, no stages.
    for (const supervision::FaultClause& c : plan.clauses) {
      if (c.target == supervision::FaultTarget::stage || c.target == supervision::FaultTarget::optimizer)
        invalid(fmt::format("fault.inject: clause '{}': parameter-server runs have no stage, optimizer-state or "
                            "tensor-shard actors; their faults are 'throw worker W at step S', 'throw shard S at step N' (a parameter-server "
                            "shard), and with comm.transport = tcp 'kill rank W at step S' and 'stall rank W at step S' "
                            "(a worker's process)",
                            supervision::to_string(c)));
      if (c.target == supervision::FaultTarget::shard) {
        // A parameter-server shard: its update of step N throws, and it is restarted from its snapshot.
        if (c.action != supervision::FaultAction::raise || c.index != 0)
          invalid(fmt::format("fault.inject: clause '{}': a parameter-server shard's fault is 'throw shard S at step N' "
                              "(its update of step N fails); parameter servers have no stages, and a shard ended from "
                              "outside is not restarted",
                              supervision::to_string(c)));
        if (c.shard >= config.ps.shards)
          invalid(fmt::format("fault.inject: clause '{}': shard {} does not exist, ps.shards = {} (shards 0 to {})",
                              supervision::to_string(c), c.shard, config.ps.shards, config.ps.shards - 1));
        if (config.ps.mode != PsMode::sync)
          invalid(fmt::format("fault.inject: clause '{}': parameter-server shards are restarted in ps.mode = sync only "
                              "(got {}): an {} shard applies each push as it comes, so a restart from its last snapshot "
                              "would lose the updates since; use ps.mode = sync",
                              supervision::to_string(c), config.ps.mode, config.ps.mode));
        if (config.comm.transport != TransportKind::inproc)
          invalid(fmt::format("fault.inject: clause '{}': parameter-server shards are restarted when the workers are "
                              "threads (comm.transport = inproc) so far; with worker processes use 'kill rank W at step S'",
                              supervision::to_string(c)));
        never_reached(c);
        continue;
      }
      if (c.index >= par.data)
        invalid(fmt::format("fault.inject: clause '{}': worker {} does not exist, parallel.data = {} (workers 0 to {})",
                            supervision::to_string(c), c.index, par.data, par.data - 1));
      if (c.target == supervision::FaultTarget::rank && (config.comm.transport != TransportKind::tcp || par.data == 1))
        invalid(fmt::format("fault.inject: clause '{}': rank faults hit parameter-server worker processes; set "
                            "comm.transport = tcp and parallel.data > 1 (or use 'throw worker W at step S')",
                            supervision::to_string(c)));
      if (c.target == supervision::FaultTarget::rank && c.index == 0 && c.action == supervision::FaultAction::stall)
        invalid(fmt::format("fault.inject: clause '{}': no one watches rank 0's heartbeats (it hosts the shards and "
                            "supervises the workers), so a stalled rank 0 would hang the run; kill rank 0 rehearses its "
                            "death",
                            supervision::to_string(c)));
      never_reached(c);
    }
    return;
  }
  for (const supervision::FaultClause& c : plan.clauses)
    if (c.target == supervision::FaultTarget::worker)
      invalid(fmt::format("fault.inject: clause '{}': worker faults hit parameter-server workers; set "
                          "parallel.gradient_exchange = ps, or name a stage, an optimizer, a shard or a rank",
                          supervision::to_string(c)));
  if (par.pipeline == 1 && par.microbatches == 1 && par.data == 1 && par.tensor == 1)
    invalid("fault.inject needs a run by stage or shard actors: set parallel.pipeline > 1, parallel.microbatches > 1, "
            "parallel.data > 1 or parallel.tensor > 1 (a single-device run has no actor to fail)");
  // Tensor shards that are tensor-shard actors running whole-model steps, not stage actors of pipelines.
  const bool shard_actors = par.tensor > 1 && !plan::runs_tensor_pipelines(config);
  // Tensor shards that are processes (comm.transport = tcp): a clause hits a shard's process, or rank 0's actor.
  const bool shard_processes = par.tensor > 1 && ranks_are_processes(config.comm.transport);
  const int world = par.data * par.tensor;
  for (const supervision::FaultClause& c : plan.clauses) {
    if (shard_processes && config.comm.transport != TransportKind::tcp)
      invalid(fmt::format("fault.inject: clause '{}': tensor shards that are processes over shared memory "
                          "(comm.transport = shm) are not restarted yet, so no fault is injected into them; use "
                          "comm.transport = tcp (restarted when fault.max_restarts > 0) or inproc",
                          supervision::to_string(c)));
    if (shard_processes && c.target == supervision::FaultTarget::rank) {
      if (c.index >= world)
        invalid(fmt::format("fault.inject: clause '{}': rank {} does not exist, parallel.data x parallel.tensor = {} "
                            "rank processes (ranks 0 to {}; rank d * {} + t is shard t of replica d)",
                            supervision::to_string(c), c.index, world, world - 1, par.tensor));
      if (c.index == 0 && c.action == supervision::FaultAction::stall)
        invalid(fmt::format("fault.inject: clause '{}': no one watches rank 0's heartbeats (it is the supervisor), so "
                            "a stalled rank 0 would hang the run; kill rank 0 rehearses its death",
                            supervision::to_string(c)));
      never_reached(c);
      continue;
    }
    if (c.target == supervision::FaultTarget::shard) {
      if (par.tensor == 1)
        invalid(fmt::format("fault.inject: clause '{}': a shard is a tensor shard of parallel.tensor, which is 1; name "
                            "a stage ('kill stage 0 at step {}'), or set parallel.tensor > 1",
                            supervision::to_string(c), c.step));
      if (c.shard >= par.tensor)
        invalid(fmt::format("fault.inject: clause '{}': shard {} does not exist, parallel.tensor = {} (shards 0 to {})",
                            supervision::to_string(c), c.shard, par.tensor, par.tensor - 1));
    } else if (shard_actors && c.target != supervision::FaultTarget::rank) {
      invalid(fmt::format("fault.inject: clause '{}': this tensor-parallel run has no stage or optimizer-state actors "
                          "(each shard actor runs whole steps; parallel.pipeline = 1, parallel.microbatches = 1): name "
                          "a shard ('{} shard 0 at step {}')",
                          supervision::to_string(c), c.action == supervision::FaultAction::kill ? "kill" : "throw",
                          c.step));
    }
    if (c.target == supervision::FaultTarget::rank) {
      if (!ranks_are_processes(config.comm.transport) || par.data == 1)
        invalid(fmt::format("fault.inject: clause '{}': rank faults hit data-parallel rank processes; set "
                            "comm.transport = tcp (or shm) and parallel.data > 1",
                            supervision::to_string(c)));
      if (c.index >= par.data)
        invalid(fmt::format("fault.inject: clause '{}': rank {} does not exist, parallel.data = {} (ranks 0 to {})",
                            supervision::to_string(c), c.index, par.data, par.data - 1));
      if (c.index == 0 && c.action == supervision::FaultAction::stall)
        invalid(fmt::format("fault.inject: clause '{}': no one watches rank 0's heartbeats (it is the supervisor), so "
                            "a stalled rank 0 would hang the run; kill rank 0 rehearses its death",
                            supervision::to_string(c)));
    } else if (c.index >= par.pipeline)
      invalid(fmt::format("fault.inject: clause '{}': stage {} does not exist, parallel.pipeline = {} (stages 0 to {})",
                          supervision::to_string(c), c.index, par.pipeline, par.pipeline - 1));
    if (c.microbatch >= 0 && shard_actors)
      invalid(fmt::format("fault.inject: clause '{}': this tensor-parallel run's shard actors run whole steps, without "
                          "micro-batches; leave out 'micro-batch {}' (the fault then strikes as the step begins)",
                          supervision::to_string(c), c.microbatch));
    if (c.microbatch >= par.microbatches)
      invalid(fmt::format("fault.inject: clause '{}': micro-batch {} does not exist, parallel.microbatches = {} "
                          "(micro-batches 0 to {})",
                          supervision::to_string(c), c.microbatch, par.microbatches, par.microbatches - 1));
    if (c.replica >= par.data)
      invalid(fmt::format("fault.inject: clause '{}': replica {} does not exist, parallel.data = {} (replicas 0 to {})",
                          supervision::to_string(c), c.replica, par.data, par.data - 1));
    never_reached(c);
  }
}

// A model whose kernels exist on the CPU backend only: train.device and every stage of parallel.placement
// must be the CPU. `device_why` and `placement_why` name what CUDA lacks ("the LSTM recurrence exists").
void require_cpu_backend(const RunConfig& config, std::string_view device_why, std::string_view placement_why) {
  const std::string_view kind = name_of(config.model.kind);
  if (!config.train.device.is_cpu())
    invalid(fmt::format("model.kind = {} with train.device = {}: {} on the CPU backend only so far; use train.device "
                        "= cpu",
                        kind, config.train.device.short_str(), device_why));
  if (std::ranges::any_of(config.parallel.placement, &Device::is_cuda))
    invalid(fmt::format("model.kind = {} with parallel.placement = \"{}\": {} on the CPU backend only so far; place "
                        "every stage on cpu",
                        kind, stage_devices_text(config.parallel.placement), placement_why));
}

// The residual CNN: its shape keys agree, and it runs where its kernels and strategies exist so far.
void validate_cnn(const RunConfig& config) {
  const ModelConfig& m = config.model;
  const ParallelConfig& par = config.parallel;
  if (m.cnn_channels.empty())
    invalid("model.cnn_channels is empty: model.kind = cnn needs at least one stage, e.g. model.cnn_channels = 16,32");
  if (m.cnn_blocks.size() != m.cnn_channels.size())
    invalid(fmt::format("model.cnn_blocks = {} has {} entries for the {} stages of model.cnn_channels = {}: give the "
                        "number of residual blocks of every stage",
                        fmt::join(m.cnn_blocks, ","), m.cnn_blocks.size(), m.cnn_channels.size(),
                        fmt::join(m.cnn_channels, ",")));
  // 28x28 images, halved (rounding up) by a stride-2 stem and by every stage after the first.
  int side = m.cnn_stem_stride == 2 ? 14 : 28;
  for (std::size_t s = 1; s < m.cnn_channels.size(); ++s) side = (side + 1) / 2;
  const std::size_t max_stages = m.cnn_stem_stride == 2 ? 5 : 6;
  if (side < 1 || m.cnn_channels.size() > max_stages)
    invalid(fmt::format("model.cnn_channels = {} has {} stages: 28x28 images allow at most {} with "
                        "model.cnn_stem_stride = {} (each stage after the first halves the resolution)",
                        fmt::join(m.cnn_channels, ","), m.cnn_channels.size(), max_stages, m.cnn_stem_stride));
  require_cpu_backend(config, "the convolution and batch-norm kernels exist", "the CNN's kernels exist");
  if (par.gradient_exchange == GradientExchange::ps)
    invalid("model.kind = cnn with parallel.gradient_exchange = ps: the parameter-server trainer does not carry "
            "batch-norm running statistics; use parallel.gradient_exchange = ring or alltoall");
}

// The stacked LSTM: its recurrence exists on the CPU backend only so far.
void validate_lstm(const RunConfig& config) {
  require_cpu_backend(config, "the LSTM recurrence exists", "the LSTM recurrence exists");
}

// DeepFM: its embedding tables live on parameter-server shards and its workers are data-parallel
// replicas of the whole model (actors/recommender_job.h); nothing else of a layout applies to it.
void validate_deepfm(const RunConfig& config) {
  const ParallelConfig& par = config.parallel;
  const TrainConfig& t = config.train;
  if (par.gradient_exchange != GradientExchange::ps)
    invalid(fmt::format("model.kind = deepfm with parallel.gradient_exchange = {}: DeepFM's embedding tables live on "
                        "parameter-server shards; set parallel.gradient_exchange = ps (ps.shards, ps.mode)",
                        par.gradient_exchange));
  if (par.pipeline > 1)
    invalid(fmt::format("model.kind = deepfm with parallel.pipeline = {}: DeepFM is one embedding lookup and a small "
                        "MLP per worker, with nothing to split into stages; its tables are split over ps.shards "
                        "instead; set parallel.pipeline = 1",
                        par.pipeline));
  if (par.microbatches > 1)
    invalid(fmt::format("model.kind = deepfm with parallel.microbatches = {}: a DeepFM worker runs its share of the "
                        "batch as one pass; set parallel.microbatches = 1 (parallel.data splits the batch)",
                        par.microbatches));
  if (par.tensor > 1)
    invalid(fmt::format("model.kind = deepfm with parallel.tensor = {}: its tables are split by rows over ps.shards, "
                        "not by tensor parallelism; set parallel.tensor = 1",
                        par.tensor));
  if (!t.device.is_cpu())
    invalid(fmt::format("model.kind = deepfm with train.device = {}: DeepFM's workers and shards run on the CPU "
                        "backend only so far; use train.device = cpu",
                        t.device.short_str()));
  if (!par.placement.empty())
    invalid(fmt::format("model.kind = deepfm with parallel.placement = \"{}\": DeepFM has no pipeline stages to "
                        "place; remove the setting",
                        stage_devices_text(par.placement)));
  if (t.precision != Precision::f32)
    invalid(fmt::format("model.kind = deepfm with train.precision = {}: DeepFM trains in f32 only so far; use "
                        "train.precision = f32",
                        t.precision));
  if (!config.data.path.empty())
    invalid(fmt::format("model.kind = deepfm with data.path = \"{}\": DeepFM trains on the synthetic click log "
                        "(model.max_cardinality, data.test_samples, train.seed); remove data.path",
                        config.data.path));
}

// parallel.tensor = T: the split layers' widths divide by T, and the run is one that tensor parallelism
// supports so far (docs/tensor-parallel.md says which).
void validate_tensor(const RunConfig& config) {
  const ParallelConfig& par = config.parallel;
  const ModelConfig& m = config.model;
  const int tp = par.tensor;
  if (par.sequence_parallel && tp == 1)
    invalid("parallel.sequence_parallel = true with parallel.tensor = 1: sequence parallelism splits the sequence "
            "over the tensor-parallel shards; set parallel.tensor to 2 or more, or parallel.sequence_parallel = false");
  if (par.sequence_parallel && m.kind != ModelKind::gpt)
    invalid(fmt::format("parallel.sequence_parallel = true with model.kind = {}: only the gpt has a sequence to "
                        "split; set parallel.sequence_parallel = false",
                        name_of(m.kind)));
  if (tp == 1) return;
  if (m.kind != ModelKind::gpt && m.kind != ModelKind::mlp)
    invalid(fmt::format("parallel.tensor = {} with model.kind = {}: tensor parallelism splits the gpt's and the mlp's "
                        "layers only; use model.kind = gpt or mlp, or parallel.tensor = 1",
                        tp, name_of(m.kind)));
  auto must_divide = [&](const char* what, long long value, const char* why) {
    if (value % tp == 0) return;
    std::string divisors;
    for (long long d = 2; d <= value && d <= 64; ++d)
      if (value % d == 0) divisors += (divisors.empty() ? "" : ", ") + std::to_string(d);
    invalid(fmt::format("parallel.tensor = {} does not divide {} = {}: {}; use a parallel.tensor that divides it{}", tp,
                        what, value, why, divisors.empty() ? "" : " (" + divisors + ")"));
  };
  if (m.kind == ModelKind::gpt) {
    must_divide("model.n_head", m.n_head, "each shard computes whole attention heads");
    must_divide("model.vocab_size", m.vocab_size, "the token embedding and the LM head are split by vocabulary");
    must_divide("4 x model.n_embd (the MLP's hidden width)", 4LL * m.n_embd, "mlp.c_fc is split by its outputs");
    if (par.sequence_parallel)
      must_divide("model.block_size", m.block_size,
                  "parallel.sequence_parallel = true gives each shard an equal part of every sequence");
  } else {
    // Dense layers pair up column- then row-parallel: the hidden widths of layers.0, layers.2, ... split.
    for (std::size_t k = 0; k < m.mlp_hidden.size(); k += 2)
      if (m.mlp_hidden[k] % tp != 0)
        must_divide(fmt::format("model.mlp_hidden[{}] (layers.{}'s output, split column-parallel)", k, k).c_str(),
                    m.mlp_hidden[k], "a column-parallel layer gives each shard an equal slice of its outputs");
  }
  if (computes_on_cuda(config))
    invalid(fmt::format("parallel.tensor = {} on CUDA: tensor-parallel shards run on the CPU backend only so far; "
                        "use train.device = cpu and no cuda placement, or parallel.tensor = 1",
                        tp));
  if (par.gradient_exchange == GradientExchange::ps)
    invalid(fmt::format("parallel.tensor = {} with parallel.gradient_exchange = ps: parameter servers hold whole "
                        "parameters; use ring or alltoall",
                        tp));
  // Composition: replicas and pipelines of shards, with micro-batches, ZeRO-1 and compression across the
  // data axis, are built (docs/tensor-parallel.md). Shards as processes: troupe starts every rank itself,
  // one per (replica, shard), each shard averaging its whole gradients over its data group
  // (actors/tensor_parallel_processes.h), without pipelines so far.
  if (ranks_are_processes(config.comm.transport) &&
      (par.pipeline > 1 || par.microbatches > 1 || par.zero || compression_on(config)))
    invalid(fmt::format("parallel.tensor = {} with comm.transport = {} and parallel.pipeline = {}, "
                        "parallel.microbatches = {}, parallel.zero = {}, comm.compression = {}: tensor shards as "
                        "processes run without pipelines, micro-batches, ZeRO-1 or gradient compression so far; use "
                        "comm.transport = inproc (shards as actors of one process), or set them to 1, 1, 0 and none",
                        tp, config.comm.transport, par.pipeline, par.microbatches, par.zero, config.comm.compression.text));
  if (ranks_are_processes(config.comm.transport) && config.comm.world_size > 1)
    invalid(fmt::format("parallel.tensor = {} in a job a launcher started (comm.world_size = {}): tensor shards as "
                        "processes are started by troupe itself so far; run one troupe train with "
                        "comm.transport = tcp and no launcher, or parallel.tensor = 1",
                        tp, config.comm.world_size));
}

}  // namespace

bool computes_on_cuda(const RunConfig& config) {
  return config.train.device.is_cuda() || std::ranges::any_of(config.parallel.placement, &Device::is_cuda);
}

void validate(const RunConfig& config) {
  // Per key first, so a bad single value is reported as such rather than as a clash with another key.
  for (const auto& key : config_schema())
    if (auto v = key.get(config)) check_config_value(key, *v);

  const ModelConfig& m = config.model;
  const TrainConfig& t = config.train;
  const OptimConfig& o = config.optim;

  if (m.kind == ModelKind::gpt && m.n_embd % m.n_head != 0)
    invalid(fmt::format("model.n_embd = {} is not divisible by model.n_head = {}: each head gets n_embd / n_head "
                        "channels, so pick n_embd as a multiple of n_head",
                        m.n_embd, m.n_head));

  const ParallelConfig& par = config.parallel;
  if (m.kind == ModelKind::cnn) validate_cnn(config);
  if (m.sync_batchnorm && m.kind != ModelKind::cnn)
    invalid(fmt::format("model.sync_batchnorm = true with model.kind = {}: that model has no batch normalisation "
                        "(only the cnn has); remove the setting",
                        name_of(m.kind)));
  if (m.kind == ModelKind::lstm) validate_lstm(config);
  if (m.kind == ModelKind::deepfm) validate_deepfm(config);
  if (t.batch_size % par.microbatches != 0)
    invalid(fmt::format("parallel.microbatches = {} does not divide train.batch_size = {}: micro-batches hold whole "
                        "samples",
                        par.microbatches, t.batch_size));
  if (par.virtual_stages > 1 && par.schedule != ScheduleKind::interleaved)
    invalid(fmt::format("parallel.virtual_stages = {} needs parallel.schedule = interleaved (got {})",
                        par.virtual_stages, name_of(par.schedule)));

  if (t.precision == Precision::bf16 && computes_on_cuda(config) &&
      (m.kind != ModelKind::gpt || par.pipeline > 1 || par.microbatches > 1 || par.data > 1 || par.tensor > 1))
    invalid(fmt::format("train.precision = bf16 on CUDA trains the single-device gpt only so far (got model.kind = {}, "
                        "parallel.pipeline = {}, parallel.data = {}, parallel.tensor = {}); use train.device = cpu, "
                        "where bf16 works with every layout, or train.precision = f32",
                        name_of(m.kind), par.pipeline, par.data, par.tensor));

  validate_parallel(config);
  validate_checkpoints(config);
  validate_tensor(config);
  validate_faults(config);

  if (t.lr_schedule == LrScheduleKind::cosine) {
    if (t.steps > 0 && t.warmup_steps > t.steps)  // steps = 0 only exports weights
      invalid(fmt::format("train.warmup_steps = {} exceeds train.steps = {}: with train.lr_schedule = cosine the "
                          "warmup must end by the last step",
                          t.warmup_steps, t.steps));
    if (t.min_lr > o.lr_or_default())
      invalid(fmt::format("train.min_lr = {} is above optim.lr = {}{}: the cosine schedule decays from optim.lr "
                          "down to train.min_lr",
                          t.min_lr, o.lr_or_default(), o.lr ? "" : fmt::format(" (torch default for {})", o.kind)));
  }

  // A setting the chosen optimizer never reads is almost always a mistake (a config written for another
  // optimizer); saying so beats training with a setting silently ignored.
  static const RunConfig defaults;
  for (const auto& key : config_schema()) {
    if (key.used_by.empty() || std::find(key.used_by.begin(), key.used_by.end(), o.kind) != key.used_by.end()) continue;
    if (key.get(config) == key.get(defaults)) continue;
    auto v = key.get(config);
    invalid(fmt::format("{} = {} is set, but optim.kind = {} does not use it (it is read by {}); remove it or "
                        "change optim.kind",
                        key.name, config_value_to_text(*v), name_of(o.kind), used_by_names(key)));
  }

  if (o.kind == OptimKind::sgd && o.nesterov && (o.momentum_or_default() <= 0 || o.dampening_or_default() != 0))
    invalid(fmt::format("optim.nesterov = true needs optim.momentum > 0 and optim.dampening = 0 (found momentum {}, "
                        "dampening {})",
                        o.momentum_or_default(), o.dampening_or_default()));
}

std::string config_to_toml(const RunConfig& config) {
  std::string out = "# troupe run configuration: the value of every key in effect (troupe train --help lists them)\n";
  std::string section;
  for (const auto& key : config_schema()) {
    std::size_t dot = key.name.find('.');
    std::string this_section = key.name.substr(0, dot);
    std::string leaf = key.name.substr(dot + 1);
    if (this_section != section) {
      out += fmt::format("\n[{}]\n", this_section);
      section = this_section;
    }
    if (auto v = key.get(config)) {
      out += fmt::format("{} = {}\n", leaf, config_value_to_toml(*v));
    } else if (!key.used_by.empty() &&
               std::find(key.used_by.begin(), key.used_by.end(), config.optim.kind) == key.used_by.end()) {
      out += fmt::format("# {} is unset (not used by {})\n", leaf, config.optim.kind);
    } else if (key.unset_value) {
      // Commented out, so that reading the file back leaves it unset and still following optim.kind.
      out += fmt::format("# {} = {}  (unset: torch default for {})\n", leaf,
                         config_value_to_toml(key.unset_value(config)), config.optim.kind);
    } else {
      out += fmt::format("# {} is unset: {}\n", leaf, key.default_text);
    }
  }
  return out;
}

std::string config_help() {
  // Defaults longer than this (the optim.* ones that follow optim.kind) go on a line of their own under
  // the help, so that one long default does not push every row's help text to the right.
  constexpr std::size_t kDefaultColumn = 12;
  std::size_t name_w = 3, type_w = 4, default_w = 7;
  for (const auto& key : config_schema()) {
    name_w = std::max(name_w, key.name.size());
    type_w = std::max(type_w, config_type_name(key).size());
    if (key.default_text.size() <= kDefaultColumn) default_w = std::max(default_w, key.default_text.size());
  }
  const std::size_t optim_kinds = find_config_key("optim.kind")->choices.size();
  std::string out = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}\n", "key", name_w, "type", type_w, "default", default_w, "meaning");
  std::string section;
  for (const auto& key : config_schema()) {
    std::string this_section = key.name.substr(0, key.name.find('.'));
    if (this_section != section && !section.empty()) out += "\n";
    section = this_section;

    std::string help = key.help;
    std::string constraint = key.type == KeyType::kEnum ? "one of " + join(key.choices) : key.range.bounds();
    if (key.type == KeyType::kIntList && !constraint.empty()) constraint = "each " + constraint;
    if (!constraint.empty()) help += "; " + constraint;
    if (!key.used_by.empty() && key.used_by.size() < optim_kinds) help += "; used by " + used_by_names(key);

    bool long_default = key.default_text.size() > kDefaultColumn;
    out += fmt::format("  {:<{}}  {:<{}}  {:<{}}  {}\n", key.name, name_w, config_type_name(key), type_w,
                       long_default ? "*" : key.default_text, default_w, help);
    if (long_default)
      out += fmt::format("  {:<{}}  * default: {}\n", "", name_w + type_w + default_w + 4, key.default_text);
  }
  return out;
}

namespace {

// A table cell: '|' would end the cell and a newline the row, so both are escaped.
std::string markdown_cell(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

std::string markdown_code(std::string_view text) { return "`" + markdown_cell(text) + "`"; }

}  // namespace

std::string config_markdown() {
  const std::size_t optim_kinds = find_config_key("optim.kind")->choices.size();
  std::string out =
      "<!-- Generated by `build/troupe config --markdown` from runtime/config/config_schema.cpp; do not edit.\n"
      "     Regenerate: build/troupe config --markdown > docs/config.md (CTest docs_config_is_generated checks it). -->\n"
      "# Configuration reference\n"
      "\n"
      "Every key of a run, for `--set key=value` and `--config FILE.toml` (tables such as `[train]`, or dotted\n"
      "keys). Precedence, lowest first: these defaults, the file, each `--set` in order, then `troupe train`'s\n"
      "`--steps` and `--seed`. The whole configuration is validated once, before anything runs; a bad key or\n"
      "value is a one-line error and exit status 2. `troupe train --print-config` prints the effective\n"
      "configuration as TOML before training.\n";
  std::string section;
  for (const auto& key : config_schema()) {
    std::string this_section = key.name.substr(0, key.name.find('.'));
    if (this_section != section) {
      out += fmt::format("\n## {}\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n",
                         this_section);
      section = this_section;
    }
    std::string allowed;
    if (key.type == KeyType::kEnum) {
      for (const auto& c : key.choices) allowed += (allowed.empty() ? "" : ", ") + markdown_code(c);
    } else if (key.type == KeyType::kBool) {
      allowed = "`true`, `false`";
    } else if (key.type == KeyType::kString) {
      allowed = "text";  // the schema does not restrict it; the meaning says what is read from it
    } else {
      allowed = markdown_cell(key.range.bounds());
      if (key.type == KeyType::kIntList && !allowed.empty()) allowed = "each " + allowed;
      if (allowed.empty()) allowed = "any";
    }
    // A default that is a value goes in code font; one that is a sentence (optim.* follow optim.kind) does not.
    bool is_value = key.default_text.find(' ') == std::string::npos;
    std::string help = key.help;
    if (!key.used_by.empty() && key.used_by.size() < optim_kinds) help += "; used by " + used_by_names(key);
    out += fmt::format("| {} | {} | {} | {} | {} |\n", markdown_code(key.name), config_type_name(key),
                       is_value ? markdown_code(key.default_text) : markdown_cell(key.default_text), allowed,
                       markdown_cell(help));
  }
  return out;
}

}  // namespace troupe
