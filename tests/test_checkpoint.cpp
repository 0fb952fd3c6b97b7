// Checkpoints without actors or a training run: the CRC-32, names, the atomic store (whole, damaged,
// pruned), gather/scatter by parameter name, the resume rules, the background writer and the abort's
// partial-path registry.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/checkpoint/checkpoint_writer.h"
#include "runtime/checkpoint/checksum.h"
#include "runtime/checkpoint/resume_rules.h"
#include "runtime/error.h"
#include "runtime/io/partial_files.h"

namespace fs = std::filesystem;
using namespace troupe;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    static int n = 0;
    dir = fs::temp_directory_path() / ("troupe_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() { fs::remove_all(dir); }
  std::string str() const { return dir.string(); }
};

Tensor values(Shape shape, float start) {
  Tensor t = Tensor::zeros(shape);
  float v = start;
  for (float& x : t.span_f32()) x = (v += 0.37f);
  return t;
}

// Two parameters with Adam-like state after `step` steps.
TrainingState sample_state(std::int64_t step) {
  TrainingState s;
  s.step = step;
  s.params.emplace_back("a.weight", values({3, 4}, 1.0f));
  s.params.emplace_back("b.bias", values({4}, -2.0f));
  s.optimizer.step = step;
  for (const auto& [name, t] : s.params) {
    ParamState& ps = s.optimizer.get_or_create(name);
    ps.step = step;
    ps.tensors["exp_avg"] = values(t.shape(), 0.5f);
    ps.tensors["exp_avg_sq"] = values(t.shape(), 0.25f);
  }
  return s;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void flip_byte(const fs::path& file, std::size_t at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
}

}  // namespace

TEST_CASE("crc32 matches the IEEE check value and continues across chunks", "[checkpoint]") {
  const std::string text = "123456789";
  CHECK(crc32(text.data(), text.size()) == 0xCBF43926u);  // the standard check value (zlib.crc32)
  CHECK(crc32(nullptr, 0) == 0u);
  const std::string long_text(1000, 'x');
  const std::uint32_t whole = crc32(long_text.data(), long_text.size());
  CHECK(crc32(long_text.data() + 13, long_text.size() - 13, crc32(long_text.data(), 13)) == whole);
}

TEST_CASE("checkpoint names sort by step and parse back", "[checkpoint]") {
  CHECK(checkpoint_name(123) == "step-000123");
  CHECK(checkpoint_name(12345678) == "step-12345678");
  CHECK(parse_checkpoint_name("step-000123") == 123);
  CHECK_FALSE(parse_checkpoint_name(".tmp-step-000123-55").has_value());
  CHECK_FALSE(parse_checkpoint_name("step-12a").has_value());
  CHECK_FALSE(parse_checkpoint_name("step-").has_value());
}

TEST_CASE("a written checkpoint reads back bit for bit, with its manifest", "[checkpoint]") {
  TempDir d;
  const TrainingState s = sample_state(7);
  const std::string path = write_checkpoint(d.str(), s, RunConfig{}, 3);
  CHECK(path == (d.dir / "step-000007").string());
  CHECK(checkpoint_problem(path).empty());
  const LoadedCheckpoint back = read_checkpoint(path);
  CHECK(back.state.step == 7);
  REQUIRE(back.state.params.size() == 2);
  for (std::size_t i = 0; i < 2; ++i) {
    CHECK(back.state.params[i].first == s.params[i].first);
    CHECK(same_bits(back.state.params[i].second, s.params[i].second));
  }
  CHECK(back.state.optimizer.step == 7);
  for (const auto& [name, ps] : s.optimizer.params) {
    const ParamState* got = back.state.optimizer.find(name);
    REQUIRE(got);
    CHECK(got->step == 7);
    for (const auto& [slot, t] : ps.tensors) CHECK(same_bits(got->tensors.at(slot), t));
  }
  CHECK(back.manifest.optimizer_kind == "adamw");
  CHECK(back.manifest.files.size() == 3);
  CHECK(back.config_toml.find("[model]") != std::string::npos);
  // Nothing temporary is left beside it.
  for (const auto& e : fs::directory_iterator(d.dir)) CHECK(e.path().filename().string().rfind(".", 0) != 0);
}

