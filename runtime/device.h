// Owns the Device value (a C++17 header: CUDA sources include it): where a tensor's storage lives and where an actor runs ("cpu:0", "cuda:1").
#pragma once

#include <string>
#include <string_view>

namespace troupe {

enum class DeviceKind { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;

  static Device cpu(int index = 0) { return {DeviceKind::cpu, index}; }
  static Device cuda(int index = 0) { return {DeviceKind::cuda, index}; }
  // Parses "cpu", "cpu:0", "cuda", "cuda:3"; throws troupe::Error (kInput) naming the text otherwise.
  static Device parse(std::string_view text);

  bool is_cpu() const { return kind == DeviceKind::cpu; }
  bool is_cuda() const { return kind == DeviceKind::cuda; }
  // "cpu:0", "cuda:1": the full name, as `troupe devices` lists it.
  std::string str() const;
  // The shortest text parse() reads back as this device: "cpu", "cuda" (GPU 0), "cuda:1", as train.device
  // is written (so messages echo `train.device = cuda` as the user typed it).
  std::string short_str() const;
  friend bool operator==(const Device& a, const Device& b) { return a.kind == b.kind && a.index == b.index; }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

}  // namespace troupe
