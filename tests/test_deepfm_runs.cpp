// Owns the tests of model.kind = deepfm as `troupe train` and Session run it (actors/recommender_job.h):
// the two agree bitwise, workers as tcp processes equal workers as threads, the end-to-end run reaches its
// test AUC, and the settings that do not fit DeepFM are config errors.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "actors/session.h"
#include "runtime/config/config_loader.h"
#include "same_weights.h"
#include "temp_dir.h"
#include "troupe_command.h"

using namespace troupe;
using Catch::Matchers::Contains;

namespace {

// A small click log (6 fields, the largest of 10000 ids) on 2 workers and 2 shards, in sync mode.
const std::vector<std::string> kSmallDeepfm = {
    "model.kind=deepfm",    "parallel.gradient_exchange=ps", "model.max_cardinality=10000", "model.hashed_rows=4096",
    "data.test_samples=1024", "train.batch_size=32",        "parallel.data=2",              "ps.shards=2",
    "optim.kind=adam",      "optim.lr=0.01",                "train.threads=2",              "train.eval_every=0",
    "comm.address=127.0.0.1:0"};

std::string train_args(const std::vector<std::string>& sets) {
  std::string args = "train";
  for (const std::string& s : sets) args += " --set " + s;
  return args;
}

// The value after `key` on every line of a --dump-losses file that has it (17 significant digits: exact).
std::vector<double> dumped(const std::string& path, const std::string& key) {
  std::vector<double> out;
  std::stringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("\"" + key + "\": ");
    if (at != std::string::npos) out.push_back(std::strtod(line.c_str() + at + key.size() + 4, nullptr));
  }
  return out;
}

}  // namespace

TEST_CASE("deepfm from troupe train and Session: losses, test log-loss and weights agree bitwise", "[deepfm][runner]") {
  TempDir dir;
  std::vector<std::string> sets = kSmallDeepfm;
  sets.push_back("train.steps=5");
  const TroupeRun cli =
      run_troupe(dir.path, train_args(sets) + " --dump-losses " + dir.file("cli.jsonl") + " --save " + dir.file("cli.st"));
  INFO(cli.out << cli.err);
  REQUIRE(cli.code == 0);
  CHECK_THAT(cli.out, Contains("parameter servers, 2 workers (threads) x 2 shards, mode sync"));
  CHECK_THAT(cli.out, Contains("deepfm (embed_dim=8 deep_hidden=64,32 hashed_rows=4096 max_cardinality=10000)"));
  CHECK_THAT(cli.out, Contains("eval after step 5: test log-loss"));

  auto session = Session::create(load_config(std::nullopt, sets));
  REQUIRE(session);
  std::vector<double> losses;
  for (int s = 0; s < 5; ++s) {
    auto stats = (*session)->step();
    REQUIRE(stats);
    losses.push_back(stats->loss);
  }
  auto eval = (*session)->evaluate();
  REQUIRE(eval);
  CHECK(eval->rows == 1024);
  CHECK(eval->auc > 0.5);
  REQUIRE((*session)->save_weights(dir.file("session.st")));

  CHECK(dumped(dir.file("cli.jsonl"), "loss") == losses);
  CHECK(dumped(dir.file("cli.jsonl"), "val_loss") == std::vector<double>{eval->loss});
  check_same_weights(dir.file("cli.st"), dir.file("session.st"));

  // troupe eval reads the model from the file and scores the same held-out samples from its whole tables.
  const TroupeRun ev = run_troupe(dir.path, "eval --weights " + dir.file("cli.st") + " --set data.test_samples=1024");
  INFO(ev.out << ev.err);
  REQUIRE(ev.code == 0);
  char expected[96];
  std::snprintf(expected, sizeof expected, "test AUC %.4f, log-loss %.4f over 1024", eval->auc, eval->loss);
  CHECK_THAT(ev.out, Contains(expected));
}

