// Device inventory: CPU threads from the OS, CUDA devices from the CUDA runtime when built.
#include "runtime/device_info.h"

#include <algorithm>
#include <thread>

#include "runtime/error.h"

namespace troupe {

#ifndef TROUPE_HAVE_CUDA
bool query_cuda_devices(std::vector<CudaDeviceInfo>* devices, std::string* status) {
  devices->clear();
  *status = "not built (configure with nvcc available, or -DTROUPE_WITH_CUDA=ON)";
  return false;
}
#endif

DeviceInventory query_devices() {
  DeviceInventory inv;
  inv.cpu_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#ifdef TROUPE_HAVE_CUDA
  inv.cuda_built = true;
#endif
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
