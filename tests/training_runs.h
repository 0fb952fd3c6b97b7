// Owns TrainingRun: a few steps of training reduced to what equivalence tests compare — per-step losses and final weights — and the bitwise comparison.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "models/trainer.h"

struct TrainingRun {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> weights;  // by parameter name
};

// `steps` steps of the single-device reference Trainer.
inline TrainingRun single_device(const troupe::RunConfig& config, int steps) {
  troupe::Trainer t(config);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(t.train_step(s).loss);
  for (troupe::Param* p : t.model().params().all()) r.weights[p->name] = p->value.to_vector();
  return r;
}

// Same losses and same weights, bit for bit.
inline void require_bitwise(const TrainingRun& a, const TrainingRun& b) {
  REQUIRE(a.losses.size() == b.losses.size());
  for (std::size_t s = 0; s < a.losses.size(); ++s) CHECK(a.losses[s] == b.losses[s]);
  REQUIRE(a.weights.size() == b.weights.size());
  for (const auto& [name, w] : a.weights) {
    INFO(name);
    REQUIRE(b.weights.count(name));
    CHECK(std::memcmp(w.data(), b.weights.at(name).data(), w.size() * sizeof(float)) == 0);
  }
}
