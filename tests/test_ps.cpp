// Owns the parameter-server tests: the layout, the shard state machine's sync / async / SSP rules and
// sparse updates (driven directly, no actors), and the shard actors with their client.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "actors/state/ps/ps_layout.h"
#include "actors/state/ps/ps_shard.h"
#include "actors/ps/ps_trainer.h"
#include "actors/state/ps/sparse_table.h"
#include "models/trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/trace/trace.h"
#include "tests/error_of.h"
#include "tests/same_weights.h"
#include "tests/temp_dir.h"

using namespace troupe;
using namespace troupe::ps;
using Catch::Matchers::Contains;

namespace {

// dense a [3], b [2, 2], c [5]; table t [10, 2]; dense d [1].
std::vector<PsParamSpec> small_params() {
  return {{"a", {3}, false}, {"b", {2, 2}, false}, {"t", {10, 2}, true}, {"c", {5}, false}, {"d", {1}, false}};
}

// Dense values i + 0.5 * (name index), table row r = (r, -r).
PsInit small_init() {
  PsInit init;
  init.dense = [](const std::string& name) {
    Shape shape = name == "a" ? Shape{3} : name == "b" ? Shape{2, 2} : name == "c" ? Shape{5} : Shape{1};
    Tensor t = Tensor::empty(shape);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = static_cast<float>(i) + 0.5f * static_cast<float>(name[0] - 'a');
    return t;
  };
  init.table_rows = [](const std::string&, std::span<const std::int64_t> rows, const Tensor& out) {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      out.f32()[2 * i] = static_cast<float>(rows[i]);
      out.f32()[2 * i + 1] = -static_cast<float>(rows[i]);
    }
  };
  return init;
}

PsOptions sgd_options(PsMode mode, int workers, int staleness = 0) {
  PsOptions o;
  o.mode = mode;
  o.workers = workers;
  o.staleness = staleness;
  o.optim.kind = OptimKind::sgd;
  o.optim.lr = 1.0;
  return o;
}

Tensor filled(Shape shape, float v) { return Tensor::full(std::move(shape), v); }

// A push of gradient value `g` for every dense parameter of `shard`, and no table rows.
PsPush dense_push(const PsLayout& layout, int shard, int worker, std::int64_t step, float g) {
  PsPush p{.worker = worker, .step = step};
  for (int d : layout.dense_of_shard(shard)) p.dense.push_back(filled(layout.dense_spec(d).shape, g));
  return p;
}

PsPullRequest pull_request(int worker, std::int64_t step) { return PsPullRequest{worker, step, true, {}}; }


}  // namespace

TEST_CASE("ps layout: dense tensors balanced greedily and table rows by row modulo shards", "[ps]") {
  PsLayout one(small_params(), 1);
  CHECK(one.num_dense() == 4);
  CHECK(one.num_tables() == 1);
  CHECK(one.dense_of_shard(0) == std::vector<int>{0, 1, 2, 3});
  CHECK(one.local_rows(0, 0) == 10);

  // a (3) -> 0; b (4) -> 1; c (5) -> 0 (3 < 4); d (1) -> 1 (8 vs 5: shard 1 has fewer)
  PsLayout two(small_params(), 2);
  CHECK(two.dense_of_shard(0) == std::vector<int>{0, 2});
  CHECK(two.dense_of_shard(1) == std::vector<int>{1, 3});
  CHECK(two.dense_spec(2).name == "c");
  CHECK(two.local_rows(0, 0) == 5);
  CHECK(two.local_rows(0, 1) == 5);

  // 3 shards: a->0, b->1, c->2, d->0; 10 rows -> 4, 3, 3.
  PsLayout three(small_params(), 3);
  CHECK(three.dense_of_shard(0) == std::vector<int>{0, 3});
  CHECK(three.dense_of_shard(1) == std::vector<int>{1});
  CHECK(three.dense_of_shard(2) == std::vector<int>{2});
  CHECK(three.local_rows(0, 0) == 4);
  CHECK(three.local_rows(0, 1) == 3);
  CHECK(three.local_rows(0, 2) == 3);
  CHECK(three.row_shard(7) == 1);
  CHECK(three.local_row(7) == 2);
  CHECK(three.global_row(1, 2) == 7);

  // More shards than rows: the extra shards hold none.
  PsLayout many({{"t", {2, 4}, true}}, 4);
  CHECK(many.local_rows(0, 1) == 1);
  CHECK(many.local_rows(0, 2) == 0);
  CHECK(many.dense_of_shard(3).empty());
}

