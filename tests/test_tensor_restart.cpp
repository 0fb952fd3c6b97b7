// One-for-one restarts of tensor-shard actors (fault.max_restarts) driven by fault.inject: a thrown or
// killed shard — a tensor-shard actor (tp, tp x dp) or the stage actor of one shard of a pipeline stage
// (tp x pp, tp x pp x dp) — is respawned, every shard rewinds to its step-boundary copy and the step is
// re-run by all: losses and the weights file bitwise the clean run's, one restart reported. Past the
// intensity the run stops with the escalation that names the shard and its place.
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <iterator>

#include "actors/runner.h"
#include "actors/tensor_parallel.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "tests/temp_dir.h"

using namespace troupe;
using Catch::Contains;

namespace {
std::vector<std::string> gpt(const std::vector<std::string>& layout, const std::string& faults) {
  std::vector<std::string> sets = {"model.n_layer=2",         "model.n_embd=32",    "model.n_head=2",
                                   "model.block_size=16",     "train.batch_size=4", "train.threads=2",
                                   "train.deterministic=true", "train.steps=5",     "train.eval_every=0"};
  sets.insert(sets.end(), layout.begin(), layout.end());
  if (!faults.empty()) sets.push_back("fault.inject=" + faults);
  return sets;
}

struct Run {
  std::vector<double> losses;
  std::vector<char> weights;  // the saved file's bytes (whole tensors, gathered)
  std::vector<supervision::Restart> restarts;
};

Run run(const std::vector<std::string>& layout, const std::string& faults) {
  const RunConfig config = load_config(std::nullopt, gpt(layout, faults));
  std::unique_ptr<Job> job = launch(config);
  Run r;
  for (std::int64_t s = 0; s < config.train.steps; ++s) r.losses.push_back(job->train_step(s).loss);
  TempDir dir;
  job->save_weights(dir.file("w.safetensors"));
  std::ifstream in(dir.file("w.safetensors"), std::ios::binary);
  r.weights.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  r.restarts = job->restarts();
  return r;
}

void require_restarted_bitwise(const std::vector<std::string>& layout, const std::vector<std::string>& plans,
                               const char* child) {
  const Run clean = run(layout, "");
  CHECK(clean.restarts.empty());
  for (const std::string& plan : plans) {
    INFO(plan);
    const Run faulty = run(layout, plan);
    CHECK(faulty.losses == clean.losses);
    CHECK(faulty.weights == clean.weights);
    REQUIRE(faulty.restarts.size() == 1);
    CHECK_THAT(faulty.restarts[0].child, Contains(child));
    CHECK((faulty.restarts[0].restarted_s >= 0.0 && faulty.restarts[0].recovery_s >= faulty.restarts[0].restarted_s));
  }
}
}  // namespace

TEST_CASE("tp2: a thrown or killed tensor-shard actor is restarted and the run is bitwise the clean one",
          "[restart][tensor]") {
  require_restarted_bitwise({"parallel.tensor=2"}, {"throw shard 1 at step 2", "kill shard 1 at step 1"},
                            "replica 0/stage 0/tensor 1");
  require_restarted_bitwise({"parallel.tensor=2"}, {"kill shard 0 at step 3"}, "replica 0/stage 0/tensor 0");
}

TEST_CASE("tp2: a shard actor killed between steps is restarted by the next step, which it re-runs", "[restart][tensor]") {
  const RunConfig config = load_config(std::nullopt, gpt({"parallel.tensor=2"}, ""));
  const Run clean = run({"parallel.tensor=2"}, "");
  TensorParallelTrainer t(config);
  std::vector<double> losses;
  for (std::int64_t s = 0; s < config.train.steps; ++s) {
    if (s == 2) t.kill_shard(0);
    losses.push_back(t.train_step(s).loss);
  }
  CHECK(losses == clean.losses);
  REQUIRE(t.restarts().size() == 1);
  CHECK(t.restarts()[0].child == "replica 0/stage 0/tensor 0");
  CHECK(t.restarts()[0].step == 2);
  CHECK_THAT(t.restarts()[0].cause, Contains("kill"));
}

TEST_CASE("tp2 x pp2: a thrown or killed shard of a stage is restarted and every pipeline re-runs the step",
          "[restart][tensor]") {
  const std::vector<std::string> layout = {"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"};
  require_restarted_bitwise(layout, {"throw shard 1 of stage 1 at step 2", "kill shard 1 of stage 0 at step 1"},
                            "replica 0/stage ");
  require_restarted_bitwise(layout, {"kill stage 1 at step 3"}, "replica 0/stage 1/tensor 0");
}

