// Owns the tests of parameter-server supervision beyond the GPT's worker threads: a shard revived from its
// step-boundary snapshot (the state machine alone), shard actors restarted one-for-one in sync runs of the GPT,
// the MLP and DeepFM ("throw shard S at step N"), DeepFM's worker actors restarted ("throw worker W at step S"),
// each bitwise the clean run with its restarts reported, and the escalation past fault.max_restarts.
#include <catch2/catch.hpp>

#include "actors/ps/ps_trainer.h"
#include "actors/ps/wide_deep_ps.h"
#include "actors/recommender_job.h"
#include "actors/state/ps/shard_snapshot.h"
#include "runtime/config/config_loader.h"
#include "runtime/supervision/fault_plan.h"
#include "ps_gpt_runs.h"
#include "training_runs.h"

using namespace troupe;
using Catch::Contains;

namespace {

const std::vector<std::string> kSmallDeepfm = {
    "model.kind=deepfm",      "parallel.gradient_exchange=ps", "model.max_cardinality=10000", "model.hashed_rows=4096",
    "data.test_samples=256",  "train.batch_size=48",           "parallel.data=3",              "ps.shards=2",
    "optim.kind=adam",        "optim.lr=0.01",                 "train.threads=2",              "train.steps=4",
    "train.grad_clip=1.0"};

struct DeepfmRun {
  std::vector<double> losses;
  ps::PsCluster::Model model;
  std::vector<supervision::Restart> restarts;
};

DeepfmRun run_deepfm(std::vector<std::string> more) {
  std::vector<std::string> sets = kSmallDeepfm;
  sets.insert(sets.end(), more.begin(), more.end());
  const RunConfig config = load_config(std::nullopt, sets);
  ps::WideDeepPsOptions o = recommender_options(config);
  o.eval_samples = 0;
  ps::WideDeepPsTrainer t(o);
  for (std::int64_t s = 0; s < config.train.steps; ++s) t.train(s + 1);  // as the job steps it
  return {t.losses(), t.snapshot(), t.restart_log()};
}

void require_same_model(const ps::PsCluster::Model& a, const ps::PsCluster::Model& b) {
  REQUIRE(a.dense.size() == b.dense.size());
  REQUIRE(a.tables.size() == b.tables.size());
  for (std::size_t i = 0; i < a.dense.size(); ++i) REQUIRE(a.dense[i].to_vector() == b.dense[i].to_vector());
  for (std::size_t i = 0; i < a.tables.size(); ++i) REQUIRE(a.tables[i].to_vector() == b.tables[i].to_vector());
}

}  // namespace

TEST_CASE("a ps shard revived from its snapshot stands where it was taken, takes its logged pushes again, and a repeat once",
          "[ps][restart]") {
  auto layout = std::make_shared<const ps::PsLayout>(
      std::vector<ps::PsParamSpec>{{"a", {3}, false}, {"t", {6, 2}, true}}, 1);
  ps::PsOptions o;
  o.workers = 2;
  o.optim.kind = OptimKind::adam;
  o.optim.lr = 0.1;
  ps::PsInit init;
  init.dense = [](const std::string&) { return Tensor::full({3}, 1.0f); };
  init.table_rows = [](const std::string&, std::span<const std::int64_t> rows, const Tensor& out) {
    for (std::size_t i = 0; i < rows.size() * 2; ++i) out.f32()[i] = static_cast<float>(i);
  };
  auto push = [](int w, std::int64_t step, float g) {
    ps::PsPush p{.worker = w, .step = step, .dense = {Tensor::full({3}, g)}};
    p.tables = {ps::SparseRows{{1, 4}, Tensor::full({2, 2}, g)}};
    return p;
  };
  ps::PsShard live(layout, 0, o, init);
  for (std::int64_t t = 0; t < 2; ++t) {
    live.push(push(0, t, 0.5f));
    live.push(push(1, t, -0.25f));
  }
  const ps::ShardSnapshot snap = ps::take_snapshot(live);
  CHECK(snap.version == 2);
  // Step 2 goes on: worker 0's push is buffered (and logged) when the shard dies.
  live.push(push(0, 2, 0.5f));
  std::shared_ptr<ps::PsShard> revived = ps::revive_shard(layout, 0, o, snap);
  CHECK(revived->version() == 2);
  CHECK(revived->dense_value(0).to_vector() == snap.state.dense[0].to_vector());
  // The log is applied again; worker 0 asks its push again (acknowledged, not applied twice), worker 1 pushes.
  revived->accept_repeated_pushes();
  revived->push(push(0, 2, 0.5f));
  CHECK(revived->push(push(0, 2, 0.5f)).empty());
  CHECK(revived->pushed(0) == 3);
  revived->push(push(1, 2, -0.25f));
  live.push(push(1, 2, -0.25f));
  CHECK(revived->version() == 3);
  CHECK(revived->dense_value(0).to_vector() == live.dense_value(0).to_vector());
  CHECK(revived->table(0).value().to_vector() == live.table(0).value().to_vector());
  // Without accept_repeated_pushes a repeated push is refused as out of order.
  std::shared_ptr<ps::PsShard> strict = ps::revive_shard(layout, 0, o, snap);
  strict->push(push(0, 2, 0.5f));
  CHECK_THROWS_WITH(strict->push(push(0, 2, 0.5f)), Contains("expected step 3"));
  // The snapshot itself is untouched by the revived shard's updates: it can revive a shard again.
  CHECK(ps::revive_shard(layout, 0, o, snap)->version() == 2);
}

