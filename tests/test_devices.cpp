// Device inventory and placement checks.
#include <catch2/catch.hpp>

#include "runtime/device_info.h"
#include "runtime/error.h"

using namespace troupe;

TEST_CASE("the inventory lists the host and says what CUDA has", "[devices]") {
  const DeviceInventory inv = query_devices();
  CHECK(inv.cpu_threads >= 1);
  CHECK_FALSE(inv.cuda_status.empty());
#ifdef TROUPE_HAVE_CUDA
  CHECK(inv.cuda_built);
#else
  CHECK_FALSE(inv.cuda_built);
  CHECK(inv.cuda_devices.empty());
#endif
}

TEST_CASE("placing on a device that is not here is a config error naming it", "[devices]") {
  DeviceInventory none;
  none.cuda_status = "no CUDA device: test";
  CHECK_NOTHROW(require_device(Device::cpu(), none));
  try {
    require_device(Device::parse("cuda:1"), none);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    CHECK_THAT(e.what(), Catch::Contains("cuda:1") && Catch::Contains("no CUDA device: test"));
  }
  CHECK_THROWS_AS(require_device(Device::parse("cpu:3"), none), Error);
  DeviceInventory one = none;
  one.cuda_devices.push_back({0, "test GPU", 9, 0, 1});
  CHECK_NOTHROW(require_device(Device::parse("cuda:0"), one));
  CHECK_THROWS_AS(require_device(Device::parse("cuda:1"), one), Error);
}