TEST_CASE("ps layout and options reject bad input", "[ps]") {
  CHECK_THROWS_WITH(PsLayout(small_params(), 0), Contains("ps.shards = 0"));
  CHECK_THROWS_WITH(PsLayout({{"x", {2}, false}, {"x", {2}, false}}, 1), Contains("listed twice"));
  CHECK_THROWS_WITH(PsLayout({{"t", {4}, true}}, 1), Contains("must be [rows >= 1, dim >= 1]"));
  CHECK_THROWS_WITH(parse_mode("bsp"), Contains("ps.mode = 'bsp': expected one of sync, async, ssp"));
  PsOptions o = sgd_options(PsMode::async, 2, 3);
  CHECK_THROWS_WITH(validate(o), Contains("ps.staleness = 3 needs ps.mode = ssp (got async)"));
  o = sgd_options(PsMode::sync, 0);
  CHECK_THROWS_WITH(validate(o), Contains("at least 1 worker"));
}

TEST_CASE("ps shard sync: applies once every worker pushed and sums in worker order whatever the arrival order", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 2);
  PsShard shard(layout, 0, sgd_options(PsMode::sync, 3), small_init());  // dense a [3], c [5]

  // Gradients whose float sum depends on the order: (1e8 - 1e8) + 1 is 1 in float, (1 - 1e8) + 1e8 is 0.
  std::vector<float> g = {1e8f, -1e8f, 1.0f};
  auto push = [&](int w) {
    PsPush p{.worker = w, .step = 0, .dense = {filled({3}, g[static_cast<std::size_t>(w)]), filled({5}, g[static_cast<std::size_t>(w)])}};
    return shard.push(std::move(p));
  };
  // Worker 1 may not pull step 1 before step 0 is applied: queued.
  CHECK(shard.pull(pull_request(1, 0), 100).has_value());
  CHECK(push(2).empty());
  CHECK(push(1).empty());
  CHECK(shard.version() == 0);
  CHECK_FALSE(shard.admits(1, 1));
  CHECK_FALSE(shard.pull(pull_request(1, 1), 7).has_value());
  CHECK(shard.queued_pulls() == 1);
  auto released = push(0);  // the last push applies the step and releases the pull
  CHECK(shard.version() == 1);
  REQUIRE(released.size() == 1);
  CHECK(released[0].ticket == 7);
  CHECK(released[0].reply.version == 1);
  // a[i] = i - lr * ((1e8 - 1e8) + 1) = i - 1: worker order, not arrival order (2, 1, 0), which gives i - 0.
  for (int i = 0; i < 3; ++i) CHECK(shard.dense_value(0).f32()[i] == static_cast<float>(i) - 1.0f);
  CHECK(released[0].reply.dense.at(0).f32()[2] == shard.dense_value(0).f32()[2]);
  CHECK(shard.queued_pulls() == 0);
}

TEST_CASE("ps shard async: every push is its own update and pulls never wait", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 1);
  PsShard shard(layout, 0, sgd_options(PsMode::async, 2), small_init());
  shard.push(dense_push(*layout, 0, 0, 0, 1.0f));
  CHECK(shard.version() == 1);
  shard.push(dense_push(*layout, 0, 0, 1, 1.0f));
  shard.push(dense_push(*layout, 0, 0, 2, 1.0f));
  CHECK(shard.version() == 3);
  // Worker 1 has pushed nothing: it still pulls at once, seeing worker 0's three updates.
  auto r = shard.pull(pull_request(1, 0), 1);
  REQUIRE(r.has_value());
  CHECK(r->dense.at(0).f32()[0] == -3.0f);  // a[0] = 0 - 3 * 1
  CHECK(shard.pull(pull_request(0, 3), 2).has_value());
  // A push may carry its own learning rate (a schedule's): a[0] = -3 - 0.25 * 2.
  PsPush scheduled = dense_push(*layout, 0, 1, 0, 2.0f);
  scheduled.lr = 0.25;
  shard.push(scheduled);
  CHECK(shard.dense_value(0).f32()[0] == -3.5f);
}