TEST_CASE("deepfm from troupe train: workers as tcp processes give the threads' losses and weights bitwise",
          "[deepfm][runner][tcp]") {
  TempDir dir;
  std::vector<std::string> sets = kSmallDeepfm;
  sets.push_back("train.steps=4");
  const TroupeRun threads = run_troupe(dir.path, train_args(sets) + " --dump-losses " + dir.file("threads.jsonl") +
                                                     " --save " + dir.file("threads.st"));
  INFO(threads.out << threads.err);
  REQUIRE(threads.code == 0);
  sets.push_back("comm.transport=tcp");
  const TroupeRun tcp =
      run_troupe(dir.path, train_args(sets) + " --dump-losses " + dir.file("tcp.jsonl") + " --save " + dir.file("tcp.st"));
  INFO(tcp.out << tcp.err);
  REQUIRE(tcp.code == 0);
  CHECK_THAT(tcp.out, Contains("2 workers as processes over tcp"));
  CHECK(dumped(dir.file("tcp.jsonl"), "loss") == dumped(dir.file("threads.jsonl"), "loss"));
  CHECK(dumped(dir.file("tcp.jsonl"), "val_loss") == dumped(dir.file("threads.jsonl"), "val_loss"));
  check_same_weights(dir.file("threads.st"), dir.file("tcp.st"));
}

TEST_CASE("deepfm worker processes killed or stalled (fault.inject) are restarted and the run stays bitwise the threads'",
          "[deepfm][runner][tcp][restart]") {
  TempDir dir;
  std::vector<std::string> sets = kSmallDeepfm;
  sets.push_back("train.steps=4");
  sets.push_back("parallel.data=3");
  sets.push_back("train.batch_size=48");
  const TroupeRun threads = run_troupe(dir.path, train_args(sets) + " --dump-losses " + dir.file("threads.jsonl") +
                                                     " --save " + dir.file("threads.st"));
  INFO(threads.out << threads.err);
  REQUIRE(threads.code == 0);
  sets.push_back("comm.transport=tcp");
  sets.push_back("comm.timeout_s=4");  // the stall is found within 2 s
  const TroupeRun tcp = run_troupe(dir.path, train_args(sets) + " --set \"fault.inject=kill rank 1 at step 1; stall rank 2 "
                                                                "at step 2\" --dump-losses " + dir.file("tcp.jsonl") +
                                                 " --save " + dir.file("tcp.st"));
  INFO(tcp.out << tcp.err);
  REQUIRE(tcp.code == 0);
  CHECK_THAT(tcp.err, Contains("sent no heartbeat"));
  CHECK_THAT(tcp.out, Contains("2 worker restarts") && Contains("2 restarts (ps.max_restarts = 3):") &&
                          Contains("  ps worker 1 in step 1: ") && Contains("  ps worker 2 in step 2: "));
  CHECK(dumped(dir.file("tcp.jsonl"), "loss") == dumped(dir.file("threads.jsonl"), "loss"));
  check_same_weights(dir.file("threads.st"), dir.file("tcp.st"));
  // Its workers are not restarted in-process: a worker clause is a config error that says what to use.
  const TroupeRun bad = run_troupe(dir.path, train_args(sets) + " --set \"fault.inject=throw worker 1 at step 1\"");
  CHECK(bad.code != 0);
  CHECK_THAT(bad.err, Contains("does not restart a worker whose step failed yet; 'kill rank W at step S'"));
}

// Budget: 300 sync steps of 512 samples (2 workers x 256) over the click log whose largest field has 100000
// ids, 2 shards, train.threads=2: about 3 s on the 2-core machine. Measured (seed 1337): test AUC 0.8306
// and log-loss 0.4658 (2026-12-05); the hidden model's own on the same 8192 samples: AUC 0.9275, log-loss 0.3179.
TEST_CASE("troupe train --set model.kind=deepfm: test AUC above 0.80 after 300 sync steps", "[deepfm][e2e]") {
  TempDir dir;
  const TroupeRun r = run_troupe(
      dir.path, "train --set model.kind=deepfm --set parallel.gradient_exchange=ps --set parallel.data=2 --set "
                "ps.shards=2 --set model.max_cardinality=100000 --set model.hashed_rows=65536 --set "
                "data.test_samples=8192 --set train.batch_size=512 --set optim.kind=adam --set optim.lr=0.01 --set "
                "train.steps=300 --set train.eval_every=100 --set train.threads=2");
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  std::smatch m;
  const std::regex report(R"(deepfm test \(8192 held-out samples\): log-loss ([0-9.]+), AUC ([0-9.]+))");
  REQUIRE(std::regex_search(r.out, m, report));
  const double log_loss = std::stod(m[1].str()), auc = std::stod(m[2].str());
  CHECK(auc > 0.80);
  CHECK(log_loss < 0.50);
  CHECK_THAT(r.out, Contains("eval after step 100: test log-loss"));
}

