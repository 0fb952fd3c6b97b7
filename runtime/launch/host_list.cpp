// Slurm host-list expansion: split at top-level commas, then the cartesian product of each name's bracket groups.
#include "runtime/launch/host_list.h"

#include <charconv>

#include "runtime/error.h"

namespace troupe::launcher {

namespace {

[[noreturn]] void bad(std::string_view source, std::string_view list, const std::string& what) {
  throw Error(ErrorKind::kConfig, detail::concat(source, " = \"", list, "\": ", what,
                                                 "; expected Slurm's host list syntax, e.g. node[01-04,07]"));
}

// "01-04,07" -> {"01", "02", "03", "04", "07"}: each number with the width of the bound it came from.
std::vector<std::string> expand_group(std::string_view group, std::string_view source, std::string_view list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= group.size()) {
    const std::size_t comma = std::min(group.find(',', start), group.size());
    const std::string_view item = group.substr(start, comma - start);
    const std::size_t dash = item.find('-');
    const std::string_view lo_text = item.substr(0, dash);
    const std::string_view hi_text = dash == std::string_view::npos ? lo_text : item.substr(dash + 1);
    auto number = [&](std::string_view text) {
      unsigned long long v = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
        bad(source, list, detail::concat("'", text, "' in [", group, "] is not a number"));
      return v;
    };
    const unsigned long long lo = number(lo_text), hi = number(hi_text);
    if (hi < lo) bad(source, list, detail::concat("the range ", item, " runs backwards"));
    if (hi - lo > 1'000'000) bad(source, list, detail::concat("the range ", item, " holds more than a million hosts"));
    for (unsigned long long v = lo; v <= hi; ++v) {
      std::string digits = std::to_string(v);
      if (digits.size() < lo_text.size()) digits.insert(0, lo_text.size() - digits.size(), '0');
      out.push_back(std::move(digits));
    }
    start = comma + 1;
  }
  return out;
}

// One name with bracket groups, e.g. "rack[1-2]-n[8-9]".
std::vector<std::string> expand_name(std::string_view name, std::string_view source, std::string_view list) {
  std::vector<std::string> out = {""};
  std::size_t at = 0;
  while (at < name.size()) {
    const std::size_t open = name.find('[', at);
    const std::string_view literal = name.substr(at, open == std::string_view::npos ? std::string_view::npos : open - at);
    if (literal.find(']') != std::string_view::npos) bad(source, list, "a ']' without its '['");
    for (std::string& prefix : out) prefix += literal;
    if (open == std::string_view::npos) break;
    const std::size_t close = name.find(']', open);
    if (close == std::string_view::npos) bad(source, list, "a '[' without its ']'");
    const std::string_view group = name.substr(open + 1, close - open - 1);
    if (group.find('[') != std::string_view::npos) bad(source, list, "brackets inside brackets");
    std::vector<std::string> next;
    for (const std::string& prefix : out)
      for (const std::string& number : expand_group(group, source, list)) next.push_back(prefix + number);
    out = std::move(next);
    at = close + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> expand_host_list(std::string_view list, std::string_view source) {
  std::vector<std::string> hosts;
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    const char c = i < list.size() ? list[i] : ',';
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c != ',' || depth > 0) continue;
    const std::string_view name = list.substr(start, i - start);
    if (name.empty()) bad(source, list, "an empty host name");
    for (std::string& host : expand_name(name, source, list)) hosts.push_back(std::move(host));
    start = i + 1;
  }
  if (depth > 0) bad(source, list, "a '[' without its ']'");
  return hosts;
}

}  // namespace troupe::launcher
