// Owns the sequence-parallelism tests: the sequence split's gather and scatter alone, GPT tp 2 and 4, dp2 x pp2 x tp2 (ZeRO-1, compression) and tp2 x pp2 interleaved with parallel.sequence_parallel equal to the single device (within 1e-5, and bitwise in deterministic mode), from Session and the CLI, the plan's smaller activations, and the config errors.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstring>

#include "actors/runner.h"
#include "actors/session.h"
#include "actors/tensor_parallel.h"
#include "runtime/comm/tensor_parallel_ops.h"
#include "runtime/config/config_loader.h"
#include "runtime/plan/resources.h"
#include "tests/error_of.h"
#include "tests/rank_threads.h"
#include "tests/same_losses.h"
#include "tests/same_weights.h"
#include "tests/temp_dir.h"
#include "tests/small_gpt_runs.h"
#include "tests/training_runs.h"
#include "tests/troupe_command.h"

using namespace troupe;
using namespace troupe::testing;  // small_gpt_runs.h
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

void require_no_errors(const std::vector<std::exception_ptr>& errors) {
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Rank r's value at element i: distinct per rank and element, sums not exactly representable.
float value(int rank, std::size_t i) { return 0.1f * static_cast<float>(i + 1) + 0.37f * static_cast<float>(rank + 1); }

// `steps` steps of tensor shards as actors (the CLI's parallel.tensor run); losses and the whole
// weights as the run saves them.
TrainingRun tensor_sharded(const RunConfig& config, int steps) {
  TensorParallelTrainer t(config);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(t.train_step(s).loss);
  TempDir dir;
  t.save_weights(dir.file("w.safetensors"));
  for (auto& [name, w] : load_safetensors(dir.file("w.safetensors"))) r.weights[name] = w.to_vector();
  return r;
}

struct Layout {
  const char* name;
  std::vector<std::string> sets;
};

// Every layout with parallel.sequence_parallel = true.
const std::vector<Layout> kPipelineLayouts = {
    {"dp2 x pp2 x tp2 + sp", {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2", "parallel.microbatches=2"}},
    {"tp2 x pp2 interleaved + sp", {"parallel.tensor=2", "parallel.pipeline=2", "parallel.virtual_stages=2",
                                    "parallel.microbatches=2", "parallel.schedule=interleaved"}},
    {"dp2 x pp2 x tp2, ZeRO-1 + sp", {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                                      "parallel.microbatches=2", "parallel.zero=1"}},
};

RunConfig sequence_parallel(std::vector<std::string> sets, const std::vector<std::string>& layout) {
  sets.insert(sets.end(), layout.begin(), layout.end());
  sets.push_back("parallel.sequence_parallel=true");
  return load_config(std::nullopt, sets);
}

}  // namespace

TEST_CASE("sequence split: the gather all-gathers every sample's parts in token order, the scatter reduce-scatters "
          "them in rank order, exactly in deterministic mode",
          "[tensor_parallel][sequence_parallel]") {
  for (int ranks : {2, 4}) {
    for (std::int64_t samples : {1, 3}) {
      INFO("ranks " << ranks << ", samples " << samples);
      // [samples, tokens, width] with tokens = 2 per shard, width 3: shard r holds tokens [2r, 2r + 2).
      const std::size_t tokens = 2 * static_cast<std::size_t>(ranks), width = 3;
      const std::size_t n = static_cast<std::size_t>(samples) * tokens * width, local_n = n / static_cast<std::size_t>(ranks);
      // Whole index of shard r's local element i.
      auto whole_index = [&](int r, std::size_t i) {
        const std::size_t per = local_n / static_cast<std::size_t>(samples), b = i / per;
        return (b * static_cast<std::size_t>(ranks) + static_cast<std::size_t>(r)) * per + i % per;
      };
      // Each rank's partial sums, stored once (so that both sides add the same floats), and their sum.
      std::vector<std::vector<float>> partials(static_cast<std::size_t>(ranks), std::vector<float>(n));
      for (int r = 0; r < ranks; ++r)
        for (std::size_t i = 0; i < n; ++i) partials[static_cast<std::size_t>(r)][i] = value(r, i);
      std::vector<float> sum = partials[0];
      for (int r = 1; r < ranks; ++r)
        for (std::size_t i = 0; i < n; ++i) sum[i] += partials[static_cast<std::size_t>(r)][i];  // rank order
      testing::RankGroup group(TransportKind::inproc, ranks, 5s);
      require_no_errors(group.run([&](comm::Transport& t) {
        const comm::TensorGroup g{&t, true};
        std::vector<float> local(local_n), whole(n);
        for (std::size_t i = 0; i < local_n; ++i) local[i] = static_cast<float>(whole_index(t.rank(), i));
        comm::gather_forward(g, local, whole, samples);
        for (std::size_t i = 0; i < n; ++i) REQUIRE(whole[i] == static_cast<float>(i));
        std::vector<float> back(n);
        comm::scatter_backward(g, local, back, samples);  // the same all-gather
        REQUIRE(same_bits(back, whole));

        std::vector<float> partial = partials[static_cast<std::size_t>(t.rank())], mine(local_n), want(local_n);
        for (std::size_t i = 0; i < local_n; ++i) want[i] = sum[whole_index(t.rank(), i)];
        comm::scatter_forward(g, partial, mine, samples);
        REQUIRE(same_bits(mine, want));
        std::vector<float> dual(local_n);
        comm::gather_backward(g, partial, dual, samples);  // the same reduce-scatter
        REQUIRE(same_bits(dual, want));

        // Exact: this shard's part of the allreduce's exact sums, rounded once: g_forward_exact's bits.
        std::vector<ExactSum> exact(n);
        for (std::size_t i = 0; i < n; ++i) exact[i] = to_exact(partial[i]);
        std::vector<ExactSum> all = exact;
        std::vector<float> all_rounded(n), part(local_n);
        comm::g_forward_exact(g, all, all_rounded);
        comm::scatter_forward_exact(g, exact, part, samples);
        for (std::size_t i = 0; i < local_n; ++i) REQUIRE(part[i] == all_rounded[whole_index(t.rank(), i)]);
        comm::gather_backward_exact(g, exact, part, samples);
        for (std::size_t i = 0; i < local_n; ++i) REQUIRE(part[i] == all_rounded[whole_index(t.rank(), i)]);
      }));
    }
  }
}

TEST_CASE("sequence parallel = single device: GPT tp 2 and 4, losses within 1e-5 over 20 steps",
          "[tensor_parallel][sequence_parallel]") {
  const int steps = 20;
  const RunConfig one = load_config(std::nullopt, small_gpt(false));
  const TrainingRun reference = single_device(one, steps);
  for (int tp : {2, 4}) {
    const TrainingRun run = tensor_sharded(sequence_parallel(small_gpt(false), {"parallel.tensor=" + std::to_string(tp)}), steps);
    check_losses_close(run.losses, reference.losses, 1e-5, "gpt tp=" + std::to_string(tp) + " + sequence parallel");
    CHECK(run.losses.back() < run.losses.front());
  }
}

TEST_CASE("sequence parallel = single device bitwise in deterministic mode: GPT tp 2 and 4, 20 steps",
          "[tensor_parallel][sequence_parallel][deterministic]") {
  const int steps = 20;
  const TrainingRun reference = single_device(load_config(std::nullopt, small_gpt(true)), steps);
  for (int tp : {2, 4}) {
    INFO("tp" << tp << " + sp");
    require_bitwise(tensor_sharded(sequence_parallel(small_gpt(true), {"parallel.tensor=" + std::to_string(tp)}), steps),
                    reference);
  }
}

TEST_CASE("sequence parallel in pipelines = single device: dp2 x pp2 x tp2 (with and without ZeRO-1) and tp2 x pp2 "
          "interleaved, within 1e-5 and bitwise in deterministic mode",
          "[tensor_parallel][sequence_parallel][pipeline][deterministic]") {
  const int steps = 20;
  const TrainingRun reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  const TrainingRun exact_reference = single_device(load_config(std::nullopt, small_gpt(true)), steps);
  for (const Layout& layout : kPipelineLayouts) {
    INFO(layout.name);
    const TrainingRun run = tensor_pipelined(sequence_parallel(small_gpt(false), layout.sets), steps);
    check_losses_close(run.losses, reference.losses, 1e-5, layout.name);
    require_bitwise(tensor_pipelined(sequence_parallel(small_gpt(true), layout.sets), steps), exact_reference);
  }
}

TEST_CASE("dp2 x pp2 x tp2 with sequence parallelism and gradient compression trains close to the single device",
          "[tensor_parallel][sequence_parallel][pipeline]") {
  const int steps = 6;
  const TrainingRun reference = single_device(load_config(std::nullopt, small_gpt(false)), steps);
  const TrainingRun run = tensor_pipelined(
      sequence_parallel(small_gpt(false), {"parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                                           "parallel.microbatches=2", "comm.compression=fp16"}),
      steps);
  check_losses_close(run.losses, reference.losses, 1e-3, "dp2 x pp2 x tp2 fp16 compression + sp");
}

TEST_CASE("sequence parallel from Session (the CLI's runner): tp 2 steps and evaluates as the single device",
          "[tensor_parallel][sequence_parallel][session]") {
  const std::vector<std::string> base = with(small_gpt(false), {"train.steps=3"});
  auto single = Session::create(load_config(std::nullopt, base));
  auto sp = Session::create(load_config(std::nullopt, with(base, {"parallel.tensor=2", "parallel.sequence_parallel=true"})));
  REQUIRE(single);
  REQUIRE(sp);
  check_sessions_close(**single, **sp, 3);
}

TEST_CASE("sequence parallel from the CLI, shards as actors and as tcp processes: the single device's losses and "
          "weights, bitwise",
          "[tensor_parallel][sequence_parallel][tcp][deterministic]") {
  const std::string base =
      "train --steps 3 --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=4 --set model.block_size=16 "
      "--set train.batch_size=4 --set train.eval_every=0 --set train.eval_batches=1 --set data.order=sequential "
      "--set train.deterministic=true --set train.threads=1 --set comm.address=127.0.0.1:0 ";
  TempDir dir;
  const TroupeRun single = run_troupe(dir.path, base + "--dump-losses " + dir.file("single.jsonl") + " --save " +
                                                    dir.file("single.st"));
  INFO(single.err);
  REQUIRE(single.code == 0);
  for (const std::string transport : {"inproc", "tcp"}) {
    INFO(transport);
    const TroupeRun sp = run_troupe(dir.path, base + "--set parallel.tensor=2 --set parallel.sequence_parallel=true "
                                                     "--set comm.transport=" + transport + " --dump-losses " +
                                                  dir.file("sp.jsonl") + " --save " + dir.file("sp.st"));
    INFO(sp.out << sp.err);
    REQUIRE(sp.code == 0);
    check_same_losses(dir.file("single.jsonl"), dir.file("sp.jsonl"), 3);
    check_same_weights(dir.file("single.st"), dir.file("sp.st"));
  }
}

TEST_CASE("the plan: sequence parallelism divides a shard's LayerNorm and residual activations by T too",
          "[tensor_parallel][sequence_parallel][plan]") {
  const std::vector<std::string> gpt = {"model.n_layer=2", "model.n_embd=32", "model.n_head=4", "model.block_size=16",
                                        "train.batch_size=4", "parallel.tensor=2"};
  const RunConfig plain = load_config(std::nullopt, gpt);
  const RunConfig sp = load_config(std::nullopt, with(gpt, {"parallel.sequence_parallel=true"}));
  const double without = plan::shard_memory(plain, plan_run(plain), 0).activations;
  const double with_sp = plan::shard_memory(sp, plan_run(sp), 0).activations;
  // Per token: embedding c, each block 4c + 4 replicated + (12c + h t)/T split, head 2c + 2 + V/T. With
  // sp the replicated parts are /T as well: rows = 4 x 16 tokens.
  const double c = 32, t = 16, h = 4, v = 256, rows = 4 * 16;
  CHECK(without == Approx(4 * rows * (c + 2 * (4 * c + 4 + (12 * c + h * t) / 2) + 2 * c + 2 + v / 2)));
  CHECK(with_sp == Approx(4 * rows * (c / 2 + 2 * ((4 * c + 4) / 2 + (12 * c + h * t) / 2) + (2 * c + 2) / 2 + v / 2)));
  CHECK(with_sp < without);
  CHECK_THAT(describe_plan(sp), Contains(fmt::format("activations {:.0f}", with_sp)));
}

TEST_CASE("sequence parallel config errors say what to change", "[tensor_parallel][sequence_parallel]") {
  auto err = [](std::vector<std::string> sets) { return config_error([&] { load_config(std::nullopt, sets); }); };
  CHECK_THAT(err(with(small_gpt(false), {"parallel.sequence_parallel=true"})),
             Contains("parallel.sequence_parallel = true with parallel.tensor = 1") &&
                 Contains("set parallel.tensor to 2 or more"));
  CHECK_THAT(err(with(small_gpt(false), {"model.block_size=18", "parallel.tensor=4", "parallel.sequence_parallel=true"})),
             Contains("parallel.tensor = 4 does not divide model.block_size = 18") && Contains("(2, 3, 6, 9, 18)"));
  CHECK_THAT(err({"model.kind=mlp", "parallel.tensor=2", "parallel.sequence_parallel=true"}),
             Contains("only the gpt has a sequence to split"));
  // block_size 18 with T = 2 divides: fine.
  CHECK_NOTHROW(load_config(std::nullopt, with(small_gpt(false), {"model.block_size=18", "parallel.tensor=2",
                                                                  "parallel.sequence_parallel=true"})));
}
