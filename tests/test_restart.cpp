// One-for-one restarts of a pipeline replica's actors (fault.max_restarts) driven by fault.inject: a
// killed or throwing stage or optimizer-state actor is respawned, every stage rewinds to the step's
// boundary and the step is re-run — bitwise the uninterrupted run in deterministic mode. Past the
// intensity, and under data parallelism, the run stops with the supervisor's report.
#include <catch2/catch.hpp>

#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"

#include <filesystem>
#include "runtime/config/config_loader.h"
#include "runtime/supervision/fault_plan.h"
#include "midstep_schedules.h"
#include "training_runs.h"

using namespace troupe;
using Catch::Contains;

namespace {
std::vector<std::string> gpt(std::vector<std::string> more) {
  std::vector<std::string> sets = {"model.n_layer=2",      "model.n_embd=32",       "model.n_head=2",
                                   "model.block_size=16",  "train.batch_size=4",    "train.threads=2",
                                   "train.deterministic=true", "train.steps=6",     "parallel.pipeline=2",
                                   "parallel.microbatches=2"};
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}

struct Restarted {
  TrainingRun run;
  std::vector<supervision::Restart> restarts;
  std::vector<bool> skipped;
  std::vector<std::size_t> computed;  // each stage's forwards and backwards over the run (StageWorker::computed())
};

Restarted run_actors(const std::vector<std::string>& sets) {
  const RunConfig config = load_config(std::nullopt, gpt(sets));
  ActorPipeline p(config, pipeline_options(config, 0));
  Restarted r;
  for (std::int64_t s = 0; s < config.train.steps; ++s) {
    const StepStats stats = p.train_step(s);
    r.run.losses.push_back(stats.loss);
    r.skipped.push_back(stats.skipped);
  }
  for (int s = 0; s < p.driver().num_stages(); ++s) {
    for (Param* q : p.stage(s).params()) r.run.weights[q->name] = q->value.to_vector();
    r.computed.push_back(p.stage(s).computed());
  }
  r.restarts = p.restarts();
  return r;
}

// Every stage's forwards and backwards over the run.
std::size_t total_computed(const Restarted& r) {
  std::size_t n = 0;
  for (std::size_t c : r.computed) n += c;
  return n;
}
}  // namespace

TEST_CASE("a killed or throwing stage or optimizer-state actor is restarted and the run is bitwise the clean one",
          "[restart][actors]") {
  const Restarted clean = run_actors({});
  CHECK(clean.restarts.empty());
  for (const char* plan : {"kill stage 1 at step 2", "kill stage 0 at step 1", "throw stage 1 at step 3",
                           "throw stage 0 at step 0", "kill optimizer 1 at step 2", "throw optimizer 0 at step 4",
                           "throw optimizer 1 at step 1; kill stage 0 at step 1; throw stage 1 at step 5"}) {
    INFO(plan);
    const Restarted faulty = run_actors({std::string("fault.inject=") + plan});
    require_bitwise(clean.run, faulty.run);
    const std::size_t clauses = supervision::parse_fault_plan(plan).clauses.size();
    CHECK(faulty.restarts.size() == std::min<std::size_t>(clauses, 3));
    for (const auto& r : faulty.restarts) CHECK((r.restarted_s >= 0.0 && r.recovery_s >= r.restarted_s));
  }
}

TEST_CASE("restarts under interleaved and GPipe schedules with credits stay bitwise", "[restart][actors]") {
  for (const std::vector<std::string>& layout :
       {std::vector<std::string>{"parallel.schedule=interleaved", "parallel.virtual_stages=2", "parallel.microbatches=2"},
        std::vector<std::string>{"parallel.schedule=gpipe", "parallel.credits=1"}}) {
    const Restarted clean = run_actors(layout);
    std::vector<std::string> with = layout;
    with.push_back("fault.inject=throw stage 1 at step 1; kill stage 0 at step 3; throw optimizer 1 at step 4");
    const Restarted faulty = run_actors(with);
    require_bitwise(clean.run, faulty.run);
    CHECK(faulty.restarts.size() == 3);
  }
}

