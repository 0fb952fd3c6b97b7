// ShardCopies: pending copies become the kept ones only when every shard's copy of a boundary arrived.
#include "runtime/supervision/shard_copies.h"

#include "runtime/error.h"

namespace troupe::supervision {

void ShardCopies::offer(int rank, std::int64_t step, std::vector<std::byte> bytes) {
  pending_[rank] = {step, std::move(bytes)};
}

void ShardCopies::commit(std::int64_t step) {
  for (auto& [rank, copy] : pending_) {
    TROUPE_CHECK(copy.first == step, "rank ", rank, "'s copy is of step ", copy.first, ", committing step ", step);
    kept_[rank] = std::move(copy.second);
  }
  pending_.clear();
  step_ = step;
}

void ShardCopies::forget() {
  kept_.clear();
  pending_.clear();
  step_ = -1;
}

const std::vector<std::byte>& ShardCopies::of(int rank) const {
  const auto it = kept_.find(rank);
  TROUPE_CHECK(it != kept_.end(), "no copy of rank ", rank, "'s shard kept");
  return it->second;
}

std::size_t ShardCopies::bytes() const {
  std::size_t n = 0;
  for (const auto& [rank, b] : kept_) n += b.size();
  for (const auto& [rank, p] : pending_) n += p.second.size();
  return n;
}

}  // namespace troupe::supervision
