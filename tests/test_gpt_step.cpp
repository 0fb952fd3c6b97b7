// DeviceGpt (models/device_gpt.h) on the CPU: the backend-generic GPT step that the GPU check times must be
// the reference trainer's computation, so on the CPU its losses and weights equal the Trainer's bit for bit.
#include <catch2/catch.hpp>

#include "models/device_gpt.h"
#include "bench/gpu_report.h"
#include "models/device_trainer.h"
#include "models/trainer.h"

#include <unistd.h>

#include <filesystem>

using namespace troupe;

namespace {
RunConfig tiny_gpt(const std::string& optim) {
  RunConfig c;
  c.model.n_layer = 2;
  c.model.n_head = 2;
  c.model.n_embd = 32;
  c.model.block_size = 16;
  c.train.batch_size = 4;
  c.train.threads = 2;
  c.train.grad_clip = 0.5;  // small enough to clip: the clipping path runs too
  c.optim.kind = *parse_choice<OptimKind>(optim);
  c.optim.lr = 3e-3;
  return c;
}
}  // namespace

TEST_CASE("DeviceGpt on the CPU reproduces the reference trainer bit for bit", "[gpt-step]") {
  const std::string optim = GENERATE("adamw", "sgd", "rmsprop");
  INFO(optim);
  const RunConfig config = tiny_gpt(optim);
  Trainer reference(config);
  auto ops = make_cpu_ops(config);
  DeviceGpt gpt(config, *ops);
  for (std::int64_t step = 0; step < 4; ++step) {
    const StepStats want = reference.train_step(step);
    const GptStepResult got = gpt.step(reference.dataset().train_batch(step, config.train.batch_size), step);
    CHECK(got.loss == want.loss);
    CHECK(got.lr == want.lr);
  }
  const auto ref_params = reference.model().params().all();
  const auto params = gpt.params();
  REQUIRE(params.size() == ref_params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    INFO(params[i]->name);
    CHECK(params[i]->value.to_vector() == ref_params[i]->value.to_vector());
  }
}

TEST_CASE("GPU check arithmetic: padded vocabulary, model-FLOP utilisation, the table", "[gpt-step]") {
  CHECK(padded_vocab(50257, 128) == 50304);
  CHECK(padded_vocab(256, 128) == 256);
  // 124.5M parameters at 400k tokens/s on a 790 TFLOP/s part: 6 * 124.5e6 * 4e5 / 790e12 = 37.8%.
  CHECK(model_flop_utilisation(124'500'000, 4e5, 790e12) == Approx(0.37823).epsilon(1e-4));
  const std::string table = format_gpu_report("title", {{"matmul bf16 8192^3", 600.0, "TFLOP/s", 650.0, "cuBLAS direct"},
                                                        {"copy", 2000.0, "GB/s", 0.0, ""}});
  CHECK_THAT(table, Catch::StartsWith("title\n") && Catch::Contains("600.00 TFLOP/s") &&
                        Catch::Contains("650.00 (cuBLAS direct)") && Catch::Contains("92.3%"));
  CHECK_THAT(table, Catch::Contains("2000.00 GB/s"));
}

TEST_CASE("Precision::bf16 needs a backend that casts, and the CPU one says so", "[gpt-step]") {
  const RunConfig config = tiny_gpt("adamw");
  auto ops = make_cpu_ops(config);
  CHECK_THROWS_WITH(DeviceGpt(config, *ops, Precision::bf16), Catch::Contains("bf16 needs CUDA"));
}

TEST_CASE("DeviceTrainer on the CPU: the reference trainer's losses, evaluation and weight files", "[gpt-step]") {
  const RunConfig config = tiny_gpt("adamw");
  Trainer reference(config);
  DeviceTrainer device(config, Device::cpu());
  CHECK(device.num_params() == reference.model().params().numel());
  for (std::int64_t step = 0; step < 3; ++step) CHECK(device.train_step(step).loss == reference.train_step(step).loss);
  CHECK(device.evaluate().loss == reference.evaluate().loss);

  const std::string path = (std::filesystem::temp_directory_path() /
                            ("troupe_device_trainer_" + std::to_string(::getpid()) + ".safetensors")).string();
  device.save_weights(path);
  Trainer reloaded(config);
  reloaded.load_weights(path);
  CHECK(reloaded.evaluate().loss == reference.evaluate().loss);
  DeviceTrainer device2(config, Device::cpu());
  device2.load_weights(path);
  CHECK(device2.evaluate().loss == reference.evaluate().loss);
  std::filesystem::remove(path);

  RunConfig mlp = config;
  mlp.model.kind = ModelKind::mlp;
  CHECK_THROWS_WITH(DeviceTrainer(mlp, Device::cpu()), Catch::Contains("only the gpt trains on a CUDA device"));
}