TEST_CASE("past fault.max_restarts the run stops with the supervisor's escalation", "[restart][actors]") {
  const RunConfig config =
      load_config(std::nullopt, gpt({"fault.max_restarts=1", "train.checkpoint_dir=" + std::string("runs/never"),
                                     "fault.inject=throw stage 1 at step 1; throw stage 1 at step 2"}));
  ActorPipeline p(config, pipeline_options(config, 0));
  p.train_step(0);
  p.train_step(1);  // restarted
  try {
    p.train_step(2);
    FAIL("the second fault is past the intensity");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("stage actor replica 0/stage 1 (rank 1: data 0, pipe 1, tensor 0; process 0 "
                                           "on localhost, cpu:0) died in step 2: stage 1: injected fault at B0") &&
                             Contains("the supervisor gives up: that is more than fault.max_restarts = 1 restarts "
                                      "within fault.restart_window_s = 60 s; the 1 restart before:\n"
                                      "  replica 0/stage 1 in step 1: stage 1: injected fault at B0") &&
                             Contains("`troupe train --resume runs/never` continues it") && Contains(">B0<"));
  }
  CHECK(p.restarts().size() == 1);
}

TEST_CASE("fault.max_restarts = 0: a dead stage ends the run as before", "[restart][actors]") {
  const RunConfig config = load_config(std::nullopt, gpt({"fault.max_restarts=0", "fault.inject=kill stage 0 at step 1"}));
  ActorPipeline p(config, pipeline_options(config, 0));
  p.train_step(0);
  // Which report comes first is a race, as before restarts existed: the kill's down message, or a
  // request to the stage that finds it gone.
  CHECK_THROWS_WITH(p.train_step(1), Contains("stage actor replica 0/stage 0 (rank 0: data 0, pipe 0, tensor 0; "
                                              "process 0 on localhost, cpu:0) died in step 1: ") &&
                                         (Contains("exit_reason(kill)") || Contains("request_receiver_down")));
}

TEST_CASE("an injected NaN is skipped or stops the run as train.on_nonfinite says", "[restart][faults][actors]") {
  const Restarted clean = run_actors({});
  const Restarted skipped = run_actors({"train.on_nonfinite=skip", "fault.inject=nan stage 0 at step 2"});
  CHECK(skipped.skipped == std::vector<bool>{false, false, true, false, false, false});
  CHECK(skipped.run.losses[2] == clean.run.losses[2]);  // the loss was finite: only the update is skipped
  CHECK(skipped.restarts.empty());
  const RunConfig config = load_config(std::nullopt, gpt({"fault.inject=nan stage 1 at step 1"}));
  ActorPipeline p(config, pipeline_options(config, 0));
  p.train_step(0);
  try {
    p.train_step(1);
    FAIL("train.on_nonfinite = stop");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kNumeric);
    // The non-finite report counts steps from 1 (its step 2 is the clause's step 1, counted from 0).
    CHECK_THAT(e.what(), Catch::StartsWith("step 2: gradient of 'transformer.h.1.ln_1.weight' holds NaN or Inf"));
  }
}

namespace {
struct RestartedReplicas {
  Restarted replica0;
  std::vector<TrainingRun> others;  // replicas 1.. (each must equal replica 0: no half-applied step)
  std::size_t computed = 0;         // every replica's stages' forwards and backwards over the run
};

RestartedReplicas run_replicas(const RunConfig& config) {
  DataParallelTrainer t(config);
  RestartedReplicas out;
  for (std::int64_t s = 0; s < config.train.steps; ++s) {
    const StepStats stats = t.train_step(s);
    out.replica0.run.losses.push_back(stats.loss);
  }
  for (int r = 0; r < t.replicas(); ++r) {
    TrainingRun weights;
    for (int s = 0; s < t.replica(r).num_stages(); ++s) {
      for (Param* q : t.replica(r).stage(s).params()) weights.weights[q->name] = q->value.to_vector();
      out.computed += t.replica(r).stage(s).computed();
    }
    if (r == 0) out.replica0.run.weights = std::move(weights.weights);
    else out.others.push_back(std::move(weights));
    for (const auto& restart : t.actor_replica(r).restarts()) out.replica0.restarts.push_back(restart);
  }
  return out;
}

RestartedReplicas run_replicas(const std::vector<std::string>& sets) {
  return run_replicas(load_config(std::nullopt, gpt(sets)));
}

void require_replicas_equal(const RestartedReplicas& r) {
  for (const TrainingRun& other : r.others) {
    TrainingRun same = other;
    same.losses = r.replica0.run.losses;
    require_bitwise(r.replica0.run, same);
  }
}
}  // namespace

