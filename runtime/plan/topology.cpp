// Topology: rank arithmetic, groups, and the one function that lays a run out from its configuration.
#include "runtime/plan/topology.h"

#include <fmt/format.h>

#include "runtime/comm/compression/compression_spec.h"
#include "runtime/error.h"
#include "runtime/schedule/comm_pass.h"
#include "runtime/schedule/generators.h"

namespace troupe::plan {

std::string_view axis_name(Axis axis) {
  switch (axis) {
    case Axis::data: return "data";
    case Axis::pipe: return "pipe";
    case Axis::tensor: return "tensor";
  }
  return "?";
}

int Coord::at(Axis axis) const { return axis == Axis::data ? data : axis == Axis::pipe ? pipe : tensor; }
int& Coord::at(Axis axis) { return axis == Axis::data ? data : axis == Axis::pipe ? pipe : tensor; }

Coord Topology::coord_of(int rank) const {
  TROUPE_CHECK(rank >= 0 && rank < world_size(), "rank ", rank, " of ", world_size());
  const int t = size(Axis::tensor), p = size(Axis::pipe);
  return Coord{rank / (p * t), (rank / t) % p, rank % t};
}

int Topology::rank_of(const Coord& c) const {
  for (Axis a : kAxes)
    TROUPE_CHECK(c.at(a) >= 0 && c.at(a) < size(a), axis_name(a), " coordinate ", c.at(a), " of ", size(a));
  return (c.data * size(Axis::pipe) + c.pipe) * size(Axis::tensor) + c.tensor;
}

std::vector<std::vector<int>> Topology::groups(Axis axis) const {
  std::vector<std::vector<int>> out;
  for (int rank = 0; rank < world_size(); ++rank) {
    const Coord c = coord_of(rank);
    if (c.at(axis) != 0) continue;  // each group is listed once, from its member at coordinate 0
    out.push_back(group_of(rank, axis));
  }
  return out;
}

std::vector<int> Topology::group_of(int rank, Axis axis) const {
  Coord c = coord_of(rank);
  std::vector<int> group;
  for (int i = 0; i < size(axis); ++i) {
    c.at(axis) = i;
    group.push_back(rank_of(c));
  }
  return group;
}

int Topology::processes() const {
  int n = 0;
  for (const Place& p : places) n = std::max(n, p.process + 1);
  return n;
}

Partition partition_for(const ParallelConfig& parallel, const LayerInfo& layers) {
  const int parts = parallel.pipeline * parallel.virtual_stages;
  const std::size_t n = layers.costs.size();
  if (parts > static_cast<int>(n))
    throw Error(ErrorKind::kConfig,
                fmt::format("parallel.pipeline = {} x parallel.virtual_stages = {} needs at least {} layers, the model "
                            "has {} (raise model.n_layer or lower the stage count)",
                            parallel.pipeline, parallel.virtual_stages, parts, n));
  return parallel.boundaries.empty() ? partition_balanced(layers.costs, parts)
                                     : partition_from_boundaries(parallel.boundaries, n, parts, layers.costs);
}

bool runs_tensor_pipelines(const RunConfig& config) {
  const ParallelConfig& par = config.parallel;
  return par.tensor > 1 && (par.pipeline > 1 || par.microbatches > 1 || par.zero == 1 ||
                            config.comm.compression.kind != comm::CompressionKind::kNone);
}

Topology make_topology(const RunConfig& config, const LayerInfo& layers, const std::vector<Device>& stage_devices) {
  const ParallelConfig& par = config.parallel;
  TROUPE_CHECK(static_cast<int>(stage_devices.size()) == par.pipeline, stage_devices.size(), " devices for ",
               par.pipeline, " stages");
  Topology t;
  t.dims = {par.data, par.pipeline, par.tensor};
  t.schedule = par.schedule;
  t.microbatches = par.microbatches;
  t.virtual_stages = par.virtual_stages;
  t.exchange = par.gradient_exchange;
  t.zero = par.zero == 1;
  t.tensor_pipelines = runs_tensor_pipelines(config);
  t.transport = config.comm.transport;
  if (par.gradient_exchange == GradientExchange::ps)
    t.servers = ServerPlan{config.ps.shards, 0, config.ps.mode, config.ps.staleness};

  // Ranks are processes over tcp or shm: each replica one (replica r is process r, its stages actors of
  // it), or, with tensor shards, each rank one (rank r is process r); threads of this process otherwise.
  const bool tensor_processes = ranks_are_processes(t.transport) && par.tensor > 1;
  const bool processes = ranks_are_processes(t.transport) && (par.data > 1 || tensor_processes);
  for (int rank = 0; rank < t.world_size(); ++rank) {
    const Coord c = t.coord_of(rank);
    t.places.push_back(Place{processes ? (tensor_processes ? rank : c.data) : 0, "localhost",
                             stage_devices[static_cast<std::size_t>(c.pipe)]});
  }

  t.partition = partition_for(par, layers);
  const pipeline::Schedule schedule = pipeline::add_communication(
      pipeline::make_schedule(par.schedule, par.pipeline, par.microbatches, par.virtual_stages), par.pipeline,
      par.virtual_stages);
  const pipeline::Layout layout{par.pipeline, par.virtual_stages};
  for (int s = 0; s < par.pipeline; ++s) {
    StagePlan stage;
    for (int chunk = 0; chunk < par.virtual_stages; ++chunk) {
      const int v = layout.virtual_stage(s, chunk);
      stage.chunks.emplace_back(t.partition.begin(v), t.partition.end(v));
      for (std::size_t l = t.partition.begin(v); l < t.partition.end(v); ++l) {
        if (l < layers.split_params.size()) stage.split_param_bytes += 4 * layers.split_params[l];
        if (l < layers.replicated_params.size()) stage.replicated_param_bytes += 4 * layers.replicated_params[l];
      }
    }
    stage.program = pipeline::to_string(schedule[static_cast<std::size_t>(s)], par.virtual_stages > 1);
    t.stages.push_back(std::move(stage));
  }
  return t;
}

namespace {
std::string group_list(const std::vector<std::vector<int>>& groups) {
  std::string out;
  for (const auto& g : groups) out += fmt::format("{}[{}]", out.empty() ? "" : " ", fmt::join(g, " "));
  return out;
}
}  // namespace

std::string describe(const Topology& t, const LayerInfo& layers) {
  std::string out = fmt::format("topology: data {} x pipe {} x tensor {} = {} rank{} in {} process{} ({})\n",
                                t.size(Axis::data), t.size(Axis::pipe), t.size(Axis::tensor), t.world_size(),
                                t.world_size() == 1 ? "" : "s", t.processes(), t.processes() == 1 ? "" : "es",
                                t.transport == TransportKind::tcp   ? "tcp over loopback"
                                : t.transport == TransportKind::shm ? "shared memory"
                                                                    : "ranks as threads");
  out += "  rank  data  pipe  tensor  process  host       device\n";
  for (int r = 0; r < t.world_size(); ++r) {
    const Coord c = t.coord_of(r);
    const Place& p = t.places[static_cast<std::size_t>(r)];
    out += fmt::format("  {:<4}  {:<4}  {:<4}  {:<6}  {:<7}  {:<9}  {}\n", r, c.data, c.pipe, c.tensor, p.process,
                       p.host, p.device.str());
  }
  out += "groups:\n";
  std::string exchange;
  if (t.servers) {
    exchange = fmt::format("workers of {} parameter-server shard{} in process {}, mode {}{}", t.servers->shards,
                           t.servers->shards == 1 ? "" : "s", t.servers->process, t.servers->mode,
                           t.servers->mode == PsMode::ssp ? fmt::format(" (staleness {})", t.servers->staleness) : "");
  } else if (t.size(Axis::data) > 1 && t.size(Axis::tensor) > 1 && !t.tensor_pipelines) {
    // No exchange actor: each tensor shard averages its own gradients with its peers of the same tensor rank.
    exchange = "gradients averaged by each tensor shard (one packed allreduce per step)";
  } else if (t.size(Axis::data) > 1) {
    exchange = fmt::format("gradient exchange {}{}", t.exchange, t.zero ? ", optimizer state sharded (ZeRO-1)" : "");
  }
  out += fmt::format("  data:   {}{}\n", group_list(t.groups(Axis::data)), exchange.empty() ? "" : "  " + exchange);
  out += fmt::format("  pipe:   {}  schedule {}, {} micro-batch{}{}\n", group_list(t.groups(Axis::pipe)), t.schedule,
                     t.microbatches, t.microbatches == 1 ? "" : "es",
                     t.virtual_stages > 1 ? fmt::format(", {} chunks per stage", t.virtual_stages) : "");
  out += fmt::format("  tensor: {}{}\n", group_list(t.groups(Axis::tensor)),
                     t.size(Axis::tensor) > 1 ? "  Megatron f/g: 2 allreduces forward and 2 backward per block" : "");
  out += "shards (parameter bytes each tensor shard of a stage holds: replicated + split / T):\n";
  const int tp = t.size(Axis::tensor);
  for (std::size_t s = 0; s < t.stages.size(); ++s) {
    const StagePlan& st = t.stages[s];
    out += fmt::format("  stage {} x {} shard{}: {} bytes each = {} replicated + {} / {} split\n", s, tp,
                       tp == 1 ? "" : "s", st.shard_param_bytes(tp), st.replicated_param_bytes, st.split_param_bytes, tp);
  }
  out += "partition:\n";
  const std::string partition = describe(t.partition, layers.names, layers.costs);
  for (std::size_t at = 0; at < partition.size();) {  // indented under its heading, line by line
    const std::size_t end = partition.find('\n', at);
    out += "  " + partition.substr(at, end == std::string::npos ? std::string::npos : end + 1 - at);
    at = end == std::string::npos ? partition.size() : end + 1;
  }
  out += "programs:\n";
  for (std::size_t s = 0; s < t.stages.size(); ++s) out += fmt::format("  stage {}: {}\n", s, t.stages[s].program);
  return out;
}

}  // namespace troupe::plan
