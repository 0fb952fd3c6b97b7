// SGD: torch.optim.SGD's single-tensor update as plain loops over float*, one instantiation per option set.
#include "runtime/optim/sgd.h"

#include <type_traits>

#include <fmt/format.h>

#include "runtime/optim/validate.h"

namespace troupe {
namespace {

// Calls f with std::true_type or std::false_type, so that option checks leave the inner loops.
template <class F>
void with_flag(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// Each arithmetic step below is one PyTorch tensor op on float32, kept in PyTorch's order, with its
// Python scalar rounded to float as ATen does.
template <bool kDecay>
void sgd_plain(float* __restrict w, const float* __restrict g, std::size_t n, float wd, float neg_lr) {
  for (std::size_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (kDecay) d = d + wd * w[i];  // d_p = d_p.add(param, alpha=weight_decay)
    w[i] = w[i] + neg_lr * d;                 // param.add_(d_p, alpha=-lr)
  }
}

template <bool kDecay, bool kNesterov, bool kFirst>
void sgd_momentum(float* __restrict w, const float* __restrict g, float* __restrict buf, std::size_t n, float wd,
                  float momentum, float one_minus_dampening, float neg_lr) {
  for (std::size_t i = 0; i < n; ++i) {
    float d = g[i];
    if constexpr (kDecay) d = d + wd * w[i];
    float b;
    if constexpr (kFirst) {
      b = d;  // buf = torch.clone(d_p): PyTorch applies no dampening on the first step
    } else {
      b = buf[i] * momentum;            // buf.mul_(momentum)
      b = b + one_minus_dampening * d;  //    .add_(d_p, alpha=1 - dampening)
    }
    buf[i] = b;
    if constexpr (kNesterov) d = d + momentum * b;  // d_p = d_p.add(buf, alpha=momentum)
    else d = b;
    w[i] = w[i] + neg_lr * d;
  }
}

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdOptions& o) : Optimizer(o.lr), o_(o) {}
  std::string_view kind() const override { return "sgd"; }

 protected:
  void update(Param& p, ParamState& s, double lr) override {
    const std::size_t n = static_cast<std::size_t>(p.value.numel());
    float* w = p.value.f32();
    const float* g = p.grad.f32();
    const float wd = static_cast<float>(o_.weight_decay);
    const float neg_lr = static_cast<float>(-lr);
    const bool decay = o_.weight_decay != 0.0;
    if (o_.momentum == 0.0) {
      with_flag(decay, [&](auto kDecay) { sgd_plain<kDecay>(w, g, n, wd, neg_lr); });
      return;
    }
    Tensor* buf = s.find("momentum_buffer");
    const bool first = buf == nullptr;
    if (first) buf = &s.tensors.emplace("momentum_buffer", Tensor::empty(p.value.shape())).first->second;
    const float momentum = static_cast<float>(o_.momentum);
    const float one_minus_dampening = static_cast<float>(1.0 - o_.dampening);
    float* b = buf->f32();
    with_flag(decay, [&](auto kDecay) {
      with_flag(o_.nesterov, [&](auto kNesterov) {
        with_flag(first, [&](auto kFirst) {
          sgd_momentum<kDecay, kNesterov, kFirst>(w, g, b, n, wd, momentum, one_minus_dampening, neg_lr);
        });
      });
    });
  }

 private:
  SgdOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(const SgdOptions& o) {
  using optim_detail::require_non_negative;
  require_non_negative("sgd", "optim.lr", o.lr);
  require_non_negative("sgd", "optim.momentum", o.momentum);
  require_non_negative("sgd", "optim.weight_decay", o.weight_decay);
  // No range on dampening: PyTorch has none (a dampening above 1 reverses the gradient's sign).
  if (o.dampening != o.dampening)
    throw Error(ErrorKind::kConfig, "optim.dampening = nan is invalid for sgd: it must be a number");
  if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0))
    throw Error(ErrorKind::kConfig,
                fmt::format("optim.nesterov = true is invalid for sgd with optim.momentum = {} and optim.dampening = {}: "
                            "Nesterov momentum needs momentum > 0 and dampening = 0",
                            o.momentum, o.dampening));
  return std::make_unique<Sgd>(o);
}

}  // namespace troupe
