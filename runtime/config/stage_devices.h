// Owns parallel.placement as a config writes it: one device per pipeline stage, parsed once, printed back, counted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/device.h"

namespace troupe {

// "cuda:0,cpu" -> {cuda:0, cpu:0}; "" -> {} (no placement: every stage on train.device). Each entry is a
// device as parse_config_device reads it (cpu, cpu:0, cuda, cuda:N). Throws troupe::Error(kConfig)
// naming `key`, the stage and the entry that is not a device, and the forms that are.
std::vector<Device> parse_stage_devices(std::string_view key, std::string_view text);

// The text parse_stage_devices reads back as `stages`: "cpu" for the host (a config's one CPU device),
// "cuda:N" for a GPU, so that "cuda:0,cpu" prints as it is usually written; another CPU index (only a
// RunConfig built in code holds one) prints as "cpu:N", for the error that refuses it.
std::string stage_devices_text(const std::vector<Device>& stages);

// Throws troupe::Error(kConfig) unless a non-empty `placement` names one device for each of the
// parallel.pipeline = `stages` stages.
void check_one_device_per_stage(const std::vector<Device>& placement, int stages);

}  // namespace troupe
