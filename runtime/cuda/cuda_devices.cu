// Lists CUDA devices through the CUDA runtime (built only with TROUPE_WITH_CUDA).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "runtime/device_info.h"

namespace troupe {

// Registered as query_cuda_devices by cuda_register.cpp (runtime/cuda_hooks.h).
bool list_cuda_devices(std::vector<CudaDeviceInfo>* devices, std::string* status) {
  devices->clear();
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    *status = std::string("no CUDA device: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices->push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem});
  }
  *status = std::to_string(devices->size()) + (devices->size() == 1 ? " device" : " devices");
  return !devices->empty();
}

}  // namespace troupe
