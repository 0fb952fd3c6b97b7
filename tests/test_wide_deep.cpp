// Owns the Wide & Deep tests: the click log, exact AUC, the model's gradients, parameter-server training
// equal to single-process training (sync, 1/2/4 workers), async/SSP training that learns, and bad options.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "actors/state/ps/sparse_table.h"
#include "actors/ps/wide_deep_ps.h"
#include "runtime/config/config_loader.h"
#include "models/binary_metrics.h"
#include "models/wide_deep.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/data/click_log.h"
#include "runtime/optim/optimizer.h"
#include "tests/error_of.h"
#include "tests/ps_links.h"
#include "tests/rank_errors.h"
#include "tests/recommender_ps_runs.h"
#include "tests/recommender_gradcheck.h"
#include "tests/recommender_trainer.h"
#include "tests/small_click_log.h"

using namespace troupe;
using namespace troupe::ps;
using Catch::Matchers::Contains;
using testing::same_bits;

namespace {

ClickLogOptions small_data() { return testing::small_click_data(); }

WideDeepOptions small_model(const ClickLogOptions& d) { return testing::small_recommender(RecommenderKind::wide_deep, d); }

}  // namespace

TEST_CASE("click log: samples are a pure function of seed and index and ids follow their popularity", "[wide_deep]") {
  const ClickLog log(small_data());
  const ClickBatch whole = log.train_batch(3, 64);
  const ClickBatch part = log.train_slice(3, 64, 16, 48);
  CHECK(same_bits(part.categorical, whole.slice(16, 48).categorical.clone()));
  CHECK(same_bits(part.dense, whole.slice(16, 48).dense.clone()));
  CHECK(same_bits(part.labels, whole.slice(16, 48).labels.clone()));
  CHECK(same_bits(ClickLog(small_data()).train_batch(3, 64).categorical, whole.categorical));
  CHECK_FALSE(same_bits(log.train_batch(4, 64).categorical, whole.categorical));
  CHECK(log.test_batch(4000, 500).size() == 96);  // clipped at the end of the test split

  // Field 0 (5000 ids, Zipf 1.2): id 0 is the most frequent, and the ids stay in range.
  const ClickBatch big = log.train_batch(0, 20000);
  std::vector<int> count(5000);
  double clicks = 0;
  for (std::int64_t i = 0; i < big.size(); ++i) {
    const std::int32_t id = big.categorical.i32()[i * 3];
    REQUIRE((id >= 0 && id < 5000));
    ++count[static_cast<std::size_t>(id)];
    const float y = big.labels.f32()[i];
    REQUIRE((y == 0.0f || y == 1.0f));
    clicks += y;
  }
  CHECK(std::max_element(count.begin(), count.end()) == count.begin());
  CHECK(count[0] > 10 * count[100]);
  CHECK(clicks / 20000 > 0.1);
  CHECK(clicks / 20000 < 0.9);
}

TEST_CASE("roc_auc is exact with tied scores and log_loss matches its formula", "[wide_deep]") {
  const std::vector<float> y = {0, 0, 1, 1};
  CHECK(roc_auc(std::vector<float>{0.1f, 0.4f, 0.35f, 0.8f}, y) == 0.75);
  CHECK(roc_auc(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, y) == 1.0);
  CHECK(roc_auc(std::vector<float>{0.4f, 0.3f, 0.2f, 0.1f}, y) == 0.0);
  CHECK(roc_auc(std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f}, y) == 0.5);
  // One tie across classes: pairs (pos, neg) = 4, of which 3 ordered right and 1 tied -> 3.5 / 4.
  CHECK(roc_auc(std::vector<float>{0.1f, 0.6f, 0.6f, 0.9f}, y) == 0.875);
  CHECK_THROWS_WITH(roc_auc(std::vector<float>{0.1f, 0.2f}, std::vector<float>{1, 1}), Contains("AUC needs both"));
  CHECK_THROWS_WITH(roc_auc(std::vector<float>{0.1f}, std::vector<float>{1, 0}), Contains("1 predictions but 2 labels"));
  CHECK(log_loss(std::vector<float>{0.8f, 0.25f}, std::vector<float>{1, 0}) ==
        Approx(-(std::log(0.8) + std::log(0.75)) / 2).epsilon(1e-6));
}

