// End-to-end training: the reference trainer learns (GPT on the built-in corpus, MLP and CNN on Fashion-MNIST)
// and is reproducible (bitwise across runs and thread counts).
#include <catch2/catch.hpp>

#include <filesystem>

#include "models/trainer.h"
#include "runtime/config/config_loader.h"

using namespace troupe;

namespace {
std::vector<double> train_losses(const std::vector<std::string>& sets, std::int64_t steps, Trainer** out = nullptr) {
  auto all = sets;
  all.push_back("train.steps=" + std::to_string(steps));
  Trainer trainer(load_config(std::nullopt, all));
  std::vector<double> losses;
  for (std::int64_t s = 0; s < steps; ++s) losses.push_back(trainer.train_step(s).loss);
  return losses;
}

const std::vector<std::string> kSmallGpt = {"model.n_layer=2", "model.n_embd=64", "model.n_head=4",
                                            "model.block_size=64", "optim.lr=3e-3", "train.threads=1"};
}  // namespace

TEST_CASE("GPT on the built-in corpus: validation loss below 2.9 after 200 steps", "[e2e]") {
  auto sets = kSmallGpt;
  sets.push_back("train.steps=200");
  Trainer trainer(load_config(std::nullopt, sets));
  const double initial = trainer.evaluate().loss;
  CHECK(initial == Approx(std::log(256.0)).epsilon(0.05));  // uniform over bytes at initialisation
  double first = 0, last = 0;
  for (int s = 0; s < 200; ++s) {
    double l = trainer.train_step(s).loss;
    if (s == 0) first = l;
    last = l;
  }
  const double val = trainer.evaluate().loss;
  INFO("train loss " << first << " -> " << last << ", validation " << initial << " -> " << val);
  CHECK(val < 2.9);  // measured 2.70 (seed 1337)
  CHECK(last < first - 2.0);
}

TEST_CASE("MLP on Fashion-MNIST: test accuracy at least 84% after 2000 steps", "[e2e]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  Trainer trainer(load_config(std::nullopt, {"model.kind=mlp", "model.mlp_hidden=256", "train.batch_size=64",
                                             "optim.kind=adam", "train.steps=2000", "train.threads=1"}));
  for (int s = 0; s < 2000; ++s) trainer.train_step(s);
  const EvalStats e = trainer.evaluate();
  INFO("test accuracy " << e.accuracy << " over " << e.rows << " images");
  CHECK(e.rows == 10000);
  CHECK(e.accuracy >= 0.84);  // measured 86.2% (seed 1337), 85.2% (seed 7)
}

// Budget: 1000 steps of 128 images (2.1 epochs) on one thread, the test set's evaluation included: 54 s of
// CPU time (114 s wall on a 2-core machine loaded ~4x). Accuracy measured 90.62% (seed 1337) and 90.51%
// (seed 7); PyTorch with the same recipe (tests/torch_ref/cnn_ref.py, AdamW, torch's seed) 90.95%. The run is
// bitwise reproducible, so the margin does not flake; 1200 steps buy only ~0.2% more.
TEST_CASE("cnn on Fashion-MNIST: test accuracy at least 90% after 1000 steps", "[e2e][cnn]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  Trainer trainer(load_config(std::nullopt, {"model.kind=cnn", "model.cnn_channels=16,32,64", "model.cnn_blocks=1,1,1",
                                             "model.cnn_stem_stride=2", "train.batch_size=128", "optim.kind=adamw",
                                             "optim.lr=0.01", "train.lr_schedule=cosine", "train.warmup_steps=20",
                                             "train.grad_clip=0", "train.steps=1000", "train.threads=1"}));
  for (int s = 0; s < 1000; ++s) trainer.train_step(s);
  const EvalStats e = trainer.evaluate();
  INFO("test accuracy " << e.accuracy << " over " << e.rows << " images");
  CHECK(e.rows == 10000);
  CHECK(e.accuracy >= 0.90);  // measured 90.62% (seed 1337)
}

TEST_CASE("training is bitwise reproducible across runs and thread counts", "[e2e][determinism]") {
  const auto a = train_losses(kSmallGpt, 6);
  const auto b = train_losses(kSmallGpt, 6);
  auto two_threads = kSmallGpt;
  two_threads.back() = "train.threads=2";
  const auto c = train_losses(two_threads, 6);
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("step " << i);
    CHECK(a[i] == b[i]);
    CHECK(a[i] == c[i]);
  }
}

TEST_CASE("deterministic mode: a batch in one piece or as micro-batches gives identical gradients", "[e2e][determinism]") {
  auto sets = kSmallGpt;
  sets.push_back("train.deterministic=true");
  sets.push_back("train.batch_size=4");
  Trainer whole(load_config(std::nullopt, sets));
  Trainer split(load_config(std::nullopt, sets));
  const Batch batch = whole.dataset().train_batch(0, 4);
  const float scale = 1.0f / static_cast<float>(batch.targets.numel());

  auto run = [&](Trainer& t, const std::vector<std::pair<int, int>>& pieces) {
    t.model().zero_grad();
    for (auto [b0, b1] : pieces) {
      MicroBatch mb{batch.inputs.slice(b0, b1), batch.targets.slice(b0, b1), scale, batch.inputs.dim(1)};
      auto ctxs = t.model().make_contexts();
      t.model().forward(t.backend(), mb, ctxs, mb.inputs);
      t.model().backward(t.backend(), mb, ctxs, Tensor());
    }
    t.model().finish_grads();
  };
  run(whole, {{0, 4}});
  run(split, {{0, 1}, {1, 3}, {3, 4}});
  for (Param* p : whole.model().params().all()) {
    const Param& q = split.model().params().at(p->name);
    INFO(p->name);
    CHECK(std::memcmp(p->grad.raw(), q.grad.raw(), p->grad.nbytes()) == 0);
  }
}

TEST_CASE("train.precision = bf16 learns as f32 does: validation loss within 1% after 200 steps", "[e2e][bf16]") {
  // The small GPT above at the main job's learning rate, 1e-3. Measured 2026-12-05 (seed 1337): validation
  // loss after 200 steps f32 2.7139, bf16 2.7213 (0.27%); after 100 and 300 steps 0.64% and 1.16%. At
  // lr 3e-3 this job is more sensitive: bf16 ends 2% below f32 after 200 steps, and PyTorch's own autocast
  // 6% above it (docs/precision.md).
  auto validation_after_200 = [](const char* precision) {
    auto sets = kSmallGpt;
    sets.push_back("optim.lr=1e-3");
    sets.push_back("train.steps=200");
    sets.push_back(std::string("train.precision=") + precision);
    Trainer trainer(load_config(std::nullopt, sets));
    for (int s = 0; s < 200; ++s) trainer.train_step(s);
    return trainer.evaluate().loss;
  };
  const double f32 = validation_after_200("f32"), bf16 = validation_after_200("bf16");
  INFO("validation loss after 200 steps: f32 " << f32 << ", bf16 " << bf16);
  CHECK(f32 != bf16);  // two different runs
  CHECK(std::abs(bf16 - f32) <= 0.01 * f32);
}
