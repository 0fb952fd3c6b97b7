// DeviceOps on the CPU (the reference's clipping and optimizer), the device switch, and CUDA through its hooks.
#include "runtime/device_ops.h"

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cuda_hooks.h"
#include "runtime/error.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/optimizer.h"

namespace troupe {

namespace {
class CpuOps final : public DeviceOps {
 public:
  explicit CpuOps(const RunConfig& config) : be_(config.train.threads), optimizer_(make_optimizer(config.optim)) {
    be_.set_deterministic(config.train.deterministic);
  }
  Backend& backend() override { return be_; }
  Tensor upload(const Tensor& host) override { return host.clone(); }
  Tensor download(const Tensor& t) override { return t.clone(); }
  void cast(const Tensor& src, const Tensor& dst) override {
    TROUPE_CHECK(src.dtype() == dst.dtype(), "the CPU backend computes in f32 only (Precision::bf16 needs CUDA)");
    dst.copy_from(src);
  }
  double clip_and_step(std::vector<Param*>& params, double max_norm, double lr) override {
    const double norm = max_norm > 0.0 ? clip_grad_norm(params, max_norm) : 0.0;
    optimizer_->step(params, lr);
    return norm;
  }

 private:
  CpuBackend be_;
  std::unique_ptr<Optimizer> optimizer_;
};
}  // namespace

std::unique_ptr<DeviceOps> make_cpu_ops(const RunConfig& config) { return std::make_unique<CpuOps>(config); }

std::unique_ptr<DeviceOps> make_cuda_ops(const RunConfig& config, int device, bool allow_tf32) {
  if (const CudaBackendHooks* cuda = cuda_backend()) return cuda->make_ops(config, device, allow_tf32);
  throw Error(ErrorKind::kConfig, "train.device = cuda:" + std::to_string(device) +
                                      ": no CUDA device found (this program was built without the CUDA backend, "
                                      "troupe::cuda; query_devices() lists the devices); use train.device = cpu");
}

std::unique_ptr<DeviceOps> make_device_ops(const RunConfig& config, const Device& device) {
  if (device.is_cpu()) return make_cpu_ops(config);
  return make_cuda_ops(config, device.index, false);
}

}  // namespace troupe
