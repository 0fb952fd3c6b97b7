// Owns the address parsers, name resolution and interface lookup, and their error messages.
#include "net/tcp/address.h"

#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <boost/asio/ip/address_v4.hpp>
#include <charconv>
#include <set>

#include "runtime/error.h"
#include "runtime/launch/host_port.h"

namespace troupe::net::tcp {

std::string Endpoint::host_text() const { return boost::asio::ip::address_v4(host).to_string(); }
std::string Endpoint::text() const { return detail::concat(host_text(), ":", port); }

namespace {

std::pair<std::string, std::uint16_t> split_host_port(const std::string& address, const char* example) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "' is not HOST:PORT; use e.g. ", example));
  }
  const std::string port_text = address.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': port '", port_text,
                                                   "' is not a number in [0, 65535]"));
  }
  return {address.substr(0, colon), static_cast<std::uint16_t>(port)};
}

// `host`'s first IPv4 address from the resolver (/etc/hosts, DNS).
std::uint32_t resolve(const std::string& address, const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found); rc != 0 || !found) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': host '", host,
                                                   "' does not resolve to an IPv4 address (", ::gai_strerror(rc),
                                                   "); give rank 0's IPv4 address or a name this host can resolve"));
  }
  const std::uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr.s_addr);
  ::freeaddrinfo(found);
  return ip;
}

}  // namespace

Endpoint parse_loopback_address(const std::string& address) { return parse_endpoint(address, Reach::loopback); }

Endpoint parse_endpoint(const std::string& address, Reach reach) {
  const auto [host, port] = split_host_port(address, reach == Reach::loopback ? "127.0.0.1:29500" : "node01:29500");
  boost::system::error_code parse_error;
  const auto ip = host == "localhost" ? boost::asio::ip::make_address_v4("127.0.0.1")
                                      : boost::asio::ip::make_address_v4(host, parse_error);
  if (reach == Reach::network) return Endpoint{parse_error ? resolve(address, host) : ip.to_uint(), port};
  if (parse_error) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': host '", host,
                                                   "' is not an IPv4 address; use 127.0.0.1 (loopback)"));
  }
  if (!ip.is_loopback()) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': ", host,
                                                   " is not a loopback address (127.0.0.0/8); ranks troupe starts itself "
                                                   "run on this machine only, use 127.0.0.1:PORT (for several hosts see "
                                                   "docs/multi-host.md)"));
  }
  return Endpoint{ip.to_uint(), port};
}

std::uint32_t interface_address(const std::string& name) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) throw Error(ErrorKind::kIo, "cannot list the network interfaces (getifaddrs failed)");
  std::set<std::string> with_ipv4;
  std::uint32_t found = 0;
  for (const ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    with_ipv4.insert(i->ifa_name);
    if (!found && name == i->ifa_name) found = ntohl(reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
  }
  ::freeifaddrs(list);
  if (found) return found;
  std::string names;
  for (const std::string& n : with_ipv4) names += (names.empty() ? "" : ", ") + n;
  throw Error(ErrorKind::kConfig, detail::concat("comm.interface = \"", name, "\": this host has no interface of that name "
                                                 "with an IPv4 address; it has: ", names));
}

std::string rank0_listen_address(const std::string& address, const std::string& interface) {
  const std::uint16_t port = launcher::parse_host_port("comm.address", address, "node01:29500").port;
  const std::string host = interface.empty() ? "0.0.0.0" : Endpoint{interface_address(interface), 0}.host_text();
  return detail::concat(host, ":", port);
}

std::string this_hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

}  // namespace troupe::net::tcp
