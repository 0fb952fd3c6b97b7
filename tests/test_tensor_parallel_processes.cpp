// Owns the tests of tensor shards as processes: each rank a process over tcp (or shm), its groups views of one world transport, driven by rank 0's commands — bitwise the single device, and a dead shard fails the run at once.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "actors/runner.h"
#include "actors/session.h"
#include "actors/tensor_shard_commands.h"
#include "models/model.h"
#include "models/trainer.h"
#include "runtime/backend.h"
#include "runtime/config/config_loader.h"
#include "runtime/plan/resources.h"
#include "runtime/comm/allreduce.h"
#include "runtime/comm/subgroup_transport.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "tests/rank_threads.h"
#include "tests/same_losses.h"
#include "tests/same_weights.h"
#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

using Catch::Matchers::Contains;
using namespace std::chrono_literals;
using namespace troupe;

namespace {

// A 2-layer GPT whose n_head, vocabulary and MLP width divide by 2 and 4, deterministic: every layout's
// losses and weights are bitwise the single device's.
const std::string kSmallGpt =
    "train --steps 4 --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=4 --set model.block_size=16 "
    "--set train.batch_size=8 --set train.eval_every=2 --set train.eval_batches=1 --set data.order=sequential "
    "--set train.deterministic=true --set train.threads=1 --set comm.address=127.0.0.1:0 ";

// Single device, then each layout over `transport`: the same loss bits every step (validation losses
// included) and the same final weights.
void check_layouts_bitwise(const std::string& base, const std::string& transport, int steps,
                           std::initializer_list<const char*> layouts) {
  TempDir dir;
  const TroupeRun single = run_troupe(dir.path, base + "--dump-losses " + dir.file("single.jsonl") + " --save " +
                                                    dir.file("single.st"));
  INFO(single.err);
  REQUIRE(single.code == 0);
  for (const std::string layout : layouts) {
    INFO(layout << " over " << transport);
    const TroupeRun tp = run_troupe(dir.path, base + layout + " --set comm.transport=" + transport + " --dump-losses " +
                                                  dir.file("tp.jsonl") + " --save " + dir.file("tp.st"));
    INFO(tp.out << tp.err);
    REQUIRE(tp.code == 0);
    CHECK_THAT(tp.out, Contains("shards as processes over " + std::string(transport == "shm" ? "shared memory" : "tcp")));
    check_same_losses(dir.file("single.jsonl"), dir.file("tp.jsonl"), steps);
    check_same_weights(dir.file("single.st"), dir.file("tp.st"));
  }
}

}  // namespace