TEST_CASE("a ps shard whose update throws is restarted from its snapshot and the run is bitwise the clean one",
          "[ps][restart]") {
  const PsRun clean = run_ps(ps_gpt({}));
  for (const char* plan : {"throw shard 1 at step 2", "throw shard 0 at step 0",
                           // a fault in the re-run, and a worker and a shard in one step
                           "throw shard 1 at step 1; throw shard 1 at step 1", "throw shard 0 at step 3; throw worker 1 at step 3"}) {
    INFO(plan);
    const PsRun faulty = run_ps(ps_gpt({std::string("fault.inject=") + plan}));
    require_bitwise(clean.run, faulty.run);
    REQUIRE(faulty.restarts.size() == supervision::parse_fault_plan(plan).clauses.size());
    for (const auto& r : faulty.restarts) {
      CHECK((r.restarted_s >= 0.0 && r.recovery_s >= r.restarted_s));
      if (r.child.rfind("shard", 0) == 0) CHECK_THAT(r.cause, Contains("fault.inject: throw shard"));
    }
  }
  SECTION("without clipping the update comes with the step's last push (the MLP)") {
    const std::vector<std::string> mlp = {"model.kind=mlp", "model.mlp_hidden=64", "train.grad_clip=0"};
    std::vector<std::string> sets = ps_gpt(mlp);
    const PsRun mlp_clean = run_ps(sets);
    sets.push_back("fault.inject=throw shard 0 at step 2");
    const PsRun faulty = run_ps(sets);
    require_bitwise(mlp_clean.run, faulty.run);
    REQUIRE(faulty.restarts.size() == 1);
    CHECK(faulty.restarts[0].child == "shard 0");
    CHECK(faulty.restarts[0].step == 2);
  }
}

TEST_CASE("past fault.max_restarts a failing ps shard stops the run naming it, its place and each restart",
          "[ps][restart]") {
  const PsEscalation e = escalate_ps_gpt("throw shard 1 at step 1; throw shard 1 at step 2");
  CHECK_THAT(e.error, Catch::StartsWith("parameter-server shard actor shard 1 (process 0 on localhost"));
  check_second_throw_escalated(e.error, "shard 1");
  CHECK(e.restarts_logged == 1);
}

TEST_CASE("deepfm worker and shard actors are restarted one-for-one and the run is bitwise the clean one",
          "[ps][restart][deepfm]") {
  const DeepfmRun clean = run_deepfm({});
  CHECK(clean.restarts.empty());
  for (const char* plan : {"throw worker 1 at step 2", "throw worker 0 at step 0", "throw shard 1 at step 1",
                           "throw shard 0 at step 3; throw worker 2 at step 3"}) {
    INFO(plan);
    const DeepfmRun faulty = run_deepfm({std::string("fault.inject=") + plan});
    CHECK(faulty.losses == clean.losses);
    require_same_model(clean.model, faulty.model);
    REQUIRE(faulty.restarts.size() == supervision::parse_fault_plan(plan).clauses.size());
    for (const auto& r : faulty.restarts) CHECK_THAT(r.cause, Contains("fault.inject: throw "));
  }
}

TEST_CASE("past fault.max_restarts a failing deepfm worker stops the run naming it, its place and each restart",
          "[ps][restart][deepfm]") {
  try {
    run_deepfm({"fault.max_restarts=1", "fault.inject=throw worker 1 at step 1; throw worker 1 at step 2"});
    FAIL("the second fault is past the intensity");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("parameter-server worker actor worker 1 (worker 1 of parallel.data = 3"));
    check_second_throw_escalated(e.what(), "worker 1");
  }
}

TEST_CASE("fault.inject's shard clauses in parameter-server runs: where they apply, and precise errors elsewhere",
          "[ps][restart][config]") {
  CHECK(ps_gpt_config_error({"fault.inject=throw shard 1 at step 1"}) == "no error");
  CHECK_THAT(ps_gpt_config_error({"fault.inject=kill shard 1 at step 1"}), Contains("a parameter-server shard's fault is 'throw shard S at step N'"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw shard 0 of stage 1 at step 1"}), Contains("parameter servers have no stages"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw shard 2 at step 1"}), Contains("shard 2 does not exist, ps.shards = 2 (shards 0 to 1)"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw shard 1 at step 9"}), Contains("step 9 is never reached"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw shard 1 at step 1", "train.deterministic=false", "ps.mode=async"}),
             Contains("restarted in ps.mode = sync only (got async)") && Contains("would lose the updates since"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=throw shard 1 at step 1", "comm.transport=tcp"}),
             Contains("when the workers are threads (comm.transport = inproc) so far"));
  CHECK_THAT(ps_gpt_config_error({"fault.inject=kill stage 0 at step 1"}), Contains("parameter-server runs have no stage, optimizer-state or tensor-shard actors"));
}