TEST_CASE("tp2 x dp2 and tp2 x pp2 x dp2: a shard of replica 1 is restarted, bitwise", "[restart][tensor]") {
  require_restarted_bitwise({"parallel.tensor=2", "parallel.data=2"}, {"throw shard 1 at step 1 on replica 1"},
                            "replica 1/stage 0/tensor 1");
  require_restarted_bitwise({"parallel.tensor=2", "parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2"},
                            {"kill shard 1 of stage 1 at step 2 on replica 1"}, "replica 1/stage 1/tensor 1");
}

TEST_CASE("past fault.max_restarts a tensor shard's death escalates with its place and each restart",
          "[restart][tensor]") {
  for (const std::vector<std::string>& layout :
       {std::vector<std::string>{"parallel.tensor=2"},
        std::vector<std::string>{"parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"}}) {
    std::vector<std::string> sets = layout;
    sets.push_back("fault.max_restarts=1");
    const bool pipelines = layout.size() > 1;
    const RunConfig config = load_config(
        std::nullopt, gpt(sets, pipelines ? "throw shard 1 of stage 1 at step 1; throw shard 1 of stage 1 at step 2"
                                          : "throw shard 1 at step 1; throw shard 1 at step 2"));
    std::unique_ptr<Job> job = launch(config);
    job->train_step(0);
    job->train_step(1);  // restarted
    const std::string child = pipelines ? "replica 0/stage 1/tensor 1" : "replica 0/stage 0/tensor 1";
    try {
      job->train_step(2);
      FAIL("the second fault is past the intensity");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Contains(child + " (rank ") && Contains("died in step 2: ") &&
                               Contains("injected fault") &&
                               Contains("the supervisor gives up: that is more than fault.max_restarts = 1 restarts "
                                        "within fault.restart_window_s = 60 s; the 1 restart before:\n  " + child +
                                        " in step 1: "));
    }
    INFO(job->report());
    CHECK(job->restarts().size() == 1);
  }
}

TEST_CASE("fault.inject names tensor shards that exist, and only where shard actors are", "[restart][tensor][config]") {
  auto error_of = [](const std::vector<std::string>& layout, const std::string& faults) {
    try {
      load_config(std::nullopt, gpt(layout, faults));
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kConfig);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of({"parallel.tensor=2"}, "kill shard 2 at step 1"),
             Contains("fault.inject: clause 'kill shard 2 at step 1': shard 2 does not exist, parallel.tensor = 2 "
                      "(shards 0 to 1)"));
  CHECK_THAT(error_of({"parallel.tensor=2"}, "kill stage 0 at step 1"),
             Contains("this tensor-parallel run has no stage or optimizer-state actors") &&
                 Contains("name a shard ('kill shard 0 at step 1')"));
  CHECK_THAT(error_of({"parallel.pipeline=2"}, "throw shard 0 at step 1"),
             Contains("a shard is a tensor shard of parallel.tensor, which is 1"));
  CHECK_THAT(error_of({"parallel.tensor=2", "parallel.pipeline=2"}, "kill shard 1 of stage 2 at step 1"),
             Contains("stage 2 does not exist, parallel.pipeline = 2"));
  CHECK(error_of({"parallel.tensor=2", "parallel.pipeline=2"}, "kill shard 1 of stage 1 at step 1") == "no error");
}

TEST_CASE("tp2: a failure a re-run would meet again (a non-finite step under stop) is not restarted",
          "[restart][tensor][nonfinite]") {
  // optim.lr = 1e308: step 0's update overflows the weights, so step 1's loss is NaN.
  const RunConfig config = load_config(
      std::nullopt, {"model.n_layer=2", "model.n_embd=16", "model.n_head=2", "model.block_size=8", "train.batch_size=4",
                     "train.threads=1", "optim.lr=1e308", "train.grad_clip=0", "parallel.tensor=2",
                     "fault.max_restarts=3", "comm.timeout_s=60"});
  TensorParallelTrainer t(config);
  t.train_step(0);
  const auto start = std::chrono::steady_clock::now();
  try {
    t.train_step(1);
    FAIL("a NaN loss did not stop the run");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kNumeric);
    CHECK_THAT(e.what(), Contains("train.on_nonfinite = stop"));
  }
  CHECK(t.restarts().empty());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // not after comm.timeout_s
}
