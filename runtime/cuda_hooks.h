// Owns the seam between the CPU runtime and the CUDA backend: the CUDA library (troupe::cuda,
// runtime/cuda/) registers its entry points here, so that a program that links only the CPU runtime
// (troupe::core) links no CUDA library at all, and one that links troupe::cuda gets GPUs without a call.
//
// Linking troupe::cuda is what registers it: its CMake target adds the linker option
// --undefined=troupe_cuda_backend_anchor, which pulls runtime/cuda/cuda_register.cpp out of the static
// library, and a static object there calls register_cuda_backend before main().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/config/run_config.h"
#include "runtime/device_info.h"

namespace troupe {

class DeviceOps;

struct CudaBackendHooks {
  // DeviceOps on a CudaBackend on cuda:device (see make_cuda_ops in device_ops.h).
  std::unique_ptr<DeviceOps> (*make_ops)(const RunConfig& config, int device, bool allow_tf32) = nullptr;
  // The visible CUDA devices; false with the reason in `status` when none can be used.
  bool (*query_devices)(std::vector<CudaDeviceInfo>* devices, std::string* status) = nullptr;
};

// Called once by the CUDA library's registration object; a later call replaces the hooks.
void register_cuda_backend(const CudaBackendHooks& hooks);

// The registered hooks, or nullptr when the program does not link the CUDA backend.
const CudaBackendHooks* cuda_backend();

}  // namespace troupe
