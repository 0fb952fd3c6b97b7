// Parses and prints Device values.
#include "runtime/device.h"

#include <charconv>

#include "runtime/error.h"

namespace troupe {

Device Device::parse(std::string_view text) {
  auto bad = [&] {
    return Error(ErrorKind::kInput, "invalid device '" + std::string(text) +
                                        "': expected cpu, cpu:N, cuda or cuda:N with N a device index");
  };
  auto colon = text.find(':');
  std::string_view kind = text.substr(0, colon);
  Device d;
  if (kind == "cpu") d.kind = DeviceKind::cpu;
  else if (kind == "cuda") d.kind = DeviceKind::cuda;
  else throw bad();
  if (colon != std::string_view::npos) {
    std::string_view idx = text.substr(colon + 1);
    auto [ptr, ec] = std::from_chars(idx.data(), idx.data() + idx.size(), d.index);
    if (ec != std::errc() || ptr != idx.data() + idx.size() || idx.empty() || d.index < 0) throw bad();
  }
  return d;
}

std::string Device::str() const {
  return std::string(kind == DeviceKind::cpu ? "cpu:" : "cuda:") + std::to_string(index);
}

std::string Device::short_str() const {
  if (index == 0) return kind == DeviceKind::cpu ? "cpu" : "cuda";
  return str();
}

}  // namespace troupe
