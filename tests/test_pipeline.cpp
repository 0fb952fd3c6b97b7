// Pipeline parallelism equals the single-device run: every schedule, stage count and micro-batch count
// reproduces the reference Trainer's losses (bitwise in deterministic mode) and final weights.
#include <catch2/catch.hpp>

#include <cstring>

#include "actors/actor_pipeline.h"
#include "actors/state/pipeline_driver.h"
#include "runtime/config/config_loader.h"
#include "tests/training_runs.h"

using namespace troupe;

namespace {
// 6 blocks: 8 layers, enough for 4 stages x 2 chunks.
std::vector<std::string> small_gpt(bool deterministic) {
  return {"model.n_layer=6", "model.n_embd=32", "model.n_head=2", "model.block_size=16", "train.batch_size=8",
          "train.threads=1", "data.order=sequential",
          deterministic ? "train.deterministic=true" : "train.deterministic=false"};
}

using Run = TrainingRun;
}  // namespace

TEST_CASE("pipeline = single device, bitwise in deterministic mode", "[pipeline]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(true));
  const int steps = 3;
  const Run reference = single_device(config, steps);
  for (ScheduleKind schedule : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::interleaved})
    for (int p : {2, 4})
      for (int m : {1, 4, 8}) {
        PipelineOptions o{p, schedule == ScheduleKind::interleaved ? 2 : 1, m, schedule, ""};
        INFO(schedule << " p=" << p << " m=" << m << " v=" << o.virtual_stages);
        require_bitwise(pipelined(config, o, steps), reference);
      }
}

TEST_CASE("pipeline = single device within 1e-5 without deterministic mode", "[pipeline]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(false));
  const int steps = 3;
  const Run reference = single_device(config, steps);
  for (ScheduleKind schedule : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b}) {
    const Run r = pipelined(config, {2, 1, 4, schedule, ""}, steps);
    for (int s = 0; s < steps; ++s) CHECK(r.losses[s] == Approx(reference.losses[s]).epsilon(1e-5));
  }
}

TEST_CASE("manual boundaries and the MLP pipeline", "[pipeline]") {
  RunConfig config = load_config(std::nullopt, small_gpt(true));
  const Run reference = single_device(config, 2);
  const Run r = pipelined(config, {3, 1, 2, ScheduleKind::one_f_one_b, "0,1,7"}, 2);  // uneven: one stage holds 6 layers
  for (int s = 0; s < 2; ++s) CHECK(r.losses[s] == reference.losses[s]);

  RunConfig mlp = load_config(std::nullopt, {"model.kind=mlp", "model.mlp_hidden=32,32", "train.batch_size=8",
                                             "train.threads=1", "train.deterministic=true", "data.order=sequential"});
  const Run mref = single_device(mlp, 2);
  const Run mr = pipelined(mlp, {2, 1, 4, ScheduleKind::gpipe, ""}, 2);
  for (int s = 0; s < 2; ++s) CHECK(mr.losses[s] == mref.losses[s]);
}

TEST_CASE("impossible pipelines are refused with what is allowed", "[pipeline]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(true));
  CHECK_THROWS_WITH(PipelineDriver(config, {2, 1, 3, ScheduleKind::one_f_one_b, ""}), Catch::Contains("must divide train.batch_size = 8"));
  CHECK_THROWS_WITH(PipelineDriver(config, {8, 2, 8, ScheduleKind::interleaved, ""}), Catch::Contains("needs at least 16 layers"));
  CHECK_THROWS_WITH(PipelineDriver(config, {2, 1, 2, ScheduleKind::one_f_one_b, "0,9"}), Catch::Contains("parallel.boundaries"));
}

TEST_CASE("stage actors (CAF, one thread each) = single device, bitwise in deterministic mode", "[pipeline][actors]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(true));
  const int steps = 3;
  const Run reference = single_device(config, steps);
  for (ScheduleKind schedule : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::interleaved})
    for (int p : {2, 4}) {
      PipelineOptions o{p, schedule == ScheduleKind::interleaved ? 2 : 1, 4, schedule, ""};
      INFO(schedule << " p=" << p);
      ActorPipeline actors(config, o);
      std::vector<double> losses;
      for (int s = 0; s < steps; ++s) losses.push_back(actors.train_step(s).loss);
      for (int s = 0; s < steps; ++s) CHECK(losses[s] == reference.losses[s]);
      for (Param* prm : actors.params_in_order()) {
        INFO(prm->name);
        const auto w = prm->value.to_vector();
        CHECK(std::memcmp(w.data(), reference.weights.at(prm->name).data(), w.size() * sizeof(float)) == 0);
      }
    }
}