TEST_CASE("ps shard ssp: a pull for step t waits until every worker pushed t - s steps and not longer", "[ps]") {
  for (int s : {0, 1, 3}) {
    DYNAMIC_SECTION("staleness " << s) {
      auto layout = std::make_shared<const PsLayout>(small_params(), 1);
      PsShard shard(layout, 0, sgd_options(PsMode::ssp, 2, s), small_init());
      // Worker 0 runs ahead while worker 1 has pushed nothing: steps 0..s pull at once, s + 1 waits.
      for (int t = 0; t <= s; ++t) {
        INFO("step " << t);
        REQUIRE(shard.pull(pull_request(0, t), static_cast<std::uint64_t>(t)).has_value());
        CHECK(shard.push(dense_push(*layout, 0, 0, t, 0.5f)).empty());
        CHECK(shard.version() == t + 1);  // applied at once
      }
      CHECK_FALSE(shard.admits(0, s + 1));
      CHECK_FALSE(shard.pull(pull_request(0, s + 1), 99).has_value());
      // Worker 1's first push (1 step done) is exactly the bound for step s + 1.
      auto released = shard.push(dense_push(*layout, 0, 1, 0, 0.5f));
      REQUIRE(released.size() == 1);
      CHECK(released[0].ticket == 99);
      CHECK(released[0].reply.version == s + 2);
      CHECK_FALSE(shard.admits(0, s + 2));  // needs every worker at 2 pushes
    }
  }
}

TEST_CASE("ps shard sparse push and pull touch only the rows sent", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 2);
  PsOptions o = sgd_options(PsMode::sync, 2);
  o.optim.kind = OptimKind::adam;
  o.optim.lr = 0.1;
  PsShard shard(layout, 1, o, small_init());  // rows 1, 3, 5, 7, 9 of t at local 0..4
  const Tensor before = shard.table(0).value().clone();
  auto sparse_push = [&](int w, std::vector<std::int64_t> ids, float g) {
    PsPush p = dense_push(*layout, 1, w, 0, 0.0f);
    p.tables.resize(1);
    p.tables[0].rows = filled({static_cast<std::int64_t>(ids.size()), 2}, g);
    p.tables[0].ids = std::move(ids);
    return p;
  };
  shard.push(sparse_push(0, {3, 9}, 1.0f));
  shard.push(sparse_push(1, {9}, 2.0f));
  const Tensor& after = shard.table(0).value();
  for (std::int64_t local = 0; local < 5; ++local) {
    const bool touched = local == 1 || local == 4;  // rows 3 and 9
    for (int c = 0; c < 2; ++c) {
      INFO("local row " << local << " column " << c);
      const float b = before.f32()[local * 2 + c], a = after.f32()[local * 2 + c];
      if (touched) CHECK(a != b);
      else CHECK(std::memcmp(&a, &b, sizeof(float)) == 0);
    }
  }
  // Adam's first step moves each touched element by lr (m / sqrt(v) = sign(g)).
  CHECK(after.f32()[1 * 2] == Approx(3.0f - 0.1f).epsilon(1e-6));
  CHECK(after.f32()[4 * 2 + 1] == Approx(-9.0f - 0.1f).epsilon(1e-6));
  // Optimizer state exists for touched rows only.
  const Tensor& m = shard.table(0).state().at("exp_avg");
  CHECK(m.f32()[0] == 0.0f);
  CHECK(m.f32()[2] == Approx(0.1f * 1.0f));
  CHECK(m.f32()[8] == Approx(0.1f * 3.0f));  // row 9: 1 + 2 summed
  CHECK(shard.table(0).step() == 1);

  // A sparse pull returns exactly the rows asked for, in order.
  PsPullRequest r{0, 1, false, {{1, 9}}};
  auto reply = shard.pull(r, 0);
  REQUIRE(reply.has_value());
  CHECK(reply->dense.empty());
  REQUIRE(reply->tables.at(0).shape() == Shape{2, 2});
  CHECK(reply->tables[0].f32()[0] == 1.0f);
  CHECK(reply->tables[0].f32()[2] == after.f32()[8]);
}

