// Owns parsing the TCP transport's rendezvous address ("127.0.0.1:29500") and its loopback-only rule.
#pragma once

#include <cstdint>
#include <string>

namespace troupe::net::tcp {

struct LoopbackAddress {
  std::uint32_t host = 0;  // IPv4, host byte order, in 127.0.0.0/8
  std::uint16_t port = 0;  // 0: any free port (a listener only)
  std::string host_text() const;  // "127.0.0.1"
  std::string text() const;       // "127.0.0.1:29500"
};

// "HOST:PORT" with HOST an IPv4 address in 127.0.0.0/8 or "localhost" (= 127.0.0.1) and PORT in
// [0, 65535]. Anything else throws troupe::Error(kConfig) saying what is wrong: until troupe
// launches ranks on several hosts, the TCP transport talks over loopback only.
LoopbackAddress parse_loopback_address(const std::string& address);

}  // namespace troupe::net::tcp