TEST_CASE("data parallel replicas: a dead actor on one replica is restarted, every replica re-runs the step, bitwise",
          "[restart][actors][data]") {
  for (const char* exchange : {"ring", "alltoall"}) {
    const std::vector<std::string> layout = {"parallel.data=2", "train.batch_size=8", "comm.timeout_s=30",
                                             std::string("parallel.gradient_exchange=") + exchange};
    const RestartedReplicas clean = run_replicas(layout);
    CHECK(clean.replica0.restarts.empty());
    require_replicas_equal(clean);
    // Replica 0 and replica 1; in the forward/backward pass (the exchange of the step waits for the dead
    // stage's buckets) and in the update (the other replica may have applied the step already).
    for (const char* plan : {"kill stage 1 at step 2", "kill stage 0 at step 1 on replica 1",
                             "throw stage 1 at step 3 on replica 1", "throw stage 0 at step 0",
                             "kill optimizer 1 at step 2 on replica 1", "throw optimizer 0 at step 4 on replica 1",
                             "throw optimizer 1 at step 1"}) {
      INFO(exchange << ": " << plan);
      std::vector<std::string> with = layout;
      with.push_back(std::string("fault.inject=") + plan);
      const RestartedReplicas faulty = run_replicas(with);
      require_bitwise(clean.replica0.run, faulty.replica0.run);
      require_replicas_equal(faulty);
      CHECK(faulty.replica0.restarts.size() == 1);
    }
  }
}

TEST_CASE("data parallel replicas with ZeRO-1: restarts re-run the sharded update on every replica, bitwise",
          "[restart][actors][data]") {
  const std::vector<std::string> layout = {"parallel.data=2", "train.batch_size=8", "parallel.zero=1",
                                           "comm.timeout_s=30"};
  const RestartedReplicas clean = run_replicas(layout);
  for (const char* plan : {"throw optimizer 1 at step 2 on replica 1", "kill stage 0 at step 1",
                           "kill stage 1 at step 3 on replica 1"}) {
    INFO(plan);
    std::vector<std::string> with = layout;
    with.push_back(std::string("fault.inject=") + plan);
    const RestartedReplicas faulty = run_replicas(with);
    require_bitwise(clean.replica0.run, faulty.replica0.run);
    CHECK(faulty.replica0.restarts.size() == 1);
  }
}

TEST_CASE("faults in a re-run, and on two replicas in one step, are restarted: bitwise",
          "[restart][actors][data]") {
  const Restarted clean = run_actors({});
  // The second clause for the same actor and step fires in the step's re-run.
  const Restarted twice = run_actors({"fault.inject=throw stage 1 at step 2; throw stage 1 at step 2"});
  require_bitwise(clean.run, twice.run);
  CHECK(twice.restarts.size() == 2);
  const std::vector<std::string> dp = {"parallel.data=2", "train.batch_size=8", "comm.timeout_s=30"};
  const RestartedReplicas dp_clean = run_replicas(dp);
  for (const char* plan : {"throw stage 1 at step 2 on replica 1; throw stage 1 at step 2 on replica 1",
                           "kill stage 0 at step 2; kill stage 1 at step 2 on replica 1",
                           "throw stage 0 at step 1; throw optimizer 1 at step 1 on replica 1"}) {
    INFO(plan);
    std::vector<std::string> with = dp;
    with.push_back(std::string("fault.inject=") + plan);
    const RestartedReplicas faulty = run_replicas(with);
    require_bitwise(dp_clean.replica0.run, faulty.replica0.run);
    require_replicas_equal(faulty);
    CHECK(faulty.replica0.restarts.size() == 2);
  }
}

