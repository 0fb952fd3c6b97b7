// Owns the loopback address parser and its error messages.
#include "net/tcp/address.h"

#include <boost/asio/ip/address_v4.hpp>
#include <charconv>

#include "runtime/error.h"

namespace troupe::net::tcp {

std::string LoopbackAddress::host_text() const { return boost::asio::ip::address_v4(host).to_string(); }
std::string LoopbackAddress::text() const { return detail::concat(host_text(), ":", port); }

LoopbackAddress parse_loopback_address(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address,
                                                   "' is not HOST:PORT; use e.g. 127.0.0.1:29500"));
  }
  const std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': port '", port_text,
                                                   "' is not a number in [0, 65535]"));
  }
  boost::system::error_code parse_error;
  const auto ip = host == "localhost" ? boost::asio::ip::make_address_v4("127.0.0.1")
                                      : boost::asio::ip::make_address_v4(host, parse_error);
  if (parse_error) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': host '", host,
                                                   "' is not an IPv4 address; use 127.0.0.1 (loopback)"));
  }
  if (!ip.is_loopback()) {
    throw Error(ErrorKind::kConfig, detail::concat("TCP address '", address, "': ", host,
                                                   " is not a loopback address (127.0.0.0/8); the TCP transport "
                                                   "runs ranks on this machine only, use 127.0.0.1:PORT"));
  }
  return LoopbackAddress{ip.to_uint(), static_cast<std::uint16_t>(port)};
}

}  // namespace troupe::net::tcp
