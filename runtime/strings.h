// Owns small text helpers shared by configuration, placement and the command line.
#pragma once

#include <string>
#include <vector>

namespace troupe {

// "a,b,,c" -> {"a", "b", "", "c"}; "" -> {""}. Fields keep their spaces.
inline std::vector<std::string> split(const std::string& text, char separator = ',') {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    const auto at = text.find(separator, start);
    parts.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) return parts;
    start = at + 1;
  }
}

}  // namespace troupe