TEST_CASE("a fault in every re-run ends with the supervisor's escalation, not a hang", "[restart][actors][data]") {
  // One restart allowed, a fault in the first attempt and in the re-run of the same step: the second is
  // past the intensity, and the step (on every replica) ends with the error.
  for (const bool data : {false, true}) {
    INFO("data parallel: " << data);
    std::vector<std::string> sets = {"fault.max_restarts=1",
                                     data ? "fault.inject=kill stage 1 at step 1 on replica 1; throw stage 1 at step 1 on replica 1"
                                          : "fault.inject=kill stage 1 at step 1; throw stage 1 at step 1"};
    if (data) sets.insert(sets.end(), {"parallel.data=2", "train.batch_size=8", "comm.timeout_s=30"});
    const RunConfig config = load_config(std::nullopt, gpt(sets));
    const std::string who = data ? "replica 1/stage 1" : "replica 0/stage 1";
    auto expect_escalation = [&](auto& trainer) {
      trainer.train_step(0);
      CHECK_THROWS_WITH(trainer.train_step(1), Contains("stage actor " + who) &&
                                                   Contains("died in step 1: stage 1: injected fault at B0") &&
                                                   Contains("the supervisor gives up") &&
                                                   Contains("  " + who + " in step 1: exit_reason(kill)"));
      // After the failure every step fails at once, with the same report.
      CHECK_THROWS_WITH(trainer.train_step(2), Contains("the supervisor gives up"));
    };
    if (data) {
      DataParallelTrainer t(config);
      expect_escalation(t);
    } else {
      ActorPipeline p(config, pipeline_options(config, 0));
      expect_escalation(p);
    }
  }
}

TEST_CASE("a restarted CNN stage rewinds its batch-norm statistics too: bitwise the clean run",
          "[restart][actors][cnn]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  auto run = [](const std::string& plan) {
    std::vector<std::string> sets = {"model.kind=cnn", "model.cnn_channels=4,8", "model.cnn_blocks=1,1",
                                     "train.batch_size=8", "train.threads=2", "train.deterministic=true",
                                     "train.steps=4", "parallel.pipeline=2"};
    if (!plan.empty()) sets.push_back("fault.inject=" + plan);
    const RunConfig config = load_config(std::nullopt, sets);
    ActorPipeline p(config, pipeline_options(config, 0));
    TrainingRun r;
    for (std::int64_t s = 0; s < config.train.steps; ++s) r.losses.push_back(p.train_step(s).loss);
    for (Param* q : p.driver().weights_in_order()) r.weights[q->name] = q->value.to_vector();
    return std::make_pair(r, p.restarts().size());
  };
  const auto clean = run("");
  REQUIRE(clean.first.weights.count("blocks.1.bn2.running_mean"));
  // Stage 1 dies in its backward, after its forwards moved the running statistics.
  const auto faulty = run("throw stage 1 at step 2");
  CHECK(faulty.second == 1);
  require_bitwise(clean.first, faulty.first);
}

TEST_CASE("data-parallel CNN with synchronised batch norm: a restart re-runs the statistics' exchange too, bitwise",
          "[restart][actors][data][cnn]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  // The statistics groups are aborted with the gradient groups when a replica's actor dies; the re-run
  // must find them working again and every replica must end with the same bits.
  auto run = [](const std::string& plan) {
    std::vector<std::string> sets = {"model.kind=cnn",       "model.cnn_channels=4,8",   "model.cnn_blocks=1,1",
                                     "model.sync_batchnorm=true", "train.batch_size=8",  "train.threads=2",
                                     "train.deterministic=true",  "train.steps=4",       "parallel.data=2",
                                     "comm.timeout_s=30"};
    if (!plan.empty()) sets.push_back("fault.inject=" + plan);
    return run_replicas(load_config(std::nullopt, sets));
  };
  const RestartedReplicas clean = run("");
  for (const char* plan : {"kill stage 0 at step 2 on replica 1", "throw stage 0 at step 1"}) {
    INFO(plan);
    const RestartedReplicas faulty = run(plan);
    CHECK(faulty.replica0.restarts.size() == 1);
    require_bitwise(clean.replica0.run, faulty.replica0.run);
    require_replicas_equal(faulty);
  }
}

