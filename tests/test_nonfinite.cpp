// Non-finite numbers: weights holding NaN or Inf are refused when loaded, and train.on_nonfinite stops
// the run (naming the step and the parameter) or skips the step's update, on the single-device trainer,
// a pipeline of actors and data-parallel replicas alike.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"
#include "models/trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/io/safetensors.h"
#include "runtime/nonfinite.h"
#include "temp_dir.h"
#include "tests/error_of.h"
#include "tests/troupe_command.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {
// optim.lr = 1e308: step 1's update overflows the float weights to Inf, so step 2's loss is NaN.
RunConfig diverging(std::vector<std::string> more = {}) {
  std::vector<std::string> sets = {"model.n_layer=2",    "model.n_embd=16",   "model.n_head=2",
                                   "model.block_size=8", "train.batch_size=4", "train.threads=1",
                                   "optim.lr=1e308",     "train.grad_clip=0"};
  sets.insert(sets.end(), more.begin(), more.end());
  return load_config(std::nullopt, sets);
}

std::vector<std::vector<float>> values_of(const std::vector<Param*>& params) {
  std::vector<std::vector<float>> out;
  for (const Param* p : params) out.emplace_back(p->value.span_f32().begin(), p->value.span_f32().end());
  return out;
}

bool same_bits(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0)
      return false;
  return true;
}

// Runs steps 0, 1, 2 on `trainer` under train.on_nonfinite = stop: step 2 (the second) must throw.
template <class T>
void check_stop(T& trainer) {
  CHECK_FALSE(trainer.train_step(0).skipped);
  try {
    trainer.train_step(1);
    FAIL("a NaN loss did not stop the run");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kNumeric);
    CHECK_FALSE(e.is_bad_input());
    CHECK_THAT(e.what(), Contains("step 2: loss nan") && Contains("gradient of 'transformer.wte.weight' holds NaN or Inf") &&
                             Contains("train.on_nonfinite = stop"));
  }
}

// Under skip: step 2 and 3 are skipped and reported, and leave every weight as step 1 left it.
template <class T>
void check_skip(T& trainer) {
  CHECK_FALSE(trainer.train_step(0).skipped);
  const auto after_first = values_of(trainer.params_in_order());
  for (std::int64_t step : {1, 2}) {
    const StepStats s = trainer.train_step(step);
    CHECK(s.skipped);
    CHECK_THAT(s.nonfinite, Contains("step " + std::to_string(step + 1) + ": loss nan"));
  }
  CHECK(same_bits(values_of(trainer.params_in_order()), after_first));
}

struct SingleDevice {
  Trainer t;
  explicit SingleDevice(const RunConfig& c) : t(c) {}
  StepStats train_step(std::int64_t s) { return t.train_step(s); }
  std::vector<Param*> params_in_order() { return t.model().params().all(); }
};
}  // namespace

TEST_CASE("first_nonfinite finds the first NaN or Inf, and only reads", "[nonfinite]") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(first_nonfinite(std::vector<float>{0.f, -1.f, 3e38f}).has_value());
  CHECK(first_nonfinite(std::vector<float>{0.f, -inf, nan}) == 1);
  CHECK(first_nonfinite(std::vector<float>{nan}) == 0);
  CHECK(describe_nonfinite(4, 1.0, "w") == "step 5: gradient of 'w' holds NaN or Inf");
  CHECK(describe_nonfinite(0, std::nan(""), "") == "step 1: loss nan");
}

TEST_CASE("weights holding NaN or Inf are refused, naming the tensor and the element", "[nonfinite][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  const RunConfig config = diverging();
  Trainer reference(config);
  reference.save_weights(path);
  std::map<std::string, std::string> meta;
  NamedTensors tensors = load_safetensors(path, &meta);
  for (auto& [name, t] : tensors)
    if (name == "transformer.h.1.mlp.c_fc.weight") t.f32()[37] = std::numeric_limits<float>::quiet_NaN();
  save_safetensors(path, tensors, meta);

  Trainer trainer(config);
  const auto before = values_of(trainer.model().params().all());
  try {
    trainer.load_weights(path);
    FAIL("NaN weights were loaded");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kInput);  // bad input: exit status 2
    CHECK_THAT(e.what(), Contains("tensor 'transformer.h.1.mlp.c_fc.weight' holds nan at element 37"));
  }
  CHECK(same_bits(values_of(trainer.model().params().all()), before));  // nothing changed
}

