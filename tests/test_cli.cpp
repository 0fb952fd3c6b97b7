// The `troupe` program as a user meets it: exit codes, one-line errors, nothing written on bad input,
// weight export/import and the loss dump format.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/troupe_command.h"

namespace fs = std::filesystem;

namespace {
using Run = TroupeRun;

// A scratch directory per test case, removed afterwards.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("troupe_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  fs::path operator/(const std::string& name) const { return dir / name; }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::size_t file_count() const { return std::distance(fs::directory_iterator(dir), fs::directory_iterator()); }
};

Run troupe(const Scratch& s, const std::string& args) { return run_troupe(s.dir, args); }

// Rewrites a safetensors file without its "__metadata__", as troupe wrote weights before they described
// their model: 8-byte header length, the JSON header padded to 8 bytes, then the data as it was.
void strip_metadata(const std::string& path) {
  std::string bytes = slurp(path);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  auto header = nlohmann::ordered_json::parse(bytes.substr(8, n));
  header.erase("__metadata__");
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t len = text.size();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << text << bytes.substr(8 + n);
}

const std::string kSmall =
    " --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 --set model.block_size=16"
    " --set train.batch_size=2 --set train.threads=1 --set train.eval_batches=1 ";
}  // namespace

TEST_CASE("help lists every option and config key with its default", "[cli]") {
  Scratch s;
  Run r = troupe(s, "train --help");
  CHECK(r.code == 0);
  for (const char* word : {"--config", "--set", "--steps", "--seed", "--save", "--init-from", "--dump-losses",
                           "model.kind", "model.n_layer", "data.order", "train.batch_size", "train.grad_clip",
                           "optim.kind", "optim.centered", "optim.nesterov", "adamw"})
    CHECK_THAT(r.out, Catch::Contains(word));
  CHECK(troupe(s, "--help").code == 0);
}

TEST_CASE("bad input: one line naming key, value and what is allowed, exit 2, nothing written", "[cli]") {
  Scratch s;
  const std::string outputs = " --save " + (s / "w.safetensors").string() + " --dump-losses " + (s / "l.jsonl").string();
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"--set train.step=5", "unknown config key 'train.step' (did you mean 'train.steps'?)"},
      {"--set train.steps=abc", "train.steps = 'abc': expected an integer"},
      {"--set train.batch_size=0", "train.batch_size = 0: must be >= 1"},
      {"--set optim.kind=adamx", "expected one of sgd, adam, adamw, rmsprop"},
      {"--set data.path=/nonexistent/corpus.txt", "/nonexistent/corpus.txt"},
      {"--config /nonexistent/run.toml", "/nonexistent/run.toml"},
      {"--set model.n_embd=30 --set model.n_head=4", "not divisible by model.n_head"},
      {"--init-from /nonexistent/w.safetensors", "no such file"},
      {"--set train.steps", "--set: 'train.steps' has no '='"},
      {"--bogus-flag", "bogus"},
      // Overflow is an error naming the range, never a wrap: these ran 2^63-1 steps and died of a negative wait.
      {"--steps 99999999999999999999999", "--steps: train.steps = 99999999999999999999999: must be >= 0 and <= 1000000000000"},
      {"--seed 99999999999999999999999", "--seed: train.seed = 99999999999999999999999: must be in [0, 2^64)"},
      {"--set comm.timeout_s=1e10", "comm.timeout_s = 10000000000: must be in [0.001, 86400]"},
  };
  for (const auto& c : cases) {
    INFO(c.args);
    Run r = troupe(s, "train " + c.args + outputs);
    CHECK(r.code == 2);
    CHECK_THAT(r.err, Catch::Contains(c.expect));
    CHECK(s.file_count() == 0);
  }
  Run r = troupe(s, "train --save /nonexistent-dir/w.safetensors --steps 1");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("/nonexistent-dir"));
}

TEST_CASE("train.steps=0 --save exports the initial weights, --init-from reproduces the run", "[cli]") {
  Scratch s;
  const std::string w = (s / "init.safetensors").string();
  Run r = troupe(s, "train" + kSmall + "--steps 0 --save " + w);
  REQUIRE(r.code == 0);
  REQUIRE(fs::exists(w));

  // A different seed would initialise differently; loading the file must override that.
  const std::string a = (s / "a.jsonl").string(), b = (s / "b.jsonl").string();
  REQUIRE(troupe(s, "train" + kSmall + "--steps 3 --dump-losses " + a).code == 0);
  REQUIRE(troupe(s, "train" + kSmall + "--steps 3 --seed 99 --init-from " + w + " --dump-losses " + b).code == 0);
  // Same weights but the seed also drives data order: compare in sequential order instead.
  const std::string c = (s / "c.jsonl").string(), d = (s / "d.jsonl").string();
  REQUIRE(troupe(s, "train" + kSmall + "--set data.order=sequential --steps 3 --dump-losses " + c).code == 0);
  REQUIRE(troupe(s, "train" + kSmall + "--set data.order=sequential --steps 3 --seed 99 --init-from " + w +
                        " --dump-losses " + d).code == 0);
  std::istringstream lc(slurp(c)), ld(slurp(d));
  std::string x, y;
  int lines = 0;
  while (std::getline(lc, x) && std::getline(ld, y)) {
    auto jx = nlohmann::json::parse(x), jy = nlohmann::json::parse(y);
    CHECK(jx["loss"].get<double>() == jy["loss"].get<double>());
    ++lines;
  }
  CHECK(lines == 3);
}