TEST_CASE("ps shard rejects bad pushes and pulls before changing anything", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 2);
  PsShard shard(layout, 1, sgd_options(PsMode::sync, 2), small_init());
  auto with_rows = [&](std::vector<std::int64_t> ids, Shape shape) {
    PsPush p = dense_push(*layout, 1, 0, 0, 1.0f);
    p.tables.resize(1);
    p.tables[0].ids = std::move(ids);
    p.tables[0].rows = filled(std::move(shape), 1.0f);
    return p;
  };
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(dense_push(*layout, 1, 2, 0, 1.0f)); }), Contains("worker 2, but there are 2 workers"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(dense_push(*layout, 1, 0, 1, 1.0f)); }), Contains("expected step 0"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(with_rows({4}, {1, 2})); }), Contains("row 4 belongs to shard 0"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(with_rows({11}, {1, 2})); }), Contains("row 11 is outside [0, 10)"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(with_rows({5, 3}, {2, 2})); }), Contains("strictly increasing, got 3 after 5"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(with_rows({3}, {1, 3})); }), Contains("expected f32 [1, 2]"));
  PsPush wrong = dense_push(*layout, 1, 0, 0, 1.0f);
  wrong.dense.pop_back();
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(wrong); }), Contains("dense gradients, this shard holds 2"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.pull(pull_request(0, 2), 0); }), Contains("may pull for steps 0..0"));
  CHECK(shard.version() == 0);
  CHECK(shard.pushed(0) == 0);
  // Sync: after its push for step 0, worker 0 may not push step 1 before step 0 is applied.
  shard.push(dense_push(*layout, 1, 0, 0, 1.0f));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(dense_push(*layout, 1, 0, 1, 1.0f)); }), Contains("cannot run ahead"));
  PsPush other_lr = dense_push(*layout, 1, 1, 0, 1.0f);
  other_lr.lr = 0.5;
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.push(other_lr); }), Contains("learning rate 0.5 differs from worker 0's -1"));
}

TEST_CASE("ps actors: a client's pulls and pushes reach every shard and come back reassembled", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 3);
  PsCluster cluster(layout, sgd_options(PsMode::sync, 2), small_init(), 10.0);
  auto c0 = cluster.client(0), c1 = cluster.client(1);
  auto got = c0->pull(0, {{0, 4, 5, 9}});
  REQUIRE(got.dense.size() == 4);
  CHECK(got.dense[1].shape() == Shape{2, 2});
  CHECK(got.dense[3].f32()[0] == 1.5f);  // d: 0 + 0.5 * 3
  REQUIRE(got.tables.at(0).shape() == Shape{4, 2});
  const std::vector<float> rows(got.tables[0].f32(), got.tables[0].f32() + 8);
  CHECK(rows == std::vector<float>{0, -0.f, 4, -4, 5, -5, 9, -9});

  // Worker 1 pushes step 0 from its own thread while worker 0 waits for step 1's parameters.
  auto grads = [&](float g) {
    std::vector<Tensor> dense;
    for (int d = 0; d < layout->num_dense(); ++d) dense.push_back(filled(layout->dense_spec(d).shape, g));
    return dense;
  };
  c0->push(0, grads(1.0f), {SparseRows{{4, 5}, filled({2, 2}, 1.0f)}});
  std::thread other([&] {
    c1->pull(0, {});
    c1->push(0, grads(2.0f), {SparseRows{{5}, filled({1, 2}, 1.0f)}});
  });
  auto next = c0->pull(1, {{4, 5, 6}});
  other.join();
  CHECK(next.min_version == 1);
  CHECK(next.dense[0].f32()[0] == -3.0f);  // 0 - (1 + 2)
  const std::vector<float> r1(next.tables[0].f32(), next.tables[0].f32() + 6);
  CHECK(r1 == std::vector<float>{3, -5, 3, -7, 6, -6});  // row 4 - 1, row 5 - (1 + 1), row 6 untouched

  PsCluster::Model m = cluster.snapshot();
  CHECK(m.versions == std::vector<std::int64_t>{1, 1, 1});
  CHECK(m.tables[0].f32()[5 * 2] == 3.0f);
  CHECK(m.tables[0].f32()[9 * 2 + 1] == -9.0f);
  CHECK(m.dense[2].f32()[4] == 4.0f + 1.0f - 3.0f);
}

