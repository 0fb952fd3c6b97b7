// Owns device placement: the device each pipeline stage runs on, from train.device and parallel.placement, checked against this machine.
//
// runtime/config checks the spelling of device names; this checks that they exist here, at startup,
// before any model is built, so that `troupe train --set train.device=cuda` on a machine without a GPU
// (or a build without CUDA) stops at once with exit code 2 and a message saying what to use instead.
// Mixed placements (parallel.placement = "cuda:0,cpu") are valid: each stage names its own device.
#pragma once

#include <string>
#include <vector>

#include "runtime/config/run_config.h"
#include "runtime/device_info.h"

namespace troupe {

struct Placement {
  std::vector<Device> stages;  // one per pipeline stage (parallel.pipeline of them)

  bool any_cuda() const;
  bool mixed() const;  // both CPU and CUDA stages
  // Stages s and s + 1 sit on different devices: activations crossing that link are copied between them.
  bool crosses_devices(int stage) const;
  std::string str() const;  // "cuda:0,cuda:0,cpu:0"
};

// The placement `config` asks for: parallel.placement when set (one device per stage), else every stage
// on train.device ("cuda" means cuda:0). Throws troupe::Error (kConfig) when a device is not present in
// `inventory`, e.g. "train.device = cuda: no CUDA device found (troupe devices lists them); use
// train.device = cpu", or names the devices that exist for an out-of-range cuda:N.
Placement resolve_placement(const RunConfig& config, const DeviceInventory& inventory);

// What `troupe train` checks at startup: resolve_placement against this machine (query_devices()), then
// what the trainers can run: any placement on the CPU; one CUDA device for the single-device trainer
// (models/device_trainer.h: parallel.pipeline = 1, parallel.data = 1, not deterministic). Pipelines,
// data parallelism and mixed placements with CUDA stages are validated but refused with troupe::Error
// (kConfig) saying so: their stages still build their models on the host.
Placement placement_for_run(const RunConfig& config);
// The second half of placement_for_run: `placement` returned when the trainers can run it, else the error.
Placement check_runnable(Placement placement, const RunConfig& config);

}  // namespace troupe
