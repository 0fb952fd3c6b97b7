// Owns TrainingRun: a few steps of training reduced to what equivalence tests compare — per-step losses and final weights — for the single-device, pipelined and data-parallel runs, and the bitwise comparison.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "actors/data_parallel.h"
#include "actors/tensor_pipelines.h"
#include "actors/state/pipeline_driver.h"
#include "models/trainer.h"
#include "runtime/io/safetensors.h"
#include "tests/temp_dir.h"

struct TrainingRun {
  std::vector<double> losses;
  std::map<std::string, std::vector<float>> weights;  // by parameter (and buffer) name
};

// `steps` steps of the single-device reference Trainer.
inline TrainingRun single_device(const troupe::RunConfig& config, int steps) {
  troupe::Trainer t(config);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(t.train_step(s).loss);
  for (troupe::Param* p : t.model().params().state()) r.weights[p->name] = p->value.to_vector();  // buffers too
  return r;
}

// `steps` steps of a pipeline laid out by `options`; the weights gathered from every stage.
inline TrainingRun pipelined(const troupe::RunConfig& config, const troupe::PipelineOptions& options, int steps) {
  troupe::PipelineDriver d(config, options);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(d.train_step(s).loss);
  for (troupe::Param* p : d.weights_in_order()) r.weights[p->name] = p->value.to_vector();  // buffers too
  return r;
}

// `steps` steps of data parallelism as config lays it out (stages on actors, or on the replica's thread).
// Every replica's weights must be the same; the run reports replica 0's.
inline TrainingRun data_parallel(const troupe::RunConfig& config, int steps, bool actors = true) {
  troupe::DataParallelTrainer t(config, actors);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(t.train_step(s).loss);
  for (int rep = 0; rep < t.replicas(); ++rep) {
    std::map<std::string, std::vector<float>> w;
    for (troupe::Param* p : t.replica(rep).weights_in_order()) w[p->name] = p->value.to_vector();
    if (rep == 0) r.weights = w;
    else
      for (const auto& [name, v] : w) {
        INFO("replica " << rep << " " << name);
        CHECK(std::memcmp(v.data(), r.weights.at(name).data(), v.size() * sizeof(float)) == 0);
      }
  }
  return r;
}

// `steps` steps of tensor shards in pipelines (actors/tensor_pipelines.h) as config lays them out; the
// whole weights as the run saves them (gathered over the tensor groups). Shard t of every replica must
// hold the same bits.
inline TrainingRun tensor_pipelined(const troupe::RunConfig& config, int steps) {
  troupe::TensorPipelineTrainer t(config);
  TrainingRun r;
  for (int s = 0; s < steps; ++s) r.losses.push_back(t.train_step(s).loss);
  TempDir dir;
  t.save_weights(dir.file("w.safetensors"));
  for (auto& [name, w] : troupe::load_safetensors(dir.file("w.safetensors"))) r.weights[name] = w.to_vector();
  for (int rep = 1; rep < t.replicas(); ++rep)
    for (int shard = 0; shard < t.shards(); ++shard) {
      const std::vector<troupe::Param*> a = t.pipeline(shard, 0).params_in_order(), b = t.pipeline(shard, rep).params_in_order();
      REQUIRE(a.size() == b.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("replica " << rep << " shard " << shard << " " << a[i]->name);
        CHECK(std::memcmp(a[i]->value.f32(), b[i]->value.f32(), a[i]->value.numel() * sizeof(float)) == 0);
      }
    }
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