TEST_CASE("only the newest keep_checkpoints are kept, and a stale temporary directory is removed", "[checkpoint]") {
  TempDir d;
  fs::create_directories(d.dir / ".tmp-step-000002-99");  // a writer that crashed
  for (std::int64_t step : {1, 2, 3, 4}) write_checkpoint(d.str(), sample_state(step), RunConfig{}, 2);
  const std::vector<std::string> left = list_checkpoints(d.str());
  REQUIRE(left.size() == 2);
  CHECK(fs::path(left[0]).filename() == "step-000003");
  CHECK(fs::path(left[1]).filename() == "step-000004");
  CHECK_FALSE(fs::exists(d.dir / ".tmp-step-000002-99"));
}

TEST_CASE("a damaged or incomplete newest checkpoint is reported and the previous one chosen", "[checkpoint]") {
  TempDir d;
  for (std::int64_t step : {3, 6, 9}) write_checkpoint(d.str(), sample_state(step), RunConfig{}, 5);
  flip_byte(d.dir / "step-000009" / "optimizer.safetensors", 200);     // a flipped bit: CRC differs
  fs::resize_file(d.dir / "step-000006" / "model.safetensors", 100);  // truncated
  CHECK_THAT(checkpoint_problem((d.dir / "step-000009").string()), Catch::Contains("CRC-32"));
  CHECK_THAT(checkpoint_problem((d.dir / "step-000006").string()), Catch::Contains("truncated"));
  std::vector<std::string> skipped;
  const std::string chosen =
      newest_valid_checkpoint(d.str(), [&](const std::string& p, const std::string&) { skipped.push_back(p); });
  CHECK(fs::path(chosen).filename() == "step-000003");
  CHECK(skipped.size() == 2);
  // A checkpoint directory given itself is used as it is.
  CHECK(newest_valid_checkpoint((d.dir / "step-000003").string(), [](auto&, auto&) {}) == (d.dir / "step-000003").string());
  // Without a manifest (the writer died before it) none is whole: a config error, not a crash.
  fs::remove(d.dir / "step-000003" / "manifest.json");
  CHECK_THAT(checkpoint_problem((d.dir / "step-000003").string()), Catch::Contains("manifest.json missing"));
  try {
    newest_valid_checkpoint(d.str(), [](auto&, auto&) {});
    FAIL("no whole checkpoint was accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    CHECK_THAT(e.what(), Catch::Contains("none of its 3 checkpoints is whole"));
  }
  CHECK_THROWS_WITH(read_checkpoint((d.dir / "step-000009").string()), Catch::Contains("CRC-32"));
}

TEST_CASE("a checkpoint directory that cannot be created is a config error before training", "[checkpoint]") {
  TempDir d;
  std::ofstream(d.dir / "file") << "x";
  try {
    check_checkpoint_dir((d.dir / "file" / "ck").string(), "train.checkpoint_dir");
    FAIL("a directory under a file was accepted");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kConfig);
    CHECK_THAT(e.what(), Catch::StartsWith("train.checkpoint_dir = '"));
  }
  check_checkpoint_dir((d.dir / "new" / "ck").string(), "train.checkpoint_dir");
  CHECK(fs::is_directory(d.dir / "new" / "ck"));
  CHECK(fs::is_empty(d.dir / "new" / "ck"));  // the probe is gone
}

