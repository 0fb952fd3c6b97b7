// SparseTable: gather the touched rows, run the dense optimizer on them, scatter back.
#include "actors/state/ps/sparse_table.h"

#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::ps {

void gather_rows(const Tensor& table, std::span<const std::int64_t> ids, const Tensor& out) {
  const std::int64_t n = table.dim(0), dim = table.dim(1);
  TROUPE_CHECK(out.numel() == static_cast<std::int64_t>(ids.size()) * dim, "gather into ", shape_str(out.shape()));
  const float* src = table.f32();
  float* dst = out.f32();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    TROUPE_CHECK(ids[i] >= 0 && ids[i] < n, "row ", ids[i], " outside [0, ", n, ")");
    std::memcpy(dst + static_cast<std::int64_t>(i) * dim, src + ids[i] * dim, static_cast<std::size_t>(dim) * sizeof(float));
  }
}

void scatter_rows(const Tensor& rows, std::span<const std::int64_t> ids, const Tensor& table) {
  const std::int64_t n = table.dim(0), dim = table.dim(1);
  TROUPE_CHECK(rows.numel() == static_cast<std::int64_t>(ids.size()) * dim, "scatter from ", shape_str(rows.shape()));
  const float* src = rows.f32();
  float* dst = table.f32();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    TROUPE_CHECK(ids[i] >= 0 && ids[i] < n, "row ", ids[i], " outside [0, ", n, ")");
    std::memcpy(dst + ids[i] * dim, src + static_cast<std::int64_t>(i) * dim, static_cast<std::size_t>(dim) * sizeof(float));
  }
}

SparseTable::SparseTable(std::string name, Tensor value) : name_(std::move(name)), value_(std::move(value)) {
  TROUPE_CHECK(value_.ndim() == 2 && value_.dtype() == DType::f32, "table ", name_, " is ", shape_str(value_.shape()));
}

Tensor SparseTable::gather(std::span<const std::int64_t> rows) const {
  for (std::int64_t r : rows)
    if (r < 0 || r >= this->rows())
      throw Error(ErrorKind::kInput, fmt::format("table '{}': row {} is outside [0, {})", name_, r, this->rows()));
  Tensor out = Tensor::empty({static_cast<std::int64_t>(rows.size()), dim()});
  gather_rows(value_, rows, out);
  return out;
}

void SparseTable::apply(Optimizer& optimizer, std::span<const std::int64_t> rows, const Tensor& grad, double lr) {
  const std::int64_t k = static_cast<std::int64_t>(rows.size());
  if (grad.dtype() != DType::f32 || grad.shape() != Shape{k, dim()})
    throw Error(ErrorKind::kInput, fmt::format("table '{}': gradient for {} rows is {} {}, expected f32 [{}, {}]", name_, k,
                                               dtype_name(grad.dtype()), shape_str(grad.shape()), k, dim()));
  for (std::int64_t i = 0; i < k; ++i) {
    if (rows[i] < 0 || rows[i] >= this->rows())
      throw Error(ErrorKind::kInput, fmt::format("table '{}': row {} is outside [0, {})", name_, rows[i], this->rows()));
    if (i > 0 && rows[i] <= rows[i - 1])
      throw Error(ErrorKind::kInput, fmt::format("table '{}': rows must be strictly increasing, got {} after {}", name_,
                                                 rows[i], rows[i - 1]));
  }
  // The compact parameter and its state, as the optimizer expects them.
  Param compact{name_, Tensor::empty({k, dim()}), grad};
  gather_rows(value_, rows, compact.value);
  OptimizerState& os = optimizer.state();
  ParamState& ps = os.get_or_create(name_);
  ps.step = step_;
  ps.tensors.clear();
  for (const auto& [key, full] : state_) {
    Tensor t = Tensor::empty({k, dim()});
    gather_rows(full, rows, t);
    ps.tensors.emplace(key, t);
  }
  std::vector<Param*> params{&compact};
  optimizer.step(params, lr);
  ParamState& after = *os.find(name_);
  step_ = after.step;
  scatter_rows(compact.value, rows, value_);
  for (const auto& [key, t] : after.tensors) {
    auto it = state_.find(key);
    if (it == state_.end()) it = state_.emplace(key, Tensor::zeros(value_.shape())).first;
    scatter_rows(t, rows, it->second);
  }
  os.params.erase(name_);
}

SparseTable::Saved SparseTable::save() const {
  Saved out;
  out.value = value_.clone();
  for (const auto& [key, t] : state_) out.state.emplace(key, t.clone());
  out.step = step_;
  return out;
}

void SparseTable::check(const Saved& saved) const {
  auto fits = [&](const Tensor& t, const std::string& what) {
    if (!t.defined() || t.dtype() != DType::f32 || t.shape() != value_.shape())
      throw Error(ErrorKind::kInput, fmt::format("table '{}': {} is {}, expected f32 {}", name_, what,
                                                 t.defined() ? shape_str(t.shape()) : "undefined",
                                                 shape_str(value_.shape())));
  };
  fits(saved.value, "the value");
  for (const auto& [key, t] : saved.state) fits(t, "state '" + key + "'");
  if (saved.step < 0) throw Error(ErrorKind::kInput, fmt::format("table '{}': step count {}", name_, saved.step));
}

void SparseTable::restore(Saved saved) {
  check(saved);
  value_ = std::move(saved.value);
  state_ = std::move(saved.state);
  step_ = saved.step;
}

std::size_t SparseTable::state_bytes() const {
  std::size_t total = 0;
  for (const auto& [key, t] : state_) total += t.nbytes();
  return total;
}

}  // namespace troupe::ps
