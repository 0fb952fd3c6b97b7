// Owns Topology: a run's parallel layout as one value — the mesh's axes and sizes, every rank's
// coordinate and place (process, host, device), the groups along each axis, the layers each pipeline
// stage holds and the program each stage runs, and the parameter servers when there are any.
//
// One pure function (make_topology) makes it from the parsed configuration and the model's layers;
// everything that starts a run reads it from there, and `troupe train --print-plan` prints it. It
// holds no actor, thread or socket: tests check it against literal tables.
//
// Ranks. A rank is one (data, pipe, tensor) coordinate: one pipeline stage of one data-parallel
// replica (one tensor shard of it, once the tensor axis is wider than 1). Ranks are numbered with the
// data axis outermost and the tensor axis innermost,
//     rank = (data * P + pipe) * T + tensor,
// so a replica's ranks are contiguous (a replica lives in one process; tensor shards as processes are
// a process each) and a tensor group's ranks are neighbours (its collectives are the most latency-bound). Example, data 2 x pipe 2:
//     rank 0 = (0, 0), 1 = (0, 1), 2 = (1, 0), 3 = (1, 1);
//     data groups {0, 2} {1, 3}: stage s of every replica reduces its gradients together;
//     pipe groups {0, 1} {2, 3}: the stages of one replica pass activations along.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/config/run_config.h"
#include "runtime/plan/partition.h"

namespace troupe::plan {

// The parallel axes, outermost first (the order ranks are numbered in).
enum class Axis { data, pipe, tensor };
inline constexpr std::array<Axis, 3> kAxes = {Axis::data, Axis::pipe, Axis::tensor};
std::string_view axis_name(Axis axis);

struct Coord {
  int data = 0, pipe = 0, tensor = 0;
  int at(Axis axis) const;
  int& at(Axis axis);
  friend bool operator==(const Coord&, const Coord&) = default;
};

// Where a rank runs.
struct Place {
  int process = 0;                  // 0: the process the user started
  std::string host = "localhost";
  Device device = Device::cpu();    // as `troupe devices` names it: cpu:0, cuda:1
  friend bool operator==(const Place&, const Place&) = default;
};

// One pipeline stage (all replicas' copies of it hold the same layers and run the same program).
struct StagePlan {
  // Per model chunk c (virtual stage c * P + s), the layers [begin, end) it holds.
  std::vector<std::pair<std::size_t, std::size_t>> chunks;
  std::string program;  // its schedule, communication included, in the text form of runtime/schedule/instr.h
  // Parameter bytes (f32) each of its tensor shards holds: the replicated tensors whole plus 1/T of
  // the split ones (its gradients take as many; Adam's state twice as many).
  std::int64_t replicated_param_bytes = 0;
  std::int64_t split_param_bytes = 0;  // of the whole split tensors; a shard holds split_param_bytes / T
  std::int64_t shard_param_bytes(int tensor) const { return replicated_param_bytes + split_param_bytes / tensor; }
};

// Parameter servers (parallel.gradient_exchange = ps): shard actors that own the parameters and
// their optimizer state; the data axis's ranks are their workers.
struct ServerPlan {
  int shards = 1;
  int process = 0;  // all shards live in the process the user started
  PsMode mode = PsMode::sync;
  int staleness = 0;
};

// The model's layers as the planner needs them (models/ provides them: runtime cannot build a model).
struct LayerInfo {
  std::vector<std::string> names;
  std::vector<double> costs;  // FLOPs per row, as the partitioner balances them
  // Per layer, parameter elements tensor parallelism splits over the shards and those it replicates
  // (empty: not known, counted as none).
  std::vector<std::int64_t> split_params;
  std::vector<std::int64_t> replicated_params;
};

struct Topology {
  std::array<int, 3> dims = {1, 1, 1};  // sizes along kAxes
  std::vector<Place> places;            // by rank
  std::vector<StagePlan> stages;        // by pipe coordinate
  Partition partition;                  // over pipe x virtual_stages virtual stages
  ScheduleKind schedule = ScheduleKind::one_f_one_b;
  int microbatches = 1;
  int virtual_stages = 1;
  GradientExchange exchange = GradientExchange::ring;
  bool zero = false;
  // Tensor shards are stage actors of pipelines, one pipeline per tensor rank of each replica
  // (parallel.tensor > 1 with pipeline stages, micro-batches, ZeRO-1 or gradient compression), rather
  // than tensor-shard actors each running a whole-model step.
  bool tensor_pipelines = false;
  TransportKind transport = TransportKind::inproc;
  std::optional<ServerPlan> servers;

  int size(Axis axis) const { return dims[static_cast<std::size_t>(axis)]; }
  int world_size() const { return dims[0] * dims[1] * dims[2]; }
  Coord coord_of(int rank) const;
  int rank_of(const Coord& coord) const;
  // Every group along `axis`: the ranks that differ only in their `axis` coordinate, each group in
  // ascending rank order, groups ordered by their first rank.
  std::vector<std::vector<int>> groups(Axis axis) const;
  // The group along `axis` that holds `rank`.
  std::vector<int> group_of(int rank, Axis axis) const;
  // Processes the run starts (the user's one included).
  int processes() const;
};

// The split of the model's layers into pipeline.parallel x virtual_stages parts: parallel.boundaries
// when given, else balanced by cost. Throws troupe::Error(kConfig) when it cannot be made (more parts
// than layers, bad boundaries). The one place a partition is decided (PipelineDriver uses it too).
Partition partition_for(const ParallelConfig& parallel, const LayerInfo& layers);

// The Topology of `config` for a model with `layers`; `stage_devices` names each pipeline stage's
// device (parallel.pipeline entries; runtime/placement.h resolves them). Throws troupe::Error(kConfig)
// for a layout that cannot be built (see partition_for and the schedule generators).
Topology make_topology(const RunConfig& config, const LayerInfo& layers, const std::vector<Device>& stage_devices);

// Whether `config`'s tensor shards run as stage actors of pipelines (Topology::tensor_pipelines).
bool runs_tensor_pipelines(const RunConfig& config);

// The plan as a person reads it: axes, ranks and places, groups, each stage's layers and program,
// parameter servers. `layers` names the layers in the partition lines.
std::string describe(const Topology& topology, const LayerInfo& layers);

}  // namespace troupe::plan
