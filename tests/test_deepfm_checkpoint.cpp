// Owns the tests of checkpoints on parameter servers for the click-log recommenders (DeepFM and Wide & Deep,
// WideDeepPsTrainer): the shards' state gathered whole by name and cut back under any shard count, a
// resumed sync run bitwise the uninterrupted one under other shard counts, and the table step
// count that makes this hold when a batch misses a shard's rows; under another worker count, within rounding.
#include <catch2/catch.hpp>

#include <filesystem>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "actors/ps/wide_deep_ps.h"
#include "actors/state/ps/ps_shard_state.h"
#include "runtime/checkpoint/checkpoint_store.h"
#include "runtime/config/config_loader.h"
#include "runtime/optim/lr_schedule.h"
#include "tests/recommender_ps_runs.h"
#include "tests/recommender_trainer.h"

using namespace troupe;
using namespace troupe::ps;
using Catch::Matchers::Contains;
using testing::same_bits;

namespace {

// A small click log and model of `kind` (3 fields, the largest of 5000 ids), Adam with a warm-up and
// cosine schedule and clipping, so that the learning rate and the norm round depend on the step.
WideDeepPsOptions small_run(RecommenderKind kind, int workers, int shards, int global_batch = 64) {
  WideDeepPsOptions o;
  o.data.cardinalities = {5000, 800, 60};
  o.data.dense_features = 3;
  o.data.train_samples = 1 << 16;
  o.data.test_samples = 1024;
  o.data.seed = 7;
  o.model.kind = kind;
  o.model.embed_dim = 4;
  o.model.hidden = {16, 8};
  o.model.wide_buckets = 4096;
  o.model.seed = 3;
  o.ps.mode = PsMode::sync;
  o.ps.workers = workers;
  o.ps.optim.kind = OptimKind::adam;
  o.ps.optim.lr = 0.01;
  o.shards = shards;
  o.steps = 6;
  o.batch_size = global_batch / workers;
  o.eval_samples = 256;
  o.grad_clip = 0.5;
  TrainConfig schedule;
  schedule.steps = 6;
  schedule.lr_schedule = LrScheduleKind::cosine;
  schedule.warmup_steps = 2;
  o.lr_at = [schedule](std::int64_t t) { return lr_at(schedule, 0.01, t); };
  return o;
}

void require_same_state(const TrainingState& a, const TrainingState& b) {
  CHECK(a.step == b.step);
  CHECK(a.optimizer.step == b.optimizer.step);
  REQUIRE(a.params.size() == b.params.size());
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    INFO(a.params[i].first);
    CHECK(a.params[i].first == b.params[i].first);
    CHECK(same_bits(a.params[i].second, b.params[i].second));
  }
  REQUIRE(a.optimizer.params.size() == b.optimizer.params.size());
  for (const auto& [name, ps] : a.optimizer.params) {
    INFO(name);
    const ParamState* other = b.optimizer.find(name);
    REQUIRE(other);
    CHECK(ps.step == other->step);
    REQUIRE(ps.tensors.size() == other->tensors.size());
    for (const auto& [slot, t] : ps.tensors) CHECK(same_bits(t, other->tensors.at(slot)));
  }
}

std::string scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("troupe_psck_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  return dir.string();
}

}  // namespace

TEST_CASE("ps checkpoints: a state gathered under 2 shards is whole by name and restores under 1, 3 and 5 shards",
          "[deepfm][ps][checkpoint]") {
  WideDeepPsTrainer two(small_run(RecommenderKind::deepfm, 2, 2));
  two.train(3);
  const TrainingState state = two.training_state();
  CHECK(state.step == 3);
  // Every dense parameter, then every table whole, each with its optimizer state under its own name.
  const PsCluster::Model model = two.snapshot();
  const WideDeep& w = two.reference();
  REQUIRE(state.params.size() == w.dense().all().size() + w.tables().size());
  for (std::size_t t = 0; t < w.tables().size(); ++t) {
    const auto& [name, value] = state.params[w.dense().all().size() + t];
    CHECK(name == w.tables()[t].name);
    CHECK(same_bits(value, model.tables[t]));
    const ParamState* ps = state.optimizer.find(name);
    REQUIRE(ps);
    CHECK(ps->step == 3);  // every step updated every table
    CHECK(ps->tensors.count("exp_avg") == 1);
    CHECK(ps->tensors.at("exp_avg_sq").shape() == value.shape());
  }
  for (int shards : {1, 3, 5}) {
    DYNAMIC_SECTION(shards << " shards") {
      WideDeepPsTrainer other(small_run(RecommenderKind::deepfm, 1, shards));
      other.restore(state, "the test's state");
      CHECK(other.steps_done() == 3);
      require_same_state(other.training_state(), state);
    }
  }
}

