// Owns Supervisor: the plain state machine behind a supervising actor — which children it watches,
// which are alive, and what is said when one dies (which actor, its place in the Topology, the step,
// the cause). The actor shells (ActorPipeline for a replica's stages) feed it their monitors' down
// messages. Its restart intensity (restart_intensity.h, fault.*) decides whether a death is answered
// by a one-for-one restart or escalates to the job as a troupe::Error.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/supervision/restart_intensity.h"
#include "runtime/supervision/supervision_tree.h"

namespace troupe::supervision {

struct Death {
  std::string child;   // the node's name
  std::int64_t step;   // the step it died in; -1 between steps
  std::string cause;
  std::string report;  // one paragraph for a person: what, where, when, why
};

class Supervisor {
 public:
  // Supervises `node`'s descendants (a copy: the tree may go away); a child's own children (a stage's
  // optimizer state) die with it as far as restarts go, and are named on their own when they die.
  Supervisor(Node node, plan::Topology topology, RestartIntensity intensity = RestartIntensity(0, 60.0));

  const Node& node() const { return node_; }
  bool alive(const std::string& child) const;
  int alive_count() const;
  // The descendant `child` died in `step` of `cause`: marks it dead and returns what to report. A
  // node not supervised here is an internal error (troupe::Error kInternal).
  Death on_down(const std::string& child, std::int64_t step, const std::string& cause);
  // Every death so far, in order.
  const std::vector<Death>& deaths() const { return deaths_; }
  // `child` was restarted: alive again.
  void on_restart(const std::string& child);
  // The descendant `child` as reports name it: kind, name and place in the Topology.
  std::string place(const std::string& child) const;
  RestartIntensity& intensity() { return intensity_; }
  const RestartIntensity& intensity() const { return intensity_; }

 private:
  Node node_;
  plan::Topology topology_;
  std::map<std::string, bool> alive_;
  std::vector<Death> deaths_;
  RestartIntensity intensity_;
};

}  // namespace troupe::supervision
