// `troupe train --resume` end to end: a run resumed from a checkpoint, under its own layout or another,
// continues bitwise as the uninterrupted run (train.deterministic); what may not change is refused.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <vector>

#include "tests/troupe_command.h"

namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path dir;
  Scratch() {
    static int n = 0;
    dir = fs::temp_directory_path() / ("troupe_resume_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

// A small deterministic GPT (4 layers counting embedding and head, so up to 4 stages), with a cosine
// schedule so that the learning rate depends on the step.
const std::string kModel =
    " --set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set model.block_size=16"
    " --set train.batch_size=8 --set train.threads=2 --set train.eval_batches=1 --set train.eval_every=0"
    " --set train.deterministic=true --set train.lr_schedule=cosine --set train.warmup_steps=2 ";

std::vector<std::string> lines(const std::string& path) {
  std::istringstream in(slurp(path));
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The loss-dump lines without the timing fields (throughput, seconds), which differ run to run.
std::string without_timing(const std::string& line) {
  const auto cut = line.find(", \"tokens_per_s\"");
  return cut == std::string::npos ? line : line.substr(0, cut);
}

struct Reference {
  std::vector<std::string> losses;
  std::string weights;
};

// The uninterrupted 6-step run of `layout`, writing checkpoints after steps 3 and 6 into `ck`; the
// checkpoint of step 6 is then removed, as if the run had died after step 5.
Reference run_with_checkpoints(const Scratch& s, const std::string& layout, const std::string& ck) {
  const TroupeRun r = run_troupe(s.dir, "train" + kModel + layout + " --steps 6 --set train.checkpoint_dir=" + ck +
                                            " --set train.checkpoint_every=3 --dump-losses " + (s / "full.jsonl") +
                                            " --save " + (s / "full.safetensors"));
  REQUIRE(r.code == 0);
  REQUIRE(fs::is_directory(fs::path(ck) / "step-000003"));
  fs::remove_all(fs::path(ck) / "step-000006");
  Reference ref{lines(s / "full.jsonl"), slurp(s / "full.safetensors")};
  REQUIRE(ref.losses.size() == 6);
  return ref;
}

// Resumes from `ck` under `layout`; requires steps 4..6 and the final weights bitwise equal to `ref`.
void require_resume_equal(const Scratch& s, const Reference& ref, const std::string& ck, const std::string& layout) {
  INFO("resumed under: " << layout);
  const TroupeRun r = run_troupe(s.dir, "train --resume " + ck + layout + " --dump-losses " + (s / "resumed.jsonl") +
                                            " --save " + (s / "resumed.safetensors"));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming from " + ck + "/step-000003 after step 3"));
  const std::vector<std::string> got = lines(s / "resumed.jsonl");
  REQUIRE(got.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(without_timing(got[i]) == without_timing(ref.losses[3 + i]));
  CHECK(slurp(s / "resumed.safetensors") == ref.weights);
  fs::remove_all(fs::path(ck) / "step-000006");  // written by the resumed run: the next resume starts at 3 again
}

}  // namespace

TEST_CASE("checkpointing does not change training, and a resumed single-device run continues bitwise", "[resume]") {
  Scratch s;
  const TroupeRun plain = run_troupe(s.dir, "train" + kModel + " --steps 6 --save " + (s / "plain.safetensors"));
  REQUIRE(plain.code == 0);
  const Reference ref = run_with_checkpoints(s, "", s / "ck");
  CHECK(ref.weights == slurp(s / "plain.safetensors"));
  require_resume_equal(s, ref, s / "ck", "");
}

TEST_CASE("a pipeline checkpoint resumes bitwise under every other layout", "[resume]") {
  Scratch s;
  const std::string ck = s / "ck";
  const Reference ref =
      run_with_checkpoints(s, " --set parallel.pipeline=2 --set parallel.microbatches=2 --set parallel.schedule=1f1b", ck);
  for (const std::string layout : {
           " --set parallel.pipeline=1 --set parallel.microbatches=1",  // one device
           " --set parallel.pipeline=2 --set parallel.microbatches=2",  // the same layout
           " --set parallel.pipeline=3 --set parallel.microbatches=4 --set parallel.schedule=gpipe",
           " --set parallel.pipeline=2 --set parallel.virtual_stages=2 --set parallel.schedule=interleaved"
           " --set parallel.microbatches=4",
           " --set parallel.pipeline=1 --set parallel.microbatches=1 --set parallel.data=2",
           " --set parallel.pipeline=1 --set parallel.microbatches=1 --set parallel.data=2 --set parallel.zero=1",
           " --set parallel.pipeline=2 --set parallel.microbatches=2 --set parallel.data=2 --set parallel.zero=1"
           " --set parallel.gradient_exchange=alltoall",
       })
    require_resume_equal(s, ref, ck, layout);
}

TEST_CASE("a ZeRO-1 data-parallel pipeline checkpoint resumes bitwise on one device and as processes", "[resume]") {
  Scratch s;
  const std::string ck = s / "ck";
  const Reference ref = run_with_checkpoints(
      s, " --set parallel.pipeline=2 --set parallel.microbatches=2 --set parallel.data=2 --set parallel.zero=1", ck);
  require_resume_equal(s, ref, ck, " --set parallel.pipeline=1 --set parallel.microbatches=1 --set parallel.data=1 --set parallel.zero=0");
  // Replicas as processes: every rank process restores the checkpoint rank 0 chose.
  require_resume_equal(s, ref, ck,
                       " --set parallel.pipeline=1 --set parallel.microbatches=1 --set parallel.zero=0"
                       " --set comm.transport=tcp --set comm.address=127.0.0.1:0");
}

TEST_CASE("resume refuses what cannot change, and a directory without a whole checkpoint, with exit 2", "[resume]") {
  Scratch s;
  const std::string ck = s / "ck";
  run_with_checkpoints(s, "", ck);
  TroupeRun r = run_troupe(s.dir, "train --resume " + ck + " --set model.n_embd=64");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("model.n_embd = 64 for this run, but the checkpoint " + ck +
                                    "/step-000003 was written with model.n_embd = 32"));
  r = run_troupe(s.dir, "train --resume " + ck + " --set optim.kind=sgd");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("optim.kind = sgd") && Catch::Contains("optim.kind = adamw"));
  r = run_troupe(s.dir, "train --resume " + ck + " --init-from " + (s / "full.safetensors"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("--resume and --init-from together"));
  // The only checkpoint damaged: reported, and none left to resume from.
  fs::resize_file(fs::path(ck) / "step-000003" / "optimizer.safetensors", 64);
  r = run_troupe(s.dir, "train --resume " + ck);
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("checkpoint " + ck + "/step-000003 is not usable (optimizer.safetensors has 64 bytes"));
  CHECK_THAT(r.err, Catch::Contains("--resume " + ck + ": none of its 1 checkpoints is whole"));
  r = run_troupe(s.dir, "train --resume " + (s / "nowhere"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("no such directory"));
}

TEST_CASE("checkpoint settings are checked before training: bad directory, missing directory, unsupported layout",
          "[resume]") {
  Scratch s;
  std::ofstream(s / "file") << "x";
  TroupeRun r = run_troupe(s.dir, "train" + kModel + " --steps 2 --set train.checkpoint_dir=" + (s / "file/ck") +
                                      " --save " + (s / "w.safetensors"));
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("train.checkpoint_dir = '" + (s / "file/ck") + "': cannot create"));
  CHECK_FALSE(fs::exists(s / "w.safetensors"));  // nothing trained, nothing written
  r = run_troupe(s.dir, "train" + kModel + " --steps 2 --set train.checkpoint_every=1");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("without train.checkpoint_dir"));
  r = run_troupe(s.dir, "train" + kModel + " --steps 2 --set train.checkpoint_dir=" + (s / "ck") +
                            " --set parallel.data=2 --set parallel.gradient_exchange=ps");
  CHECK(r.code == 2);
  CHECK_THAT(r.err, Catch::Contains("parameter-server runs are not built yet"));
}

