// Device placement at startup: stages on devices that exist here, mixed CPU/GPU placements, and the
// one-line refusal (exit 2) of a CUDA device on a machine or build without one.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <memory>

#include "actors/session.h"
#include "runtime/error.h"
#include "runtime/placement.h"

using namespace troupe;

namespace {
DeviceInventory no_gpu() {
  DeviceInventory inv;
  inv.cuda_status = "no CUDA device: test";
  return inv;
}

DeviceInventory gpus(int n) {
  DeviceInventory inv;
  for (int i = 0; i < n; ++i) inv.cuda_devices.push_back({i, "test GPU", 9, 0, std::size_t{1} << 30});
  inv.cuda_status = std::to_string(n) + " devices";
  return inv;
}

std::string config_error(const RunConfig& c, const DeviceInventory& inv) {
  try {
    resolve_placement(c, inv);
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    return e.what();
  }
  return "(no error)";
}

// Runs the troupe binary; returns the exit code, stderr in *err.
int run_troupe(const std::string& args, std::string* err) {
  const std::string cmd = std::string(TROUPE_BINARY) + " " + args + " 2>&1 >/dev/null </dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  REQUIRE(pipe);
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe.get())) *err += buf.data();
  const int status = pclose(pipe.release());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

TEST_CASE("every stage goes on train.device unless parallel.placement names one per stage", "[placement]") {
  RunConfig c;
  c.parallel.pipeline = 3;
  Placement p = resolve_placement(c, no_gpu());
  CHECK(p.str() == "cpu:0,cpu:0,cpu:0");
  CHECK_FALSE(p.any_cuda());
  CHECK_FALSE(p.crosses_devices(0));

  c.train.device = Device::cuda();
  p = resolve_placement(c, gpus(1));
  CHECK(p.str() == "cuda:0,cuda:0,cuda:0");
  CHECK(p.any_cuda());
  CHECK_FALSE(p.mixed());
}

TEST_CASE("a mixed CPU/GPU placement is accepted where its devices exist", "[placement]") {
  RunConfig c;
  c.parallel.pipeline = 3;
  c.parallel.placement = {Device::cuda(0), Device::cuda(1), Device::cpu()};
  const Placement p = resolve_placement(c, gpus(2));
  CHECK(p.str() == "cuda:0,cuda:1,cpu:0");
  CHECK(p.mixed());
  CHECK(p.crosses_devices(0));  // GPU to GPU: a device-to-device copy
  CHECK(p.crosses_devices(1));  // GPU to host
  CHECK_FALSE(p.crosses_devices(2));
  CHECK_THAT(config_error(c, gpus(1)),
             Catch::Contains("stage 1 on cuda:1: cuda:1 does not exist, this machine has 1 CUDA device (cuda:0..cuda:0"));
}

TEST_CASE("a CUDA device on a machine without one is a config error saying what to use", "[placement]") {
  RunConfig c;
  c.train.device = Device::cuda();
  CHECK(config_error(c, no_gpu()) ==
        "train.device = cuda: no CUDA device found (troupe devices lists them); use train.device = cpu");
  c.train.device = Device::cuda(2);
  CHECK_THAT(config_error(c, gpus(2)), Catch::Contains("cuda:2 does not exist, this machine has 2 CUDA devices"));
  c.train.device = Device::cpu();
  c.parallel.pipeline = 2;
  c.parallel.placement = {Device::cuda(0), Device::cpu()};
  CHECK_THAT(config_error(c, no_gpu()),
             Catch::Contains("parallel.placement = \"cuda:0,cpu\", stage 0 on cuda:0: no CUDA device found") &&
                 Catch::Contains("use cpu for that stage"));
  c.parallel.placement = {Device::cpu()};
  CHECK_THAT(config_error(c, no_gpu()), Catch::Contains("names 1 devices for parallel.pipeline = 2 stages"));
}

TEST_CASE("one GPU trains a whole model, pipelines, data parallelism and exact sums on CUDA are refused", "[placement]") {
  RunConfig c;
  c.train.device = Device::cuda();
  const Placement one = resolve_placement(c, gpus(1));
  CHECK(check_runnable(one, c).str() == "cuda:0");
  c.train.deterministic = true;
  CHECK_THROWS_WITH(check_runnable(one, c), Catch::Contains("deterministic mode (exact fixed-point gradient sums) is "
                                                              "CPU-only"));
  c.train.deterministic = false;
  c.parallel.pipeline = 2;
  c.parallel.placement = {Device::cuda(0), Device::cpu()};
  const Placement mixed = resolve_placement(c, gpus(1));
  CHECK_THROWS_WITH(check_runnable(mixed, c), Catch::Contains("placement cuda:0,cpu:0 with parallel.pipeline = 2") &&
                                                  Catch::Contains("run on the CPU only so far"));
  c.parallel.placement = {Device::cpu(), Device::cpu()};
  CHECK(check_runnable(resolve_placement(c, no_gpu()), c).str() == "cpu:0,cpu:0");
}

TEST_CASE("troupe train refuses a CUDA device this machine lacks at startup, exit 2", "[placement][cli]") {
  if (!query_devices().cuda_devices.empty()) {
    // With a GPU, the same command trains (the [cuda] tests check what it computes).
    std::string out;
    CHECK(run_troupe("train --steps 1 --set train.device=cuda --set model.n_layer=1 --set model.n_embd=32 "
                     "--set model.n_head=2 --set model.block_size=16 --set train.batch_size=2 --set train.eval_batches=1",
                     &out) == 0);
    return;
  }
  std::string err;
  CHECK(run_troupe("train --steps 1 --set train.device=cuda", &err) == 2);
  CHECK_THAT(err, Catch::Contains("train.device = cuda: no CUDA device found (troupe devices lists them); use "
                                  "train.device = cpu"));
  err.clear();
  CHECK(run_troupe("train --steps 1 --set parallel.pipeline=2 --set parallel.placement=cuda:0,cpu", &err) == 2);
  CHECK_THAT(err, Catch::Contains("parallel.placement = \"cuda:0,cpu\", stage 0 on cuda:0: no CUDA device found"));
}

TEST_CASE("the embedding API (Session) checks devices too and never trains a CUDA config on the CPU", "[placement]") {
  RunConfig c;
  c.train.device = Device::cuda();
  auto s = Session::create(c);
  REQUIRE_FALSE(static_cast<bool>(s));
  CHECK(s.error().kind() == ErrorKind::kConfig);
  if (query_devices().cuda_devices.empty())
    CHECK_THAT(s.error().what(), Catch::Contains("train.device = cuda: no CUDA device found"));
  else
    CHECK_THAT(s.error().what(), Catch::Contains("Session trains on the CPU only so far"));
}
