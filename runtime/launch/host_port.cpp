// Owns parse_host_port and its error messages.
#include "runtime/launch/host_port.h"

#include <charconv>

#include "runtime/error.h"

namespace troupe::launcher {

HostPort parse_host_port(std::string_view setting, std::string_view text, std::string_view example) {
  const auto refuse = [&](std::string_view why) {
    throw Error(ErrorKind::kConfig, detail::concat(setting, " = \"", text, "\" ", why));
  };
  // An IPv6 address has colons of its own ("::1", "[::1]:29500"): the last colon would split it wrongly.
  if (text.find('[') != std::string_view::npos || text.find(':') != text.rfind(':'))
    refuse(detail::concat("is an IPv6 address; troupe's TCP links are IPv4: give an IPv4 address or a host name, e.g. ",
                          example));
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
    refuse(detail::concat("must be host:port, e.g. ", example));
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
    refuse(detail::concat("has port '", port_text, "', which is not a whole number in [0, 65535]; e.g. ", example));
  return {std::string(text.substr(0, colon)), static_cast<std::uint16_t>(port)};
}

}  // namespace troupe::launcher
