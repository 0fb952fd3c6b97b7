// Owns troupe_deepfm_trace: a single-process DeepFM run written out for tests/torch_ref/deepfm_ref.py — the
// initial weights (dense parameters and whole tables), every step's batch, and troupe's per-step losses.
//
//   troupe_deepfm_trace OUTDIR STEPS [key=value ...]      (optim.* and train.batch_size keys, as --set)
//
// writes OUTDIR/init.safetensors (f32: wide.bias, deep.layers.{k}.weight|bias, deep.embedding.{f},
// wide.weight), OUTDIR/batches.safetensors (step s holds rows [s B, (s + 1) B) of: fields i32 [S B, F] —
// each field's id —, wide_rows i32 [S B, F] — the first-order row each id hashes to —, dense f32 [S B, D],
// labels f32 [S B]) and OUTDIR/troupe.json ({"model": {...shape...}, "optim": {...}, "losses": [...]}).
// Training is tests/recommender_trainer.h's LocalTrainer, which the parameter-server tests hold equal to
// sync parameter servers (tests/test_deepfm.cpp): the tables update lazily, only the rows a batch touches.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/config/config_loader.h"
#include "runtime/error.h"
#include "runtime/io/safetensors.h"
#include "tests/recommender_trainer.h"
#include "tests/small_click_log.h"

using namespace troupe;

namespace {

int run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: troupe_deepfm_trace OUTDIR STEPS [optim.kind=adam optim.lr=0.01 ...]\n");
    return 2;
  }
  const std::string out = argv[1];
  const int steps = std::stoi(argv[2]);
  std::vector<std::string> sets(argv + 3, argv + argc);
  const RunConfig config = load_config(std::nullopt, sets);
  const int batch_size = config.train.batch_size;

  const ClickLog data(testing::small_click_data());
  testing::LocalTrainer trainer(testing::small_recommender(RecommenderKind::deepfm, data.options()), config.optim);
  const WideDeep& model = trainer.model;

  NamedTensors init;
  for (Param* p : trainer.model.dense().all()) init.emplace_back(p->name, p->value.clone());
  for (const ps::SparseTable& t : trainer.tables) init.emplace_back(t.name(), t.value().clone());
  save_safetensors(out + "/init.safetensors", init);

  const int F = data.fields(), D = data.options().dense_features;
  const std::int64_t rows = static_cast<std::int64_t>(steps) * batch_size;
  Tensor fields = Tensor::empty({rows, F}, DType::i32), wide_rows = Tensor::empty({rows, F}, DType::i32);
  Tensor dense = Tensor::empty({rows, D}), labels = Tensor::empty({rows});
  nlohmann::json losses = nlohmann::json::array();
  for (int s = 0; s < steps; ++s) {
    const ClickBatch batch = data.train_batch(s, batch_size);
    const std::vector<TableLookup> lookups = model.lookup(batch);
    const TableLookup& wide = lookups.at(static_cast<std::size_t>(model.wide_table()));
    for (std::int64_t b = 0; b < batch_size; ++b) {
      const std::int64_t r = static_cast<std::int64_t>(s) * batch_size + b;
      for (int f = 0; f < F; ++f) {
        fields.i32()[r * F + f] = batch.categorical.i32()[b * F + f];
        // DeepFM's wide features are the fields' ids alone, one per field, in field order.
        wide_rows.i32()[r * F + f] = static_cast<std::int32_t>(wide.ids.at(wide.index.i32()[b * F + f]));
      }
      for (int j = 0; j < D; ++j) dense.f32()[r * D + j] = batch.dense.f32()[b * D + j];
      labels.f32()[r] = batch.labels.f32()[b];
    }
    losses.push_back(trainer.step(batch, 1));
  }
  save_safetensors(out + "/batches.safetensors",
                   {{"fields", fields}, {"wide_rows", wide_rows}, {"dense", dense}, {"labels", labels}});

  const WideDeepOptions& m = model.options();
  nlohmann::json optim = nlohmann::json::object();
  for (const std::string& kv : sets)
    if (kv.rfind("optim.", 0) == 0) optim[kv.substr(6, kv.find('=') - 6)] = kv.substr(kv.find('=') + 1);
  const nlohmann::json trace = {
      {"model", {{"fields", F}, {"embed_dim", m.embed_dim}, {"dense_features", D}, {"hidden", m.hidden},
                 {"wide_buckets", m.wide_buckets}, {"cardinalities", m.cardinalities}}},
      {"batch_size", batch_size},
      {"steps", steps},
      {"optim", optim},
      {"losses", losses}};
  std::ofstream(out + "/troupe.json") << trace.dump(1) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_deepfm_trace: error: %s\n", e.what());
    return 1;
  }
}
