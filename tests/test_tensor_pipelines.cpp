// Owns the tests of tensor shards in pipelines (3D parallelism): tp x pp under every schedule, tp with micro-batches, dp x pp x tp with ZeRO-1 and compression, equal to the single device; the plan and the config errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "actors/runner.h"
#include "actors/session.h"
#include "runtime/config/config_loader.h"
#include "tests/error_of.h"
#include "tests/small_gpt_runs.h"
#include "tests/training_runs.h"

using namespace troupe;
using namespace troupe::testing;  // small_gpt_runs.h
using Catch::Matchers::Contains;

namespace {

struct Layout {
  const char* name;
  std::vector<std::string> sets;
};

const std::vector<Layout> kLayouts = {
    {"tp2 x pp2 gpipe", {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2", "parallel.schedule=gpipe"}},
    {"tp2 x pp2 1f1b", {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2", "parallel.schedule=1f1b"}},
    {"tp2 x pp2 interleaved", {"parallel.tensor=2", "parallel.pipeline=2", "parallel.virtual_stages=2",
                               "parallel.microbatches=2", "parallel.schedule=interleaved"}},
    {"tp2 with 2 micro-batches", {"parallel.tensor=2", "parallel.microbatches=2"}},
    {"dp2 x pp2 x tp2", {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"}},
    {"dp2 x pp2 x tp2, ZeRO-1", {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                                 "parallel.microbatches=2", "parallel.zero=1"}},
    {"dp2 x tp2, ZeRO-1", {"parallel.data=2", "parallel.tensor=2", "parallel.zero=1"}},
};

RunConfig config_of(const Layout& layout, bool deterministic) {
  std::vector<std::string> sets = small_gpt(deterministic);
  sets.insert(sets.end(), layout.sets.begin(), layout.sets.end());
  return load_config(std::nullopt, sets);
}

}  // namespace

TEST_CASE("tensor shards in pipelines = single device bitwise (deterministic): every schedule, micro-batches, "
          "3D, ZeRO-1",
          "[tensor_parallel][pipeline][deterministic]") {
  const int steps = 20;
  const RunConfig one = load_config(std::nullopt, small_gpt(true));
  const TrainingRun reference = single_device(one, steps);
  for (const Layout& layout : kLayouts) {
    INFO(layout.name);
    require_bitwise(tensor_pipelined(config_of(layout, true), steps), reference);
  }
}

TEST_CASE("tensor shards in pipelines = single device: losses within 1e-5 (GPT every layout, MLP tp2 x pp2)",
          "[tensor_parallel][pipeline]") {
  const int steps = 20;
  const TrainingRun reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  for (const Layout& layout : kLayouts) {
    check_losses_close(tensor_pipelined(config_of(layout, false), steps).losses, reference.losses, 1e-5, layout.name);
  }
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping the MLP");
    return;
  }
  const std::vector<std::string> mlp = {"model.kind=mlp", "model.mlp_hidden=64,32", "train.batch_size=16",
                                        "train.threads=1", "data.order=sequential", "train.deterministic=false"};
  const TrainingRun mlp_ref = single_device(load_config(std::nullopt, mlp), steps);
  const TrainingRun run = tensor_pipelined(
      load_config(std::nullopt, with(mlp, {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"})), steps);
  check_losses_close(run.losses, mlp_ref.losses, 1e-5, "mlp tp2 x pp2");
  const TrainingRun exact = tensor_pipelined(
      load_config(std::nullopt, with(mlp, {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2",
                                           "train.deterministic=true"})),
      steps);
  require_bitwise(exact, single_device(load_config(std::nullopt, with(mlp, {"train.deterministic=true"})), steps));
}

TEST_CASE("dp2 x pp2 x tp2 with gradient compression trains close to the single device", "[tensor_parallel][pipeline]") {
  const int steps = 6;
  const TrainingRun reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  const TrainingRun run = tensor_pipelined(
      load_config(std::nullopt, with(small_gpt(false), {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                                                        "parallel.microbatches=2", "comm.compression=fp16"})),
      steps);
  check_losses_close(run.losses, reference.losses, 1e-3, "dp2 x pp2 x tp2 fp16 compression");
}

TEST_CASE("the plan of a 3D layout shows every shard of every stage with its actors", "[tensor_parallel][pipeline]") {
  const RunConfig config = load_config(
      std::nullopt, with(small_gpt(false), {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                                            "parallel.microbatches=2"}));
  const std::string plan = describe_plan(config);
  INFO(plan);
  CHECK_THAT(plan, Contains("data 2 x pipe 2 x tensor 2 = 8 ranks"));
  CHECK_THAT(plan, Contains("data:   [0 4] [1 5] [2 6] [3 7]  gradient exchange ring"));
  CHECK_THAT(plan, Contains("tensor: [0 1] [2 3] [4 5] [6 7]"));
  CHECK_THAT(plan, Contains("replica 1/stage 1/tensor 1/optimizer state"));
  CHECK_THAT(plan, Contains("replica 1/stage 1/tensor 1/gradient exchange"));
}

TEST_CASE("tensor shards in pipelines from Session: steps, evaluates and saves as the single device",
          "[tensor_parallel][pipeline][session]") {
  const std::vector<std::string> base = with(small_gpt(false), {"train.steps=2"});
  auto single = Session::create(load_config(std::nullopt, base));
  auto three_d = Session::create(load_config(
      std::nullopt, with(base, {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"})));
  REQUIRE(single);
  REQUIRE(three_d);
  const auto [ea, eb] = check_sessions_close(**single, **three_d, 2);
  // Weight files hold whole tensors both ways: the 3D run's file loads into the single device, the single
  // device's into the 3D run, and each then evaluates as the other did.
  TempDir dir;
  REQUIRE((*single)->save_weights(dir.file("single.st")));
  REQUIRE((*three_d)->save_weights(dir.file("3d.st")));
  REQUIRE((*single)->load_weights(dir.file("3d.st")));
  REQUIRE((*three_d)->load_weights(dir.file("single.st")));
  auto ea2 = (*single)->evaluate();
  auto eb2 = (*three_d)->evaluate();
  REQUIRE(ea2);
  REQUIRE(eb2);
  CHECK(ea2->loss == Approx(eb.loss).epsilon(1e-5));
  CHECK(eb2->loss == Approx(ea.loss).epsilon(1e-5));
}

TEST_CASE("tensor shards in pipelines: invalid combinations are config errors that say what would divide",
          "[tensor_parallel][pipeline]") {
  auto err = [](std::vector<std::string> sets) { return config_error([&] { load_config(std::nullopt, sets); }); };
  CHECK_THAT(err(with(small_gpt(false), {"parallel.tensor=3", "parallel.pipeline=2"})),
             Contains("parallel.tensor = 3 does not divide model.n_head = 4"));
  CHECK_THAT(err(with(small_gpt(false), {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=3"})),
             Contains("parallel.microbatches"));
  CHECK_THAT(err(with(small_gpt(false), {"parallel.tensor=2", "parallel.data=2", "parallel.pipeline=2",
                                         "parallel.microbatches=2", "comm.transport=tcp"})),
             Contains("tensor shards as processes run without pipelines"));
}

TEST_CASE("a shard's stage actor that dies fails the step with its place, its peers freed at once",
          "[tensor_parallel][pipeline][supervision]") {
  // No restarts: the death ends the step (tests/test_tensor_restart.cpp restarts it).
  auto session = Session::create(load_config(
      std::nullopt, with(small_gpt(false), {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2",
                                            "train.steps=3", "fault.max_restarts=0",
                                            "fault.inject=kill stage 1 at step 1"})));
  REQUIRE(session);
  REQUIRE((*session)->step());
  auto failed = (*session)->step();
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().what(), Contains("actor replica 0/stage 1/tensor ") && Contains("died in step 1"));
}

TEST_CASE("a 3D training state is whole tensors by name, bitwise the single device's, and restores both ways",
          "[tensor_parallel][pipeline][resume][deterministic]") {
  const RunConfig one = load_config(std::nullopt, small_gpt(true));
  const RunConfig three_d = config_of(kLayouts.at(5), true);  // dp2 x pp2 x tp2, ZeRO-1
  const RunConfig interleaved = config_of(kLayouts.at(2), true);
  TensorPipelineTrainer t(three_d);
  Trainer single(one);
  train_both(t, single, 3);
  const TrainingState a = t.training_state(3), b = single.training_state(3);
  CHECK(a.step == b.step);
  CHECK(a.optimizer.step == b.optimizer.step);
  std::map<std::string, Tensor> by_name(a.params.begin(), a.params.end());
  REQUIRE(by_name.size() == b.params.size());
  auto same = [](const Tensor& x, const Tensor& y) {
    return x.shape() == y.shape() && std::memcmp(x.f32(), y.f32(), static_cast<std::size_t>(x.numel()) * sizeof(float)) == 0;
  };
  for (const auto& [name, v] : b.params) {
    INFO(name);
    REQUIRE(by_name.count(name));
    CHECK(same(by_name.at(name), v));
  }
  REQUIRE(a.optimizer.params.size() == b.optimizer.params.size());
  for (const auto& [name, ps] : b.optimizer.params)
    for (const auto& [k, v] : ps.tensors) {
      INFO(name << " " << k);
      CHECK(same(a.optimizer.tensor(name, k), v));
    }
  // The 3D state into one device, one device's into tp2 x pp2 interleaved: both continue as the
  // uninterrupted runs, bit for bit.
  Trainer resumed(one);
  resumed.restore_training_state(a, "3D state");
  TensorPipelineTrainer back(interleaved);
  back.restore_training_state(b, "single state");
  for (int s = 3; s < 6; ++s) {
    const double want = single.train_step(s).loss;
    CHECK(t.train_step(s).loss == want);
    CHECK(resumed.train_step(s).loss == want);
    CHECK(back.train_step(s).loss == want);
  }
  TrainingState bad = b;
  bad.params[0].second = Tensor::zeros({3});
  CHECK_THROWS_AS(back.restore_training_state(bad, "bad state"), Error);
}
