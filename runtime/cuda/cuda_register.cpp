// Registers the CUDA backend with the CPU runtime (runtime/cuda_hooks.h) when a program links troupe::cuda.
#include <memory>

#include "runtime/cuda_hooks.h"
#include "runtime/device_ops.h"

namespace troupe {
std::unique_ptr<DeviceOps> make_cuda_device_ops(const RunConfig& config, int device, bool allow_tf32);  // cuda_device_ops.cpp
bool list_cuda_devices(std::vector<CudaDeviceInfo>* devices, std::string* status);                     // cuda_devices.cu
}  // namespace troupe

// The symbol that troupe::cuda's link option (--undefined=troupe_cuda_backend_anchor) asks for: it makes
// the linker take this object out of the static library, and with it the registration below.
extern "C" {
[[gnu::used]] int troupe_cuda_backend_anchor = 1;
}

namespace {
[[gnu::used]] const bool registered = [] {
  troupe::register_cuda_backend({&troupe::make_cuda_device_ops, &troupe::list_cuda_devices});
  return true;
}();
}  // namespace
