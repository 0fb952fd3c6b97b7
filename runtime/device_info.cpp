// Device inventory: CPU threads from the OS, CUDA devices from the CUDA backend when the program links it.
#include "runtime/device_info.h"

#include <algorithm>
#include <thread>

#include "runtime/cuda_hooks.h"
#include "runtime/error.h"

namespace troupe {

bool query_cuda_devices(std::vector<CudaDeviceInfo>* devices, std::string* status) {
  if (const CudaBackendHooks* cuda = cuda_backend()) return cuda->query_devices(devices, status);
  devices->clear();
  *status = "not built (configure with -DTROUPE_WITH_CUDA=ON where nvcc is available, and link troupe::cuda)";
  return false;
}

DeviceInventory query_devices() {
  DeviceInventory inv;
  inv.cpu_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  inv.cuda_built = cuda_backend() != nullptr;
  query_cuda_devices(&inv.cuda_devices, &inv.cuda_status);
  return inv;
}

void require_device(const Device& device, const DeviceInventory& inventory) {
  if (device.is_cpu()) {
    if (device.index != 0)
      throw Error(ErrorKind::kConfig, "device " + device.str() + " does not exist: the host is cpu:0");
    return;
  }
  if (device.index >= static_cast<int>(inventory.cuda_devices.size()))
    throw Error(ErrorKind::kConfig, "device " + device.str() + " is not available here: CUDA " + inventory.cuda_status +
                                        " (use cpu:0, or a cuda:N that `troupe devices` lists)");
}

}  // namespace troupe
