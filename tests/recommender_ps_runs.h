// Owns the recommender parameter-server comparisons shared by the Wide & Deep and DeepFM tests: bitwise
// tensor equality, sync runs of 1, 2 and 4 workers checked against single-process training, and a sync run
// with workers over process links checked against the threads' run.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "actors/ps/wide_deep_ps.h"
#include "tests/ps_links.h"
#include "tests/rank_errors.h"
#include "tests/recommender_trainer.h"

namespace troupe::testing {

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The largest difference between a and b's elements, relative to b's (at least 1).
inline double max_rel_diff(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.f32()[i], y = b.f32()[i];
    worst = std::max(worst, std::abs(x - y) / std::max(1.0, std::abs(y)));
  }
  return worst;
}

// `model` on `data` trained in sync mode on 3 shards by 1, 2 and 4 workers for 4 steps of 64 samples: each
// run's losses, dense parameters and tables bitwise those of one process that cuts the batch as the workers
// do (LocalTrainer), and within 1e-5 of whole-batch training (the same update up to the rounding of the
// gradient sums).
inline void require_sync_workers_match_one_process(const ClickLogOptions& data, const WideDeepOptions& model) {
  const int global = 64, steps = 4;
  ps::WideDeepPsOptions o;
  o.data = data;
  o.model = model;
  o.ps.mode = PsMode::sync;
  o.ps.optim.kind = OptimKind::adam;
  o.ps.optim.lr = 0.01;
  o.shards = 3;
  o.steps = steps;
  o.eval_samples = 0;
  o.keep_model = true;
  const ClickLog log(o.data);
  LocalTrainer whole(o.model, o.ps.optim);
  std::vector<double> whole_losses;
  for (int t = 0; t < steps; ++t) whole_losses.push_back(whole.step(log.train_batch(t, global), 1));
  for (int W : {1, 2, 4}) {
    DYNAMIC_SECTION(W << " workers") {
      o.ps.workers = W;
      o.batch_size = global / W;
      const ps::WideDeepPsResult r = ps::train_wide_deep_ps(o);
      LocalTrainer sliced(o.model, o.ps.optim);
      for (int t = 0; t < steps; ++t) {
        const double loss = sliced.step(log.train_batch(t, global), W);
        CHECK(r.losses[static_cast<std::size_t>(t)] == loss);
        CHECK(r.losses[static_cast<std::size_t>(t)] == Approx(whole_losses[static_cast<std::size_t>(t)]).epsilon(1e-5));
      }
      const auto& params = sliced.model.dense().all();
      for (std::size_t d = 0; d < params.size(); ++d) {
        INFO(params[d]->name);
        CHECK(same_bits(r.model.dense[d], params[d]->value));
        CHECK(max_rel_diff(r.model.dense[d], whole.model.dense().all()[d]->value) < 1e-5);
      }
      for (std::size_t t = 0; t < sliced.tables.size(); ++t) {
        INFO(sliced.tables[t].name());
        CHECK(same_bits(r.model.tables[t], sliced.tables[t].value()));
        CHECK(max_rel_diff(r.model.tables[t], whole.tables[t].value()) < 1e-5);
      }
    }
  }
}

// `o` (data and model set) trained in sync mode by 3 workers as threads, then by 3 ranks over in-process
// and TCP links: losses, test metrics, every dense parameter and table bitwise the threads' run.
inline void require_links_match_threads(ps::WideDeepPsOptions o) {
  o.ps.mode = PsMode::sync;
  o.ps.workers = 3;
  o.ps.optim.kind = OptimKind::adam;
  o.ps.optim.lr = 0.01;
  o.shards = 2;
  o.steps = 4;
  o.batch_size = 16;
  o.eval_samples = 256;
  o.keep_model = true;
  const ps::WideDeepPsResult threads = ps::train_wide_deep_ps(o);
  for (const auto kind : {TransportKind::inproc, TransportKind::tcp}) {
    DYNAMIC_SECTION(kind) {
      PsTestLinks links(kind, 3);
      std::vector<std::exception_ptr> errors(3);
      ps::WideDeepPsResult r;
      std::vector<std::thread> ranks;
      for (int rank = 0; rank < 3; ++rank)
        ranks.emplace_back([&, rank] {
          try {
            ps::WideDeepPsResult mine = ps::train_wide_deep_ps(o, links.for_rank(rank));
            if (rank == 0) r = std::move(mine);
          } catch (...) {
            errors[static_cast<std::size_t>(rank)] = std::current_exception();
          }
        });
      for (auto& t : ranks) t.join();
      require_no_errors(errors);
      CHECK(r.losses == threads.losses);
      CHECK(r.test_auc == threads.test_auc);
      CHECK(r.test_log_loss == threads.test_log_loss);
      REQUIRE(r.model.dense.size() == threads.model.dense.size());
      for (std::size_t d = 0; d < r.model.dense.size(); ++d) CHECK(same_bits(r.model.dense[d], threads.model.dense[d]));
      for (std::size_t t = 0; t < r.model.tables.size(); ++t) CHECK(same_bits(r.model.tables[t], threads.model.tables[t]));
    }
  }
}

}  // namespace troupe::testing