TEST_CASE("the loss dump (--dump-losses) has one JSON object per step", "[cli]") {
  Scratch s;
  const std::string l = (s / "l.jsonl").string();
  REQUIRE(troupe(s, "train" + kSmall + "--steps 4 --set train.lr_schedule=cosine --set train.warmup_steps=2 --dump-losses " + l).code == 0);
  std::istringstream in(slurp(l));
  std::string line;
  int step = 0;  // counted from 1 in the file, as on screen (cli/metrics.h)
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(j["step"].get<int>() == step + 1);
    CHECK(j["loss"].get<double>() > 0.0);
    CHECK(j["tokens_per_s"].get<double>() > 0.0);
    if (step == 0) CHECK(j["lr"].get<double>() == Approx(0.5e-3));  // warmup: lr * 1/2
    ++step;
  }
  CHECK(step == 4);
  CHECK_FALSE(fs::exists(l + ".partial"));
}

TEST_CASE("weights describe their model: --init-from needs no model flags, and a disagreeing one is named", "[cli]") {
  Scratch s;
  const std::string w = (s / "w.safetensors").string();
  REQUIRE(troupe(s, "train" + kSmall + "--steps 0 --save " + w).code == 0);
  const std::string train_only = " --set train.batch_size=2 --set train.threads=1 --set train.eval_batches=1 ";
  Run r = troupe(s, "train" + train_only + "--steps 1 --print-config --init-from " + w);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("n_layer = 1") && Catch::Contains("n_embd = 32") && Catch::Contains("n_head = 2") &&
                        Catch::Contains("block_size = 16"));
  r = troupe(s, "train" + kSmall + "--set model.n_embd=64 --steps 1 --init-from " + w);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("model.n_embd = 64 (--set) but " + w + " was written with model.n_embd = 32"));
  std::ofstream(s / "big.toml") << "[model]\nn_layer = 3\n";
  r = troupe(s, "train --config " + (s / "big.toml").string() + train_only + "--steps 1 --init-from " + w);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("model.n_layer = 3 (" + (s / "big.toml").string() + ") but"));
}

TEST_CASE("weights that do not fit the model are refused with the tensor named", "[cli]") {
  Scratch s;
  // A file without metadata, as troupe wrote before weights described their model: the shapes decide.
  const std::string w = (s / "w.safetensors").string();
  REQUIRE(troupe(s, "train" + kSmall + "--steps 0 --save " + w).code == 0);
  strip_metadata(w);
  Run r = troupe(s, "train" + kSmall + "--set model.n_embd=64 --steps 1 --init-from " + w);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("transformer.wte.weight") && Catch::Contains("[256, 32]") &&
                        Catch::Contains("[256, 64]"));
  r = troupe(s, "train" + kSmall + "--set model.n_layer=2 --steps 1 --init-from " + w);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("missing tensor 'transformer.h.1"));

  // A truncated file is a precise error too, and the run writes nothing.
  std::string bytes = slurp(w);
  std::ofstream(s / "cut.safetensors", std::ios::binary).write(bytes.data(), bytes.size() / 2);
  r = troupe(s, "train" + kSmall + "--steps 1 --init-from " + (s / "cut.safetensors").string() + " --save " +
                    (s / "out.safetensors").string());
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("cut.safetensors"));
  CHECK_FALSE(fs::exists(s / "out.safetensors"));
}

TEST_CASE("a TOML config file sets keys, --set overrides it", "[cli]") {
  Scratch s;
  std::ofstream(s / "run.toml") << "[model]\nn_layer = 1\nn_embd = 32\nn_head = 2\nblock_size = 16\n"
                                   "[train]\nbatch_size = 2\nsteps = 7\nthreads = 1\neval_batches = 1\n";
  Run r = troupe(s, "train --config " + (s / "run.toml").string() + " --set train.steps=2 --print-config");
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("steps = 2") && Catch::Contains("step 2/2"));
}

