// Supervisor: liveness of the children, and the report of a death.
#include "runtime/supervision/supervisor.h"

#include <fmt/format.h>

#include "runtime/error.h"

namespace troupe::supervision {

namespace {
void mark_alive(const Node& node, std::map<std::string, bool>& alive) {
  for (const Node& c : node.children) {
    alive[c.name] = true;
    mark_alive(c, alive);
  }
}
}  // namespace

Supervisor::Supervisor(Node node, plan::Topology topology, RestartIntensity intensity)
    : node_(std::move(node)), topology_(std::move(topology)), intensity_(std::move(intensity)) {
  mark_alive(node_, alive_);
}

bool Supervisor::alive(const std::string& child) const {
  const auto it = alive_.find(child);
  return it != alive_.end() && it->second;
}

int Supervisor::alive_count() const {
  int n = 0;
  for (const auto& [name, up] : alive_) n += up ? 1 : 0;
  return n;
}

void Supervisor::on_restart(const std::string& child) {
  TROUPE_CHECK(alive_.count(child), node_.name, " does not supervise '", child, "'");
  alive_[child] = true;
}

std::string Supervisor::place(const std::string& child) const {
  const Node* node = find_node(node_, child);
  TROUPE_CHECK(node != nullptr, node_.name, " does not supervise '", child, "'");
  return describe_node(*node, topology_);
}

Death Supervisor::on_down(const std::string& child, std::int64_t step, const std::string& cause) {
  const Node* node = child == node_.name ? nullptr : find_node(node_, child);
  if (!node) throw Error(ErrorKind::kInternal, fmt::format("{} does not supervise '{}'", node_.name, child));
  alive_[child] = false;
  Death d{child, step, cause, {}};
  d.report = fmt::format("{} died {}: {}", describe_node(*node, topology_),
                         step >= 0 ? fmt::format("in step {}", step) : std::string("between steps"), cause);
  deaths_.push_back(d);
  return d;
}

}  // namespace troupe::supervision
