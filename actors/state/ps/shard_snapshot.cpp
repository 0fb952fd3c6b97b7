// ShardSnapshot: copying a shard's state, and a shard built back from it.
#include "actors/state/ps/shard_snapshot.h"

#include <algorithm>

namespace troupe::ps {

ShardSnapshot take_snapshot(const PsShard& shard) { return {shard.save(), shard.version()}; }

ShardSnapshot copy_snapshot(const ShardSnapshot& s) {
  ShardSnapshot out;
  out.version = s.version;
  for (const Tensor& t : s.state.dense) out.state.dense.push_back(t.clone());
  out.state.dense_optimizer = s.state.dense_optimizer.clone();
  for (const SparseTable::Saved& t : s.state.tables) {
    SparseTable::Saved c;
    c.value = t.value.clone();
    for (const auto& [name, tensor] : t.state) c.state.emplace(name, tensor.clone());
    c.step = t.step;
    out.state.tables.push_back(std::move(c));
  }
  return out;
}

std::shared_ptr<PsShard> revive_shard(std::shared_ptr<const PsLayout> layout, int shard, const PsOptions& options,
                                      const ShardSnapshot& snapshot) {
  // Built with zeros (restore overwrites every value), so no initialiser is kept for the run's length.
  const PsLayout& l = *layout;
  PsInit zeros;
  zeros.dense = [&l](const std::string& name) {
    for (int d = 0; d < l.num_dense(); ++d)
      if (l.dense_spec(d).name == name) return Tensor::zeros(l.dense_spec(d).shape);
    TROUPE_CHECK(false, "no dense parameter ", name);
    return Tensor();
  };
  zeros.table_rows = [](const std::string&, std::span<const std::int64_t>, const Tensor& out) {
    std::fill(out.f32(), out.f32() + out.numel(), 0.0f);
  };
  auto revived = std::make_shared<PsShard>(std::move(layout), shard, options, zeros);
  revived->restore(copy_snapshot(snapshot).state, snapshot.version);
  return revived;
}

}  // namespace troupe::ps
