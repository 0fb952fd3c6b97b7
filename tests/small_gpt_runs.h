// Owns the small GPT the tensor-parallel tests train and how they compare its runs with the single device's.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "actors/session.h"

namespace troupe::testing {

// A GPT of 4 layers (embedding, 2 blocks, head): enough for 2 stages x 2 chunks, 2 or 4 heads per shard.
inline std::vector<std::string> small_gpt(bool deterministic) {
  return {"model.n_layer=2", "model.n_embd=32", "model.n_head=4", "model.block_size=16", "model.vocab_size=256",
          "train.batch_size=4", "train.threads=1", "data.order=sequential", "optim.kind=adamw", "train.grad_clip=1.0",
          deterministic ? "train.deterministic=true" : "train.deterministic=false"};
}

inline std::vector<std::string> with(std::vector<std::string> base, std::initializer_list<std::string> more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

// The largest relative difference between two runs' per-step losses.
inline double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return m;
}

// The largest relative difference between `run`'s per-step losses and `reference`'s, which must be below
// `tolerance`; reported (WARN) under `what`, so that the log shows how close each layout came.
inline double check_losses_close(const std::vector<double>& run, const std::vector<double>& reference, double tolerance,
                                 const std::string& what) {
  const double rel = max_rel(run, reference);
  INFO(what << ": max relative loss difference " << rel);
  CHECK(rel < tolerance);
  WARN(what << " max rel loss diff over " << run.size() << " steps: " << rel);
  return rel;
}

// Steps 0 .. steps - 1 of two trainers (anything with train_step(step)), side by side, e.g. before
// their training states are compared.
template <class A, class B>
void train_both(A& a, B& b, int steps) {
  for (int s = 0; s < steps; ++s) {
    a.train_step(s);
    b.train_step(s);
  }
}

// Steps the Sessions `reference` and `run` `steps` times each, then evaluates both: each training loss of
// `run` and its evaluation's within relative 1e-5 of the reference's. Returns both evaluations
// (reference's first) for the caller's further checks.
inline std::pair<EvalStats, EvalStats> check_sessions_close(Session& reference, Session& run, int steps) {
  for (int i = 0; i < steps; ++i) {
    auto a = reference.step();
    auto b = run.step();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(b->loss == Approx(a->loss).epsilon(1e-5));
  }
  auto ea = reference.evaluate();
  auto eb = run.evaluate();
  REQUIRE(ea);
  REQUIRE(eb);
  CHECK(eb->loss == Approx(ea->loss).epsilon(1e-5));
  return {*ea, *eb};
}

}  // namespace troupe::testing
