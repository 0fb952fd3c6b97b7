// The checkpoint directory: atomic writes (temporary directory, fsync, rename), checks, reads, pruning.
#include "runtime/checkpoint/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "runtime/config/config_loader.h"
#include "runtime/config/weights_config.h"
#include "runtime/error.h"
#include "runtime/io/partial_files.h"
#include "runtime/io/safetensors.h"

namespace troupe {

namespace fs = std::filesystem;

namespace {

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kConfigFile = "config.toml";
constexpr const char* kManifestFile = "manifest.json";
constexpr const char* kTmpPrefix = ".tmp-step-";

[[noreturn]] void io_fail(const std::string& path, const std::string& what) {
  throw Error(ErrorKind::kIo, fmt::format("checkpoint {}: {}", path, what));
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) io_fail(path, fmt::format("cannot open to flush: {}", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) io_fail(path, fmt::format("fsync failed: {}", std::strerror(err)));
}

// A small text file, flushed to disk before it counts as written.
void write_text_synced(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) io_fail(path, fmt::format("cannot write: {}", std::strerror(errno)));
  }
  fsync_path(path, false);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::kInput, path + ": cannot read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().filename().string().rfind(kTmpPrefix, 0) == 0) fs::remove_all(entry.path(), ec);
}

}  // namespace

std::string checkpoint_name(std::int64_t step) { return fmt::format("step-{:06d}", step); }

std::optional<std::int64_t> parse_checkpoint_name(const std::string& name) {
  if (name.size() < 6 || name.rfind("step-", 0) != 0) return std::nullopt;
  const std::string digits = name.substr(5);
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (auto step = parse_checkpoint_name(entry.path().filename().string()); step && entry.is_directory(ec))
      found.emplace_back(*step, entry.path().string());
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(path);
  return out;
}

void check_checkpoint_dir(const std::string& dir, const std::string& key) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir))
    throw Error(ErrorKind::kConfig, fmt::format("{} = '{}': cannot create the directory ({}); choose a writable place",
                                                key, dir, ec ? ec.message() : "a file is in the way"));
  const std::string probe = (fs::path(dir) / fmt::format(".probe-{}", ::getpid())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0)
    throw Error(ErrorKind::kConfig, fmt::format("{} = '{}': the directory is not writable ({}); choose a writable place",
                                                key, dir, std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string write_checkpoint(const std::string& dir, const TrainingState& state, const RunConfig& config, int keep) {
  remove_stale_temporaries(dir);
  const std::string name = checkpoint_name(state.step);
  const std::string final_path = (fs::path(dir) / name).string();
  const std::string tmp = (fs::path(dir) / fmt::format("{}{:06d}-{}", kTmpPrefix, state.step, ::getpid())).string();
  auto in_tmp = [&](const char* file) { return (fs::path(tmp) / file).string(); };
  // Registered for an abort: the files first, then their directory (remove_partial_paths' order).
  const PartialPath tmp_dir(tmp, /*directory=*/true);
  const PartialPath model_file(in_tmp(kModelFile)), optimizer_file(in_tmp(kOptimizerFile)),
      config_file(in_tmp(kConfigFile)), manifest_file(in_tmp(kManifestFile));
  try {
    std::error_code ec;
    if (!fs::create_directory(tmp, ec)) io_fail(tmp, "cannot create: " + (ec ? ec.message() : "it exists"));
    save_safetensors(in_tmp(kModelFile), state.params, weights_metadata(config));
    NamedTensors opt;
    for (const auto& [param, ps] : state.optimizer.params)
      for (const auto& [slot, t] : ps.tensors) opt.emplace_back(param + "." + slot, t);
    save_safetensors(in_tmp(kOptimizerFile), opt,
                     {{"optimizer", std::string(name_of(config.optim.kind))},
                      {"step", std::to_string(state.optimizer.step)}});
    write_text_synced(in_tmp(kConfigFile), config_to_toml(config));
    std::map<std::string, FileChecksum> sums;
    for (const char* f : {kModelFile, kOptimizerFile, kConfigFile}) sums[f] = checksum_file(in_tmp(f));
    write_text_synced(in_tmp(kManifestFile), manifest_to_json(make_manifest(state, config, sums)));
    fsync_path(tmp, true);
    // A checkpoint of this step from an earlier run (resumed from an older one) is replaced.
    const std::string old = tmp + "-replaced";
    const bool replacing = fs::exists(final_path);
    if (replacing && ::rename(final_path.c_str(), old.c_str()) != 0)
      io_fail(final_path, fmt::format("cannot move the previous checkpoint of this step aside: {}", std::strerror(errno)));
    if (::rename(tmp.c_str(), final_path.c_str()) != 0)
      io_fail(final_path, fmt::format("cannot rename {} into place: {}", tmp, std::strerror(errno)));
    fsync_path(dir, true);
    if (replacing) fs::remove_all(old, ec);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  std::vector<std::string> all = list_checkpoints(dir);
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i], ec);
  }
  return final_path;
}

