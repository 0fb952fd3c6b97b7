// Run directories (cli/run_dir.h) as a user meets them: what a run keeps, steps counted from 1 on screen
// and in every file, the mlp's samples/s, bad --run-dir input, and what a failed run leaves.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/temp_dir.h"
#include "tests/troupe_command.h"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {
const std::string kTiny =
    "train --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set model.block_size=16 "
    "--set train.batch_size=4 --set train.threads=1 --set train.eval_batches=1 ";

std::vector<nlohmann::json> json_lines(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}
}  // namespace

TEST_CASE("run_dir: a run keeps config, plan, log, metrics, trace and weights, steps counted from 1 everywhere",
          "[cli][run_dir]") {
  TempDir dir("troupe_run_dir");
  const std::string run = dir.file("run");
  const TroupeRun r = run_troupe(dir.path, kTiny + "--steps 6 --set train.eval_every=3 --set parallel.pipeline=2 "
                                                   "--set parallel.microbatches=2 --run-dir " + run +
                                                   " --dump-losses " + dir.file("dump.jsonl"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  for (const char* name : {"config.toml", "plan.txt", "log.txt", "metrics.jsonl", "metrics.csv", "trace.json",
                           "weights.safetensors", "report.html"})
    CHECK(fs::exists(fs::path(run) / name));
  CHECK_FALSE(fs::exists(fs::path(run) / "metrics.partial.jsonl"));
  CHECK_FALSE(fs::exists(fs::path(run) / "FAILED.txt"));
  // Printed at the start and at the end, with what each file is.
  CHECK_THAT(r.out, Contains("troupe: run directory " + run + "/") && Contains("this run is kept in " + run + "/") &&
                        Contains("metrics.jsonl        6 steps"));
  // The screen, the log and the files count steps alike.
  CHECK_THAT(r.out, Contains("step 1/6") && Contains("eval after step 3:") && Contains("eval after step 6:"));
  const std::string log = slurp(fs::path(run) / "log.txt");
  CHECK_THAT(log, Contains("step 1/6") && Contains("eval after step 3:") && Contains("pipeline of 2 stages"));
  CHECK_THAT(slurp(fs::path(run) / "plan.txt"), Contains("schedule 1f1b, 2 micro-batches"));

  const auto rows = json_lines(run + "/metrics.jsonl");
  const auto dump = json_lines(dir.file("dump.jsonl"));
  REQUIRE(rows.size() == 6);
  REQUIRE(dump.size() == 6);
  const auto csv = lines_of(run + "/metrics.csv");
  REQUIRE(csv.size() == 7);
  CHECK(csv[0].rfind("step,loss,lr,tokens_per_s,grad_norm,step_s,elapsed_s,val_loss,val_accuracy,stage_0_compute_s", 0) == 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& j = rows[i];
    CHECK(j["step"].get<int>() == static_cast<int>(i) + 1);
    CHECK(dump[i]["step"] == j["step"]);
    CHECK(dump[i]["loss"] == j["loss"]);
    CHECK(csv[i + 1].rfind(std::to_string(i + 1) + ",", 0) == 0);
    CHECK(j["tokens_per_s"].get<double>() > 0.0);
    CHECK(j["grad_norm"].get<double>() > 0.0);  // train.grad_clip defaults to 1: measured
    CHECK(j["step_s"].get<double>() > 0.0);
    CHECK(j.contains("val_loss") == (i == 2 || i == 5));
    REQUIRE(j["stages"].size() == 2);
    CHECK(j["stages"][0]["name"] == "stage 0");
    const double total = j["stages"][1]["compute_s"].get<double>() + j["stages"][1]["comm_s"].get<double>() +
                         j["stages"][1]["idle_s"].get<double>();
    const auto& w = j["window_us"];
    CHECK(total == Approx((w[1].get<double>() - w[0].get<double>()) / 1e6).margin(2e-6));
    CHECK(j["stages"][1]["compute_s"].get<double>() > 0.0);
  }

  // config.toml is the resolved configuration: it repeats the run to the bit.
  const TroupeRun again = run_troupe(dir.path, "train --config " + run + "/config.toml --dump-losses " + dir.file("again.jsonl"));
  REQUIRE(again.code == 0);
  const auto repeat = json_lines(dir.file("again.jsonl"));
  REQUIRE(repeat.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) CHECK(repeat[i]["loss"] == rows[i]["loss"]);
  // The weights describe their model: no model flags needed to start from them.
  CHECK(run_troupe(dir.path, "train --set train.batch_size=4 --set train.threads=1 --steps 1 --init-from " + run +
                                 "/weights.safetensors").code == 0);
  // Without --run-dir or --runs nothing is kept.
  const auto before = dir.entries();
  CHECK(run_troupe(dir.path, kTiny + "--steps 1").code == 0);
  CHECK(dir.entries() == before);
}

TEST_CASE("run_dir: the mlp counts samples per second, and its metrics carry the test accuracy", "[cli][run_dir]") {
  TempDir dir("troupe_run_dir");
  const TroupeRun r = run_troupe(dir.path, "train --set model.kind=mlp --set model.mlp_hidden=16 --set train.batch_size=32 "
                                           "--set train.threads=1 --steps 3 --run-dir " + dir.file("mlp"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Contains("samples/s") && Contains("test accuracy"));
  CHECK_THAT(r.out, !Contains("tokens/s") && !Contains("tok/s"));
  const auto rows = json_lines(dir.file("mlp") + "/metrics.jsonl");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].contains("samples_per_s"));
  CHECK_FALSE(rows[0].contains("tokens_per_s"));
  CHECK(rows[2]["val_accuracy"].get<double>() > 0.0);
  CHECK_THAT(lines_of(dir.file("mlp") + "/metrics.csv")[0], Contains(",samples_per_s,"));
}

TEST_CASE("run_dir: --runs makes a fresh dated directory per run, and a repeated option's last value wins",
          "[cli][run_dir]") {
  TempDir dir("troupe_run_dir");
  for (int i = 0; i < 2; ++i)
    REQUIRE(run_troupe(dir.path, kTiny + "--steps 5 --steps 2 --runs " + dir.file("runs")).code == 0);
  std::vector<std::string> made;
  for (const auto& e : fs::directory_iterator(dir.file("runs"))) made.push_back(e.path().filename().string());
  REQUIRE(made.size() == 2);
  for (const std::string& name : made) {
    CHECK(name.size() >= 19);
    CHECK(name.find("-gpt") != std::string::npos);
    CHECK(json_lines(dir.file("runs") + "/" + name + "/metrics.jsonl").size() == 2);
  }
  // --run-dir wins over --runs (scripts/train passes --runs; a user's --run-dir replaces it).
  REQUIRE(run_troupe(dir.path, kTiny + "--steps 1 --runs " + dir.file("runs") + " --run-dir " + dir.file("mine")).code == 0);
  CHECK(fs::exists(dir.file("mine") + "/metrics.jsonl"));
  CHECK(std::distance(fs::directory_iterator(dir.file("runs")), fs::directory_iterator()) == 2);
}

TEST_CASE("run_dir: an unusable --run-dir or bad input is one line and exit 2, and makes no directory",
          "[cli][run_dir]") {
  TempDir dir("troupe_run_dir");
  TroupeRun r = run_troupe(dir.path, kTiny + "--steps 1 --run-dir /proc/troupe-cannot-be-here");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("--run-dir /proc/troupe-cannot-be-here: cannot create the directory"));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);  // a blank line, then the error

  fs::create_directories(dir.path / "full");
  dir.write("full/something.txt", "x");
  r = run_troupe(dir.path, kTiny + "--steps 1 --run-dir " + dir.file("full"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("directory is not empty"));

  r = run_troupe(dir.path, kTiny + "--steps 1 --set train.lr=-1 --run-dir " + dir.file("bad"));
  CHECK(r.code == 2);
  CHECK_FALSE(fs::exists(dir.file("bad")));

  r = run_troupe(dir.path, "report " + dir.file("full"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("has no metrics.jsonl"));
  r = run_troupe(dir.path, "report " + dir.file("nowhere"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("no such directory"));
}

TEST_CASE("run_dir: a failed run leaves partial files only inside its directory, named so, with FAILED.txt",
          "[cli][run_dir][tcp]") {
  TempDir dir("troupe_run_dir");
  const std::string run = dir.file("run");
  const TroupeRun r = run_troupe(dir.path,
                                 kTiny + "--steps 4 --set train.batch_size=8 --set parallel.data=2 --set comm.transport=tcp "
                                         "--set comm.address=127.0.0.1:0 --set comm.timeout_s=60 "
                                         "--set fault.max_restarts=0 --run-dir " + run +
                                         " --dump-losses " + dir.file("dump.jsonl") + " --save " + dir.file("w.st"),
                                 "TROUPE_TEST_CRASH=1:2");
  INFO(r.out << r.err);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Contains("the run failed; what it kept is in " + run + "/"));
  CHECK(dir.entries() == std::vector<std::string>{"run"});  // no dump, no weights, no .partial beside it
  CHECK(fs::exists(run + "/FAILED.txt"));
  CHECK(fs::exists(run + "/metrics.partial.jsonl"));
  CHECK_FALSE(fs::exists(run + "/metrics.jsonl"));
  CHECK_FALSE(fs::exists(run + "/weights.safetensors"));
  CHECK_THAT(slurp(fs::path(run) / "log.txt"), Contains("troupe: error: "));
  // The report still reads a failed run's metrics, and says it failed.
  const TroupeRun rep = run_troupe(dir.path, "report " + run);
  CHECK(rep.code == 0);
  CHECK_THAT(slurp(fs::path(run) / "report.html"), Contains("(failed: metrics up to the failure)"));
}
