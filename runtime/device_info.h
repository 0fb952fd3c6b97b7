// Owns the device inventory (a C++17 header: CUDA sources include it): which devices this process can place actors on (CPU threads, CUDA GPUs).
#pragma once

#include <string>
#include <vector>

#include "runtime/device.h"

namespace troupe {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0, compute_minor = 0;
  std::size_t memory_bytes = 0;
};

struct DeviceInventory {
  int cpu_threads = 1;
  bool cuda_built = false;     // this program links the CUDA backend (troupe::cuda)
  std::string cuda_status;     // "2 devices", "no CUDA device: ...", "not built (...)"
  std::vector<CudaDeviceInfo> cuda_devices;
};

DeviceInventory query_devices();

// Throws troupe::Error (kConfig) when `device` does not exist here, naming the devices that do.
void require_device(const Device& device, const DeviceInventory& inventory);

// Through the CUDA backend when the program links it (runtime/cuda_hooks.h); false with a reason otherwise.
bool query_cuda_devices(std::vector<CudaDeviceInfo>* devices, std::string* status);

}  // namespace troupe
