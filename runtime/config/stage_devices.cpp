// Parses, prints and counts parallel.placement's per-stage devices.
#include "runtime/config/stage_devices.h"

#include <fmt/format.h>

#include "runtime/config/config_schema.h"
#include "runtime/error.h"
#include "runtime/strings.h"

namespace troupe {

std::vector<Device> parse_stage_devices(std::string_view key, std::string_view text) {
  std::vector<Device> stages;
  if (text.empty()) return stages;
  const std::vector<std::string> entries = split(std::string(text));
  for (std::size_t s = 0; s < entries.size(); ++s) {
    const std::optional<Device> d = parse_config_device(entries[s]);
    if (!d)
      throw Error(ErrorKind::kConfig,
                  fmt::format("{} = \"{}\", stage {}: \"{}\" is not a device; give one device per pipeline stage, "
                              "comma-separated, each cpu, cuda or cuda:N (troupe devices lists them), e.g. cuda:0,cpu",
                              key, echo_text(text), s, echo_text(entries[s])));
    stages.push_back(*d);
  }
  return stages;
}

std::string stage_devices_text(const std::vector<Device>& stages) {
  std::string text;
  for (const Device& d : stages) text += (text.empty() ? "" : ",") + (d == Device::cpu() ? "cpu" : d.str());
  return text;
}

void check_one_device_per_stage(const std::vector<Device>& placement, int stages) {
  if (placement.empty() || static_cast<int>(placement.size()) == stages) return;
  throw Error(ErrorKind::kConfig, fmt::format("parallel.placement = \"{}\" names {} devices for parallel.pipeline = {} "
                                              "stages; give one device per stage",
                                              stage_devices_text(placement), placement.size(), stages));
}

}  // namespace troupe
