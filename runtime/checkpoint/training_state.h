// Owns TrainingState: everything a run needs to continue exactly, by parameter name and whole (never by
// shard), and the gather / scatter between it and the holders a layout spreads it over.
//
// Whatever the layout (one device, pipeline stages, data-parallel replicas, ZeRO-1 shards), each
// parameter has one value and at most one optimizer-state entry, keyed by its name; a layout gathers
// them from wherever they live and scatters them back to wherever the new layout keeps them. So a
// state written by one layout restores into any other with the same model and optimizer.
// What is not here is a pure function of the step and the configuration: the data order (a batch is a
// hash of seed and step, runtime/data/dataset.h) and the learning-rate schedule (lr_schedule.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/io/safetensors.h"
#include "runtime/optim/optimizer_state.h"
#include "runtime/param.h"

namespace troupe {

struct TrainingState {
  std::int64_t step = 0;      // steps completed: the next step to run
  NamedTensors params;        // every parameter and buffer (batch-norm statistics), whole
  OptimizerState optimizer;   // every parameter's optimizer state, whole
};


// Gather: appends copies of `params`' values to `out` (names must not repeat).
void gather_params(const std::vector<Param*>& params, NamedTensors& out);
// Gather: adds a copy of each entry of `part` to `whole`. Holders are disjoint (pipeline stages, ZeRO
// shards): an entry already in `whole` is an invariant error. The global step count is taken from the
// first part gathered (every holder's optimizer has stepped as often).
void gather_optimizer_state(const OptimizerState& part, OptimizerState& whole, bool first);

// Scatter: copies the values of `from` into `params` by name. Checks everything first: a parameter
// missing from `from`, or a shape that differs, is troupe::Error(kInput) naming `source` and the
// tensor, and nothing changes.
void scatter_params(const NamedTensors& from, const std::vector<Param*>& params, const std::string& source);
// Scatter: the entries of `whole` for `params` (a holder's share), deep-copied, with the global step.
OptimizerState optimizer_state_for(const OptimizerState& whole, const std::vector<Param*>& params);
// Checks that `state` holds exactly the names of `all` (the whole model's parameters and buffers), so
// that a scatter over a layout's holders misses nothing; troupe::Error(kInput) naming `source` otherwise.
void check_covers(const TrainingState& state, const std::vector<Param*>& all, const std::string& source);

}  // namespace troupe
