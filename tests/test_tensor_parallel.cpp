// Owns the tensor-parallel model tests: parameter slices, the plan's per-shard bytes, equality with the single device (GPT tp 2 and 4, MLP tp 2), layout-independent weight files, and config errors.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <map>
#include <mutex>

#include "actors/runner.h"
#include "actors/session.h"
#include "actors/tensor_parallel.h"
#include "models/model.h"
#include "models/trainer.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/config/config_loader.h"
#include "runtime/io/safetensors.h"
#include "runtime/plan/topology.h"
#include "runtime/supervision/supervision_tree.h"
#include "tests/error_of.h"
#include "tests/rank_threads.h"
#include "tests/small_gpt_runs.h"
#include "tests/temp_dir.h"
#include "tests/training_runs.h"

using namespace troupe;
using namespace troupe::testing;  // small_gpt_runs.h
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> small_mlp() {
  return {"model.kind=mlp", "model.mlp_hidden=64,32", "train.batch_size=16", "train.threads=1",
          "data.order=sequential", "train.deterministic=false"};
}

// `one` laid out as 2 data-parallel replicas of 2 tensor shards each, validated.
RunConfig dp2_tp2(RunConfig one) {
  one.parallel.data = 2;
  one.parallel.tensor = 2;
  validate(one);
  return one;
}

