// [cuda] Optimizer update kernels against runtime/optim's CPU optimizers, step by step, with state.
//
// Tolerance 1e-6 relative: both sides compute the same float ops in the same order with the same
// scalars (optim_scalars.h) and no fused multiply-add; the margin covers a host compiler that
// vectorises a division or square root differently.
#include "runtime/optim/optimizer.h"
#include "tests/cuda_oracle.h"

using namespace troupe;
using namespace troupe::cuda_test;

namespace {
constexpr double kOptim = 1e-6;

// Three steps of `config` on one parameter; GPU state tensors named as torch names them.
void check_optimizer(const OptimConfig& c) {
  Oracle o;
  const Shape shape{37, 29};
  Param p{"w", o.random(shape), Tensor()};
  Tensor dw = o.up(p.value);
  std::map<std::string, Tensor> state;
  auto zeros = [&](const std::string& name) -> Tensor& {
    auto it = state.find(name);
    if (it == state.end()) {
      it = state.emplace(name, o.gpu.empty(shape)).first;
      o.gpu.zero(it->second);
    }
    return it->second;
  };
  auto cpu = make_optimizer(c);
  std::vector<Param*> params{&p};
  for (int t = 1; t <= 3; ++t) {
    INFO("step " << t);
    p.grad = o.random(shape);
    const Tensor dg = o.up(p.grad);
    const double lr = 0.01 * t;  // a schedule: lr changes between steps
    if (c.kind == OptimKind::adam || c.kind == OptimKind::adamw) {
      const AdamStep k = adam_step(c.beta1_or_default(), c.beta2_or_default(), c.eps_or_default(),
                                   c.weight_decay_or_default(), c.kind == OptimKind::adamw, lr, t);
      o.gpu.adam_update(dw, dg, zeros("exp_avg"), zeros("exp_avg_sq"), k);
    } else if (c.kind == OptimKind::sgd) {
      const SgdStep k = sgd_step(c.momentum_or_default(), c.dampening_or_default(), c.weight_decay_or_default(),
                                 c.nesterov, lr, t == 1);
      o.gpu.sgd_update(dw, dg, k.momentum ? zeros("momentum_buffer") : Tensor(), k);
    } else {
      const RmspropStep k = rmsprop_step(c.alpha_or_default(), c.eps_or_default(), c.weight_decay_or_default(),
                                         c.momentum_or_default(), c.centered, lr);
      o.gpu.rmsprop_update(dw, dg, zeros("square_avg"), k.centered ? zeros("grad_avg") : Tensor(),
                           k.momentum ? zeros("momentum_buffer") : Tensor(), k);
    }
    cpu->step(params, lr);
    CHECK_CLOSE(o, dw, p.value, kOptim);
    for (auto& [name, t_cpu] : cpu->state().params.at("w").tensors) {
      INFO(name);
      REQUIRE(state.count(name));
      CHECK_CLOSE(o, state.at(name), t_cpu, kOptim);
    }
  }
}
}  // namespace

TEST_CASE("AdamW and Adam (with L2 decay) updates match the CPU optimizer", "[cuda]") {
  OptimConfig c;
  c.kind = OptimKind::adamw;
  check_optimizer(c);
  c.kind = OptimKind::adam;
  c.weight_decay = 0.1;
  check_optimizer(c);
}

TEST_CASE("SGD updates (plain, momentum with dampening, Nesterov with decay) match the CPU optimizer", "[cuda]") {
  OptimConfig c;
  c.kind = OptimKind::sgd;
  check_optimizer(c);
  c.momentum = 0.9;
  c.dampening = 0.1;
  check_optimizer(c);
  c.dampening = 0.0;
  c.nesterov = true;
  c.weight_decay = 0.01;
  check_optimizer(c);
}

TEST_CASE("RMSprop updates (plain, centered with momentum and decay) match the CPU optimizer", "[cuda]") {
  OptimConfig c;
  c.kind = OptimKind::rmsprop;
  check_optimizer(c);
  c.centered = true;
  c.momentum = 0.5;
  c.weight_decay = 0.01;
  check_optimizer(c);
}

TEST_CASE("sum of squares (for gradient clipping) in double, repeatable", "[cuda]") {
  Oracle o;
  Tensor x = o.random({100003});
  double want = 0.0;
  for (float v : x.span_f32()) want += static_cast<double>(v) * v;
  const Tensor d = o.up(x);
  const double got = o.gpu.sum_squares(d);
  CHECK(got == Approx(want).epsilon(1e-12));
  CHECK(o.gpu.sum_squares(d) == got);  // a fixed reduction tree: the same bits every time
}
