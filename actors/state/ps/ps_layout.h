// Owns PsLayout: which parameter-server shard holds each dense parameter and each embedding-table row.
//
// Parameters are either dense (a whole tensor, owned by one shard) or sparse (an embedding table
// [rows, dim], split by rows). The split is a pure function of the parameter list and the shard count,
// so every worker and every shard computes the same layout independently:
//   - dense parameters go, in list order, each to the shard holding the fewest dense elements so far
//     (the lowest shard index on ties): whole tensors, balanced by size;
//   - row r of every table lives on shard r % shards, at local row r / shards (popular rows of a
//     Zipf-distributed feature are spread round-robin, so no shard holds all the hot rows).
// Dense parameters are numbered 0.. in list order among the dense ones ("dense index"), tables 0.. among
// the sparse ones ("table index"); pushes and pulls carry vectors in these orders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace troupe::ps {

struct PsParamSpec {
  std::string name;
  Shape shape;          // a table is [rows, dim]
  bool sparse = false;  // an embedding table: split by rows, pushed and pulled by row id
};

class PsLayout {
 public:
  // Throws troupe::Error (kConfig) when shards < 1, a name repeats, or a table is not 2-D.
  PsLayout(std::vector<PsParamSpec> params, int shards);

  int shards() const { return shards_; }
  const std::vector<PsParamSpec>& params() const { return params_; }

  // Dense parameters, in list order: their specs, and the shard owning each.
  int num_dense() const { return static_cast<int>(dense_.size()); }
  const PsParamSpec& dense_spec(int d) const { return params_.at(static_cast<std::size_t>(dense_.at(d))); }
  int dense_owner(int d) const { return dense_owner_.at(static_cast<std::size_t>(d)); }
  // The dense indices shard s owns, increasing: the order of its dense values and gradients.
  const std::vector<int>& dense_of_shard(int s) const { return dense_of_shard_.at(static_cast<std::size_t>(s)); }

  // Tables, in list order.
  int num_tables() const { return static_cast<int>(tables_.size()); }
  const PsParamSpec& table_spec(int t) const { return params_.at(static_cast<std::size_t>(tables_.at(t))); }
  std::int64_t table_rows(int t) const { return table_spec(t).shape.at(0); }
  std::int64_t table_dim(int t) const { return table_spec(t).shape.at(1); }

  int row_shard(std::int64_t row) const { return static_cast<int>(row % shards_); }
  std::int64_t local_row(std::int64_t row) const { return row / shards_; }
  std::int64_t global_row(int shard, std::int64_t local) const { return local * shards_ + shard; }
  // Rows of table t held by shard s: ceil((rows - s) / shards), 0 when s >= rows.
  std::int64_t local_rows(int t, int s) const;

 private:
  std::vector<PsParamSpec> params_;
  int shards_;
  std::vector<int> dense_, tables_;
  std::vector<int> dense_owner_;
  std::vector<std::vector<int>> dense_of_shard_;
};

}  // namespace troupe::ps
