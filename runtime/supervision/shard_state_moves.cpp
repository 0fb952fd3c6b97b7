// plan_state_moves: a live peer of the same tensor index first, rank 0's kept copy second.
#include "runtime/supervision/shard_state_moves.h"

#include <string>

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::supervision {

std::vector<StateMove> plan_state_moves(int data, int tensor, const std::vector<ShardStanding>& ranks, std::int64_t step,
                                        std::int64_t copies_step) {
  TROUPE_CHECK(data >= 1 && tensor >= 1 && static_cast<int>(ranks.size()) == data * tensor, ranks.size(),
               " standings for ", data, " x ", tensor, " ranks");
  TROUPE_CHECK(reaches(ranks[0], step), "rank 0 does not stand at step ", step);
  std::vector<StateMove> moves;
  for (int r = 1; r < data * tensor; ++r) {
    if (reaches(ranks[static_cast<std::size_t>(r)], step)) continue;
    const int t = r % tensor;
    int from = -1;
    for (int d = 0; d < data && from < 0; ++d)
      if (const int peer = d * tensor + t; peer != r && reaches(ranks[static_cast<std::size_t>(peer)], step)) from = peer;
    if (from >= 0) {
      moves.push_back({r, from, false});
    } else if (copies_step == step) {
      moves.push_back({r, 0, true});
    } else {
      throw Error(ErrorKind::kIo,
                  fmt::format("tensor-parallel rank {} (replica {}, tensor shard {}) was restarted, but no process holds "
                              "its shard's state at step {}'s boundary: {}",
                              r, r / tensor, t, step,
                              data > 1 ? fmt::format("every replica's shard {} died at once", t)
                                       : std::string("rank 0 keeps no copy of it (fault.max_restarts = 0?)")));
    }
  }
  return moves;
}

}  // namespace troupe::supervision