TEST_CASE("ps checkpoints: a state that does not fit the model is refused naming the tensor", "[deepfm][ps][checkpoint]") {
  WideDeepPsTrainer trainer(small_run(RecommenderKind::deepfm, 1, 2));
  trainer.train(1);
  const TrainingState good = trainer.training_state();
  auto refusal = [&](const TrainingState& bad) {
    try {
      trainer.restore(bad, "ck/step-000001");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::kInput);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  TrainingState missing = good;
  missing.params.pop_back();
  CHECK_THAT(refusal(missing), Contains("ck/step-000001: no tensor '" + good.params.back().first + "'"));
  TrainingState reshaped = good;
  reshaped.params[0].second = Tensor::zeros({3});
  CHECK_THAT(refusal(reshaped), Contains("tensor '" + good.params[0].first + "' is f32 [3]"));
  TrainingState foreign = good;
  foreign.params.emplace_back("lm_head.weight", Tensor::zeros({2, 2}));
  CHECK_THAT(refusal(foreign), Contains("tensor 'lm_head.weight' is not a parameter of this model"));
  // Nothing changed: the trainer goes on from its own state.
  require_same_state(trainer.training_state(), good);
}

TEST_CASE("deepfm and wide & deep: a resumed sync ps run is bitwise the uninterrupted one under other shard counts",
          "[deepfm][ps][checkpoint]") {
  for (const RecommenderKind kind : {RecommenderKind::deepfm, RecommenderKind::wide_deep}) {
    DYNAMIC_SECTION(name_of(kind)) {
      WideDeepPsTrainer whole(small_run(kind, 2, 2));
      whole.train(6);
      const PsCluster::Model end = whole.snapshot();
      const ClickMetrics metrics = whole.evaluate();

      // Steps 0..2, then the state through a checkpoint directory (safetensors and manifest) and back.
      const std::string dir = scratch_dir(std::string(name_of(kind)));
      {
        WideDeepPsTrainer first(small_run(kind, 2, 2));
        first.train(3);
        std::filesystem::create_directories(dir);
        write_checkpoint(dir, first.training_state(), load_config(std::nullopt, {}), 1);
      }
      const LoadedCheckpoint ck = read_checkpoint(dir + "/step-000003");
      // The same 2 workers over any shard count: bitwise.
      for (const int shards : {2, 3, 1}) {
        INFO("2 workers x " << shards << " shards");
        WideDeepPsTrainer resumed(small_run(kind, 2, shards));
        resumed.restore(ck.state, ck.path);
        resumed.train(6);
        REQUIRE(resumed.losses().size() == 3);
        for (std::size_t i = 0; i < 3; ++i) CHECK(resumed.losses()[i] == whole.losses()[3 + i]);
        const PsCluster::Model got = resumed.snapshot();
        for (std::size_t d = 0; d < end.dense.size(); ++d) CHECK(same_bits(got.dense[d], end.dense[d]));
        for (std::size_t t = 0; t < end.tables.size(); ++t) CHECK(same_bits(got.tables[t], end.tables[t]));
        const ClickMetrics m = resumed.evaluate();
        CHECK(m.auc == metrics.auc);
        CHECK(m.log_loss == metrics.log_loss);
      }
      // Another worker count sums the step's gradient in other float partial sums (as an uninterrupted run
      // with that count does): within rounding of the uninterrupted run, not bitwise.
      for (const int workers : {1, 4}) {
        INFO(workers << " workers x 3 shards");
        WideDeepPsTrainer resumed(small_run(kind, workers, 3));
        resumed.restore(ck.state, ck.path);
        resumed.train(6);
        REQUIRE(resumed.losses().size() == 3);
        for (std::size_t i = 0; i < 3; ++i) CHECK(resumed.losses()[i] == Approx(whole.losses()[3 + i]).epsilon(1e-5));
        CHECK(resumed.evaluate().log_loss == Approx(metrics.log_loss).epsilon(1e-5));
      }
      std::filesystem::remove_all(dir);
    }
  }
}

TEST_CASE("sync ps: a table's step count stays whole when a batch misses a shard's rows, as one process counts it",
          "[deepfm][ps][checkpoint]") {
  // 4 samples a step over 4 shards: the 5000-id field's rows land on at most 4 shards, often fewer.
  const int steps = 6, global = 4;
  WideDeepPsOptions o = small_run(RecommenderKind::deepfm, 1, 4, global);
  o.grad_clip = 0;
  o.lr_at = {};
  o.steps = steps;
  o.keep_model = true;
  o.eval_samples = 0;
  const ClickLog log(o.data);
  WideDeepOptions m = o.model;
  m.cardinalities = o.data.cardinalities;
  m.dense_features = o.data.dense_features;
  testing::LocalTrainer local(m, o.ps.optim);
  bool missed = false;
  std::vector<double> local_losses;
  for (int t = 0; t < steps; ++t) {
    const ClickBatch batch = log.train_batch(t, global);
    std::set<std::int64_t> shards_touched;
    const std::vector<TableLookup> lookups = local.model.lookup(batch);
    for (std::int64_t id : lookups[0].ids) shards_touched.insert(id % 4);
    missed = missed || shards_touched.size() < 4;
    local_losses.push_back(local.step(batch, 1));
  }
  REQUIRE(missed);  // the case under test happens
  const WideDeepPsResult r = train_wide_deep_ps(o);
  CHECK(r.losses == local_losses);
  for (std::size_t t = 0; t < local.tables.size(); ++t) {
    INFO(local.tables[t].name());
    CHECK(same_bits(r.model.tables[t], local.tables[t].value()));
  }
  const auto& params = local.model.dense().all();
  for (std::size_t d = 0; d < params.size(); ++d) CHECK(same_bits(r.model.dense[d], params[d]->value));
}
