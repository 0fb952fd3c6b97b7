// make_cuda_device_ops: DeviceOps on a CudaBackend, with runtime/optim's optimizers and clipping as device kernels.
#include <cmath>
#include <map>

#include "runtime/device_ops.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/optim/clip_grad.h"

namespace troupe {

namespace {
class CudaOps final : public DeviceOps {
 public:
  CudaOps(const RunConfig& config, int device, bool allow_tf32)
      : be_(CudaBackendOptions{device, allow_tf32}), optim_(config.optim) {}
  Backend& backend() override { return be_; }
  Tensor upload(const Tensor& host) override { return be_.upload(host); }
  Tensor download(const Tensor& t) override { return be_.download(t); }
  void cast(const Tensor& src, const Tensor& dst) override { be_.cast(src, dst); }
  void synchronize() override { be_.synchronize(); }

  double clip_and_step(std::vector<Param*>& params, double max_norm, double lr) override {
    double norm = 0.0;
    if (max_norm > 0.0) {
      // clip_grad_norm's order: a double sum of squares per gradient, added in parameter order.
      double total_sq = 0.0;
      for (Param* p : params) total_sq += be_.sum_squares(p->grad);
      norm = std::sqrt(total_sq);
      const float c = static_cast<float>(clip_coefficient(norm, max_norm));
      if (c != 1.0f)
        for (Param* p : params) be_.scale(p->grad, c);
    }
    for (Param* p : params) update(*p, lr);
    return norm;
  }

 private:
  struct State {
    std::int64_t step = 0;
    std::map<std::string, Tensor> tensors;
  };

  Tensor& zeros(State& s, const std::string& name, const Param& p) {
    auto it = s.tensors.find(name);
    if (it == s.tensors.end()) {
      it = s.tensors.emplace(name, be_.empty(p.value.shape())).first;
      be_.zero(it->second);
    }
    return it->second;
  }

  void update(Param& p, double lr) {
    State& s = state_[p.name];
    ++s.step;
    const OptimConfig& o = optim_;
    if (o.kind == OptimKind::adam || o.kind == OptimKind::adamw) {
      const AdamStep k = adam_step(o.beta1_or_default(), o.beta2_or_default(), o.eps_or_default(),
                                   o.weight_decay_or_default(), o.kind == OptimKind::adamw, lr, s.step);
      be_.adam_update(p.value, p.grad, zeros(s, "exp_avg", p), zeros(s, "exp_avg_sq", p), k);
    } else if (o.kind == OptimKind::sgd) {
      const bool first = s.tensors.find("momentum_buffer") == s.tensors.end();
      const SgdStep k = sgd_step(o.momentum_or_default(), o.dampening_or_default(), o.weight_decay_or_default(),
                                 o.nesterov, lr, first);
      be_.sgd_update(p.value, p.grad, k.momentum ? zeros(s, "momentum_buffer", p) : Tensor(), k);
    } else {
      const RmspropStep k = rmsprop_step(o.alpha_or_default(), o.eps_or_default(), o.weight_decay_or_default(),
                                         o.momentum_or_default(), o.centered, lr);
      be_.rmsprop_update(p.value, p.grad, zeros(s, "square_avg", p), k.centered ? zeros(s, "grad_avg", p) : Tensor(),
                         k.momentum ? zeros(s, "momentum_buffer", p) : Tensor(), k);
    }
  }

  CudaBackend be_;
  OptimConfig optim_;
  std::map<std::string, State> state_;
};
}  // namespace

// Registered as make_cuda_ops by cuda_register.cpp (runtime/cuda_hooks.h).
std::unique_ptr<DeviceOps> make_cuda_device_ops(const RunConfig& config, int device, bool allow_tf32) {
  return std::make_unique<CudaOps>(config, device, allow_tf32);
}

}  // namespace troupe
