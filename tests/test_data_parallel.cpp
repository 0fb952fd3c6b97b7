// Owns the data-parallel equivalence and failure tests: replicas (ring, alltoall, ZeRO-1, with and without pipelines) reproduce the single-device run.
#include <catch2/catch.hpp>

#include <cmath>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "actors/data_parallel.h"
#include "models/trainer.h"
#include "runtime/config/config_loader.h"
#include "tests/temp_dir.h"
#include "tests/training_runs.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {

std::vector<std::string> small_gpt(bool deterministic) {
  return {"model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.block_size=16", "train.batch_size=8",
          "train.threads=1", "data.order=sequential", "comm.bucket_mb=0.01",
          deterministic ? "train.deterministic=true" : "train.deterministic=false"};
}

std::vector<std::string> with(std::vector<std::string> base, std::initializer_list<std::string> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

using Run = TrainingRun;

}  // namespace

TEST_CASE("data parallel = single device, bitwise in deterministic mode (ring, alltoall, ZeRO-1, dp x pp)",
          "[data_parallel]") {
  const int steps = 3;
  const Run reference = single_device(load_config(std::nullopt, small_gpt(true)), steps);
  for (const char* exchange : {"ring", "alltoall"})
    for (int d : {2, 4})
      for (int zero : {0, 1}) {
        INFO(exchange << " D=" << d << " zero=" << zero);
        const RunConfig c = load_config(std::nullopt, with(small_gpt(true), {"parallel.data=" + std::to_string(d),
                                                                              std::string("parallel.gradient_exchange=") + exchange,
                                                                              "parallel.zero=" + std::to_string(zero)}));
        require_bitwise(data_parallel(c, steps), reference);
        require_bitwise(data_parallel(c, steps, /*actors=*/false), reference);  // stages on the replica's thread
      }
  SECTION("dp 2 x pp 2, 1F1B with 2 micro-batches per replica, and interleaved") {
    for (const char* schedule : {"1f1b", "interleaved"}) {
      INFO(schedule);
      const RunConfig c = load_config(
          std::nullopt, with(small_gpt(true), {"parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2",
                                               std::string("parallel.schedule=") + schedule,
                                               std::string("parallel.virtual_stages=") + (std::string(schedule) == "interleaved" ? "2" : "1")}));
      require_bitwise(data_parallel(c, steps), reference);
    }
  }
  SECTION("an odd replica count and gradient accumulation: D = 3 over 12 samples, 2 micro-batches each") {
    const Run ref12 = single_device(load_config(std::nullopt, with(small_gpt(true), {"train.batch_size=12"})), steps);
    const RunConfig c = load_config(std::nullopt, with(small_gpt(true), {"train.batch_size=12", "parallel.data=3",
                                                                          "parallel.microbatches=2", "parallel.zero=1"}));
    require_bitwise(data_parallel(c, steps), ref12);
  }
}

TEST_CASE("data parallel = single device within 1e-5 without deterministic mode", "[data_parallel]") {
  const int steps = 4;
  const Run reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  for (const char* exchange : {"ring", "alltoall"})
    for (int d : {2, 4}) {
      INFO(exchange << " D=" << d);
      const RunConfig c = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=" + std::to_string(d),
                                                                             std::string("parallel.gradient_exchange=") + exchange}));
      const Run r = data_parallel(c, steps);
      for (int s = 0; s < steps; ++s) CHECK(std::fabs(r.losses[s] - reference.losses[s]) <= 1e-5 * std::fabs(reference.losses[s]));
    }
  const RunConfig c = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=2", "parallel.pipeline=2",
                                                                         "parallel.microbatches=2"}));
  const Run r = data_parallel(c, steps);
  for (int s = 0; s < steps; ++s) CHECK(std::fabs(r.losses[s] - reference.losses[s]) <= 1e-5 * std::fabs(reference.losses[s]));
}

TEST_CASE("data parallel MLP = single device, bitwise in deterministic mode", "[data_parallel]") {
  const std::vector<std::string> mlp = {"model.kind=mlp", "model.mlp_hidden=32", "train.batch_size=16", "train.threads=1",
                                        "train.deterministic=true", "data.order=sequential", "optim.kind=sgd",
                                        "optim.lr=0.05", "optim.momentum=0.9"};
  const Run reference = single_device(load_config(std::nullopt, mlp), 3);
  require_bitwise(data_parallel(load_config(std::nullopt, with(mlp, {"parallel.data=4"})), 3), reference);
}

