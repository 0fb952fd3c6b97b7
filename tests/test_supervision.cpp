// The supervision tree as a value (from literal Topologies), the Supervisor state machine, and a dead
// stage actor reported with its place in the Topology and the step.
#include <catch2/catch.hpp>

#include <chrono>

#include "actors/actor_pipeline.h"
#include "actors/data_parallel.h"
#include "actors/ps/ps_trainer.h"
#include "actors/runner.h"
#include "runtime/config/config_loader.h"
#include "runtime/supervision/supervisor.h"

using namespace troupe;
using namespace troupe::supervision;

namespace {
plan::Topology mesh(int data, int pipe, std::optional<plan::ServerPlan> servers = std::nullopt) {
  plan::Topology t;
  t.dims = {data, pipe, 1};
  for (int r = 0; r < t.world_size(); ++r) t.places.push_back({0, "localhost", Device::cpu()});
  t.servers = servers;
  return t;
}

std::vector<std::string> names(const Node& n) {
  std::vector<std::string> out;
  for (const Node& c : n.children) out.push_back(c.name);
  return out;
}
}  // namespace

TEST_CASE("supervision tree of dp2 x pp2: job, replicas, stages with their gradient exchange", "[supervision]") {
  const plan::Topology t = mesh(2, 2);
  const Node job = make_supervision_tree(t);
  CHECK(job.kind == NodeKind::job);
  CHECK(names(job) == std::vector<std::string>{"replica 0", "replica 1"});
  CHECK(names(job.children[1]) == std::vector<std::string>{"replica 1/stage 0", "replica 1/stage 1"});
  // stage -> rank, as the Topology numbers them
  CHECK(job.children[0].children[0].rank == 0);
  CHECK(job.children[0].children[1].rank == 1);
  CHECK(job.children[1].children[0].rank == 2);
  CHECK(job.children[1].children[1].rank == 3);
  CHECK(names(job.children[1].children[0]) ==
        std::vector<std::string>{"replica 1/stage 0/optimizer state", "replica 1/stage 0/gradient exchange"});
  CHECK(describe(job) ==
        "job\n"
        "  replica 0\n"
        "    replica 0/stage 0 (rank 0)\n"
        "      replica 0/stage 0/optimizer state (rank 0)\n"
        "      replica 0/stage 0/gradient exchange (rank 0)\n"
        "    replica 0/stage 1 (rank 1)\n"
        "      replica 0/stage 1/optimizer state (rank 1)\n"
        "      replica 0/stage 1/gradient exchange (rank 1)\n"
        "  replica 1\n"
        "    replica 1/stage 0 (rank 2)\n"
        "      replica 1/stage 0/optimizer state (rank 2)\n"
        "      replica 1/stage 0/gradient exchange (rank 2)\n"
        "    replica 1/stage 1 (rank 3)\n"
        "      replica 1/stage 1/optimizer state (rank 3)\n"
        "      replica 1/stage 1/gradient exchange (rank 3)\n");
}

TEST_CASE("supervision tree of parameter servers: shards and workers under the job", "[supervision]") {
  const Node job = make_supervision_tree(mesh(3, 1, plan::ServerPlan{2, 0, PsMode::sync, 0}));
  CHECK(names(job) == std::vector<std::string>{"shard 0", "shard 1", "worker 0", "worker 1", "worker 2"});
  CHECK(job.children[0].kind == NodeKind::shard);
  CHECK(job.children[4].rank == 2);
}

TEST_CASE("a supervisor names the dead child's place, step and cause, and tracks who is alive", "[supervision]") {
  plan::Topology t = mesh(2, 2);
  t.places[3] = {1, "localhost", Device::cpu()};
  const Node job = make_supervision_tree(t);
  Supervisor replica1(job.children[1], t);
  CHECK(replica1.alive_count() == 6);  // 2 stages, each with its optimizer state and gradient exchange
  const Death d = replica1.on_down("replica 1/stage 1", 7, "out of memory");
  CHECK(d.report == "stage actor replica 1/stage 1 (rank 3: data 1, pipe 1, tensor 0; process 1 on localhost, "
                    "cpu:0) died in step 7: out of memory");
  CHECK_FALSE(replica1.alive("replica 1/stage 1"));
  CHECK(replica1.alive("replica 1/stage 0"));
  CHECK(replica1.alive_count() == 5);
  CHECK(replica1.deaths().size() == 1);
  CHECK_THROWS_AS(replica1.on_down("replica 0/stage 0", 7, "x"), Error);  // not its child
}

