// Owns WideDeep: the click-log recommenders over shared field embeddings — Wide & Deep (Cheng et al.,
// 2016) or DeepFM (Guo et al., 2017), chosen by WideDeepOptions::kind — with explicit forward/backward
// on a Backend, and sparse gradients for its embedding tables (only the rows a batch touches).
//
//   wide:  w . phi(x) + wide.bias, phi = one-hot hashed features: each field's id, and (Wide & Deep
//          only) the cross of each pair in `crosses`, hashed into `wide_buckets` rows of the table
//          wide.weight [buckets, 1]. For DeepFM this is its first-order term: one weight per field id
//          (hashed, so it lives on the parameter servers exactly as the wide table does), no crosses;
//   deep:  concat(deep.embedding.{f}[id_f] for every field f, dense features)
//          -> (Linear -> ReLU) for each width in `hidden` -> Linear -> 1 (deep.layers.{k}.weight/bias);
//   fm:    (DeepFM only) the FM second-order term over the same field embeddings (models/fm_interaction.h),
//          0.5 sum_k [(sum_f v_{f,k})^2 - sum_f v_{f,k}^2]; its gradient flows into the deep part's rows;
//   logit z = wide + deep (+ fm); p = sigmoid(z); loss = binary cross-entropy,
//   max(z, 0) - z y + log(1 + e^-|z|).
//
// Tables are never held whole by the model: a caller looks up which rows a batch needs (lookup), gets
// them from wherever the tables live (a parameter server, or a local table), and passes them in as
// compact [k, dim] tensors; the pass returns gradients of the same compact shape. Embeddings use
// Backend::embedding_forward/backward on those compact tables, the MLP Backend::linear_* and relu_*.
// Dense parameters live in dense() (a ParamSet); their gradients accumulate (+=), as everywhere in troupe.
// Every reduction runs in row order, so a pass is deterministic.
//
// Initial values are pure functions of (seed, name[, row]): dense parameters like torch.nn.Linear
// (U(+-1/sqrt(in)), models/init.h), wide.bias 0, embedding rows U(+-0.05) hashed per (seed, table, row,
// column), wide rows 0 — so a parameter-server shard can initialise its rows alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/backend.h"
#include "runtime/config/choices.h"
#include "runtime/data/click_log.h"
#include "runtime/param.h"

namespace troupe {

struct WideDeepOptions {
  RecommenderKind kind = RecommenderKind::wide_deep;
  std::vector<std::int64_t> cardinalities;   // one embedding table per categorical field
  int dense_features = 0;
  int embed_dim = 8;
  std::vector<int> hidden = {64, 32};
  std::int64_t wide_buckets = 1 << 20;
  // Field pairs crossed in the wide part; empty: every pair (Wide & Deep), none (DeepFM, which must name none).
  std::vector<std::pair<int, int>> crosses;
  std::uint64_t seed = 1;
};

struct TableSpec {
  std::string name;
  std::int64_t rows = 0, dim = 0;
};

// The rows of one table a batch touches, and which of them each position uses.
struct TableLookup {
  std::vector<std::int64_t> ids;  // unique global row ids, increasing
  Tensor index;                   // i32 [positions]: an index into ids for each position
};

class WideDeep {
 public:
  // Throws troupe::Error (kConfig) on no fields, embed_dim < 1, a hidden width < 1, wide_buckets outside
  // [1, 2^31 - 1], a cross naming a field that does not exist, or crosses given to DeepFM.
  explicit WideDeep(WideDeepOptions options);

  const WideDeepOptions& options() const { return options_; }
  int fields() const { return static_cast<int>(options_.cardinalities.size()); }
  // deep.embedding.{f} [cardinality_f, embed_dim] for each field, then wide.weight [wide_buckets, 1].
  const std::vector<TableSpec>& tables() const { return tables_; }
  int wide_table() const { return fields(); }
  // wide.bias [1], deep.layers.{k}.weight [out, in] and .bias [out]; initial values set.
  ParamSet& dense() { return dense_; }
  const ParamSet& dense() const { return dense_; }
  // The initial value of dense parameter `name` (a copy).
  Tensor initial_dense(const std::string& name) const;
  // out[i] = initial row rows[i] of table t.
  void init_rows(int table, std::span<const std::int64_t> rows, const Tensor& out) const;

  // Per table, the rows `batch` touches (field tables: one position per sample; wide: one per sample and
  // hashed feature). Throws troupe::Error (kInput) for an id outside its field's cardinality.
  std::vector<TableLookup> lookup(const ClickBatch& batch) const;

  struct Pass {
    double loss_sum = 0;                // sum over samples of the cross-entropy
    Tensor probs;                       // f32 [B]
    std::vector<Tensor> table_grads;    // per table: [lookup ids, dim], loss_scale * d(loss sum)/d(row)
  };
  // Forward and backward over `batch`; rows[t] holds table t's rows for lookups[t].ids. Dense gradients
  // (dense().grad, which must be defined) accumulate loss_scale * d(loss sum)/d(param).
  Pass forward_backward(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                        const std::vector<Tensor>& rows, float loss_scale);
  // Click probabilities [B] (forward only).
  Tensor predict(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                 const std::vector<Tensor>& rows) const;

 private:
  struct Activations {
    std::vector<Tensor> h;     // h[0] = concatenated input, h[k] = layer k's output (last: deep logit [B, 1])
    Tensor logits;             // [B]
  };
  Activations forward(Backend& be, const ClickBatch& batch, const std::vector<TableLookup>& lookups,
                      const std::vector<Tensor>& rows) const;
  int wide_features() const { return fields() + static_cast<int>(options_.crosses.size()); }
  // Error messages name the model: "wide & deep" or "deepfm".
  const char* label() const { return options_.kind == RecommenderKind::deepfm ? "deepfm" : "wide & deep"; }
  void check_inputs(const ClickBatch& batch, const std::vector<TableLookup>& lookups, const std::vector<Tensor>& rows) const;

  WideDeepOptions options_;
  std::vector<TableSpec> tables_;
  ParamSet dense_;
  Param* wide_bias_ = nullptr;
  std::vector<Param*> weights_, biases_;  // deep layers, input to output
};

}  // namespace troupe
