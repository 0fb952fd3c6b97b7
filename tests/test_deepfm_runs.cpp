// Owns the tests of model.kind = deepfm as `troupe train` and Session run it (actors/recommender_job.h):
// the two agree bitwise, workers as tcp processes equal workers as threads, the end-to-end run reaches its
// test AUC, checkpoints resume bitwise under other shard and worker counts, --trace shows the workers' and
// shards' spans, and the settings that do not fit DeepFM are config errors.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
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

// `troupe train` with `sets` (and `more` command-line text), its losses dumped to NAME.jsonl and its
// weights saved to NAME.st in `dir`; the run must succeed.
TroupeRun train_saving(const TempDir& dir, const std::vector<std::string>& sets, const std::string& name,
                       const std::string& more = "") {
  const TroupeRun r = run_troupe(dir.path, train_args(sets) + more + " --dump-losses " + dir.file(name + ".jsonl") +
                                               " --save " + dir.file(name + ".st"));
  INFO(name << ":\n" << r.out << r.err);
  REQUIRE(r.code == 0);
  return r;
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
  const TroupeRun cli = train_saving(dir, sets, "cli");
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
  train_saving(dir, sets, "threads");
  sets.push_back("comm.transport=tcp");
  const TroupeRun tcp = train_saving(dir, sets, "tcp");
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
  train_saving(dir, sets, "threads");
  sets.push_back("comm.transport=tcp");
  sets.push_back("comm.timeout_s=4");  // the stall is found within 2 s
  const TroupeRun tcp = train_saving(dir, sets, "tcp", " --set \"fault.inject=kill rank 1 at step 1; stall rank 2 at step 2\"");
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
                                                   dir.file("ck") + " --set comm.transport=tcp --set ps.mode=async");
  CHECK(ckpt.code == 2);
  CHECK_THAT(ckpt.err, Contains("train.checkpoint_dir with model.kind = deepfm, comm.transport = tcp and ps.mode = async") &&
                           Contains("use ps.mode = sync, or comm.transport = inproc"));
  CHECK_FALSE(std::filesystem::exists(dir.file("ck")));

  RunConfig in_code = load_config(std::nullopt, kSmallDeepfm);
  in_code.parallel.pipeline = 2;
  auto session = Session::create(in_code);
  REQUIRE_FALSE(session);
  CHECK(session.error().kind() == ErrorKind::kConfig);
  CHECK_THAT(session.error().what(), Contains("model.kind = deepfm with parallel.pipeline = 2"));
}

namespace {

// The steps of a --dump-losses file as they compare across runs: step, loss, learning rate, evaluation.
std::vector<std::vector<double>> comparable(const std::string& path) {
  return {dumped(path, "step"), dumped(path, "loss"), dumped(path, "lr"), dumped(path, "val_loss")};
}

}  // namespace