TEST_CASE("gather by name merges disjoint holders, scatter gives each holder its share", "[checkpoint]") {
  ParamSet set;
  Param& a = set.add("a", {2});
  Param& b = set.add("b", {3});
  a.value.fill(1.0f);
  b.value.fill(2.0f);
  // Two ZeRO-like holders: a's state on one, b's on the other.
  OptimizerState h0, h1, whole;
  h0.step = h1.step = 4;
  h0.get_or_create("a").tensors["exp_avg"] = Tensor::full({2}, 0.5f);
  h1.get_or_create("b").tensors["exp_avg"] = Tensor::full({3}, 0.25f);
  gather_optimizer_state(h0, whole, true);
  gather_optimizer_state(h1, whole, false);
  CHECK(whole.step == 4);
  CHECK(whole.params.size() == 2);
  CHECK_THROWS_AS(gather_optimizer_state(h0, whole, false), InvariantError);  // held twice: a bug
  const OptimizerState share = optimizer_state_for(whole, {&b});
  CHECK(share.params.size() == 1);
  CHECK(share.find("b"));
  CHECK(share.step == 4);

  TrainingState state;
  gather_params({&a, &b}, state.params);
  a.value.fill(0.0f);
  scatter_params(state.params, {&a, &b}, "ck");
  CHECK(a.value.span_f32()[1] == 1.0f);
  // A parameter the state lacks, or of another shape: refused before anything changes.
  Param& c = set.add("c", {2});
  CHECK_THROWS_WITH(scatter_params(state.params, {&a, &c}, "ck"), Catch::Contains("no tensor 'c'"));
  state.params[1].second = Tensor::zeros({4});
  b.value.fill(2.0f);
  CHECK_THROWS_WITH(scatter_params(state.params, {&a, &b}, "ck"), Catch::Contains("'b' has shape"));
  CHECK(b.value.span_f32()[0] == 2.0f);
  CHECK_THROWS_WITH(check_covers(state, {&a}, "ck"), Catch::Contains("'b' is not a parameter"));
}

TEST_CASE("resuming may change the layout but not the model or the optimizer kind", "[checkpoint]") {
  RunConfig written, resumed;
  resumed.parallel.pipeline = 2;
  resumed.parallel.microbatches = 4;
  resumed.train.steps = 1000;
  CHECK_NOTHROW(check_resumable(resumed, written, "ck/step-000003"));
  resumed.model.n_embd = written.model.n_embd * 2;
  CHECK_THROWS_WITH(check_resumable(resumed, written, "ck/step-000003"),
                    Catch::Contains("model.n_embd = " + std::to_string(resumed.model.n_embd)) &&
                        Catch::Contains("with model.n_embd = " + std::to_string(written.model.n_embd)));
  resumed.model = written.model;
  resumed.optim.kind = OptimKind::sgd;
  CHECK_THROWS_WITH(check_resumable(resumed, written, "ck"), Catch::Contains("optim.kind = sgd") && Catch::Contains("adamw"));
}

TEST_CASE("the background writer writes every submitted state and reports a failed write", "[checkpoint]") {
  TempDir d;
  {
    CheckpointWriter writer(d.str(), RunConfig{}, 10);
    for (std::int64_t step : {2, 4, 6}) writer.submit(sample_state(step));  // each waits for the previous
    CHECK(writer.wait() == (d.dir / "step-000006").string());
  }
  CHECK(list_checkpoints(d.str()).size() == 3);
  for (const std::string& p : list_checkpoints(d.str())) CHECK(checkpoint_problem(p).empty());

  // A write that fails (the directory vanished) is rethrown to the training loop, not lost.
  const fs::path gone = d.dir / "gone";
  fs::create_directories(gone);
  CheckpointWriter writer(gone.string(), RunConfig{}, 1);
  fs::remove_all(gone);
  writer.submit(sample_state(1));
  CHECK_THROWS_AS(writer.wait(), Error);
}

TEST_CASE("an abort removes the registered partial files, and only while they are registered", "[checkpoint]") {
  TempDir d;
  const fs::path dir = d.dir / "tmp", file = dir / "part", kept = d.dir / "kept";
  fs::create_directories(dir);
  std::ofstream(file) << "half";
  std::ofstream(kept) << "whole";
  {
    const PartialPath unregistered_later(kept.string());
  }
  const PartialPath in_dir(dir.string(), /*directory=*/true), part(file.string());
  remove_partial_paths();
  CHECK_FALSE(fs::exists(file));
  CHECK_FALSE(fs::exists(dir));
  CHECK(fs::exists(kept));
}