TEST_CASE("a stage actor that dies is reported by its replica's supervisor with its place", "[supervision][actors]") {
  // Without restarts (with them, tests/test_restart.cpp: the step is re-run).
  const RunConfig config = load_config(std::nullopt, {"model.n_layer=2", "model.n_embd=32", "model.n_head=2",
                                                      "model.block_size=16", "train.batch_size=4", "train.threads=2",
                                                      "fault.max_restarts=0"});
  ActorPipeline actors(config, PipelineOptions{.stages = 2, .microbatches = 2});
  actors.train_step(0);
  const auto& program = actors.stage(1).program();
  std::size_t first_backward = 0;
  while (!std::holds_alternative<pipeline::Backward>(program.at(first_backward))) ++first_backward;
  actors.stage(1).inject_fault(first_backward);
  try {
    actors.train_step(1);
    FAIL("the step should have failed");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("stage actor replica 0/stage 1 (rank 1: data 0, pipe 1, tensor 0; process 0 "
                                           "on localhost, cpu:0) died in step 1: ") &&
                             Catch::Contains("injected fault at B0") && Catch::Contains(">B0<"));
  }
}

TEST_CASE("a gradient-exchange actor that dies is reported by its name and place, and no peer hangs",
          "[supervision][actors]") {
  const RunConfig config = load_config(std::nullopt, {"model.n_layer=2", "model.n_embd=32", "model.n_head=2",
                                                      "model.block_size=16", "train.batch_size=4", "train.threads=2",
                                                      "parallel.data=2", "parallel.pipeline=2", "comm.bucket_mb=0.01",
                                                      "comm.timeout_s=30"});
  // The run's Topology (as the runner passes it) is what the supervisors name: here replica 1 is said
  // to live in process 1.
  plan::Topology topology = plan_run(config);
  for (std::size_t r = 2; r < 4; ++r) topology.places[r].process = 1;
  DataParallelTrainer t(config, true, &topology);
  t.train_step(0);
  t.actor_replica(1).end_gradient_exchange(0);
  const auto start = std::chrono::steady_clock::now();
  try {
    t.train_step(1);
    FAIL("the step should have failed");
  } catch (const Error& e) {
    // Which report comes first is a race: the exchange actor's own death (usually, "died between
    // steps"), or its stage's, which finds the exchange gone when the step begins.
    CHECK_THAT(e.what(), (Catch::StartsWith("gradient exchange actor replica 1/stage 0/gradient exchange (rank 2: data 1, "
                                            "pipe 0, tensor 0; process 1 on localhost, cpu:0) died ") ||
                          Catch::StartsWith("stage actor replica 1/stage 0 (rank 2: data 1, pipe 0, tensor 0; process 1 "
                                            "on localhost, cpu:0) died in step 1: stage 0: its gradient-exchange actor "
                                            "ended: ")) &&
                             Catch::Contains("exit_reason(kill)"));
  }
  // The healthy replica learns of it from its group at once, not after comm.timeout_s.
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
}

TEST_CASE("a parameter-server shard actor that dies is reported by its supervisor with its place", "[supervision][ps]") {
  const RunConfig config =
      load_config(std::nullopt, {"model.n_layer=2", "model.n_embd=32", "model.n_head=2", "model.block_size=16",
                                 "train.batch_size=4", "train.threads=2", "parallel.gradient_exchange=ps",
                                 "parallel.data=2", "ps.shards=2", "comm.timeout_s=30"});
  ps::PsTrainer t(config);
  t.train_step(0);
  t.kill_shard(1);
  try {
    t.train_step(1);
    FAIL("the step should have failed");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("parameter-server shard actor shard 1 (process 0 on localhost") &&
                             Catch::Contains("died in step 1: exit_reason(kill)") &&
                             Catch::Contains("the workers saw: ps shard 1"));
  }
}
