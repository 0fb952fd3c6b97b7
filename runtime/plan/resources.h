// Owns the resource check: what a configuration asks of the machine (memory, threads), estimated before
// anything is allocated, and the refusal of one that cannot fit.
//
// A request the machine cannot meet used to be found the hard way: train.threads = 100000 aborted the
// process (SIGABRT from a std::thread that could not start), model.n_layer = 1e8 or a batch of 2^31-1
// grew to the memory limit and died of bad_alloc. check_resources() turns each into a config error that
// says what was asked, what the machine has and what to change, before the first tensor exists.
//
// The estimate is plain arithmetic on the configuration and the Topology (runtime/plan/topology.h), in
// doubles so that no product overflows; tests check it against literal numbers. It counts what dominates,
// 4-byte floats of
//   - parameters and gradients: one copy per data-parallel replica (its stages together hold the model);
//     parameter servers hold one more copy in their shards;
//   - optimizer state: adam/adamw 2 floats per parameter, sgd 1 with momentum, rmsprop 1 (+1 momentum,
//     +1 centered); per replica, or once in all when ZeRO-1 or parameter servers shard it;
//   - activations kept for backward: per micro-batch, each layer's saved tensors per row (a GPT block
//     keeps 16 n_embd + 4 + n_head * block_size floats per token), times the micro-batches a stage holds
//     in flight (GPipe: all of them; 1F1B: P - s for stage s; interleaved: P), on every replica.
// It leaves out what is small beside these (biases of buffers, the data set, communication buckets), so
// it is a floor, not a ceiling: a configuration it refuses cannot run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/config/run_config.h"
#include "runtime/plan/topology.h"

namespace troupe::plan {

// Bytes the run needs on this machine, by kind. Every rank of a run lives on this machine today
// (threads, or processes over loopback), so these are totals over all ranks.
struct MemoryEstimate {
  double parameters = 0, gradients = 0, optimizer_state = 0, activations = 0;
  double total() const { return parameters + gradients + optimizer_state + activations; }
  // "3.2 GB (parameters 0.8 GB, gradients 0.8 GB, optimizer state 1.6 GB, activations 0.1 GB)"
  std::string describe() const;
};

// Parameters of the model `model` describes (the GPT's tied lm_head counted once), as a double: a
// configuration in range can describe more than 2^53 of them, and the estimate must not wrap.
double parameter_count(const ModelConfig& model);

// The estimate for `config` laid out as `topology`.
MemoryEstimate estimate_memory(const RunConfig& config, const Topology& topology);

// What one tensor shard of one pipeline stage holds, in bytes (f32), as --print-plan states it: its
// parameters (the replicated tensors whole, 1/T of the split ones: StagePlan::shard_param_bytes), their
// gradients (as many), its optimizer state (state floats per parameter, divided over the replicas under
// ZeRO-1) and, at their peak, the activations it saves for backward: the micro-batches the schedule
// holds in flight on the stage, each row's saved floats with the split ones (heads, hidden units,
// vocabulary) 1/T, and under parallel.sequence_parallel the GPT's LayerNorm and residual ones 1/T as
// well. T = 1: the stage's own.
struct ShardMemory {
  double parameters = 0, gradients = 0, optimizer_state = 0, activations = 0;
};
ShardMemory shard_memory(const RunConfig& config, const Topology& topology, int stage);
// The plan's lines for it, one per stage.
std::string describe_shard_memory(const RunConfig& config, const Topology& topology);

// MemAvailable from /proc/meminfo, in bytes; the environment variable TROUPE_MEMORY_AVAILABLE (bytes)
// overrides it (tests use it to play a small machine). nullopt when neither can be read: no check.
std::optional<double> available_memory_bytes();

// Refuses, with troupe::Error(kConfig), a configuration that cannot run on this machine:
//  - train.threads (the run's total: replicas and stages share them) above 4x the hardware threads: more
//    only time-slices the same cores, and tens of thousands cannot even be started;
//  - an estimate above `available` bytes (skipped when nullopt, and for stages on a CUDA device, whose
//    memory is not the host's).
// `hardware_threads` is what std::thread::hardware_concurrency() reports (>= 1).
void check_resources(const RunConfig& config, const Topology& topology, int hardware_threads,
                     std::optional<double> available);

}  // namespace troupe::plan