// `steps` steps of `config` as parallel.tensor shards, each a Trainer on its own thread over the
// in-process transport; shard 0's losses and the whole (gathered) weights. Every shard must report
// the same losses.
TrainingRun tensor_parallel(const RunConfig& config, int steps, const std::function<void(Trainer&)>& after = {}) {
  const int tp = config.parallel.tensor;
  testing::RankGroup group(TransportKind::inproc, tp, 30s);
  std::vector<TrainingRun> runs(static_cast<std::size_t>(tp));
  auto errors = group.run([&](comm::Transport& t) {
    const comm::TensorGroup g{&t};
    Trainer trainer(config, g);
    TrainingRun& r = runs[static_cast<std::size_t>(t.rank())];
    for (int s = 0; s < steps; ++s) r.losses.push_back(trainer.train_step(s).loss);
    for (Param* p : trainer.model().params().all()) r.weights[p->name] = comm::gather_whole(g, *p).to_vector();
    if (after) after(trainer);
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (int r = 1; r < tp; ++r) REQUIRE(runs[static_cast<std::size_t>(r)].losses == runs[0].losses);
  return runs[0];
}

}  // namespace

TEST_CASE("tensor split: qkv shards hold whole heads of q, k and v, and placing every shard rebuilds the whole",
          "[tensor_parallel]") {
  // [3C, C] with C = 4 (rows q0..q3 k0..k3 v0..v3), 2 shards: shard 1 holds rows q2 q3 k2 k3 v2 v3.
  Tensor whole = Tensor::empty({12, 2});
  for (std::int64_t i = 0; i < 24; ++i) whole.f32()[i] = static_cast<float>(i);
  const TensorSplit s1{0, 3, 2, 1};
  const Tensor shard = shard_of(whole, s1);
  REQUIRE(shard.shape() == Shape{6, 2});
  CHECK(shard.to_vector() == std::vector<float>{4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23});
  // Row-parallel (by columns): shard 0 of [2, 4] by dim 1.
  Tensor w = Tensor::from_f32({2, 4}, std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(shard_of(w, TensorSplit{1, 1, 2, 0}).to_vector() == std::vector<float>{0, 1, 4, 5});
  Tensor rebuilt = Tensor::zeros({12, 2});
  for (int t = 0; t < 2; ++t) place_shard(rebuilt, shard_of(whole, TensorSplit{0, 3, 2, t}), TensorSplit{0, 3, 2, t});
  CHECK(rebuilt.to_vector() == whole.to_vector());
}

TEST_CASE("tensor plan: the tensor axis is parallel.tensor wide and each shard holds 1/T of the split tensors",
          "[tensor_parallel]") {
  for (int tp : {2, 4}) {
    INFO("T = " << tp);
    const RunConfig config = load_config(std::nullopt, with(small_gpt(false), {"parallel.tensor=" + std::to_string(tp)}));
    const plan::Topology topo = plan_run(config);
    REQUIRE(topo.size(plan::Axis::tensor) == tp);
    REQUIRE(topo.world_size() == tp);
    // The plan's bytes against real shards: every shard's parameters, split ones counted apart.
    std::int64_t whole_split = 0, whole_replicated = 0;
    const Model whole(make_layer_specs(config.model, 1));
    for (const Param* p : whole.params().all()) {
      const bool split = !p->name.ends_with("ln_1.weight") && !p->name.ends_with("ln_1.bias") &&
                         !p->name.ends_with("ln_2.weight") && !p->name.ends_with("ln_2.bias") &&
                         !p->name.ends_with("c_proj.bias") && p->name.find("ln_f") == std::string::npos &&
                         p->name != "transformer.wpe.weight";
      (split ? whole_split : whole_replicated) += 4 * p->value.numel();
    }
    const plan::StagePlan& stage = topo.stages.at(0);
    CHECK(stage.split_param_bytes == whole_split);
    CHECK(stage.replicated_param_bytes == whole_replicated);
    testing::RankGroup group(TransportKind::inproc, tp, 5s);
    std::vector<std::int64_t> split_bytes(static_cast<std::size_t>(tp)), replicated_bytes(static_cast<std::size_t>(tp));
    auto errors = group.run([&](comm::Transport& t) {
      Model shard(make_layer_specs(config.model, 1, comm::TensorGroup{&t}));
      for (const Param* p : shard.params().all())
        (p->split.split() ? split_bytes : replicated_bytes)[static_cast<std::size_t>(t.rank())] += 4 * p->value.numel();
    });
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
    for (int r = 0; r < tp; ++r) {
      CHECK(split_bytes[static_cast<std::size_t>(r)] * tp == whole_split);
      CHECK(replicated_bytes[static_cast<std::size_t>(r)] == whole_replicated);
      CHECK(split_bytes[static_cast<std::size_t>(r)] + replicated_bytes[static_cast<std::size_t>(r)] ==
            stage.shard_param_bytes(tp));
    }
    const std::string text = describe_plan(config);
    CHECK_THAT(text, Contains(fmt::format("topology: data 1 x pipe 1 x tensor {} = {} ranks", tp, tp)));
    CHECK_THAT(text, Contains(fmt::format("stage 0 x {} shards: {} bytes each", tp, stage.shard_param_bytes(tp))));
  }
}

TEST_CASE("tensor parallel = single device: GPT tp 2 and 4, MLP tp 2, losses within 1e-5 over 20 steps",
          "[tensor_parallel]") {
  const int steps = 20;
  const RunConfig gpt = load_config(std::nullopt, small_gpt(false));
  const TrainingRun reference = single_device(gpt, steps);
  for (int tp : {2, 4}) {
    RunConfig c = gpt;
    c.parallel.tensor = tp;
    const TrainingRun run = tensor_parallel(c, steps);
    check_losses_close(run.losses, reference.losses, 1e-5, "gpt tp=" + std::to_string(tp));
    CHECK(run.losses.back() < run.losses.front());  // it trains
    // The same parameters by name, whole shapes.
    REQUIRE(run.weights.size() == reference.weights.size());
    for (const auto& [name, v] : reference.weights) REQUIRE(run.weights.at(name).size() == v.size());
  }
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping the MLP");
    return;
  }
  const RunConfig mlp = load_config(std::nullopt, small_mlp());
  const TrainingRun mlp_ref = single_device(mlp, steps);
  RunConfig c = mlp;
  c.parallel.tensor = 2;
  check_losses_close(tensor_parallel(c, steps).losses, mlp_ref.losses, 1e-5, "mlp tp=2");
}

TEST_CASE("tensor parallel = single device bitwise in deterministic mode: GPT tp 2 and 4, MLP tp 2, 20 steps",
          "[tensor_parallel][deterministic]") {
  const int steps = 20;
  const RunConfig gpt = load_config(std::nullopt, with(small_gpt(true), {"train.grad_clip=1.0"}));
  const TrainingRun reference = single_device(gpt, steps);
  for (int tp : {2, 4}) {
    INFO("gpt T = " << tp);
    RunConfig c = gpt;
    c.parallel.tensor = tp;
    require_bitwise(tensor_parallel(c, steps), reference);
  }
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping the MLP");
    return;
  }
  const RunConfig mlp = load_config(std::nullopt, with(small_mlp(), {"train.deterministic=true", "train.grad_clip=1.0"}));
  RunConfig c = mlp;
  c.parallel.tensor = 2;
  INFO("mlp T = 2");
  require_bitwise(tensor_parallel(c, steps), single_device(mlp, steps));
}