TEST_CASE("ps actors: a rejected push is an error naming the shard and a pull nobody can admit times out", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 2);
  PsCluster cluster(layout, sgd_options(PsMode::sync, 2), small_init(), 0.3);
  auto c0 = cluster.client(0);
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { c0->push(3, {}, {}); }), Contains("expected step 0"));
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { c0->pull(0, {{5, 2}}); }), Contains("strictly increasing"));
  CHECK_THROWS_WITH(cluster.client(2), Contains("there are 2 workers"));
  c0->push(0, {}, {});
  // Worker 1 never pushes step 0, so step 1 is never applied.
  try {
    c0->pull(1, {});
    FAIL("the pull should time out");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::kIo);
    CHECK_THAT(std::string(e.what()), Contains("did not answer the pull of worker 0 for step 1 within 0.3 s"));
  }
}

TEST_CASE("ps shard sync with clipping: the step waits for the norm round and applies the scaled sum", "[ps]") {
  auto layout = std::make_shared<const PsLayout>(small_params(), 2);
  PsOptions o = sgd_options(PsMode::sync, 2);
  o.clip = true;
  PsShard shard(layout, 0, o, small_init());  // a [3], c [5]
  CHECK_FALSE(shard.norm(0, 5).has_value());   // queued until the step is summed
  shard.push(dense_push(*layout, 0, 0, 0, 1.0f));
  CHECK(shard.norms_released().empty());
  CHECK(shard.push(dense_push(*layout, 0, 1, 0, 2.0f)).empty());
  CHECK(shard.norms_released() == std::vector<std::uint64_t>{5});
  // Summed gradient 3 everywhere: sums of squares 3 * 9 (a), 5 * 9 (c), then the table's (none: 0).
  CHECK(shard.current_sum_squares() == std::vector<double>{27.0, 45.0, 0.0});
  CHECK(shard.version() == 0);  // not applied before the coefficient
  CHECK_FALSE(shard.pull(pull_request(0, 1), 9).has_value());
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.clip(1, 0.5); }), Contains("clip for step 1, but step 0 is the one waiting"));
  auto released = shard.clip(0, 0.5);
  REQUIRE(released.size() == 1);
  CHECK(released[0].ticket == 9);
  CHECK(shard.dense_value(0).f32()[1] == 1.0f - 1.5f);  // a[1] = 1 - lr * 0.5 * 3
  CHECK_THAT(error_of(ErrorKind::kInput, [&] { shard.clip(1, 0.5); }), Contains("no step is waiting"));
  CHECK_THROWS_WITH(validate(PsOptions{PsMode::async, 0, 2, {}, true}), Contains("clipping on the parameter servers needs ps.mode = sync"));
}

namespace {
RunConfig tiny_gpt(std::vector<std::string> sets) {
  std::vector<std::string> all = {"model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
                                  "train.batch_size=8", "train.threads=2", "optim.lr=3e-3"};
  all.insert(all.end(), sets.begin(), sets.end());
  return load_config(std::nullopt, all);
}
}  // namespace

TEST_CASE("ps trainer sync: GPT losses and weights equal single-device training with clipping and a schedule", "[ps]") {
  const std::vector<std::string> common = {"train.lr_schedule=cosine", "train.warmup_steps=2", "train.steps=5",
                                           "train.grad_clip=0.5"};
  Trainer reference(tiny_gpt(common));
  std::vector<double> expected;
  for (int t = 0; t < 5; ++t) expected.push_back(reference.train_step(t).loss);
  for (int d : {2, 4}) {
    DYNAMIC_SECTION(d << " workers") {
      auto sets = common;
      sets.insert(sets.end(), {"parallel.gradient_exchange=ps", "parallel.data=" + std::to_string(d), "ps.shards=3"});
      ps::PsTrainer trainer(tiny_gpt(sets));
      for (int t = 0; t < 5; ++t) {
        const StepStats s = trainer.train_step(t);
        INFO("step " << t);
        CHECK(s.loss == Approx(expected[static_cast<std::size_t>(t)]).epsilon(1e-5));
        CHECK(s.grad_norm > 0.0);
      }
      // The shards' weights, pulled into a model, against the reference's.
      TempDir dir;
      trainer.save_weights(dir.file("ps.safetensors"));
      Trainer loaded(tiny_gpt(common));
      loaded.load_weights(dir.file("ps.safetensors"));
      const auto& mine = loaded.model().params().all();
      const auto& theirs = reference.model().params().all();
      for (std::size_t i = 0; i < mine.size(); ++i) {
        INFO(mine[i]->name);
        double worst = 0;
        for (std::int64_t k = 0; k < mine[i]->value.numel(); ++k)
          worst = std::max(worst, static_cast<double>(std::abs(mine[i]->value.f32()[k] - theirs[i]->value.f32()[k])));
        CHECK(worst < 1e-5);
      }
      CHECK(trainer.evaluate().loss == Approx(reference.evaluate().loss).epsilon(1e-4));
      CHECK(trainer.optimizer_state_bytes() == reference.optimizer().state_bytes());
    }
  }
}