TEST_CASE("deepfm: async and ssp modes run from troupe train and learn", "[deepfm][runner]") {
  TempDir dir;
  for (const char* mode : {"ps.mode=async", "ps.mode=ssp"}) {
    std::vector<std::string> sets = kSmallDeepfm;
    sets.insert(sets.end(), {mode, "train.steps=60", "train.grad_clip=0"});
    if (std::string(mode) == "ps.mode=ssp") sets.push_back("ps.staleness=2");
    const TroupeRun r = run_troupe(dir.path, train_args(sets) + " --dump-losses " + dir.file("l.jsonl"));
    INFO(mode << "\n" << r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Contains(std::string("mode ") + (std::string(mode) == "ps.mode=ssp" ? "ssp (staleness 2)" : "async")));
    const std::vector<double> l = dumped(dir.file("l.jsonl"), "loss");
    REQUIRE(l.size() == 60);
    double first = 0, last = 0;
    for (int i = 0; i < 10; ++i) first += l[static_cast<std::size_t>(i)], last += l[l.size() - 1 - static_cast<std::size_t>(i)];
    CHECK(last < first);
  }
}

TEST_CASE("deepfm: settings that do not fit it are config errors that say what to set", "[deepfm][config]") {
  // Reading the settings refuses them (load_config validates); a RunConfig built in code, at Session::create.
  auto error_of = [](std::vector<std::string> extra, const std::vector<std::string>& base = kSmallDeepfm) {
    std::vector<std::string> sets = base;
    sets.insert(sets.end(), extra.begin(), extra.end());
    std::string loaded;
    try {
      load_config(std::nullopt, sets);
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kConfig);
      loaded = e.what();
    }
    return loaded;
  };
  CHECK_THAT(error_of({"parallel.pipeline=2"}), Contains("model.kind = deepfm with parallel.pipeline = 2") &&
                                                    Contains("set parallel.pipeline = 1"));
  CHECK_THAT(error_of({"parallel.microbatches=2"}), Contains("set parallel.microbatches = 1"));
  CHECK_THAT(error_of({"parallel.tensor=2"}), Contains("model.kind = deepfm with parallel.tensor = 2"));
  CHECK_THAT(error_of({"train.precision=bf16"}), Contains("use train.precision = f32"));
  CHECK_THAT(error_of({"data.path=/tmp/x"}), Contains("remove data.path"));
  CHECK_THAT(error_of({}, {"model.kind=deepfm"}),
             Contains("set parallel.gradient_exchange = ps"));
  CHECK_THAT(error_of({"train.batch_size=33"}), Contains("train.batch_size = 33 is not divisible by parallel.data"));

  TempDir dir;
  const TroupeRun r = run_troupe(dir.path, train_args(kSmallDeepfm) + " --set parallel.pipeline=2");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Contains("model.kind = deepfm with parallel.pipeline = 2"));
  const TroupeRun ckpt = run_troupe(dir.path, train_args(kSmallDeepfm) + " --set train.steps=1 --set train.checkpoint_dir=" +
                                                   dir.file("ck"));
  CHECK(ckpt.code == 2);
  CHECK_THAT(ckpt.err, Contains("train.checkpoint_dir with parallel.gradient_exchange = ps"));

  RunConfig in_code = load_config(std::nullopt, kSmallDeepfm);
  in_code.parallel.pipeline = 2;
  auto session = Session::create(in_code);
  REQUIRE_FALSE(session);
  CHECK(session.error().kind() == ErrorKind::kConfig);
  CHECK_THAT(session.error().what(), Contains("model.kind = deepfm with parallel.pipeline = 2"));
}