TEST_CASE("a subgroup of a world transport: group ranks map to world ranks, and disjoint groups run collectives at once",
          "[tensor_parallel][collectives]") {
  const auto kind = GENERATE(TransportKind::inproc, TransportKind::tcp);
  INFO(kind);
  // A world of 4 as dp2 x tp2: tensor groups {0 1} {2 3}, data groups {0 2} {1 3}.
  testing::RankGroup world(kind, 4, 5s);
  std::vector<std::vector<float>> tensor_sums(4), data_sums(4);
  std::vector<int> tensor_ranks(4), data_ranks(4);
  auto errors = world.run([&](comm::Transport& t) {
    const int r = t.rank();
    comm::SubgroupTransport tensor(t, {r / 2 * 2, r / 2 * 2 + 1}), data(t, {r % 2, r % 2 + 2});
    tensor_ranks[r] = tensor.rank();
    data_ranks[r] = data.rank();
    std::vector<float> a(1000, static_cast<float>(r + 1)), b(7, static_cast<float>(10 * (r + 1)));
    comm::allreduce_sum(comm::TensorGroup{&tensor}, std::span<float>(a));
    comm::allreduce_sum(comm::TensorGroup{&data}, std::span<float>(b));
    tensor_sums[r] = a;
    data_sums[r] = b;
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  CHECK(tensor_ranks == std::vector<int>{0, 1, 0, 1});
  CHECK(data_ranks == std::vector<int>{0, 0, 1, 1});
  for (int r = 0; r < 4; ++r) {
    INFO("world rank " << r);
    CHECK(tensor_sums[r] == std::vector<float>(1000, r < 2 ? 3.0f : 7.0f));      // 1+2, 3+4
    CHECK(data_sums[r] == std::vector<float>(7, r % 2 == 0 ? 40.0f : 60.0f));  // 10+30, 20+40
  }
}

TEST_CASE("tensor-shard commands cross a transport whole, and a header that is no command is an error naming the sender",
          "[tensor_parallel]") {
  testing::RankGroup world(TransportKind::inproc, 2, 5s);
  const std::vector<ShardCommand> sent = {{ShardOp::step, 7, ""},
                                          {ShardOp::save, 0, "/tmp/some dir/w.safetensors"},
                                          {ShardOp::state, 12, ""},
                                          {ShardOp::end, 0, ""}};
  std::vector<ShardCommand> got;
  std::string bad_header;  // what the bad header's recv threw (Catch's checks stay on the test's thread)
  auto errors = world.run([&](comm::Transport& t) {
    if (t.rank() == 0) {
      for (const ShardCommand& c : sent) send_command(t, 1, c);
      const std::array<std::int64_t, 3> garbage = {99, 0, 0};
      t.send(1, kShardCommandTag, std::as_bytes(std::span(garbage)));
      return;
    }
    for (std::size_t i = 0; i < sent.size(); ++i) got.push_back(wait_command(t, 0, 5s));
    try {
      recv_command(t, 0);
    } catch (const Error& e) {
      bad_header = e.what();
    }
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  CHECK(got == sent);
  CHECK_THAT(bad_header, Contains("rank 0 sent no tensor-shard command (op 99"));
}

TEST_CASE("wait_command waits past the transport's timeout for a live rank 0, and fails at once on a dead one",
          "[tensor_parallel]") {
  const auto kind = GENERATE(TransportKind::inproc, TransportKind::tcp);
  INFO(kind);
  testing::RankGroup world(kind, 2, 200ms);
  ShardCommand got;
  auto errors = world.run([&](comm::Transport& t) {
    if (t.rank() == 0) {
      std::this_thread::sleep_for(700ms);  // more than 3 timeouts
      send_command(t, 1, {ShardOp::step, 3});
      return;
    }
    got = wait_command(t, 0, 200ms);
  });
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  CHECK(got == ShardCommand{ShardOp::step, 3});
  testing::RankGroup dying(kind, 2, 5s);
  const auto start = std::chrono::steady_clock::now();
  errors = dying.run([&](comm::Transport& t) {
    if (t.rank() == 0) throw Error(ErrorKind::kIo, "rank 0 fails");  // run() kills it
    wait_command(t, 0, 5s);
  });
  REQUIRE(errors[1]);
  CHECK(std::chrono::steady_clock::now() - start < 4s);
}

TEST_CASE("tensor shards as tcp processes = single device, bitwise: GPT tp2, tp4, dp2 x tp2 (losses, validation "
          "losses, weights)",
          "[tensor_parallel][tcp][deterministic]") {
  check_layouts_bitwise(kSmallGpt, "tcp", 4,
                        {"--set parallel.tensor=2", "--set parallel.tensor=4",
                         "--set parallel.tensor=2 --set parallel.data=2"});
}

TEST_CASE("tensor shards as shm processes = single device, bitwise: GPT tp2", "[tensor_parallel][shm][deterministic]") {
  check_layouts_bitwise(kSmallGpt, "shm", 4, {"--set parallel.tensor=2"});
}

TEST_CASE("MLP tensor shards as tcp processes = single device, bitwise", "[tensor_parallel][tcp][deterministic][mlp]") {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    WARN("dataset-fashion-mnist is not installed; skipping");
    return;
  }
  check_layouts_bitwise("train --steps 3 --set model.kind=mlp --set model.mlp_hidden=32,16 --set train.batch_size=8 "
                        "--set train.eval_every=0 --set train.eval_batches=1 --set train.deterministic=true "
                        "--set train.threads=1 --set comm.address=127.0.0.1:0 ",
                        "tcp", 3, {"--set parallel.tensor=2"});
}

TEST_CASE("tensor shards as tcp processes checkpoint whole tensors (the single device's bits) and resume bitwise",
          "[tensor_parallel][tcp][checkpoint]") {
  TempDir dir;
  const std::string base = kSmallGpt + "--set train.eval_every=0 --set train.checkpoint_every=2 ";
  const std::string tp = "--set parallel.tensor=2 --set comm.transport=tcp ";
  REQUIRE(run_troupe(dir.path, base + "--set train.checkpoint_dir=" + dir.file("single")).code == 0);
  const TroupeRun whole = run_troupe(dir.path, base + tp + "--set train.checkpoint_dir=" + dir.file("tp") +
                                                   " --dump-losses " + dir.file("whole.jsonl") + " --save " +
                                                   dir.file("whole.st"));
  INFO(whole.out << whole.err);
  REQUIRE(whole.code == 0);
  // Gathered from the shards: the same file the single device writes, parameters and optimizer state.
  for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
    INFO(file);
    CHECK(slurp(dir.file("single") + "/step-000002/" + file) == slurp(dir.file("tp") + "/step-000002/" + file));
  }
  // Resumed after step 2 (the checkpoint's configuration: the same shards as processes), every shard
  // restores its slices: steps 3 and 4 and the final weights as the run that went through.
  const TroupeRun resumed = run_troupe(dir.path, "train --resume " + dir.file("tp") + "/step-000002 --steps 4 --dump-losses " +
                                                     dir.file("resumed.jsonl") + " --save " + dir.file("resumed.st"));
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK_THAT(resumed.out, Contains("shards as processes over tcp"));
  std::stringstream all(slurp(dir.file("whole.jsonl"))), tail(slurp(dir.file("resumed.jsonl")));
  std::string line, expected;
  std::getline(all, line);
  std::getline(all, line);  // steps 1 and 2 ran before the checkpoint
  int lines = 0;
  while (std::getline(all, expected) && std::getline(tail, line)) {
    CHECK(before_timing(expected) == before_timing(line));
    ++lines;
  }
  CHECK(lines == 2);
  check_same_weights(dir.file("whole.st"), dir.file("resumed.st"));
}

TEST_CASE("tensor shards as processes: a process per rank, and what cannot run so far is a config error",
          "[tensor_parallel][tcp]") {
  const std::vector<std::string> base = {"model.n_layer=2", "model.n_embd=32", "model.n_head=4", "model.block_size=16",
                                         "train.batch_size=8", "parallel.tensor=2", "comm.transport=tcp"};
  // The plan: every rank its own process, rank r process r.
  std::vector<std::string> dp2 = base;
  dp2.push_back("parallel.data=2");
  const plan::Topology topo = plan_run(load_config(std::nullopt, dp2));
  REQUIRE(topo.world_size() == 4);
  CHECK(topo.processes() == 4);
  for (int r = 0; r < 4; ++r) CHECK(topo.places[static_cast<std::size_t>(r)].process == r);
  // An embedding application cannot be copied into rank processes.
  auto session = Session::create(load_config(std::nullopt, base));
  REQUIRE_FALSE(session);
  CHECK_THAT(session.error().what(), Contains("with parallel.data = 1, parallel.tensor = 2: its ranks are processes"));
  CHECK_THAT(session.error().what(), Contains("use comm.transport = inproc"));
  // A launcher's job (its ranks joined by comm.rank / comm.world_size) does not run tensor shards yet.
  std::vector<std::string> joined = base;
  joined.insert(joined.end(), {"comm.world_size=2", "comm.rank=0"});
  try {
    load_config(std::nullopt, joined);
    FAIL("a launcher's job of tensor shards was accepted");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("tensor shards as processes are started by troupe itself so far"));
  }
}

// With fault.max_restarts > 0 (the default) rank 0 restarts it instead (tests/tensor_process_restart.py).
TEST_CASE("without restarts, a tensor shard process that dies fails the run at once, naming it, and leaves no "
          "process behind",
          "[tensor_parallel][tcp]") {
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const TroupeRun r = run_troupe(dir.path,
                                 kSmallGpt + "--seed 4545 --set parallel.tensor=2 --set parallel.data=2 "
                                             "--set comm.transport=tcp --set comm.timeout_s=60 --set fault.max_restarts=0 "
                                             "--save " + dir.file("w.st"),
                                 "TROUPE_TEST_CRASH=3:2");
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("rank 3"));
  CHECK_THAT(r.err, Contains("dead"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // not comm.timeout_s
  CHECK(std::system("pgrep -f 'seed 454[5] .*--rank' > /dev/null") != 0);
}

TEST_CASE("the plan (--print-plan) states each shard's parameter, gradient, optimizer-state and activation bytes, parameters "
          "1/T of the split tensors, activations those a shard saves",
          "[tensor_parallel][plan]") {
  for (const bool gpt : {true, false}) {
    if (!gpt && !std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) continue;
    for (int tp : {1, 2, 4})
    for (const bool sequence : {false, true}) {
      if (!gpt && tp == 4) continue;  // the MLP's hidden widths below divide by 2
      if (sequence && (!gpt || tp == 1)) continue;  // sequence parallelism: the gpt's, over 2 shards or more
      INFO((gpt ? "gpt" : "mlp") << " T = " << tp << (sequence ? " with sequence parallelism" : ""));
      const std::vector<std::string> sets =
          gpt ? std::vector<std::string>{"model.n_layer=2", "model.n_embd=32", "model.n_head=4", "model.block_size=16",
                                         "train.batch_size=4", "optim.kind=adamw", "parallel.tensor=" + std::to_string(tp),
                                         sequence ? "parallel.sequence_parallel=true" : "parallel.sequence_parallel=false"}
              : std::vector<std::string>{"model.kind=mlp", "model.mlp_hidden=32,16", "train.batch_size=4",
                                         "optim.kind=sgd", "optim.momentum=0.9", "parallel.tensor=" + std::to_string(tp)};
      const RunConfig config = load_config(std::nullopt, sets);
      const plan::Topology topo = plan_run(config);
      const plan::ShardMemory m = plan::shard_memory(config, topo, 0);
      // What each real shard holds: its parameters (split ones apart), and after one forward the bytes its
      // layers saved for backward.
      std::vector<std::int64_t> split_bytes(static_cast<std::size_t>(tp)), replicated_bytes(static_cast<std::size_t>(tp)),
          saved_bytes(static_cast<std::size_t>(tp));
      testing::RankGroup group(TransportKind::inproc, tp, 5s);
      auto errors = group.run([&](comm::Transport& t) {
        const std::size_t r = static_cast<std::size_t>(t.rank());
        CpuBackend be(1);
        Model shard(make_layer_specs(config.model, 1, comm::TensorGroup{&t, sequence}));
        for (const Param* p : shard.params().all()) (p->split.split() ? split_bytes : replicated_bytes)[r] += 4 * p->value.numel();
        const std::unique_ptr<Dataset> data = make_dataset(config);
        const Batch batch = data->train_batch(0, config.train.batch_size);
        MicroBatch mb;
        mb.inputs = batch.inputs;
        mb.targets = batch.targets;
        mb.loss_scale = 1.0f / static_cast<float>(batch.targets.numel());
        mb.row_block = data->rows_per_sample();
        auto ctxs = shard.make_contexts();
        shard.forward(be, mb, ctxs, mb.inputs);
        for (const LayerCtx& c : ctxs)
          for (const Tensor& x : c.saved)
            if (x.defined() && x.dtype() == DType::f32) saved_bytes[r] += static_cast<std::int64_t>(x.nbytes());
      });
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);
      const plan::StagePlan& stage = topo.stages.at(0);
      for (int r = 0; r < tp; ++r) {
        INFO("shard " << r);
        const std::size_t i = static_cast<std::size_t>(r);
        if (tp > 1) CHECK(split_bytes[i] * tp == stage.split_param_bytes);  // 1/T of the whole split tensors
        CHECK(static_cast<double>(split_bytes[i] + replicated_bytes[i]) == m.parameters);
        // The estimate counts the floats each layer saves; the embedding's output is saved by the first
        // block (and counted once there), so the estimate is within 5% of what the shard holds.
        CHECK(static_cast<double>(saved_bytes[i]) == Approx(m.activations).epsilon(0.05));
      }
      CHECK(m.gradients == m.parameters);
      CHECK(m.optimizer_state == (gpt ? 2.0 : 1.0) * m.parameters);  // adamw: 2 moments; sgd: momentum
      const std::string text = describe_plan(config);
      CHECK_THAT(text, Contains(fmt::format("stage 0 x {} shard{}: parameters {:.0f}, gradients {:.0f}, optimizer state "
                                            "{:.0f}, activations {:.0f}",
                                            tp, tp == 1 ? "" : "s", m.parameters, m.gradients, m.optimizer_state,
                                            m.activations)));
    }
  }
}