TEST_CASE("ZeRO-1 holds 1/D of the optimizer state on each replica", "[data_parallel]") {
  const RunConfig replicated = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=4"}));
  const RunConfig sharded = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=4", "parallel.zero=1"}));
  DataParallelTrainer a(replicated), b(sharded);
  a.train_step(0);
  b.train_step(0);
  const std::size_t full = a.optimizer_state_bytes(0);
  REQUIRE(full > 0);
  std::size_t total = 0;
  for (int r = 0; r < 4; ++r) {
    INFO("replica " << r << ": " << b.optimizer_state_bytes(r) << " of " << full);
    // Whole tensors are owned, so shards are only near-equal: within a quarter of the ideal 1/D.
    CHECK(b.optimizer_state_bytes(r) < full / 4 * 5 / 4 + 1);
    CHECK(b.optimizer_state_bytes(r) > 0);
    total += b.optimizer_state_bytes(r);
  }
  CHECK(total == full);
}

TEST_CASE("buckets are reduced while backward runs, and the step reports the bytes sent", "[data_parallel]") {
  const RunConfig c = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=2"}));
  DataParallelTrainer t(c);
  TraceRecorder trace;
  t.set_trace(&trace);
  t.train_step(0);
  const CommStats stats = t.last_step_comm();
  CHECK(stats.buckets > 3);  // 0.01 MiB buckets over ~30k parameters
  std::size_t params = 0;
  for (Param* p : t.replica(0).stage(0).params()) params += static_cast<std::size_t>(p->value.numel());
  // Ring: 2(n-1)/n of every gradient (plus the LM head's tied-weight buffer), n = 2.
  CHECK(stats.bytes_sent >= params * sizeof(float));
  CHECK(stats.bytes_sent < 2 * params * sizeof(float));
  TempDir dir;
  trace.write_chrome_trace(dir.file("trace.json"));
  std::ifstream in(dir.file("trace.json"));
  const std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_THAT(json, Contains("allreduce bucket 0"));
}

TEST_CASE("a failing replica stops every replica at once with its own error", "[data_parallel]") {
  // Without restarts (with them, the stage is restarted and the step re-run: test_restart.cpp).
  const RunConfig c = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=3", "train.batch_size=9",
                                                                         "comm.timeout_s=30", "fault.max_restarts=0"}));
  DataParallelTrainer t(c);
  t.train_step(0);
  t.replica(1).stage(0).inject_fault(1);  // its backward
  const auto start = std::chrono::steady_clock::now();
  try {
    t.train_step(1);
    FAIL("expected the injected fault");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("injected fault"));
  }
  // Far below comm.timeout_s: the peers learned of the death instead of waiting.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("compressed gradients: fewer bytes on the wire, training still follows the uncompressed run",
          "[data_parallel][compression]") {
  const int steps = 12;
  const Run reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  for (const char* spec : {"fp16", "bf16", "int8", "topk:0.25", "powersgd:4"}) {
    INFO(spec);
    const RunConfig c = load_config(std::nullopt, with(small_gpt(false), {"parallel.data=2",
                                                                          std::string("comm.compression=") + spec}));
    DataParallelTrainer t(c);
    std::vector<double> losses;
    for (int s = 0; s < steps; ++s) losses.push_back(t.train_step(s).loss);
    const CommStats stats = t.last_step_comm();
    CHECK(stats.bytes_sent < stats.bytes_uncompressed);
    // The first step sees the same weights, so the same loss; afterwards lossy updates drift a little.
    CHECK(losses[0] == Approx(reference.losses[0]).epsilon(1e-6));
    CHECK(losses.back() == Approx(reference.losses.back()).epsilon(0.05));
    CHECK(losses.back() < losses.front());
  }
}

TEST_CASE("train.precision = bf16: data parallel and pipelines = the single-device bf16 run, bitwise in deterministic "
          "mode", "[data_parallel][pipeline][bf16]") {
  const int steps = 3;
  const auto bf16 = with(small_gpt(true), {"train.precision=bf16"});
  const Run reference = single_device(load_config(std::nullopt, bf16), steps);
  // bf16 is in force: the single-device run differs from f32's.
  const Run f32 = single_device(load_config(std::nullopt, small_gpt(true)), steps);
  CHECK(reference.losses[1] != f32.losses[1]);
  SECTION("data parallel, ring, D = 2") {
    require_bitwise(data_parallel(load_config(std::nullopt, with(bf16, {"parallel.data=2"})), steps), reference);
  }
  SECTION("pipeline, 1F1B, 2 stages, 2 micro-batches") {
    require_bitwise(pipelined(load_config(std::nullopt, bf16), {2, 1, 2, ScheduleKind::one_f_one_b, ""}, steps),
                    reference);
  }
}
