// Owns the tests of parameter servers across processes: the link format's round trips and malformed input, a remote worker's calls and errors, and PsTrainer over links (ranks as threads, in-process and TCP transports) against single-device training.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/ps/ps_actor.h"
#include "actors/ps/ps_link.h"
#include "actors/ps/ps_trainer.h"
#include "actors/state/ps/ps_wire.h"
#include "models/trainer.h"
#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "tests/rank_errors.h"
#include "tests/ps_links.h"
#include "tests/rank_threads.h"
#include "tests/same_weights.h"
#include "tests/error_of.h"
#include "tests/temp_dir.h"

using namespace troupe;
using namespace troupe::ps;
using Catch::Matchers::Contains;
using troupe::testing::RankGroup;
using troupe::testing::TransportKind;
using troupe::testing::BorrowedTransport;
using troupe::testing::PsTestLinks;
using namespace std::chrono_literals;

namespace {

// dense a [3], b [2, 2]; table t [10, 2].
std::shared_ptr<const PsLayout> small_layout(int shards = 2) {
  return std::make_shared<const PsLayout>(
      std::vector<PsParamSpec>{{"a", {3}, false}, {"t", {10, 2}, true}, {"b", {2, 2}, false}}, shards);
}

Tensor filled(Shape shape, float first) {
  Tensor t = Tensor::empty(std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = first + static_cast<float>(i);
  return t;
}

std::vector<float> values(const Tensor& t) { return std::vector<float>(t.f32(), t.f32() + t.numel()); }


RunConfig tiny_gpt(std::vector<std::string> sets) {
  std::vector<std::string> all = {"model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
                                  "train.batch_size=12", "train.threads=1", "optim.lr=3e-3",
                                  "parallel.gradient_exchange=ps", "comm.transport=tcp", "comm.timeout_s=20"};
  all.insert(all.end(), sets.begin(), sets.end());
  return load_config(std::nullopt, all);
}

}  // namespace

TEST_CASE("ps wire: pulls, answers, pushes, exact pushes and loss reports round-trip", "[ps]") {
  const auto layout = small_layout();
  const std::vector<std::vector<std::int64_t>> ids = {{1, 4, 9}};
  CHECK(wire::decode_pull(wire::encode_pull(ids), *layout, "test") == ids);
  CHECK(wire::decode_pull(wire::encode_pull({}), *layout, "test").empty());

  PsPulled pulled;
  pulled.dense = {filled({3}, 1), filled({2, 2}, 10)};
  pulled.tables = {filled({3, 2}, 100)};
  pulled.min_version = 7;
  const PsPulled back = wire::decode_pulled(wire::encode_pulled(pulled), *layout, true, ids, "test");
  REQUIRE(back.dense.size() == 2);
  CHECK(back.dense[1].shape() == Shape{2, 2});
  CHECK(values(back.dense[1]) == values(pulled.dense[1]));
  CHECK(values(back.tables.at(0)) == values(pulled.tables[0]));
  CHECK(back.min_version == 7);

  SparseRows rows{{0, 3}, filled({2, 2}, -5)};
  const wire::PushPayload push =
      wire::decode_push(wire::encode_push({filled({3}, 0.5f), filled({2, 2}, 2)}, {rows}), *layout, "test");
  REQUIRE(push.dense.size() == 2);
  CHECK(values(push.dense[0]) == values(filled({3}, 0.5f)));
  REQUIRE(push.tables.size() == 1);
  CHECK(push.tables[0].ids == rows.ids);
  CHECK(values(push.tables[0].rows) == values(rows.rows));
  const wire::PushPayload empty_rows = wire::decode_push(wire::encode_push({}, {SparseRows{}}), *layout, "test");
  CHECK(empty_rows.dense.empty());
  CHECK(empty_rows.tables.at(0).rows.shape() == Shape{0, 2});

  std::vector<ExactGrad> exact(2);
  exact[0].sums = {1, -2, (ExactSum{1} << 100)};
  exact[1].buffers = 2;
  exact[1].sums.assign(8, ExactSum{-3});
  const auto exact_back = wire::decode_push_exact(wire::encode_push_exact(exact), *layout, "test");
  CHECK(exact_back[0].sums == exact[0].sums);
  CHECK(exact_back[1].buffers == 2);
  CHECK(exact_back[1].sums == exact[1].sums);

  CHECK(wire::decode_losses(wire::encode_losses({1.0, 0.1, 5e-300}), "test") == std::vector<double>{1.0, 0.1, 5e-300});
  CHECK(wire::decode_f64(wire::encode_f64(2.5), "clip answer", "test") == 2.5);
}

TEST_CASE("ps wire: a cut, padded or inconsistent payload is an error naming the field, never a crash", "[ps]") {
  const auto layout = small_layout();
  const std::vector<std::byte> push = wire::encode_push({filled({3}, 0), filled({2, 2}, 0)}, {SparseRows{{2, 5}, filled({2, 2}, 0)}});
  // Every truncation fails cleanly.
  for (std::size_t n = 0; n < push.size(); ++n) {
    INFO(n << " of " << push.size() << " bytes");
    CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_push(std::span(push).first(n), *layout, "ps worker 2"); }),
               Contains("malformed ps push from ps worker 2"));
  }
  std::vector<std::byte> padded = push;
  padded.push_back(std::byte{0});
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_push(padded, *layout, "w"); }), Contains("1 bytes left over"));
  // A dense gradient of the wrong size, row ids out of order, a huge count.
  const std::vector<std::byte> wrong = wire::encode_push({filled({4}, 0), filled({2, 2}, 0)}, {});
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_push(wrong, *layout, "w"); }),
             Contains("dense gradient is 4, expected 3"));
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_pull(wire::encode_pull({{4, 2}}), *layout, "w"); }),
             Contains("row id 2 at position 1 is out of order"));
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_pull(wire::encode_pull({{3}, {1}}), *layout, "w"); }),
             Contains("row ids for 2 tables, the model has 1"));
  std::vector<std::byte> huge = wire::encode_losses({0.0, 0.0});
  const std::int64_t lie = std::int64_t{1} << 60;
  std::memcpy(huge.data(), &lie, sizeof lie);
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::decode_losses(huge, "w"); }), Contains("does not fit the 16 bytes left"));
  wire::Header h;
  h.magic = 0x5a5a5a5a;
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::check_header(h, "ps worker 1"); }), Contains("bad magic 0x5a5a5a5a"));
  h.magic = wire::kMagic;
  h.kind = static_cast<wire::Kind>(42);
  CHECK_THAT(error_of(ErrorKind::kIo, [&] { wire::check_header(h, "ps worker 1"); }), Contains("unknown kind 42"));
}