TEST_CASE("ps trainer async and ssp train the GPT and unsupported settings are config errors", "[ps]") {
  for (const char* mode : {"async", "ssp"}) {
    DYNAMIC_SECTION(mode) {
      ps::PsTrainer trainer(tiny_gpt({"parallel.gradient_exchange=ps", "parallel.data=2", "ps.shards=2",
                                      std::string("ps.mode=") + mode}));
      const double first = trainer.train_step(0).loss;
      double last = first;
      for (int t = 1; t < 30; ++t) last = trainer.train_step(t).loss;
      CHECK(last < first - 0.5);
    }
  }
  CHECK_THAT(config_error([] { ps::PsTrainer{tiny_gpt({"parallel.gradient_exchange=ring", "parallel.data=2"})}; }),
             Contains("needs parallel.gradient_exchange = ps"));
  CHECK_THAT(config_error([] {
               RunConfig c = tiny_gpt({"parallel.gradient_exchange=ps", "parallel.data=2"});
               c.parallel.pipeline = 2;  // what load_config refuses, refused here too
               ps::PsTrainer{c};
             }),
             Contains("parallel.pipeline = 2 with parallel.gradient_exchange = ps"));
}

TEST_CASE("ps trainer sync: MLP losses equal single-device training", "[ps]") {
  const std::vector<std::string> common = {"model.kind=mlp", "model.mlp_hidden=64", "train.batch_size=32",
                                           "train.threads=2", "optim.kind=sgd", "optim.lr=0.1", "optim.momentum=0.9"};
  Trainer reference(load_config(std::nullopt, common));
  auto sets = common;
  sets.insert(sets.end(), {"parallel.gradient_exchange=ps", "parallel.data=4", "ps.shards=2"});
  ps::PsTrainer trainer(load_config(std::nullopt, sets));
  CHECK(trainer.param_count() == reference.model().params().numel());
  TraceRecorder trace;
  trainer.set_trace(&trace);
  for (int t = 0; t < 4; ++t) {
    INFO("step " << t);
    CHECK(trainer.train_step(t).loss == Approx(reference.train_step(t).loss).epsilon(1e-5));
  }
  CHECK(trace.track_stats().size() == 4);  // one track per worker
}

TEST_CASE("ps trainer sync deterministic: GPT losses and weights bitwise equal the single-device run", "[ps]") {
  const std::vector<std::string> common = {"train.deterministic=true", "train.lr_schedule=cosine", "train.warmup_steps=2",
                                           "train.steps=4", "train.grad_clip=0.5"};
  Trainer reference(tiny_gpt(common));
  std::vector<double> expected;
  for (int t = 0; t < 4; ++t) expected.push_back(reference.train_step(t).loss);
  TempDir dir;
  reference.save_weights(dir.file("reference.safetensors"));
  for (auto [d, m] : {std::pair{2, 1}, std::pair{4, 1}, std::pair{2, 2}}) {
    DYNAMIC_SECTION(d << " workers x " << m << " micro-batches") {
      auto sets = common;
      sets.insert(sets.end(), {"parallel.gradient_exchange=ps", "parallel.data=" + std::to_string(d), "ps.shards=3",
                               "parallel.microbatches=" + std::to_string(m)});
      ps::PsTrainer trainer(tiny_gpt(sets));
      for (int t = 0; t < 4; ++t) CHECK(trainer.train_step(t).loss == expected[static_cast<std::size_t>(t)]);
      trainer.save_weights(dir.file("ps.safetensors"));
      check_same_weights(dir.file("reference.safetensors"), dir.file("ps.safetensors"));
    }
  }
}
