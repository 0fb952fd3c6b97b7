// The resource check (runtime/plan/resources.h): the memory estimate against literal numbers, and the
// refusal of threads and memory the machine does not have, before anything is allocated.
#include <catch2/catch.hpp>

#include <filesystem>

#include "models/model.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/plan/resources.h"
#include "tests/error_of.h"
#include "tests/troupe_command.h"

using namespace troupe;
using namespace troupe::plan;
using Catch::Matchers::Contains;

namespace {
Topology topology_of(const RunConfig& config) {
  return make_topology(config, layer_info(make_layer_specs(config.model, config.train.seed)),
                       std::vector<Device>(static_cast<std::size_t>(config.parallel.pipeline), Device::cpu()));
}

// A GPT small enough to count by hand: c = 4, vocab 16, block 8, 2 heads, one block, batch 2.
std::vector<std::string> tiny(std::vector<std::string> more = {}) {
  std::vector<std::string> sets = {"model.n_layer=1", "model.n_embd=4", "model.n_head=2", "model.block_size=8",
                                   "model.vocab_size=16", "train.batch_size=2"};
  sets.insert(sets.end(), more.begin(), more.end());
  return sets;
}
}  // namespace

TEST_CASE("parameter_count is the model's own count", "[resources]") {
  for (const auto& sets : {std::vector<std::string>{}, tiny(), std::vector<std::string>{"model.kind=mlp"},
                           std::vector<std::string>{"model.kind=mlp", "model.mlp_hidden=300,100"},
                           std::vector<std::string>{"model.kind=cnn"},
                           std::vector<std::string>{"model.kind=cnn", "model.cnn_channels=8,8,24",
                                                    "model.cnn_blocks=2,1,3", "model.cnn_stem_stride=2"}}) {
    const RunConfig config = load_config(std::nullopt, sets);
    CHECK(parameter_count(config.model) ==
          static_cast<double>(Model(make_layer_specs(config.model, 1)).params().numel()));
  }
  // In range, yet beyond 2^53: counted without wrapping.
  const RunConfig huge = load_config(std::nullopt, {"model.n_layer=10000", "model.n_embd=1048576"});
  CHECK(parameter_count(huge.model) > 1.3e17);
}

TEST_CASE("the memory estimate, counted by hand", "[resources]") {
  // Parameters: wte+wpe (16 + 8) x 4 = 96; block 12 x 16 + 13 x 4 = 244; ln_f 8: 348, 1392 bytes.
  // Floats saved per token: embedding 4; block 16 x 4 + 4 + 2 heads x 8 = 84; head 2 x 4 + 2 + 16 = 26: 114.
  const RunConfig one = load_config(std::nullopt, tiny());
  MemoryEstimate e = estimate_memory(one, topology_of(one));
  CHECK(e.parameters == 1392);
  CHECK(e.gradients == 1392);
  CHECK(e.optimizer_state == 2 * 1392);  // adamw: two moments
  CHECK(e.activations == 4 * 114 * 16);  // 2 sequences x 8 tokens, one micro-batch in flight
  CHECK(e.total() == 12864);

  // Two replicas, ZeRO-1: parameters and gradients twice, the optimizer state once; each replica holds
  // activations for its half of the batch.
  const RunConfig dp = load_config(std::nullopt, tiny({"parallel.data=2", "parallel.zero=1"}));
  e = estimate_memory(dp, topology_of(dp));
  CHECK(e.parameters == 2 * 1392);
  CHECK(e.optimizer_state == 2 * 1392);
  CHECK(e.activations == 4 * 114 * 8 * 2);

  // sgd without momentum keeps no state.
  const RunConfig sgd = load_config(std::nullopt, tiny({"optim.kind=sgd"}));
  CHECK(estimate_memory(sgd, topology_of(sgd)).optimizer_state == 0);

  // Two stages (embedding + block | head), two micro-batches of 8 tokens. 1F1B: stage 0 holds 2 in
  // flight, stage 1 holds 1; GPipe: both hold 2.
  const RunConfig f1b = load_config(std::nullopt, tiny({"parallel.pipeline=2", "parallel.microbatches=2",
                                                         "parallel.boundaries=0,2"}));
  CHECK(estimate_memory(f1b, topology_of(f1b)).activations == 4 * (88 * 8 * 2 + 26 * 8 * 1));
  const RunConfig gpipe = load_config(std::nullopt, tiny({"parallel.pipeline=2", "parallel.microbatches=2",
                                                           "parallel.boundaries=0,2", "parallel.schedule=gpipe"}));
  CHECK(estimate_memory(gpipe, topology_of(gpipe)).activations == 4 * (88 * 8 * 2 + 26 * 8 * 2));

  // Parameter servers: a copy in the shards, which also hold the (one) optimizer state.
  const RunConfig ps = load_config(std::nullopt, tiny({"parallel.data=2", "parallel.gradient_exchange=ps"}));
  e = estimate_memory(ps, topology_of(ps));
  CHECK(e.parameters == 3 * 1392);
  CHECK(e.optimizer_state == 2 * 1392);
}

TEST_CASE("check_resources refuses what the machine cannot hold, naming the estimate and what is available",
          "[resources]") {
  const RunConfig one = load_config(std::nullopt, tiny());
  const Topology t = topology_of(one);
  CHECK_NOTHROW(check_resources(one, t, 2, 12864.0));
  CHECK_NOTHROW(check_resources(one, t, 2, std::nullopt));
  const std::string msg = config_error([&] { check_resources(one, t, 2, 12863.0); });
  CHECK_THAT(msg, Contains("needs at least 0.00 GB (parameters") && Contains("is available"));

  RunConfig threads = one;
  threads.train.threads = 8;
  CHECK_NOTHROW(check_resources(threads, t, 2, std::nullopt));
  threads.train.threads = 9;
  CHECK_THAT(config_error([&] { check_resources(threads, t, 2, std::nullopt); }),
             Contains("train.threads = 9: this machine has 2 hardware threads"));
}

TEST_CASE("troupe train refuses too many threads and too much memory before allocating, exit 2", "[resources][cli]") {
  const auto dir = std::filesystem::temp_directory_path() / ("troupe_resources_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    std::string args, env, expect;
  } cases[] = {
      // Was SIGABRT (a thread that could not start) and bad_alloc after growing to the memory limit.
      {"--set train.threads=100000", "", "train.threads = 100000: must be >= 0 and <= 1024"},
      {"--set train.batch_size=2147483647", "", "train.batch_size = 2147483647: must be >= 1 and <= 1048576"},
      {"--set model.n_layer=100000000", "", "model.n_layer = 100000000: must be >= 1 and <= 10000"},
      // In range, and far beyond any machine (or the one the environment describes).
      {"--set train.threads=1024", "", "train.threads = 1024: this machine has"},
      {"--set model.n_layer=10000 --set model.n_embd=65536", "", "needs at least"},
      {"--set train.batch_size=1048576", "", "needs at least"},
      {"--steps 1", "TROUPE_MEMORY_AVAILABLE=1e6", "is available"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    const TroupeRun r = run_troupe(dir, "train " + c.args + " --save " + (dir / "w.st").string(), c.env);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Contains(c.expect));
    CHECK(!std::filesystem::exists(dir / "w.st"));
  }
  std::filesystem::remove_all(dir);
}
