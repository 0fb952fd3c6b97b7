// Catch2's main for troupe_cuda_tests: exits 77 (CTest's SKIP_RETURN_CODE) with a clear message when no GPU is present.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "runtime/device_info.h"

int main(int argc, char** argv) {
  const troupe::DeviceInventory inv = troupe::query_devices();
  if (inv.cuda_devices.empty()) {
    std::printf("SKIPPED: the [cuda] tests need a CUDA GPU; this machine has none (CUDA: %s)\n", inv.cuda_status.c_str());
    return 77;
  }
  std::printf("[cuda] tests on cuda:0 = %s\n", inv.cuda_devices[0].name.c_str());
  return Catch::Session().run(argc, argv);
}
