// PsLayout: the greedy dense split and the row-modulo table split.
#include "actors/state/ps/ps_layout.h"

#include <set>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::ps {

PsLayout::PsLayout(std::vector<PsParamSpec> params, int shards) : params_(std::move(params)), shards_(shards) {
  if (shards < 1)
    throw Error(ErrorKind::kConfig, fmt::format("ps.shards = {}: a parameter server needs at least 1 shard", shards));
  std::set<std::string> names;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const PsParamSpec& p = params_[i];
    if (!names.insert(p.name).second)
      throw Error(ErrorKind::kConfig, fmt::format("parameter '{}' is listed twice for the parameter server", p.name));
    if (p.sparse) {
      if (p.shape.size() != 2 || p.shape[0] < 1 || p.shape[1] < 1)
        throw Error(ErrorKind::kConfig, fmt::format("table '{}' has shape {}: a sparse parameter must be [rows >= 1, dim >= 1]",
                                                    p.name, shape_str(p.shape)));
      tables_.push_back(static_cast<int>(i));
    } else {
      dense_.push_back(static_cast<int>(i));
    }
  }
  dense_of_shard_.resize(static_cast<std::size_t>(shards));
  std::vector<std::int64_t> load(static_cast<std::size_t>(shards), 0);
  for (int d = 0; d < num_dense(); ++d) {
    int best = 0;
    for (int s = 1; s < shards; ++s)
      if (load[static_cast<std::size_t>(s)] < load[static_cast<std::size_t>(best)]) best = s;
    load[static_cast<std::size_t>(best)] += shape_numel(dense_spec(d).shape);
    dense_owner_.push_back(best);
    dense_of_shard_[static_cast<std::size_t>(best)].push_back(d);
  }
}

std::int64_t PsLayout::local_rows(int t, int s) const {
  const std::int64_t rows = table_rows(t);
  return s >= rows ? 0 : (rows - s + shards_ - 1) / shards_;
}

}  // namespace troupe::ps