TEST_CASE("deepfm from troupe train: a checkpoint resumes bitwise under other shard counts, close under other worker counts",
          "[deepfm][runner][checkpoint]") {
  TempDir dir;
  const std::string ck = dir.file("ck");
  std::vector<std::string> sets = kSmallDeepfm;
  // A schedule and the sync norm round, so that the step matters to the learning rate and the clipping.
  sets.insert(sets.end(), {"train.steps=6", "train.eval_every=3", "train.lr_schedule=cosine", "train.warmup_steps=2",
                           "train.grad_clip=0.5", "train.deterministic=true"});
  const TroupeRun full = run_troupe(dir.path, train_args(sets) + " --set train.checkpoint_dir=" + ck +
                                                  " --set train.checkpoint_every=3 --dump-losses " + dir.file("full.jsonl") +
                                                  " --save " + dir.file("full.st"));
  INFO(full.out << full.err);
  REQUIRE(full.code == 0);
  CHECK_THAT(full.out, Contains("2 checkpoints written"));
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "config.toml", "manifest.json"})
    CHECK(std::filesystem::is_regular_file(std::filesystem::path(ck) / "step-000003" / file));
  // Tables whole, by name, with their optimizer state and step count.
  const std::string manifest = slurp(std::filesystem::path(ck) / "step-000003" / "manifest.json");
  CHECK_THAT(manifest, Contains("\"deep.embedding.0\": 3"));
  const std::vector<std::vector<double>> want = comparable(dir.file("full.jsonl"));
  REQUIRE(want[0].size() == 6);
  std::filesystem::remove_all(std::filesystem::path(ck) / "step-000006");  // as if the run had died after step 5

  // The same 2 workers over 2, 3 and 1 shards: bitwise, and so is the final checkpoint's state.
  std::map<std::string, std::string> final_state;
  for (const std::string layout : {"", " --set ps.shards=3", " --set ps.shards=1"}) {
    INFO("resumed under:" << layout);
    const TroupeRun r = run_troupe(dir.path, "train --resume " + ck + layout + " --dump-losses " +
                                                 dir.file("resumed.jsonl") + " --save " + dir.file("resumed.st"));
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Contains("resuming from " + ck + "/step-000003 after step 3"));
    const std::vector<std::vector<double>> got = comparable(dir.file("resumed.jsonl"));
    for (std::size_t k = 0; k < 3; ++k)  // step, loss, lr: the last 3 of the uninterrupted run
      CHECK(got[k] == std::vector<double>(want[k].begin() + 3, want[k].end()));
    CHECK(got[3] == std::vector<double>{want[3].back()});  // the evaluation after step 6
    CHECK(slurp(dir.file("resumed.st")) == slurp(dir.file("full.st")));
    for (const char* file : {"model.safetensors", "optimizer.safetensors"})  // the state, whatever the shard count
      final_state[file] = slurp(std::filesystem::path(ck) / "step-000006" / file);
    std::filesystem::remove_all(std::filesystem::path(ck) / "step-000006");
  }
  // Another worker count: the step's gradient is summed in other float partial sums, as in an uninterrupted
  // run with that count; within rounding.
  for (const std::string layout : {" --set parallel.data=1 --set ps.shards=1", " --set parallel.data=4 --set ps.shards=3"}) {
    INFO("resumed under:" << layout);
    const TroupeRun r = run_troupe(dir.path, "train --resume " + ck + layout + " --dump-losses " + dir.file("resumed.jsonl"));
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    const std::vector<std::vector<double>> got = comparable(dir.file("resumed.jsonl"));
    REQUIRE(got[1].size() == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(got[1][i] == Approx(want[1][3 + i]).epsilon(1e-5));
    std::filesystem::remove_all(std::filesystem::path(ck) / "step-000006");
  }

  // Workers as tcp processes: each starts at the checkpoint's step; their checkpoints are the threads' too.
  const std::string tcp_ck = dir.file("tcp_ck");
  const TroupeRun tcp_resumed = run_troupe(dir.path, "train --resume " + ck + " --set comm.transport=tcp --set ps.shards=3" +
                                                         " --set train.checkpoint_dir=" + tcp_ck +
                                                         " --set train.checkpoint_every=1 --dump-losses " +
                                                         dir.file("tcp.jsonl") + " --save " + dir.file("tcp.st"));
  INFO(tcp_resumed.out << tcp_resumed.err);
  REQUIRE(tcp_resumed.code == 0);
  CHECK_THAT(tcp_resumed.out, Contains("2 workers as processes over tcp"));
  CHECK(comparable(dir.file("tcp.jsonl"))[1] == std::vector<double>(want[1].begin() + 3, want[1].end()));
  CHECK(slurp(dir.file("tcp.st")) == slurp(dir.file("full.st")));
  for (const auto& [file, bytes] : final_state) CHECK(slurp(std::filesystem::path(tcp_ck) / "step-000006" / file) == bytes);
  // A checkpoint the processes wrote mid-run (worker 1 may already be pushing the next step) is the state of
  // its step: threads resumed from it give the uninterrupted run's last two steps.
  for (const char* later : {"step-000005", "step-000006"}) std::filesystem::remove_all(std::filesystem::path(tcp_ck) / later);
  const TroupeRun from_tcp = run_troupe(dir.path, "train --resume " + tcp_ck + " --set comm.transport=inproc --dump-losses " +
                                                      dir.file("from_tcp.jsonl"));
  INFO(from_tcp.out << from_tcp.err);
  REQUIRE(from_tcp.code == 0);
  CHECK_THAT(from_tcp.out, Contains("resuming from " + tcp_ck + "/step-000004 after step 4"));
  CHECK(comparable(dir.file("from_tcp.jsonl"))[1] == std::vector<double>(want[1].begin() + 4, want[1].end()));

  // Async: the checkpoint holds the shards' state at the step boundary exactly, and the run goes on from it
  // (not bitwise: the interleaving of async pushes is not reproducible, resumed or not).
  const TroupeRun async = run_troupe(
      dir.path, "train --resume " + ck + " --set ps.mode=async --set train.grad_clip=0 --set train.deterministic=false");
  INFO(async.out << async.err);
  CHECK(async.code == 0);
  CHECK_THAT(async.out, Contains("resuming from " + ck + "/step-000003 after step 3"));
  // ... and so do async worker processes, which may resume though they cannot write a checkpoint.
  const TroupeRun async_tcp = run_troupe(dir.path, "train --resume " + ck + "/step-000003 --set ps.mode=async " +
                                                       "--set train.grad_clip=0 --set train.deterministic=false " +
                                                       "--set train.checkpoint_dir= --set train.checkpoint_every=0 --set comm.transport=tcp");
  INFO(async_tcp.out << async_tcp.err);
  CHECK(async_tcp.code == 0);
  CHECK_THAT(async_tcp.out, Contains("resuming from " + ck + "/step-000003 after step 3") &&
                                Contains("2 workers as processes over tcp"));

  // The seed makes the click log: it cannot change on resume (the newest checkpoint is the async run's).
  const TroupeRun seed = run_troupe(dir.path, "train --resume " + ck + " --set train.seed=5");
  CHECK(seed.code == 2);
  CHECK_THAT(seed.err, Contains("train.seed = 5 for this run, but the checkpoint " + ck + "/step-000006 was written with "
                                "train.seed = 1337") && Contains("the seed makes the click log itself"));
}

