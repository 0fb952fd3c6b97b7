// join_settings and join_config: the explicit keys in, the joined rank's configuration out, contradictions refused.
#include "runtime/launch/join_config.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::launcher {

JoinSettings join_settings(const RunConfig& config, const ConfigOrigins& explicit_keys) {
  JoinSettings s;
  if (config.comm.rank >= 0) s.rank = config.comm.rank;
  if (config.comm.world_size > 0) s.world_size = config.comm.world_size;
  if (explicit_keys.count("comm.address")) s.address = config.comm.address;
  return s;
}

RunConfig join_config(RunConfig config, const JoinSpec& join, const ConfigOrigins& explicit_keys) {
  const std::string who = fmt::format("{} started this process as rank {} of {}", join_source_name(join.source),
                                      join.rank, join.world_size);
  auto refuse = [&](const std::string& what) {
    throw Error(ErrorKind::kConfig,
                fmt::format("{}, but {}; or set comm.world_size=1 to run this process alone", who, what));
  };
  if (explicit_keys.count("comm.transport") && config.comm.transport != TransportKind::tcp)
    refuse(fmt::format("comm.transport = {} is not how a joined job talks: drop the setting (it talks over tcp "
                       "between hosts and, unless comm.same_host = tcp, through shared memory inside one)",
                       config.comm.transport));
  if (explicit_keys.count("parallel.data") && config.parallel.data != join.world_size)
    refuse(fmt::format("parallel.data = {}: each process is one data-parallel replica, so drop parallel.data or set it "
                       "to {}",
                       config.parallel.data, join.world_size));
  if (config.parallel.tensor > 1)
    refuse("parallel.tensor > 1 runs its shards as threads of one process: set parallel.tensor = 1");
  if (config.parallel.gradient_exchange == GradientExchange::ps)
    refuse("parameter-server workers across hosts are not built yet: use parallel.gradient_exchange = ring or alltoall");
  config.comm.transport = TransportKind::tcp;
  config.parallel.data = join.world_size;
  config.comm.rank = join.rank;
  config.comm.world_size = join.world_size;
  config.comm.address = join.address;
  validate(config);
  return config;
}

}  // namespace troupe::launcher