TEST_CASE("wide & deep: lookups list each touched row once and gradients match finite differences", "[wide_deep]") {
  ClickLogOptions d = small_data();
  d.cardinalities = {6, 9, 4};
  const ClickLog log(d);
  WideDeepOptions m = small_model(d);
  m.wide_buckets = 13;
  m.hidden = {5};
  WideDeep model(m);
  CpuBackend be(1);
  const ClickBatch batch = log.train_batch(0, 12);
  const auto lookups = model.lookup(batch);
  REQUIRE(lookups.size() == 4);
  for (int f = 0; f < 3; ++f) {
    const auto& l = lookups[static_cast<std::size_t>(f)];
    CHECK(std::is_sorted(l.ids.begin(), l.ids.end()));
    CHECK(std::adjacent_find(l.ids.begin(), l.ids.end()) == l.ids.end());
    for (std::int64_t b = 0; b < 12; ++b) CHECK(l.ids[static_cast<std::size_t>(l.index.i32()[b])] == batch.categorical.i32()[b * 3 + f]);
  }
  CHECK(lookups[3].index.numel() == 12 * (3 + 3));  // 3 fields + 3 crosses per sample

  // Random (not initial) table rows, so the wide rows are not all zero.
  std::vector<Tensor> rows = testing::varied_rows(model, lookups);
  testing::check_recommender_gradients(model, be, batch, lookups, rows, /*every_row_element=*/false);
}

TEST_CASE("wide & deep on parameter servers: sync with 1 2 4 workers equals single-process training", "[wide_deep][ps]") {
  testing::require_sync_workers_match_one_process(small_data(), small_model(small_data()));
}

TEST_CASE("wide & deep with workers as processes' links (threads, inproc and tcp): sync is bitwise the threads' run",
          "[wide_deep][ps]") {
  WideDeepPsOptions o;
  o.data = small_data();
  o.model = small_model(o.data);
  testing::require_links_match_threads(o);
}

TEST_CASE("wide & deep on parameter servers learns in async and ssp mode", "[wide_deep][ps]") {
  WideDeepPsOptions o;
  o.data.cardinalities = {100000, 10000, 3000, 1000, 100, 10};
  o.data.test_samples = 8192;
  o.model.wide_buckets = 1 << 16;
  o.ps.optim.kind = OptimKind::adam;
  o.ps.optim.lr = 0.01;
  o.ps.workers = 2;
  o.shards = 2;
  o.steps = 250;
  o.batch_size = 256;
  SECTION("async") { o.ps.mode = PsMode::async; }
  SECTION("ssp, staleness 2") {
    o.ps.mode = PsMode::ssp;
    o.ps.staleness = 2;
  }
  const WideDeepPsResult r = train_wide_deep_ps(o);
  INFO("test AUC " << r.test_auc << ", log-loss " << r.test_log_loss << ", hidden model AUC " << r.oracle_auc);
  CHECK(r.test_auc > 0.75);
  CHECK(r.losses.back() < r.losses.front());
  CHECK(r.eval_samples == 8192);
}

TEST_CASE("wide & deep: bad options and inputs are errors naming what is wrong", "[wide_deep]") {
  WideDeepPsOptions o;
  o.data = small_data();
  o.model = small_model(o.data);
  o.steps = 0;
  CHECK_THAT(config_error([&] { train_wide_deep_ps(o); }), Contains("steps = 0: must be >= 1"));
  o.steps = 1;
  o.shards = 0;
  CHECK_THAT(config_error([&] { train_wide_deep_ps(o); }), Contains("ps.shards = 0"));
  o.shards = 1;
  o.ps.staleness = 2;
  CHECK_THAT(config_error([&] { train_wide_deep_ps(o); }), Contains("needs ps.mode = ssp"));
  o.ps.staleness = 0;
  // optim.kind is an enum: an unknown optimizer can only come in as text, refused when parsed.
  RunConfig rc;
  CHECK_THAT(config_error([&] { apply_config_override(rc, "optim.kind=adagrad"); }), Contains("optim.kind = 'adagrad'"));
  o.ps.optim.kind = OptimKind::adam;
  o.data.zipf = 0;
  CHECK_THAT(config_error([&] { train_wide_deep_ps(o); }), Contains("zipf = 0"));

  WideDeepOptions m = small_model(small_data());
  m.crosses = {{0, 3}};
  CHECK_THAT(config_error([&] { WideDeep{m}; }), Contains("cross (0, 3) names a field outside 0..2"));
  m = small_model(small_data());
  WideDeep model(m);
  ClickBatch batch = ClickLog(small_data()).train_batch(0, 4);
  batch.categorical.i32()[1] = 800;  // field 1 has 800 ids
  CHECK_THROWS_WITH(model.lookup(batch), Contains("sample 0 field 1 has id 800, outside [0, 800)"));
}
