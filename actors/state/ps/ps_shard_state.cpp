// Gathering shard states whole by name, and cutting a whole state by rows for one shard.
#include "actors/state/ps/ps_shard_state.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::ps {

TrainingState gather_ps_state(const PsLayout& layout, const std::vector<PsShardState>& shards, std::int64_t steps_done) {
  const int S = layout.shards();
  TROUPE_CHECK(static_cast<int>(shards.size()) == S, shards.size(), " shard states for ", S, " shards");
  TrainingState whole;
  whole.step = steps_done;
  // Every shard steps its dense optimizer on every update (with or without parameters of its own).
  whole.optimizer.step = shards[0].dense_optimizer.step;
  for (int d = 0; d < layout.num_dense(); ++d) {
    const int s = layout.dense_owner(d);
    const std::vector<int>& mine = layout.dense_of_shard(s);
    const std::size_t j = static_cast<std::size_t>(std::find(mine.begin(), mine.end(), d) - mine.begin());
    const std::string& name = layout.dense_spec(d).name;
    whole.params.emplace_back(name, shards[static_cast<std::size_t>(s)].dense.at(j));
    if (const ParamState* ps = shards[static_cast<std::size_t>(s)].dense_optimizer.find(name)) {
      ParamState& dst = whole.optimizer.get_or_create(name);
      dst.step = ps->step;
      for (const auto& [slot, t] : ps->tensors) dst.tensors[slot] = t;
    }
  }
  for (int t = 0; t < layout.num_tables(); ++t) {
    const std::string& name = layout.table_spec(t).name;
    const std::int64_t rows = layout.table_rows(t), dim = layout.table_dim(t);
    const std::size_t ti = static_cast<std::size_t>(t);
    // Each slot any shard made, whole: a shard that never made it holds zeros there (what it would make).
    std::set<std::string> slots;
    for (const PsShardState& sh : shards)
      for (const auto& [slot, x] : sh.tables.at(ti).state) slots.insert(slot);
    Tensor value = Tensor::empty({rows, dim});
    std::map<std::string, Tensor> state;
    for (const std::string& slot : slots) state.emplace(slot, Tensor::zeros({rows, dim}));
    const std::int64_t step = shards[0].tables.at(ti).step;
    for (int s = 0; s < S; ++s) {
      const SparseTable::Saved& part = shards[static_cast<std::size_t>(s)].tables.at(ti);
      TROUPE_CHECK(part.step == step, "table '", name, "' has step count ", part.step, " on shard ", s, " but ", step,
                   " on shard 0");
      TROUPE_CHECK(part.value.dim(0) == layout.local_rows(t, s), "table '", name, "' slice of shard ", s);
      for (std::int64_t i = 0; i < part.value.dim(0); ++i) {
        const std::int64_t g = layout.global_row(s, i);
        std::copy(part.value.f32() + i * dim, part.value.f32() + (i + 1) * dim, value.f32() + g * dim);
        for (const auto& [slot, x] : part.state)
          std::copy(x.f32() + i * dim, x.f32() + (i + 1) * dim, state.at(slot).f32() + g * dim);
      }
    }
    whole.params.emplace_back(name, value);
    if (step > 0 || !state.empty()) {
      ParamState& dst = whole.optimizer.get_or_create(name);
      dst.step = step;
      dst.tensors = std::move(state);
    }
  }
  return whole;
}

PsShardState cut_ps_state(const TrainingState& whole, const PsLayout& layout, int shard, const std::string& source) {
  TROUPE_CHECK(shard >= 0 && shard < layout.shards(), "shard ", shard, " of ", layout.shards());
  auto bad = [&](const std::string& what) { return Error(ErrorKind::kInput, source + ": " + what); };
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : whole.params) by_name.emplace(name, &t);
  std::set<std::string> known;
  for (const PsParamSpec& p : layout.params()) {
    known.insert(p.name);
    auto it = by_name.find(p.name);
    if (it == by_name.end()) throw bad(fmt::format("no tensor '{}' (written for another model? check model.*)", p.name));
    if (it->second->dtype() != DType::f32 || it->second->shape() != p.shape)
      throw bad(fmt::format("tensor '{}' is {} {}, this model's is f32 {}", p.name, dtype_name(it->second->dtype()),
                            shape_str(it->second->shape()), shape_str(p.shape)));
    if (const ParamState* ps = whole.optimizer.find(p.name))
      for (const auto& [slot, t] : ps->tensors)
        if (t.dtype() != DType::f32 || t.shape() != p.shape)
          throw bad(fmt::format("optimizer state '{}.{}' is {} {}, its parameter f32 {}", p.name, slot,
                                dtype_name(t.dtype()), shape_str(t.shape()), shape_str(p.shape)));
  }
  for (const auto& [name, t] : whole.params)
    if (!known.count(name)) throw bad(fmt::format("tensor '{}' is not a parameter of this model (check model.*)", name));
  for (const auto& [name, ps] : whole.optimizer.params)
    if (!known.count(name)) throw bad(fmt::format("optimizer state for '{}', which this model does not have", name));

  PsShardState out;
  out.dense_optimizer.step = whole.optimizer.step;
  for (int d : layout.dense_of_shard(shard)) {
    const std::string& name = layout.dense_spec(d).name;
    out.dense.push_back(by_name.at(name)->clone());
    if (const ParamState* ps = whole.optimizer.find(name)) {
      ParamState& dst = out.dense_optimizer.get_or_create(name);
      dst.step = ps->step;
      for (const auto& [slot, t] : ps->tensors) dst.tensors[slot] = t.clone();
    }
  }
  for (int t = 0; t < layout.num_tables(); ++t) {
    const std::string& name = layout.table_spec(t).name;
    const std::int64_t n = layout.local_rows(t, shard), dim = layout.table_dim(t);
    auto slice = [&](const Tensor& full) {
      Tensor part = Tensor::empty({n, dim});
      for (std::int64_t i = 0; i < n; ++i) {
        const float* src = full.f32() + layout.global_row(shard, i) * dim;
        std::copy(src, src + dim, part.f32() + i * dim);
      }
      return part;
    };
    SparseTable::Saved saved;
    saved.value = slice(*by_name.at(name));
    if (const ParamState* ps = whole.optimizer.find(name)) {
      saved.step = ps->step;
      for (const auto& [slot, x] : ps->tensors) saved.state.emplace(slot, slice(x));
    }
    out.tables.push_back(std::move(saved));
  }
  return out;
}

}  // namespace troupe::ps