TEST_CASE("dp2 x tp2 = single device bitwise in deterministic mode, 20 steps", "[tensor_parallel][data_parallel][deterministic]") {
  const int steps = 20;
  const RunConfig one = load_config(std::nullopt, with(small_gpt(true), {"train.grad_clip=1.0"}));
  const TrainingRun reference = single_device(one, steps);
  TensorParallelTrainer t(dp2_tp2(one));
  for (int s = 0; s < steps; ++s) CHECK(t.train_step(s).loss == reference.losses[static_cast<std::size_t>(s)]);
  // Every shard of every replica holds its slice of the single device's final weights, bit for bit.
  for (int s = 0; s < 2; ++s)
    for (int d = 0; d < 2; ++d)
      for (Param* p : t.shard(s, d).model().params().all()) {
        INFO("shard " << s << " of replica " << d << ": " << p->name);
        const Tensor whole = Tensor::from_f32(comm::gather_shape(*p), reference.weights.at(p->name));
        const std::vector<float> want = shard_of(whole, p->split).to_vector(), got = p->value.to_vector();
        CHECK(std::memcmp(want.data(), got.data(), got.size() * sizeof(float)) == 0);
      }
}

TEST_CASE("tensor parallel weight files hold whole tensors: the single device's file, loadable into any T",
          "[tensor_parallel]") {
  TempDir dir;
  const RunConfig one = load_config(std::nullopt, small_gpt(false));
  Trainer single(one);
  const std::string single_file = dir.file("single.safetensors"), tp_file = dir.file("tp2.safetensors");
  single.save_weights(single_file);
  RunConfig two = one;
  two.parallel.tensor = 2;
  tensor_parallel(two, 0, [&](Trainer& t) { t.save_weights(tp_file); });
  // Same tensors, same bits (the initial weights of any T are the single device's).
  std::map<std::string, std::vector<float>> a, b;
  for (auto& [name, t] : load_safetensors(single_file)) a[name] = t.to_vector();
  for (auto& [name, t] : load_safetensors(tp_file)) b[name] = t.to_vector();
  REQUIRE(a == b);
  // A trained tp 2 file loads into tp 4 and into the single device, and both see the same weights.
  const std::string trained = dir.file("trained.safetensors");
  tensor_parallel(two, 2, [&](Trainer& t) { t.save_weights(trained); });
  RunConfig four = one;
  four.parallel.tensor = 4;
  Trainer reloaded(one);
  reloaded.load_weights(trained);
  std::map<std::string, std::vector<float>> gathered;
  testing::RankGroup group(TransportKind::inproc, 4, 30s);
  std::mutex m;
  auto errors = group.run([&](comm::Transport& t) {
    const comm::TensorGroup g{&t};
    Trainer shard(four, g);
    shard.load_weights(trained);
    for (Param* p : shard.model().params().all()) {
      auto v = comm::gather_whole(g, *p).to_vector();
      std::lock_guard lock(m);
      gathered[p->name] = v;
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (Param* p : reloaded.model().params().all()) REQUIRE(gathered.at(p->name) == p->value.to_vector());
}

TEST_CASE("tensor parallel config errors say what would divide", "[tensor_parallel]") {
  auto err = [](std::vector<std::string> sets) { return config_error([&] { load_config(std::nullopt, sets); }); };
  CHECK_THAT(err(with(small_gpt(false), {"parallel.tensor=3"})),
             Contains("parallel.tensor = 3 does not divide model.n_head = 4: each shard computes whole attention heads; "
                      "use a parallel.tensor that divides it (2, 4)"));
  CHECK_THAT(err(with(small_gpt(false), {"model.n_head=8", "model.n_embd=64", "model.vocab_size=250", "parallel.tensor=4"})),
             Contains("does not divide model.vocab_size = 250"));
  CHECK_THAT(err({"model.kind=mlp", "model.mlp_hidden=30,20", "parallel.tensor=4"}),
             Contains("does not divide model.mlp_hidden[0]"));
  CHECK_THAT(err({"model.kind=lstm", "parallel.tensor=2"}), Contains("splits the gpt's and the mlp's layers only"));
  CHECK_THAT(err(with(small_gpt(false), {"parallel.tensor=2", "train.device=cuda"})), Contains("on CUDA"));
}

TEST_CASE("tensor parallel from Session (the CLI's runner): tp 2 steps and evaluates as the single device",
          "[tensor_parallel]") {
  const std::vector<std::string> base = with(small_gpt(false), {"train.steps=3"});
  auto single = Session::create(load_config(std::nullopt, base));
  auto tp = Session::create(load_config(std::nullopt, with(base, {"parallel.tensor=2"})));
  REQUIRE(single);
  REQUIRE(tp);
  const auto [ea, eb] = check_sessions_close(**single, **tp, 3);
  CHECK(eb.accuracy == Approx(ea.accuracy).margin(1e-6));
  // Shards as processes do not run in pipelines or with ZeRO-1 yet: refused, saying what to set.
  CHECK_THAT(config_error([&] {
               load_config(std::nullopt, with(base, {"parallel.tensor=2", "parallel.data=2", "parallel.zero=1",
                                                     "comm.transport=tcp"}));
             }),
             Contains("tensor shards as processes run without pipelines, micro-batches, ZeRO-1 or gradient "
                      "compression so far"));
}

TEST_CASE("tensor shards are actors under their stage in the supervision tree, named by their place",
          "[tensor_parallel][supervision]") {
  const RunConfig config = load_config(std::nullopt, with(small_gpt(false), {"parallel.tensor=2"}));
  const supervision::Node job = supervision::make_supervision_tree(plan_run(config));
  const supervision::Node* shard = supervision::find_node(job, "replica 0/stage 0/tensor 1");
  REQUIRE(shard);
  CHECK(shard->kind == supervision::NodeKind::tensor_shard);
  CHECK(shard->rank == 1);
  CHECK_THAT(describe_plan(config), Contains("      replica 0/stage 0/tensor 0 (rank 0)\n"
                                             "      replica 0/stage 0/tensor 1 (rank 1)\n"));
  // dp x tp: the shards average their own gradients; there is no exchange (or optimizer-state) actor to list.
  const RunConfig dp_tp = load_config(std::nullopt, with(small_gpt(false), {"parallel.tensor=2", "parallel.data=2"}));
  const std::string plan_text = describe_plan(dp_tp);
  CHECK_THAT(plan_text, !Contains("gradient exchange") && !Contains("optimizer state (rank"));
  CHECK_THAT(plan_text, Contains("  data:   [0 2] [1 3]  gradients averaged by each tensor shard"));
  CHECK_THAT(plan_text, Contains("    replica 1/stage 0 (rank 2)\n"
                                 "      replica 1/stage 0/tensor 0 (rank 2)\n"
                                 "      replica 1/stage 0/tensor 1 (rank 3)\n"));
  // T = 1 has no tensor-shard nodes.
  const RunConfig one = load_config(std::nullopt, small_gpt(false));
  CHECK_FALSE(supervision::find_node(supervision::make_supervision_tree(plan_run(one)), "replica 0/stage 0/tensor 0"));
}

TEST_CASE("a tensor-shard actor that dies is reported by the job's supervisor with its place, its peer freed at once",
          "[tensor_parallel][supervision]") {
  // No restarts: the death ends the step (tests/test_tensor_restart.cpp restarts it).
  const RunConfig config = load_config(
      std::nullopt, with(small_gpt(false), {"parallel.tensor=2", "comm.timeout_s=60", "fault.max_restarts=0"}));
  TensorParallelTrainer t(config);
  const double first = t.train_step(0).loss;
  CHECK(std::isfinite(first));
  t.kill_shard(1);
  const auto start = std::chrono::steady_clock::now();
  try {
    t.train_step(1);
    FAIL("the step should have failed");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(e.what(), Catch::StartsWith("tensor-shard actor replica 0/stage 0/tensor 1 (rank 1: data 0, pipe 0, "
                                           "tensor 1; process 0 on localhost") &&
                             Contains("died in step 1: exit_reason(kill)"));
  }
  // Shard 0 learnt of it from its broken group, not after comm.timeout_s.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
}

TEST_CASE("a tensor shard's own failure is the step's error, with its kind and text", "[tensor_parallel]") {
  const RunConfig config = load_config(std::nullopt, with(small_gpt(false), {"parallel.tensor=2", "comm.timeout_s=60"}));
  TensorParallelTrainer t(config);
  // A file that does not exist: each shard fails on its own (before any collective) and answers with
  // its troupe::Error, which comes back whole, not as an actor failure.
  try {
    t.load_weights("/nonexistent/weights.safetensors");
    FAIL("loading should have failed");
  } catch (const Error& e) {
    CHECK(e.kind() != ErrorKind::kInternal);
    CHECK_THAT(e.what(), Contains("/nonexistent/weights.safetensors"));
  }
}

TEST_CASE("dp2 x tp2 = single device: losses within 1e-5 over 20 steps, replicas equal, from Session too",
          "[tensor_parallel][data_parallel]") {
  const int steps = 20;
  const RunConfig one = load_config(std::nullopt, small_gpt(false));
  const TrainingRun reference = single_device(one, steps);
  TensorParallelTrainer t(dp2_tp2(one));
  REQUIRE(t.replicas() == 2);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) losses.push_back(t.train_step(s).loss);
  check_losses_close(losses, reference.losses, 1e-5, "gpt dp2 x tp2");
  CHECK(losses.back() < losses.front());
  // Both replicas averaged the same gradients: shard t of each holds the same bits.
  for (int s = 0; s < 2; ++s) {
    const std::vector<Param*> a = t.shard(s, 0).model().params().all(), b = t.shard(s, 1).model().params().all();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a[i]->value.to_vector() == b[i]->value.to_vector());
  }
  // The runner takes the same path (CLI and Session).
  auto session = Session::create(load_config(std::nullopt, with(small_gpt(false), {"parallel.data=2", "parallel.tensor=2"})));
  REQUIRE(session);
  auto first = (*session)->step();
  REQUIRE(first);
  CHECK(first->loss == Approx(reference.losses[0]).epsilon(1e-5));
}

TEST_CASE("a tensor-parallel training state is whole tensors by name: it equals the single device's after the same "
          "steps and restores into T = 1",
          "[tensor_parallel][resume]") {
  const RunConfig one = load_config(std::nullopt, small_gpt(false));
  RunConfig two = one;
  two.parallel.tensor = 2;
  TensorParallelTrainer t(two);
  Trainer single(one);
  train_both(t, single, 3);
  const TrainingState a = t.training_state(3), b = single.training_state(3);
  REQUIRE(a.params.size() == b.params.size());
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    REQUIRE(a.params[i].first == b.params[i].first);
    REQUIRE(a.params[i].second.shape() == b.params[i].second.shape());
  }
  REQUIRE(a.optimizer.params.size() == b.optimizer.params.size());
  for (const auto& [name, ps] : b.optimizer.params)
    for (const auto& [k, v] : ps.tensors) REQUIRE(a.optimizer.tensor(name, k).shape() == v.shape());
  // T = 2's state into one device, one device's into T = 2: both continue as the uninterrupted runs.
  Trainer resumed(one);
  resumed.restore_training_state(a, "tp2 state");
  TensorParallelTrainer back(two);
  back.restore_training_state(b, "single state");
  for (int s = 3; s < 6; ++s) {
    const double want = single.train_step(s).loss, got_t = t.train_step(s).loss;
    CHECK(std::abs(resumed.train_step(s).loss - got_t) / got_t < 1e-5);
    CHECK(std::abs(back.train_step(s).loss - want) / want < 1e-5);
  }
  // A state of another model is refused, naming the tensor.
  TrainingState bad = b;
  bad.params[0].second = Tensor::zeros({3});
  CHECK_THROWS_AS(back.restore_training_state(bad, "bad state"), Error);
}