TEST_CASE("a slow stage does not let its neighbour run ahead beyond the schedule's bound", "[pipeline][actors]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(false));
  const int m = 8;
  auto peak_ahead_of_slow_stage = [&](ScheduleKind schedule) {
    ActorPipeline actors(config, {2, 1, m, schedule, ""});
    actors.stage(1).set_compute_delay(std::chrono::milliseconds(3));  // stage 0 runs far ahead if it may
    actors.train_step(0);
    actors.train_step(1);
    return actors.stage(0).peak_in_flight();
  };
  // 1F1B: stage 0 holds at most p = 2 micro-batches, however slow stage 1 is.
  CHECK(peak_ahead_of_slow_stage(ScheduleKind::one_f_one_b) == 2);
  // GPipe lets stage 0 run all m forwards before any backward.
  CHECK(peak_ahead_of_slow_stage(ScheduleKind::gpipe) == static_cast<std::size_t>(m));
}

TEST_CASE("credits bound what a fast stage sends ahead of a slow one, and change no result", "[pipeline][actors]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(true));
  const int m = 8;
  PipelineOptions o{2, 1, m, ScheduleKind::gpipe, ""};
  o.credits = 2;
  ActorPipeline actors(config, o);
  actors.stage(1).set_compute_delay(std::chrono::milliseconds(3));
  PipelineDriver reference(config, {2, 1, m, ScheduleKind::gpipe, ""});
  for (int s = 0; s < 2; ++s) CHECK(actors.train_step(s).loss == reference.train_step(s).loss);
  // Stage 0 runs its forwards far faster than stage 1 consumes them, yet never has more than two
  // activations on the way (GPipe alone would let all eight pile up in stage 1's mailbox).
  CHECK(actors.stage(0).peak_unconsumed_sends() == 2);

  for (ScheduleKind schedule : {ScheduleKind::one_f_one_b, ScheduleKind::interleaved}) {  // the tightest window still runs every schedule
    PipelineOptions tight{2, schedule == ScheduleKind::interleaved ? 2 : 1, m, schedule, ""};
    tight.credits = 1;
    INFO(schedule);
    PipelineDriver d(config, tight);
    CHECK_NOTHROW(d.train_step(0));
  }
}

TEST_CASE("a stage that fails mid-step is reported with the grid, not a hang", "[pipeline][actors]") {
  // Without restarts (with them, tests/test_restart.cpp: the step is re-run).
  std::vector<std::string> sets = small_gpt(false);
  sets.push_back("fault.max_restarts=0");
  const RunConfig config = load_config(std::nullopt, sets);
  ActorPipeline actors(config, {2, 1, 4, ScheduleKind::one_f_one_b, ""});
  // Stage 1's program: RECV_F0 F0 B0 SEND_B0 ...; fail its first backward.
  const auto& program = actors.stage(1).program();
  std::size_t first_backward = 0;
  while (!std::holds_alternative<pipeline::Backward>(program.at(first_backward))) ++first_backward;
  actors.stage(1).inject_fault(first_backward);
  try {
    actors.train_step(0);
    FAIL("the step should have failed");
  } catch (const Error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("injected fault at B0") && Catch::Contains(">B0<") && Catch::Contains("stage 1"));
  }
}

TEST_CASE("a stage snapshot restored into a fresh pipeline continues the run exactly", "[pipeline]") {
  const RunConfig config = load_config(std::nullopt, small_gpt(true));
  const PipelineOptions o{2, 1, 4, ScheduleKind::one_f_one_b, ""};
  PipelineDriver original(config, o);
  for (int s = 0; s < 2; ++s) original.train_step(s);
  std::vector<StageSnapshot> snaps;
  for (int s = 0; s < 2; ++s) snaps.push_back(original.stage(s).snapshot());
  const double expected2 = original.train_step(2).loss;
  const double expected3 = original.train_step(3).loss;  // depends on the optimizer state too

  PipelineDriver restarted(config, o);  // fresh weights and optimizer state...
  for (int s = 0; s < 2; ++s) restarted.stage(s).restore(snaps[s]);  // ...replaced by the snapshots
  CHECK(restarted.train_step(2).loss == expected2);
  CHECK(restarted.train_step(3).loss == expected3);

  CHECK_THROWS_WITH(restarted.stage(0).restore(snaps[1]), Catch::Contains("does not fit stage 0"));
}
