// Owns PsEndpoint: what a parameter-server worker calls — pull, push, clip — whether the shards are actors in this process (PsClient) or behind a link to another process (RemotePsClient).
#pragma once

#include <cstdint>
#include <vector>

#include "actors/state/ps/ps_shard.h"

namespace troupe::ps {

struct PsPulled {
  std::vector<Tensor> dense;     // every dense parameter, dense-index order (empty unless asked)
  std::vector<Tensor> tables;    // per table: [ids[t].size(), dim], rows in the order of ids[t]
  std::int64_t min_version = 0;  // the lowest shard version among the answers
};

class PsEndpoint {
 public:
  virtual ~PsEndpoint() = default;

  // Parameters for `step`. ids: per table, strictly increasing global row ids (or empty: no rows).
  virtual PsPulled pull(std::int64_t step, const std::vector<std::vector<std::int64_t>>& ids, bool dense = true) = 0;
  // Gradients of `step`: dense (dense-index order, or empty for none) and, per table, rows by id; lr: this
  // update's learning rate (< 0: the shards' optim.lr; sync: every worker passes the same).
  virtual void push(std::int64_t step, const std::vector<Tensor>& dense, const std::vector<SparseRows>& tables,
                    double lr = -1.0) = 0;
  // The same with exact dense gradients (dense-index order; train.deterministic, sync mode), moved out of
  // `exact`; `tables` must be empty (exact sums exist for dense gradients only).
  virtual void push_exact(std::int64_t step, std::vector<ExactGrad> exact, const std::vector<SparseRows>& tables,
                          double lr = -1.0) = 0;
  // The clipping round of a sync step (PsOptions::clip), run by one worker after its push; returns the
  // norm before clipping.
  virtual double clip(std::int64_t step, double max_norm) = 0;

  virtual int worker() const = 0;
};

}  // namespace troupe::ps