std::string checkpoint_problem(const std::string& path) {
  const std::string manifest_path = (fs::path(path) / kManifestFile).string();
  if (!fs::is_regular_file(manifest_path)) return "manifest.json missing (an incomplete checkpoint)";
  Manifest m;
  try {
    m = parse_manifest(read_text(manifest_path), manifest_path);
  } catch (const Error& e) {
    return e.what();
  }
  for (const char* f : {kModelFile, kOptimizerFile, kConfigFile})
    if (!m.files.count(f)) return fmt::format("manifest.json does not list {}", f);
  for (const auto& [file, expected] : m.files) {
    const std::string p = (fs::path(path) / file).string();
    if (!fs::is_regular_file(p)) return file + " missing";
    FileChecksum got;
    try {
      got = checksum_file(p);
    } catch (const Error& e) {
      return e.what();
    }
    if (got.bytes != expected.bytes)
      return fmt::format("{} has {} bytes, the manifest says {} (truncated or damaged)", file, got.bytes, expected.bytes);
    if (got.crc32 != expected.crc32)
      return fmt::format("{}: CRC-32 {:08x} differs from the manifest's {:08x} (damaged)", file, got.crc32, expected.crc32);
  }
  return {};
}

std::string newest_valid_checkpoint(const std::string& dir,
                                    const std::function<void(const std::string&, const std::string&)>& skipped) {
  if (!fs::is_directory(dir)) throw Error(ErrorKind::kConfig, fmt::format("{}: no such directory", dir));
  if (fs::exists(fs::path(dir) / kManifestFile)) {  // a checkpoint itself
    if (std::string problem = checkpoint_problem(dir); !problem.empty())
      throw Error(ErrorKind::kConfig, fmt::format("{}: not a usable checkpoint: {}", dir, problem));
    return dir;
  }
  const std::vector<std::string> all = list_checkpoints(dir);
  if (all.empty())
    throw Error(ErrorKind::kConfig,
                fmt::format("{}: no checkpoint (step-NNNNNN directory) in it; give train.checkpoint_dir of a run that "
                            "wrote checkpoints",
                            dir));
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string problem = checkpoint_problem(*it);
    if (problem.empty()) return *it;
    skipped(*it, problem);
  }
  throw Error(ErrorKind::kConfig, fmt::format("{}: none of its {} checkpoints is whole (each reported above); start a "
                                              "fresh run, or restore a copy of the directory",
                                              dir, all.size()));
}

LoadedCheckpoint read_checkpoint(const std::string& path) {
  if (std::string problem = checkpoint_problem(path); !problem.empty())
    throw Error(ErrorKind::kInput, fmt::format("checkpoint {}: {}", path, problem));
  LoadedCheckpoint out;
  out.path = path;
  out.manifest = parse_manifest(read_text((fs::path(path) / kManifestFile).string()), path);
  out.config_toml = read_text((fs::path(path) / kConfigFile).string());
  out.state.step = out.manifest.step;
  out.state.params = load_safetensors((fs::path(path) / kModelFile).string());
  out.state.optimizer.step = out.manifest.optimizer_step;
  const std::string opt_path = (fs::path(path) / kOptimizerFile).string();
  for (auto& [name, t] : load_safetensors(opt_path)) {
    const std::size_t dot = name.rfind('.');
    if (dot == std::string::npos || dot == 0)
      throw Error(ErrorKind::kInput, fmt::format("{}: tensor '{}' is not named <parameter>.<slot>", opt_path, name));
    const std::string param = name.substr(0, dot);
    auto steps = out.manifest.param_steps.find(param);
    if (steps == out.manifest.param_steps.end())
      throw Error(ErrorKind::kInput, fmt::format("{}: no step count for '{}' in manifest.json", opt_path, param));
    ParamState& ps = out.state.optimizer.get_or_create(param);
    ps.step = steps->second;
    ps.tensors[name.substr(dot + 1)] = t;
  }
  // A parameter stepped by an optimizer without state tensors (plain SGD) still has its step count.
  for (const auto& [param, steps] : out.manifest.param_steps) out.state.optimizer.get_or_create(param).step = steps;
  return out;
}

}  // namespace troupe
