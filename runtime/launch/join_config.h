// Owns what joining a launcher's job does to a run's configuration: the explicit settings resolve_join reads, and the configuration of this process's rank once joined.
#pragma once

#include "runtime/config/config_loader.h"
#include "runtime/launch/join_spec.h"

namespace troupe::launcher {

// comm.rank, comm.world_size when set (not -1 / 0), and comm.address when `explicit_keys` holds it
// (its default would otherwise hide MASTER_ADDR).
JoinSettings join_settings(const RunConfig& config, const ConfigOrigins& explicit_keys);

// The configuration of rank join.rank of a job of join.world_size > 1 processes, each one
// data-parallel replica over TCP between hosts (and shared memory inside a host, comm.same_host): comm.transport = tcp, parallel.data = the world size,
// comm.rank, comm.world_size and comm.address as `join` says; validated. Throws troupe::Error(kConfig)
// naming the launcher when an explicit setting contradicts it (comm.transport = inproc, another
// parallel.data) or the layout cannot span processes yet (tensor parallelism, parameter servers).
RunConfig join_config(RunConfig config, const JoinSpec& join, const ConfigOrigins& explicit_keys);

}  // namespace troupe::launcher
