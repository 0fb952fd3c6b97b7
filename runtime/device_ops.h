// Owns DeviceOps: what a training loop needs from a device beyond Backend's ops (moving data, casts, the optimizer step), for the CPU and CUDA.
//
// The reference Trainer keeps parameters, gradients and optimizer state on the host and calls
// runtime/optim directly. A loop whose parameters live in a backend's memory (models/device_gpt.h)
// goes through DeviceOps instead: the CPU one is exactly the reference's clipping and Optimizer; the
// CUDA one (runtime/cuda/cuda_device_ops.cpp) runs the same updates as device kernels with the same
// scalars (runtime/cuda/optim_scalars.h).
#pragma once

#include <memory>
#include <vector>

#include "runtime/backend.h"
#include "runtime/config/run_config.h"
#include "runtime/param.h"

namespace troupe {

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual Backend& backend() = 0;
  // A copy in this device's memory / on the host.
  virtual Tensor upload(const Tensor& host) = 0;
  virtual Tensor download(const Tensor& t) = 0;
  // dst = src converted between f32 and bf16 (throws where unsupported: the CPU computes in f32).
  virtual void cast(const Tensor& src, const Tensor& dst) = 0;
  // Clips gradients to max_norm when it is > 0 (returning the norm before clipping; 0 when off), then
  // applies one optimizer update at lr: runtime/optim's clip_grad_norm then Optimizer::step.
  virtual double clip_and_step(std::vector<Param*>& params, double max_norm, double lr) = 0;
  // Waits for queued work (a no-op on the CPU).
  virtual void synchronize() {}
};

// CpuBackend with config.train.threads threads; the optimizer config.optim names.
std::unique_ptr<DeviceOps> make_cpu_ops(const RunConfig& config);
// CudaBackend on cuda:device. Throws troupe::Error (kConfig) in a build without CUDA or without that GPU.
std::unique_ptr<DeviceOps> make_cuda_ops(const RunConfig& config, int device, bool allow_tf32);
// make_cpu_ops or make_cuda_ops by device.
std::unique_ptr<DeviceOps> make_device_ops(const RunConfig& config, const Device& device);

}  // namespace troupe
