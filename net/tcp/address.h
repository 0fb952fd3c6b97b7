// Owns the TCP transport's addresses: parsing "HOST:PORT", the loopback-only rule of a run on one machine, host names, and an interface's address (comm.interface).
#pragma once

#include <cstdint>
#include <string>

namespace troupe::net {

// Where a group's ranks may be. `loopback`: processes of this machine (troupe started them itself);
// every address must lie in 127.0.0.0/8. `network`: processes a launcher started, on any host
// (torchrun, Slurm, mpirun; docs/multi-host.md); any IPv4 address or host name.
enum class Reach { loopback, network };

}  // namespace troupe::net

namespace troupe::net::tcp {

struct Endpoint {
  std::uint32_t host = 0;  // IPv4, host byte order
  std::uint16_t port = 0;  // 0: any free port (a listener only)
  std::string host_text() const;  // "127.0.0.1"
  std::string text() const;       // "127.0.0.1:29500"
};

// "HOST:PORT" with HOST an IPv4 address in 127.0.0.0/8 or "localhost" (= 127.0.0.1) and PORT in
// [0, 65535]. Anything else throws troupe::Error(kConfig) saying what is wrong: ranks troupe starts
// itself talk over loopback only.
Endpoint parse_loopback_address(const std::string& address);

// As parse_loopback_address for Reach::loopback; for Reach::network HOST may be any IPv4 address
// (0.0.0.0: every interface, for a listener) or a host name, resolved to its first IPv4 address.
// Throws troupe::Error(kConfig) for a malformed address or a name that does not resolve.
Endpoint parse_endpoint(const std::string& address, Reach reach);

// The IPv4 address of network interface `name` (comm.interface, as NCCL_SOCKET_IFNAME: "eth0");
// troupe::Error(kConfig) naming the interfaces there are when it has none.
std::uint32_t interface_address(const std::string& name);

// Where rank 0 of a job a launcher started listens, given rank 0's address as the others reach it
// (`address`, comm.address, HOST:PORT): at its port, on `interface`'s IPv4 address (comm.interface), or on
// every interface (0.0.0.0) when that is empty. troupe::Error(kConfig) for an address that is not HOST:PORT.
std::string rank0_listen_address(const std::string& address, const std::string& interface);

// This host's name (gethostname), as ranks report it to each other.
std::string this_hostname();

}  // namespace troupe::net::tcp