TEST_CASE("deepfm from troupe train --trace: each worker's pull, forward+backward and push, each shard's updates",
          "[deepfm][runner][trace]") {
  TempDir dir;
  std::vector<std::string> sets = kSmallDeepfm;
  sets.push_back("train.steps=3");
  const TroupeRun r = run_troupe(dir.path, train_args(sets) + " --trace " + dir.file("trace.json"));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const std::string trace = slurp(dir.file("trace.json"));
  for (const char* track : {"worker 0", "worker 1", "ps shard 0", "ps shard 1"})
    CHECK_THAT(trace, Contains(std::string("\"name\":\"") + track + "\""));
  for (const char* span : {"\"pull\"", "\"forward+backward\"", "\"push\"", "\"update\""}) CHECK_THAT(trace, Contains(span));
  // 3 steps: every worker pulls 3 times, every shard applies 3 updates.
  std::size_t pulls = 0, updates = 0;
  for (std::size_t at = 0; (at = trace.find("\"name\":\"pull\"", at)) != std::string::npos; ++at) ++pulls;
  for (std::size_t at = 0; (at = trace.find("\"name\":\"update\"", at)) != std::string::npos; ++at) ++updates;
  CHECK(pulls == 6);
  CHECK(updates == 6);
  CHECK_THAT(r.out, Contains("trace written to " + dir.file("trace.json")));
  CHECK_THAT(r.out, Contains("ps shard 1"));
}
