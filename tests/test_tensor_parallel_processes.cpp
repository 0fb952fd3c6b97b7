// Owns the tests of tensor shards as processes: each rank a process over tcp (or shm), its groups views of one world transport, driven by rank 0's commands — bitwise the single device, and a dead shard fails the run at once.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "actors/tensor_shard_commands.h"
#include "runtime/comm/allreduce.h"
#include "runtime/comm/subgroup_transport.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "tests/rank_threads.h"
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

// A --dump-losses line without its timing figures (they differ run to run).
std::string before_timing(const std::string& line) {
  const auto tokens = line.find("\"tokens_per_s\"");
  return line.substr(0, tokens != std::string::npos ? tokens : line.find("\"samples_per_s\""));
}

void check_same_losses(const std::string& expected_path, const std::string& actual_path, int steps) {
  std::stringstream a(slurp(expected_path)), b(slurp(actual_path));
  std::string la, lb;
  int lines = 0;
  while (std::getline(a, la) && std::getline(b, lb)) {
    CHECK(before_timing(la) == before_timing(lb));
    ++lines;
  }
  CHECK(lines == steps);
}

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

TEST_CASE("tensor shards as tcp processes = single device, bitwise (losses, validation losses and weights): GPT tp2, "
          "tp4, dp2 x tp2",
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

TEST_CASE("a tensor shard process that dies fails the run at once, naming it, and leaves no process behind",
          "[tensor_parallel][tcp]") {
  TempDir dir;
  const auto start = std::chrono::steady_clock::now();
  const TroupeRun r = run_troupe(dir.path,
                                 kSmallGpt + "--seed 4545 --set parallel.tensor=2 --set parallel.data=2 "
                                             "--set comm.transport=tcp --set comm.timeout_s=60 --save " + dir.file("w.st"),
                                 "TROUPE_TEST_CRASH=3:2");
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("rank 3"));
  CHECK_THAT(r.err, Contains("dead"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));  // not comm.timeout_s
  CHECK(std::system("pgrep -f 'seed 454[5] .*--rank' > /dev/null") != 0);
}