TEST_CASE("train.on_nonfinite = stop ends the run at the step, naming the parameter", "[nonfinite]") {
  SECTION("single device") {
    SingleDevice t(diverging());
    check_stop(t);
  }
  SECTION("pipeline of actors, 2 stages x 2 micro-batches") {
    const RunConfig c = diverging({"parallel.pipeline=2", "parallel.microbatches=2"});
    ActorPipeline t(c, pipeline_options(c, 0));
    check_stop(t);
  }
  SECTION("data parallel, 2 replicas, ZeRO-1") {
    DataParallelTrainer t(diverging({"parallel.data=2", "parallel.zero=1"}));
    check_stop(t);
  }
}

TEST_CASE("train.on_nonfinite = skip leaves the weights as they were and goes on", "[nonfinite]") {
  SECTION("single device") {
    SingleDevice t(diverging({"train.on_nonfinite=skip"}));
    check_skip(t);
  }
  SECTION("pipeline of actors, interleaved") {
    const RunConfig c = diverging({"train.on_nonfinite=skip", "parallel.pipeline=2", "parallel.microbatches=2",
                                   "parallel.schedule=interleaved", "parallel.virtual_stages=2"});
    ActorPipeline t(c, pipeline_options(c, 0));
    check_skip(t);
  }
  SECTION("data parallel, 2 replicas of a 2-stage pipeline") {
    DataParallelTrainer t(diverging({"train.on_nonfinite=skip", "parallel.data=2", "parallel.pipeline=2"}));
    check_skip(t);
  }
  CHECK_THAT(config_error([] { load_config(std::nullopt, {"train.on_nonfinite=skip", "parallel.data=2",
                                                               "parallel.gradient_exchange=ps"}); }),
             Contains("train.on_nonfinite = skip with parallel.gradient_exchange = ps"));
}

TEST_CASE("a finite run is bitwise the same with either setting: the check changes no number", "[nonfinite]") {
  Trainer stop(load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=8",
                                          "train.batch_size=4", "train.threads=1"}));
  Trainer skip(load_config(std::nullopt, {"model.n_layer=1", "model.n_embd=16", "model.n_head=2", "model.block_size=8",
                                          "train.batch_size=4", "train.threads=1", "train.on_nonfinite=skip"}));
  for (std::int64_t s = 0; s < 3; ++s) CHECK(stop.train_step(s).loss == skip.train_step(s).loss);
  CHECK(same_bits(values_of(stop.model().params().all()), values_of(skip.model().params().all())));
}

TEST_CASE("troupe train: optim.lr = 1e308 stops with exit 1 and writes no weights, NaN --init-from is exit 2",
          "[nonfinite][cli]") {
  TempDir dir;
  const std::string small = "train --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 "
                            "--set model.block_size=16 --set train.batch_size=4 --set train.eval_batches=1 ";
  // Was: exit 0, NaN losses, NaN weights saved.
  TroupeRun r = run_troupe(dir.path, small + "--steps 4 --set optim.lr=1e308 --save " + dir.file("w.st"));
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("troupe: error: step 2: loss nan; gradient of 'transformer.wte.weight'"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));
  r = run_troupe(dir.path, small + "--steps 4 --set optim.lr=1e308 --set train.on_nonfinite=skip");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Contains("3 steps skipped for a non-finite loss or gradient"));

  REQUIRE(run_troupe(dir.path, small + "--steps 0 --save " + dir.file("init.st")).code == 0);
  std::map<std::string, std::string> meta;
  NamedTensors tensors = load_safetensors(dir.file("init.st"), &meta);
  tensors.front().second.f32()[3] = std::numeric_limits<float>::infinity();
  save_safetensors(dir.file("init.st"), tensors, meta);
  r = run_troupe(dir.path, small + "--steps 1 --init-from " + dir.file("init.st") + " --save " + dir.file("w.st"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("tensor '" + tensors.front().first + "' holds inf at element 3"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));
}
