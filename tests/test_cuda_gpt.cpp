// [cuda] A GPT trained on the GPU follows the CPU reference trainer's losses.
//
// Stated tolerances, per step over 8 steps of AdamW with clipping: f32 within 1e-4 relative (products
// summed in another order drift apart slowly), bf16 linears within 3e-2 relative.
#include "models/device_gpt.h"
#include "models/device_trainer.h"
#include "models/trainer.h"
#include "tests/cuda_oracle.h"

using namespace troupe;

namespace {
RunConfig small_gpt() {
  RunConfig c;
  c.model.n_layer = 2;
  c.model.n_head = 4;
  c.model.n_embd = 64;
  c.model.block_size = 64;
  c.train.batch_size = 4;
  c.train.threads = 2;
  c.optim.kind = OptimKind::adamw;
  c.optim.lr = 1e-3;
  return c;
}

void follows_cpu(Precision precision, double tol) {
  const RunConfig config = small_gpt();
  Trainer reference(config);
  auto ops = make_cuda_ops(config, 0, false);
  DeviceGpt gpt(config, *ops, precision);
  for (std::int64_t step = 0; step < 8; ++step) {
    const double want = reference.train_step(step).loss;
    const double got = gpt.step(reference.dataset().train_batch(step, config.train.batch_size), step).loss;
    INFO("step " << step << ": cpu " << want << ", gpu " << got);
    CHECK(std::abs(got - want) <= tol * std::abs(want));
  }
}
}  // namespace

TEST_CASE("GPT training on the GPU (f32) follows the CPU run's losses within 1e-4", "[cuda]") {
  follows_cpu(Precision::f32, 1e-4);
}

TEST_CASE("GPT training on the GPU (bf16 linears, f32 master weights) follows the CPU run within 3e-2", "[cuda]") {
  follows_cpu(Precision::bf16, 3e-2);
}

TEST_CASE("DeviceTrainer on cuda:0: validation loss of the initial model equals the CPU's within 1e-5", "[cuda]") {
  const RunConfig config = small_gpt();
  Trainer reference(config);
  DeviceTrainer device(config, Device::cuda(0));
  const double want = reference.evaluate().loss, got = device.evaluate().loss;
  CHECK(std::abs(got - want) <= 1e-5 * want);
}
