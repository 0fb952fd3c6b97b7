// The runner: `troupe train` and an application's Session start every strategy from the same runner
// (actors/runner.h), so they agree bit for bit — losses and final weights — and what Session cannot
// run is refused with a config error that says why.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>

#include "actors/runner.h"
#include "actors/session.h"
#include "runtime/config/config_loader.h"
#include "same_weights.h"
#include "temp_dir.h"
#include "troupe_command.h"

using namespace troupe;

namespace {

const std::vector<std::string> kSmall = {"model.n_layer=2",       "model.n_embd=32",      "model.n_head=2",
                                         "model.block_size=16",   "train.batch_size=8",   "train.threads=2",
                                         "train.eval_every=0",    "train.eval_batches=1", "data.order=sequential",
                                         "comm.address=127.0.0.1:0"};
constexpr int kSteps = 3;

// The "loss" of every line of a --dump-losses file (printed with 17 significant digits: exact).
std::vector<double> dumped_losses(const std::string& path) {
  std::vector<double> out;
  std::stringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("\"loss\": ");
    REQUIRE(at != std::string::npos);
    out.push_back(std::strtod(line.c_str() + at + 8, nullptr));
  }
  return out;
}

struct Strategy {
  const char* name;
  std::vector<std::string> sets;
};

}  // namespace

TEST_CASE("troupe train and Session agree bitwise for every strategy", "[runner][session]") {
  const std::vector<Strategy> strategies = {
      {"single device", {"train.deterministic=true"}},
      {"pipeline gpipe", {"train.deterministic=true", "parallel.pipeline=2", "parallel.microbatches=2",
                          "parallel.schedule=gpipe"}},
      {"pipeline interleaved", {"train.deterministic=true", "parallel.pipeline=2", "parallel.virtual_stages=2",
                                "parallel.microbatches=2", "parallel.schedule=interleaved"}},
      {"data parallel ring", {"train.deterministic=true", "parallel.data=2"}},
      {"data parallel alltoall", {"train.deterministic=true", "parallel.data=2", "parallel.gradient_exchange=alltoall"}},
      {"dp2 x pp2", {"train.deterministic=true", "parallel.data=2", "parallel.pipeline=2", "parallel.microbatches=2"}},
      {"ZeRO-1", {"train.deterministic=true", "parallel.data=2", "parallel.zero=1"}},
      {"compression int8", {"parallel.data=2", "comm.compression=int8"}},
      {"tp2 x pp2 1f1b", {"train.deterministic=true", "parallel.tensor=2", "parallel.pipeline=2",
                          "parallel.microbatches=2"}},
      {"dp2 x pp2 x tp2", {"train.deterministic=true", "parallel.data=2", "parallel.tensor=2", "parallel.pipeline=2",
                           "parallel.microbatches=2"}},
      {"parameter servers", {"train.deterministic=true", "parallel.data=2", "parallel.gradient_exchange=ps",
                             "ps.shards=2"}},
  };
  for (const Strategy& strategy : strategies) {
    INFO(strategy.name);
    TempDir dir;
    std::vector<std::string> sets = kSmall;
    sets.insert(sets.end(), strategy.sets.begin(), strategy.sets.end());
    sets.push_back("train.steps=" + std::to_string(kSteps));

    std::string args = "train";
    for (const std::string& s : sets) args += " --set " + s;
    const TroupeRun cli =
        run_troupe(dir.path, args + " --dump-losses " + dir.file("cli.jsonl") + " --save " + dir.file("cli.st"));
    INFO(cli.out << cli.err);
    REQUIRE(cli.code == 0);

    auto session = Session::create(load_config(std::nullopt, sets));
    REQUIRE(session);
    std::vector<double> losses;
    for (int s = 0; s < kSteps; ++s) {
      auto stats = (*session)->step();
      REQUIRE(stats);
      losses.push_back(stats->loss);
    }
    REQUIRE((*session)->save_weights(dir.file("session.st")));

    const std::vector<double> cli_losses = dumped_losses(dir.file("cli.jsonl"));
    REQUIRE(cli_losses.size() == losses.size());
    for (std::size_t s = 0; s < losses.size(); ++s) CHECK(cli_losses[s] == losses[s]);
    check_same_weights(dir.file("cli.st"), dir.file("session.st"));
  }
}

TEST_CASE("Session refuses ranks as processes with a config error that says what to use", "[runner][session]") {
  std::vector<std::string> sets = kSmall;
  sets.insert(sets.end(), {"parallel.data=2", "comm.transport=tcp"});
  auto session = Session::create(load_config(std::nullopt, sets));
  REQUIRE_FALSE(session);
  CHECK(session.error().kind() == ErrorKind::kConfig);
  CHECK_THAT(session.error().what(), Catch::Contains("comm.transport = tcp") && Catch::Contains("comm.transport = inproc"));
}

TEST_CASE("troupe train --print-plan prints the layout and trains nothing", "[runner][cli]") {
  TempDir dir;
  const TroupeRun r = run_troupe(dir.path, "train --print-plan --set parallel.data=2 --set parallel.pipeline=2 "
                                           "--set parallel.microbatches=2 --set comm.transport=tcp --save " +
                                               dir.file("w.st"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("data 2 x pipe 2 x tensor 1 = 4 ranks in 2 processes (tcp over loopback)"));
  CHECK_THAT(r.out, Catch::Contains("data:   [0 2] [1 3]  gradient exchange ring"));
  CHECK_THAT(r.out, Catch::Contains("stage 1: RECV_F0 F0 B0 SEND_B0 RECV_F1 F1 B1 SEND_B1 STEP"));
  CHECK_FALSE(std::filesystem::exists(dir.file("w.st")));  // nothing trained, nothing written

  const TroupeRun bad = run_troupe(dir.path, "train --print-plan --set parallel.pipeline=9");
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Catch::Contains("needs at least 9 layers"));
}

TEST_CASE("plan_run gives every strategy's Topology, the same one --print-plan describes", "[runner]") {
  std::vector<std::string> sets = kSmall;
  sets.insert(sets.end(), {"parallel.data=3", "parallel.gradient_exchange=ps", "ps.shards=2", "train.batch_size=12",
                           "comm.transport=tcp"});
  const RunConfig config = load_config(std::nullopt, sets);
  const plan::Topology t = plan_run(config);
  CHECK(t.world_size() == 3);
  CHECK(t.processes() == 3);
  REQUIRE(t.servers);
  CHECK(t.servers->shards == 2);
  CHECK_THAT(describe_plan(config), Catch::Contains("3 ranks in 3 processes"));
}