namespace {
// The "loss" field of a loss-dump line.
double loss_of(const std::string& line) {
  const auto at = line.find("\"loss\": ");
  REQUIRE(at != std::string::npos);
  return std::stod(line.substr(at + 8));
}

// Resumes from `ck` under `layout`; steps 4..6 within 1e-5 relative of `ref` (tensor parallelism
// splits dot products, so not bitwise: docs/tensor-parallel.md).
void require_resume_close(const Scratch& s, const Reference& ref, const std::string& ck, const std::string& layout) {
  INFO("resumed under: " << layout);
  const TroupeRun r = run_troupe(s.dir, "train --resume " + ck + layout + " --dump-losses " + (s / "resumed.jsonl"));
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("resuming from " + ck + "/step-000003 after step 3"));
  const std::vector<std::string> got = lines(s / "resumed.jsonl");
  REQUIRE(got.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    const double want = loss_of(ref.losses[3 + i]);
    CHECK(std::abs(loss_of(got[i]) - want) / want < 1e-5);
  }
  fs::remove_all(fs::path(ck) / "step-000006");
}
}  // namespace

TEST_CASE("a tensor-parallel checkpoint resumes under T = 1 and dp2 x tp2, and a single device's under T = 2",
          "[resume][tensor_parallel]") {
  Scratch s;
  const std::string tp_ck = s / "tp";
  const Reference tp = run_with_checkpoints(s, " --set parallel.tensor=2", tp_ck);
  require_resume_close(s, tp, tp_ck, " --set parallel.tensor=1");
  require_resume_close(s, tp, tp_ck, " --set parallel.tensor=2 --set parallel.data=2");
  const std::string one_ck = s / "one";
  const Reference one = run_with_checkpoints(s, "", one_ck);
  require_resume_close(s, one, one_ck, " --set parallel.tensor=2");
}
