// Owns what rank 0 of a local multi-process run shares with the ranks it starts through their environment: the job's secret, and rendezvous listeners bound before any rank starts, with their addresses.
#pragma once

#include <string>
#include <vector>

#include "net/tcp/tcp_transport.h"

namespace troupe::net {

// TROUPE_SECRET if set, else a fresh random one (runtime/process/replica_processes.h), which rank 0
// hands to the ranks it starts.
std::string job_secret();

// `count` addresses at `address`'s port, port + 1, ... (every one port 0 when it is 0: the system picks
// each). `setting` names where the address came from and `what` what each port is for, in the
// troupe::Error (kConfig) for a port that is not a number or a range past 65535.
std::vector<std::string> consecutive_addresses(const std::string& setting, const std::string& address, int count,
                                               const std::string& what);

// Rank 0: one listener per address, bound before any rank starts (so none is taken and the system's
// picks are known); their addresses, comma-separated, go into `bound` and the environment variable
// `env`, which the started ranks inherit.
std::vector<TcpListener> bind_listeners(const std::vector<std::string>& addresses, const char* env, std::string& bound);

// A started rank: the addresses rank 0 put in `env`; troupe::Error (kUsage) when it is not set (the
// process was not started by troupe).
std::vector<std::string> addresses_from_environment(const char* env);

}  // namespace troupe::net
