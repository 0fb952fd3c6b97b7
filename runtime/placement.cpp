// Placement: stage devices from the config, each checked against the device inventory.
#include "runtime/placement.h"

#include <fmt/format.h>

#include "runtime/config/stage_devices.h"
#include "runtime/error.h"

namespace troupe {

namespace {
// `key` is how the user asked for the device ("train.device = cuda", "parallel.placement = ... stage 1"),
// `fix` what to write instead.
void require_present(const Device& d, const DeviceInventory& inv, const std::string& key, const std::string& fix) {
  if (d.is_cpu()) {
    if (d.index != 0) throw Error(ErrorKind::kConfig, fmt::format("{}: {} does not exist; the host is cpu:0", key, d.str()));
    return;
  }
  const int count = static_cast<int>(inv.cuda_devices.size());
  if (count == 0)
    throw Error(ErrorKind::kConfig, fmt::format("{}: no CUDA device found (troupe devices lists them); use {}", key, fix));
  if (d.index >= count)
    throw Error(ErrorKind::kConfig,
                fmt::format("{}: cuda:{} does not exist, this machine has {} CUDA device{} (cuda:0..cuda:{}; troupe "
                            "devices lists them)",
                            key, d.index, count, count == 1 ? "" : "s", count - 1));
}
}  // namespace

bool Placement::any_cuda() const {
  for (const Device& d : stages)
    if (!d.is_cpu()) return true;
  return false;
}

bool Placement::mixed() const {
  bool cpu = false, cuda = false;
  for (const Device& d : stages) (d.is_cpu() ? cpu : cuda) = true;
  return cpu && cuda;
}

bool Placement::crosses_devices(int stage) const {
  return stage + 1 < static_cast<int>(stages.size()) && stages.at(stage) != stages.at(stage + 1);
}

std::string Placement::str() const {
  std::string s;
  for (const Device& d : stages) s += (s.empty() ? "" : ",") + d.str();
  return s;
}

Placement resolve_placement(const RunConfig& config, const DeviceInventory& inventory) {
  Placement p;
  const int stages = config.parallel.pipeline;
  if (config.parallel.placement.empty()) {
    const Device d = config.train.device;
    require_present(d, inventory, "train.device = " + d.short_str(), "train.device = cpu");
    p.stages.assign(stages, d);
    return p;
  }
  const std::vector<Device>& wanted = config.parallel.placement;
  check_one_device_per_stage(wanted, stages);
  for (int s = 0; s < stages; ++s) {
    const Device d = wanted[static_cast<std::size_t>(s)];
    require_present(d, inventory,
                    fmt::format("parallel.placement = \"{}\", stage {} on {}", stage_devices_text(wanted), s, d.str()),
                    "cpu for that stage");
  }
  p.stages = wanted;
  return p;
}

Placement placement_for_run(const RunConfig& config) {
  return check_runnable(resolve_placement(config, query_devices()), config);
}

Placement check_runnable(Placement p, const RunConfig& config) {
  if (!p.any_cuda()) return p;
  if (config.parallel.pipeline > 1 || config.parallel.data > 1 || config.parallel.microbatches > 1)
    throw Error(ErrorKind::kConfig,
                fmt::format("placement {} with parallel.pipeline = {}, parallel.data = {}, parallel.microbatches = {}: "
                            "pipelines and data parallelism run on the CPU only so far (the CUDA backend trains "
                            "one whole model on one GPU); use train.device = cpu, or parallel.pipeline = 1",
                            p.str(), config.parallel.pipeline, config.parallel.data, config.parallel.microbatches));
  if (config.train.deterministic)
    throw Error(ErrorKind::kConfig, fmt::format("train.deterministic = true on {}: deterministic mode (exact fixed-point "
                                                "gradient sums) is CPU-only; use train.device = cpu or "
                                                "train.deterministic = false",
                                                p.str()));
  return p;
}

}  // namespace troupe