TEST_CASE("a pipeline run reproduces the single-device losses bitwise in deterministic mode", "[cli][pipeline]") {
  Scratch s;
  const std::string a = (s / "single.jsonl").string(), b = (s / "pipe.jsonl").string();
  const std::string common = kSmall + "--set model.n_layer=3 --set train.batch_size=4 --set train.deterministic=true --steps 3 ";
  REQUIRE(troupe(s, "train" + common + "--dump-losses " + a).code == 0);
  Run r = troupe(s, "train" + common + "--set parallel.pipeline=3 --set parallel.microbatches=2 --set parallel.schedule=gpipe --dump-losses " + b);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("pipeline of 3 stages") && Catch::Contains("stage 2:"));
  std::istringstream la(slurp(a)), lb(slurp(b));
  std::string x, y;
  int lines = 0;
  while (std::getline(la, x) && std::getline(lb, y)) {
    CHECK(nlohmann::json::parse(x)["loss"].get<double>() == nlohmann::json::parse(y)["loss"].get<double>());
    ++lines;
  }
  CHECK(lines == 3);

  r = troupe(s, "train" + kSmall + "--set parallel.pipeline=9 --steps 1");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("needs at least 9 layers"));
}

TEST_CASE("the trace option writes a Chrome trace with one track per stage and prints bubbles", "[cli][trace]") {
  Scratch s;
  const std::string t = (s / "trace.json").string();
  Run r = troupe(s, "train" + kSmall + "--set model.n_layer=2 --set train.batch_size=4 --set parallel.pipeline=2 "
                        "--set parallel.microbatches=4 --steps 2 --trace " + t);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("stage 0    measured") && Catch::Contains("ideal 20.0%"));
  auto j = nlohmann::json::parse(slurp(t));
  std::set<std::string> tracks, cats;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "M") tracks.insert(e["args"]["name"].get<std::string>());
    else cats.insert(e["cat"].get<std::string>());
  }
  CHECK(tracks == std::set<std::string>{"stage 0", "stage 1"});
  CHECK(cats.count("forward"));
  CHECK(cats.count("backward"));
  CHECK(cats.count("optimizer"));
  CHECK(cats.count("send"));
}

TEST_CASE("MFU: troupe peak measures and caches the CPU's peak, train prints MFU against it", "[cli][mfu]") {
  Scratch s;
  const std::string env = "XDG_CACHE_HOME=" + (s / "cache").string();
  const Run peak = run_troupe(s.dir, "peak --threads 1", env);
  INFO(peak.out << peak.err);
  REQUIRE(peak.code == 0);
  CHECK_THAT(peak.out, Catch::Contains("f32 FMA loop") && Catch::Contains("sgemm") && Catch::Contains("cached in"));
  REQUIRE(fs::exists(s / "cache" / "troupe"));
  REQUIRE(std::distance(fs::directory_iterator(s / "cache" / "troupe"), fs::directory_iterator()) == 1);
  // A run reads the cache (the figures it prints are the cached ones) and reports MFU per step and at the end.
  const std::string tiny = "train --set model.n_layer=1 --set model.n_embd=32 --set model.n_head=2 "
                           "--set model.block_size=16 --set train.batch_size=2 --set train.threads=1 "
                           "--set train.eval_batches=1 --steps 2";
  for (const char* precision : {"f32", "bf16"}) {
    const Run r = run_troupe(s.dir, tiny + " --set train.precision=" + precision, env);
    INFO(r.out << r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains("this CPU on 1 threads: f32 FMA loop") && Catch::Contains(" MFU ") &&
                          Catch::Contains("model FLOPs") && Catch::Contains("FLOP per token, 6N + 12LCT"));
    if (std::string(precision) == "bf16")
      CHECK_THAT(r.out, Catch::Contains("bf16 products") && Catch::Contains("of the bf16 peak"));
  }
  // The CNN's FLOPs per image: 6 x (stem 9*4*784 + block 2*9*4*4*784 + fc 4*10) = 1,524,336.
  const Run cnn = run_troupe(s.dir, "train --set model.kind=cnn --set model.cnn_channels=4 --set model.cnn_blocks=1 "
                                    "--set train.batch_size=4 --set train.threads=1 --set train.eval_batches=1 --steps 1",
                             env);
  REQUIRE(cnn.code == 0);
  CHECK_THAT(cnn.out, Catch::Contains(" MFU ") && Catch::Contains("(1.524e+06 FLOP per sample, 6 x multiply-adds)"));
  // Two replicas of one thread each: MFU is against the peak of the job's two threads (one on a 1-thread machine).
  const Run dp = run_troupe(s.dir, "train --set model.kind=mlp --set model.mlp_hidden=64 --set train.batch_size=8 "
                                   "--set train.threads=2 --set parallel.data=2 --set train.eval_batches=1 --steps 1",
                            env);
  INFO(dp.out << dp.err);
  REQUIRE(dp.code == 0);
  const unsigned job_threads = std::min(2u, std::max(1u, std::thread::hardware_concurrency()));
  CHECK_THAT(dp.out, Catch::Contains("this CPU on " + std::to_string(job_threads) + " threads"));
}