TEST_CASE("mid-step faults: a stage killed or throwing before a micro-batch's forward or backward is restarted, bitwise",
          "[restart][actors][midstep]") {
  for (const std::vector<std::string>& layout : midstep_schedules()) {
    const Restarted clean = run_actors(layout);
    for (const char* plan : {"kill stage 0 at step 1 micro-batch 2 forward", "kill stage 1 at step 2 micro-batch 1 backward",
                             "throw stage 1 at step 3 micro-batch 3 forward", "throw stage 0 at step 4 micro-batch 3 backward",
                             "kill stage 0 at step 0 micro-batch 0 backward"}) {
      INFO(layout.size() << " " << layout.back() << ": " << plan);
      const Restarted faulty = run_actors(with_faults(layout, plan));
      require_bitwise(clean.run, faulty.run);
      REQUIRE(faulty.restarts.size() == 1);
      CHECK(faulty.restarts[0].step == supervision::parse_fault_plan(plan).clauses[0].step);
    }
  }
  const std::vector<std::string> dp = {"parallel.data=2", "train.batch_size=8", "comm.timeout_s=30"};
  const RestartedReplicas dp_clean = run_replicas(dp);
  for (const char* plan : {"kill stage 0 at step 1 micro-batch 1 forward on replica 1",
                           "kill stage 1 at step 2 micro-batch 0 backward", "throw stage 0 at step 3 micro-batch 1 backward",
                           "kill stage 1 at step 4 micro-batch 1 backward on replica 1"}) {
    INFO("dp: " << plan);
    const RestartedReplicas faulty = run_replicas(with_faults(dp, plan));
    require_bitwise(dp_clean.replica0.run, faulty.replica0.run);
    require_replicas_equal(faulty);
    CHECK(faulty.replica0.restarts.size() == 1);
  }
}

TEST_CASE("keeping work: a stage restarted mid-step redoes only its own share, the others keep theirs, bitwise",
          "[restart][actors][midstep][keep]") {
  for (const std::vector<std::string>& layout : midstep_schedules()) {
    const Restarted clean = run_actors(layout);
    // One stage's program: its forwards and backwards of one step (2 stages of equal programs).
    const std::size_t per_stage_step = clean.computed[0] / clean.run.losses.size();
    for (const char* plan : {"kill stage 0 at step 1 micro-batch 3 backward", "kill stage 1 at step 2 micro-batch 2 backward",
                             "throw stage 1 at step 3 micro-batch 3 forward", "kill stage 0 at step 4"}) {
      INFO(layout.back() << ": " << plan);
      const Restarted faulty = run_actors(with_faults(layout, plan));
      require_bitwise(clean.run, faulty.run);
      REQUIRE(faulty.restarts.size() == 1);
      // The work redone is the restarted stage's share of the step before the fault, no more: a re-run of
      // the whole step would redo both stages' shares.
      CHECK(total_computed(faulty) >= total_computed(clean));
      CHECK(total_computed(faulty) - total_computed(clean) < per_stage_step);
    }
  }
}

TEST_CASE("data parallel: a stage restarted mid-step redoes its share alone while the other replica waits at the "
          "exchange: bitwise, one restart",
          "[restart][actors][data][midstep][keep]") {
  const std::vector<std::string> dp = {"parallel.data=2", "train.batch_size=8", "comm.timeout_s=30"};
  const RestartedReplicas clean = run_replicas(dp);
  // One stage's forwards and backwards of one step: 2 replicas x 2 stages of equal programs.
  const std::size_t per_stage_step = clean.computed / 4 / clean.replica0.run.losses.size();
  for (const char* plan : {"kill stage 0 at step 1 micro-batch 1 backward on replica 1",
                           "kill stage 1 at step 2 micro-batch 1 forward", "throw stage 1 at step 3 micro-batch 0 backward",
                           "kill stage 1 at step 4 micro-batch 0 forward on replica 1"}) {
    INFO(plan);
    const RestartedReplicas faulty = run_replicas(with_faults(dp, plan));
    require_bitwise(clean.replica0.run, faulty.replica0.run);
    require_replicas_equal(faulty);
    REQUIRE(faulty.replica0.restarts.size() == 1);
    CHECK(faulty.computed >= clean.computed);
    CHECK(faulty.computed - clean.computed < per_stage_step);
  }
}
