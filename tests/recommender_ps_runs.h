// Owns the recommender parameter-server comparisons shared by the Wide & Deep and DeepFM tests: bitwise
// tensor equality, and a sync run with workers over process links checked against the threads' run.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "actors/ps/wide_deep_ps.h"
#include "tests/ps_links.h"
#include "tests/rank_errors.h"

namespace troupe::testing {

inline bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
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