TEST_CASE("a remote worker's refused request gets the shard's error and the link stays up", "[ps]") {
  for (const TransportKind kind : {TransportKind::inproc, TransportKind::tcp}) {
    DYNAMIC_SECTION(kind) {
      const auto layout = small_layout();
      PsOptions options;
      options.workers = 1;
      options.optim.kind = OptimKind::sgd;
      options.optim.lr = 1.0;
      PsInit init;
      init.dense = [](const std::string& name) { return filled(name == "a" ? Shape{3} : Shape{2, 2}, 0); };
      init.table_rows = [](const std::string&, std::span<const std::int64_t>, const Tensor& out) {
        for (std::int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = 1.0f;
      };
      PsCluster cluster(layout, options, init, 10.0);
      RankGroup link(kind, 2, 10s);
      std::exception_ptr server_error;
      std::thread server([&] {
        try {
          auto client = cluster.client(0);
          serve_remote_worker(link.transport(0), 0, *layout, *client, {});
        } catch (...) {
          server_error = std::current_exception();
        }
      });
      RemotePsClient remote(link.transport(1), layout, 0);
      // Step 1 before step 0: the shard refuses it, as it would a local worker's.
      CHECK_THAT(error_of(ErrorKind::kInput, [&] { remote.push(1, {filled({3}, 1), filled({2, 2}, 1)}, {}); }),
                 Contains("step 1"));
      remote.push(0, {filled({3}, 1), filled({2, 2}, 1)}, {SparseRows{{4}, filled({1, 2}, 2)}});
      const PsPulled got = remote.pull(1, {{4, 5}});
      CHECK(values(got.dense[0]) == std::vector<float>{-1, -1, -1});  // (0, 1, 2) - lr * (1, 2, 3)
      CHECK(values(got.tables.at(0)) == std::vector<float>{-1, -2, 1, 1});  // row 4 updated, row 5 not
      CHECK(got.min_version == 1);
      remote.bye();
      server.join();
      CHECK_FALSE(server_error);
    }
  }
}

TEST_CASE("ps over links (ranks as threads, inproc and tcp): deterministic sync is bitwise the single device", "[ps]") {
  const std::vector<std::string> common = {"train.deterministic=true", "train.lr_schedule=cosine", "train.warmup_steps=2",
                                           "train.steps=4", "train.grad_clip=0.5"};
  Trainer reference(tiny_gpt(common));
  std::vector<double> expected;
  for (int t = 0; t < 4; ++t) expected.push_back(reference.train_step(t).loss);
  TempDir dir;
  reference.save_weights(dir.file("reference.safetensors"));
  for (const TransportKind kind : {TransportKind::inproc, TransportKind::tcp}) {
    DYNAMIC_SECTION(kind) {
      const int D = 3;
      auto sets = common;
      sets.insert(sets.end(), {"parallel.data=3", "ps.shards=2"});
      const RunConfig config = tiny_gpt(sets);
      PsTestLinks links(kind, D);
      std::vector<double> losses;
      std::vector<std::exception_ptr> errors(D);
      std::vector<std::thread> ranks;
      for (int r = 0; r < D; ++r) {
        ranks.emplace_back([&, r] {
          try {
            PsTrainer trainer(config, links.for_rank(r));
            for (int t = 0; t < 4; ++t) {
              const double loss = trainer.train_step(t).loss;
              if (r == 0) losses.push_back(loss);
            }
            if (r == 0) trainer.save_weights(dir.file("ps.safetensors"));
          } catch (...) {
            errors[static_cast<std::size_t>(r)] = std::current_exception();
          }
        });
      }
      for (auto& t : ranks) t.join();
      troupe::testing::require_no_errors(errors);
      CHECK(losses == expected);
      check_same_weights(dir.file("reference.safetensors"), dir.file("ps.safetensors"));
    }
  }
}

TEST_CASE("ps over links: async workers train, and a worker that dies stops rank 0 at once, naming it", "[ps]") {
  for (const TransportKind kind : {TransportKind::inproc, TransportKind::tcp}) {
    DYNAMIC_SECTION(kind) {
      {
        const RunConfig config = tiny_gpt({"parallel.data=2", "ps.shards=2", "ps.mode=async", "train.steps=20"});
        PsTestLinks links(kind, 2);
        double first = 0, last = 0;
        std::exception_ptr worker_error;
        std::jthread worker([&] {
          troupe::testing::keep_error(worker_error, [&] {
            PsTrainer trainer(config, links.for_rank(1));
            for (int t = 0; t < 20; ++t) trainer.train_step(t);
          });
        });
        {
          PsTrainer trainer(config, links.for_rank(0));
          first = trainer.train_step(0).loss;
          for (int t = 1; t < 20; ++t) last = trainer.train_step(t).loss;
        }
        worker.join();
        troupe::testing::require_no_errors({worker_error});
        CHECK(last < first - 0.3);
      }
      // Sync: worker 1 does one step and, once rank 0 has finished it too, its process dies (its link
      // breaks without a goodbye).
      const RunConfig config = tiny_gpt({"parallel.data=2", "ps.shards=2", "train.steps=3"});
      PsTestLinks links(kind, 2);
      std::promise<void> step0_done;
      std::exception_ptr worker_error;
      std::jthread worker([&] {
        troupe::testing::keep_error(worker_error, [&] {
          PsTrainer trainer(config, links.for_rank(1));
          trainer.train_step(0);
          step0_done.get_future().wait();
          links.groups[0]->kill(1);
        });
      });
      PsTrainer trainer(config, links.for_rank(0));
      trainer.train_step(0);
      step0_done.set_value();
      const auto start = std::chrono::steady_clock::now();
      CHECK_THAT(error_of(ErrorKind::kIo, [&] { trainer.train_step(1); }),
                 Contains("ps worker 1 (process rank 1") && Contains("dead"));
      CHECK(std::chrono::steady_clock::now() - start < 10s);  // not the 20 s timeout
      worker.join();
    }
  }
}

TEST_CASE("ps over links: a worker whose link breaks is restarted, resumes where its pushes stopped, and the run stays bitwise",
          "[ps]") {
  const std::vector<std::string> common = {"train.deterministic=true", "train.steps=5", "train.grad_clip=0.5"};
  Trainer reference(tiny_gpt(common));
  std::vector<double> expected;
  for (int t = 0; t < 5; ++t) expected.push_back(reference.train_step(t).loss);
  for (const TransportKind kind : {TransportKind::inproc, TransportKind::tcp}) {
    DYNAMIC_SECTION(kind) {
      auto sets = common;
      sets.insert(sets.end(), {"parallel.data=3", "ps.shards=2"});
      const RunConfig config = tiny_gpt(sets);
      PsTestLinks links(kind, 3);
      // Worker w trains from where the servers say it stands; before step `die_before` its "process"
      // dies: the link breaks without a goodbye.
      std::vector<std::exception_ptr> errors(2);  // of the first workers, then of the restarted one
      auto worker = [&config](PsLinks l, RankGroup* group, int die_before, std::exception_ptr& error) {
        troupe::testing::keep_error(error, [&] {
          PsTrainer trainer(config, std::move(l));
          for (std::int64_t t = trainer.steps_done(); t < 5; ++t) {
            if (t == die_before) {
              group->kill(1);
              return;
            }
            trainer.train_step(t);
          }
        });
      };
      std::mutex mu;
      std::vector<std::unique_ptr<RankGroup>> fresh;  // links of restarted workers
      std::exception_ptr restarted_error;
      std::vector<std::jthread> incarnations;
      std::vector<std::int64_t> resumed_at;
      PsLinks rank0 = links.for_rank(0);
      rank0.max_restarts = 1;
      rank0.restart = [&](int w) -> std::unique_ptr<comm::Transport> {
        auto group = std::make_unique<RankGroup>(kind, 2, 20s);
        RankGroup* g = group.get();
        PsLinks l;
        l.rank = w;
        l.links.push_back(std::make_unique<BorrowedTransport>(g->transport(1)));
        l.abort = [g] { g->kill(1); };
        std::lock_guard lock(mu);
        fresh.push_back(std::move(group));
        incarnations.emplace_back([&, l = std::move(l)]() mutable {
          troupe::testing::keep_error(restarted_error, [&] {
            PsTrainer trainer(config, std::move(l));
            {
              std::lock_guard lock2(mu);
              resumed_at.push_back(trainer.steps_done());
            }
            for (std::int64_t t = trainer.steps_done(); t < 5; ++t) trainer.train_step(t);
          });
        });
        return std::make_unique<BorrowedTransport>(g->transport(0));
      };
      std::vector<double> losses;
      int restarts = -1;
      std::jthread w1(worker, links.for_rank(1), links.groups[0].get(), -1, std::ref(errors[0]));
      std::jthread w2(worker, links.for_rank(2), links.groups[1].get(), 2, std::ref(errors[1]));
      {
        PsTrainer trainer(config, std::move(rank0));
        for (int t = 0; t < 5; ++t) losses.push_back(trainer.train_step(t).loss);
        restarts = trainer.restarts();
        w1.join();
        w2.join();
        std::vector<std::jthread> started;
        {
          std::lock_guard lock(mu);
          started.swap(incarnations);
        }
        for (auto& t : started) t.join();
      }
      errors.push_back(restarted_error);
      troupe::testing::require_no_errors(errors);
      CHECK(losses == expected);
      CHECK(restarts == 1);
      CHECK(resumed_at == std::vector<std::int64_t>{2});
    }
  }
}
