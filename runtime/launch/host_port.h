// Owns reading a rendezvous address's text, "HOST:PORT" (comm.address): where its host ends and its port
// begins, with the port checked and IPv6 refused. Resolving the host is net/tcp/address.h's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::launcher {

struct HostPort {
  std::string host;        // as written: an IPv4 address or a host name
  std::uint16_t port = 0;  // in [0, 65535]; 0: any free port
};

// `text`, the value of `setting` (e.g. "comm.address"), as HOST:PORT. Throws troupe::Error(kConfig) that
// names the setting, its value and what to write (`example`, e.g. "127.0.0.1:29500") when there is no
// colon, the host or the port is empty, the port is not a whole number in [0, 65535], or the host is an
// IPv6 address (troupe's TCP links are IPv4).
HostPort parse_host_port(std::string_view setting, std::string_view text, std::string_view example);

}  // namespace troupe::launcher
