// Owns SparseTable: an embedding table (or a shard's slice of one) with lazily updated optimizer state.
//
// A sparse gradient names the rows it touches; only those rows, and only their optimizer state, change
// — what torch.optim.SparseAdam does for Adam, generalised to every troupe optimizer. apply() gathers
// the touched rows and their state into a compact parameter [k, dim], runs the ordinary (dense)
// Optimizer on it, and scatters values and state back, so the update rule is exactly runtime/optim's:
//   - state tensors ("exp_avg", "momentum_buffer", ...) are kept full size [rows, dim], created as zeros
//     the first time the optimizer makes one; a row never touched keeps zeros there;
//   - the step count (Adam's bias correction) is the table's: it counts apply() calls, as SparseAdam's
//     state["step"] counts the steps the table had a gradient;
//   - weight decay (L2 or AdamW's decoupled) reaches touched rows only;
//   - SGD momentum's "first step copies the gradient" holds for the table's first update; a row first
//     touched later starts from a zero buffer (the same when dampening is 0, the default).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "runtime/optim/optimizer.h"
#include "runtime/tensor.h"

namespace troupe::ps {

class SparseTable {
 public:
  SparseTable() = default;
  // Takes `value` [rows, dim] (f32) as the table's storage.
  SparseTable(std::string name, Tensor value);

  const std::string& name() const { return name_; }
  std::int64_t rows() const { return value_.dim(0); }
  std::int64_t dim() const { return value_.dim(1); }
  const Tensor& value() const { return value_; }
  std::int64_t step() const { return step_; }
  const std::map<std::string, Tensor>& state() const { return state_; }

  // A copy of rows `rows` (local indices, each in [0, rows())): [rows.size(), dim].
  Tensor gather(std::span<const std::int64_t> rows) const;
  // One optimizer update of rows `rows` (strictly increasing local indices) with gradient `grad`
  // [rows.size(), dim] at learning rate lr. `optimizer` keeps no state for this table between calls.
  // Throws troupe::Error (kInput) on a bad row or shape, before anything changes.
  void apply(Optimizer& optimizer, std::span<const std::int64_t> rows, const Tensor& grad, double lr);
  // Counts a step in which the table had a gradient but none of this slice's rows did (a shard whose
  // rows the batch missed): the step count then stays the whole table's on every shard, whatever the
  // shard count, as torch's SparseAdam counts a sparse gradient that touches no row.
  void count_step() { ++step_; }
  // Bytes of optimizer state (what a shard of this table costs beyond its values).
  std::size_t state_bytes() const;

  // A checkpoint's copy of this table: values, state tensors (each [rows, dim]) and step count, deep-copied.
  struct Saved {
    Tensor value;
    std::map<std::string, Tensor> state;
    std::int64_t step = 0;
  };
  Saved save() const;
  // Throws troupe::Error (kInput) naming the table and the tensor when `saved` does not fit this table:
  // a shape other than [rows(), dim()], a tensor not f32, a negative step.
  void check(const Saved& saved) const;
  // Takes `saved` (checked first; nothing changes when it does not fit) as the table's contents.
  void restore(Saved saved);

 private:
  std::string name_;
  Tensor value_;
  std::map<std::string, Tensor> state_;
  std::int64_t step_ = 0;
};

// rows[i] = table[ids[i]] for f32 tables [n, dim] (ids checked against n).
void gather_rows(const Tensor& table, std::span<const std::int64_t> ids, const Tensor& out);
// table[ids[i]] = rows[i].
void scatter_rows(const Tensor& rows, std::span<const std::int64_t> ids, const Tensor& table);

}  // namespace troupe::ps
